"""No path from administration to identity: an account that can read identity waits for a lead of its body.

A staff or lead account (``BODY_ROLES``) is *pending* (``User.pending``: ``confirmed_at`` is NULL) when an
admin invites it and whenever an admin changes its role or body. While pending it signs in but holds no
role on any case and sees none (``reprisals.access.has_access``), hears nothing of cases, and cannot be
assigned one. An active, confirmed lead of its body — never the account itself — confirms it, or refuses
it with a reason for the admins (a refusal deactivates it; reactivating it makes it pending again). The
operator's accounts (``reprisals users add``) and the demo's are confirmed when made: the first lead of a
body can only come from the server (decision 22).

Each operation flushes and never commits; each decision is an access-log entry (never the reason).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from reprisals.access_log import AccessEntry, record
from reprisals.accounts import end_all_sessions
from reprisals.errors import InvalidInput, NotAllowed
from reprisals.messaging import Messenger
from reprisals.models import BODY_ROLES, Role, User
from workflow.clock import ensure_utc
from workflow.text import clean_text, is_blank

MAX_REASON = 1000


def may_confirm(lead: User) -> bool:
    """An active lead of a body whose own account is confirmed."""
    return lead.active and lead.role is Role.LEAD and lead.body_code is not None and not lead.pending


def make_pending(session: Session, user: User, now: datetime, messenger: Messenger | None) -> None:
    """``user`` waits again for a lead of its body (a new account, or a new role or body); the body's leads
    are told in the app if a messenger is given. Nothing to do for roles that cannot read identity."""
    user.confirmed_at = None
    user.refused_at = None
    user.refusal_reason = None
    session.flush()
    if user.role in BODY_ROLES and user.active and messenger is not None:
        messenger.account_to_confirm(session, user, now)


def list_pending(session: Session, lead: User) -> list[User]:
    """The accounts of ``lead``'s body waiting for a lead (not refused, active), oldest first; none for a
    user who may not confirm."""
    if not may_confirm(lead):
        return []
    return list(session.scalars(
        select(User).where(User.body_code == lead.body_code, User.role.in_(BODY_ROLES), User.confirmed_at.is_(None),
                           User.refused_at.is_(None), User.active.is_(True), User.id != lead.id)
        .order_by(User.created_at, User.id)))


def get_pending(session: Session, lead: User, user_id: int) -> User | None:
    """One of ``list_pending(lead)``, or None (another body's account looks like none at all)."""
    user = session.get(User, user_id)
    if user is None or not may_confirm(lead) or user.id == lead.id or user.body_code != lead.body_code:
        return None
    if not user.pending or user.refused_at is not None or not user.active:
        return None
    return user


def _check(lead: User, user: User) -> None:
    if not may_confirm(lead):
        raise NotAllowed("only a lead of a body whose own account is confirmed can confirm accounts")
    if user.id == lead.id:
        raise NotAllowed("you cannot confirm or refuse your own account")
    if user.body_code != lead.body_code:
        raise NotAllowed(f"only a lead of {user.body_code or 'its body'} can confirm or refuse this account")
    if not user.pending or user.refused_at is not None or not user.active:
        raise NotAllowed(f"{user.name}'s account is not waiting for confirmation")


def confirm_account(session: Session, lead: User, user: User, now: datetime, *, via: str = "web") -> None:
    """``lead`` confirms that ``user`` works for their body in the role the account has."""
    _check(lead, user)
    user.confirmed_at = ensure_utc(now)
    session.flush()
    record(session, now, "account_confirmed", actor=lead, via=via, subject=user,
           detail={"role": user.role.value, "body": user.body_code})


def refuse_account(session: Session, lead: User, user: User, reason: object, now: datetime, *,
                   via: str = "web") -> None:
    """``lead`` refuses ``user``'s account, with a reason the admins see; the account is deactivated and
    signed out. The reason stays on the account, never in the access log (it may name someone)."""
    _check(lead, user)
    try:
        text = clean_text(reason, multiline=True) if isinstance(reason, str) else ""
    except ValueError as exc:
        raise InvalidInput({"reason": f"The reason {exc}"}) from None
    if is_blank(text):
        raise InvalidInput({"reason": "Enter why you are refusing this account (the administrators will see it)"})
    if len(text) > MAX_REASON:
        raise InvalidInput({"reason": f"The reason must be {MAX_REASON} characters or fewer"})
    at = ensure_utc(now)
    user.refused_at = at
    user.refusal_reason = text
    user.active = False
    end_all_sessions(session, user, at, "refused")
    session.flush()
    record(session, now, "account_refused", actor=lead, via=via, subject=user,
           detail={"role": user.role.value, "body": user.body_code})


def refused_by(session: Session, user: User) -> User | None:
    """The lead who refused ``user``'s account last (the actor of its latest ``account_refused`` entry)."""
    actor_id = session.scalar(select(AccessEntry.actor_id).where(AccessEntry.kind == "account_refused",
                                                                 AccessEntry.subject_user_id == user.id)
                              .order_by(AccessEntry.id.desc()).limit(1))
    return session.get(User, actor_id) if actor_id is not None else None
