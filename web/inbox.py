"""The signed-in user's notifications: read them, mark one or all as read."""

from __future__ import annotations

from flask import Blueprint, abort, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm

from notifications.outbox import list_inbox, mark_all_read, mark_read
from reprisals.messaging import local_text
from web.context import db, me, now
from web.security import signed_in

bp = Blueprint("inbox", __name__, url_prefix="/inbox")


class ActionForm(FlaskForm):
    """A button that changes something: only the CSRF token is posted."""


@bp.get("/")
@signed_in
def index() -> ResponseReturnValue:
    items = list_inbox(db(), str(me().id), limit=100)
    return render_template("inbox/index.html", title="Notifications", items=items,
                           local_text=local_text)


@bp.post("/<int:item_id>/read")
@signed_in
def read(item_id: int) -> ResponseReturnValue:
    if not ActionForm().validate_on_submit():
        abort(400)
    if not mark_read(db(), str(me().id), item_id, now()):
        abort(404)  # not theirs, or no such item
    db().commit()
    return redirect(url_for("inbox.index") + f"#item-{item_id}")


@bp.post("/read-all")
@signed_in
def read_all() -> ResponseReturnValue:
    if not ActionForm().validate_on_submit():
        abort(400)
    mark_all_read(db(), str(me().id), now())
    db().commit()
    return redirect(url_for("inbox.index"))
