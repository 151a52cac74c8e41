"""The case page: who sees it, what it shows (and never shows), identity on a reasoned request,
notes, assignment, deadlines and the timeline."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient

from reprisals.models import Case, CaseNote, User
from tests.factories import CANARY_DESCRIPTION, CANARY_DOB, CANARY_NAME, CANARY_NUMBER
from tests.web.conftest import Web, case_state, count_rows

CANARIES = (CANARY_NAME, CANARY_NUMBER, CANARY_DOB, CANARY_DESCRIPTION)


def page(client: FlaskClient, path: str, status: int = 200) -> str:
    response = client.get(path)
    assert response.status_code == status, (path, response.status_code)
    return response.get_data(as_text=True)


def assert_no_identity(html: str) -> None:
    for canary in CANARIES:
        assert canary not in html


def user_id(web: Web, email: str) -> int:
    with web.database.session() as s:
        return s.query(User).filter_by(email=email).one().id


def test_lead_sees_the_summary_deadlines_diagram_and_history_without_identity(web: Web) -> None:
    client = web.sign_in(web.world.lead)
    ref = web.world.triaged
    html = page(client, f"/cases/{ref}")
    assert f"<h1 class=\"govuk-heading-xl\">{ref}" in html
    assert "govuk-summary-list" in html
    for expected in ("Triage", "Standard", "Full consent", "Independent Monitoring Boards (IMB)",
                     "HM Inspectorate of Prisons (HMIP)", "HMP Thornbury Fen", "England", "Loss of job or activity",
                     "IMB application"):
        assert expected in html, expected
    assert "Triage decision" in html  # the running deadline
    assert re.search(r"\d+ working days? left|overdue by \d+ working days?|due today", html)
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="app-diagram" role="img"' in html
    assert "Show identity" in html
    assert "Refer to the establishment" in html  # an action the lead may take
    timeline = page(client, f"/cases/{ref}/timeline")
    assert "Record consent and risk" in timeline and "Case opened" in timeline
    for tab in (html, timeline, page(client, f"/cases/{ref}/notes"), page(client, f"/cases/{ref}/deadlines")):
        assert_no_identity(tab)
        assert " style=" not in tab
        assert f'href="/cases/{ref}/timeline"' in tab and 'aria-current="page"' in tab  # the tabs


@pytest.mark.parametrize("who,status", [("staff", 200), ("other_staff", 404), ("outside_lead", 404),
                                        ("auditor", 200), ("second_lead", 200)])
def test_who_may_see_the_case(web: Web, who: str, status: int) -> None:
    client = web.sign_in(getattr(web.world, who))
    html = page(client, f"/cases/{web.world.triaged}", status)
    page(client, f"/cases/{web.world.triaged}/diagram.svg", status)
    for tab in ("timeline", "notes", "deadlines"):
        tab_html = page(client, f"/cases/{web.world.triaged}/{tab}", status)
        assert_no_identity(tab_html)
    if status == 404:
        assert web.world.triaged not in html.split("<main", 1)[1]
    assert_no_identity(html)


def test_an_unknown_case_is_a_404(web: Web) -> None:
    client = web.sign_in(web.world.lead)
    page(client, "/cases/RPR-1999-9999", 404)


def test_auditor_sees_no_actions_identity_button_notes_or_forms(web: Web) -> None:
    client = web.sign_in(web.world.auditor)
    html = page(client, f"/cases/{web.world.triaged}")
    assert "Auditors do not act on cases" in html
    assert "Show identity" not in html
    assert "/actions/" not in html and "/deadlines/" not in html and "/assign" not in html
    assert 'action="/cases/' not in html  # no forms at all, save signing out
    notes = page(client, f"/cases/{web.world.triaged}/notes")
    assert "0 notes" in notes and 'action="/cases/' not in notes
    assert "/deadlines/" not in page(client, f"/cases/{web.world.triaged}/deadlines")
    assert_no_identity(html)


def test_identity_needs_a_reason_and_is_logged(web: Web) -> None:
    client = web.sign_in(web.world.staff)  # the assigned member of staff
    ref = web.world.triaged
    path = f"/cases/{ref}/identity"
    form = page(client, path)
    assert CANARY_NAME not in form
    before = case_state(web.database, ref)
    refused = web.post(client, path, {"reason": "  "})
    html = refused.get_data(as_text=True)
    assert refused.status_code == 200
    assert "There is a problem" in html and 'href="#reason"' in html
    assert "Enter why you need to see who this person is" in html
    assert CANARY_NAME not in html
    assert case_state(web.database, ref) == before  # nothing logged

    unlocked = web.post(client, path, {"reason": "Arranging a follow-up visit"})
    assert unlocked.status_code == 302 and unlocked.headers["Location"].endswith(f"/cases/{ref}#person")
    assert CANARY_NAME not in unlocked.headers["Location"]
    shown = client.get(f"/cases/{ref}")
    html = shown.get_data(as_text=True)
    for canary in CANARIES:
        assert canary in html
    assert shown.headers["Cache-Control"] == "no-store"
    assert CANARY_NAME not in html.split("<title>", 1)[1].split("</title>", 1)[0]
    mine = page(client, f"/cases/{ref}/timeline")
    assert "Viewed identity" in mine and "Arranging a follow-up visit" in mine
    # Others see that it was viewed with a reason, not the reason.
    timeline = page(web.sign_in(web.world.auditor), f"/cases/{ref}/timeline")
    assert "Viewed identity" in timeline and "Arranging a follow-up visit" not in timeline
    assert_no_identity(timeline)


@pytest.mark.parametrize("who,status", [("auditor", 403), ("second_lead", 200), ("outside_lead", 404),
                                        ("other_staff", 404)])
def test_identity_is_refused_to_those_who_may_not_see_it(web: Web, who: str, status: int) -> None:
    """The second lead owns the case (same body) so may see; the auditor may not; outsiders get a 404."""
    client = web.sign_in(getattr(web.world, who))
    ref = web.world.triaged
    before = case_state(web.database, ref)
    # A token from a page this user can load (their home page), since the form itself may be refused.
    response = web.post(client, f"/cases/{ref}/identity", {"reason": "curious"}, form_page="/cases/")
    assert response.status_code == (302 if status == 200 else status)
    html = response.get_data(as_text=True)
    if status != 200:
        assert CANARY_NAME not in html
        assert case_state(web.database, ref) == before
        assert page(client, f"/cases/{ref}/identity", status)
    else:
        assert CANARY_NAME in page(client, f"/cases/{ref}")


def test_notes_are_read_only_by_those_who_may_identify(web: Web) -> None:
    ref = web.world.triaged
    lead = web.sign_in(web.world.lead)
    secret = "Note mentioning the wing NOTECANARY77"
    before = count_rows(web.database, ("case_notes", "wf_history"))
    bad = web.post(lead, f"/cases/{ref}/notes", {"note": ""}, form_page=f"/cases/{ref}")
    html = bad.get_data(as_text=True)
    assert "There is a problem" in html and 'href="#note"' in html and "Enter the note" in html
    assert count_rows(web.database, ("case_notes", "wf_history")) == before
    long = web.post(lead, f"/cases/{ref}/notes", {"note": "x" * 10_001}, form_page=f"/cases/{ref}")
    assert "10000 characters or fewer" in long.get_data(as_text=True)
    assert count_rows(web.database, ("case_notes", "wf_history")) == before

    added = web.post(lead, f"/cases/{ref}/notes", {"note": secret}, form_page=f"/cases/{ref}")
    assert added.status_code == 302 and secret not in added.headers["Location"]
    assert added.headers["Location"].endswith(f"/cases/{ref}/notes")
    html = page(lead, f"/cases/{ref}/notes")
    assert "Note added" in html and secret not in html and "1 note." in html  # shown after a reason
    assert "Note added" in page(lead, f"/cases/{ref}/timeline")
    web.post(lead, f"/cases/{ref}/identity", {"reason": "Reading the notes"})
    assert secret in page(lead, f"/cases/{ref}/notes")
    with web.database.session() as s:
        stored = s.query(CaseNote).one()
        assert "NOTECANARY77" not in stored.text_ciphertext

    auditor = web.sign_in(web.world.auditor)
    html = page(auditor, f"/cases/{ref}/notes")
    assert secret not in html and "1 note." in html
    refused = web.post(auditor, f"/cases/{ref}/notes", {"note": "audit"}, form_page="/cases/")
    assert refused.status_code == 403
    assert count_rows(web.database, ("case_notes",)) == {"case_notes": 1}


def test_lead_assigns_to_staff_of_a_body_on_the_case(web: Web) -> None:
    ref = web.world.triaged
    lead = web.sign_in(web.world.lead)
    other = user_id(web, web.world.other_staff)
    outsider = user_id(web, web.world.outside_lead)
    form = page(lead, f"/cases/{ref}/assign")
    assert f'value="{other}"' in form and f'value="{outsider}"' not in form
    before = case_state(web.database, ref)
    bad = web.post(lead, f"/cases/{ref}/assign", {"assignee": str(outsider)})
    assert "There is a problem" in bad.get_data(as_text=True) and 'href="#assignee"' in bad.get_data(as_text=True)
    assert case_state(web.database, ref) == before
    done = web.post(lead, f"/cases/{ref}/assign", {"assignee": str(other), "reason": "Covers the wing"})
    assert done.status_code == 302
    with web.database.session() as s:
        assert s.query(Case).filter_by(reference=ref).one().assigned_user_id == other
    # The new assignee sees the case; the previous one no longer does.
    page(web.sign_in(web.world.other_staff), f"/cases/{ref}")
    page(web.sign_in(web.world.staff), f"/cases/{ref}", 404)
    html = page(lead, f"/cases/{ref}/timeline")
    assert "Assigned to" in html and "Covers the wing" not in html and "Reason given — show identity" in html
    web.post(lead, f"/cases/{ref}/identity", {"reason": "Checking the assignment"})
    assert "Covers the wing" in page(lead, f"/cases/{ref}/timeline")
    # Staff may not assign.
    staff = web.sign_in(web.world.other_staff)
    assert staff.get(f"/cases/{ref}/assign").status_code == 403


def _deadline_link(html: str, operation: str) -> str:
    found = re.search(rf'href="(/cases/[^"]+/deadlines/[a-z_0-9]+/{operation})"', html)
    assert found, f"no {operation} link"
    return found.group(1)


def _date(d: Any) -> dict[str, Any]:
    return {"new_due": [str(d.day), str(d.month), str(d.year)]}


def test_lead_extends_pauses_and_resumes_a_deadline_with_errors_mapped(web: Web) -> None:
    ref = web.world.triaged
    lead = web.sign_in(web.world.lead)
    html = page(lead, f"/cases/{ref}/deadlines")
    extend = _deadline_link(html, "extend")
    before = case_state(web.database, ref)
    today = web.clock.now().date()
    past = web.post(lead, extend, {**_date(today - timedelta(days=3)), "reason": "Waiting for papers"})
    text = past.get_data(as_text=True)
    assert "There is a problem" in text and 'href="#new_due"' in text
    assert "must be in the future" in text or "after the current due date" in text
    missing = web.post(lead, extend, {"new_due": ["", "", ""], "reason": ""})
    text = missing.get_data(as_text=True)
    assert "Enter the new due date" in text and "Enter the reason for the extension" in text
    nonsense = web.post(lead, extend, {"new_due": ["31", "2", "2030"], "reason": "x"})
    assert "New due date must be a real date" in nonsense.get_data(as_text=True)
    assert case_state(web.database, ref) == before

    later = web.rt.timers.calendar("england").next_working_day(today + timedelta(days=39))  # a working day
    done = web.post(lead, extend, {**_date(later), "reason": "Waiting for papers"})
    assert done.status_code == 302 and done.headers["Location"].endswith(f"/cases/{ref}/deadlines")
    html = page(lead, f"/cases/{ref}/timeline")
    assert "Deadline extended: Triage decision" in html and "Waiting for papers" not in html
    web.post(lead, f"/cases/{ref}/identity", {"reason": "Reading the reasons"})
    html = page(lead, f"/cases/{ref}/timeline")
    assert "Waiting for papers" in html
    assert f"{later.day} {later:%B %Y}, 5:00pm" in html
    html = page(lead, f"/cases/{ref}/deadlines")
    assert "Waiting for papers" in html

    pause = _deadline_link(html, "pause")
    assert web.post(lead, pause, {"reason": ""}).status_code == 200
    assert web.post(lead, pause, {"reason": "Person in hospital"}).status_code == 302
    html = page(lead, f"/cases/{ref}/deadlines")
    assert "Paused" in html and "Clock paused" in html
    resume = _deadline_link(html, "resume")
    assert web.post(lead, resume, {"reason": "Back on the wing"}).status_code == 302
    assert "Deadline clock restarted: Triage decision" in page(lead, f"/cases/{ref}/timeline")
    # resuming it again (from an old tab) is refused in the domain's words, naming the case
    again = web.post(lead, resume, {"reason": "Back on the wing"}).get_data(as_text=True)
    assert "There is a problem" in again and f"{ref}: the clock of &#39;Triage decision&#39; is not paused." in again

    # Staff may not move deadlines, and see no links to.
    staff = web.sign_in(web.world.staff)
    assert "/deadlines/" not in page(staff, f"/cases/{ref}/deadlines")
    assert staff.get(extend).status_code == 403


def test_the_page_names_people_in_the_timeline_and_hides_free_text_from_auditors(web: Web) -> None:
    ref = web.world.triaged
    lead = web.sign_in(web.world.lead)
    page(lead, f"/cases/{ref}/actions/decline")
    response = web.post(lead, f"/cases/{ref}/actions/decline",
                        {"reason": "Out of scope FREETEXT55", "referred_to": "PPO",
                         "expected_version": _version(web, ref), "seen_seq": "0"})
    assert response.status_code == 302
    with web.database.session() as s:
        lead_name = s.query(User).filter_by(email=web.world.lead).one().name
    overview = page(lead, f"/cases/{ref}")
    assert "FREETEXT55" not in overview and "Closed" in overview and "Referred elsewhere" in overview
    html = page(lead, f"/cases/{ref}/timeline")
    assert "FREETEXT55" not in html and lead_name in html and "Closed" in html
    assert "Recorded — show identity to read it" in html  # both the reason and the typed "Referred to"
    web.post(lead, f"/cases/{ref}/identity", {"reason": "Reading the decision"})
    html = page(lead, f"/cases/{ref}/timeline")
    assert "FREETEXT55" in html and "Referred to" in html and "PPO" in html
    audit = page(web.sign_in(web.world.auditor), f"/cases/{ref}/timeline")
    assert "FREETEXT55" not in audit and lead_name in audit and "Recorded (shown only" in audit


def _version(web: Web, ref: str) -> str:
    row = web.database.raw("SELECT i.version FROM cases c JOIN wf_instances i ON i.id = c.instance_id "
                           "WHERE c.reference = :r", r=ref)[0]
    return str(row.version)


def test_the_history_check_says_verified_and_names_what_was_altered_behind_the_services_back(web: Web) -> None:
    client = web.sign_in(web.world.auditor)
    ref = web.world.triaged
    html = page(client, f"/cases/{ref}/timeline")
    assert "History verified" in html and "has been altered" not in html
    assert "All 2 events are as they were recorded" in html
    one = page(client, f"/cases/{web.world.reported}/timeline")
    assert "The one event is as it was recorded" in one  # not "All 1 events"
    # A database superuser edits what an event recorded and removes the last one.
    instance_id = web.world.instance_ids[ref]
    web.database.disable_append_only()
    web.database.raw("UPDATE wf_history SET actor_id = 'someone-else' WHERE instance_id = :i AND seq = 1",
                     i=instance_id)
    last = web.database.raw("SELECT max(seq) AS seq FROM wf_history WHERE instance_id = :i", i=instance_id)[0].seq
    web.database.raw("DELETE FROM wf_history WHERE instance_id = :i AND seq = :s", i=instance_id, s=last)

    html = page(client, f"/cases/{ref}/timeline")
    assert "History verified" not in html and "This case's history has been altered outside the service" in html
    assert "Event 1 (id " in html and "does not match its hash (edited)." in html
    assert f"The chain ends at event {last - 1} but the instance records head {last}" in html
    assert "history ends at stage &#39;reported&#39; (changed outside the engine)" in html  # the triage was removed
    assert f"instance {instance_id}:" not in html  # said of this case, not of an internal id
    other = page(web.sign_in(web.world.lead), f"/cases/{web.world.reported}/timeline")
    assert "History verified" in other  # the other case is untouched
