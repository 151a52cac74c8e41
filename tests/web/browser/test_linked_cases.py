"""Open a linked case, in a real browser with axe-core on every new or changed page: a lead, on a case closed
more than six months ago, opens a new case from it through Report a concern; each case's page then links to
the other. The earlier case is closed with ``withdraw``, which every protocol version has."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from reprisals.models import Case, User
from reprisals.services import advance_case
from tests.conftest import DATABASES
from tests.factories import CANARY_DESCRIPTION, CANARY_NAME
from tests.web.browser.conftest import Live, Pages
from tests.web.browser.test_journeys import CANARIES, fill_date, no_identity_in_url, proceed, tab


def summary_value(p: Pages, key: str) -> Any:
    return p.page.locator(".govuk-summary-list__row").filter(
        has=p.page.locator(".govuk-summary-list__key", has_text=key)).locator(".govuk-summary-list__value")


# On the first database only (the one axe-core audits): the pages do not depend on the database, and the same
# journey runs on every database through the test client (tests/web/test_linked_cases.py).
@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)
def test_a_lead_opens_a_linked_case_from_a_closed_case_and_each_page_links_to_the_other(
        live: Live, person: Any) -> None:
    world, clock = live.web.world, live.web.clock
    earlier = world.reported
    with live.web.database.session() as s:
        lead_user = s.scalars(select(User).where(User.email == world.lead)).one()
        case = s.scalars(select(Case).where(Case.reference == earlier)).one()
        advance_case(s, live.web.rt.engine, lead_user, case, "withdraw", {}, clock.now())
        s.commit()
    clock.set(clock.now() + timedelta(days=200))  # too late to reopen it

    lead: Pages = person("lead")
    lead.sign_in(world.lead, check=False)
    page = lead.page
    lead.go(f"/cases/{earlier}")
    expect(page.get_by_role("heading", level=1)).to_contain_text(earlier)
    lead.check("closed-case")
    page.get_by_role("button", name="Open a linked case").click()
    page.wait_for_load_state()

    expect(page.get_by_role("heading", level=1)).to_have_text("Report a concern")
    expect(page.locator("#linked-case")).to_contain_text(f"The new case will be linked to case {earlier}")
    lead.check("report-start-linked")
    page.get_by_role("button", name="Start now").click()

    page.get_by_label("Which establishment is the person held in?").select_option(label="HMP Thornbury Fen")
    proceed(lead)
    fill_date(page, "Date received", 16, 4, 2025)
    page.get_by_role("group", name="How was the concern received?").get_by_label("IMB application").check()
    proceed(lead)
    page.get_by_label("Full name").fill(CANARY_NAME)
    proceed(lead)
    page.get_by_label("18 or over").check()
    proceed(lead)
    page.get_by_label("Loss of job or activity").check()
    proceed(lead)
    proceed(lead)  # when it happened is optional
    page.get_by_label("What happened?", exact=True).fill(CANARY_DESCRIPTION)
    proceed(lead)
    proceed(lead)  # the contact's date is optional
    proceed(lead)  # no other bodies
    page.get_by_label("Standard").check()
    proceed(lead)
    proceed(lead)  # nobody assigned yet

    expect(page.get_by_role("heading", level=1)).to_have_text("Check your answers before opening the case")
    expect(summary_value(lead, "Linked to")).to_have_text(earlier)
    lead.check("check-answers-linked")
    proceed(lead, "Open the case")
    expect(page.locator(".govuk-panel")).to_contain_text("Concern reported")
    later = page.locator(".govuk-panel strong").inner_text().strip()
    assert later != earlier
    page.get_by_role("link", name=f"Go to case {later}").click()
    page.wait_for_load_state()

    expect(page.get_by_role("heading", level=1)).to_contain_text(later)
    expect(summary_value(lead, "Linked to")).to_contain_text(earlier)
    lead.check("new-case-linked")
    summary_value(lead, "Linked to").get_by_role("link", name=earlier, exact=True).click()
    page.wait_for_load_state()

    expect(page.get_by_role("heading", level=1)).to_contain_text(earlier)
    expect(summary_value(lead, "Linked cases").get_by_role("link", name=later, exact=True)).to_be_visible()
    lead.check("earlier-case-linked")
    tab(page, "Timeline")
    expect(page.locator("table.app-timeline")).to_contain_text("A new case was opened linked to this one")
    no_identity_in_url(page)
    for canary in CANARIES:
        assert canary not in page.content()
