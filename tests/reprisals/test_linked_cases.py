"""Linked cases: a new case opened from an earlier one (too late to reopen it), linked both ways, with both
histories saying so. Only the stages every protocol version has are used: a case opened, then withdrawn."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from reprisals.errors import InvalidInput
from reprisals.models import Case
from reprisals.services import LINKED_CASE_UNSEEN, advance_case, get_case_history, linked_cases, open_case
from tests.conftest import Database
from tests.factories import case_data, cipher
from tests.reprisals.conftest import Cast, count_rows
from workflow.engine import Engine
from workflow.history import verify
from workflow.models import HistoryEvent

T0 = datetime(2025, 4, 16, 9, 30, tzinfo=UTC)
LATER = T0 + timedelta(days=250)  # past the six months in which the earlier case could be reopened


def closed_case(s: Session, wf: Engine, cast: Cast) -> Case:
    """A case opened by the IMB staff member (assigned to them), HMIP a party, then withdrawn."""
    case = open_case(s, wf, cipher(), cast.staff, T0, case_data(cast.establishment))
    advance_case(s, wf, cast.lead, case, "withdraw", {}, T0 + timedelta(hours=1))
    assert case.closed_at is not None
    return case


def test_new_case_linked_both_ways_with_both_histories_saying_it_when_a_lead_opens_it_from_a_closed_case(
        session: Session, wf: Engine, cast: Cast) -> None:
    earlier = closed_case(session, wf, cast)
    before = history_of(session, wf, earlier)
    later = open_case(session, wf, cipher(), cast.lead, LATER,
                      case_data(cast.establishment, received_at="2025-12-20T10:00:00+00:00",
                                linked_case=f" {earlier.reference.lower()} "))  # as typed: case and spaces
    assert later.linked_case_id == earlier.id
    assert later.reference != earlier.reference
    created = get_case_history(session, wf, later)[0]
    assert (created.kind, created.data["linked_case"]) == ("created", earlier.reference)
    events = history_of(session, wf, earlier)
    assert events[:-1] == before
    assert events[-1] == ("case_linked", {"linked_case": later.reference}, str(cast.lead.id))
    # The earlier case's stage and outcome are untouched: linking is not reopening.
    assert (earlier.stage, earlier.closed_at is not None) == ("closed", True)
    assert linked_cases(session, cast.lead, later).linked_to is earlier
    assert linked_cases(session, cast.lead, later).linked_from == []
    assert linked_cases(session, cast.lead, earlier).linked_from == [later]
    assert linked_cases(session, cast.lead, earlier).linked_to is None
    assert verify(session).ok


def history_of(s: Session, wf: Engine, case: Case) -> list[tuple[str, Any, str | None]]:
    return [(e.kind, e.data, e.actor_id) for e in get_case_history(s, wf, case)]


def test_linked_cases_lists_only_cases_the_viewer_may_see_when_links_cross_what_they_see(
        session: Session, wf: Engine, cast: Cast) -> None:
    earlier = closed_case(session, wf, cast)
    # Two cases opened from it: one by the lead (not assigned to the staff member), one by the staff member.
    by_lead = open_case(session, wf, cipher(), cast.lead, LATER,
                        case_data(cast.establishment, linked_case=earlier.reference))
    by_staff = open_case(session, wf, cipher(), cast.staff, LATER,
                         case_data(cast.establishment, linked_case=earlier.reference))
    assert linked_cases(session, cast.lead, earlier).linked_from == [by_lead, by_staff]
    assert linked_cases(session, cast.staff, earlier).linked_from == [by_staff]
    assert linked_cases(session, cast.party_lead, earlier).linked_from == [by_lead, by_staff]  # HMIP is a party
    # A case the earlier one's viewer may see, opened from one they may not see: the link is not shown.
    assert linked_cases(session, cast.lead, by_lead).linked_to is earlier
    assert linked_cases(session, cast.other_staff, by_lead).linked_to is None
    assert [k for k, _, _ in history_of(session, wf, earlier)].count("case_linked") == 2


NOT_A_REFERENCE = "must be a case reference, such as RPR-2025-0001"
BAD_LINKS: list[Any] = [
    5, True, ["RPR-2025-0001"], {"reference": "RPR-2025-0001"},
    "RPR-2025-9999",  # no such case
    "RPR-2025-0001\x00", "not a reference", "RPR-2025-0001 OR 1=1",
]


@pytest.mark.parametrize("who", ["outside_lead", "other_staff"])
def test_invalid_input_naming_linked_case_and_nothing_written_when_the_case_is_one_the_actor_may_not_see(
        database: Database, wf: Engine, cast: Cast, who: str) -> None:
    with database.session() as s:
        earlier = closed_case(s, wf, cast)
        s.commit()
        reference = earlier.reference
    actor = getattr(cast, who)
    messages = []
    for value in (reference, "RPR-2025-9999"):  # a case they may not see; no such case
        before = count_rows(database)
        s = database.session()
        try:
            with pytest.raises(InvalidInput) as err:
                open_case(s, wf, cipher(), actor, LATER, case_data(cast.establishment, party_bodies=[],
                                                                   linked_case=value))
            assert set(err.value.errors) == {"linked_case"}, value
            messages.append(err.value.errors["linked_case"])
            assert not s.new and not s.dirty
        finally:
            s.rollback()
            s.close()
        assert count_rows(database) == before
    # The same words for both: whether the case exists is not revealed.
    assert messages == [LINKED_CASE_UNSEEN, LINKED_CASE_UNSEEN]


def test_invalid_input_naming_linked_case_when_a_value_is_not_a_reference_of_a_case_the_actor_sees(
        database: Database, wf: Engine, cast: Cast) -> None:
    with database.session() as s:
        closed_case(s, wf, cast)
        s.commit()
    before = count_rows(database)
    with database.session() as s:
        for value in BAD_LINKS:
            with pytest.raises(InvalidInput) as err:
                open_case(s, wf, cipher(), cast.staff, LATER, case_data(cast.establishment, linked_case=value))
            assert set(err.value.errors) == {"linked_case"}, value
            expected = LINKED_CASE_UNSEEN if isinstance(value, str) else NOT_A_REFERENCE
            assert err.value.errors["linked_case"] == expected, value
        assert int(s.scalar(select(func.count()).select_from(HistoryEvent)) or 0) == before["wf_history"]
        s.rollback()
    assert count_rows(database) == before


def test_case_not_linked_when_linked_case_is_absent_or_blank(session: Session, wf: Engine, cast: Cast) -> None:
    for value in (None, ""):
        case = open_case(session, wf, cipher(), cast.staff, T0, case_data(cast.establishment, linked_case=value))
        assert case.linked_case_id is None
        assert "linked_case" not in get_case_history(session, wf, case)[0].data
