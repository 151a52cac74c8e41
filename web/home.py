"""Each role's home page: a lead's queue, what a member of staff owes and who must do the rest, what an
auditor can do and their body's recent activity, an administrator's links. The reads are
``reprisals.readside.queue`` (decision 29); this module only renders them."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template
from flask.typing import ResponseReturnValue

from reprisals.confirmations import list_pending
from reprisals.messaging import local_text
from reprisals.models import Role
from reprisals.readside.queue import has_establishments_and_users, lead_home, recent_activity, staff_home
from web.context import db, me, now, runtime
from web.security import pending_words, signed_in

bp = Blueprint("home", __name__)


@bp.get("/")
@signed_in
def index() -> ResponseReturnValue:
    user, at = me(), now()
    engine = runtime().engine
    context: dict[str, Any] = {"user": user, "local_text": local_text}
    if user.pending:  # nothing of any case until a lead of the body confirms the account (decision 22)
        context.update(pending_words=pending_words(user))
    elif user.role is Role.LEAD and user.body_code:
        context.update(to_confirm=len(list_pending(db(), user)), lead=lead_home(db(), engine, user, at))
    elif user.role is Role.STAFF:
        context.update(staff=staff_home(db(), engine, user, at))
    elif user.role is Role.AUDITOR and user.body_code:
        context.update(activity=recent_activity(db(), engine, user))
    elif user.role is Role.ADMIN:
        establishments, users = has_establishments_and_users(db())
        context.update(has_establishments=establishments, has_users=users)
    return render_template("home/index.html", **context)
