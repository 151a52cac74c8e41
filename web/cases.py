"""The case list and reporting a concern (the case page is web/case_page.py)."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask.typing import ResponseReturnValue

from reprisals.models import Role
from web.security import roles

bp = Blueprint("cases", __name__, url_prefix="/cases")


@bp.get("/")
@roles(Role.LEAD, Role.STAFF, Role.AUDITOR)
def index() -> ResponseReturnValue:
    return render_template("placeholder.html", title="Cases")


@bp.get("/new")
@roles(Role.LEAD, Role.STAFF)
def report() -> ResponseReturnValue:
    return render_template("placeholder.html", title="Report a concern")
