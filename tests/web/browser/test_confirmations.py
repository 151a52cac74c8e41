"""In a real browser, with axe-core: an account an admin moved to a new role waits for a lead of its body;
the lead finds it from their home, refuses it without a reason (the error summary) and then confirms
another. The pending account's home says why it sees no case. axe runs on the list and the refusal form
(the pending home is the home page with an inset text)."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from reprisals import admin as ops
from reprisals.models import User
from tests.conftest import DATABASES
from tests.web.browser.conftest import Live


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)  # pages; both databases: test client
def test_a_lead_confirms_and_refuses_the_accounts_of_their_body(live: Live, person: Any) -> None:
    world, rt = live.web.world, live.web.rt
    with live.web.database.session() as s:
        admin = s.scalars(select(User).where(User.email == world.admin)).one()
        for email in (world.staff, world.other_staff):
            user = s.scalars(select(User).where(User.email == email)).one()
            ops.change_role(s, admin, user, "lead", "IMB", live.web.clock.now(), rt.messenger)
        s.commit()

    waiting = person("waiting")
    waiting.sign_in(world.staff, check=False)
    expect(waiting.page.locator("#pending-account")).to_contain_text("must confirm your account")

    lead = person("lead")
    lead.sign_in(world.lead, check=False)
    page = lead.page
    expect(page.locator("#accounts-to-confirm")).to_contain_text("2 accounts are waiting")
    page.get_by_role("link", name="Accounts to confirm").first.click()
    expect(page.locator("#pending tbody tr")).to_have_count(2)
    lead.check("accounts-to-confirm")
    page.locator("#pending tbody tr").first.get_by_role("link").click()
    page.get_by_role("button", name="Refuse the account").click()
    summary = page.locator(".govuk-error-summary")
    expect(summary).to_contain_text("Enter why you are refusing this account")
    assert page.title().startswith("Error:")
    lead.check("refuse-form-with-error")
    page.get_by_label("Why are you refusing this account?").fill("Not one of our leads")
    page.get_by_role("button", name="Refuse the account").click()
    expect(page.locator(".govuk-notification-banner--success")).to_contain_text("refused and deactivated")
    page.locator("#pending tbody tr").first.get_by_role("button").click()
    expect(page.locator(".govuk-notification-banner--success")).to_contain_text("is confirmed")
    expect(page.locator("main")).to_contain_text("No account is waiting for you.")
