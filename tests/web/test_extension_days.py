"""An extension of a working-day deadline onto a day that is not a working day (a weekend or a bank holiday
of the case's nation) is refused, naming the day and why, on the page, in the API and by the command, and
nothing is written; a clock-hour deadline (urgent cases) may end on any day. One test per surface, SQLite
only (the rule is the engine's, proven on both databases in tests/workflow/test_timers.py)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
import sqlalchemy as sa

from reprisals.models import Case, Establishment, User
from reprisals.services import LONDON, advance_case, open_case
from reprisals.vocabulary import day_words
from tests.factories import case_data, cipher
from tests.web.conftest import Cli, Web, assert_refused, case_state
from tests.web.test_api import Api, assert_problem
from workflow.models import LIVE, DeadlineRow

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)

DEADLINE = "triage_decision"  # 2 working days for a standard case, 4 hours for an urgent one


def days_ahead(web: Web) -> tuple[date, date]:
    """A Saturday two weeks or more ahead (after any running deadline) and the working day after it."""
    cal = web.rt.timers.calendar("england")
    day = web.clock.now().astimezone(LONDON).date() + timedelta(days=14)
    day += timedelta(days=(5 - day.weekday()) % 7)
    return day, cal.next_working_day(day)


def refusal(day: date) -> str:
    return f"{day_words(day)} is not a working day in England and Wales: choose a working day"


def urgent_case_at_triage(web: Web) -> str:
    """A case whose triage decision runs in clock hours."""
    with web.database.session() as s:
        lead = s.scalars(sa.select(User).where(User.email == web.world.lead)).one()
        est = s.get_one(Establishment, web.world.establishment_id)
        case = open_case(s, web.rt.engine, cipher(), lead, web.clock.now(), case_data(est, risk="urgent"))
        advance_case(s, web.rt.engine, lead, case, "record_consent_and_risk", {"consent": "full", "risk": "urgent"},
                     web.clock.now())
        s.commit()
        return case.reference


def due_of(web: Web, reference: str) -> tuple[str, datetime]:
    """The running triage decision's unit and due time."""
    with web.database.session() as s:
        row = s.scalars(sa.select(DeadlineRow).join(Case, Case.instance_id == DeadlineRow.instance_id)
                        .where(Case.reference == reference, DeadlineRow.name == DEADLINE,
                               DeadlineRow.status.in_(LIVE))).one()
        return row.unit, row.due_at


def end_of(web: Web, day: date) -> datetime:
    return web.rt.timers.calendar("england").end_of(day)


def test_the_page_refuses_a_day_off_for_a_working_day_deadline_and_allows_it_for_an_urgent_one(web: Web) -> None:
    saturday, monday = days_ahead(web)
    lead = web.sign_in(web.world.lead)
    standard, urgent = web.world.triaged, urgent_case_at_triage(web)
    before = case_state(web.database, standard)

    def extend(reference: str, day: date):  # type: ignore[no-untyped-def]
        return web.post(lead, f"/cases/{reference}/deadlines/{DEADLINE}/extend",
                        {"new_due": [str(day.day), str(day.month), str(day.year)], "reason": "Waiting for papers"})

    refused = extend(standard, saturday)
    html = refused.get_data(as_text=True)
    assert refused.status_code == 200
    assert "There is a problem" in html and 'href="#new_due"' in html
    assert html.count(refusal(saturday)) == 2  # in the error summary and beside the field
    assert case_state(web.database, standard) == before

    assert extend(standard, monday).status_code == 302
    assert due_of(web, standard)[1] == end_of(web, monday)

    unit, _ = due_of(web, urgent)
    assert unit == "hours"
    assert extend(urgent, saturday).status_code == 302  # a clock-hour deadline may end on any day
    assert due_of(web, urgent)[1] == end_of(web, saturday)


def test_the_api_refuses_a_day_off_as_a_field_error_and_allows_it_for_an_urgent_deadline(web: Web) -> None:
    saturday, monday = days_ahead(web)
    api = Api(web, web.world.lead)
    standard, urgent = web.world.triaged, urgent_case_at_triage(web)

    def extend(reference: str, day: date):  # type: ignore[no-untyped-def]
        version = web.database.raw("SELECT i.version FROM wf_instances i JOIN cases c ON c.instance_id = i.id "
                                   "WHERE c.reference = :r", r=reference)[0].version
        return api.post(f"/api/cases/{reference}/deadlines/{DEADLINE}/extension",
                        {"expected_version": version, "due": day.isoformat(), "reason": "Waiting for papers"})

    before = case_state(web.database, standard)
    body = assert_problem(extend(standard, saturday), 422)
    assert body["errors"] == {"due": refusal(saturday)}
    assert body["detail"].endswith("Nothing was saved.")
    assert case_state(web.database, standard) == before

    done = extend(standard, monday)
    assert done.status_code == 200, done.get_data(as_text=True)
    assert (done.get_json()["name"], done.get_json()["status"]) == (DEADLINE, "open")
    assert due_of(web, standard)[1] == end_of(web, monday)

    urgent_done = extend(urgent, saturday)
    assert urgent_done.status_code == 200, urgent_done.get_data(as_text=True)
    assert due_of(web, urgent)[1] == end_of(web, saturday)


def test_the_command_refuses_a_day_off_for_a_working_day_deadline_and_allows_it_for_an_urgent_one(
        web: Web, run: Cli) -> None:
    saturday, _ = days_ahead(web)
    standard, urgent = web.world.triaged, urgent_case_at_triage(web)
    before = case_state(web.database, standard)

    def extend(reference: str):  # type: ignore[no-untyped-def]
        return run("deadlines", "extend", reference, DEADLINE, "--to", f"{saturday.isoformat()}T17:00",
                   "--reason", "Waiting for papers", "--as", web.world.lead)

    lines = assert_refused(extend(standard), f"error: {standard}: {refusal(saturday)}")
    assert len(lines) == 1
    assert case_state(web.database, standard) == before

    done = extend(urgent)
    assert done.exit_code == 0, done.output
    assert f"{urgent}: Triage decision is open" in done.output
    assert due_of(web, urgent)[1] == end_of(web, saturday)
