"""When something happened, as a person gives it: one parser for every moment typed by a person.

Used for the moment an action happened (``--occurred-at``, the API's ``occurred_at``, the forms' "When did
this happen?") and for the command line's ``--now``, ``--to`` and ``--due-before``, so that they all read
the same way:

- ``2025-04-17T10:00`` (or ``2025-04-17 10:00``) is UK local time (the ``zone``), unless an offset is given
  (``2025-04-17T10:00+01:00``, ``…Z``);
- a bare date, ``2025-04-17``, means that day: at ``same_day``'s moment if that falls on the same local
  day (the previous protocol action's moment, so two actions of one day keep their order), otherwise at
  12:00 — and never later than ``now`` (today's date given at 09:00 means 09:00, not a noon to come);
- ``needs_time`` refuses a bare date (an urgent case counts in clock hours);
- a local time that does not exist (the hour the clocks go forward) is refused; one that happens twice
  (the hour they go back) is the first of the two.

Errors are ``ValueError`` with a message for a person (the caller names the field).
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, tzinfo
from zoneinfo import ZoneInfo

from workflow.clock import ensure_utc
from workflow.text import MAX_YEAR, MIN_YEAR, TOO_EARLY, TOO_LATE

LONDON = ZoneInfo("Europe/London")
NOON = time(12, 0)

FORM = "must be a date, or a date and time, like 2025-04-17 or 2025-04-17T10:00 (UK time unless it has an offset)"
NEEDS_TIME = "needs a time as well as a date, like 2025-04-17T10:00: an urgent case counts in hours"
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_moment(text: object, *, zone: tzinfo = LONDON, same_day: datetime | None = None,
                 now: datetime | None = None, needs_time: bool = False) -> datetime:
    """The moment ``text`` names, in UTC. See the module's docstring for the rules."""
    if isinstance(text, datetime):
        return ensure_utc(text if text.tzinfo is not None else _local(text, zone))
    if not isinstance(text, str) or not text.strip():
        raise ValueError(FORM)
    raw = text.strip()
    if _DATE_ONLY.match(raw):
        try:
            day = date.fromisoformat(raw)
        except ValueError:
            raise ValueError(FORM) from None
        if needs_time:
            raise ValueError(NEEDS_TIME)
        return on_day(day, zone=zone, same_day=same_day, now=now)
    try:
        at = datetime.fromisoformat(raw.replace(" ", "T", 1) if raw.count(" ") == 1 else raw)
    except ValueError:
        raise ValueError(FORM) from None
    _check_year(at.year)
    if at.tzinfo is None:
        at = _local(at, zone)
    return ensure_utc(at)


def on_day(day: date, *, zone: tzinfo = LONDON, same_day: datetime | None = None,
           now: datetime | None = None) -> datetime:
    """The moment a bare date means (see the module's docstring), in UTC."""
    _check_year(day.year)
    if same_day is not None and ensure_utc(same_day).astimezone(zone).date() == day:
        return ensure_utc(same_day)
    at = ensure_utc(_local(datetime.combine(day, NOON), zone))
    if now is not None and at > ensure_utc(now) and ensure_utc(now).astimezone(zone).date() == day:
        # Today, given before noon: it happened today, so by now at the latest.
        return max(ensure_utc(now), ensure_utc(same_day)) if same_day is not None else ensure_utc(now)
    return at


def _check_year(year: int) -> None:
    if year < MIN_YEAR:
        raise ValueError(TOO_EARLY)
    if year > MAX_YEAR:
        raise ValueError(TOO_LATE)


def _local(naive: datetime, zone: tzinfo) -> datetime:
    """A wall-clock time in ``zone``: refused if the clocks skipped it, the first if it happened twice."""
    aware = naive.replace(tzinfo=zone, fold=0)
    round_trip = aware.astimezone(ZoneInfo("UTC")).astimezone(zone).replace(tzinfo=None)
    if round_trip != naive:
        raise ValueError(f"{naive:%H:%M} on {naive:%d %B %Y} did not happen in UK time (the clocks went "
                         "forward); give the time after the change, or an offset")
    return aware


def recorded_later(occurred: datetime, recorded: datetime, *, zone: tzinfo = LONDON) -> str | None:
    """How much later an action was recorded than it happened, in words, or None when on the same day
    (``recorded 2 days later``)."""
    days = (ensure_utc(recorded).astimezone(zone).date() - ensure_utc(occurred).astimezone(zone).date()).days
    if days <= 0:
        return None
    return f"recorded {days} day{'s' if days != 1 else ''} later"


def local_words(at: datetime, zone: tzinfo = LONDON) -> str:
    """A moment as refusals say it: ``16 April 2025, 17:00`` (in ``zone``)."""
    local = ensure_utc(at).astimezone(zone)
    return f"{local.day} {local:%B %Y, %H:%M}"
