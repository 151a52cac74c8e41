"""In a real browser, with axe-core: the second-lead hand-off. The proposer sees whom the case waits for
and is offered only the outcome they may close with alone; the other lead reads the proposal on the
form and sends it back to assessment with a reason."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from reprisals.models import Case, User
from reprisals.services import advance_case
from tests.conftest import DATABASES
from tests.factories import REFER
from tests.web.browser.conftest import Live
from tests.web.browser.test_journeys import CANARIES


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)  # pages; both databases: test client
def test_a_proposed_finding_is_confirmed_or_sent_back_by_another_lead(live: Live, person: Any) -> None:
    world, rt = live.web.world, live.web.rt
    ref = world.triaged
    with live.web.database.session() as s:
        lead_user = s.scalars(select(User).where(User.email == world.lead)).one()
        case = s.scalars(select(Case).where(Case.reference == ref)).one()
        now = live.web.clock.now()
        for trigger, fields in [("refer", REFER), ("record_response", {"responder": "establishment",
                                                                        "summary": "Job restored."}),
                                ("accept_response", {"proposed_finding": "substantiated",
                                                     "assessment": "The reply confirms the job was taken."}),
                                ("complete_follow_up", {"summary": "Back at work."})]:
            advance_case(s, rt.engine, lead_user, case, trigger, fields, now)
        s.commit()
        name = lead_user.name

    lead = person("lead")
    lead.sign_in(world.lead, check=False)
    page = lead.go(f"/cases/{ref}")
    expect(page.locator("#second-lead")).to_contain_text(
        f"Waiting for a lead other than {name} to confirm the finding: Substantiated")
    lead.check("case-waiting-for-a-second-lead")
    page.locator("#actions + ul").get_by_role("link", name="Confirm the finding and close").click()  # not primary
    expect(page.get_by_role("radio")).to_have_count(1)  # only "Not substantiated"
    expect(page.get_by_label("Not substantiated")).to_be_visible()
    lead.check("close-form-of-the-proposer")

    second = person("second")
    second.sign_in(world.second_lead, check=False)
    page = second.go(f"/cases/{ref}")
    page.get_by_role("link", name="Send the finding back to assessment").click()
    # The assessment is free text: shown after a reason (tests/web/test_second_lead.py), said to exist before.
    expect(page.locator("#decision-proposal")).to_contain_text("Recorded — show identity to read it")
    assert "The reply confirms the job was taken." not in page.content()
    page.get_by_role("button", name="Send the finding back to assessment").click()
    expect(page.locator(".govuk-error-summary")).to_be_visible()  # a reason is needed
    second.check("send-back-form-with-error")
    page.get_by_label("Why the finding is sent back").fill("The reply does not say who decided.")
    page.get_by_role("button", name="Send the finding back to assessment").click()
    page.wait_for_load_state()
    expect(page.locator(".govuk-notification-banner--success")).to_be_visible()
    expect(page.locator("#second-lead")).to_have_count(0)
    assert "Assessment" in page.locator("#facts").inner_text()
    html = page.content()
    for canary in CANARIES:
        assert canary not in html and canary not in page.url
