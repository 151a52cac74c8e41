"""Per-request access to the runtime, the database session and the signed-in user, for views."""

from __future__ import annotations

from datetime import datetime

from flask import current_app, g
from flask_login import UserMixin, current_user
from sqlalchemy.orm import Session

from reprisals.accounts import WebSession
from reprisals.models import User
from reprisals.runtime import Runtime


class Principal(UserMixin):
    """What Flask-Login keeps: the server-side session. ``get_id`` is the session's token (Flask-Login's
    "alternative token"), so the cookie names a session row that sign-out ends, not a user id."""

    def __init__(self, web_session: WebSession, token: str) -> None:
        self.web_session = web_session
        self.token = token

    @property
    def user(self) -> User:
        return self.web_session.user

    def get_id(self) -> str:
        return self.token

    @property
    def is_active(self) -> bool:
        return bool(self.user.active)


def runtime() -> Runtime:
    rt: Runtime = current_app.extensions["reprisals"]
    return rt


def db() -> Session:
    if "db" not in g:
        g.db = runtime().sessions()
    session: Session = g.db
    return session


def now() -> datetime:
    return runtime().clock.now()


def me() -> User:
    """The signed-in user (views guarded by a signed-in rule only)."""
    user: User = current_user.user
    return user
