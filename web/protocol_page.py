"""The protocol page: the protocol new cases start on, as the diagram and its list (web/diagram.py), for
anyone signed in. Part of issue 14 (part: deadlines); reads through ``reprisals.protocol_store``."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask.typing import ResponseReturnValue

from reprisals.protocol import SPEC_KEY
from reprisals.protocol_store import active_version
from web.context import db, runtime
from web.diagram import render_diagram
from web.security import signed_in

bp = Blueprint("protocol", __name__)


@bp.get("/protocol")
@signed_in
def show() -> ResponseReturnValue:
    engine = runtime().engine
    spec = engine.spec(SPEC_KEY, active_version(db(), engine, SPEC_KEY))
    return render_template("protocol.html", title="The protocol", spec=spec,
                           diagram=render_diagram(spec, None, element_id="protocol-diagram"))
