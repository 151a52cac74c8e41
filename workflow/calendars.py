"""Working-day arithmetic for the UK nations, from the `holidays` package (never a hand-kept list).

Rules (PROTOCOL.md): "N working days after" an event counts from the next working day, so the
event's own day never counts, and falls due at the end of the Nth working day (17:00
Europe/London by default). Zero working days means the end of the event's own day when that is a
working day and the day has not ended yet, otherwise the end of the next working day. Clock-hour
durations ignore weekends and holidays. Everything returned is an aware UTC datetime; the local
time of day is kept across the clocks changing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

from workflow.clock import ensure_utc
from workflow.errors import WorkflowError
from workflow.spec import Duration, Unit

LONDON = ZoneInfo("Europe/London")
SUBDIVISIONS = {"england": "ENG", "wales": "WLS", "scotland": "SCT", "northern_ireland": "NIR"}
DEFAULT_DAY_START = time(9, 0)
DEFAULT_DAY_END = time(17, 0)


class UnknownCalendar(WorkflowError, ValueError):
    def __init__(self, name: object) -> None:
        self.name = name
        super().__init__(f"no working-day calendar '{name}'; known: {', '.join(sorted(SUBDIVISIONS))}")


@lru_cache(maxsize=64)
def _holidays(subdiv: str, year: int) -> holidays.HolidayBase:
    return holidays.country_holidays("GB", subdiv=subdiv, years=year)


@dataclass(frozen=True)
class WorkingCalendar:
    """The working days of one UK nation."""

    name: str
    day_end: time = DEFAULT_DAY_END
    day_start: time = DEFAULT_DAY_START
    tz: ZoneInfo = field(default=LONDON)

    def __post_init__(self) -> None:
        if self.name not in SUBDIVISIONS:
            raise UnknownCalendar(self.name)

    def holiday_name(self, day: date) -> str | None:
        name = _holidays(SUBDIVISIONS[self.name], day.year).get(day)
        return str(name) if name is not None else None

    def is_working_day(self, day: date) -> bool:
        return day.weekday() < 5 and self.holiday_name(day) is None

    def next_working_day(self, day: date) -> date:
        day += timedelta(days=1)
        while not self.is_working_day(day):
            day += timedelta(days=1)
        return day

    def previous_working_day(self, day: date) -> date:
        day -= timedelta(days=1)
        while not self.is_working_day(day):
            day -= timedelta(days=1)
        return day

    def end_of(self, day: date) -> datetime:
        return datetime.combine(day, self.day_end, tzinfo=self.tz).astimezone(UTC)

    def start_of(self, day: date) -> datetime:
        return datetime.combine(day, self.day_start, tzinfo=self.tz).astimezone(UTC)

    def local_date(self, at: datetime) -> date:
        return ensure_utc(at).astimezone(self.tz).date()

    def add_working_days(self, anchor: datetime, n: int) -> datetime:
        """The end of the Nth working day after the anchor's day."""
        if n < 0:
            raise ValueError(f"a number of working days cannot be negative ({n})")
        anchor = ensure_utc(anchor)
        day = self.local_date(anchor)
        if n == 0:
            if self.is_working_day(day) and anchor < self.end_of(day):
                return self.end_of(day)
            return self.end_of(self.next_working_day(day))
        for _ in range(n):
            day = self.next_working_day(day)
        return self.end_of(day)

    def working_days_before(self, due: datetime, n: int) -> datetime:
        """The start of the working day N working days before the due date (for reminders)."""
        if n < 0:
            raise ValueError(f"a number of working days cannot be negative ({n})")
        day = self.local_date(due)
        for _ in range(n):
            day = self.previous_working_day(day)
        return min(self.start_of(day), ensure_utc(due))

    def due(self, anchor: datetime, duration: Duration) -> datetime:
        if duration.unit is Unit.HOURS:
            return ensure_utc(anchor) + timedelta(hours=duration.amount)
        return self.add_working_days(anchor, duration.amount)

    def before(self, due: datetime, duration: Duration) -> datetime:
        if duration.unit is Unit.HOURS:
            return ensure_utc(due) - timedelta(hours=duration.amount)
        return self.working_days_before(due, duration.amount)

    def working_days_between(self, start: datetime, end: datetime) -> int:
        """Whole working days after ``start``'s day up to and including ``end``'s day (negative if
        ``end`` is earlier): how many working days are left until a deadline. Counted in arithmetic
        (weeks, then the year's weekday holidays), so a deadline a year overdue costs no more than one
        due tomorrow."""
        a, b = self.local_date(start), self.local_date(end)
        sign = 1
        if b < a:
            a, b, sign = b, a, -1
        first = a + timedelta(days=1)
        span = (b - first).days + 1
        if span <= 0:
            return 0
        weeks, rest = divmod(span, 7)
        count = weeks * 5 + sum(1 for i in range(rest) if (first + timedelta(days=weeks * 7 + i)).weekday() < 5)
        for year in range(first.year, b.year + 1):
            count -= sum(1 for h in _weekday_holidays(self, year) if first <= h <= b)
        return sign * count


@lru_cache(maxsize=64)
def _weekday_holidays(cal: WorkingCalendar, year: int) -> frozenset[date]:
    """The days of ``year`` that fall Monday to Friday and are not working days in ``cal``."""
    day, out = date(year, 1, 1), set()
    while day.year == year:
        if day.weekday() < 5 and not cal.is_working_day(day):
            out.add(day)
        day += timedelta(days=1)
    return frozenset(out)


def calendar_for(name: str | None, day_end: time = DEFAULT_DAY_END) -> WorkingCalendar:
    """The calendar by name; ``None`` means England (the protocol's default jurisdiction)."""
    return WorkingCalendar(name or "england", day_end=day_end)
