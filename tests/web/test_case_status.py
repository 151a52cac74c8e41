"""The case page guides the work (decision 30): the status banner (stage, what is due, by when, by whom;
overdue in red; whom a proposed finding waits for), the one primary action, the confirmation before the
case ends early, success messages that say what comes next, paused and extended deadlines, and what a
decision needs on its form (behind the unlock where it is free text)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from html import unescape
from typing import Any

import pytest
import sqlalchemy as sa

from reprisals.deadlines import extend_deadline, pause_deadline
from reprisals.models import Case, User
from reprisals.services import advance_case
from reprisals.vocabulary import moment_words
from tests.conftest import DATABASES
from tests.factories import ACCEPT, FOLLOW_UP, REFER
from tests.web.conftest import Web, case_state, csrf_token
from tests.web.test_case_actions import CANARIES, Pages
from workflow.models import DeadlineRow

# Pages and their words: SQLite proves them (the services under them run on both databases elsewhere).
pytestmark = pytest.mark.parametrize("database", DATABASES[:1], indirect=True)

BODY = "Independent Monitoring Boards"
SUMMARY = "The governor restored the job RESPONSECANARY"
ASSESSMENT = "The reply confirms the job was taken ASSESSCANARY"


def _page(client: Any, path: str, status: int = 200) -> str:
    response = client.get(path)
    assert response.status_code == status, (path, response.status_code)
    return unescape(response.get_data(as_text=True))


def _banner(html: str) -> str:
    """The status banner's text, tags stripped, spaces collapsed."""
    section = html.split('id="case-status"', 1)[1].split("</section>", 1)[0]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", section)).strip()


def _user(web: Web, email: str) -> User:
    with web.database.session() as s:
        user = s.scalars(sa.select(User).where(User.email == email)).one()
        s.expunge(user)
        return user


def _due(web: Web, ref: str, name: str) -> datetime:
    with web.database.session() as s:
        due = s.scalars(sa.select(DeadlineRow.due_at).join(Case, Case.instance_id == DeadlineRow.instance_id)
                         .where(Case.reference == ref, DeadlineRow.name == name)
                         .order_by(DeadlineRow.id.desc())).first()
    assert due is not None, name
    return due


def _advance(web: Web, ref: str, *steps: tuple[str, dict[str, Any], str]) -> None:
    """Fire triggers through the services (cheaper than the pages): (trigger, fields, e-mail of who does it)."""
    with web.database.session() as s:
        case = s.scalars(sa.select(Case).where(Case.reference == ref)).one()
        for trigger, fields, email in steps:
            who = s.scalars(sa.select(User).where(User.email == email)).one()
            advance_case(s, web.rt.engine, who, case, trigger, fields, web.clock.now())
        s.commit()


def test_the_banner_names_the_stage_what_is_due_by_when_and_by_whom_with_one_primary_action(web: Web) -> None:
    ref = web.world.triaged
    lead = web.sign_in(web.world.lead)
    html = _page(lead, f"/cases/{ref}")
    banner = _banner(html)
    due = _due(web, ref, "triage_decision")
    assert "Stage: Triage" in banner
    assert "Next step Refer to the establishment" in banner
    assert f"Triage decision: was due by {moment_words(due)} (overdue by " in banner  # received in April 2025
    assert f"By whom A lead of {BODY}" in banner
    # One primary button, for the stage's next step; the other actions in a list; withdraw and left custody
    # only behind their confirmation page, never the next step.
    primary = re.findall(r'<a href="([^"]+)"[^>]*class="govuk-button[^"]*"[^>]*id="primary-action"', html)
    assert primary == [f"/cases/{ref}/actions/refer"]
    others = html.split('id="actions"', 1)[1].split('id="stopping"', 1)[0]
    assert f'href="/cases/{ref}/actions/refer"' not in others and f'href="/cases/{ref}/actions/decline"' in others
    stopping = html.split('id="stopping-actions"', 1)[1].split("</ul>", 1)[0]
    assert f'href="/cases/{ref}/actions/withdraw/confirm"' in stopping
    assert f'href="/cases/{ref}/actions/left_custody/confirm"' in stopping
    assert f'href="/cases/{ref}/actions/withdraw"' not in html  # never straight to the form
    # Every tab has the banner.
    for tab in ("timeline", "notes", "deadlines"):
        assert _banner(_page(lead, f"/cases/{ref}/{tab}")) == banner

    # The assigned member of staff may not refer: the banner says a lead does it, and no primary button.
    staff = _page(web.sign_in(web.world.staff), f"/cases/{ref}")
    assert f"By whom A lead of {BODY}" in _banner(staff) and 'id="primary-action"' not in staff
    assert "What you can do next" in staff
    # At stage reported, the next step is the assigned member of staff's: named, and their primary button.
    reported = _page(web.sign_in(web.world.staff), f"/cases/{web.world.reported}")
    staff_name = _user(web, web.world.staff).name
    assert f"By whom {staff_name}" in _banner(reported)
    assert f'href="/cases/{web.world.reported}/actions/record_consent_and_risk"' in reported.split(
        'id="case-status"', 1)[1].split("</section>", 1)[0]
    # An auditor reads the banner, with nothing to press.
    audit = _page(web.sign_in(web.world.auditor), f"/cases/{ref}")
    assert "Stage: Triage" in _banner(audit) and 'id="primary-action"' not in audit


def test_an_overdue_deadline_is_red_in_the_banner_and_on_the_deadlines_tab(web: Web) -> None:
    ref = web.world.triaged  # received in April 2025: its triage decision is long overdue
    lead = web.sign_in(web.world.lead)
    html = _page(lead, f"/cases/{ref}")
    banner = _banner(html)
    assert "app-case-status--overdue" in html and "Overdue" in banner
    assert re.search(r"Triage decision: was due by .+ \(overdue by \d+ working days\)", banner), banner
    assert '<span class="app-overdue">Triage decision: was due by' in html
    tab = _page(lead, f"/cases/{ref}/deadlines")
    assert re.search(r'<span class="app-overdue">Overdue by \d+ working days</span>', tab)
    # Extended into the future: no longer red, and the time left in working days.
    with web.database.session() as s:
        case = s.scalars(sa.select(Case).where(Case.reference == ref)).one()
        who = s.scalars(sa.select(User).where(User.email == web.world.lead)).one()
        new_due = web.clock.now() + timedelta(days=14)
        extend_deadline(s, web.rt.engine, web.rt.timers, who, case, "triage_decision", new_due, "Papers awaited",
                        web.clock.now())
        s.commit()
    html = _page(lead, f"/cases/{ref}")
    banner = _banner(html)
    assert "app-case-status--overdue" not in html and "Overdue" not in banner and "app-overdue" not in html
    assert re.search(rf"Due Triage decision: by {re.escape(moment_words(new_due))} \(\d+ working days left\)",
                     banner), banner


def test_a_proposed_finding_waits_for_another_lead_and_only_they_get_the_close_button(web: Web) -> None:
    ref, w = web.world.triaged, web.world
    _advance(web, ref, ("refer", REFER, w.lead),
             ("record_response", {"responder": "establishment", "summary": SUMMARY}, w.lead),
             ("accept_response", ACCEPT, w.lead), ("complete_follow_up", FOLLOW_UP, w.lead))
    proposer = _user(web, w.lead).name
    mine = _page(web.sign_in(w.lead), f"/cases/{ref}")
    banner = _banner(mine)
    assert f"Waiting for a lead other than {proposer} to confirm the finding: Substantiated" in banner
    assert f"By whom A lead of {BODY} other than {proposer}" in banner
    assert 'id="primary-action"' not in mine  # the proposer may close alone only as not substantiated
    assert f'href="/cases/{ref}/actions/close"' in mine.split('id="actions"', 1)[1]  # still offered, in the list
    theirs = _page(web.sign_in(w.second_lead), f"/cases/{ref}")
    assert f"Waiting for a lead other than {proposer}" in _banner(theirs)
    assert re.search(rf'<a href="/cases/{ref}/actions/close"[^>]*id="primary-action"', theirs)


def test_withdraw_and_left_custody_confirm_what_will_stop_first(web: Web) -> None:
    ref, w = web.world.triaged, web.world
    _advance(web, ref, ("refer", REFER, w.lead))  # the establishment response: one reminder to come
    lead = web.sign_in(w.lead)
    before = case_state(web.database, ref)
    html = _page(lead, f"/cases/{ref}/actions/withdraw/confirm")
    due = _due(web, ref, "establishment_response")
    stops = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html.split('id="what-stops"', 1)[1].split("</ul>", 1)[0]))
    assert f"Establishment response: due by {moment_words(due)}" in stops
    assert "1 reminder still to be sent" in stops and "The notices sent when one of these deadlines is missed" in stops
    assert "The person withdraws: are you sure?" in html and "This closes the case" in html
    assert f'href="/cases/{ref}/actions/withdraw"' in html  # Continue: to the action's form
    custody = _page(lead, f"/cases/{ref}/actions/left_custody/confirm")
    assert "The person has left custody: are you sure?" in custody and "Establishment response" in custody
    assert case_state(web.database, ref) == before  # a confirmation page changes nothing

    # Only for the actions that end a case early, only for who may take them, only where they can be taken.
    assert lead.get(f"/cases/{ref}/actions/escalate/confirm").status_code == 404
    assert lead.get(f"/cases/{ref}/actions/no_such_trigger/confirm").status_code == 404
    assert web.sign_in(w.auditor).get(f"/cases/{ref}/actions/withdraw/confirm").status_code == 403
    _advance(web, ref, ("withdraw", {}, w.lead))
    closed = lead.get(f"/cases/{ref}/actions/withdraw/confirm")
    text = unescape(closed.get_data(as_text=True))
    assert closed.status_code == 409 and "The person withdraws" in text and "Reopen" in text
    # A closed case has nothing running: the banner says it is closed, with no primary button.
    page = _page(lead, f"/cases/{ref}")
    assert "Stage: Closed" in _banner(page) and "The case is closed." in _banner(page)
    assert 'id="primary-action"' not in page


def test_the_success_message_says_what_happened_and_what_comes_next_with_its_date(web: Web) -> None:
    ref = web.world.reported
    lead = Pages(web, web.world.lead, ref)
    page = unescape(lead.act("record_consent_and_risk", {"consent": "full", "risk": "standard"}))
    due = _due(web, ref, "triage_decision")
    assert f"Consent and risk recorded. Triage decision due by {moment_words(due)}." in page
    page = unescape(lead.act("withdraw", {}))
    assert "Withdrawal recorded; the case is closed." in page and "due by" not in _banner(page)


def test_the_deadlines_tab_shows_a_pause_and_an_extension_with_who_why_and_from_what_to_what(web: Web) -> None:
    ref, w = web.world.triaged, web.world
    was = _due(web, ref, "triage_decision")
    with web.database.session() as s:
        case = s.scalars(sa.select(Case).where(Case.reference == ref)).one()
        lead = s.scalars(sa.select(User).where(User.email == w.lead)).one()
        rt = web.rt
        later = max(was, web.clock.now()) + timedelta(days=7)  # the world's case is overdue: later than now
        extend_deadline(s, rt.engine, rt.timers, lead, case, "triage_decision", later, "Waiting for papers XTNCANARY",
                        web.clock.now())
        web.clock.advance(timedelta(hours=1))
        pause_deadline(s, rt.engine, rt.timers, lead, case, "triage_decision", "Person in hospital PAUSECANARY",
                       web.clock.now())
        s.commit()
        lead_name = lead.name
    paused_at = web.clock.now()
    client = web.sign_in(w.lead)
    tab = _page(client, f"/cases/{ref}/deadlines")
    row = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", tab.split('id="deadline-triage_decision"', 1)[1]
                                     .split("</tr>", 1)[0]))
    assert "Paused" in row and "Clock paused" in row
    assert f"Since {moment_words(paused_at)}" in row and f"By {lead_name}" in row
    assert re.search(r"Time left when paused \d+ working days? left", row), row
    assert f"Extended from {moment_words(was)} to {moment_words(later)}" in row
    assert "XTNCANARY" not in tab and "PAUSECANARY" not in tab
    assert row.count("Why Reason given — show identity to read it") == 2
    assert "/deadlines/triage_decision/resume" in tab and "/deadlines/triage_decision/pause" not in tab
    # The banner says the clock is paused; the auditor sees the same facts without the reasons.
    assert f"Triage decision: clock paused since {moment_words(paused_at)}" in _banner(tab)
    audit = _page(web.sign_in(w.auditor), f"/cases/{ref}/deadlines")
    assert "Reason given (shown only to people who may see who the person is)" in audit
    assert "XTNCANARY" not in audit and "/deadlines/triage_decision/" not in audit
    # Inside the lead's unlock window, the reasons.
    web.post(client, f"/cases/{ref}/identity", {"reason": "Reading the reasons"})
    tab = _page(client, f"/cases/{ref}/deadlines")
    assert "Waiting for papers XTNCANARY" in tab and "Person in hospital PAUSECANARY" in tab


def test_accept_reject_and_close_show_the_response_the_finding_and_the_assessment_behind_the_unlock(
        web: Web) -> None:
    ref, w = web.world.triaged, web.world
    _advance(web, ref, ("refer", REFER, w.lead),
             ("record_response", {"responder": "establishment", "summary": SUMMARY}, w.lead))
    lead = Pages(web, w.lead, ref)
    for trigger in ("accept_response", "reject_response"):
        form = unescape(lead.form(trigger))
        context = form.split('id="decision-context"', 1)[1].split("<form", 1)[0]
        assert "The response" in context and "The establishment" in context
        assert "RESPONSECANARY" not in form and "Recorded — " in context and "show identity" in context
        assert "The proposed finding" not in context  # nothing proposed yet
    assert 'id="decision-context"' not in lead.form("change_consent")  # not a decision on the response
    web.post(lead.client, f"/cases/{ref}/identity", {"reason": "Reading the response"})
    assert SUMMARY in unescape(lead.form("accept_response"))
    assert SUMMARY in unescape(lead.form("reject_response"))

    _advance(web, ref, ("accept_response", {"proposed_finding": "substantiated", "assessment": ASSESSMENT}, w.lead),
             ("complete_follow_up", FOLLOW_UP, w.lead))
    second = Pages(web, w.second_lead, ref)
    close = unescape(second.form("close"))
    context = close.split('id="decision-context"', 1)[1].split("<form", 1)[0]
    assert "The response" in context and "The proposed finding" in context and "Substantiated" in context
    assert _user(web, w.lead).name in context  # who proposed it
    assert "ASSESSCANARY" not in close and "RESPONSECANARY" not in close
    assert context.count("show identity</a> to read it") == 2  # the summary and the assessment
    web.post(second.client, f"/cases/{ref}/identity", {"reason": "Confirming the finding"})
    close = unescape(second.form("close"))
    assert ASSESSMENT in close and SUMMARY in close
    for canary in CANARIES:
        assert canary not in close.split('id="decision-context"', 1)[1].split("<form", 1)[0]
    # Posting the form still works with the context on it.
    done = second.submit("close", {"outcome": "substantiated", "summary": "Confirmed."})
    assert done.status_code == 302 and case_state(web.database, ref)["stage"] == "closed"
    assert "Finding confirmed and case closed." in _page(second.client, done.headers["Location"])


def test_a_note_posted_from_the_notes_tab_comes_back_to_it_with_its_errors(web: Web) -> None:
    ref = web.world.triaged
    lead = web.sign_in(web.world.lead)
    tab = _page(lead, f"/cases/{ref}/notes")
    assert f'action="/cases/{ref}/notes"' in tab and 'aria-current="page">Notes' in tab
    before = case_state(web.database, ref)
    bad = lead.post(f"/cases/{ref}/notes", data={"note": " ", "csrf_token": csrf_token(tab)})
    html = unescape(bad.get_data(as_text=True))
    assert bad.status_code == 200 and "Enter the note" in html and 'aria-current="page">Notes' in html
    assert case_state(web.database, ref) == before
