"""Working-day arithmetic for the four UK nations, checked against dates written out by hand.

The expected bank holidays below are copied from the published lists (gov.uk/bank-holidays), not
computed: a test that derived them from the `holidays` package would only test it against itself.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from workflow.calendars import UnknownCalendar, WorkingCalendar, calendar_for
from workflow.errors import WorkflowError
from workflow.spec import Duration, Unit

LONDON = ZoneInfo("Europe/London")
FIVE_PM = time(17, 0)


def d(text: str) -> date:
    return date.fromisoformat(text)


def local(text: str) -> datetime:
    """A UK local wall time ('2025-04-16 10:00'), as an aware datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=LONDON)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def wd(n: int) -> Duration:
    return Duration(n, Unit.WORKING_DAYS)


def hours(n: int) -> Duration:
    return Duration(n, Unit.HOURS)


def as_local(at: datetime) -> datetime:
    """An aware UTC datetime as UK wall time, zone dropped, for readable comparisons."""
    assert at.tzinfo is not None and at.utcoffset() == timedelta(0), f"{at!r} is not UTC"
    return at.astimezone(LONDON).replace(tzinfo=None)


def wall(text: str) -> datetime:
    return datetime.fromisoformat(text)


# -- the nations' bank holidays, by hand ------------------------------------------------------------

ENGLAND_AND_WALES = {
    2025: {"2025-01-01",  # New Year's Day (Wed)
           "2025-04-18",  # Good Friday
           "2025-04-21",  # Easter Monday
           "2025-05-05",  # early May
           "2025-05-26",  # spring
           "2025-08-25",  # late August (summer)
           "2025-12-25", "2025-12-26"},
    2026: {"2026-01-01",
           "2026-04-03",  # Good Friday
           "2026-04-06",  # Easter Monday
           "2026-05-04", "2026-05-25",
           "2026-08-31",  # late August
           "2026-12-25",  # Friday
           "2026-12-28"},  # Boxing Day falls on Saturday 26th: substitute Monday 28th
}
EXPECTED_HOLIDAYS = {
    "england": ENGLAND_AND_WALES,
    "wales": ENGLAND_AND_WALES,
    "scotland": {
        2025: {"2025-01-01", "2025-01-02",  # 2 January is a bank holiday in Scotland only
               "2025-04-18",  # Good Friday; Easter Monday is NOT a Scottish bank holiday
               "2025-05-05", "2025-05-26",
               "2025-08-04",  # first Monday of August, not the last
               "2025-12-01",  # St Andrew's Day, Sunday 30 Nov: substitute Monday 1 Dec
               "2025-12-25", "2025-12-26"},
        2026: {"2026-01-01", "2026-01-02",
               "2026-04-03",
               "2026-05-04", "2026-05-25",
               "2026-06-15",  # one-off: Royal Proclamation of 3 Feb 2026 (Scotland at the World Cup)
               "2026-08-03",
               "2026-11-30",  # St Andrew's Day on a Monday
               "2026-12-25", "2026-12-28"},
    },
    "northern_ireland": {
        2025: {"2025-01-01",
               "2025-03-17",  # St Patrick's Day
               "2025-04-18", "2025-04-21",
               "2025-05-05", "2025-05-26",
               "2025-07-14",  # Battle of the Boyne, Saturday 12 July: substitute Monday 14th
               "2025-08-25",
               "2025-12-25", "2025-12-26"},
        2026: {"2026-01-01",
               "2026-03-17",
               "2026-04-03", "2026-04-06",
               "2026-05-04", "2026-05-25",
               "2026-07-13",  # 12 July is a Sunday: substitute Monday 13th
               "2026-08-31",
               "2026-12-25", "2026-12-28"},
    },
}


def non_working_weekdays(cal: WorkingCalendar, year: int) -> set[str]:
    day, out = date(year, 1, 1), set()
    while day.year == year:
        if day.weekday() < 5 and not cal.is_working_day(day):
            out.add(day.isoformat())
        day += timedelta(days=1)
    return out


@pytest.mark.parametrize("year", [2025, 2026])
@pytest.mark.parametrize("nation", ["england", "wales", "scotland", "northern_ireland"])
def test_non_working_weekdays_are_exactly_the_bank_holidays_when_a_whole_year_is_walked(
        nation: str, year: int) -> None:
    cal = WorkingCalendar(nation)
    got = non_working_weekdays(cal, year)
    expected = EXPECTED_HOLIDAYS[nation][year]
    assert got == expected, f"{nation} {year}: extra {sorted(got - expected)}, missing {sorted(expected - got)}"


@pytest.mark.parametrize("nation", ["england", "wales", "scotland", "northern_ireland"])
def test_weekends_are_never_working_days_when_any_nation_is_asked(nation: str) -> None:
    cal = WorkingCalendar(nation)
    day = date(2025, 1, 4)  # a Saturday
    while day.year < 2027:
        assert not cal.is_working_day(day) and not cal.is_working_day(day + timedelta(days=1))
        day += timedelta(days=7)


@pytest.mark.parametrize(("nation", "day", "working"), [
    ("scotland", "2025-04-21", True),  # Easter Monday: England's holiday, not Scotland's
    ("england", "2025-04-21", False),
    ("england", "2025-01-02", True),  # 2 January: Scotland's holiday, not England's
    ("scotland", "2025-08-25", True),  # late August: not in Scotland
    ("england", "2025-08-04", True),  # first Monday of August: only Scotland
    ("england", "2025-03-17", True),  # St Patrick's Day: only Northern Ireland
    ("northern_ireland", "2025-07-11", True),  # the Friday before the substitute Boyne day works
    ("england", "2026-06-15", True),  # the World Cup holiday is Scotland's only
])
def test_a_day_differs_between_nations_when_only_one_nation_keeps_it(nation: str, day: str, working: bool) -> None:
    assert WorkingCalendar(nation).is_working_day(d(day)) is working


# -- PROTOCOL.md's worked examples -----------------------------------------------------------------


def test_worked_example_england_gives_the_stated_dates_when_computed_step_by_step() -> None:
    cal = calendar_for("england")
    received = local("2025-04-16 10:00")  # Wed 16 Apr 2025, IMB opens the case

    triage_due = cal.due(received, wd(2))  # 18 and 21 Apr are bank holidays
    assert as_local(triage_due) == wall("2025-04-22 17:00")
    assert triage_due.strftime("%a") == "Tue"

    referred = local("2025-04-17 14:00")  # Thu 17 Apr: triage and the referral the same day
    response_due = cal.due(referred, wd(10))  # 5 May is a bank holiday
    assert as_local(response_due) == wall("2025-05-06 17:00")
    reminder = cal.before(response_due, wd(3))
    assert as_local(reminder).date() == d("2025-04-30")  # Wed 30 Apr
    assert reminder < response_due

    accepted = local("2025-05-02 15:00")  # Fri 2 May: response arrives and is accepted
    follow_up_due = cal.due(accepted, wd(20))  # 5 and 26 May are bank holidays
    assert as_local(follow_up_due) == wall("2025-06-03 17:00")


def test_worked_example_welsh_urgent_gives_the_stated_dates_when_computed_step_by_step() -> None:
    cal = calendar_for("wales")
    referred = local("2025-08-22 15:00")  # Fri 22 Aug 2025, 15:00

    contact_due = cal.due(referred, hours(24))  # clock hours: the weekend does not matter
    assert as_local(contact_due) == wall("2025-08-23 15:00")  # Sat 23 Aug
    assert contact_due - referred == timedelta(hours=24)

    written_due = cal.due(referred, wd(5))  # 25 Aug is a bank holiday
    assert as_local(written_due) == wall("2025-09-01 17:00")  # Mon 1 Sep

    escalated = local("2025-09-02 09:30")  # overdue from Tue 2 Sep; the lead escalates to YCS
    assert escalated > written_due
    assert as_local(cal.due(escalated, wd(5))) == wall("2025-09-09 17:00")  # Tue 9 Sep


# -- counting rules ----------------------------------------------------------------------------------


@pytest.mark.parametrize("at", ["2025-04-16 00:01", "2025-04-16 08:00", "2025-04-16 16:59", "2025-04-16 23:59"])
def test_event_day_is_not_counted_when_one_working_day_is_added(at: str) -> None:
    cal = calendar_for("england")
    assert as_local(cal.add_working_days(local(at), 1)) == wall("2025-04-17 17:00")


def test_event_day_is_the_local_day_when_the_utc_date_is_still_the_day_before() -> None:
    # 23:30 UTC on Tue 15 Apr is 00:30 BST on Wed 16 Apr: the event's day is the 16th.
    cal = calendar_for("england")
    assert as_local(cal.add_working_days(utc("2025-04-15 23:30"), 1)) == wall("2025-04-17 17:00")


def test_counting_starts_at_the_next_working_day_when_the_event_is_on_a_weekend_or_holiday() -> None:
    cal = calendar_for("england")
    assert as_local(cal.add_working_days(local("2025-04-19 11:00"), 1)) == wall("2025-04-22 17:00")  # Easter Sat
    assert as_local(cal.add_working_days(local("2025-04-18 11:00"), 1)) == wall("2025-04-22 17:00")  # Good Fri
    assert as_local(cal.add_working_days(local("2025-12-24 11:00"), 2)) == wall("2025-12-30 17:00")


@pytest.mark.parametrize(("at", "due"), [
    ("2025-04-16 10:00", "2025-04-16 17:00"),  # a working day before its end: the same day
    ("2025-04-16 00:00", "2025-04-16 17:00"),
    ("2025-04-16 17:00", "2025-04-17 17:00"),  # at the end of the day: the day has ended
    ("2025-04-16 18:00", "2025-04-17 17:00"),  # after the end: the next working day
    ("2025-04-17 18:00", "2025-04-22 17:00"),  # ...skipping Good Friday, the weekend and Easter Monday
    ("2025-04-19 10:00", "2025-04-22 17:00"),  # a Saturday in the Easter weekend
])
def test_zero_working_days_is_the_end_of_the_event_day_or_the_next_working_day_when_added(
        at: str, due: str) -> None:
    assert as_local(calendar_for("england").add_working_days(local(at), 0)) == wall(due)


def test_zero_working_days_before_is_the_start_of_the_due_day_when_a_reminder_is_asked() -> None:
    cal = calendar_for("england")
    due = local("2025-05-06 17:00")
    assert as_local(cal.working_days_before(due, 0)) == wall("2025-05-06 09:00")


def test_value_error_is_raised_when_working_days_are_negative() -> None:
    cal = calendar_for("england")
    at = local("2025-04-16 10:00")
    with pytest.raises(ValueError, match=r"cannot be negative \(-1\)"):
        cal.add_working_days(at, -1)
    with pytest.raises(ValueError, match="cannot be negative"):
        cal.working_days_before(at, -2)
    with pytest.raises(ValueError, match="cannot be negative"):
        cal.due(at, wd(-3))
    with pytest.raises(ValueError, match="cannot be negative"):
        cal.before(at, wd(-1))


def test_value_error_is_raised_when_a_time_has_no_zone() -> None:
    with pytest.raises(ValueError, match="naive"):
        calendar_for("england").add_working_days(datetime(2025, 4, 16, 10, 0), 1)


@pytest.mark.parametrize(("due", "n", "reminder"), [
    ("2025-05-06 17:00", 1, "2025-05-02 09:00"),  # the day before is the bank holiday 5 May
    ("2025-05-06 17:00", 3, "2025-04-30 09:00"),
    ("2025-04-22 17:00", 1, "2025-04-17 09:00"),  # back over Easter
    ("2025-09-01 17:00", 1, "2025-08-29 09:00"),  # back over a weekend
])
def test_reminder_is_the_start_of_an_earlier_working_day_when_working_days_before_is_asked(
        due: str, n: int, reminder: str) -> None:
    assert as_local(calendar_for("england").working_days_before(local(due), n)) == wall(reminder)


def test_reminder_is_never_after_the_due_time_when_due_early_in_the_morning() -> None:
    cal = calendar_for("england")
    due = local("2025-05-06 08:00")  # before the working day starts
    assert cal.working_days_before(due, 0) == due


@pytest.mark.parametrize(("start", "end", "n"), [
    ("2025-04-16 10:00", "2025-04-16 16:00", 0),
    ("2025-04-16 10:00", "2025-04-17 10:00", 1),
    ("2025-04-16 10:00", "2025-04-22 17:00", 2),  # over Easter
    ("2025-04-22 17:00", "2025-04-16 10:00", -2),
    ("2025-04-19 10:00", "2025-04-21 10:00", 0),  # Saturday to Easter Monday: none
])
def test_working_days_between_counts_days_after_the_start_when_asked(start: str, end: str, n: int) -> None:
    assert calendar_for("england").working_days_between(local(start), local(end)) == n


# -- the clock and UTC -------------------------------------------------------------------------------


def test_due_is_17_utc_when_the_due_day_is_in_gmt() -> None:
    due = calendar_for("england").add_working_days(local("2025-01-14 10:00"), 1)
    assert due == utc("2025-01-15 17:00")
    assert due.tzinfo is UTC


def test_due_is_16_utc_when_the_due_day_is_in_bst() -> None:
    due = calendar_for("england").add_working_days(local("2025-06-10 10:00"), 1)
    assert due == utc("2025-06-11 16:00")
    assert due.tzinfo is UTC


def test_working_day_due_stays_at_17_local_when_the_clocks_go_forward_in_between() -> None:
    # Clocks go forward at 01:00 GMT on Sun 30 Mar 2025.
    cal = calendar_for("england")
    anchor = local("2025-03-27 10:00")  # Thu, GMT
    due = cal.due(anchor, wd(2))  # Fri 28, Mon 31 (BST)
    assert as_local(due) == wall("2025-03-31 17:00")
    assert due == utc("2025-03-31 16:00")
    reminder = cal.before(due, wd(1))  # Fri 28 Mar, GMT
    assert reminder == utc("2025-03-28 09:00")


def test_working_day_due_stays_at_17_local_when_the_clocks_go_back_in_between() -> None:
    # Clocks go back at 02:00 BST on Sun 26 Oct 2025.
    cal = calendar_for("england")
    anchor = local("2025-10-23 10:00")  # Thu, BST
    due = cal.due(anchor, wd(2))  # Fri 24, Mon 27 (GMT)
    assert as_local(due) == wall("2025-10-27 17:00")
    assert due == utc("2025-10-27 17:00")
    reminder = cal.before(due, wd(1))  # Fri 24 Oct, BST
    assert reminder == utc("2025-10-24 08:00")


def test_clock_hours_are_exact_utc_hours_when_the_clocks_go_forward() -> None:
    cal = calendar_for("england")
    anchor = local("2025-03-30 00:00")  # Sun, GMT until 01:00
    due = cal.due(anchor, hours(24))
    assert due - anchor == timedelta(hours=24)
    assert due == utc("2025-03-31 00:00")
    assert as_local(due) == wall("2025-03-31 01:00")  # a day of real time is 01:00 by the wall clock
    assert as_local(cal.before(due, hours(24))) == wall("2025-03-30 00:00")


def test_clock_hours_are_exact_utc_hours_when_the_clocks_go_back() -> None:
    cal = calendar_for("england")
    anchor = local("2025-10-26 00:00")  # Sun, BST until 02:00
    due = cal.due(anchor, hours(24))
    assert due - anchor == timedelta(hours=24)
    assert due == utc("2025-10-26 23:00")
    assert as_local(due) == wall("2025-10-26 23:00")  # a day of real time ends the same day by the wall clock


def test_clock_hours_ignore_weekends_and_holidays_when_due_is_computed() -> None:
    cal = calendar_for("england")
    anchor = local("2025-04-17 20:00")  # Thu before Good Friday
    assert as_local(cal.due(anchor, hours(4))) == wall("2025-04-18 00:00")
    assert as_local(cal.due(anchor, hours(72))) == wall("2025-04-20 20:00")


def test_day_end_is_configurable_when_a_calendar_is_built_with_one() -> None:
    cal = calendar_for("england", day_end=time(16, 30))
    assert as_local(cal.add_working_days(local("2025-04-16 10:00"), 1)) == wall("2025-04-17 16:30")


# -- calendar names ----------------------------------------------------------------------------------


def test_england_is_the_default_when_no_calendar_is_named() -> None:
    cal = calendar_for(None)
    assert cal.name == "england"
    assert cal.day_end == FIVE_PM


@pytest.mark.parametrize("name", ["atlantis", "England", "great_britain", "wales "])
def test_unknown_calendar_is_raised_with_the_known_names_when_the_name_is_not_a_nation(name: str) -> None:
    with pytest.raises(UnknownCalendar) as err:
        calendar_for(name)
    message = str(err.value)
    assert f"'{name}'" in message
    assert "england, northern_ireland, scotland, wales" in message
    assert err.value.name == name
    assert isinstance(err.value, WorkflowError) and isinstance(err.value, ValueError)


def test_unknown_calendar_is_raised_when_the_calendar_is_built_directly() -> None:
    with pytest.raises(UnknownCalendar, match="no working-day calendar 'ulster'"):
        WorkingCalendar("ulster")


def _walked_working_days(cal: WorkingCalendar, start: datetime, end: datetime) -> int:
    """The definition, one day at a time: working days after start's day up to end's day."""
    a, b = cal.local_date(start), cal.local_date(end)
    sign = 1
    if b < a:
        a, b, sign = b, a, -1
    count, day = 0, a
    while day < b:
        day += timedelta(days=1)
        count += cal.is_working_day(day)
    return sign * count


def test_working_days_between_counts_as_the_day_by_day_walk_does_for_each_nation() -> None:
    import random

    rnd = random.Random(7)
    base = datetime(2024, 1, 1, tzinfo=UTC)
    for name in ("england", "wales", "scotland", "northern_ireland"):
        cal = calendar_for(name)
        for _ in range(300):
            a = base + timedelta(hours=rnd.randrange(0, 24 * 900))
            b = base + timedelta(hours=rnd.randrange(0, 24 * 900))
            assert cal.working_days_between(a, b) == _walked_working_days(cal, a, b), (name, a, b)
    # Worked example: referred Thu 17 Apr 2025, response due Tue 6 May (18, 21 Apr and 5 May are holidays).
    england = calendar_for("england")
    assert england.working_days_between(datetime(2025, 4, 17, 12, tzinfo=UTC),
                                        datetime(2025, 5, 6, 16, tzinfo=UTC)) == 10
