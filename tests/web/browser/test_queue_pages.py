"""In a real browser, with axe-core (every impact, ``region`` included): the lead's home, the staff home, the
auditor's home and the case list with filters, at 1280 px and at 375 px (WCAG 1.4.10 Reflow: no sideways
scroll; the tables become one card per case). One page load per width, several checks on each; a next-step
link and a filter tag are followed, and the filter panel's "Show filters" toggle is used at 375 px."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import DATABASES
from tests.web.browser.conftest import Live, Pages
from tests.web.browser.test_journeys import CANARIES

WIDTHS = (1280, 375)
FITS = "document.documentElement.scrollWidth <= window.innerWidth"


def at_both_widths(who: Pages, path: str, label: str, checks: Callable[[Page, int], None]) -> None:
    """Load ``path`` once per width: it fits the window, passes axe, is photographed, and passes ``checks``."""
    for width in WIDTHS:
        who.page.set_viewport_size({"width": width, "height": 900})
        page = who.go(path)
        wide = page.evaluate("document.documentElement.scrollWidth")
        assert page.evaluate(FITS), f"{label} scrolls sideways at {width}px: {wide}px wide"
        who.check(f"{label}-{width}")
        checks(page, width)
        html = page.content()
        for canary in CANARIES:
            assert canary not in html


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)  # pages; both databases: test client
def test_the_homes_and_the_case_list_guide_the_work_on_any_screen(live: Live, person: Any) -> None:
    world = live.web.world

    lead = person("lead")
    lead.sign_in(world.lead, check=False)

    def lead_home(page: Page, width: int) -> None:
        queue = page.locator("#queue")
        expect(queue.locator("tbody tr")).to_have_count(2)
        expect(page.locator("#overdue-count")).to_contain_text("2 cases overdue")
        step = page.get_by_role("link", name=f"Record consent and risk on {world.reported}")
        expect(step).to_be_visible()
        header = queue.locator("thead")
        box = header.bounding_box()
        if width == 375:  # cards: the column headers are for screen readers only, each cell says its label
            assert box is None or box["height"] <= 1
            assert queue.locator("tbody tr").first.bounding_box()["width"] <= 375  # type: ignore[index]
        else:
            assert box is not None and box["height"] > 1

    at_both_widths(lead, "/", "lead-home", lead_home)
    lead.page.get_by_role("link", name=f"Record consent and risk on {world.reported}").click()
    lead.page.wait_for_load_state()
    assert lead.page.url.endswith(f"/cases/{world.reported}/actions/record_consent_and_risk")
    expect(lead.page.get_by_role("heading", level=1)).to_contain_text("Record consent and risk")

    def case_list(page: Page, width: int) -> None:
        toggle = page.locator("#filter-toggle")
        panel = page.locator("#case-filters")
        expect(page.locator("#selected-filters")).to_contain_text("Risk: Standard")
        if width == 375:  # closed on a narrow screen until asked for
            expect(toggle).to_have_text("Show filters")
            expect(toggle).to_have_attribute("aria-expanded", "false")
            expect(panel).to_be_hidden()
            toggle.click()
            expect(panel).to_be_visible()
            expect(toggle).to_have_text("Hide filters")
            assert page.evaluate(FITS)
        else:
            expect(toggle).to_have_attribute("aria-expanded", "true")
            expect(panel).to_be_visible()
        expect(page.locator(".app-case-table tbody tr")).to_have_count(1)

    at_both_widths(lead, "/cases/?risk=standard&stage=triage", "case-list-filtered", case_list)
    lead.page.get_by_role("link", name="Remove this filter: Stage: Triage").click()
    lead.page.wait_for_load_state()
    assert "stage=" not in lead.page.url and "risk=standard" in lead.page.url
    expect(lead.page.locator(".app-case-table tbody tr")).to_have_count(2)

    staff = person("staff")
    staff.sign_in(world.staff, check=False)

    def staff_home(page: Page, width: int) -> None:
        expect(page.locator("#owed tbody tr")).to_have_count(2)
        expect(page.locator("#owed")).to_contain_text("For a lead of IMB")
        expect(page.get_by_role("link", name=f"Record consent and risk on {world.reported}")).to_be_visible()

    at_both_widths(staff, "/", "staff-home", staff_home)

    auditor = person("auditor")
    auditor.sign_in(world.auditor, check=False)

    def auditor_home(page: Page, width: int) -> None:
        links = page.locator("#auditor-links")
        for name in ("Your body\u2019s cases", "Figures for annual reports", "Your requests to see who the person is"):
            expect(links.get_by_role("link", name=name, exact=True)).to_be_visible()
        expect(page.locator("#activity")).to_contain_text("Case reported")

    at_both_widths(auditor, "/", "auditor-home", auditor_home)
