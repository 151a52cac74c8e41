"""Signing in, staying signed in, and API tokens — all state on the server.

* A browser session is a row (``web_sessions``): the cookie carries a random token whose SHA-256 is
  stored, never the token itself. Signing out, deactivation and a password change end the rows, so a
  copied cookie stops working at once (a signed-cookie session alone would survive sign-out).
  Sessions end after ``IDLE`` without use and ``ABSOLUTE`` after sign-in, whichever comes first.
* Guessing is slowed before any password is hashed (decision 20). Failed sign-ins are counted in
  buckets (``sign_in_buckets``): one row per account, client address and 15-minute window, with a
  count, upserted — never a row per failure, so an attacker cannot fill the database, and every worker
  process counts the same failures. Within ``THROTTLE_LOOKBACK``, after ``FREE_FAILURES`` for one
  account from one address, or ``FREE_FAILURES_PER_CLIENT`` from one address, each further attempt
  waits (1 minute, then doubling, at most ``LONGEST_WAIT``) and is refused at once with the wait
  (HTTP 429, ``Retry-After``). After ``UNDER_ATTACK`` failures of one account from any addresses, it
  is refused from addresses it has never signed in from (``sign_in_addresses``), so the owner still
  signs in from their usual places; the owner is told. Addresses and accounts are stored hashed; an
  unknown account is counted and answered exactly like a known one, so throttling reveals nothing.
* API tokens are random, shown once, stored as SHA-256, revocable by their owner or an admin.
* A report being written (its answers include who the person is) is a row of its session
  (``report_drafts``), encrypted and bound to that session: it ends with the session, and a draft
  not touched for ``ABSOLUTE`` is deleted whatever became of its session.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, Index, Integer, String, Text, case, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column, object_session, relationship

from reprisals import access_log
from reprisals.crypto import Cipher
from reprisals.errors import IdentityUnreadable, InvalidInput, NotAllowed
from reprisals.models import Role, User
from reprisals.passwords import hash_password, needs_rehash, verify_password
from workflow.clock import ensure_utc
from workflow.models import Base

if TYPE_CHECKING:
    from reprisals.messaging import Messenger

IDLE = timedelta(minutes=30)
ABSOLUTE = timedelta(hours=12)
TOUCH_EVERY = timedelta(minutes=1)  # last_seen_at is written at most this often
THROTTLE_WINDOW = timedelta(minutes=15)  # one bucket of failures
THROTTLE_LOOKBACK = timedelta(hours=24)  # the buckets that count (older ones are deleted)
FREE_FAILURES = 5  # for one account from one address, before the first wait
FREE_FAILURES_PER_CLIENT = 20  # from one address, across accounts
FIRST_WAIT = timedelta(minutes=1)  # then doubling with each further failure
LONGEST_WAIT = timedelta(hours=1)
UNDER_ATTACK = 50  # failures of one account, from any addresses: only addresses it has used may try
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


class SignInBucket(Base):
    """Failed sign-ins of one account (hashed address) from one client address (hashed) in one window
    of ``THROTTLE_WINDOW``: a count, upserted. ``refused`` counts those refused from a new address."""

    __tablename__ = "sign_in_buckets"
    __table_args__ = (Index("ix_sign_in_buckets_client_window", "client_hash", "window_start"),
                      Index("ix_sign_in_buckets_window", "window_start"))

    account_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    refused: Mapped[int] = mapped_column(Integer)
    last_at: Mapped[datetime] = mapped_column()


class SignInAddress(Base):
    """A client address (hashed, as its network: see ``client_network``) a user has signed in from."""

    __tablename__ = "sign_in_addresses"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    client_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    first_at: Mapped[datetime] = mapped_column()
    last_at: Mapped[datetime] = mapped_column()


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
    """Too many failed sign-ins: refused before the password is checked, nothing counted.
    ``retry_after`` is in whole seconds; the message names no account."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(self.words(_duration(self.retry_after)))

    @staticmethod
    def words(wait: str) -> str:
        return f"Too many failed attempts to sign in. Wait {wait} and try again."


class RefusedFromNewAddress(Throttled):
    """The account has had ``UNDER_ATTACK`` failures: it may be signed in to only from an address it
    has signed in from before. Counted (and logged once per window and address); the caller commits."""

    @staticmethod
    def words(wait: str) -> str:
        return ("There have been many failed attempts to sign in to this account, so for now it can only be "
                "signed in to from a network it has been signed in from before. Sign in from one of those, or "
                f"try again in {wait}.")


def _duration(seconds: int) -> str:
    minutes = math.ceil(seconds / 60)
    if minutes < 60:
        return f"{minutes} minute" + ("s" if minutes != 1 else "")
    hours = math.ceil(minutes / 60)
    return f"{hours} hour" + ("s" if hours != 1 else "")


@dataclass(frozen=True)
class SignedIn:
    session: WebSession
    token: str


def account_digest(email: str) -> str:
    """How failed sign-ins name the account tried (the address typed, normalised, hashed)."""
    return _digest("account:" + normalise_email(email))


def normalise_email(email: str) -> str:
    return email.strip().lower()


def client_network(client: str) -> str:
    """What a client address is counted as: an IPv4 address itself, an IPv6 address its /64 (one
    subscriber's network: they may use any of its 2^64 addresses, and privacy addresses change daily),
    anything else as given."""
    try:
        ip = ipaddress.ip_address(client.strip())
    except ValueError:
        return client
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _window(now: datetime) -> datetime:
    """The start of the bucket ``now`` falls in (windows start on the quarter hour)."""
    step = int(THROTTLE_WINDOW.total_seconds() // 60)
    return now.replace(minute=now.minute - now.minute % step, second=0, microsecond=0)


def _wait(failures: int, free: int) -> timedelta:
    if failures < free:
        return timedelta(0)
    doublings: int = min(failures - free, 16)
    return min(FIRST_WAIT * (1 << doublings), LONGEST_WAIT)


def _check_waits(session: Session, account_hash: str, client_hash: str, now: datetime) -> None:
    """Raise :class:`Throttled` if this address, or this account from it, must still wait."""
    pair = SignInBucket.account_hash == account_hash
    row = session.execute(select(
        func.coalesce(func.sum(SignInBucket.failures), 0), func.max(SignInBucket.last_at),
        func.coalesce(func.sum(case((pair, SignInBucket.failures), else_=0)), 0),
        func.max(case((pair, SignInBucket.last_at), else_=None)),
    ).where(SignInBucket.client_hash == client_hash, SignInBucket.window_start > now - THROTTLE_LOOKBACK)).one()
    by_client, client_last, by_pair, pair_last = row
    until = max((ensure_utc(last) + _wait(int(n), free) for n, last, free in (
        (by_client, client_last, FREE_FAILURES_PER_CLIENT), (by_pair, pair_last, FREE_FAILURES))
        if last is not None), default=now)
    if until > now:
        raise Throttled((until - now).total_seconds())


def _attack_windows(session: Session, account_hash: str, now: datetime) -> list[tuple[datetime, int]]:
    """The account's failures per window within the lookback, oldest first."""
    rows = session.execute(select(SignInBucket.window_start, func.sum(SignInBucket.failures))
                           .where(SignInBucket.account_hash == account_hash,
                                  SignInBucket.window_start > now - THROTTLE_LOOKBACK)
                           .group_by(SignInBucket.window_start).order_by(SignInBucket.window_start))
    return [(ensure_utc(at), int(n)) for at, n in rows]


def _attack_ends(windows: list[tuple[datetime, int]]) -> datetime | None:
    """When the account falls below ``UNDER_ATTACK`` failures if nothing more fails (``None``: it is)."""
    total = sum(n for _, n in windows)
    if total < UNDER_ATTACK:
        return None
    for at, n in windows:
        total -= n
        if total < UNDER_ATTACK:
            return at + THROTTLE_LOOKBACK  # this window leaves the lookback
    return None  # not reached: the total falls to 0


def _count_failure(session: Session, account_hash: str, client_hash: str, now: datetime, *,
                   refused: bool = False) -> int:
    """Add one failure to its bucket (an upsert), and delete buckets past the lookback. Returns the
    bucket's count of refusals from a new address."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = insert(SignInBucket).values(account_hash=account_hash, client_hash=client_hash, window_start=_window(now),
                                       failures=1, refused=int(refused), last_at=now)
    upsert = stmt.on_conflict_do_update(
        index_elements=[SignInBucket.account_hash, SignInBucket.client_hash, SignInBucket.window_start],
        set_={"failures": SignInBucket.failures + 1, "refused": SignInBucket.refused + int(refused),
              "last_at": stmt.excluded.last_at}).returning(SignInBucket.refused)
    count = int(session.execute(upsert).scalar_one())
    session.execute(delete(SignInBucket).where(SignInBucket.window_start <= now - THROTTLE_LOOKBACK))
    return count


def _tell_owner(session: Session, user: User | None, windows: list[tuple[datetime, int]], now: datetime,
                messenger: Messenger | None) -> None:
    if messenger is not None and user is not None and user.active and sum(n for _, n in windows) >= UNDER_ATTACK:
        messenger.sign_in_attack(session, user, UNDER_ATTACK, now)


def sign_in(session: Session, email: str, password: str, client: str, now: datetime, *,
            messenger: Messenger | None = None,
            second_step: Callable[[User], bool] | None = None) -> SignedIn | None:
    """Check the password and start a server-side session. ``None`` for a wrong address or password
    (indistinguishable). Before any password is hashed: :class:`Throttled` while this address, or this
    account from it, must wait (nothing is written); :class:`RefusedFromNewAddress` when the account is
    under attack and this address has never signed in to it (counted, logged, the owner told through
    ``messenger``). The caller commits in every case: what was counted must be seen by every worker."""
    now = ensure_utc(now)
    address = normalise_email(email)
    account_hash, client_hash = account_digest(address), _digest("client:" + client_network(client))
    _check_waits(session, account_hash, client_hash, now)
    user = session.scalars(select(User).where(func.lower(User.email) == address)).one_or_none()
    windows = _attack_windows(session, account_hash, now)
    if sum(n for _, n in windows) >= UNDER_ATTACK:
        # The same statement whether or not the account exists: the answer must not tell.
        known = session.scalar(select(func.count()).select_from(SignInAddress).where(
            SignInAddress.user_id == (user.id if user else 0), SignInAddress.client_hash == client_hash))
        if not known:
            if _count_failure(session, account_hash, client_hash, now, refused=True) == 1 and user is not None:
                access_log.record(session, now, "sign_in_refused", subject=user, client=client)
            windows = _attack_windows(session, account_hash, now)
            _tell_owner(session, user, windows, now, messenger)
            session.flush()
            raise RefusedFromNewAddress(((_attack_ends(windows) or now) - now).total_seconds())
    ok = verify_password(user.password_hash if user else _DUMMY_HASH, password)
    if user is None or not ok or not user.active:
        _count_failure(session, account_hash, client_hash, now)
        _tell_owner(session, user, _attack_windows(session, account_hash, now), now, messenger)
        session.flush()
        return None
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    # This address's failures on this account are forgiven; the account's others still count.
    session.execute(delete(SignInBucket).where(SignInBucket.account_hash == account_hash,
                                               SignInBucket.client_hash == client_hash))
    if second_step is None or not second_step(user):
        signed_in_from(session, user, client, now)
    # else the address becomes one the account signs in from only once the second step is given (web/two_factor.py):
    # an address that knows only the password must not pass the rule for accounts under attack.
    return start_session(session, user, now)


def signed_in_from(session: Session, user: User, client: str, now: datetime) -> None:
    """The user has signed in from ``client``: it becomes an address they may sign in from while their
    account is under attack, and the access log says so (``signed_in``, the address hashed)."""
    now = ensure_utc(now)
    client_hash = _digest("client:" + client_network(client))
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = insert(SignInAddress).values(user_id=user.id, client_hash=client_hash, first_at=now, last_at=now)
    session.execute(stmt.on_conflict_do_update(index_elements=[SignInAddress.user_id, SignInAddress.client_hash],
                                               set_={"last_at": stmt.excluded.last_at}))
    access_log.record(session, now, "signed_in", actor=user, client=client)


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


def end_session(session: Session, token: str, now: datetime, *, client: str | None = None) -> None:
    """Sign out: end the session (and its draft), and say so in the access log."""
    row = session.scalars(select(WebSession).where(WebSession.token_hash == _digest(token))).one_or_none()
    if row is not None and row.ended_at is None:
        _end(row, ensure_utc(now), "signed_out")
        access_log.record(session, now, "signed_out", actor=row.user_id, client=client)


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
