"""In a real browser, with axe-core: a lead opens a case whose notes are hidden, gives a reason to show
identity, and reads the notes, the identity and who has seen it (reprisals.sensitive)."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from reprisals.models import Case, User
from reprisals.services import add_note
from tests.conftest import DATABASES
from tests.factories import CANARY_NAME
from tests.web.browser.conftest import Live
from tests.web.browser.test_journeys import no_identity_in_url, tab

NOTE = "Spoke to the wing officer NOTECANARY9"


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)  # pages; both databases: test client
def test_a_lead_gives_a_reason_and_then_reads_the_notes(live: Live, person: Any) -> None:
    world, rt = live.web.world, live.web.rt
    ref = world.triaged
    with live.web.database.session() as s:
        lead_user = s.scalars(select(User).where(User.email == world.lead)).one()
        case = s.scalars(select(Case).where(Case.reference == ref)).one()
        add_note(s, rt.engine, rt.cipher, lead_user, case, NOTE, live.web.clock.now())
        s.commit()

    lead = person("lead")
    lead.sign_in(world.lead, check=False)
    page = lead.go(f"/cases/{ref}/notes")
    expect(page.locator("#note-count")).to_contain_text("1 note.")
    assert NOTE not in page.content() and CANARY_NAME not in page.content()
    lead.check("notes-before-a-reason")
    tab(page, "Timeline")
    expect(page.locator("#seen")).to_be_visible()
    tab(page, "Overview")
    assert CANARY_NAME not in page.content()
    lead.check("case-before-a-reason")

    page.get_by_role("button", name="Show identity").click()  # a link styled as a button
    page.get_by_role("button", name="Show identity").click()
    expect(page.locator(".govuk-error-summary")).to_be_visible()
    lead.check("reason-missing")
    page.get_by_label("Why do you need to see who this person is?").fill("Arranging a follow-up visit")
    page.get_by_role("button", name="Show identity").click()
    page.wait_for_load_state()

    assert page.url.endswith(f"/cases/{ref}#person"), page.url
    no_identity_in_url(page)
    expect(page.locator(".govuk-notification-banner--success")).to_contain_text("are shown to you until")
    expect(page.locator("#identity")).to_contain_text(CANARY_NAME)
    expect(page.locator("#unlocked-until")).to_contain_text("Shown to you until")
    tab(page, "Notes")
    expect(page.locator(".app-note")).to_contain_text(NOTE)
    lead.check("notes-after-a-reason")
    tab(page, "Timeline")
    seen = page.locator("#seen").locator("xpath=following-sibling::table[1]")
    expect(seen).to_contain_text(lead_user.name)
    expect(seen).to_contain_text("Arranging a follow-up visit")
    lead.check("case-after-a-reason")
