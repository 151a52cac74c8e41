"""Figures for a period: what the bodies' annual reports need, from the cases themselves.

Counts only, never a case or a person: cases received in the period by kind of sanction, risk,
channel, age group, type of establishment and nation; cases closed in the period by outcome; and the
protocol's deadlines that fell due in the period, met on time, met late or still overdue.

Published statistics suppress counts under 5 (PROTOCOL.md, do-no-harm rule 4). ``Table.shown``
gives the counts as they may be published: a count from 1 to 4 becomes "fewer than 5"; where a table
has a total from which the hidden counts could still be worked out (one hidden cell; or cells that
must all be 1, or all 4, or all at their least), the next smallest counts become "suppressed" until
they cannot, and if that is not enough every count of the table is "suppressed".
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from reprisals.errors import InvalidInput
from reprisals.models import (
    AgeGroup,
    Body,
    Case,
    Channel,
    Establishment,
    EstablishmentType,
    Nation,
    Outcome,
    Risk,
    SanctionType,
)
from workflow.clock import ensure_utc
from workflow.models import DONE, OPEN, OVERDUE, DeadlineRow

LONDON = ZoneInfo("Europe/London")
SUPPRESS_BELOW = 5
MIN_YEAR, MAX_YEAR = 2000, 2999  # periods outside cannot hold a case (and 9999-12-31 has no day after)
SUPPRESSED = "fewer than 5"
HIDDEN = "suppressed"  # hidden so that a count under 5 cannot be worked out from the total


@dataclass(frozen=True)
class Period:
    """Whole days, ``start`` to ``end`` inclusive, in UK time."""

    start: date
    end: date
    label: str

    @property
    def starts_at(self) -> datetime:
        return datetime.combine(self.start, time(0), LONDON).astimezone(UTC)

    @property
    def ends_before(self) -> datetime:
        after = date.fromordinal(self.end.toordinal() + 1)
        return datetime.combine(after, time(0), LONDON).astimezone(UTC)


def parse_period(text: str) -> Period:
    """``2025`` (a calendar year), ``2025-26`` (a financial year, April to March), or
    ``2025-04-01..2025-09-30`` (any whole days). Raises InvalidInput with the reason."""
    period = _parse_period(text.strip())
    if not (period.start.year >= MIN_YEAR and period.end.year <= MAX_YEAR):
        raise InvalidInput({"period": f"must lie between {MIN_YEAR} and {MAX_YEAR}"})
    return period


def _parse_period(text: str) -> Period:
    if m := re.fullmatch(r"(\d{4})", text):
        year = int(m[1])
        if not MIN_YEAR <= year <= MAX_YEAR:
            raise InvalidInput({"period": f"must lie between {MIN_YEAR} and {MAX_YEAR}"})
        return Period(date(year, 1, 1), date(year, 12, 31), f"1 January to 31 December {year}")
    if m := re.fullmatch(r"(\d{4})-(\d{2})", text):
        year, following = int(m[1]), int(m[2])
        if not MIN_YEAR <= year < MAX_YEAR:
            raise InvalidInput({"period": f"must lie between {MIN_YEAR} and {MAX_YEAR}"})
        if following != (year + 1) % 100:
            raise InvalidInput({"period": f"a financial year is written like {year}-{(year + 1) % 100:02d}"})
        return Period(date(year, 4, 1), date(year + 1, 3, 31), f"1 April {year} to 31 March {year + 1}")
    if m := re.fullmatch(r"(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})", text):
        try:
            start, end = date.fromisoformat(m[1]), date.fromisoformat(m[2])
        except ValueError:
            raise InvalidInput({"period": "has a date that does not exist"}) from None
        if end < start:
            raise InvalidInput({"period": "ends before it starts"})
        return Period(start, end, f"{_day(start)} to {_day(end)}")
    raise InvalidInput({"period": "must be a year (2025), a financial year (2025-26) or two dates "
                                  "(2025-04-01..2025-09-30)"})


def _day(d: date) -> str:
    return f"{d.day} {d.strftime('%B %Y')}"


@dataclass
class Table:
    """One breakdown: a count per label, in a fixed order (every label shown, zeros too)."""

    key: str
    title: str
    rows: list[tuple[str, int]]
    total: int | None  # None where a case may count in several rows (kinds of sanction)
    note: str = ""

    def shown(self, publish: bool) -> list[tuple[str, int, str]]:
        """(label, count, the count as it may be shown). Exact unless ``publish``: then 1 to 4 is "fewer
        than 5"; where the total would still give those away, further counts are "suppressed" until it
        cannot — and if even that is not enough, every count of the table is "suppressed", zeros too."""
        if not publish:
            return [(label, n, f"{n:,}") for label, n in self.rows]
        small = {i for i, (_, n) in enumerate(self.rows) if 0 < n < SUPPRESS_BELOW}
        more: set[int] = set()
        if small and self.total is not None:
            # Zeros are shown, so each small cell is known to be 1 to 4, and the total (published) tells
            # the sum of the hidden cells. Hide the next smallest counts until that sum has more than one
            # reading; if none is left to hide, withhold the whole table.
            others = sorted((n, i) for i, (_, n) in enumerate(self.rows) if n >= SUPPRESS_BELOW)
            while others and _determined([self.rows[i][1] for i in small], [self.rows[i][1] for i in more]):
                more.add(others.pop(0)[1])
            if _determined([self.rows[i][1] for i in small], [self.rows[i][1] for i in more]):
                return [(label, n, HIDDEN) for label, n in self.rows]
        return [(label, n, SUPPRESSED if i in small else HIDDEN if i in more else f"{n:,}")
                for i, (label, n) in enumerate(self.rows)]

    def total_shown(self, publish: bool) -> str:
        return "" if self.total is None else shown_count(self.total, publish)


def _determined(small: list[int], large: list[int]) -> bool:
    """Whether hidden cells known to be 1 to 4 (``small``) and at least 5 (``large``) are each given away
    by their sum: when there is only one cell, or the sum is the least or (with no large cell) the most
    those cells could add up to, every value is forced."""
    total, cells = sum(small) + sum(large), len(small) + len(large)
    least = len(small) + SUPPRESS_BELOW * len(large)
    most = (SUPPRESS_BELOW - 1) * len(small) if not large else None
    return cells == 1 or total in (least, most)


@dataclass
class Figures:
    period: Period
    body: Body | None  # None: every body
    received: int
    closed: int
    tables: list[Table] = field(default_factory=list)

    def table(self, key: str) -> Table:
        return next(t for t in self.tables if t.key == key)


def words(value: str) -> str:
    return value.replace("_", " ").capitalize()


def _counted(title: str, key: str, values: Iterable[str], labels: Sequence[str], *, total: bool = True,
             note: str = "") -> Table:
    counts = Counter(values)
    rows = [(words(label), counts.get(label, 0)) for label in labels]
    return Table(key, title, rows, sum(n for _, n in rows) if total else None, note)


def figures(session: Session, period: Period, body_code: str | None = None, *, now: datetime) -> Figures:
    """The figures for ``period``, for one body's cases or (``None``) for all, as of ``now`` (a deadline
    past its due time counts as overdue even before the sweep has marked it)."""
    body = None
    if body_code is not None:
        body = session.get(Body, body_code)
        if body is None:
            raise InvalidInput({"body": "is not a known body"})
    start, before = period.starts_at, period.ends_before

    received = (select(Case.sanction_types, Case.risk, Case.channel, Case.age_group, Establishment.type,
                       Establishment.nation)
                .join(Establishment, Establishment.id == Case.establishment_id)
                .where(Case.received_at >= start, Case.received_at < before))
    closed = select(Case.outcome).where(Case.closed_at >= start, Case.closed_at < before,
                                        Case.outcome.is_not(None))
    due = (select(DeadlineRow.status, DeadlineRow.due_at, DeadlineRow.overdue_at, DeadlineRow.closed_at)
           .join(Case, Case.instance_id == DeadlineRow.instance_id)
           .where(DeadlineRow.due_at >= start, DeadlineRow.due_at < before))
    if body_code is not None:
        received = received.where(Case.owning_body_code == body_code)
        closed = closed.where(Case.owning_body_code == body_code)
        due = due.where(Case.owning_body_code == body_code)
    rows = session.execute(received).all()
    outcomes = [o.value for o in session.scalars(closed) if o is not None]
    deadlines = session.execute(due).all()

    result = Figures(period, body, received=len(rows), closed=len(outcomes))
    result.tables = [
        _counted("Kinds of sanction alleged", "sanction_types", (s for r in rows for s in set(r.sanction_types)),
                 [s.value for s in SanctionType], total=False,
                 note="A case may allege several kinds, so these add up to more than the cases received."),
        _counted("Risk to the person", "risk", (r.risk.value for r in rows), [r.value for r in Risk]),
        _counted("How the concern was received", "channel", (r.channel.value for r in rows),
                 [c.value for c in Channel]),
        _counted("Age group", "age_group", (r.age_group.value for r in rows), [a.value for a in AgeGroup]),
        _counted("Type of establishment", "establishment_type", (r.type.value for r in rows),
                 [t.value for t in EstablishmentType]),
        _counted("Nation", "nation", (r.nation.value for r in rows), [n.value for n in Nation]),
        _counted("Outcome of the cases closed", "outcome", outcomes, [o.value for o in Outcome]),
        _timeliness(deadlines, ensure_utc(now)),
    ]
    return result


def _timeliness(deadlines: Sequence[Row[str, datetime, datetime | None, datetime | None]], now: datetime) -> Table:
    """Deadlines that fell due in the period: closed (their stage left) by the due time, closed after it,
    or still overdue. Open ones not yet due, and paused ones, are left out."""
    on_time = late = overdue = 0
    for status, due_at, _overdue_at, closed_at in deadlines:
        if status == DONE:
            # Met when its stage was left (as it happened, which may have been recorded later) by the due time.
            if closed_at is not None and ensure_utc(closed_at) <= ensure_utc(due_at):
                on_time += 1
            else:
                late += 1
        elif status == OVERDUE or (status == OPEN and ensure_utc(due_at) <= now):
            overdue += 1
    rows = [("Met by the due time", on_time), ("Met late", late), ("Still overdue", overdue)]
    return Table("deadlines", "Protocol deadlines that fell due", rows, on_time + late + overdue,
                 "Every deadline of the protocol (consent and risk, triage, the establishment's response, "
                 "escalations, assessment, follow-up) due in the period. A deadline is met when its stage is "
                 "left.")


def to_csv(f: Figures, *, publish: bool) -> str:
    """One row per count: table, row, count (as it may be shown). Suppressed when ``publish``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["period", f.period.label])
    writer.writerow(["body", f.body.name if f.body else "All bodies"])
    writer.writerow(["counts", "for publication: counts under 5 suppressed" if publish else
                     "exact: NOT FOR PUBLICATION (counts under 5 are not suppressed)"])
    writer.writerow([])
    writer.writerow(["table", "row", "count"])
    writer.writerow(["Cases", "Received in the period", shown_count(f.received, publish)])
    writer.writerow(["Cases", "Closed in the period", shown_count(f.closed, publish)])
    for table in f.tables:
        for label, _n, shown in table.shown(publish):
            writer.writerow([table.title, label, shown])
        if table.total is not None:
            writer.writerow([table.title, "Total", table.total_shown(publish)])
    return out.getvalue()


def shown_count(n: int, publish: bool) -> str:
    """A count as it may be shown: 1 to 4 as "fewer than 5" when ``publish``."""
    return SUPPRESSED if publish and 0 < n < SUPPRESS_BELOW else f"{n:,}"
