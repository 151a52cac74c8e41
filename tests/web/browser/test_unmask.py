"""In a real browser, with axe-core on every page (every impact level): an auditor opens a closed case, asks to
see who the person is, a lead approves, the auditor sees the identity once and not after; the lead sees who has
seen it; the auditor downloads the case's history (reprisals.unmasking, decision 27)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from reprisals.models import Case, User
from reprisals.services import advance_case
from tests.conftest import DATABASES
from tests.factories import CANARY_NAME, CANARY_NUMBER
from tests.web.browser.conftest import Live, Pages
from tests.web.browser.test_journeys import no_identity_in_url

ASK = "Checking the handling of a pattern of complaints"
YES = "Agreed: the annual review needs it"


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)  # pages; both databases: test client
def test_an_auditor_sees_the_identity_once_after_a_lead_approves(live: Live, person: Any) -> None:
    world = live.web.world
    ref = world.reported
    with live.web.database.session() as s:
        lead_user = s.scalars(select(User).where(User.email == world.lead)).one()
        auditor_user = s.scalars(select(User).where(User.email == world.auditor)).one()
        case = s.scalars(select(Case).where(Case.reference == ref)).one()
        advance_case(s, live.web.rt.engine, lead_user, case, "withdraw", {}, live.web.clock.now())
        s.commit()

    auditor: Pages = person("auditor")
    auditor.sign_in(world.auditor)
    page = auditor.go(f"/cases/{ref}")
    expect(page.locator("#unmask")).to_be_visible()
    expect(page.locator(".app-pseudonym")).to_have_text(re.compile(r"^Person P-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}$"))
    assert CANARY_NAME not in page.content()
    auditor.check("closed-case")
    page.get_by_role("button", name="Ask to see who the person is").click()  # a link drawn as a button
    auditor.check("ask")
    page.get_by_role("button", name="Ask to see who the person is").click()
    expect(page.locator(".govuk-error-summary")).to_be_visible()
    auditor.check("ask-reason-missing")
    page.get_by_label("Why do you need to see who this person is?").fill(ASK)
    page.get_by_role("button", name="Ask to see who the person is").click()
    page.wait_for_load_state()
    no_identity_in_url(page)
    expect(page.locator("#my-unmask-requests")).to_contain_text("Waiting for a lead to decide")
    auditor.check("case-request-waiting")

    lead: Pages = person("lead")
    lead.sign_in(world.lead, check=False)
    lead.check("home-with-request")
    lead.page.get_by_role("link", name="1 request to see who the person is").click()
    lead.check("requests-to-decide")
    lead.page.get_by_role("link", name="Decide").click()
    expect(lead.page.locator("main")).to_contain_text(ASK)
    lead.check("decide")
    lead.page.get_by_role("button", name="Save the decision").click()
    expect(lead.page.locator(".govuk-error-summary")).to_be_visible()
    lead.check("decide-missing")
    lead.page.get_by_label("Approve: they can see who the person is once, within 24 hours").check()
    lead.page.get_by_label("Reason for your decision").fill(YES)
    lead.page.get_by_role("button", name="Save the decision").click()
    lead.page.wait_for_load_state()
    expect(lead.page.locator(".govuk-notification-banner--success")).to_contain_text("approved")
    lead.check("case-after-approval")

    page = auditor.go(f"/cases/{ref}")
    expect(page.locator("#my-unmask-requests")).to_contain_text("Approved: you can see it once")
    expect(page.locator("#my-unmask-requests")).to_contain_text(YES)
    auditor.check("case-approved")
    page.get_by_role("button", name="See who the person is now (once)").click()
    page.wait_for_load_state()
    no_identity_in_url(page)
    expect(page.locator("main")).to_contain_text(CANARY_NAME)
    expect(page.locator("main")).to_contain_text(CANARY_NUMBER)
    expect(page.locator(".govuk-warning-text")).to_contain_text("shown once")
    auditor.check("identity-once")
    page.reload()  # the browser re-posts the form: the view is refused
    page.wait_for_load_state()
    assert CANARY_NAME not in page.content()
    expect(page.locator("#unmask-problem")).to_contain_text("already seen")
    auditor.check("identity-seen-already")
    page = auditor.go(f"/cases/{ref}")
    expect(page.locator("#my-unmask-requests")).to_contain_text("Approved and seen")
    assert page.get_by_role("button", name="See who the person is now (once)").count() == 0
    assert CANARY_NAME not in page.content()
    auditor.check("case-seen")
    auditor.go("/unmask-requests")
    expect(auditor.page.locator("#my-requests")).to_contain_text("Approved and seen")
    auditor.check("my-requests")

    page = lead.go(f"/cases/{ref}/timeline")  # who has seen: on the case page's timeline tab
    seen = page.locator("#seen").locator("xpath=following-sibling::table[1]")
    expect(seen).to_contain_text(auditor_user.name)
    expect(seen).to_contain_text(f"approved by {lead_user.name}")
    lead.check("who-has-seen")

    page = auditor.go(f"/cases/{ref}/timeline")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download this history to check it yourself (JSON)").click()
    document = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
    kinds = [e["kind"] for e in document["events"]]
    assert {"unmask_requested", "unmask_approved", "unmask_viewed"} <= set(kinds)
    text = json.dumps(document)
    assert CANARY_NAME not in text and ASK not in text and YES not in text
