"""Administration: inviting users, their role, body and activity; establishments.

An invitation creates the user with an unusable password and a random token (stored as SHA-256, valid
for ``INVITATION_LIFETIME``); the link goes to the invitee by e-mail only (``Messenger.invitation``) and is
never shown to the admin nor logged; the invitee sets a password with it. A staff or lead account the
admin makes, or moves to another role or body, waits for a lead of its body (``reprisals.confirmations``):
administration alone never leads to identity (decision 22).
Deactivation ends every session of the user and revokes nothing else (API tokens of an inactive
user stop working by themselves: ``user_for_token`` checks ``active``).
Each operation flushes and never commits.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from reprisals import access_log
from reprisals.access_log import record
from reprisals.accounts import end_all_sessions
from reprisals.confirmations import make_pending
from reprisals.emails import email_problem, normalise_email
from reprisals.errors import InvalidInput, NotAllowed
from reprisals.messaging import Messenger, local_text
from reprisals.models import BODY_ROLES, Body, Establishment, Role, User
from reprisals.passwords import hash_password, password_problem
from reprisals.reference import establishment_fields
from workflow.clock import ensure_utc
from workflow.models import Base

INVITATION_LIFETIME = timedelta(days=7)
UNUSABLE_PASSWORD = "!invited"  # noqa: S105 (not a hash: no password verifies against it)


class Invitation(Base):
    __tablename__ = "invitations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(foreign_keys=[user_id], lazy="joined", innerjoin=True)


def _digest(token: str) -> str:
    return hashlib.sha256(("invitation:" + token).encode()).hexdigest()


def _require_admin(actor: User) -> None:
    if actor.role is not Role.ADMIN or not actor.active:
        raise NotAllowed("only an administrator can do this")


def _role_and_body(session: Session, errors: dict[str, str], role_text: Any, body_code: Any) -> tuple[
        Role | None, str | None]:
    try:
        role = Role(role_text)
    except ValueError:
        errors["role"] = "Select a role"
        return None, None
    if role is Role.ADMIN:
        return role, None
    if not body_code:
        errors["body_code"] = "Select the body the user works for (every role but administrator has one)"
        return role, None
    if session.get(Body, str(body_code)) is None:
        errors["body_code"] = "Select a body from the list"
        return role, None
    return role, str(body_code)


def invite_user(session: Session, admin: User, data: Mapping[str, Any], now: datetime, messenger: Messenger) -> User:
    """Create an invited user (name, email, role, body_code) and e-mail them their link (``new_invitation``).
    A staff or lead account is pending; its body's leads are told. ``InvitationsUnavailable`` (nothing
    written) when the link could not go by e-mail alone."""
    _require_admin(admin)
    messenger.check_invitations()
    errors: dict[str, str] = {}
    name = str(data.get("name") or "").strip()
    if not name:
        errors["name"] = "Enter the user's name"
    elif len(name) > 200:
        errors["name"] = "Name must be 200 characters or fewer"
    email = normalise_email(str(data.get("email") or ""))
    if not email:
        errors["email"] = "Enter the user's email address"
    elif (problem := email_problem(email)) is not None:
        errors["email"] = f"Enter a valid email address: {problem}"
    elif session.scalar(select(func.count()).select_from(User).where(func.lower(User.email) == email)):
        errors["email"] = "A user with this email address already exists"
    role, body = _role_and_body(session, errors, data.get("role"), data.get("body_code"))
    if errors:
        raise InvalidInput(errors)
    assert role is not None
    now = ensure_utc(now)
    user = User(email=email, name=name, role=role, body_code=body, password_hash=UNUSABLE_PASSWORD, active=True,
                created_at=now)
    session.add(user)
    session.flush()
    make_pending(session, user, now, messenger)
    new_invitation(session, admin, user, now, messenger)
    return user


def new_invitation(session: Session, admin: User, user: User, now: datetime, messenger: Messenger) -> None:
    """A fresh invitation for ``user`` (earlier unused ones stop working), its link e-mailed to them at once.
    The token exists only in that e-mail (and the outbox row that carries it): never returned, shown or
    logged. ``InvitationsUnavailable`` when it could not go by e-mail alone (production with the log channel)."""
    _require_admin(admin)
    messenger.check_invitations()
    now = ensure_utc(now)
    for old in session.scalars(select(Invitation).where(Invitation.user_id == user.id, Invitation.used_at.is_(None))):
        old.expires_at = min(ensure_utc(old.expires_at), now)
    token = secrets.token_urlsafe(32)
    invitation = Invitation(user_id=user.id, token_hash=_digest(token), created_by_id=admin.id, created_at=now,
                            expires_at=now + INVITATION_LIFETIME)
    session.add(invitation)
    session.flush()
    body = user.body.name if user.body is not None else None
    messenger.invitation(session, user, {
        "name": user.name, "invited_by": admin.name, "role": ROLE_WORDS[user.role], "body": body,
        "needs_confirmation": user.role in BODY_ROLES, "expires_text": local_text(invitation.expires_at),
        "url": f"{messenger.base_url.rstrip('/')}/invitation/{token}"}, f"invitation:{invitation.id}", now)
    record(session, now, "invitation_sent", actor=admin, subject=user,
           detail={"role": user.role.value, "body": user.body_code})


def open_invitation(session: Session, token: str, now: datetime) -> Invitation | None:
    """The usable invitation for ``token``: unused, unexpired, for an active user; else ``None``."""
    if not token or len(token) > 200:
        return None
    row = session.scalars(select(Invitation).where(Invitation.token_hash == _digest(token))).one_or_none()
    if row is None or row.used_at is not None or ensure_utc(row.expires_at) <= ensure_utc(now):
        return None
    return row if row.user.active else None


def accept_invitation(session: Session, token: str, password: str, confirm: str, now: datetime) -> User:
    invitation = open_invitation(session, token, now)
    if invitation is None:
        raise NotAllowed("this invitation link is not valid: it has been used, has expired or was replaced")
    errors: dict[str, str] = {}
    problem = password_problem(password)
    if problem:
        errors["password"] = f"Password {problem}"
    elif password != confirm:
        errors["confirm"] = "The passwords do not match"
    if errors:
        raise InvalidInput(errors)
    invitation.used_at = ensure_utc(now)
    invitation.user.password_hash = hash_password(password)
    session.flush()
    record(session, now, "invitation_accepted", actor=invitation.user, subject=invitation.user)
    return invitation.user


def change_role(session: Session, admin: User, user: User, role_text: Any, body_code: Any, now: datetime,
                messenger: Messenger | None = None) -> None:
    """A new role or body signs the user out and, for staff and leads, makes the account pending again (its
    new body's leads are told if a messenger is given)."""
    _require_admin(admin)
    errors: dict[str, str] = {}
    role, body = _role_and_body(session, errors, role_text, body_code)
    if role is not None and user.id == admin.id and role is not Role.ADMIN:
        errors["role"] = "You cannot remove your own administrator role"
    if errors:
        raise InvalidInput(errors)
    assert role is not None
    if (user.role, user.body_code) != (role, body):
        before = {"from_role": user.role.value, "from_body": user.body_code}
        user.role, user.body_code = role, body
        end_all_sessions(session, user, now, "role_changed")  # what they may see changed
        make_pending(session, user, now, messenger)
        record(session, now, "role_changed", actor=admin, subject=user,
               detail={**before, "role": role.value, "body": body, "pending": user.pending})
    session.flush()


def set_active(session: Session, admin: User, user: User, active: bool, now: datetime,
               messenger: Messenger | None = None, *, client: str | None = None) -> None:
    """Deactivating ends every session. Reactivating an account a lead refused makes it pending again. A change
    is an access-log entry."""
    _require_admin(admin)
    if user.id == admin.id and not active:
        raise NotAllowed("you cannot deactivate yourself")
    if user.active == active:
        return
    user.active = active
    if not active:
        end_all_sessions(session, user, now, "deactivated")
    elif user.refused_at is not None:
        make_pending(session, user, now, messenger)
    access_log.record(session, now, "account_reactivated" if active else "account_deactivated", actor=admin,
                      subject=user, client=client)
    session.flush()


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.active.desc(), User.name, User.id)))


ROLE_WORDS = {Role.STAFF: "a member of staff", Role.LEAD: "a lead", Role.AUDITOR: "an auditor",
              Role.ADMIN: "an administrator"}


def is_invited(user: User) -> bool:
    return user.password_hash == UNUSABLE_PASSWORD


# -- establishments ---------------------------------------------------------------------------------


def _establishment_fields(session: Session, data: Mapping[str, Any], current: Establishment | None) -> dict[
        str, Any]:
    """The form's values (see :func:`reprisals.reference.establishment_fields`) and whether it is active."""
    values = establishment_fields(session, data, current, from_form=True)
    return {**values, "active": bool(data.get("active"))}


def create_establishment(session: Session, admin: User, data: Mapping[str, Any]) -> Establishment:
    _require_admin(admin)
    row = Establishment(**_establishment_fields(session, data, None))
    session.add(row)
    session.flush()
    return row


def update_establishment(session: Session, admin: User, row: Establishment, data: Mapping[str, Any]) -> None:
    _require_admin(admin)
    for key, value in _establishment_fields(session, data, row).items():
        setattr(row, key, value)
    session.flush()
