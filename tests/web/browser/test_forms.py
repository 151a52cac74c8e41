"""The forms in a real browser (decision 31): a whole report at 375 px (no page scrolls sideways, axe clean,
a screenshot of each step), "Add another date" and "Remove", the description's character count, and an
action form's conditional reveal at both widths."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from reprisals.models import Establishment, User
from reprisals.services import advance_case, open_case
from tests.conftest import DATABASES
from tests.factories import CANARY_DESCRIPTION, CANARY_NAME, CANARY_NUMBER, REFER, case_data, cipher
from tests.web.browser.conftest import ARTIFACTS, Live, Pages
from tests.web.browser.test_journeys import at, fill_date, proceed

NARROW = {"width": 375, "height": 800}
WIDE = {"width": 1280, "height": 900}


def fits(page: Page, name: str) -> None:
    """WCAG 1.4.10: the page does not scroll sideways (its widest element named when it does)."""
    scroll, inner, widest = page.evaluate("""() => {
        let widest = '', most = 0;
        for (const e of document.querySelectorAll('body *')) {
            const r = e.getBoundingClientRect();
            if (r.right > most) { most = r.right; widest = e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') +
                (e.className && typeof e.className === 'string' ? '.' + e.className.split(' ').join('.') : ''); }
        }
        return [document.documentElement.scrollWidth, window.innerWidth, widest + ' ' + Math.round(most)];
    }""")
    assert scroll <= inner, f"{name} scrolls sideways: {scroll} > {inner} px (widest: {widest})"


def step(p: Pages, name: str) -> None:
    fits(p.page, name)
    p.check(name)


def step_with_reveal(p: Pages, name: str) -> None:
    """``step`` for a page with a conditional reveal: axe at every impact, less the one finding GOV.UK
    Frontend keeps on purpose (``aria-expanded`` on a radio that reveals a question: alphagov/govuk-frontend
    #979, a documented known issue kept for screen readers), and only on such radios."""
    from axe_playwright_python.sync_playwright import Axe

    fits(p.page, name)
    if not p.live.audited:
        return
    results = Axe().run(p.page)
    bad = []
    for v in results.response["violations"]:
        nodes = [n for n in v["nodes"] if not (v["id"] == "aria-allowed-attr" and
                                               "aria-expanded" in n["html"] and "govuk-radios__input" in n["html"])]
        bad += [f"{v['id']} ({v['impact']}): {n['target']}" for n in nodes]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    p.page.screenshot(path=str(ARTIFACTS / f"{p.name}-{name}.png"), full_page=True)
    assert bad == [], f"accessibility problems on {name}: {bad}"


def _referred_case(live: Live) -> str:
    world, rt = live.web.world, live.web.rt
    with live.web.database.session() as s:
        lead = s.scalars(select(User).where(User.email == world.lead)).one()
        est = s.get(Establishment, world.establishment_id)
        assert est is not None
        now = live.web.clock.now()
        case = open_case(s, rt.engine, cipher(), lead, now, case_data(est))
        advance_case(s, rt.engine, lead, case, "record_consent_and_risk", {"consent": "full", "risk": "high"}, now)
        advance_case(s, rt.engine, lead, case, "refer", REFER, now)
        s.commit()
        return case.reference


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)  # pages; both databases: test client
def test_a_report_at_375px_and_an_action_forms_conditional_reveal(live: Live, person: Any) -> None:
    live.web.clock.set(at(16, 4))  # Wed 16 Apr 2025, 10:00 in London
    ref = _referred_case(live)
    lead: Pages = person("lead")
    lead.sign_in(live.web.world.lead, check=False)
    page = lead.page
    page.set_viewport_size(NARROW)

    lead.go("/cases/new")
    step(lead, "report-start-375")
    page.get_by_role("button", name="Start now").click()
    page.get_by_label("Which establishment is the person held in?").select_option(label="HMP Thornbury Fen")
    step(lead, "q-establishment-375")
    proceed(lead)
    fill_date(page, "Date received", 16, 4, 2025)
    page.get_by_role("group", name="How was the concern received?").get_by_label("IMB application").check()
    step(lead, "q-received-375")
    proceed(lead)
    page.get_by_label("Full name").fill(CANARY_NAME)
    page.get_by_label("Prison number (optional)").fill(CANARY_NUMBER)  # HMP: a prison number
    step(lead, "q-person-375")
    proceed(lead)
    page.get_by_label("18 or over").check()
    step(lead, "q-age-group-375")
    proceed(lead)
    page.get_by_label("Loss of job or activity").check()
    step(lead, "q-sanction-375")
    proceed(lead)

    # Add another date, then remove the first: the buttons are submit buttons (no JavaScript needed).
    expect(page.get_by_role("group", name="Date 2")).to_have_count(0)
    fill_date(page, "Date 1", 7, 4, 2025)
    page.get_by_role("button", name="Add another date").click()
    expect(page.get_by_role("group", name="Date 2")).to_be_visible()
    fill_date(page, "Date 2", 8, 4, 2025)
    step(lead, "q-dates-two-375")
    page.get_by_role("button", name="Remove date 1").click()
    expect(page.get_by_role("group", name="Date 2")).to_have_count(0)
    expect(page.get_by_role("group", name="Date 1").get_by_label("Day")).to_have_value("8")
    proceed(lead)

    # The character count says what is left as the description is typed.
    box = page.get_by_label("What happened?", exact=True)
    box.fill(CANARY_DESCRIPTION)
    expect(page.locator(".govuk-character-count__status")).to_contain_text(
        f"You have {10_000 - len(CANARY_DESCRIPTION):,} characters remaining")
    step(lead, "q-description-375")
    proceed(lead)
    step(lead, "q-original-contact-375")
    proceed(lead)
    step(lead, "q-other-bodies-375")
    proceed(lead)
    urgent = page.get_by_role("group", name="What is the risk to the person?").get_by_label("Urgent")
    expect(urgent).to_have_accessible_description(
        "The person is at immediate risk of serious harm. Deadlines run in hours, weekends and holidays included: "
        "triage decision within 4 hours, contact confirmed within 24 hours. Other deadlines in working days: "
        "consent and risk recorded the same working day, written response within 5 working days.")
    page.get_by_label("High").check()
    step(lead, "q-risk-375")
    proceed(lead)
    step(lead, "q-assign-375")
    proceed(lead)
    expect(page.locator(".govuk-summary-card__title")).to_have_text(["The person", "What happened", "The case"])
    step(lead, "check-answers-375")
    proceed(lead, "Open the case")
    expect(page.locator(".govuk-panel")).to_contain_text("Concern reported")
    expect(page.locator("main")).to_contain_text("Consent and risk recorded")
    expect(page.locator("main")).to_contain_text("Due by 5pm on Thursday 17 April 2025")
    step(lead, "report-done-375")

    # An action form: the other recipient's name is revealed under "Other", and hidden again.
    for size, label in ((NARROW, "375"), (WIDE, "1280")):
        page.set_viewport_size(size)
        lead.go(f"/cases/{ref}/actions/escalate")
        other_name = page.get_by_label("Name of the other recipient")
        recipient = page.get_by_role("group", name="Escalated to")
        expect(other_name).to_be_hidden()
        recipient.get_by_label("Other", exact=True).check()
        expect(other_name).to_be_visible()
        step_with_reveal(lead, f"form-escalate-other-{label}")
        recipient.get_by_label("HMPPS", exact=True).check()
        expect(other_name).to_be_hidden()
    page.get_by_role("group", name="Reason for escalating").get_by_label("The response is overdue").check()
    page.get_by_role("button", name="Escalate").click()
    expect(page.get_by_role("heading", level=1)).not_to_have_text("Escalate")
