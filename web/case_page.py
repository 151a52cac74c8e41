"""The case page: summary, identity on request, protocol diagram, deadlines, actions, notes, timeline."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask.typing import ResponseReturnValue

from web.security import signed_in

bp = Blueprint("case", __name__, url_prefix="/cases")


@bp.get("/<reference>")
@signed_in
def show(reference: str) -> ResponseReturnValue:
    return render_template("placeholder.html", title=reference)
