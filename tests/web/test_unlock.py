"""The unlock window (reprisals.sensitive, decision 24): identity, the description, notes and the free text
of history only after "Show identity" with a reason, for 30 minutes, for that user; each view an access-log
entry (never a history event: the case's version does not move); the same rule on the page, the API and
the command; the owning body's leads see who has seen, when and why."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from flask.testing import FlaskClient

from reprisals.models import Case, Role, User
from reprisals.services import add_note, advance_case, assign_case
from tests.factories import CANARY_DESCRIPTION, CANARY_DOB, CANARY_NAME, CANARY_NUMBER, make_user
from tests.web.conftest import Cli, Web, World, assert_refused, case_state, password_hash
from tests.web.test_api import Api

IDENTITY = (CANARY_NAME, CANARY_NUMBER, CANARY_DOB, CANARY_DESCRIPTION)
NOTES = ("First note NOTECANARY1", "Second note NOTECANARY2", "Third note NOTECANARY3")
RISK_REASON = "Named officer on the wing RISKCANARY"
ASSIGN_REASON = "Knows the wing ASSIGNCANARY"
SECRETS = (*IDENTITY, *NOTES, RISK_REASON, ASSIGN_REASON)
REASON = "Arranging a follow-up visit"


def _with_free_text(web: Web) -> str:
    """The world's reported case with a risk reason typed, an assignment's reason and three notes."""
    rt, ref = web.rt, web.world.reported
    with web.database.session() as s:
        lead = s.scalars(sa.select(User).where(User.email == web.world.lead)).one()
        staff = s.scalars(sa.select(User).where(User.email == web.world.staff)).one()
        case = s.scalars(sa.select(Case).where(Case.reference == ref)).one()
        now = web.clock.now()
        advance_case(s, rt.engine, lead, case, "record_consent_and_risk",
                     {"consent": "full", "risk": "standard", "risk_reason": RISK_REASON}, now)
        assign_case(s, rt.engine, lead, case, staff, now, reason=ASSIGN_REASON)
        for text in NOTES:
            add_note(s, rt.engine, rt.cipher, lead, case, text, now)
        s.commit()
    return ref


def _party_lead(web: Web) -> str:
    with web.database.session() as s:
        user = make_user(s, role=Role.LEAD, body="HMIP")  # the cases' party body
        user.password_hash = password_hash()
        s.commit()
        return user.email


def _log(web: Web) -> list[tuple[str, str, str | None]]:
    """The access log's entries, oldest first: (kind, via, actor's e-mail)."""
    rows = web.database.raw("SELECT a.kind, a.via, u.email FROM access_log a LEFT JOIN users u ON u.id = a.actor_id "
                            "WHERE a.kind IN ('unlocked', 'viewed_sensitive') ORDER BY a.id")
    return [(r.kind, r.via, r.email) for r in rows]


def _views(web: Web) -> int:
    return sum(1 for kind, _, _ in _log(web) if kind == "viewed_sensitive")


def _page(client: FlaskClient, path: str, status: int = 200) -> str:
    response = client.get(path)
    assert response.status_code == status, (path, response.status_code)
    return response.get_data(as_text=True)


def _whole(client: FlaskClient, ref: str) -> str:
    """The case page's overview, timeline and notes (three views, inside a window)."""
    return "".join(_page(client, f"/cases/{ref}{tab}") for tab in ("", "/timeline", "/notes"))


def _seen(html: str) -> str:
    assert 'id="seen"' in html
    return html.split('id="seen"', 1)[1].split('id="protocol"', 1)[0]


def test_the_case_page_shows_sensitive_content_for_30_minutes_after_a_reason_to_those_who_may_see_it(
        web: Web) -> None:
    ref = _with_free_text(web)
    lead = web.sign_in(web.world.lead)
    before = _whole(lead, ref)
    for secret in SECRETS:
        assert secret not in before, secret
    assert "3 notes." in before and "show identity</a> to read them" in before
    assert "Recorded — show identity to read it" in before  # the risk reason
    assert "Reason given — show identity to read it" in before  # the assignment's
    assert "Nobody has seen who the person is yet." in _seen(before)
    assert _log(web) == []  # nothing sensitive shown, nothing logged

    refused = web.post(lead, f"/cases/{ref}/identity", {"reason": " "})
    assert "Enter why you need to see who this person is" in refused.get_data(as_text=True)
    assert _log(web) == []
    unlocked = web.post(lead, f"/cases/{ref}/identity", {"reason": REASON})
    assert unlocked.status_code == 302 and unlocked.headers["Location"].endswith(f"/cases/{ref}#person")
    state = case_state(web.database, ref)  # the unlock is the one history event
    shown = _whole(lead, ref)  # each tab is a view
    for secret in SECRETS:
        assert secret in shown, secret
    assert "Shown to you until" in shown and "Each time you open the case until then is recorded" in shown
    assert "Viewed identity" in shown and REASON in shown
    _page(lead, f"/cases/{ref}")
    assert _log(web) == [("unlocked", "web", web.world.lead)] + [("viewed_sensitive", "web", web.world.lead)] * 4
    assert case_state(web.database, ref) == state  # views are not history: the version did not move

    web.clock.advance(timedelta(minutes=29, seconds=59))
    assert NOTES[0] in _page(lead, f"/cases/{ref}/notes")
    seen = _seen(_page(lead, f"/cases/{ref}/timeline"))
    assert REASON in seen and seen.count("Viewed <time") == 6  # each view, under the reason it was given for
    assert _views(web) == 6
    web.clock.advance(timedelta(seconds=1))  # 30 minutes after the reason: hidden again, nothing logged
    after = _whole(lead, ref)
    for secret in SECRETS:
        assert secret not in after, secret
    assert "Reason given — show identity to read it" in _seen(after) and REASON not in after
    assert _views(web) == 6
    assert case_state(web.database, ref) == state

    # Who may unlock, and who sees who has seen (one database for both: each costs half a second).
    party = _party_lead(web)
    lead_name = web.database.raw("SELECT name FROM users WHERE email = :e", e=web.world.lead)[0].name

    # Another lead of the owning body: the list (who, when; the reason once they unlock), nothing else.
    second = web.sign_in(web.world.second_lead)
    html = _whole(second, ref)
    seen = _seen(html)
    assert lead_name in seen and seen.count("Viewed <time") == 6 and "Reason given — show identity to read it" in seen
    for secret in (*SECRETS, REASON):
        assert secret not in html, secret
    web.post(second, f"/cases/{ref}/identity", {"reason": "Second opinion"})
    assert REASON in _seen(_page(second, f"/cases/{ref}/timeline"))  # the window is theirs now, and only theirs

    # The assigned member of staff may unlock, but sees no list; a party body's lead and an auditor never see
    # the content and cannot unlock.
    staff = web.sign_in(web.world.staff)
    html = _whole(staff, ref)
    assert 'id="seen"' not in html and "Show identity" in html and NOTES[0] not in html
    for email in (party, web.world.auditor):
        client = web.sign_in(email)
        html = _whole(client, ref)
        assert 'id="seen"' not in html and "Show identity" not in html
        assert "Reason given (shown only to people who may see who the person is)" in html
        for secret in (*SECRETS, REASON):
            assert secret not in html, secret
        before = (_log(web), case_state(web.database, ref))
        refused = web.post(client, f"/cases/{ref}/identity", {"reason": "curious"}, form_page="/cases/")
        assert refused.status_code == 403
        assert (_log(web), case_state(web.database, ref)) == before
    assert case_state(web.database, ref)["wf_history"] == state["wf_history"] + 1  # the second lead's unlock


def _api(web: Web, email: str) -> Api:
    return Api(web, email)


def test_the_api_gives_sensitive_fields_only_inside_the_window_each_read_logged(web: Web) -> None:
    ref = _with_free_text(web)
    lead = _api(web, web.world.lead)

    def read(api: Api = lead) -> dict[str, Any]:
        response = api.get(f"/api/cases/{ref}")
        assert response.status_code == 200
        return dict(response.get_json())

    locked = read()
    assert locked["sensitive"] is None and locked["note_count"] == 3 and locked["may_unlock"] is True
    moved = next(e for e in locked["history"] if e["trigger"] == "record_consent_and_risk")
    assert moved["free_text_given"] == ["risk_reason"] and moved["free_text"] is None
    assert next(e for e in locked["history"] if e["kind"] == "assigned")["free_text_given"] == ["reason"]
    assert not any(secret in json.dumps(locked) for secret in SECRETS)
    assert _log(web) == []

    state = case_state(web.database, ref)
    empty = lead.post(f"/api/cases/{ref}/unlock", {"reason": ""})
    assert empty.status_code == 422 and "reason" in empty.get_json()["errors"]
    for email in (web.world.auditor, _party_lead(web)):
        refused = _api(web, email).post(f"/api/cases/{ref}/unlock", {"reason": "curious"})
        assert refused.status_code == 403 and CANARY_NAME not in refused.get_data(as_text=True)
    assert _log(web) == [] and case_state(web.database, ref) == state

    response = lead.post(f"/api/cases/{ref}/unlock", {"reason": REASON})
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["sensitive"]["identity"] == {"name": CANARY_NAME, "number": CANARY_NUMBER,
                                             "date_of_birth": CANARY_DOB}
    assert body["sensitive"]["description"] == CANARY_DESCRIPTION
    assert [n["text"] for n in body["sensitive"]["notes"]] == list(reversed(NOTES))  # newest first
    moved = next(e for e in body["history"] if e["trigger"] == "record_consent_and_risk")
    assert moved["free_text"] == {"risk_reason": RISK_REASON}
    state = case_state(web.database, ref)
    assert read()["sensitive"] is not None
    assert _log(web) == [("unlocked", "api", web.world.lead)] + [("viewed_sensitive", "api", web.world.lead)] * 2
    assert case_state(web.database, ref) == state
    assert read(_api(web, web.world.second_lead))["sensitive"] is None  # the window is the lead's alone

    web.clock.advance(timedelta(minutes=30))
    assert read()["sensitive"] is None and _views(web) == 2

    doc = web.client().get("/api/openapi.json").get_json()
    operation = doc["paths"]["/api/cases/{reference}/unlock"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/UnlockRequest")
    assert {"200", "403", "404", "422"} <= set(operation["responses"])


def test_the_command_shows_sensitive_content_only_with_a_reason_logged_as_the_operator(
        run: Cli, world: World, web: Web) -> None:
    ref = _with_free_text(web)
    hidden = run("case", "show", ref, "--as", world.lead, "--history")
    assert hidden.exit_code == 0, hidden.output
    assert not any(secret in hidden.output for secret in SECRETS)
    assert "notes: 3;" in hidden.stdout and f"--as {world.lead} --reason" in hidden.stdout
    assert "risk_reason: (given; hidden without --reason)" in hidden.stdout
    assert _log(web) == []

    state = case_state(web.database, ref)
    assert_refused(run("case", "show", ref, "--as", world.lead, "--reason", " "), "reason: is required")
    assert_refused(run("case", "show", ref, "--as", world.auditor, "--reason", "curious"),
                   "only the owning body's lead and the assigned staff may see who the person is")
    assert _log(web) == [] and case_state(web.database, ref) == state

    shown = run("case", "show", ref, "--as", world.lead, "--reason", REASON, "--history", "--json")
    assert shown.exit_code == 0, shown.output
    out = json.loads(shown.stdout)
    assert (out["sensitive"]["name"], out["sensitive"]["description"]) == (CANARY_NAME, CANARY_DESCRIPTION)
    assert [n["text"] for n in out["sensitive"]["notes"]] == list(reversed(NOTES))
    unlock_event = out["history"][-1]
    assert unlock_event["kind"] == "identity_viewed" and unlock_event["data"] == {"via": "cli"}
    assert unlock_event["free_text"] == {"reason": REASON}
    state = case_state(web.database, ref)
    text = run("case", "show", ref, "--as", world.lead, "--reason", "Still checking")  # inside the window
    assert CANARY_NAME in text.stdout and NOTES[2] in text.stdout
    assert case_state(web.database, ref) == state  # no second unlock: a view
    again = run("case", "show", ref, "--as", world.lead)  # no reason: hidden, even inside the window
    assert CANARY_NAME not in again.output
    assert _log(web) == [("unlocked", "cli", world.lead)] + [("viewed_sensitive", "cli", world.lead)] * 2

    page = _page(web.sign_in(world.second_lead), f"/cases/{ref}/timeline")
    assert "(by the operator, at the command line)" in _seen(page)
