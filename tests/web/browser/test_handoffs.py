"""Version 2's hand-offs in a real browser, with axe-core on every new or changed page: a change of consent
that narrows it (a referral then needs an override, stated under the link and refused without one), an
urgent child's referral that must copy the Youth Custody Service and the contact confirmed within 24 hours
(its deadline met, the written response still running), and an escalation to a recipient named by hand."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from reprisals.letters import TYPED_HIDDEN
from reprisals.models import Case, Establishment, User
from reprisals.services import advance_case, open_case
from tests.conftest import DATABASES
from tests.factories import REFER, case_data, cipher
from tests.web.browser.conftest import Live, Pages
from tests.web.browser.test_journeys import CANARIES, action_link, no_identity_in_url, proceed, success, tab
from tests.web.conftest import case_state

OVERRIDE_HINT = "Only with an override for risk to life or child safeguarding, with a reason."
YCS_HINT = "It must copy the Youth Custody Service."


def hints_of(page: Page, label: str) -> list[str]:
    """The conditions stated under an action's button (the status banner's primary action) or link."""
    if page.locator("#primary-action").filter(has_text=re.compile(rf"^\s*{re.escape(label)}\s*$")).count():
        return [t.strip() for t in page.locator("#case-status .govuk-hint").all_inner_texts()]
    item = page.locator("#actions + ul > li").filter(has=page.get_by_role("link", name=label, exact=True))
    return [t.strip() for t in item.locator(".govuk-hint").all_inner_texts()]


def summary_value(page: Page, key: str) -> str:
    row = page.locator(".govuk-summary-list__row").filter(
        has=page.locator(".govuk-summary-list__key", has_text=re.compile(rf"^\s*{key}\s*$")))
    return row.locator(".govuk-summary-list__value").first.inner_text().strip()


def running_deadlines(page: Page) -> list[str]:
    """The deadlines on the case's deadlines tab (and back to the page they were read from)."""
    back = page.url
    tab(page, "Deadlines")
    names = [t.strip() for t in page.locator("#deadline-table tbody th[scope=row]").all_inner_texts()]
    page.goto(back)
    return names


def submit(p: Pages, button: str, ref: str | None = None) -> None:
    """Submit the action's form; with ``ref``, it must have been done (back on the case page, banner)."""
    proceed(p, button)
    if ref is not None:
        assert p.page.url == f"{p.live.url}/cases/{ref}", p.page.url
        success(p)
    no_identity_in_url(p.page)


def refused(p: Pages, message: str) -> None:
    """The form came back with the problem in the error summary, and the page's title says so."""
    summary = p.page.locator(".govuk-error-summary")
    expect(summary).to_be_visible()
    expect(summary).to_contain_text(message)
    assert p.page.title().startswith("Error:"), p.page.title()


def no_identity(page: Page) -> None:
    html = page.content()
    for canary in CANARIES:
        assert canary not in html


def open_urgent_child_case(live: Live) -> str:
    """A 16-year-old's urgent concern, assigned to the world's staff, consent (full) and risk recorded."""
    world, rt = live.web.world, live.web.rt
    with live.web.database.session() as s:
        lead = s.scalars(select(User).where(User.email == world.lead)).one()
        staff = s.scalars(select(User).where(User.email == world.staff)).one()
        est = s.get(Establishment, world.establishment_id)
        assert est is not None
        now = live.web.clock.now()
        case = open_case(s, rt.engine, cipher(), lead, now,
                         case_data(est, age_group="child", risk="urgent", assigned_user_id=staff.id))
        advance_case(s, rt.engine, lead, case, "record_consent_and_risk", {"consent": "full", "risk": "urgent"}, now)
        ref = case.reference
        s.commit()
    return ref


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)  # pages; both databases: test client
def test_a_narrowed_consent_needs_an_override_to_refer(live: Live, person: Any) -> None:
    world = live.web.world
    ref = world.triaged  # consent full, risk standard, an adult in a prison
    lead: Pages = person("lead")
    lead.sign_in(world.lead, check=False)
    page = lead.go(f"/cases/{ref}")
    assert summary_value(page, "Consent").startswith("Full consent")
    expect(action_link(page, "Refer to the establishment")).to_be_visible()
    assert hints_of(page, "Refer to the establishment") == []
    expect(action_link(page, "Record only (no consent)")).to_have_count(0)  # the person consented

    # Full → anonymous, through the form.
    action_link(page, "Record a change of consent").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Record a change of consent")
    lead.check("form-change-consent")
    page.get_by_role("group", name="Consent now given").get_by_label("Anonymous (identifiers removed)").check()
    page.get_by_label("What the person said").fill("Does not want to be named.")
    submit(lead, "Record a change of consent", ref)
    assert summary_value(page, "Consent").startswith("Anonymous (identifiers removed)")
    assert summary_value(page, "Stage").startswith("Triage")  # a change of consent leaves the stage as it is
    assert hints_of(page, "Refer to the establishment") == [OVERRIDE_HINT]  # narrowed: an override is needed

    # The same consent again is refused, on the page, and nothing changes.
    before = case_state(live.web.database, ref)
    action_link(page, "Record a change of consent").click()
    page.get_by_role("group", name="Consent now given").get_by_label("Anonymous (identifiers removed)").check()
    page.get_by_label("What the person said").fill("Still anonymous.")
    submit(lead, "Record a change of consent")
    refused(lead, "Consent is already recorded as 'anonymous'")
    assert case_state(live.web.database, ref) == before

    # Anonymous → none.
    page.get_by_role("group", name="Consent now given").get_by_label("No consent").check()
    page.get_by_label("What the person said").fill("Withdraws consent altogether.")
    submit(lead, "Record a change of consent", ref)
    assert summary_value(page, "Consent").startswith("No consent")
    assert hints_of(page, "Refer to the establishment") == [OVERRIDE_HINT]
    expect(action_link(page, "Record only (no consent)")).to_be_visible()  # no consent now: record only is offered
    no_identity(page)
    lead.check("case-with-override-condition")

    # Refer without an override: refused in the error summary, nothing changes.
    before = case_state(live.web.database, ref)
    action_link(page, "Refer to the establishment").click()
    page.get_by_role("group", name="Sent to").get_by_label("Head of establishment").check()
    submit(lead, "Refer to the establishment")
    refused(lead, "The person narrowed or withdrew their consent: nothing more may be sent unless a lead "
                  "overrides for risk to life or child safeguarding, with a reason.")
    lead.check("refer-refused-without-override")
    assert case_state(live.web.database, ref) == before

    # With an override and its reason, it goes.
    page.get_by_role("group", name="Sent to").get_by_label("Head of establishment").check()
    page.get_by_role("group", name="Ground for referring without consent").get_by_label("Risk to life").check()
    page.get_by_label("Why the lack of consent is overridden").fill("Threats of serious violence.")
    submit(lead, "Refer to the establishment", ref)
    assert summary_value(page, "Stage").startswith("Referred")
    assert summary_value(page, "Consent overridden").startswith("Risk to life")
    assert "Establishment response" in running_deadlines(page)


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)  # pages; both databases: test client
def test_an_urgent_childs_referral_copies_the_ycs_and_staff_confirm_contact(live: Live, person: Any) -> None:
    world = live.web.world
    ref = open_urgent_child_case(live)
    lead: Pages = person("lead")
    lead.sign_in(world.lead, check=False)
    page = lead.go(f"/cases/{ref}")
    assert hints_of(page, "Refer to the establishment") == [YCS_HINT]
    lead.check("case-with-copy-condition")

    before = case_state(live.web.database, ref)
    action_link(page, "Refer to the establishment").click()
    sent_to = page.get_by_role("group", name="Sent to")
    expect(sent_to).to_contain_text("The Youth Custody Service must be copied: the person is a child.")
    expect(sent_to.get_by_label("Youth Custody Service")).to_be_checked()  # the form ticks what the rules require
    expect(sent_to.get_by_label("Home Office Immigration Enforcement")).to_have_count(0)  # its rule does not fit
    sent_to.get_by_label("Youth Custody Service").uncheck()  # unticked anyway: the guard still refuses
    submit(lead, "Refer to the establishment")
    refused(lead, "It must copy the Youth Custody Service: the person is a child.")
    lead.check("refer-refused-without-copy")
    assert case_state(live.web.database, ref) == before

    sent_to = page.get_by_role("group", name="Sent to")
    sent_to.get_by_label("Head of establishment").check()
    sent_to.get_by_label("Youth Custody Service").check()
    submit(lead, "Refer to the establishment", ref)
    assert summary_value(page, "Stage").startswith("Referred")
    assert {"Contact confirmed", "Written response"} <= set(running_deadlines(page))
    expect(action_link(page, "Confirm contact with the establishment")).to_be_visible()

    # The assigned member of staff confirms the contact, in their own browser.
    staff: Pages = person("staff")
    staff.sign_in(world.staff, check=False)
    spage = staff.go(f"/cases/{ref}")
    expect(action_link(spage, "Refer to the establishment")).to_have_count(0)  # a lead's action
    action_link(spage, "Confirm contact with the establishment").click()
    expect(spage.get_by_role("heading", level=1)).to_have_text("Confirm contact with the establishment")
    staff.check("form-confirm-contact")
    spage.get_by_label("Who you spoke to (their role)").fill("Duty governor")
    submit(staff, "Confirm contact with the establishment", ref)
    assert summary_value(spage, "Stage").startswith("Referred")  # stays until the written response
    running = running_deadlines(spage)
    assert "Contact confirmed" not in running and "Written response" in running, running
    expect(action_link(spage, "Confirm contact with the establishment")).to_have_count(0)  # done once
    no_identity(spage)
    staff.check("case-after-contact")

    # Its page now says why not, before any form.
    response = spage.goto(f"{live.url}/cases/{ref}/actions/confirm_contact")
    assert response is not None and response.status == 409
    expect(spage.get_by_role("heading", level=1)).to_have_text("This cannot be done now")
    expect(spage.locator("main")).to_contain_text(
        f"Confirm contact with the establishment cannot be done on {ref}: contact with the establishment has "
        "already been confirmed.")
    assert spage.locator("main form").count() == 0
    staff.check("confirm-contact-not-now")


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)  # pages; both databases: test client
def test_a_lead_escalates_to_a_recipient_named_by_hand(live: Live, person: Any) -> None:
    world, rt = live.web.world, live.web.rt
    ref = world.triaged
    with live.web.database.session() as s:
        lead_user = s.scalars(select(User).where(User.email == world.lead)).one()
        case = s.scalars(select(Case).where(Case.reference == ref)).one()
        advance_case(s, rt.engine, lead_user, case, "refer", REFER, live.web.clock.now())
        s.commit()

    lead: Pages = person("lead")
    lead.sign_in(world.lead, check=False)
    page = lead.go(f"/cases/{ref}")
    assert hints_of(page, "Escalate") == []  # an adult in a prison: no copy is required
    action_link(page, "Escalate").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Escalate")
    recipient = page.get_by_role("group", name="Escalated to")
    for choice in ("HMPPS", "Department", "Other"):
        expect(recipient.get_by_label(choice, exact=True)).to_have_count(1)
    # Only recipients whose rule fits the case are offered (an adult in a prison: no YCS, Home Office or PECS).
    for choice in ("Youth Custody Service", "Home Office Immigration Enforcement", "PECS contract management"):
        expect(recipient.get_by_label(choice, exact=True)).to_have_count(0)
    lead.check("form-escalate")

    # "Other" without a name: refused on that field, nothing changes.
    before = case_state(live.web.database, ref)
    page.get_by_role("group", name="Reason for escalating").get_by_label("The response is overdue").check()
    recipient.get_by_label("Other", exact=True).check()
    submit(lead, "Escalate")
    summary = page.locator(".govuk-error-summary")
    expect(summary).to_contain_text("Enter the name of the other recipient")
    assert case_state(live.web.database, ref) == before
    lead.check("escalate-refused-without-name")

    page.get_by_role("group", name="Escalated to").get_by_label("Other", exact=True).check()
    page.get_by_label("Name of the other recipient").fill("Regional prison group director")
    submit(lead, "Escalate", ref)
    assert summary_value(page, "Stage").startswith("Escalated")
    assert "Central authority response" in running_deadlines(page)
    letters = page.locator("#letters + table tbody tr")
    # A name typed by hand is withheld until a reason is given (tests/web/test_letters.py: after one).
    expect(letters.filter(has_text=TYPED_HIDDEN)).to_have_count(1)
    assert "Regional prison group director" not in page.content()
    lead.check("case-after-escalation")
