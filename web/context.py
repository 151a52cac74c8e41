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

    @property
    def second_step_due(self) -> str | None:
        """What this session must still do before it counts as signed in (``"code"``, ``"enrol"``) or
        ``None`` (reprisals.two_factor.second_step; required for every account in production)."""
        if not hasattr(self, "_second_step"):
            from reprisals.two_factor import second_step

            self._second_step = second_step(db(), self.web_session, required=runtime().settings.is_production)
        return self._second_step

    def second_step_done(self) -> None:
        self._second_step = None


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
