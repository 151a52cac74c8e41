"""Signing in, staying signed in, and API tokens — all state on the server.

* A browser session is a row (``web_sessions``): the cookie carries a random token whose SHA-256 is
  stored, never the token itself. Signing out, deactivation and a password change end the rows, so a
  copied cookie stops working at once (a signed-cookie session alone would survive sign-out).
  Sessions end after ``IDLE`` without use and ``ABSOLUTE`` after sign-in, whichever comes first.
* Failed sign-ins are rows too (``sign_in_failures``), so every worker process counts the same
  failures: after ``MAX_FAILURES`` for one address, or ``MAX_FAILURES_PER_CLIENT`` from one client,
  within ``THROTTLE_WINDOW``, sign-in is refused for that window. The address is stored hashed; an
  unknown address is counted exactly like a known one, so throttling reveals nothing.
* API tokens are random, shown once, stored as SHA-256, revocable by their owner or an admin.
* A report being written (its answers include who the person is) is a row of its session
  (``report_drafts``), encrypted and bound to that session: it ends with the session, and a draft
  not touched for ``ABSOLUTE`` is deleted whatever became of its session.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, Index, Integer, String, Text, delete, func, or_, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column, object_session, relationship

from reprisals import access_log
from reprisals.crypto import Cipher
from reprisals.errors import IdentityUnreadable, InvalidInput, NotAllowed
from reprisals.models import Role, User
from reprisals.passwords import hash_password, needs_rehash, verify_password
from workflow.clock import ensure_utc
from workflow.models import Base

IDLE = timedelta(minutes=30)
ABSOLUTE = timedelta(hours=12)
TOUCH_EVERY = timedelta(minutes=1)  # last_seen_at is written at most this often
THROTTLE_WINDOW = timedelta(minutes=15)
MAX_FAILURES = 5
MAX_FAILURES_PER_CLIENT = 20
TOKEN_PREFIX = "rpr_"  # noqa: S105 (a prefix, not a secret)

# A valid hash to verify against when the address is unknown, so both paths cost the same.
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class WebSession(Base):
    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column()
    last_seen_at: Mapped[datetime] = mapped_column()
    ended_at: Mapped[datetime | None] = mapped_column()
    ended_why: Mapped[str | None] = mapped_column(String(40))
    # When this session gave its second factor (reprisals.two_factor); None: the password only.
    two_factor_at: Mapped[datetime | None] = mapped_column()

    user: Mapped[User] = relationship(lazy="joined", innerjoin=True)


class ReportDraft(Base):
    """The answers of a report not yet submitted, as ciphertext bound to its session (one per session)."""

    __tablename__ = "report_drafts"

    session_id: Mapped[int] = mapped_column(ForeignKey("web_sessions.id", ondelete="CASCADE"), primary_key=True)
    ciphertext: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(index=True)


class SignInFailure(Base):
    __tablename__ = "sign_in_failures"
    __table_args__ = (Index("ix_sign_in_failures_account_at", "account_hash", "at"),
                      Index("ix_sign_in_failures_client_at", "client_hash", "at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_hash: Mapped[str] = mapped_column(String(64))
    client_hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column()


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()

    user: Mapped[User] = relationship(lazy="joined", innerjoin=True)


class Heartbeat(Base):
    """The last time a process of a kind (``scheduler``) did its work; ``/healthz`` reports the age."""

    __tablename__ = "heartbeats"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    at: Mapped[datetime] = mapped_column()


# -- signing in ------------------------------------------------------------------------------------


class Throttled(Exception):
    """Too many failed sign-ins; the message names no account."""

    def __init__(self, minutes: int) -> None:
        super().__init__(f"Too many failed attempts to sign in. Wait {minutes} minutes and try again.")


@dataclass(frozen=True)
class SignedIn:
    session: WebSession
    token: str


def normalise_email(email: str) -> str:
    return email.strip().lower()


def _throttled(session: Session, account_hash: str, client_hash: str, now: datetime) -> bool:
    since = now - THROTTLE_WINDOW
    by_account = session.scalar(select(func.count()).select_from(SignInFailure).where(
        SignInFailure.account_hash == account_hash, SignInFailure.at > since)) or 0
    if by_account >= MAX_FAILURES:
        return True
    by_client = session.scalar(select(func.count()).select_from(SignInFailure).where(
        SignInFailure.client_hash == client_hash, SignInFailure.at > since)) or 0
    return by_client >= MAX_FAILURES_PER_CLIENT


def sign_in(session: Session, email: str, password: str, client: str, now: datetime) -> SignedIn | None:
    """Check the password and start a server-side session. ``None`` for a wrong address or password
    (indistinguishable); :class:`Throttled` after too many failures. The caller commits either way:
    a failure is recorded so that every worker sees it."""
    now = ensure_utc(now)
    address = normalise_email(email)
    account_hash, client_hash = _digest("account:" + address), _digest("client:" + client)
    if _throttled(session, account_hash, client_hash, now):
        raise Throttled(int(THROTTLE_WINDOW.total_seconds() // 60))
    user = session.scalars(select(User).where(func.lower(User.email) == address)).one_or_none()
    ok = verify_password(user.password_hash if user else _DUMMY_HASH, password)
    if user is None or not ok or not user.active:
        session.add(SignInFailure(account_hash=account_hash, client_hash=client_hash, at=now))
        session.flush()
        return None
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    session.execute(delete(SignInFailure).where(SignInFailure.account_hash == account_hash))
    return start_session(session, user, now)


def start_session(session: Session, user: User, now: datetime) -> SignedIn:
    token = secrets.token_urlsafe(32)
    row = WebSession(token_hash=_digest(token), user=user, created_at=now, last_seen_at=now)
    session.add(row)
    session.flush()
    return SignedIn(row, token)


def load_session(session: Session, token: str, now: datetime) -> WebSession | None:
    """The live session for a cookie's token, touched; ``None`` (and ended) if idle or too old."""
    now = ensure_utc(now)
    row = session.scalars(select(WebSession).where(WebSession.token_hash == _digest(token))).one_or_none()
    if row is None or row.ended_at is not None:
        return None
    if not row.user.active:
        _end(row, now, "deactivated")
        return None
    if now - ensure_utc(row.last_seen_at) > IDLE:
        _end(row, now, "idle")
        return None
    if now - ensure_utc(row.created_at) > ABSOLUTE:
        _end(row, now, "expired")
        return None
    if now - ensure_utc(row.last_seen_at) >= TOUCH_EVERY:
        row.last_seen_at = now
    return row


def _end(row: WebSession, now: datetime, why: str) -> None:
    row.ended_at, row.ended_why = now, why
    session = object_session(row)
    if session is not None:
        session.execute(delete(ReportDraft).where(ReportDraft.session_id == row.id))


def end_session(session: Session, token: str, now: datetime) -> None:
    row = session.scalars(select(WebSession).where(WebSession.token_hash == _digest(token))).one_or_none()
    if row is not None and row.ended_at is None:
        _end(row, ensure_utc(now), "signed_out")


def end_all_sessions(session: Session, user: User, now: datetime, why: str) -> int:
    """End every live session of a user (deactivation, password change), and their drafts."""
    live = select(WebSession.id).where(WebSession.user_id == user.id, WebSession.ended_at.is_(None))
    session.execute(delete(ReportDraft).where(ReportDraft.session_id.in_(live)))
    result = session.execute(update(WebSession).where(WebSession.user_id == user.id, WebSession.ended_at.is_(None))
                             .values(ended_at=ensure_utc(now), ended_why=why))
    return int(getattr(result, "rowcount", 0) or 0)


# -- the draft of a report --------------------------------------------------------------------------


def _draft_scope(web_session: WebSession) -> str:
    return f"report-draft:{web_session.id}"


def load_draft(session: Session, cipher: Cipher, web_session: WebSession) -> str | None:
    """The session's draft, decrypted; None if it has none, or one that cannot be read (a key removed
    since, or ciphertext that belongs to another session): that one is deleted."""
    row = session.get(ReportDraft, web_session.id)
    if row is None:
        return None
    try:
        return cipher.decrypt(_draft_scope(web_session), row.ciphertext)
    except IdentityUnreadable:
        session.delete(row)
        return None


def save_draft(session: Session, cipher: Cipher, web_session: WebSession, text: str, now: datetime) -> None:
    """Keep (or replace) the session's draft, and delete drafts nobody has touched for ``ABSOLUTE``."""
    now = ensure_utc(now)
    purge_drafts(session, now)
    sealed = cipher.encrypt(_draft_scope(web_session), text)
    row = session.get(ReportDraft, web_session.id)
    if row is None:
        session.add(ReportDraft(session_id=web_session.id, ciphertext=sealed, updated_at=now))
    else:
        row.ciphertext, row.updated_at = sealed, now
    session.flush()


def discard_draft(session: Session, web_session: WebSession) -> bool:
    """Delete the session's draft; False if it had none (already submitted, in another tab say)."""
    result = session.execute(delete(ReportDraft).where(ReportDraft.session_id == web_session.id))
    return bool(getattr(result, "rowcount", 0))


def purge_drafts(session: Session, now: datetime) -> int:
    """Delete the drafts of sessions that are over — ended, idle for ``IDLE`` or older than ``ABSOLUTE``
    (a closed browser ends nothing itself) — and any draft untouched for ``ABSOLUTE``. Run by the
    scheduler with each sweep and whenever a draft is saved."""
    now = ensure_utc(now)
    over = (select(WebSession.id).join(ReportDraft, ReportDraft.session_id == WebSession.id)
            .where(or_(WebSession.ended_at.is_not(None), WebSession.last_seen_at < now - IDLE,
                       WebSession.created_at < now - ABSOLUTE)))
    result = session.execute(delete(ReportDraft).where(
        or_(ReportDraft.updated_at < now - ABSOLUTE, ReportDraft.session_id.in_(over.scalar_subquery()))))
    return int(getattr(result, "rowcount", 0) or 0)


def change_password(session: Session, user: User, current: str, new: str, now: datetime) -> None:
    from reprisals.passwords import password_problem

    errors: dict[str, str] = {}
    if not verify_password(user.password_hash, current):
        errors["current_password"] = "is not your current password"  # noqa: S105
    problem = password_problem(new)
    if problem:
        errors["new_password"] = problem
    if errors:
        raise InvalidInput(errors)
    user.password_hash = hash_password(new)
    end_all_sessions(session, user, now, "password_changed")


# -- API tokens ------------------------------------------------------------------------------------


def create_token(session: Session, owner: User, name: str, now: datetime, *, by: User | None = None,
                 via: str = "web", client: str | None = None) -> tuple[ApiToken, str]:
    """A new token for ``owner`` (made by the owner or an admin; ``via="cli"``: the operator); the secret
    is returned once only. Logged (``token_created``). Browser pages make tokens only from a session that
    gave its second factor (``reprisals.two_factor.has_second_factor``); the API cannot make them."""
    operator = by is None and via == "cli"
    by = by or owner
    if by.id != owner.id and by.role is not Role.ADMIN:
        raise NotAllowed("only the owner or an admin can create a token")
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidInput({"name": "enter a name of at most 100 characters"})
    if not owner.active:
        raise InvalidInput({"user": "is deactivated"})
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(token_hash=_digest(secret), user_id=owner.id, name=name, created_at=ensure_utc(now))
    session.add(row)
    session.flush()
    access_log.record(session, now, "token_created", actor=None if operator else by, via=via, subject=owner,
                      client=client, detail={"token": row.id})
    return row, secret


def revoke_token(session: Session, token_id: int, by: User, now: datetime, *, via: str = "web",
                 client: str | None = None) -> ApiToken:
    """Revoke a token (its owner or an admin; ``via="cli"``: the operator, passing the owner as ``by``).
    Logged (``token_revoked``) the first time."""
    row = session.get(ApiToken, token_id)
    if row is None or (row.user_id != by.id and by.role is not Role.ADMIN):
        raise NotAllowed("no such token")
    if row.revoked_at is None:
        row.revoked_at = ensure_utc(now)
        access_log.record(session, now, "token_revoked", actor=None if via == "cli" else by, via=via,
                          subject=row.user_id, client=client, detail={"token": row.id})
    return row


def user_for_token(session: Session, secret: str, now: datetime) -> User | None:
    if not secret.startswith(TOKEN_PREFIX):
        return None
    row = session.scalars(select(ApiToken).where(ApiToken.token_hash == _digest(secret))).one_or_none()
    if row is None or row.revoked_at is not None or not row.user.active:
        return None
    if not hmac.compare_digest(row.token_hash, _digest(secret)):
        return None
    now = ensure_utc(now)
    if row.last_used_at is None or now - ensure_utc(row.last_used_at) >= TOUCH_EVERY:
        row.last_used_at = now
    return row.user


def tokens_of(session: Session, user: User) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id)))


def list_tokens(session: Session) -> list[ApiToken]:
    """Every user's tokens (the operator's view), oldest first; never their secrets."""
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))


# -- heartbeats ------------------------------------------------------------------------------------


def beat(session: Session, name: str, now: datetime) -> None:
    row = session.get(Heartbeat, name)
    if row is None:
        session.add(Heartbeat(name=name, at=ensure_utc(now)))
    else:
        row.at = ensure_utc(now)


def heartbeat_age(session: Session, name: str, now: datetime) -> float | None:
    at = session.scalar(select(Heartbeat.at).where(Heartbeat.name == name))
    return None if at is None else (ensure_utc(now) - ensure_utc(at)).total_seconds()
