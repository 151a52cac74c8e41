"""Case list, reporting a concern, the case page and its actions."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask.typing import ResponseReturnValue

from reprisals.models import Role
from web.security import roles, signed_in

bp = Blueprint("cases", __name__, url_prefix="/cases")


@bp.get("/")
@roles(Role.LEAD, Role.STAFF, Role.AUDITOR)
def index() -> ResponseReturnValue:
    return render_template("placeholder.html", title="Cases")


@bp.get("/new")
@roles(Role.LEAD, Role.STAFF)
def report() -> ResponseReturnValue:
    return render_template("placeholder.html", title="Report a concern")


@bp.get("/<reference>")
@signed_in
def show(reference: str) -> ResponseReturnValue:
    return render_template("placeholder.html", title=reference)
