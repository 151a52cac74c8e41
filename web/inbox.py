"""The signed-in user's notifications."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask.typing import ResponseReturnValue

from web.security import signed_in

bp = Blueprint("inbox", __name__, url_prefix="/inbox")


@bp.get("/")
@signed_in
def index() -> ResponseReturnValue:
    return render_template("placeholder.html", title="Notifications")
