"""Refusals in the domain's words (reprisals.wording): an extension onto a day that is not a working day
names the day, why, and whose working days count (bank holidays as GOV.UK lists them)."""

from __future__ import annotations

from datetime import date

import pytest

from reprisals.wording import explain, not_a_working_day
from workflow.deadlines import NotAWorkingDay


@pytest.mark.parametrize(("day", "calendar", "holiday", "words"), [
    (date(2026, 12, 5), "england", None,
     "Saturday 5 December 2026 is not a working day in England and Wales: choose a working day"),
    (date(2026, 12, 6), "wales", None,  # England and Wales share their bank holidays
     "Sunday 6 December 2026 is not a working day in England and Wales: choose a working day"),
    (date(2026, 12, 25), "northern_ireland", "Christmas Day",
     "Friday 25 December 2026 is a bank holiday (Christmas Day) in Northern Ireland: choose a working day"),
    (date(2026, 11, 30), "scotland", "Saint Andrew's Day",
     "Monday 30 November 2026 is a bank holiday (Saint Andrew's Day) in Scotland: choose a working day"),
])
def test_an_extension_onto_a_day_off_is_refused_naming_the_day_why_and_where(
        day: date, calendar: str, holiday: str | None, words: str) -> None:
    exc = NotAWorkingDay(day, calendar, holiday)
    assert not_a_working_day(exc) == words
    assert explain(exc, reference="RPR-2026-0001") == f"RPR-2026-0001: {words}"
    assert "calendar" not in words and "_" not in words  # never the engine's names
