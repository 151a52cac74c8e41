"""Setting up two-factor sign-in and signing in with it, in a real browser, axe-core on every page."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pyotp
import pytest

from tests.conftest import DATABASES
from tests.web.browser.conftest import Live


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)  # pages only: one database
def test_a_member_sets_up_two_factor_sign_in_and_signs_in_with_a_code(live: Live, person: Any) -> None:
    clock = live.web.clock
    staff = person("staff")
    staff.sign_in(live.web.world.staff, check=False)  # the sign-in page is checked elsewhere
    staff.go("/account/")
    staff.page.get_by_role("link", name="Set up two-factor sign-in").click()
    staff.page.wait_for_load_state()
    assert staff.page.get_by_role("img", name="QR code to scan with your authenticator app").is_visible()
    staff.check("set-up")
    staff.page.set_viewport_size({"width": 375, "height": 800})
    assert staff.page.evaluate("document.documentElement.scrollWidth") <= 375  # reflows on a phone
    staff.page.set_viewport_size({"width": 1280, "height": 900})
    secret = staff.page.locator("#secret").inner_text().replace(" ", "")

    staff.page.get_by_label("Code from your app").fill(pyotp.TOTP(secret).at(clock.now()))
    staff.page.get_by_role("button", name="Continue").click()
    staff.page.wait_for_load_state()
    assert "Two-factor sign-in is set up" in staff.page.content()
    assert staff.page.locator("#recovery-codes li").count() == 10
    staff.check("recovery-codes")
    staff.page.get_by_role("link", name="I have kept my codes: continue").click()
    staff.page.get_by_role("button", name="Sign out").click()
    staff.page.wait_for_load_state()

    clock.advance(timedelta(seconds=30))
    staff.sign_in(live.web.world.staff, check=False)
    assert "/sign-in/code" in staff.page.url
    staff.page.get_by_label("Code from your app").fill("123456" if pyotp.TOTP(secret).at(clock.now()) != "123456"
                                                       else "654321")
    staff.page.get_by_role("button", name="Continue").click()
    staff.page.wait_for_load_state()
    summary = staff.page.locator(".govuk-error-summary")
    assert "The code is not correct" in summary.inner_text()
    staff.check("code-wrong")
    staff.page.get_by_label("Code from your app").fill(pyotp.TOTP(secret).at(clock.now()))
    staff.page.get_by_role("button", name="Continue").click()
    staff.page.wait_for_load_state()
    assert staff.page.url.rstrip("/") == live.url
    assert staff.page.get_by_role("link", name="Cases").is_visible()
