"""axe-core on the main pages the journeys do not visit: the administrator's pages, inbox and account;
the case list with filters (and with a refused filter); a form submitted empty, whose GOV.UK error
summary links to its fields and which saves nothing. Every page at 1280 px and at 375 px."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

import pytest
import sqlalchemy as sa
from playwright.sync_api import Browser, expect

from notifications.models import FAILED, InboxItem, OutboxMessage
from reprisals.accounts import create_token
from reprisals.models import User
from tests.web.browser.conftest import NARROW, Live, Pages, check_page
from tests.web.conftest import count_rows

CHECK_AT_375 = True  # every page at 1280 px, then at 375 px on the same page load


def seed_messages(live: Live, email: str) -> None:
    """An unread notification for ``email`` and a failed message, so their pages show a list."""
    now = live.web.clock.now()
    with live.web.database.session() as s:
        user = s.scalars(sa.select(User).where(User.email == email)).one()
        s.add(InboxItem(message_key=f"a11y-{user.id}", recipient=str(user.id), template="reminder",
                        subject="Case RPR-2025-0001: establishment response due Tue 6 May",
                        body="The response is due in 3 working days.", link="/cases/RPR-2025-0001",
                        created_at=now - timedelta(minutes=5)))
        s.add(OutboxMessage(idempotency_key="timer:9:reminder:3", channel="email", recipient="someone@example.test",
                            template="reminder", context={}, status=FAILED, attempts=8, created_at=now,
                            next_attempt_at=now, last_error="TemporaryFailure: 421 try later"))
        s.commit()


def heading(p: Pages, text: str) -> None:
    expect(p.page.get_by_role("heading", level=1)).to_have_text(text)


def test_the_administrators_pages(live: Live, person: Any) -> None:
    world = live.web.world
    seed_messages(live, world.admin)
    admin: Pages = person("admin")
    admin.sign_in(world.admin, check=False)  # the sign-in page is checked by the journeys
    admin.check("home")
    page = admin.page

    page.get_by_role("link", name="Notifications").click()
    heading(admin, "Notifications")
    expect(page.locator(".app-inbox__item--unread")).to_have_count(1)
    admin.check("inbox")

    page.get_by_role("link", name="Your account").click()
    heading(admin, "Your account")
    admin.check("account")

    page.get_by_role("link", name="Administration", exact=True).click()
    heading(admin, "Administration")
    admin.check("administration")

    page.get_by_role("link", name="Users", exact=True).click()
    heading(admin, "Users")
    expect(page.locator("#users tbody tr")).to_have_count(7)  # the world's people
    expect(page.get_by_role("heading", name="Invite a user")).to_be_visible()
    admin.check("users-and-invite-form")

    # The invitation form submitted empty: the error summary, links to the fields, nothing saved.
    before = count_rows(live.web.database, ("users",))
    page.get_by_role("button", name="Invite user").click()
    page.wait_for_load_state()
    summary = page.locator(".govuk-error-summary")
    expect(summary).to_be_visible()
    expect(summary).to_contain_text("Enter the user's name")
    assert page.title().startswith("Error:")
    expect(page.locator(".govuk-error-message").first).to_be_visible()
    admin.check("invite-form-errors")
    summary.get_by_role("link", name="Enter the user's name").click()
    assert page.evaluate("document.activeElement.id") == "name"
    assert count_rows(live.web.database, ("users",)) == before

    admin.go("/admin/users")
    page.locator("#users").get_by_role("link").first.click()
    expect(page.get_by_role("button", name="Save role and body")).to_be_visible()
    admin.check("user")

    # A user with an API token: the admin sees it and revokes it.
    with live.web.database.session() as s:
        lead = s.scalars(sa.select(User).where(User.email == world.lead)).one()
        create_token(s, lead, "weekly figures", live.web.clock.now())
        s.commit()
        lead_id = lead.id
    admin.go(f"/admin/users/{lead_id}")
    tokens = page.locator("table", has_text="weekly figures")
    expect(tokens).to_be_visible()
    admin.check("user-with-a-token")
    tokens.get_by_role("button", name="Revoke token weekly figures").click()
    page.wait_for_load_state()
    expect(page.locator(".govuk-notification-banner, .govuk-panel, main").first).to_contain_text(
        "token “weekly figures” has been revoked")
    expect(tokens).to_contain_text("Revoked")
    admin.check("user-token-revoked")

    admin.go("/admin/")
    page.get_by_role("link", name="Establishments", exact=True).click()
    heading(admin, "Establishments")
    admin.check("establishments")
    page.locator("main").get_by_role("link", name="HMP Thornbury Fen").first.click()
    heading(admin, "Edit HMP Thornbury Fen")
    admin.check("establishment")

    admin.go("/admin/")
    page.get_by_role("link", name="Protocol versions", exact=True).click()
    heading(admin, "Protocol versions")
    admin.check("protocol-versions")

    admin.go("/admin/")
    page.get_by_role("link", name="Failed messages", exact=True).click()
    heading(admin, "Failed messages")
    expect(page.locator("main")).to_contain_text("421 try later")
    admin.check("failed-messages")


def test_the_case_list_with_filters_and_a_refused_filter(live: Live, person: Any) -> None:
    world = live.web.world
    lead: Pages = person("lead")
    lead.sign_in(world.lead, check=False)
    page = lead.page
    page.get_by_role("link", name="Cases", exact=True).click()
    expect(page.locator("#results")).to_have_text("2 cases")
    lead.check("case-list")

    page.get_by_label("Stage").select_option(label="Triage")
    page.get_by_label("Risk", exact=True).select_option(label="Standard")
    page.get_by_label("Sort by").select_option(label="Risk (most urgent first)")
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_load_state()
    expect(page.locator("#results")).to_have_text("1 case matches your filters")
    expect(page.locator(".app-case-table tbody tr")).to_have_count(1)
    expect(page.locator(".app-case-table")).to_contain_text(world.triaged)
    expect(page.get_by_role("link", name="Clear filters")).to_be_visible()
    lead.check("case-list-filtered")

    page.get_by_label("Case reference").fill("not a reference!")
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_load_state()
    summary = page.locator(".govuk-error-summary")
    expect(summary).to_contain_text("Enter a case reference using only letters, numbers and hyphens")
    assert page.title().startswith("Error:")
    lead.check("case-list-refused-filter")

    # A question of the report flow submitted empty: its error summary, and no case opened.
    before = count_rows(live.web.database, ("cases",))
    lead.go("/cases/new/received")
    page.get_by_role("button", name="Continue").click()
    page.wait_for_load_state()
    summary = page.locator(".govuk-error-summary")
    expect(summary).to_contain_text("Enter the date the concern was received")
    expect(summary).to_contain_text("Select how the concern was received")
    assert page.title().startswith("Error:")
    lead.check("report-question-errors")
    summary.get_by_role("link", name="Select how the concern was received").click()
    assert page.evaluate("document.activeElement.name") == "channel"
    assert count_rows(live.web.database, ("cases",)) == before


def test_the_check_fails_on_every_kind_of_problem(browser: Browser) -> None:
    """The check is not vacuous. No server is needed, so this runs once, not per database:
    - a field without a label and an image without alternative text (critical);
    - text outside every landmark (axe's "region" rule, moderate: every impact level counts);
    - a page wider than a 375 px window, the message naming the element that sticks out and its width,
      while the same content inside a box that scrolls on its own passes the width check."""
    ctx = browser.new_context(viewport=NARROW)
    try:
        p = Pages(cast(Live, None), ctx.new_page(), "axe-self-test", at_375=True)
        p.page.set_content('<!doctype html><html lang="en"><head><title>Broken</title></head><body>'
                           '<p>Outside every landmark</p><main><h1>Broken</h1><input type="text">'
                           '<img src="data:,"><div class="app-test" id="too-wide">'
                           '<div style="width: 600px">wide</div></div></main></body></html>')
        with pytest.raises(AssertionError) as failed:
            p.check("broken")
        message = str(failed.value)
        for expected in ("axe label (critical)", "axe image-alt (critical)", "axe region (moderate)",
                         "scrolls sideways: 6", "in a 375 px window", "div#too-wide > div (600 px wide"):
            assert expected in message, (expected, message)

        p.page.set_content('<!doctype html><html lang="en"><head><title>Fine</title></head><body><main>'
                           '<h1>Fine</h1><div style="overflow-x: auto" tabindex="0" role="region" '
                           'aria-label="A wide table"><div style="width: 600px">wide</div></div>'
                           '</main></body></html>')
        check_page(p.page, "axe-self-test-scrolling-box")  # no AssertionError
    finally:
        ctx.close()
