"""One style for moments and time left (reprisals.vocabulary): GOV.UK times and dates in UK time, working
days for working-day deadlines, hours for clock-hour ones."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from reprisals.vocabulary import clock_words, day_words, moment_words, time_left
from workflow.calendars import calendar_for


@pytest.mark.parametrize(("at", "words"), [
    (datetime(2026, 12, 4, 17, 0, tzinfo=UTC), "5pm"),  # GMT in winter
    (datetime(2026, 6, 4, 16, 0, tzinfo=UTC), "5pm"),  # BST in summer
    (datetime(2026, 12, 4, 10, 30, tzinfo=UTC), "10:30am"),
    (datetime(2026, 12, 4, 12, 0, tzinfo=UTC), "midday"),
    (datetime(2026, 12, 4, 0, 0, tzinfo=UTC), "midnight"),
    (datetime(2026, 12, 4, 0, 5, tzinfo=UTC), "12:05am"),
])
def test_clock_words_follow_govuk_style_in_uk_time(at: datetime, words: str) -> None:
    assert clock_words(at) == words


def test_days_and_moments_long_and_short() -> None:
    assert day_words(date(2026, 12, 4)) == "Friday 4 December 2026"
    assert day_words(date(2026, 12, 4), year=False) == "Friday 4 December"
    assert day_words(date(2026, 12, 4), short=True) == "Fri 4 Dec"
    at = datetime(2026, 12, 4, 17, 0, tzinfo=UTC)
    assert moment_words(at) == "5pm on Friday 4 December 2026"
    assert moment_words(at, short=True) == "5pm Fri 4 Dec"
    # 23:30 UTC on 31 May is 00:30 on 1 June in London: the UK day, not the UTC one
    assert moment_words(datetime(2026, 5, 31, 23, 30, tzinfo=UTC), short=True) == "12:30am Mon 1 Jun"


ENGLAND = calendar_for("england")
FRIDAY_5PM = datetime(2026, 12, 4, 17, 0, tzinfo=UTC)


@pytest.mark.parametrize(("at", "words", "overdue"), [
    (datetime(2026, 12, 4, 9, 0, tzinfo=UTC), "due today", False),
    (datetime(2026, 12, 3, 9, 0, tzinfo=UTC), "1 working day left", False),
    (datetime(2026, 11, 27, 9, 0, tzinfo=UTC), "5 working days left", False),  # the weekend is not counted
    (datetime(2026, 12, 4, 19, 0, tzinfo=UTC), "overdue by 2 hours", True),  # late on the day it was due
    (datetime(2026, 12, 7, 9, 0, tzinfo=UTC), "overdue by 1 working day", True),  # Monday after
    (datetime(2026, 12, 29, 9, 0, tzinfo=UTC), "overdue by 15 working days", True),  # no 25th; Boxing Day on Mon 28
])
def test_a_working_day_deadline_is_said_in_working_days(at: datetime, words: str, overdue: bool) -> None:
    left = time_left(FRIDAY_5PM, at, in_hours=False, calendar=ENGLAND)
    assert (left.words, left.overdue) == (words, overdue)


def test_a_clock_hour_deadline_is_said_in_hours_and_minutes() -> None:
    due = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)  # a Saturday: clock hours ignore working days
    assert time_left(due, due - timedelta(hours=20), in_hours=True).words == "20 hours left"
    assert time_left(due, due - timedelta(minutes=25), in_hours=True).words == "25 minutes left"
    assert time_left(due, due - timedelta(hours=1), in_hours=True).words == "1 hour left"
    late = time_left(due, due + timedelta(hours=3, minutes=10), in_hours=True)
    assert (late.words, late.overdue) == ("overdue by 3 hours", True)
