"""Each role's home page."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask.typing import ResponseReturnValue

from web.context import me
from web.security import signed_in

bp = Blueprint("home", __name__)


@bp.get("/")
@signed_in
def index() -> ResponseReturnValue:
    return render_template("home/index.html", user=me())
