"""Administration: users, establishments, protocol versions, failed messages."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask.typing import ResponseReturnValue

from reprisals.models import Role
from web.security import roles

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.get("/")
@roles(Role.ADMIN)
def index() -> ResponseReturnValue:
    return render_template("placeholder.html", title="Administration")
