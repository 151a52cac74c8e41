"""Acting on a case through its pages: forms generated from the protocol's triggers, errors on the
fields, guards, permissions, and a conflict when someone else changed the case meanwhile."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from reprisals.models import Case, User
from reprisals.services import assign_case, get_case
from tests.factories import CANARY_DESCRIPTION, CANARY_DOB, CANARY_NAME, CANARY_NUMBER
from tests.support.interleave import Interleaving
from tests.web.conftest import Web, case_state, csrf_token

CANARIES = (CANARY_NAME, CANARY_NUMBER, CANARY_DOB, CANARY_DESCRIPTION)
_HIDDEN = re.compile(r'<input[^>]*name="(expected_version|seen_seq)"[^>]*value="(\d+)"')
_URLS = re.compile(r'(?:href|action|src)="([^"]*)"')


def d(iso: str | None = None) -> list[str]:
    """A date as the GOV.UK date input posts it: day, month, year (by default today, UK time: version 1's
    date fields say when the action happened, which cannot be before the case was received)."""
    day = datetime.fromisoformat(iso).date() if iso else datetime.now(ZoneInfo("Europe/London")).date()
    return [str(day.day), str(day.month), str(day.year)]


def hidden(html: str) -> dict[str, str]:
    return dict(_HIDDEN.findall(html))


def no_identity_in_urls(html: str, *more: str) -> None:
    for url in [*_URLS.findall(html), *more]:
        for canary in CANARIES:
            assert canary not in url
            assert canary.replace(" ", "+") not in url and canary.replace(" ", "%20") not in url


class Pages:
    """A signed-in user working through the case pages as a browser would."""

    def __init__(self, web: Web, email: str, ref: str) -> None:
        self.web, self.ref = web, ref
        self.client: FlaskClient = web.sign_in(email)

    def form(self, trigger: str) -> str:
        response = self.client.get(f"/cases/{self.ref}/actions/{trigger}")
        assert response.status_code == 200, (trigger, response.status_code)
        html = response.get_data(as_text=True)
        no_identity_in_urls(html)
        return html

    def submit(self, trigger: str, data: dict[str, Any], form_html: str | None = None) -> Any:
        html = form_html if form_html is not None else self.form(trigger)
        return self.client.post(f"/cases/{self.ref}/actions/{trigger}",
                                data={**hidden(html), **data, "csrf_token": csrf_token(html)})

    def act(self, trigger: str, data: dict[str, Any]) -> str:
        """Do ``trigger``; returns the case's overview (with the success banner) and its timeline tab."""
        response = self.submit(trigger, data)
        assert response.status_code == 302, response.get_data(as_text=True)[-3000:]
        location = response.headers["Location"]
        assert location.endswith(f"/cases/{self.ref}")
        no_identity_in_urls("", location)
        page = self.client.get(location).get_data(as_text=True)
        # What happened and what comes next (decision 30), not "Done: … The case is now at stage …".
        assert "govuk-notification-banner--success" in page and "Done: " not in page
        assert "is now at stage" not in page
        page += self.client.get(location + "/timeline").get_data(as_text=True)  # the case page's timeline tab
        for canary in CANARIES:
            assert canary not in page
        no_identity_in_urls(page)
        return page


def stage(web: Web, ref: str) -> str:
    return str(case_state(web.database, ref)["stage"])


def test_the_worked_example_through_the_pages(web: Web) -> None:
    """Record consent and risk, refer, record the response, accept, follow up; a second lead closes."""
    ref = web.world.reported
    lead = Pages(web, web.world.lead, ref)
    html = lead.client.get(f"/cases/{ref}").get_data(as_text=True)
    assert f"/cases/{ref}/actions/record_consent_and_risk" in html
    form = lead.form("record_consent_and_risk")
    for expected in ('type="radio"', 'name="consent"', 'value="anonymous"', 'id="occurred_on"',
                     'name="occurred_on"', 'name="occurred_time"', "<textarea", 'name="expected_version"'):
        assert expected in form, expected
    assert 'name="consent_date"' not in form  # version 1's date of consent is "When did this happen?"
    assert re.search(r"<legend[^>]*>\s*Consent given", form) and re.search(r"<legend[^>]*>\s*When did this", form)
    # Recorded today, as it happened in April 2025 (the case was received on Wednesday 16 April 2025).
    lead.act("record_consent_and_risk", {"consent": "full", "risk": "standard", "occurred_on": d("2025-04-17"),
                                         "occurred_time": "09:00"})
    assert stage(web, ref) == "triage"
    refer_form = lead.form("refer")
    assert 'type="checkbox"' in refer_form and 'value="head_of_establishment"' in refer_form
    page = lead.act("refer", {"recipients": ["head_of_establishment"], "occurred_on": d("2025-04-22")})
    assert stage(web, ref) == "referred"
    # The new deadline runs from when the letter went: 10 working days from Tuesday 22 April 2025.
    assert "Establishment response" in page and "7 May 2025" in page
    assert re.search(r"22 Apr(il)? 2025.{0,200}recorded \d+ days later", page, re.S)  # the timeline shows it was late
    lead.act("record_response", {"responder": "establishment", "summary": "Job restored."})
    lead.act("accept_response", {"proposed_finding": "substantiated", "assessment": "Sanction confirmed."})
    lead.act("complete_follow_up", {"summary": "Back at work."})
    assert stage(web, ref) == "closure_review"

    # The lead who proposed the finding cannot confirm it: the guard's message, on the form, nothing saved.
    before = case_state(web.database, ref)
    refused = lead.submit("close", {"outcome": "substantiated", "summary": "Confirmed."})
    text = refused.get_data(as_text=True)
    assert refused.status_code == 200 and "There is a problem" in text and "lead" in text
    assert "<title>Error:" in text
    assert case_state(web.database, ref) == before

    second = Pages(web, web.world.second_lead, ref)
    page = second.act("close", {"outcome": "substantiated", "summary": "Confirmed."})
    assert stage(web, ref) == "closed"
    assert "Substantiated (closed" in page
    assert "Confirm the finding and close" in page and "Record consent and risk" in page  # the timeline
    assert "Reopen" in page  # the next possible action


def test_the_auditor_sees_no_action_and_a_post_is_refused(web: Web) -> None:
    ref = web.world.triaged
    auditor = web.sign_in(web.world.auditor)
    lead_view = Pages(web, web.world.lead, ref).form("refer")  # a real form, with real hidden values
    assert auditor.get(f"/cases/{ref}/actions/refer").status_code == 403
    before = case_state(web.database, ref)
    token = csrf_token(auditor.get(f"/cases/{ref}").get_data(as_text=True))
    response = auditor.post(f"/cases/{ref}/actions/refer", data={
        **hidden(lead_view), "recipients": ["head_of_establishment"], "occurred_on": d(), "csrf_token": token})
    assert response.status_code == 403
    assert case_state(web.database, ref) == before


def test_staff_may_not_fire_a_leads_trigger_and_outsiders_get_404(web: Web) -> None:
    ref = web.world.triaged
    staff = web.sign_in(web.world.staff)
    page = staff.get(f"/cases/{ref}").get_data(as_text=True)
    assert "/actions/refer" not in page and "/actions/withdraw" in page  # staff may record a withdrawal
    assert staff.get(f"/cases/{ref}/actions/refer").status_code == 403
    outside = web.sign_in(web.world.outside_lead)
    assert outside.get(f"/cases/{ref}/actions/refer").status_code == 404
    assert web.sign_in(web.world.lead).get(f"/cases/{ref}/actions/no_such_action").status_code == 404
    # A trigger of another stage: not possible now, and the page says why and what can be done instead
    # (not "your role does not allow this").
    response = web.sign_in(web.world.lead).get(f"/cases/{ref}/actions/record_response")
    html = response.get_data(as_text=True)
    assert response.status_code == 409 and "This cannot be done now" in html
    assert f"{ref} is at stage &#39;Triage&#39;: &#39;Record the response&#39; cannot be done from there." in html
    assert "Next you can: " in html and "Refer to the establishment" in html and f'href="/cases/{ref}"' in html
    assert "Your role does not allow" not in html


def test_invalid_input_shows_the_error_summary_and_saves_nothing(web: Web) -> None:
    ref = web.world.triaged
    lead = Pages(web, web.world.lead, ref)
    before = case_state(web.database, ref)
    response = lead.submit("refer", {"occurred_on": ["31", "2", "2025"]})
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<title>Error:" in html and "There is a problem" in html
    assert 'href="#recipients"' in html and 'href="#occurred_on"' in html
    assert "Select who the referral is sent to" in html and "When did this happen? must be a real date" in html
    assert 'id="occurred_on"' in html  # the summary's link lands on the day box
    assert 'value="31"' in html  # what was typed is kept
    assert case_state(web.database, ref) == before

    # Unanswered radios are asked for in the question's words; a value not offered is refused the same way.
    consent = Pages(web, web.world.lead, web.world.reported)
    before_reported = case_state(web.database, web.world.reported)
    html = consent.submit("record_consent_and_risk", {}).get_data(as_text=True)
    assert "Select the consent the person gave" in html and "Select the risk to the person" in html
    assert "Not a valid choice" not in html
    assert re.search(r'<legend class="govuk-fieldset__legend govuk-fieldset__legend--s">\s*Consent given', html)
    html = consent.submit("record_consent_and_risk", {"consent": "maybe", "risk": "standard"}).get_data(as_text=True)
    assert "Select the consent the person gave" in html and "Not a valid choice" not in html
    assert case_state(web.database, web.world.reported) == before_reported

    # A recipient the case rules out (the Youth Custody Service, for an adult) is not offered, and posted anyway
    # it is refused in the protocol file's words (the guard refuses it through the API and the command; the
    # consent override and required_when are in tests/web/test_forms_fit.py, on a case without consent).
    response = lead.submit("refer", {"recipients": ["youth_custody_service"], "occurred_on": d()})
    html = response.get_data(as_text=True)
    assert "Select who the referral is sent to from the list" in html and "not a valid choice" not in html
    assert case_state(web.database, ref) == before

    # Too long.
    response = lead.submit("decline", {"reason": "x" * 2001})
    assert "The reason must be 2,000 characters or fewer" in response.get_data(as_text=True)
    assert case_state(web.database, ref) == before


def _assign_behind_their_back(web: Web, ref: str) -> str:
    with web.database.session() as s:
        lead = s.query(User).filter_by(email=web.world.second_lead).one()
        other = s.query(User).filter_by(email=web.world.other_staff).one()
        case = get_case(s, lead, ref)
        assign_case(s, web.rt.engine, lead, case, other, datetime.now(UTC), reason="Covering leave")
        s.commit()
        return other.name


def test_a_conflict_overwrites_nothing_shows_the_change_and_resubmission_works(web: Web) -> None:
    ref = web.world.triaged
    lead = Pages(web, web.world.lead, ref)
    form = lead.form("refer")
    other_name = _assign_behind_their_back(web, ref)
    before = case_state(web.database, ref)
    data = {"recipients": ["head_of_establishment"], "occurred_on": d()}
    response = lead.submit("refer", data, form_html=form)
    html = response.get_data(as_text=True)
    assert response.status_code == 409
    assert "This case was changed by someone else while you were working" in html
    assert f"Assigned to {other_name}" in html and "Reason given — show identity to read it" in html
    assert "Covering leave" not in html  # free text, shown only after a reason
    day, month, year = d()
    for name, value in (("occurred_on", day), ("occurred_on-month", month), ("occurred_on-year", year)):
        assert re.search(rf'<input[^>]*id="{name}"[^>]*value="{value}"', html), name  # values kept
    assert 'value="head_of_establishment" checked' in html
    assert case_state(web.database, ref) == before  # nothing overwritten
    assert stage(web, ref) == "triage"
    assert int(hidden(html)["expected_version"]) == int(before["version"])

    again = lead.submit("refer", data, form_html=html)
    assert again.status_code == 302
    assert stage(web, ref) == "referred"
    with web.database.session() as s:
        assignee = s.query(Case).filter_by(reference=ref).one().assigned_user
        assert assignee is not None and assignee.name == other_name  # theirs kept


def test_a_conflict_that_moved_the_stage_offers_no_resubmission(web: Web) -> None:
    ref = web.world.triaged
    lead = Pages(web, web.world.lead, ref)
    form = lead.form("refer")
    Pages(web, web.world.second_lead, ref).act("decline", {"reason": "Out of scope"})
    before = case_state(web.database, ref)
    response = lead.submit("refer", {"recipients": ["head_of_establishment"], "occurred_on": d()},
                           form_html=form)
    html = response.get_data(as_text=True)
    assert response.status_code == 409
    assert "Decline (out of scope or referred elsewhere)" in html
    assert "no longer possible" in html and 'name="expected_version"' not in html
    assert case_state(web.database, ref) == before and before["stage"] == "closed"


def test_a_forged_version_is_a_conflict_not_a_write(web: Web) -> None:
    ref = web.world.triaged
    lead = Pages(web, web.world.lead, ref)
    form = lead.form("decline")
    before = case_state(web.database, ref)
    response = lead.client.post(f"/cases/{ref}/actions/decline", data={
        "expected_version": "999", "seen_seq": "0", "reason": "x", "csrf_token": csrf_token(form)})
    assert response.status_code == 409
    assert case_state(web.database, ref) == before


@pytest.mark.postgresql_only
def test_two_leads_acting_at_once_one_wins_and_the_other_gets_the_conflict_page(web: Web) -> None:
    """The race forced on PostgreSQL: the first lead's request is held right after it locked the case
    until the second lead's request waits for that lock; then both go on. The second is answered with
    the conflict page (409), never a 500, and only the first action is in the history."""
    ref = web.world.triaged
    first, second = Pages(web, web.world.lead, ref), Pages(web, web.world.second_lead, ref)
    refer_form, decline_form = first.form("refer"), second.form("decline")
    before = case_state(web.database, ref)
    admin = sa.create_engine(web.database.url, poolclass=sa.pool.NullPool)
    race = Interleaving(web.rt.db, admin)
    try:
        race.hold("refer", after=r"FROM wf_instances .*FOR UPDATE", until_waiting="decline")
        outcomes = race.run_calls({
            "refer": lambda: first.submit("refer", {"recipients": ["head_of_establishment"],
                                                    "occurred_on": d()}, form_html=refer_form),
            "decline": lambda: second.submit("decline", {"reason": "Out of scope"}, form_html=decline_form),
        }, "refer", "decline")
    finally:
        race.close()
        admin.dispose()

    assert race.held == ["refer after FROM wf_instances .*FOR UPDATE"]
    assert outcomes["refer"].error is None and outcomes["decline"].error is None
    assert outcomes["refer"].result.status_code == 302
    lost = outcomes["decline"].result
    assert lost.status_code == 409, lost.get_data(as_text=True)[-2000:]
    assert "This case was changed by someone else while you were working" in lost.get_data(as_text=True)
    after = case_state(web.database, ref)
    assert after["stage"] == "referred" and after["wf_history"] == before["wf_history"] + 1
