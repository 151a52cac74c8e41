"""Reading the access log: who may see which entries, filters, entries in words and as CSV.

``reprisals.access_log`` writes and verifies the log; this module is what the page, its CSV download and
``reprisals audit log`` read it through. Queries never write, except :func:`record_export`, which
appends the ``export`` entry a download leaves (in the caller's transaction).

Who sees what (decision 23): an administrator (and the operator at the command line) sees every entry.
An auditor reviews their own body: entries about a case their body owns or is party to (the rule of
``reprisals.access.visible_cases``), and entries about no case that name a person of their body (as
actor or as the person acted on) or name nobody who belongs to a body at all — administrators' and the
operator's work (sign-ins, protocol versions, deactivations of administrators), which governance must be
able to review. Entries about another body's cases or only another body's people are not shown. Nobody
else sees the log. There is no identity in it to hide (``reprisals.access_log``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Select, and_, exists, false, func, or_, select, true
from sqlalchemy.orm import Session, aliased

from reprisals.access_log import KINDS, AccessEntry, record
from reprisals.errors import InvalidInput
from reprisals.models import Case, CaseParty, Role, User
from workflow.clock import ensure_utc

LONDON = ZoneInfo("Europe/London")
VIA_WORDS = {"web": "Web page", "api": "API", "cli": "Command line", "scheduler": "Scheduler"}
COUNT_CAP = 10_000  # a page counts at most this many matches ("more than 10,000")
CSV_HEADER = ("When (UTC)", "When (UK time)", "What", "Kind", "Channel", "Who", "Person acted on", "Case",
              "Details", "Entry hash")


@dataclass(frozen=True)
class LogFilters:
    """What to list. Dates are UK days, both included."""

    kind: str | None = None
    person_id: int | None = None
    case_id: int | None = None
    case_reference: str | None = None
    since: date | None = None
    until: date | None = None

    def words(self) -> dict[str, Any]:
        """The filters as an export entry's detail records them: the kind, the case's reference, the
        dates. The person filtered by is the entry's subject, and the case its case."""
        out: dict[str, Any] = {}
        if self.kind:
            out["kind"] = self.kind
        if self.case_reference:
            out["case"] = self.case_reference
        if self.since:
            out["from"] = self.since.isoformat()
        if self.until:
            out["to"] = self.until.isoformat()
        return out


@dataclass(frozen=True)
class LogRow:
    at: datetime
    kind: str
    what: str
    via: str
    actor: str
    subject: str | None
    case_reference: str | None
    detail: str
    hash: str

    @property
    def uk_time(self) -> str:
        at = ensure_utc(self.at).astimezone(LONDON)
        return f"{at.day} {at:%b %Y %H:%M:%S}"


@dataclass
class LogPage:
    rows: list[LogRow] = field(default_factory=list)
    total: int = 0
    capped: bool = False


def can_review(user: User) -> bool:
    return user.active and user.role in (Role.ADMIN, Role.AUDITOR) and (
        user.role is Role.ADMIN or user.body_code is not None)


def visible_to(viewer: User | None) -> ColumnElement[bool]:
    """The entries ``viewer`` may see (``None``: the operator, who sees all). See the module's docstring."""
    if viewer is None or (viewer.active and viewer.role is Role.ADMIN):
        return true()
    if not can_review(viewer):
        return false()
    body = viewer.body_code
    case = aliased(Case)  # the page's statement joins Case for the reference: this one is its own
    case_of_body = exists().where(case.id == AccessEntry.case_id, or_(
        case.owning_body_code == body,
        exists().where(CaseParty.case_id == case.id, CaseParty.body_code == body)))
    members = select(User.id).where(User.body_code == body)
    bodied = select(User.id).where(User.body_code.is_not(None))
    names_member = or_(AccessEntry.actor_id.in_(members), AccessEntry.subject_user_id.in_(members))
    names_no_body_member = and_(or_(AccessEntry.actor_id.is_(None), AccessEntry.actor_id.not_in(bodied)),
                                or_(AccessEntry.subject_user_id.is_(None),
                                    AccessEntry.subject_user_id.not_in(bodied)))
    return or_(and_(AccessEntry.case_id.is_not(None), case_of_body),
               and_(AccessEntry.case_id.is_(None), or_(names_member, names_no_body_member)))


def _bounds(filters: LogFilters) -> tuple[datetime | None, datetime | None]:
    since = until = None
    if filters.since:
        since = datetime.combine(filters.since, time(0), LONDON).astimezone(UTC)
    if filters.until:
        until = datetime.combine(filters.until + timedelta(days=1), time(0), LONDON).astimezone(UTC)
    return since, until


def _where(viewer: User | None, filters: LogFilters) -> list[ColumnElement[bool]]:
    where = [visible_to(viewer)]
    if filters.kind:
        where.append(AccessEntry.kind == filters.kind)
    if filters.person_id is not None:
        where.append(or_(AccessEntry.actor_id == filters.person_id, AccessEntry.subject_user_id == filters.person_id))
    if filters.case_id is not None:
        where.append(AccessEntry.case_id == filters.case_id)
    since, until = _bounds(filters)
    if since is not None:
        where.append(AccessEntry.at >= since)
    if until is not None:
        where.append(AccessEntry.at < until)
    return where


def _rows_stmt(where: Sequence[ColumnElement[bool]]) -> Select[AccessEntry, str, str, str]:
    actor, subject = aliased(User), aliased(User)
    return (select(AccessEntry, actor.name, subject.name, Case.reference)
            .outerjoin(actor, actor.id == AccessEntry.actor_id)
            .outerjoin(subject, subject.id == AccessEntry.subject_user_id)
            .outerjoin(Case, Case.id == AccessEntry.case_id)
            .where(*where).order_by(AccessEntry.id.desc()))


def _actor_words(entry: AccessEntry, name: str | None) -> str:
    if name:
        return name
    if entry.via == "cli":
        return "The operator"
    if entry.via == "scheduler":
        return "The system"
    return "Nobody signed in"


def detail_words(detail: dict[str, Any]) -> str:
    """``{"key": "sanctions", "version": 3}`` → ``Key: sanctions; version: 3``."""
    parts = []
    for name, value in detail.items():
        shown = ", ".join(str(v) for v in value) if isinstance(value, list | tuple) else str(value)
        parts.append(f"{name.replace('_', ' ')}: {shown}")
    text = "; ".join(parts)
    return text[:1].upper() + text[1:]


def _row(entry: AccessEntry, actor: str | None, subject: str | None, reference: str | None) -> LogRow:
    return LogRow(at=entry.at, kind=entry.kind, what=KINDS.get(entry.kind, entry.kind.replace("_", " ").capitalize()),
                  via=VIA_WORDS.get(entry.via, entry.via), actor=_actor_words(entry, actor), subject=subject,
                  case_reference=reference, detail=detail_words(entry.detail or {}), hash=entry.hash)


def list_entries(session: Session, viewer: User | None, filters: LogFilters, *, limit: int | None,
                 offset: int = 0) -> LogPage:
    """Entries ``viewer`` may see that match ``filters``, newest first, in words; the count of all
    matches (up to ``COUNT_CAP``)."""
    where = _where(viewer, filters)
    matching = select(AccessEntry.id).where(*where).limit(COUNT_CAP + 1).subquery()
    total = int(session.scalar(select(func.count()).select_from(matching)) or 0)
    stmt = _rows_stmt(where)
    if limit is not None:
        stmt = stmt.limit(limit).offset(offset)
    rows = [_row(entry, actor, subject, ref) for entry, actor, subject, ref in session.execute(stmt)]
    return LogPage(rows, min(total, COUNT_CAP), total > COUNT_CAP)


def all_entries(session: Session, viewer: User | None, filters: LogFilters) -> Iterable[LogRow]:
    """Every matching entry (for a download), read in batches."""
    stmt = _rows_stmt(_where(viewer, filters)).execution_options(yield_per=1000)
    for entry, actor, subject, ref in session.execute(stmt):
        yield _row(entry, actor, subject, ref)


def people(session: Session, viewer: User | None) -> list[tuple[int, str]]:
    """The people the person filter offers: everyone for an administrator; for an auditor, their
    body's people and those of no body (administrators)."""
    stmt = select(User.id, User.name, User.role, User.body_code, User.active).order_by(User.name, User.id)
    if viewer is not None and viewer.role is not Role.ADMIN:
        stmt = stmt.where(or_(User.body_code == viewer.body_code, User.body_code.is_(None)))
    out = []
    for user_id, name, role, body, active in session.execute(stmt):
        role_words = "administrator" if role is Role.ADMIN else role.value
        label = f"{name} ({body + ' ' if body else ''}{role_words}{'' if active else ', inactive'})"
        out.append((int(user_id), label))
    return out


def find_case(session: Session, viewer: User | None, reference: str) -> int:
    """The id of the case with ``reference`` that ``viewer`` may see entries of; else
    :class:`InvalidInput` on ``case``, in the same words whether it does not exist or is not theirs."""
    text = reference.strip().upper()
    stmt = select(Case.id).where(Case.reference == text)
    if viewer is not None and viewer.role is not Role.ADMIN:
        body = viewer.body_code
        stmt = stmt.where(or_(Case.owning_body_code == body,
                              exists().where(CaseParty.case_id == Case.id, CaseParty.body_code == body)))
    found = session.scalar(stmt)
    if found is None:
        raise InvalidInput({"case": f"There is no case {text} whose entries you can see"})
    return int(found)


def _cell(value: str | None) -> str:
    """A spreadsheet must not run a name as a formula (CSV injection)."""
    text = value or ""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def to_csv(rows: Iterable[LogRow]) -> tuple[str, int]:
    """The rows as CSV, the header on the first line; and how many rows."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    n = 0
    for r in rows:
        writer.writerow([ensure_utc(r.at).astimezone(UTC).isoformat(timespec="seconds"), r.uk_time, r.what, r.kind,
                         r.via, _cell(r.actor), _cell(r.subject), r.case_reference or "", _cell(r.detail), r.hash])
        n += 1
    return out.getvalue(), n


def record_export(session: Session, now: datetime, viewer: User | None, filters: LogFilters, entries: int, *,
                  via: str = "web", client: str | None = None) -> None:
    """The download of the log is itself an entry: what was asked for and how many entries went."""
    record(session, now, "export", actor=viewer, via=via, case_id=filters.case_id, subject=filters.person_id,
           client=client, detail={"what": "access log", **filters.words(), "entries": entries})


# -- failed sign-ins ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FailedSignIns:
    """Failed sign-ins of one account (or of addresses that are no account, together) in the lookback:
    counted per account, address and 15 minutes (``accounts.SignInBucket``), never a row per attempt."""

    who: str  # the account's name and e-mail, or words for addresses that are no account
    failures: int
    refused_from_new_addresses: int
    addresses: int
    last_at: datetime

    @property
    def uk_time(self) -> str:
        at = ensure_utc(self.last_at).astimezone(LONDON)
        return f"{at.day} {at:%b %Y %H:%M}"


def failed_sign_ins(session: Session, now: datetime) -> list[FailedSignIns]:
    """The last 24 hours of failed sign-ins, most failures first (for administrators: no addresses, which
    are stored only hashed)."""
    from reprisals.accounts import THROTTLE_LOOKBACK, SignInBucket, account_digest

    b = SignInBucket
    rows = session.execute(select(b.account_hash, func.sum(b.failures), func.sum(b.refused),
                                  func.count(func.distinct(b.client_hash)), func.max(b.last_at))
                           .where(b.window_start > ensure_utc(now) - THROTTLE_LOOKBACK)
                           .group_by(b.account_hash)).all()
    if not rows:
        return []
    users = {account_digest(u.email): u for u in session.scalars(select(User))}
    out: dict[str, list[Any]] = {}
    for account_hash, failures, refused, addresses, last_at in rows:
        user = users.get(account_hash)
        who = f"{user.name} ({user.email})" if user else "Addresses that are not an account"
        seen = out.setdefault(who, [0, 0, 0, ensure_utc(last_at)])
        seen[0] += int(failures or 0)
        seen[1] += int(refused or 0)
        seen[2] += int(addresses or 0)
        seen[3] = max(seen[3], ensure_utc(last_at))
    return sorted((FailedSignIns(who, *v) for who, v in out.items()), key=lambda f: (-f.failures, f.who))
