"""Signing in and out in a real browser, with axe-core on each page."""

from __future__ import annotations

from typing import Any

from tests.web.browser.conftest import Live


def test_a_lead_signs_in_sees_home_and_signs_out(live: Live, person: Any) -> None:
    lead = person("lead")
    lead.sign_in(live.web.world.lead)
    assert lead.page.url.rstrip("/") == live.url
    lead.check("home")
    lead.page.get_by_role("button", name="Sign out").click()
    lead.page.wait_for_load_state()
    assert "/sign-in" in lead.page.url
    assert "You have signed out" in lead.page.content()
    lead.go("/")
    assert "/sign-in" in lead.page.url  # the session is over


def test_a_wrong_password_shows_the_gov_uk_error_summary(live: Live, person: Any) -> None:
    someone = person("someone")
    someone.sign_in(live.web.world.lead, password="definitely not it")
    summary = someone.page.locator(".govuk-error-summary")
    assert summary.is_visible()
    assert "Enter a correct email address and password" in summary.inner_text()
    someone.check("sign-in-error")
    summary.get_by_role("link").first.click()
    assert someone.page.evaluate("document.activeElement.id") == "email"
