"""In a real browser, with axe-core: a lead corrects when a letter went, through the case timeline's
"Correct the date" link, and reads the letters table with the response due date worked out again."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from reprisals.models import Case, User
from reprisals.services import advance_case
from tests.conftest import DATABASES
from tests.factories import CONSENT, REFER
from tests.web.browser.conftest import Live
from tests.web.browser.test_journeys import CANARIES, fill_date, tab


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)  # pages; both databases: test client
def test_a_lead_corrects_the_date_a_letter_went_and_sees_the_letters(live: Live, person: Any) -> None:
    world, rt = live.web.world, live.web.rt
    ref = world.reported
    with live.web.database.session() as s:  # received Wed 16 April 2025; the letter is recorded as of Thu 24
        lead_user = s.scalars(select(User).where(User.email == world.lead)).one()
        case = s.scalars(select(Case).where(Case.reference == ref)).one()
        now = live.web.clock.now()
        advance_case(s, rt.engine, lead_user, case, "record_consent_and_risk", CONSENT, now,
                     occurred_at="2025-04-17T09:00")
        advance_case(s, rt.engine, lead_user, case, "refer", REFER, now, occurred_at="2025-04-24")
        s.commit()

    lead = person("lead")
    lead.sign_in(world.lead, check=False)
    page = lead.go(f"/cases/{ref}")
    letters = page.locator("#letters + table tbody tr")
    expect(letters).to_have_count(1)
    expect(letters.first).to_contain_text("Fri 9 May 2025")  # 10 working days from Thu 24 April

    tab(page, "Timeline")
    page.get_by_role("link", name=re.compile(r"^Correct the date of refer to the establishment")).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("When did this really happen?")
    lead.check("correct-the-date")
    fill_date(page, "When did this really happen?", 22, 4, 2025)
    page.get_by_label("Why is the date being corrected?").fill("The letter went on the Tuesday.")
    page.get_by_role("button", name="Correct the date").click()
    page.wait_for_load_state()

    assert page.url == f"{live.url}/cases/{ref}/timeline", page.url
    expect(page.locator(".govuk-notification-banner--success")).to_contain_text(
        "Date corrected: Refer to the establishment.")
    expect(page.locator(".app-timeline tbody tr").first).to_contain_text("Date corrected: Refer to the establishment")
    lead.check("timeline-after-correction")
    tab(page, "Overview")
    row = letters.first
    for text in ("Referral", "Head of establishment", "Sent Tue 22 April 2025", "Wed 7 May 2025", "Not yet"):
        expect(row).to_contain_text(text)
    lead.check("case-after-correction")
    html = page.content()
    for canary in CANARIES:
        assert canary not in html and canary not in page.url
