"""Correcting when an action happened, on the case page (services.redate_action, decision 17): a lead's
"Correct the date" link on each protocol action of the timeline, a GOV.UK question page, the service's
refusals on the right fields with nothing written, and deadlines worked out again on success."""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import select

from reprisals.models import Case
from tests.web.conftest import Web, case_state, csrf_token
from tests.web.test_case_actions import CANARIES, Pages, d, no_identity_in_urls
from workflow.models import DeadlineRow

LONDON = ZoneInfo("Europe/London")

LINK = re.compile(r'href="(/cases/[^"]+/events/(\d+)/date)">Correct the date<span class="govuk-visually-hidden">'
                  r" of ([^<(]+)")


def response_due(web: Web, ref: str) -> str:
    """The establishment response's due day (UK), as the deadlines table holds it."""
    with web.database.session() as s:
        due = s.scalars(select(DeadlineRow.due_at).join(Case, Case.instance_id == DeadlineRow.instance_id)
                        .where(Case.reference == ref, DeadlineRow.name == "establishment_response")).one()
    return due.astimezone(LONDON).date().isoformat()


def referred(web: Web) -> tuple[Pages, str, str]:
    """The reported case, consent recorded on Thu 17 April 2025 at 09:00 and the letter recorded as sent on
    Thu 24 April (it went on Tue 22 April). Returns the lead's pages, the case and the refer's correction link."""
    ref = web.world.reported
    lead = Pages(web, web.world.lead, ref)
    lead.act("record_consent_and_risk", {"consent": "full", "risk": "standard", "occurred_on": d("2025-04-17"),
                                         "occurred_time": "09:00"})
    page = lead.act("refer", {"recipients": ["head_of_establishment"], "occurred_on": d("2025-04-24")})
    links = {what.strip(): href for href, _, what in LINK.findall(page)}
    assert set(links) == {"refer to the establishment", "record consent and risk"}  # not "Case opened"
    return lead, ref, links["refer to the establishment"]


def form_post(lead: Pages, path: str, data: dict[str, Any]) -> Any:
    page = lead.client.get(path)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    version = re.search(r'name="expected_version"[^>]*value="(\d+)"', html)
    assert version is not None
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html)
    assert token is not None
    return lead.client.post(path, data={"expected_version": version.group(1), "csrf_token": token.group(1), **data})


def test_a_lead_corrects_the_date_of_a_letter_and_its_deadline_moves(web: Web) -> None:
    lead, ref, path = referred(web)
    assert response_due(web, ref) == "2025-05-09"  # 10 working days from Thu 24 April
    page = lead.client.get(path).get_data(as_text=True)
    assert re.search(r'<legend class="govuk-fieldset__legend govuk-fieldset__legend--l">\s*'
                     r'<h1 class="govuk-fieldset__heading">\s*When did this really happen\?', page)
    assert "Why is the date being corrected?" in page and 'name="occurred_time"' in page
    assert "It is recorded as Thu 24 April 2025, 12:00pm" in page
    assert "<title>Correct the date: Refer to the establishment: case " in page
    no_identity_in_urls(page)

    done = form_post(lead, path, {"occurred_on": d("2025-04-22"), "reason": "The letter went on the Tuesday."})
    assert done.status_code == 302 and done.headers["Location"].endswith(f"/cases/{ref}/timeline")
    shown = lead.client.get(f"/cases/{ref}/timeline").get_data(as_text=True)
    assert "govuk-notification-banner--success" in shown and "Date corrected: Refer to the establishment." in shown
    assert response_due(web, ref) == "2025-05-07"  # 10 working days from Tue 22 April (5 May a bank holiday)
    tab = lead.client.get(f"/cases/{ref}/deadlines").get_data(as_text=True)
    deadlines = tab[tab.index('id="deadline-table"'):]
    assert "7 May 2025" in deadlines and "9 May 2025" not in deadlines
    history = shown[shown.index('id="history"'):]
    assert "Date corrected: Refer to the establishment" in history
    assert re.search(r"<dt>It happened</dt><dd>Tue 22 April 2025, 12:00pm</dd>\s*"
                     r"<dt>Previously recorded as</dt><dd>Thu 24 April 2025, 12:00pm</dd>", history)
    assert "The letter went on the Tuesday." not in history and "Reason given — show identity to read it" in history
    for canary in CANARIES:
        assert canary not in shown


def test_refusals_show_their_message_on_the_field_and_change_nothing_and_only_leads_may_correct(
        web: Web) -> None:
    lead, ref, path = referred(web)
    before = case_state(web.database, ref)
    due = response_due(web, ref)
    cases = [
        ({"occurred_on": d("2030-01-02"), "reason": "Wrong day."}, "occurred_on",
         "The date it happened must not be in the future"),
        ({"occurred_on": d("2025-04-16"), "reason": "Wrong day."}, "occurred_on",
         "The date it happened must not be before the action before it, which happened at 17 April 2025, 09:00"),
        ({"occurred_on": d("2025-04-22"), "reason": "  "}, "reason", "Enter why the date is being corrected"),
        ({"occurred_on": ["", "", ""], "reason": "Wrong day."}, "occurred_on", "Enter the date it happened"),
        ({"occurred_on": ["31", "2", "2025"], "reason": "Wrong day."}, "occurred_on",
         "When did this really happen? must be a real date"),
        ({"occurred_on": d("2025-04-22"), "occurred_time": "25:99", "reason": "Wrong day."}, "occurred_time",
         "Enter the time as hours and minutes, like 14:30"),
    ]
    seq = int(path.split("/events/")[1].split("/")[0])
    consent = path.replace(f"/events/{seq}/", f"/events/{seq - 1}/")  # the action before the letter
    cases = [(path, *c) for c in cases] + [
        (consent, {"occurred_on": d("2025-04-25"), "reason": "Wrong day."}, "occurred_on",
         "The date it happened must not be after the action after it, which happened at 24 April 2025, 12:00")]
    for target, data, field, message in cases:
        refused = form_post(lead, target, data)
        html = refused.get_data(as_text=True)
        assert refused.status_code == 200, (data, refused.status_code)
        assert "<title>Error:" in html and "There is a problem" in html, data
        assert f'href="#{field}">{message}' in html, (message, re.findall(r'href="#[^"]+">[^<]+', html))
        assert re.search(r'class="govuk-error-message">\s*<span class="govuk-visually-hidden">Error:</span> '
                         + re.escape(message), html), message
        assert case_state(web.database, ref) == before and response_due(web, ref) == due
    count = web.database.raw("SELECT count(*) AS n FROM wf_history WHERE kind = 'action_redated'")[0].n
    assert count == 0

    # Only a lead of a body on the case: others get 403, or 404 when the case is not theirs to see.
    staff = web.sign_in(web.world.staff)  # assigned, may act, may not correct
    assert "Correct the date" not in staff.get(f"/cases/{ref}/timeline").get_data(as_text=True)
    assert staff.get(path).status_code == 403
    auditor = web.sign_in(web.world.auditor)
    assert "Correct the date" not in auditor.get(f"/cases/{ref}/timeline").get_data(as_text=True)
    assert auditor.get(path).status_code == 403
    assert web.sign_in(web.world.outside_lead).get(path).status_code == 404  # no part in the case
    token = csrf_token(staff.get(f"/cases/{ref}").get_data(as_text=True))  # the session's token, from its page
    assert staff.post(path, data={"occurred_on": d("2025-04-22"), "reason": "x", "csrf_token": token}
                      ).status_code == 403
    # A POST without the form's token is refused before anything else.
    assert lead.client.post(path, data={"occurred_on": d("2025-04-22"), "reason": "x"}).status_code == 400
    created = path.rsplit("/events/", 1)[0] + "/events/1/date"  # "Case opened" is not an action
    assert lead.client.get(created).status_code == 404
    assert lead.client.get(path.rsplit("/events/", 1)[0] + "/events/999/date").status_code == 404
    assert case_state(web.database, ref) == before
    with web.database.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM wf_history WHERE kind = 'action_redated'")).scalar() == 0
