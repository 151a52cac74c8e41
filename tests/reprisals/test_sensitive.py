"""The unlock window's rule (reprisals.sensitive, decision 24) where the pages cannot show it: a window is
one user's, a member of staff unassigned loses it at once, and what counts as free text in an event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from reprisals import access_log
from reprisals.sensitive import (
    UNLOCK_WINDOW,
    SealedText,
    event_text,
    read_sensitive,
    split_event,
    unlock,
    unlocked_until,
)
from reprisals.services import advance_case, assign_case, open_case
from tests.conftest import Database
from tests.factories import CANARY_NAME, CONSENT, case_data, cipher
from tests.reprisals.conftest import Cast
from workflow.engine import Engine
from workflow.models import HistoryEvent

T0 = datetime(2025, 5, 6, 10, 0, tzinfo=UTC)


def test_a_window_is_one_users_and_ends_when_they_may_no_longer_see_identity(
        database: Database, wf: Engine, cast: Cast) -> None:
    with database.session() as s:
        c = cipher()
        case = open_case(s, wf, c, cast.lead, T0, case_data(cast.establishment, assigned_user_id=cast.staff.id))
        advance_case(s, wf, cast.lead, case, "record_consent_and_risk", CONSENT, T0)
        advance_case(s, wf, cast.lead, case, "decline", {"reason": "Out of scope", "referred_to": "PPO"}, T0)
        until = unlock(s, wf, c, cast.staff, case, "Visiting", T0)
        assert until == T0 + UNLOCK_WINDOW == unlocked_until(s, cast.staff, case, T0 + timedelta(minutes=29))
        assert unlocked_until(s, cast.staff, case, T0 + UNLOCK_WINDOW) is None
        for other in (cast.lead, cast.second_lead, cast.party_lead, cast.auditor):
            assert unlocked_until(s, other, case, T0) is None
            assert read_sensitive(s, c, other, case, T0, via="web", what="test").identity is None
        view = read_sensitive(s, c, cast.staff, case, T0, via="web", what="test")
        assert view.identity is not None and view.identity.name == CANARY_NAME
        assert access_log.count(s, kind="viewed_sensitive") == 1

        event = s.scalars(select(HistoryEvent).where(HistoryEvent.trigger == "decline")).one()
        data, free = split_event(wf.spec_of(case.instance), event)
        assert {k: event_text(s, c, case, v) for k, v in free.items()} == {"reason": "Out of scope",
                                                                             "referred_to": "PPO"}
        assert data["fields"] == {} and all(isinstance(v, SealedText) for v in free.values())  # sealed in history

        other = open_case(s, wf, c, cast.lead, T0, case_data(cast.establishment, assigned_user_id=cast.staff.id))
        unlock(s, wf, c, cast.staff, other, "Visiting", T0)
        assign_case(s, wf, cast.lead, other, cast.other_staff, T0)  # unassigned: the window closes at once
        assert unlocked_until(s, cast.staff, other, T0) is None
        assert access_log.count(s, kind="unlocked") == 2
