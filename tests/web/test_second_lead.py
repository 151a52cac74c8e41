"""The second-lead rule as a hand-off through the pages (protocol version 2): the other leads are asked,
the case says whom it waits for, the proposer is offered only the outcomes they may close with alone, and
the confirming lead sees the proposal and confirms it or sends it back with a reason."""

from __future__ import annotations

import re
from html import unescape

import sqlalchemy as sa

from notifications.models import OutboxMessage
from reprisals.models import User
from reprisals.sensitive import UNLOCK_WINDOW
from tests.web.conftest import Web, case_state
from tests.web.test_case_actions import Pages

ASSESSMENT = "The governor's reply confirms the job was taken away."


def to_closure_review(lead: Pages) -> None:
    lead.act("refer", {"recipients": ["head_of_establishment"]})
    lead.act("record_response", {"responder": "establishment", "summary": "Job restored."})
    lead.act("accept_response", {"proposed_finding": "substantiated", "assessment": ASSESSMENT})


def test_a_proposed_finding_waits_for_another_lead_who_confirms_or_sends_it_back(web: Web) -> None:
    ref = web.world.triaged
    lead, second = Pages(web, web.world.lead, ref), Pages(web, web.world.second_lead, ref)
    to_closure_review(lead)
    with web.database.session() as s:
        proposer = s.scalars(sa.select(User).where(User.email == web.world.lead)).one()
        other = s.scalars(sa.select(User).where(User.email == web.world.second_lead)).one()
        asked = {m.recipient for m in s.scalars(sa.select(OutboxMessage).where(
            OutboxMessage.template == "finding_to_confirm"))}
    assert asked == {str(other.id), other.email}  # the other lead is asked, the proposer is not
    page = unescape(lead.act("complete_follow_up", {"summary": "Back at work."}))
    waiting = f"Waiting for a lead other than {proposer.name} to confirm the finding: Substantiated"
    assert waiting in page

    # The proposer's close form offers only the outcome they may close with alone.
    mine = lead.form("close")
    assert 'value="not_substantiated"' in mine and 'value="substantiated"' not in mine
    assert "you may close the case alone only with these outcomes" in unescape(mine)
    # Posting one anyway is refused by the rule, with its message, and nothing changes.
    before = case_state(web.database, ref)
    refused = unescape(lead.submit("close", {"outcome": "substantiated", "summary": "Mine."}, mine).get_data(
        as_text=True))
    assert "A different lead must confirm the outcome 'substantiated': you proposed the finding" in refused
    assert 'value="substantiated"' not in refused  # the form shown again offers only their outcomes
    assert case_state(web.database, ref) == before

    # The other lead sees the proposal (its assessment after a reason), and sends it back with a reason.
    theirs = unescape(second.form("send_back"))
    assert "The proposed finding" in theirs and ASSESSMENT not in theirs and proposer.name in theirs
    assert "Recorded — show identity to read it" in re.sub(r"<[^>]+>", "", theirs)
    web.post(second.client, f"/cases/{ref}/identity", {"reason": "Reading the assessment"})
    assert ASSESSMENT in unescape(second.form("send_back"))
    web.clock.advance(UNLOCK_WINDOW)  # shown no longer (and both sessions, idle 30 minutes, still live)
    before = case_state(web.database, ref)  # the unlock is a history event
    empty = unescape(second.submit("send_back", {"reason": ""}).get_data(as_text=True))
    assert "govuk-error-summary" in empty and case_state(web.database, ref) == before
    page = unescape(second.act("send_back", {"reason": "The response does not say who decided it."}))
    assert case_state(web.database, ref)["stage"] == "assessment" and waiting not in page

    # Proposed again, by the other lead this time: the first lead confirms it, with every outcome offered.
    second.act("accept_response", {"proposed_finding": "partly_substantiated", "assessment": ASSESSMENT})
    second.act("complete_follow_up", {"summary": "Back at work."})
    confirm = lead.form("close")
    assert 'value="substantiated"' in confirm and "Partly substantiated" in unescape(confirm)
    page = unescape(lead.act("close", {"outcome": "partly_substantiated", "summary": "Confirmed."}))
    assert case_state(web.database, ref)["stage"] == "closed" and "Waiting for a lead" not in page
