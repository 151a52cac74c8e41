"""Figures for a period, from cases opened and moved through the real services on a real database:
what counts in which period, one body or all, the deadlines met and missed, and counts under 5
suppressed for publication (with a second cell where a total would give the first away)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.orm import Session

from reprisals.deadlines import make_timer_handler
from reprisals.errors import InvalidInput
from reprisals.messaging import Messenger
from reprisals.models import Case, EstablishmentType, Nation
from reprisals.reports import HIDDEN, SUPPRESSED, Period, Table, figures, parse_period
from reprisals.services import advance_case, open_case
from tests.conftest import Database
from tests.factories import CANARY_DESCRIPTION, CANARY_NAME, CONSENT, cipher, make_establishment
from tests.reprisals.conftest import Cast
from workflow.deadlines import Timers
from workflow.engine import Engine

LONDON = ZoneInfo("Europe/London")
LATER = datetime(2026, 6, 1, 12, 0, tzinfo=LONDON)  # "now" for figures of 2025: everything has fallen due


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=LONDON)


def opened(s: Session, wf: Engine, cast: Cast, received: str, **data: object) -> Case:
    values = {"establishment_id": cast.establishment.id, "received_at": local(received).isoformat(),
              "channel": "imb_application", "age_group": "adult", "sanction_types": ["transfer"],
              "description": CANARY_DESCRIPTION, "risk": "standard", "detainee_name": CANARY_NAME, **data}
    return open_case(s, wf, cipher(), cast.lead, local(received), values)


def test_periods_are_calendar_years_financial_years_or_days_and_bad_ones_are_refused() -> None:
    year, financial, days = parse_period("2025"), parse_period(" 2025-26 "), parse_period("2025-04-01..2025-09-30")
    assert (year.start, year.end) == (date(2025, 1, 1), date(2025, 12, 31))
    assert (financial.start, financial.end, financial.label) == (date(2025, 4, 1), date(2026, 3, 31),
                                                                 "1 April 2025 to 31 March 2026")
    assert (days.start, days.end) == (date(2025, 4, 1), date(2025, 9, 30))
    # Whole UK days: the financial year starts at midnight BST, 23:00 UTC the day before.
    assert financial.starts_at.isoformat() == "2025-03-31T23:00:00+00:00"
    assert financial.ends_before.isoformat() == "2026-03-31T23:00:00+00:00"  # 1 April 2026, 00:00 BST
    for text, message in [("2025-27", "written like 2025-26"), ("2025-02-30..2025-03-01", "does not exist"),
                          ("2025-05-01..2025-04-01", "ends before it starts"), ("last year", "must be a year"),
                          ("0000", "between 2000 and 2999"), ("9999-00", "between 2000 and 2999"),
                          ("2025-01-01..9999-12-31", "between 2000 and 2999"), ("0000-01-01..2025-01-01",
                                                                                 "does not exist")]:
        with pytest.raises(InvalidInput) as refused:
            parse_period(text)
        assert message in refused.value.errors["period"], text


def test_cases_count_in_the_period_they_were_received_and_outcomes_in_the_period_they_closed(
        database: Database, wf: Engine, cast: Cast) -> None:
    with database.session() as s:
        prison = cast.establishment
        scottish = make_establishment(s, name="HMP Glen", nation=Nation.SCOTLAND,
                                      type=EstablishmentType.YOUNG_OFFENDER_INSTITUTION)
        opened(s, wf, cast, "2025-03-31 23:30")  # the last day of 2024-25
        first = opened(s, wf, cast, "2025-04-01 00:30", sanction_types=["transfer", "segregation"], risk="high")
        opened(s, wf, cast, "2025-06-10 10:00", establishment_id=scottish.id, age_group="child", channel="letter")
        opened(s, wf, cast, "2026-03-31 23:59")  # the last minute of 2025-26
        opened(s, wf, cast, "2026-04-01 00:00")  # 2026-27
        advance_case(s, wf, cast.lead, first, "withdraw", {}, local("2025-04-02 09:00"))
        s.commit()
        assert prison.id != scottish.id

        f = figures(s, parse_period("2025-26"), now=LATER)

    assert (f.received, f.closed) == (3, 1)
    assert dict(f.table("sanction_types").rows)["Transfer"] == 3
    assert dict(f.table("sanction_types").rows)["Segregation"] == 1
    assert f.table("sanction_types").total is None  # a case may allege several kinds
    assert dict(f.table("risk").rows) == {"Urgent": 0, "High": 1, "Standard": 2}
    assert dict(f.table("channel").rows)["Letter"] == 1 and dict(f.table("channel").rows)["Imb application"] == 2
    assert dict(f.table("age_group").rows) == {"Child": 1, "Adult": 2}
    assert dict(f.table("nation").rows) == {"England": 2, "Wales": 0, "Scotland": 1, "Northern ireland": 0}
    assert dict(f.table("establishment_type").rows)["Young offender institution"] == 1
    assert dict(f.table("outcome").rows)["Withdrawn"] == 1 and f.table("outcome").total == 1
    assert f.table("risk").total == 3


def test_one_bodys_figures_leave_out_the_other_bodies_cases_and_an_unknown_body_is_refused(
        database: Database, wf: Engine, cast: Cast) -> None:
    with database.session() as s:
        opened(s, wf, cast, "2025-05-01 10:00")
        values = {"establishment_id": cast.establishment.id, "received_at": local("2025-05-02 10:00").isoformat(),
                  "channel": "letter", "age_group": "adult", "sanction_types": ["transfer"],
                  "description": "x", "risk": "standard", "detainee_name": "y"}
        open_case(s, wf, cipher(), cast.outside_lead, local("2025-05-02 10:00"), values)  # a PPO case
        s.commit()

        assert figures(s, parse_period("2025"), now=LATER).received == 2
        assert figures(s, parse_period("2025"), "IMB", now=LATER).received == 1
        assert figures(s, parse_period("2025"), "PPO", now=LATER).received == 1
        with pytest.raises(InvalidInput, match="body"):
            figures(s, parse_period("2025"), "XYZ", now=LATER)


def test_deadlines_due_in_the_period_count_as_met_in_time_met_late_or_still_overdue(
        database: Database, wf: Engine, cast: Cast) -> None:
    with database.session() as s:
        # Received Wed 16 Apr 2025 10:00: consent and risk due 1 working day later, Thu 17 Apr 17:00.
        in_time = opened(s, wf, cast, "2025-04-16 10:00")
        late = opened(s, wf, cast, "2025-04-16 10:00")
        opened(s, wf, cast, "2025-04-16 10:00")  # never acted on
        advance_case(s, wf, cast.lead, in_time, "record_consent_and_risk", CONSENT, local("2025-04-17 16:00"))
        advance_case(s, wf, cast.lead, late, "record_consent_and_risk", CONSENT, local("2025-04-18 09:00"))
        s.commit()
        # The sweep marks the untouched one overdue (and the late one was left after its due time).
        Timers().sweep_due(s, local("2025-04-17 17:01"), make_timer_handler(Messenger("https://x.test")))
        s.commit()

        deadlines = dict(figures(s, parse_period("2025-04-17..2025-04-17"), now=LATER).table("deadlines").rows)
        nothing_due = dict(figures(s, parse_period("2025-04-18..2025-04-18"), now=LATER).table("deadlines").rows)

    assert deadlines == {"Met by the due time": 1, "Met late": 1, "Still overdue": 1}
    with database.session() as s:
        opened(s, wf, cast, "2025-04-23 10:00")  # due Thu 24 Apr 17:00; no sweep has marked it
        s.commit()
        before = dict(figures(s, parse_period("2025-04-24..2025-04-24"), now=local("2025-04-24 16:59"))
                      .table("deadlines").rows)
        after = dict(figures(s, parse_period("2025-04-24..2025-04-24"), now=local("2025-04-24 17:01"))
                     .table("deadlines").rows)
    assert before["Still overdue"] == 0 and after["Still overdue"] == 1  # past due counts, marked or not
    assert nothing_due == {"Met by the due time": 0, "Met late": 0, "Still overdue": 0}


def published(rows: list[int], total: int | None) -> list[str]:
    return [shown for _, _, shown in Table("t", "T", [(str(i), n) for i, n in enumerate(rows)], total).shown(True)]


def test_counts_under_five_are_suppressed_for_publication_and_more_until_the_total_gives_nothing_away() -> None:
    table = Table("risk", "Risk", [("Urgent", 2), ("High", 7), ("Standard", 30)], total=39)
    assert [shown for _, _, shown in table.shown(publish=False)] == ["2", "7", "30"]
    assert table.total_shown(True) == "39"
    # One small cell and a total: the next smallest is hidden too (it is not "fewer than 5": it says so).
    assert published([2, 7, 30], 39) == [SUPPRESSED, HIDDEN, "30"]
    # Two small cells whose sum could be 1+4, 2+3, ...: nothing more to hide; zeros stay.
    assert published([1, 4, 0, 12], 17) == [SUPPRESSED, SUPPRESSED, "0", "12"]
    # Two small cells that must both be 1 (or both 4) given the total: one more hidden.
    assert published([1, 1, 20], 22) == [SUPPRESSED, SUPPRESSED, HIDDEN]
    assert published([4, 4, 9], 17) == [SUPPRESSED, SUPPRESSED, HIDDEN]
    # Hiding every other count still gives 1 and 5 (the least they could be): the whole table is withheld.
    assert published([1, 5, 0], 6) == [HIDDEN, HIDDEN, HIDDEN]
    assert published([1, 1, 5, 5], 12) == [HIDDEN] * 4
    # Several per case (no total to subtract from): only the small cells.
    assert published([3, 9], None) == [SUPPRESSED, "9"]
    assert published([0, 6, 9], 15) == ["0", "6", "9"]  # nothing small, nothing hidden
    assert Table("t", "T", [("A", 3)], total=3).total_shown(True) == SUPPRESSED


def test_no_published_table_lets_a_small_count_be_worked_out_from_its_total() -> None:
    """Every table of three cells with counts 0 to 9, and of four with counts 0 to 6: enumerate what a
    reader who knows the rule could know (shown counts and zeros exactly, "fewer than 5" as 1 to 4,
    "suppressed" as 5 or more — or as anything when the whole table is withheld —, the total exactly),
    and check that each small cell has more than one possible value."""
    from itertools import product

    for rows in [*product(range(10), repeat=3), *product(range(7), repeat=4)]:
        total = sum(rows)
        shown = published(list(rows), total)
        withheld = all(text == HIDDEN for text in shown)
        options: list[range] = []
        for i, text in enumerate(shown):
            if text == SUPPRESSED:
                options.append(range(1, 5))
            elif text == HIDDEN:
                options.append(range(0 if withheld else 5, total + 1))
            else:
                options.append(range(rows[i], rows[i] + 1))
        readings = [c for c in product(*options) if sum(c) == total]
        for i, n in enumerate(rows):
            if 0 < n < 5:
                assert len({c[i] for c in readings}) > 1, (rows, shown)


def test_an_empty_period_has_every_row_at_zero(database: Database, cast: Cast) -> None:
    with database.session() as s:
        f = figures(s, Period(date(2030, 1, 1), date(2030, 12, 31), "2030"), now=LATER)
    assert (f.received, f.closed) == (0, 0)
    assert all(n == 0 for t in f.tables for _, n in t.rows)
    assert len(f.table("sanction_types").rows) == 16 and len(f.table("outcome").rows) == 8
    assert timedelta(0) < f.period.ends_before - f.period.starts_at
