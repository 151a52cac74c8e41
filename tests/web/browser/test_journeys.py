"""Journeys in a real browser, with axe-core on every page visited: the worked example of the
protocol end to end (report, consent and risk, refer, response, accept, follow-up, a second lead
closes), a member of staff who sees only their own cases, and an auditor who can read but not act.
Every page is checked at 1280 px and again at 375 px on the same page load (decision 33)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from playwright.sync_api import Page, expect
from sqlalchemy import select

from reprisals.models import User
from tests.factories import CANARY_DESCRIPTION, CANARY_NAME, CANARY_NUMBER
from tests.web.browser.conftest import Live, Pages

LONDON = ZoneInfo("Europe/London")
CHECK_AT_375 = True
CANARIES = (CANARY_NAME, CANARY_NUMBER, CANARY_DESCRIPTION, "Zebediah", "CANARYTEXT42")


def at(day: int, month: int, hour: int = 10) -> datetime:
    return datetime(2025, month, day, hour, tzinfo=LONDON)


def display_name(live: Live, email: str) -> str:
    with live.web.database.session() as s:
        return str(s.scalars(select(User.name).where(User.email == email)).one())


def fill_date(page: Page, legend: str, day: int, month: int, year: int) -> None:
    """A GOV.UK date input: the fieldset named by its legend, boxes labelled Day, Month and Year."""
    group = page.get_by_role("group", name=legend, exact=True)
    group.get_by_label("Day").fill(str(day))
    group.get_by_label("Month").fill(str(month))
    group.get_by_label("Year").fill(str(year))


def proceed(p: Pages, button: str = "Continue") -> None:
    p.page.get_by_role("button", name=button, exact=True).click()
    p.page.wait_for_load_state()


def no_identity_in_url(page: Page) -> None:
    for canary in CANARIES:
        assert canary not in page.url and canary.replace(" ", "+") not in page.url


def action_link(page: Page, label: str) -> Any:
    """An action on the case page: the status banner's primary button, or a link in the list of the others."""
    return page.locator("#primary-action, #actions + ul a").filter(
        has_text=re.compile(rf"^\s*{re.escape(label)}\s*$"))


def tab(page: Page, name: str) -> None:
    """Open one of the case page's tabs (overview, timeline, notes, deadlines) from its sub-navigation."""
    page.locator(".app-sub-navigation").get_by_role("link", name=name, exact=True).click()
    page.wait_for_load_state()


def success(p: Pages, said: str | None = None) -> None:
    """The success banner says what happened and what comes next (decision 30), never "Done: …"."""
    banner = p.page.locator(".govuk-notification-banner--success")
    expect(banner).to_be_visible()
    expect(banner).not_to_contain_text("Done:")
    if said is not None:
        expect(banner).to_contain_text(said)


def act(p: Pages, ref: str, link: str, label: str, fill: Any, said: str | None = None) -> None:
    """From the case page: follow an action's button or link, check the form, fill it, submit; back on the
    case page with the success banner, which is checked too (with ``said`` in it, when given)."""
    action_link(p.page, link).click()
    expect(p.page.get_by_role("heading", level=1)).to_have_text(link)
    p.check(f"form-{label}")
    fill(p.page)
    proceed(p, link)
    assert p.page.url == f"{p.live.url}/cases/{ref}", p.page.url
    success(p, said)
    p.check(f"case-after-{label}")
    no_identity_in_url(p.page)


def new_day(p: Pages, email: str, ref: str) -> None:
    """The clock moved on by days: the idle session has ended, so sign in again and open the case."""
    p.go(f"/cases/{ref}")
    assert "/sign-in" in p.page.url
    p.sign_in(email, check=False)
    p.go(f"/cases/{ref}")
    expect(p.page.get_by_role("heading", level=1)).to_contain_text(ref)


def deadline_row(page: Page, label: str) -> str:
    """A running deadline's row on the case's deadlines tab (and back to the page it was read from)."""
    back = page.url
    tab(page, "Deadlines")
    text = page.locator("#deadline-table tbody tr").filter(has=page.get_by_role("rowheader", name=label)) \
        .first.inner_text()
    page.goto(back)
    return text


def test_the_worked_example_end_to_end(live: Live, person: Any) -> None:
    world = live.web.world
    clock = live.web.clock
    clock.set(at(16, 4))  # Wed 16 Apr 2025, 10:00 in London
    staff_name = display_name(live, world.staff)

    lead: Pages = person("lead")
    lead.sign_in(world.lead)
    lead.check("home")
    page = lead.page

    # -- report the concern through the question flow --------------------------------------------
    page.get_by_role("link", name="Report a concern").first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Report a concern")
    lead.check("report-start")
    page.get_by_role("button", name="Start now").click()

    page.get_by_label("Which establishment is the person held in?").select_option(label="HMP Thornbury Fen")
    lead.check("q-establishment")
    proceed(lead)

    fill_date(page, "Date received", 16, 4, 2025)
    page.get_by_label("Time received (optional)").fill("09:30")
    page.get_by_role("group", name="How was the concern received?").get_by_label("IMB application").check()
    lead.check("q-received")
    proceed(lead)

    page.get_by_label("Full name").fill(CANARY_NAME)
    page.get_by_label("Prison number (optional)").fill(CANARY_NUMBER)
    fill_date(page, "Date of birth (optional)", 14, 3, 1987)
    lead.check("q-person")
    proceed(lead)

    page.get_by_label("18 or over").check()
    lead.check("q-age-group")
    proceed(lead)

    page.get_by_label("Loss of job or activity").check()
    lead.check("q-sanction")
    proceed(lead)

    fill_date(page, "Date 1", 8, 4, 2025)
    lead.check("q-dates")
    proceed(lead)

    page.get_by_label("What happened?", exact=True).fill(CANARY_DESCRIPTION)
    lead.check("q-description")
    proceed(lead)

    fill_date(page, "When did the person have the contact that led to the sanction? (optional)", 7, 4, 2025)
    lead.check("q-original-contact")
    proceed(lead)

    page.get_by_label("HM Inspectorate of Prisons").check()
    lead.check("q-other-bodies")
    proceed(lead)

    page.get_by_label("Standard").check()
    lead.check("q-risk")
    proceed(lead)

    page.get_by_label("Who should work on this case? (optional)").select_option(
        label=f"{staff_name} (IMB, staff)")
    lead.check("q-assign")
    proceed(lead)

    expect(page.get_by_role("heading", level=1)).to_have_text("Check your answers before opening the case")
    answers = page.locator("main").inner_text()  # three summary cards: the person, what happened, the case
    for shown in ("HMP Thornbury Fen", "16 April 2025 at 09:30", "IMB application", CANARY_NAME, CANARY_NUMBER,
                  "14 March 1987", "18 or over", "Loss of job or activity", "8 April 2025", CANARY_DESCRIPTION,
                  "7 April 2025", "HM Inspectorate of Prisons", "Standard", staff_name):
        assert shown in answers, shown
    assert CANARY_NAME not in page.title()
    lead.check("check-answers")
    proceed(lead, "Open the case")

    expect(page.locator(".govuk-panel")).to_contain_text("Concern reported")
    ref = page.locator(".govuk-panel strong").inner_text().strip()
    assert re.fullmatch(r"RPR-2025-\d{4}", ref), ref
    lead.check("confirmation")
    page.get_by_role("link", name=f"Go to case {ref}").click()
    page.wait_for_load_state()

    expect(page.get_by_role("heading", level=1)).to_contain_text(ref)
    lead.check("case-reported")
    for canary in CANARIES:
        assert canary not in page.content()  # hidden until asked for, with a reason
    assert "Consent and risk recorded" in deadline_row(page, "Consent and risk recorded")

    # -- the worked example ------------------------------------------------------------------------
    def consent(p: Page) -> None:
        p.get_by_role("group", name="Consent given").get_by_label("Full consent").check()
        fill_date(p, "When did this happen?", 16, 4, 2025)
        p.get_by_role("group", name="Risk", exact=True).get_by_label("Standard").check()

    act(lead, ref, "Record consent and risk", "consent-and-risk", consent,
        said="Consent and risk recorded. Triage decision due by 5pm on Tuesday 22 April 2025.")
    assert "5pm on Tuesday 22 April 2025" in deadline_row(page, "Triage decision")  # 18 and 21 Apr are holidays

    # The letter went on Thu 17 Apr; the lead records it on Fri 2 May: the deadline runs from the 17th.
    clock.set(at(2, 5))
    new_day(lead, world.lead, ref)

    def refer(p: Page) -> None:
        p.get_by_role("group", name="Sent to").get_by_label("Head of establishment").check()
        fill_date(p, "When did this happen?", 17, 4, 2025)

    act(lead, ref, "Refer to the establishment", "refer", refer)
    assert "5pm on Tuesday 6 May 2025" in deadline_row(page, "Establishment response")  # 5 May is a holiday
    tab(page, "Timeline")
    expect(page.get_by_text(re.compile(r"recorded 15 days later"))).to_be_visible()
    tab(page, "Overview")

    def response(p: Page) -> None:
        fill_date(p, "When did this happen?", 2, 5, 2025)
        p.get_by_role("group", name="From").get_by_label("Establishment").check()
        p.get_by_label("Summary of the response").fill("The governor restored the kitchen job.")

    act(lead, ref, "Record the response", "response", response)

    def accept(p: Page) -> None:
        p.get_by_role("group", name="Proposed finding").get_by_label("Substantiated", exact=True).check()
        p.get_by_label("Assessment", exact=True).fill("The loss of the job followed the inspection interview.")

    act(lead, ref, "Accept the response and propose a finding", "accept", accept)
    assert "5pm on Tuesday 3 June 2025" in deadline_row(page, "Follow-up contact")

    clock.set(at(20, 5))  # Tue 20 May
    new_day(lead, world.lead, ref)

    def follow_up(p: Page) -> None:
        fill_date(p, "When did this happen?", 20, 5, 2025)
        p.get_by_label("What the person said").fill("Back at work in the kitchen.")

    act(lead, ref, "Complete the follow-up", "follow-up", follow_up)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    assert "Closure check" in deadline_row(page, "Closure check")

    # -- the lead who proposed the finding cannot confirm it: the case waits for another lead ------------
    expect(page.locator("#second-lead")).to_contain_text("Waiting for a lead other than")
    lead.go(f"/cases/{ref}/actions/close")
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm the finding and close")
    outcomes = page.get_by_role("group", name="Outcome")
    expect(outcomes.get_by_label("Substantiated", exact=True)).to_have_count(0)  # offered only what they may
    expect(outcomes.get_by_label("Not substantiated", exact=True)).to_be_visible()
    expect(page.get_by_text("you may close the case alone only with these outcomes")).to_be_visible()
    lead.check("close-form-of-the-proposer")
    lead.go(f"/cases/{ref}")
    assert "Closure review" in page.locator("#facts").inner_text()

    # -- a second lead, in their own browser, closes it ------------------------------------------
    second: Pages = person("second-lead")
    second.sign_in(world.second_lead)
    second.check("home")
    second.page.get_by_role("link", name=ref).first.click()
    second.page.wait_for_load_state()
    second.check("case-closure-review")

    def close(p: Page) -> None:
        p.get_by_role("group", name="Outcome").get_by_label("Substantiated", exact=True).check()
        p.get_by_label("Closing summary").fill("Confirmed by a second lead.")

    act(second, ref, "Confirm the finding and close", "close", close)
    expect(second.page.locator("#facts")).to_contain_text("Closed")
    expect(second.page.get_by_role("link", name="Reopen", exact=True)).to_be_visible()
    tab(second.page, "Timeline")
    second.check("case-timeline")
    history = second.page.locator(".app-timeline").inner_text()
    for step in ("Record consent and risk", "Refer to the establishment", "Record the response",
                 "Accept the response and propose a finding", "Complete the follow-up",
                 "Confirm the finding and close"):
        assert step in history, step
    assert lead.checked and second.checked


def case_links(page: Page, table: str) -> set[str]:
    """The case references linked from a table on the page (none when the table is absent)."""
    links = page.locator(f"{table} a[href^='/cases/RPR-']:not([href*='/actions/'])")  # not the next steps
    return {t.strip() for t in links.all_inner_texts()}


def test_a_member_of_staff_sees_only_their_own_cases(live: Live, person: Any) -> None:
    world = live.web.world
    mine = {world.reported, world.triaged}

    staff: Pages = person("staff")
    staff.sign_in(world.staff)
    expect(staff.page.get_by_role("heading", name="Your cases")).to_be_visible()
    assert case_links(staff.page, "main") == mine  # both, linked from the home page with their next steps
    staff.check("home")
    staff.page.get_by_role("link", name="Cases", exact=True).click()
    expect(staff.page.locator("#results")).to_have_text("2 cases")
    assert case_links(staff.page, ".app-case-table") == mine
    staff.check("case-list")
    staff.page.get_by_role("link", name=world.triaged, exact=True).click()
    expect(staff.page.get_by_role("heading", level=1)).to_contain_text(world.triaged)
    expect(staff.page.get_by_role("link", name="The person withdraws")).to_be_visible()  # staff may act
    staff.check("case")

    other: Pages = person("other-staff")
    other.sign_in(world.other_staff, check=False)
    expect(other.page.get_by_role("heading", name="Your cases")).to_be_visible()
    assert case_links(other.page, "main") == set()
    assert "No open case is assigned to you." in other.page.locator("main").inner_text()
    other.check("home")
    other.go("/cases")
    expect(other.page.locator("#results")).to_have_text("No cases")
    assert case_links(other.page, "main") == set()
    other.check("case-list")
    for ref in sorted(mine):
        response = other.page.goto(f"{live.url}/cases/{ref}")
        assert response is not None and response.status == 404
        expect(other.page.get_by_role("heading", level=1)).to_have_text("Page not found")
        assert ref not in other.page.title()
    other.check("not-found")
    other.go(f"/cases?q={world.triaged}")
    expect(other.page.locator("#results")).to_contain_text("No cases")


def test_an_auditor_reads_but_cannot_act(live: Live, person: Any) -> None:
    world = live.web.world
    ref = world.triaged

    auditor: Pages = person("auditor")
    auditor.sign_in(world.auditor)
    expect(auditor.page.get_by_role("heading", name="Recent activity")).to_be_visible()
    assert {world.reported, world.triaged} <= case_links(auditor.page, "#activity")
    auditor.check("home")
    auditor.page.get_by_role("link", name="Cases", exact=True).click()
    expect(auditor.page.locator("#results")).to_have_text("2 cases")
    assert "Report a concern" not in auditor.page.get_by_role("navigation").first.inner_text()
    auditor.check("case-list")
    auditor.page.locator(".app-case-table").get_by_role("link", name=ref, exact=True).click()
    page = auditor.page
    expect(page.get_by_role("heading", level=1)).to_contain_text(ref)
    main = page.locator("main")
    expect(main).to_contain_text("Auditors do not act on cases.")
    assert main.locator("form").count() == 0  # no note form, no action form
    # The one button: asking a lead to see who the person is (decision 27), never an action on the case.
    assert [b.inner_text().strip() for b in main.get_by_role("button").all()] == ["Ask to see who the person is"]
    assert main.get_by_role("link", name="Show identity").count() == 0
    assert main.locator("a[href*='/actions/'], a[href*='/assign'], a[href*='/deadlines/'], "
                        "a[href*='/identity']").count() == 0
    for canary in CANARIES:
        assert canary not in page.content()
    auditor.check("case")
    response = page.goto(f"{live.url}/cases/{ref}/actions/refer")
    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("You cannot do that")
    assert page.locator("main form").count() == 0
    auditor.check("action-refused")


def test_an_auditor_reads_the_figures_for_a_year_as_charts_and_tables_and_for_publication(
        live: Live, person: Any) -> None:
    world = live.web.world
    auditor: Pages = person("auditor")
    auditor.sign_in(world.auditor)
    page = auditor.page
    page.get_by_role("link", name="Figures", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Figures for annual reports")
    page.get_by_label("Period").fill("2025")
    page.get_by_role("button", name="Show figures").click()
    expect(page.get_by_role("heading", level=2).first).to_have_text("1 January to 31 December 2025: all bodies")
    expect(page.get_by_role("img", name="Risk to the person")).to_be_visible()
    assert page.locator("#risk ~ .app-chart-wrapper svg rect").count() >= 1
    auditor.check("figures-exact")

    page.get_by_role("radio", name="For publication: counts under 5").check()
    page.get_by_role("button", name="Show figures").click()
    expect(page.locator("main")).to_contain_text("fewer than 5 cases received")
    assert page.locator("svg.app-chart rect").count() == 0  # every non-zero count is under 5: no bars
    for canary in CANARIES:
        assert canary not in page.content()
    auditor.check("figures-for-publication")

    page.get_by_label("Period").fill("2025-27")
    page.get_by_role("button", name="Show figures").click()
    expect(page.locator(".govuk-error-summary")).to_contain_text("a financial year is written like 2025-26")
    auditor.check("figures-error")
