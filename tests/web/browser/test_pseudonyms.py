"""In a real browser, with axe-core: an auditor sees the pseudonym and the same person's other case, never the
name; a lead confirms "possibly the same person" and corrects a typo in the name, and the pseudonym stays."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from reprisals.models import Case, User
from reprisals.services import open_case
from tests.conftest import DATABASES
from tests.factories import CANARY_NAME, case_data
from tests.web.browser.conftest import Live
from tests.web.browser.test_journeys import no_identity_in_url


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)  # pages; both databases: test client
def test_pseudonyms_possible_matches_and_a_correction_in_the_browser(live: Live, person: Any) -> None:
    world, rt = live.web.world, live.web.rt
    with live.web.database.session() as s:
        lead_user = s.scalars(select(User).where(User.email == world.lead)).one()
        est = s.scalars(select(Case).where(Case.reference == world.reported)).one().establishment
        maybe = open_case(s, rt.engine, rt.cipher, lead_user, live.web.clock.now(), case_data(
            est, detainee_number="", detainee_date_of_birth="")).reference  # the canary's name only
        s.commit()

    auditor = person("auditor")
    auditor.sign_in(world.auditor, check=False)
    page = auditor.go(f"/cases/{world.reported}")
    pseudonym = page.locator(".app-pseudonym").inner_text()
    assert pseudonym.startswith("Person P-")
    expect(page.locator("#same-person")).to_contain_text(world.triaged)
    assert CANARY_NAME not in page.content()
    expect(page.get_by_text("Possibly the same person")).to_have_count(0)
    auditor.check("auditor-sees-the-pseudonym")

    lead = person("lead")
    lead.sign_in(world.lead, check=False)
    page = lead.go(f"/cases/{maybe}")
    assert page.locator(".app-pseudonym").inner_text() != pseudonym
    expect(page.get_by_role("heading", name=f"Possibly the same person as {world.triaged}")).to_be_visible()
    lead.check("lead-sees-possible-matches")
    page.set_viewport_size({"width": 375, "height": 800})
    # The person's section fits a phone (the rest of the case page's reflow is issue 14's).
    for box in (page.locator("#pseudonym").bounding_box(), page.locator(".govuk-inset-text", has_text=world.triaged)
                .bounding_box()):
        assert box is not None and box["x"] + box["width"] <= 375, box
    lead.check("possible-matches-at-375px")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.locator(".govuk-inset-text", has_text=world.triaged).get_by_role("button", name="Yes, the same person").click()
    expect(page.locator(".govuk-notification-banner--success")).to_contain_text("are the same person")
    expect(page.locator(".app-pseudonym")).to_have_text(pseudonym)
    no_identity_in_url(page)
    lead.check("match-confirmed")

    page.get_by_role("link", name="Correct who the person is").click()
    page.get_by_label("Why do you need to see who this person is?").fill("Correcting a misspelt name")
    page.get_by_role("button", name="Show identity").click()
    page.get_by_role("link", name="Correct who the person is").click()
    expect(page.get_by_label("Full name")).to_have_value(CANARY_NAME)
    page.get_by_label("Full name").fill("")
    page.get_by_role("button", name="Save the correction").click()
    expect(page.locator(".govuk-error-summary")).to_contain_text("Enter the person's name")
    lead.check("correction-errors")
    page.get_by_label("Full name").fill(CANARY_NAME + "e")
    page.get_by_label("Why are you correcting it?").fill("Misspelt when recorded")
    page.get_by_role("button", name="Save the correction").click()
    expect(page.locator(".govuk-notification-banner--success")).to_contain_text("keeps their pseudonym")
    expect(page.locator("#identity")).to_contain_text(CANARY_NAME + "e")
    expect(page.locator(".app-pseudonym")).to_have_text(pseudonym)
    no_identity_in_url(page)
    lead.check("corrected")
