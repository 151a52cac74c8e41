"""The access log: who signed in, who was given what power, who saw what — append-only, tamper-evident.

Every entry is a row of ``access_log`` (database triggers refuse UPDATE and DELETE, as on history) whose
``hash`` covers its content. A chain per day (``access_log_days``) is sealed once the day is over: its
head is the hash over that day's entry hashes in id order and the previous sealed day's head, so an entry
removed, edited or slipped into a sealed day shows, and the days cannot be reordered. Writers never wait
on one another (one chain over every write would serialise them all: decision 3); only the sealing, once a
day, reads a day's rows in order.

Never any identity in it: an entry names the actor, the case (its id, shown as its reference), the user
acted on and a few words of detail, never a reason typed by a person (reasons may name someone; the
history of the case keeps them, encrypted).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, Index, Integer, String, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from reprisals.models import User
from workflow.clock import ensure_utc
from workflow.models import Base

HASH_VERSION = 1
DAY_GENESIS = hashlib.sha256(b"access-log:genesis").hexdigest()

# Every kind of entry, with the words the log's page shows. Recording a kind not listed is a bug.
KINDS: dict[str, str] = {
    "signed_in": "Signed in",
    "signed_out": "Signed out",
    "sign_in_refused": "Sign-in refused from a new address (account under attack)",
    "two_factor_enrolled": "Set up two-factor sign-in",
    "two_factor_reset": "Two-factor sign-in reset",
    "recovery_code_used": "Used a recovery code",
    "recovery_codes_renewed": "Made new recovery codes",
    "two_factor_locked": "Too many wrong two-factor codes (further codes refused for a while)",
    "two_factor_reset_asked": "Two-factor reset asked for (a lead of the body must approve)",
    "two_factor_reset_declined": "Two-factor reset declined by a lead",
    "token_created": "API token created",
    "token_revoked": "API token revoked",
    "invitation_sent": "Invitation sent",
    "invitation_accepted": "Invitation accepted",
    "account_confirmed": "Account confirmed by a lead",
    "account_refused": "Account refused by a lead",
    "user_added": "Account added by the operator",
    "role_changed": "Role or body changed",
    "account_deactivated": "Account deactivated",
    "account_reactivated": "Account reactivated",
    "protocol_uploaded": "Protocol version uploaded",
    "protocol_activated": "Protocol version activated",
    "export": "Exported or downloaded",
    "unlocked": "Unlocked sensitive content",
    "viewed_sensitive": "Viewed sensitive content",
    "keys_rotated": "Encryption keys rotated",
    "checkpoint_signed": "Audit checkpoint signed",
    "unmask_requested": "Asked to see who the person is (a lead must approve)",
    "unmask_approved": "Request to see who the person is approved by a lead",
    "unmask_refused": "Request to see who the person is refused by a lead",
    "unmask_viewed": "Saw who the person is through an approved request",
}

VIA = ("web", "api", "cli", "scheduler")


class AccessEntry(Base):
    __tablename__ = "access_log"
    __table_args__ = (Index("ix_access_log_day_id", "day", "id"),
                      Index("ix_access_log_case_id_at", "case_id", "at"),
                      Index("ix_access_log_actor_id_at", "actor_id", "at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column()
    day: Mapped[date] = mapped_column(Date)  # the UTC day of ``at``: the chain it belongs to
    kind: Mapped[str] = mapped_column(String(40))
    via: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    subject_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    client_hash: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    hash_version: Mapped[int] = mapped_column(Integer, default=HASH_VERSION)
    hash: Mapped[str] = mapped_column(String(64))


class AccessDay(Base):
    """A sealed day of the log: how many entries, the last one's id, and the day's head."""

    __tablename__ = "access_log_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    entries: Mapped[int] = mapped_column(Integer)
    last_id: Mapped[int] = mapped_column(Integer)
    prev_hash: Mapped[str] = mapped_column(String(64))
    head: Mapped[str] = mapped_column(String(64))
    sealed_at: Mapped[datetime] = mapped_column()


def client_digest(client: str | None) -> str | None:
    return None if not client else hashlib.sha256(("client:" + client).encode()).hexdigest()


def _iso(at: datetime) -> str:
    return ensure_utc(at).astimezone(UTC).isoformat(timespec="microseconds")


def entry_hash(entry: AccessEntry) -> str:
    payload = {"v": entry.hash_version, "at": _iso(entry.at), "day": entry.day.isoformat(), "kind": entry.kind,
               "via": entry.via, "actor": entry.actor_id, "subject": entry.subject_user_id, "case": entry.case_id,
               "client": entry.client_hash, "detail": entry.detail}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _link(prev: str, entry_hash_: str) -> str:
    return hashlib.sha256(f"{prev}:{entry_hash_}".encode()).hexdigest()


def record(session: Session, now: datetime, kind: str, *, actor: User | int | None = None,
           via: str = "web", case_id: int | None = None, subject: User | int | None = None,
           client: str | None = None, detail: Mapping[str, Any] | None = None) -> AccessEntry:
    """Append one entry in the caller's transaction (it commits with what it records). ``detail`` holds a
    few facts in words or codes (a token's name, a role), never a reason typed by a person."""
    if kind not in KINDS:
        raise ValueError(f"unknown access-log kind {kind!r}")
    if via not in VIA:
        raise ValueError(f"unknown access-log channel {via!r}")
    at = ensure_utc(now)
    entry = AccessEntry(at=at, day=at.astimezone(UTC).date(), kind=kind, via=via,
                        actor_id=actor.id if isinstance(actor, User) else actor,
                        subject_user_id=subject.id if isinstance(subject, User) else subject,
                        case_id=case_id, client_hash=client_digest(client), detail=dict(detail or {}),
                        hash_version=HASH_VERSION)
    entry.hash = entry_hash(entry)
    session.add(entry)
    session.flush()
    return entry


def seal_days(session: Session, now: datetime) -> int:
    """Seal every day before today (UTC) that has entries and is not sealed yet, oldest first; returns
    how many were sealed. The scheduler runs it with each sweep; it is cheap when there is nothing to do."""
    today = ensure_utc(now).astimezone(UTC).date()
    last = session.scalars(select(AccessDay).order_by(AccessDay.day.desc()).limit(1)).first()
    since = last.day if last else date.min
    days = list(session.scalars(select(AccessEntry.day).where(AccessEntry.day > since, AccessEntry.day < today)
                                .group_by(AccessEntry.day).order_by(AccessEntry.day)))
    prev = last.head if last else DAY_GENESIS
    for day in days:
        head, count, last_id = prev, 0, 0
        for entry_id, h in session.execute(select(AccessEntry.id, AccessEntry.hash)
                                           .where(AccessEntry.day == day).order_by(AccessEntry.id)):
            head, count, last_id = _link(head, h), count + 1, entry_id
        session.add(AccessDay(day=day, entries=count, last_id=last_id, prev_hash=prev, head=head,
                              sealed_at=ensure_utc(now)))
        prev = head
    session.flush()
    return len(days)


@dataclass
class LogReport:
    entries: int = 0
    days: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_log(session: Session) -> LogReport:
    """Check every entry's hash, and every sealed day's chain, count and order of days."""
    report = LogReport()
    sealed = {d.day: d for d in session.scalars(select(AccessDay).order_by(AccessDay.day))}
    report.days = len(sealed)
    heads: dict[date, tuple[str, int, int]] = {}
    prev_day: date | None = None
    chain = DAY_GENESIS
    for entry in session.scalars(select(AccessEntry).order_by(AccessEntry.day, AccessEntry.id)
                                 .execution_options(yield_per=2000)):
        report.entries += 1
        if entry_hash(entry) != entry.hash:
            report.problems.append(f"access log: entry {entry.id} of {entry.day.isoformat()} does not match its "
                                   "hash (edited)")
        if entry.day in sealed:
            if entry.day != prev_day:
                chain = sealed[entry.day].prev_hash
                prev_day = entry.day
            h, n, _ = heads.get(entry.day, (chain, 0, 0))
            chain = _link(h, entry.hash)
            heads[entry.day] = (chain, n + 1, entry.id)
    previous_head = DAY_GENESIS
    for day, row in sealed.items():
        head, count, last_id = heads.get(day, (row.prev_hash, 0, 0))
        if row.prev_hash != previous_head:
            report.problems.append(f"access log: the day {day.isoformat()} does not follow the day sealed before "
                                   "it (a day removed or its seal rewritten)")
        if count != row.entries or head != row.head or last_id != row.last_id:
            report.problems.append(f"access log: the entries of {day.isoformat()} are not the {row.entries} "
                                   f"sealed (found {count}: entries removed, added or edited)")
        previous_head = row.head
    return report


def entries(session: Session, *, kind: str | None = None, actor_id: int | None = None,
            case_id: int | None = None, since: datetime | None = None, until: datetime | None = None,
            limit: int | None = 200, offset: int = 0) -> Sequence[AccessEntry]:
    """Entries newest first, filtered."""
    stmt = select(AccessEntry).order_by(AccessEntry.id.desc())
    if kind:
        stmt = stmt.where(AccessEntry.kind == kind)
    if actor_id is not None:
        stmt = stmt.where(AccessEntry.actor_id == actor_id)
    if case_id is not None:
        stmt = stmt.where(AccessEntry.case_id == case_id)
    if since is not None:
        stmt = stmt.where(AccessEntry.at >= ensure_utc(since))
    if until is not None:
        stmt = stmt.where(AccessEntry.at < ensure_utc(until))
    if limit is not None:
        stmt = stmt.limit(limit).offset(offset)
    return list(session.scalars(stmt))


def count(session: Session, *, kind: str | None = None) -> int:
    stmt = select(func.count()).select_from(AccessEntry)
    if kind:
        stmt = stmt.where(AccessEntry.kind == kind)
    return int(session.scalar(stmt) or 0)

