"""The user's own account: password, e-mail preference, API tokens."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask.typing import ResponseReturnValue

from web.security import signed_in

bp = Blueprint("account", __name__, url_prefix="/account")


@bp.get("/")
@signed_in
def index() -> ResponseReturnValue:
    return render_template("placeholder.html", title="Your account")
