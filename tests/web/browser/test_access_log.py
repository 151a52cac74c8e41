"""In a real browser, with axe-core: the access log as an administrator finds it (Administration → Access
log), filtered with a GOV.UK date input, refused with an error summary; and as an auditor finds it from
their home, on a narrow screen (each entry a card, nothing wider than the screen)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from reprisals.access_log import record
from reprisals.models import Case, User
from tests.conftest import DATABASES
from tests.web.browser.conftest import Live


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)  # pages; both databases: test client
def test_the_access_log_is_found_filtered_and_read_on_a_narrow_screen(live: Live, person: Any) -> None:
    world, now = live.web.world, live.web.clock.now()
    with live.web.database.session() as s:
        users = {u.email: u for u in s.scalars(sa.select(User))}
        case = s.scalars(sa.select(Case).where(Case.reference == world.reported)).one()
        record(s, now - timedelta(days=1), "viewed_sensitive", actor=users[world.lead], via="api", case_id=case.id,
               detail={"what": "identity"})
        record(s, now - timedelta(hours=1), "role_changed", actor=users[world.admin], subject=users[world.staff],
               detail={"role": "lead"})
        s.commit()

    admin = person("admin")
    admin.sign_in(world.admin, check=False)
    page = admin.page
    page.get_by_role("link", name="Administration", exact=True).click()
    page.get_by_role("link", name="Access log").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Access log")
    expect(page.locator("#entries")).to_contain_text("Role or body changed")
    admin.check("access-log")

    page.get_by_label("What happened").select_option("viewed_sensitive")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator("#entries tbody tr")).to_have_count(1)
    expect(page.locator("#entries")).to_contain_text(world.reported)
    expect(page.get_by_role("link", name="Download these entries (CSV)")).to_be_visible()

    page.locator("#since-day").fill("31")
    page.locator("#since-month").fill("2")
    page.locator("#since-year").fill(str(now.year))
    page.get_by_role("button", name="Apply filters").click()
    summary = page.locator(".govuk-error-summary")
    expect(summary).to_contain_text("The start date must be a real date")
    assert page.title().startswith("Error:")
    admin.check("access-log-refused-date")
    summary.get_by_role("link", name="The start date must be a real date").click()
    assert page.evaluate("document.activeElement.id") == "since-day"

    auditor = person("auditor")
    auditor.page.set_viewport_size({"width": 375, "height": 800})
    auditor.sign_in(world.auditor, check=False)
    auditor.page.get_by_role("link", name="Access log").click()
    expect(auditor.page.locator("#entries")).to_contain_text(world.reported)
    assert auditor.page.evaluate("document.documentElement.scrollWidth") <= 375  # reflow (WCAG 1.4.10)
    auditor.check("access-log-auditor-narrow")
