"""The read side (reprisals.readside): the lead's queue order, the next step and its due date in words, a
paused deadline, the counts and the list filters they link to, and the filters each viewer is offered.
On SQLite: the queries are the same on both databases, and the web tests run the queue on both."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from reprisals.models import Case
from reprisals.readside import queue
from reprisals.readside.case_list import CaseFilters, check_filters, filter_options, list_cases
from reprisals.readside.rows import case_rows
from reprisals.services import advance_case
from reprisals.vocabulary import moment_words, time_left
from tests.conftest import DATABASES, Database
from tests.factories import CONSENT, make_case, make_establishment
from tests.reprisals.conftest import Cast
from workflow.calendars import calendar_for
from workflow.engine import Engine
from workflow.models import DeadlineRow

pytestmark = pytest.mark.parametrize("database", DATABASES[:1], indirect=True)

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)  # a Wednesday
ENGLAND = calendar_for("england")


def _open(s: Session, wf: Engine, cast: Cast, risk: str = "standard", **kw: object) -> Case:
    kw.setdefault("received_at", NOW.isoformat())
    return make_case(s, wf, actor=kw.pop("actor", cast.lead), now=NOW,  # type: ignore[arg-type]
                     establishment=cast.establishment, risk=risk, **kw)


def _due(s: Session, case: Case, at: datetime, *, paused_at: datetime | None = None) -> None:
    """Move the case's live deadlines to ``at`` (paused since ``paused_at`` if given)."""
    values: dict[str, object] = {"due_at": at}
    if paused_at is not None:
        values.update(status="paused", paused_at=paused_at)
    s.execute(sa.update(DeadlineRow).where(DeadlineRow.instance_id == case.instance_id,
                                           DeadlineRow.status.in_(("open", "overdue", "paused"))).values(**values))
    s.flush()


def test_the_queue_is_overdue_first_then_time_left_then_risk(database: Database, wf: Engine, cast: Cast,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    with database.session() as s:
        std_late = _open(s, wf, cast)
        urgent_late = _open(s, wf, cast, "urgent")
        high_tie = _open(s, wf, cast, "high")
        std_tie = _open(s, wf, cast)
        urgent_later = _open(s, wf, cast, "urgent")
        std_paused = _open(s, wf, cast)
        urgent_paused = _open(s, wf, cast, "urgent")
        closed = _open(s, wf, cast, "urgent")
        elsewhere = _open(s, wf, cast, "urgent", actor=cast.outside_lead, party_bodies=[])
        _due(s, std_late, NOW - timedelta(days=2))
        _due(s, urgent_late, NOW - timedelta(hours=5))
        tie = NOW + timedelta(days=5)
        _due(s, std_tie, tie)  # the same moment: the higher risk first
        _due(s, high_tie, tie)
        _due(s, urgent_later, NOW + timedelta(days=6))
        _due(s, std_paused, NOW + timedelta(days=2), paused_at=NOW - timedelta(days=1))
        _due(s, urgent_paused, NOW + timedelta(days=9), paused_at=NOW - timedelta(days=1))
        _due(s, closed, NOW - timedelta(days=9))
        advance_case(s, wf, cast.lead, closed, "withdraw", {"reason": "The person withdrew."}, NOW)
        assert closed.closed_at is not None
        s.commit()
        expected = [std_late, urgent_late, high_tie, std_tie, urgent_later, urgent_paused, std_paused]
        direct = queue.queue_ids(s, "IMB")
        monkeypatch.setattr(queue, "SMALL", 0)  # the deadline walk, as for a body with many cases
        walked = queue.queue_ids(s, "IMB")
        assert direct == walked == [c.id for c in expected]
        assert elsewhere.id not in direct and closed.id not in direct
        assert queue.queue_ids(s, "HMIP") == direct  # a party body's leads see the same queue
        assert queue.queue_ids(s, "IMB", limit=3) == direct[:3]


def test_each_row_names_the_next_step_and_when_it_is_due(database: Database, wf: Engine, cast: Cast) -> None:
    with database.session() as s:
        reported = _open(s, wf, cast, assigned_user_id=cast.staff.id)
        triage = _open(s, wf, cast, assigned_user_id=cast.staff.id)
        advance_case(s, wf, cast.lead, triage, "record_consent_and_risk", CONSENT, NOW)
        paused = _open(s, wf, cast)
        due = NOW + timedelta(days=1, hours=7)  # 5pm Thursday
        _due(s, reported, due)
        _due(s, paused, NOW + timedelta(days=3), paused_at=NOW - timedelta(days=1))
        s.commit()
        rows = {r.reference: r for r in case_rows(s, wf, cast.lead, [reported.id, triage.id, paused.id], NOW)}
        row = rows[reported.reference]
        assert row.step is not None and row.step.offered
        assert (row.step.trigger, row.step.label) == ("record_consent_and_risk", "Record consent and risk")
        assert row.due.words == f"due {moment_words(due, short=True)}" == "due 5pm Thu 3 Dec"
        assert row.due.left == time_left(due, NOW, in_hours=False, calendar=ENGLAND).words == "1 working day left"
        assert row.establishment.name == "HMP Thornbury Fen" and row.risk_label == "Standard"
        assert row.received == "2 December 2026" and row.assignee == cast.staff.name
        assert rows[triage.reference].step is not None and rows[triage.reference].step.trigger == "refer"
        # a paused deadline says so, with the time that was left when it was paused
        held = rows[paused.reference].due
        left = time_left(NOW + timedelta(days=3), NOW - timedelta(days=1), in_hours=False, calendar=ENGLAND).words
        assert held.paused and not held.overdue and held.due_at is None
        assert held.words == f"Paused: {left} when paused" and held.left == f"{left} when paused"

        # The member of staff may not refer: the row says who must (the body's leads, by name), and what
        # else they can do on it (never withdraw or left custody).
        [staff_row] = case_rows(s, wf, cast.staff, [triage.id], NOW, others=True, name_leads=True)
        assert staff_row.step is not None and not staff_row.step.offered
        assert staff_row.step.by == f"a lead of IMB ({cast.lead.name}, {cast.second_lead.name})"
        others = {step.trigger for step in staff_row.others}
        assert others and not others & {"withdraw", "left_custody", "refer"}
        assert all(step.offered for step in staff_row.others)
        # an auditor is offered nothing: the step is told, with who takes it
        [audited] = case_rows(s, wf, cast.auditor, [reported.id], NOW)
        assert audited.step is not None and not audited.step.offered
    assert audited.step.by == f"{cast.staff.name} or a lead of IMB"  # consent and risk: the assignee's or a lead's


def test_the_counts_are_what_the_filters_they_link_to_list(database: Database, wf: Engine, cast: Cast) -> None:
    with database.session() as s:
        late = [_open(s, wf, cast) for _ in range(2)]
        soon = _open(s, wf, cast, "urgent")
        later = _open(s, wf, cast)
        for c in late:
            _due(s, c, NOW - timedelta(hours=3))  # not yet swept: still "open", but past due
        _due(s, soon, NOW + timedelta(days=2))
        _due(s, later, NOW + timedelta(days=12))
        s.commit()
        summary = queue.lead_summary(s, "IMB", NOW)
        assert (summary.overdue, summary.due_this_week) == (2, 1)
        overdue = list_cases(s, wf, cast.lead, CaseFilters(overdue=True), NOW)
        week = list_cases(s, wf, cast.lead, CaseFilters(due_this_week=True), NOW)
        not_overdue = list_cases(s, wf, cast.lead, CaseFilters(overdue=False), NOW)
        assert sorted(r.reference for r in overdue.rows) == sorted(c.reference for c in late)
        assert [r.reference for r in week.rows] == [soon.reference]
        assert sorted(r.reference for r in not_overdue.rows) == sorted([soon.reference, later.reference])
        assert overdue.total == summary.overdue and week.total == summary.due_this_week
        assert all(r.due.overdue and r.due.left and r.due.left.startswith("overdue by") for r in overdue.rows)


def test_staff_are_offered_no_filter_that_can_only_return_nothing(database: Database, wf: Engine,
                                                                 cast: Cast) -> None:
    with database.session() as s:
        make_establishment(s, name="HMP Elsewhere")
        staff, lead, auditor = (filter_options(s, wf, u) for u in (cast.staff, cast.lead, cast.auditor))
    assert not staff.offered("body") and not staff.offered("assigned")
    assert staff.offered("stage") and staff.offered("risk") and staff.offered("establishment")
    assigned = dict(lead.choices["assigned"])
    assert assigned["me"] == "Me" and assigned["nobody"] == "Nobody"
    assert str(cast.staff.id) in assigned and str(cast.second_lead.id) in assigned
    assert str(cast.outside_lead.id) not in assigned and str(cast.party_lead.id) not in assigned
    assert "me" not in dict(auditor.choices["assigned"])  # an auditor is never assigned a case
    # a filter not on offer is refused in words and dropped; "me" is always accepted (the API's assigned=me)
    checked = check_filters(staff, {"body": "IMB", "assigned": "me", "risk": "urgent"})
    assert checked.errors == {"body": "Select an owning body from the list"}
    assert checked.filters == CaseFilters(assigned="me", risk=checked.filters.risk) and checked.filters.body is None


def test_bad_filters_are_refused_in_words_and_narrow_nothing(database: Database, wf: Engine, cast: Cast) -> None:
    with database.session() as s:
        options = filter_options(s, wf, cast.lead)
    checked = check_filters(options, {"q": "RPR' OR 1=1", "stage": "nowhere", "risk": "mild", "overdue": "maybe",
                                      "due": "soon", "assigned": str(cast.outside_lead.id), "establishment": "abc",
                                      "sort": "name"})
    assert checked.filters == CaseFilters() and not checked.filters.narrowed and checked.values == {}
    assert checked.errors == {
        "q": "Enter a case reference using only letters, numbers and hyphens, like RPR-2025-0012",
        "stage": "Select a stage from the list", "risk": "Select a risk from the list",
        "overdue": "Select overdue or not overdue", "due": "Select when the case is due from the list",
        "assigned": "Select who the case is assigned to from the list",
        "establishment": "Select an establishment from the list", "sort": "Select a sort order from the list"}
    good = check_filters(options, {"q": "rpr-2026", "stage": "triage", "due": "week", "sort": "risk"})
    assert not good.errors and good.values == {"q": "RPR-2026", "stage": "triage", "due": "week", "sort": "risk"}
    assert good.filters == CaseFilters(reference="RPR-2026", stage="triage", due_this_week=True, sort="risk")
    assert re.fullmatch(r"[A-Z0-9-]+", good.filters.reference or "")
