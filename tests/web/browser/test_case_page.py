"""The case page in a real browser (decision 30): one case taken through a few actions by its primary
button, each tab (overview, timeline, notes, deadlines) and the withdraw confirmation at 1280 px and at
375 px — no sideways scrolling (WCAG 2.2 1.4.10), axe-core clean at every impact, screenshots of each — and
the success messages' wording."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import DATABASES
from tests.web.browser.conftest import Live, Pages
from tests.web.browser.test_journeys import CANARIES, no_identity_in_url, proceed, tab

TABS = ("Overview", "Timeline", "Notes", "Deadlines")
NARROW, WIDE = 375, 1280


def reflows(page: Page) -> None:
    """Nothing wider than the viewport: the page never scrolls sideways."""
    width, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= inner, f"{page.url} is {width} px wide in a {inner} px window"


def every_tab(p: Pages, width: int) -> None:
    p.page.set_viewport_size({"width": width, "height": 900})
    for name in TABS:
        tab(p.page, name)
        expect(p.page.locator(".app-sub-navigation [aria-current=page]")).to_have_text(name)
        expect(p.page.locator("#case-status")).to_be_visible()
        reflows(p.page)
        p.check(f"{name.lower()}-{width}")


def primary(page: Page) -> Any:
    return page.locator("#primary-action")


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)  # pages; the web tests cover both databases
def test_a_case_through_its_primary_button_every_tab_at_both_widths_and_the_withdraw_confirmation(
        live: Live, person: Any) -> None:
    world = live.web.world
    ref = world.reported
    lead: Pages = person("lead")
    lead.sign_in(world.lead, check=False)
    page = lead.go(f"/cases/{ref}")
    expect(page.locator("#case-status")).to_contain_text("Stage: Reported")

    # The stage's next step is the one primary button; the form it opens records it.
    expect(primary(page)).to_have_text("Record consent and risk")
    expect(page.locator("main a", has_text="Record consent and risk")).to_have_count(1)  # the button only
    primary(page).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Record consent and risk")
    page.get_by_role("group", name="Consent given").get_by_label("Full consent").check()
    page.get_by_role("group", name="Risk", exact=True).get_by_label("Standard").check()
    proceed(lead, "Record consent and risk")
    assert page.url == f"{live.url}/cases/{ref}", page.url
    banner = page.locator(".govuk-notification-banner--success")
    expect(banner).to_contain_text(re.compile(
        r"Consent and risk recorded\. Triage decision due by \d+(:\d\d)?(am|pm) on \w+day \d+ \w+ \d{4}\."))
    expect(banner).not_to_contain_text("Done:")

    expect(primary(page)).to_have_text("Refer to the establishment")
    primary(page).click()
    page.get_by_role("group", name="Sent to").get_by_label("Head of establishment").check()
    proceed(lead, "Refer to the establishment")
    expect(page.locator(".govuk-notification-banner--success")).to_contain_text(
        re.compile(r"Referred to the establishment\. Establishment response due by .+\."))
    expect(page.locator("#case-status")).to_contain_text("Stage: Referred")
    expect(page.locator("#next-step")).to_have_text("Record the response")

    # A pause, from the deadlines tab, shows since when, by whom and the time it had left.
    tab(page, "Deadlines")
    page.get_by_role("link", name="Pause the clock of establishment response").click()
    page.get_by_label("Reason for pausing the clock").fill("The person is in hospital")
    proceed(lead, "Pause the clock")
    assert page.url == f"{live.url}/cases/{ref}/deadlines", page.url
    row = page.locator("#deadline-establishment_response")
    expect(row).to_contain_text("Clock paused")
    expect(row).to_contain_text("Time left when paused")
    expect(row).to_contain_text("Reason given — show identity to read it")  # free text: after a reason only
    assert "The person is in hospital" not in page.content()

    every_tab(lead, WIDE)
    every_tab(lead, NARROW)

    # Withdraw is never the next step: it goes through a page that says what stops, at both widths.
    tab(page, "Overview")
    expect(primary(page)).not_to_have_text("The person withdraws")
    page.locator("#stopping-actions").get_by_role("link", name="The person withdraws").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("The person withdraws: are you sure?")
    stops = page.locator("#what-stops")
    expect(stops).to_contain_text("Establishment response: its clock is paused")
    reflows(page)
    lead.check(f"withdraw-confirmation-{NARROW}")
    page.set_viewport_size({"width": WIDE, "height": 900})
    reflows(page)
    lead.check(f"withdraw-confirmation-{WIDE}")
    page.get_by_role("button", name="Continue").click()  # a link drawn as a button
    expect(page.get_by_role("heading", level=1)).to_have_text("The person withdraws")
    proceed(lead, "The person withdraws")
    done = page.locator(".govuk-notification-banner--success")
    expect(done).to_contain_text("Withdrawal recorded; the case is closed.")
    expect(done).not_to_contain_text("due by")
    expect(page.locator("#case-status")).to_contain_text("The case is closed.")
    expect(primary(page)).to_have_count(0)
    no_identity_in_url(page)
    for canary in CANARIES:
        assert canary not in page.content()
