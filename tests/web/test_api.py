"""The JSON API: bearer tokens only, the pages' access rules, problem+json errors that save nothing,
no identity in any response, and an OpenAPI 3.1 document listing every /api route."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from notifications.models import InboxItem
from reprisals.accounts import create_token
from reprisals.models import User
from tests.factories import CANARY_DESCRIPTION, CANARY_DOB, CANARY_NAME, CANARY_NUMBER, CONSENT
from tests.web.conftest import Web, case_state, count_rows

CANARIES = (CANARY_NAME, CANARY_NUMBER, CANARY_DOB, CANARY_DESCRIPTION, "Canarywhistle", "CANARYTEXT42")


def token_for(web: Web, email: str, name: str = "test") -> str:
    with web.database.session() as s:
        user = s.scalars(sa.select(User).where(User.email == email)).one()
        _, secret = create_token(s, user, name, datetime.now(UTC))
        s.commit()
    return secret


class Api:
    """A client that sends one user's token."""

    def __init__(self, web: Web, email: str) -> None:
        self.client: FlaskClient = web.client()
        self.token = token_for(web, email)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str, **kw: Any) -> TestResponse:
        return self.client.get(path, headers=self._headers(), **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> TestResponse:
        if body is not None:
            kw["json"] = body
        return self.client.post(path, headers=self._headers(), **kw)

    def delete(self, path: str) -> TestResponse:
        return self.client.delete(path, headers=self._headers())


def assert_problem(response: TestResponse, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert {"type", "title", "status", "detail"} <= set(body)
    assert body["status"] == status
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and "<html" not in text.lower()
    return dict(body)


def assert_no_identity(*responses: TestResponse) -> None:
    for response in responses:
        text = response.get_data(as_text=True)
        for canary in CANARIES:
            assert canary not in text, canary
        assert canary_free(response.headers.get("Location", ""))


def canary_free(value: str) -> bool:
    return not any(c in value for c in CANARIES)


def new_case_body(web: Web, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "establishment_id": web.world.establishment_id, "received_at": "2025-04-16T10:00:00+01:00",
        "channel": "imb_application", "original_contact_date": "2025-04-07", "age_group": "adult",
        "sanction_types": ["loss_of_job_or_activity"], "detriment_dates": ["2025-04-08"],
        "description": CANARY_DESCRIPTION, "risk": "standard", "party_bodies": ["HMIP"],
        "detainee_name": CANARY_NAME, "detainee_number": CANARY_NUMBER, "detainee_date_of_birth": CANARY_DOB,
    }
    body.update(overrides)
    return body


def consent_fields(web: Web) -> dict[str, str]:
    return dict(CONSENT)


# -- authentication -----------------------------------------------------------------------------------


def test_only_a_live_bearer_token_of_an_active_user_authenticates(web: Web) -> None:
    client = web.client()
    lead = Api(web, web.world.lead)
    assert lead.get("/api/cases").status_code == 200

    refused = {
        "missing": {},
        "not a token": {"Authorization": "Bearer rpr_not-a-real-token"},
        "no prefix": {"Authorization": "Bearer abc"},
        "another scheme": {"Authorization": f"Basic {lead.token}"},
        "empty": {"Authorization": "Bearer "},
    }
    for why, headers in refused.items():
        response = client.get("/api/cases", headers=headers)
        body = assert_problem(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Bearer"), why
        assert lead.token not in json.dumps(body)

    # A cookie session alone is not enough, even for a signed-in user.
    browser = web.sign_in(web.world.lead)
    assert browser.get("/cases/").status_code == 200
    assert_problem(browser.get("/api/cases"), 401)
    assert_problem(browser.get("/api/tokens"), 401)

    # Revoked: 401 from then on.
    token_id = lead.get("/api/tokens").get_json()["items"][0]["id"]
    assert lead.delete(f"/api/tokens/{token_id}").status_code == 200
    assert_problem(lead.get("/api/cases"), 401)

    # A deactivated user's tokens stop working.
    staff = Api(web, web.world.staff)
    assert staff.get("/api/cases").status_code == 200
    web.database.raw("UPDATE users SET active = :f WHERE email = :e", f=False, e=web.world.staff)
    assert_problem(staff.get("/api/cases"), 401)


def test_tokens_are_stored_hashed_and_touched_when_used(web: Web) -> None:
    api = Api(web, web.world.lead)
    assert api.token.startswith("rpr_")
    assert api.get("/api/tokens").status_code == 200
    rows = web.database.raw("SELECT token_hash, last_used_at FROM api_tokens")
    assert len(rows) == 1
    assert rows[0].token_hash != api.token and api.token not in rows[0].token_hash
    assert rows[0].last_used_at is not None


# -- cases ---------------------------------------------------------------------------------------------


def test_list_cases_follows_the_access_rules_and_filters(web: Web) -> None:
    w = web.world
    lead = Api(web, w.lead)
    response = lead.get("/api/cases")
    body = response.get_json()
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert {c["reference"] for c in body["items"]} == {w.reported, w.triaged}
    assert body["total"] == 2 and body["page"] == 1 and body["per_page"] == 20
    item = next(c for c in body["items"] if c["reference"] == w.triaged)
    assert item["stage"] == "triage" and item["risk"] == "standard" and item["owning_body"] == "IMB"
    assert item["establishment"]["name"] == "HMP Thornbury Fen"
    assert item["deadlines"]["running"] >= 1 and item["deadlines"]["next_due_at"]
    assert response.headers["Cache-Control"] == "no-store"
    assert_no_identity(response)

    assert [c["reference"] for c in lead.get("/api/cases?stage=triage").get_json()["items"]] == [w.triaged]
    assert lead.get("/api/cases?risk=urgent").get_json()["items"] == []
    # Received in April 2025: the deadlines they started were past when they were recorded, so overdue at once.
    assert lead.get("/api/cases?overdue=true").get_json()["total"] == 2
    assert lead.get("/api/cases?assigned=me").get_json()["total"] == 0
    page = lead.get("/api/cases?per_page=1&page=2").get_json()
    assert len(page["items"]) == 1 and page["total"] == 2

    staff = Api(web, w.staff)
    assert staff.get("/api/cases?assigned=me").get_json()["total"] == 2
    assert all(c["assigned_to_me"] for c in staff.get("/api/cases").get_json()["items"])
    for outsider in (w.other_staff, w.outside_lead, w.admin):
        assert Api(web, outsider).get("/api/cases").get_json()["total"] == 0

    errors = assert_problem(lead.get("/api/cases?per_page=101&risk=mild&colour=red&stage=nowhere"), 422)["errors"]
    assert set(errors) == {"per_page", "risk", "colour"}
    assert "stage" in assert_problem(lead.get("/api/cases?stage=nowhere"), 422)["errors"]


def test_a_case_shows_actions_deadlines_and_history_without_identity(web: Web) -> None:
    w = web.world
    lead = Api(web, w.lead)
    response = lead.get(f"/api/cases/{w.triaged}")
    case = response.get_json()
    assert response.status_code == 200
    assert case["reference"] == w.triaged and case["stage"] == "triage" and case["consent"] == "full"
    names = {a["name"] for a in case["allowed_actions"]}
    assert "refer" in names and "withdraw" in names
    refer = next(a for a in case["allowed_actions"] if a["name"] == "refer")
    assert refer["to_stage"] == "referred" and refer["fields"]["recipients"]["type"] == "multichoice"
    assert case["live_deadlines"] and all(d["case_reference"] == w.triaged for d in case["live_deadlines"])
    kinds = [e["kind"] for e in case["history"]]
    assert len(kinds) >= 2
    consent = next(e for e in case["history"] if e["trigger"] == "record_consent_and_risk")
    assert consent["values"]["consent"] == "full" and consent["to_stage"] == "triage"
    assert case["version"] >= 2
    assert_no_identity(response)

    # The auditor sees it, and may do nothing.
    audit = Api(web, w.auditor).get(f"/api/cases/{w.triaged}")
    assert audit.status_code == 200 and audit.get_json()["allowed_actions"] == []

    for outsider in (w.other_staff, w.outside_lead, w.admin):
        assert_problem(Api(web, outsider).get(f"/api/cases/{w.triaged}"), 404)
    assert_problem(lead.get("/api/cases/RPR-1999-0001"), 404)
    assert_problem(lead.get("/api/cases/not-a-reference"), 404)


def test_open_a_case_then_read_it_identity_never_echoed(web: Web) -> None:
    staff = Api(web, web.world.staff)
    before = count_rows(web.database)
    response = staff.post("/api/cases", new_case_body(web))
    assert response.status_code == 201, response.get_data(as_text=True)
    created = response.get_json()
    reference = created["reference"]
    assert re.fullmatch(r"RPR-\d{4}-\d{4}", reference)
    assert response.headers["Location"].endswith(f"/api/cases/{reference}")
    assert created["stage"] == "reported" and created["assigned_to_me"] is True
    assert count_rows(web.database)["cases"] == before["cases"] + 1

    shown = staff.get(response.headers["Location"])
    listed = staff.get("/api/cases")
    assert shown.status_code == 200 and shown.get_json()["reference"] == reference
    assert reference in {c["reference"] for c in listed.get_json()["items"]}
    assert_no_identity(response, shown, listed)
    # Stored encrypted, not as given.
    rows = web.database.raw("SELECT name_ciphertext FROM detainees d JOIN cases c ON c.id = d.case_id "
                            "WHERE c.reference = :r", r=reference)
    assert CANARY_NAME not in rows[0].name_ciphertext

    # Auditors and admins cannot open cases.
    assert_problem(Api(web, web.world.auditor).post("/api/cases", new_case_body(web)), 403)
    assert count_rows(web.database)["cases"] == before["cases"] + 1


def test_the_assignee_is_told_when_a_lead_opens_a_case_assigned_to_them(web: Web) -> None:
    with web.database.session() as s:
        staff = s.scalars(sa.select(User).where(User.email == web.world.staff)).one()
        staff_id, staff_email = staff.id, staff.email
    response = Api(web, web.world.lead).post("/api/cases", new_case_body(web, assigned_user_id=staff_id))
    assert response.status_code == 201, response.get_data(as_text=True)
    reference = response.get_json()["reference"]

    sent = web.database.raw("SELECT template, channel, recipient, context FROM outbox WHERE template = 'case_assigned'")
    assert {(r.template, r.channel, r.recipient) for r in sent} == {
        ("case_assigned", "inapp", str(staff_id)), ("case_assigned", "log", staff_email)}
    for r in sent:
        context = r.context if isinstance(r.context, dict) else json.loads(r.context)
        assert context["reference"] == reference and CANARY_NAME not in json.dumps(context)


def test_invalid_new_cases_are_422_by_field_and_write_nothing(web: Web) -> None:
    staff = Api(web, web.world.staff)
    before = count_rows(web.database)

    body = new_case_body(web, channel="pigeon", favourite_colour="red")
    del body["risk"]
    problem = assert_problem(staff.post("/api/cases", body), 422)
    assert set(problem["errors"]) == {"channel", "favourite_colour", "risk"}
    assert problem["errors"]["risk"] == "is required"
    assert problem["errors"]["favourite_colour"] == "is not a known field"

    # Valid in shape, refused by the domain: still per field.
    problem = assert_problem(staff.post("/api/cases", new_case_body(
        web, establishment_id=999_999, received_at="2999-01-01T00:00:00+00:00", party_bodies=["NOPE"])), 422)
    assert set(problem["errors"]) == {"establishment_id", "received_at", "party_bodies"}

    problem = assert_problem(staff.post("/api/cases", new_case_body(web, detainee_name="a\x00b")), 422)
    assert problem["errors"] == {"detainee_name": "must not contain NUL characters"}
    assert_problem(staff.post("/api/cases", [1, 2]), 422)

    for response in (staff.post("/api/cases", data="{not json", content_type="application/json"),
                     staff.post("/api/cases", data='{"risk": NaN}', content_type="application/json")):
        assert_problem(response, 400)
    assert_problem(staff.post("/api/cases", data="risk=standard",
                              content_type="application/x-www-form-urlencoded"), 415)
    assert_problem(staff.post("/api/cases"), 415)
    assert count_rows(web.database) == before


# -- actions --------------------------------------------------------------------------------------------


def test_an_action_moves_the_case_and_returns_it(web: Web) -> None:
    w = web.world
    staff = Api(web, w.staff)
    version = staff.get(f"/api/cases/{w.reported}").get_json()["version"]
    response = staff.post(f"/api/cases/{w.reported}/actions/record_consent_and_risk",
                          {"expected_version": version, "fields": consent_fields(web)})
    assert response.status_code == 200, response.get_data(as_text=True)
    case = response.get_json()
    assert case["stage"] == "triage" and case["version"] > version and case["consent"] == "full"
    assert case["history"][-1]["trigger"] == "record_consent_and_risk"
    assert case_state(web.database, w.reported)["stage"] == "triage"


def test_a_stale_version_is_409_and_changes_nothing(web: Web) -> None:
    w = web.world
    staff = Api(web, w.staff)
    current = staff.get(f"/api/cases/{w.reported}").get_json()["version"]
    before = case_state(web.database, w.reported)
    problem = assert_problem(staff.post(f"/api/cases/{w.reported}/actions/record_consent_and_risk",
                                        {"expected_version": current - 1 or 99, "fields": consent_fields(web)}), 409)
    assert problem["current_version"] == current and problem["current_stage"] == "reported"
    assert case_state(web.database, w.reported) == before


def test_invalid_action_fields_are_422_by_field_and_change_nothing(web: Web) -> None:
    w = web.world
    staff = Api(web, w.staff)
    version = staff.get(f"/api/cases/{w.reported}").get_json()["version"]
    before = case_state(web.database, w.reported)
    path = f"/api/cases/{w.reported}/actions/record_consent_and_risk"
    problem = assert_problem(staff.post(path, {"expected_version": version, "fields": {
        "consent": "maybe", "risk_reason": 7, "shoe_size": 9}}), 422)
    assert set(problem["errors"]) == {"consent", "risk_reason", "risk", "shoe_size"}
    assert problem["errors"]["consent"] == "Select the consent the person gave"  # the protocol file's words

    problem = assert_problem(staff.post(path, {"fields": consent_fields(web), "why": "no"}), 422)
    assert set(problem["errors"]) == {"expected_version", "why"}
    assert_problem(staff.post(path, data="[", content_type="application/json"), 400)
    assert case_state(web.database, w.reported) == before


def test_actions_follow_the_access_rules(web: Web) -> None:
    w = web.world
    body = {"expected_version": 1, "fields": consent_fields(web)}
    before = case_state(web.database, w.reported)
    version = Api(web, w.lead).get(f"/api/cases/{w.reported}").get_json()["version"]
    body["expected_version"] = version
    refused = assert_problem(Api(web, w.auditor).post(f"/api/cases/{w.reported}/actions/record_consent_and_risk",
                                                      body), 403)
    assert refused["detail"].startswith("You cannot 'Record consent and risk' on " + w.reported), refused
    for outsider in (w.other_staff, w.outside_lead):
        assert_problem(Api(web, outsider).post(f"/api/cases/{w.reported}/actions/record_consent_and_risk", body),
                       404)
    lead = Api(web, w.lead)
    assert_problem(lead.post(f"/api/cases/{w.reported}/actions/fly_to_the_moon", body), 404)
    # An action of another stage: 409, the case is where it was.
    problem = assert_problem(lead.post(f"/api/cases/{w.reported}/actions/reopen",
                                       {"expected_version": version, "fields": {"reason": "x"}}), 409)
    assert problem["current_stage"] == "reported"
    # in the protocol's words: the case, the stage and action by their labels, what can be done next
    assert problem["detail"].startswith(f"{w.reported} is at stage 'Reported': 'Reopen' cannot be done"), problem
    assert "Next you can: Record consent and risk" in problem["detail"] and "reopen" not in problem["detail"]
    assert problem["detail"].endswith("Nothing was saved.")
    assert case_state(web.database, w.reported) == before


# -- deadlines and notifications -----------------------------------------------------------------------------


def test_deadlines_are_those_of_visible_cases_with_an_overdue_filter(web: Web) -> None:
    w = web.world
    lead = Api(web, w.lead)
    items = lead.get("/api/deadlines").get_json()["items"]
    assert {d["case_reference"] for d in items} == {w.reported, w.triaged}
    assert [d["due_at"] for d in items] == sorted(d["due_at"] for d in items)
    # The world's cases were received in April 2025: the deadlines they started were already past when
    # recorded, so they are overdue at once.
    assert {d["case_reference"] for d in lead.get("/api/deadlines?overdue=true").get_json()["items"]} == {
        w.reported, w.triaged}
    assert Api(web, w.outside_lead).get("/api/deadlines").get_json()["items"] == []

    web.database.raw("UPDATE wf_deadlines SET status = 'open' WHERE instance_id = :i",
                     i=w.instance_ids[w.reported])
    overdue = lead.get("/api/deadlines?overdue=true").get_json()["items"]
    assert overdue and {d["case_reference"] for d in overdue} == {w.triaged} and all(d["overdue"] for d in overdue)
    # A case is overdue when a running deadline is past due, as the home counts it (decision 29), whether or
    # not the sweep has marked it yet; its due time moved to next week, it is not.
    cases = "/api/cases?overdue="
    assert {c["reference"] for c in lead.get(cases + "true").get_json()["items"]} == {w.reported, w.triaged}
    due = web.clock.now() + timedelta(days=7)
    web.database.raw("UPDATE wf_deadlines SET due_at = :d WHERE instance_id = :i",
                     d=due.replace(tzinfo=None) if web.database.dialect == "sqlite" else due,
                     i=w.instance_ids[w.reported])
    assert [c["reference"] for c in lead.get(cases + "true").get_json()["items"]] == [w.triaged]
    assert [c["reference"] for c in lead.get(cases + "false").get_json()["items"]] == [w.reported]


def test_notifications_list_and_mark_read(web: Web) -> None:
    w = web.world
    with web.database.session() as s:
        lead_id = s.scalars(sa.select(User.id).where(User.email == w.lead)).one()
        staff_id = s.scalars(sa.select(User.id).where(User.email == w.staff)).one()
        at = datetime.now(UTC)
        mine = InboxItem(message_key="t1", recipient=str(lead_id), template="reminder", subject="Reminder",
                         body=f"Case {w.triaged}: triage due", link=f"/cases/{w.triaged}", created_at=at)
        theirs = InboxItem(message_key="t2", recipient=str(staff_id), template="reminder", subject="Other",
                           body="x", link=None, created_at=at)
        s.add_all([mine, theirs])
        s.commit()
        mine_id, theirs_id = mine.id, theirs.id
    lead = Api(web, w.lead)
    inbox = lead.get("/api/notifications").get_json()
    assert inbox["unread_count"] == 1 and [i["id"] for i in inbox["items"]] == [mine_id]
    assert inbox["items"][0]["read_at"] is None
    assert_problem(lead.post(f"/api/notifications/{theirs_id}/read"), 404)
    read = lead.post(f"/api/notifications/{mine_id}/read")
    assert read.status_code == 200 and read.get_json()["unread_count"] == 0 and read.get_json()["read_at"]
    assert lead.get("/api/notifications?unread=true").get_json()["items"] == []
    assert Api(web, w.staff).get("/api/notifications").get_json()["unread_count"] == 1


# -- tokens -----------------------------------------------------------------------------------------------


def test_tokens_list_and_revoke_but_never_create(web: Web) -> None:
    w = web.world
    lead = Api(web, w.lead)
    second = token_for(web, w.lead, "reporting script")
    # A token cannot make tokens (they come from a two-factor browser session or the operator).
    assert_problem(lead.post("/api/tokens", {"name": "reporting script"}), 405)
    listed = lead.get("/api/tokens")
    assert second not in listed.get_data(as_text=True)
    assert {t["name"] for t in listed.get_json()["items"]} == {"test", "reporting script"}
    token = next(t for t in listed.get_json()["items"] if t["name"] == "reporting script")
    other = Api(web, w.staff)
    assert other.get("/api/tokens").get_json()["items"][0]["name"] == "test"
    assert len(other.get("/api/tokens").get_json()["items"]) == 1

    new = web.client()
    auth = {"Authorization": f"Bearer {second}"}
    assert new.get("/api/cases", headers=auth).status_code == 200

    # Not yours: 404, and it still works.
    assert_problem(other.delete(f"/api/tokens/{token['id']}"), 404)
    assert new.get("/api/cases", headers=auth).status_code == 200
    revoked = lead.delete(f"/api/tokens/{token['id']}")
    assert revoked.status_code == 200 and revoked.get_json()["revoked_at"]
    assert_problem(new.get("/api/cases", headers=auth), 401)

    # An admin may revoke anyone's.
    admin = Api(web, w.admin)
    staff_token = other.get("/api/tokens").get_json()["items"][0]["id"]
    assert admin.delete(f"/api/tokens/{staff_token}").status_code == 200
    assert_problem(other.get("/api/tokens"), 401)
    assert_problem(lead.delete("/api/tokens/999999"), 404)


# -- errors and the document -----------------------------------------------------------------------------------


def test_errors_under_api_are_problem_json(web: Web) -> None:
    lead = Api(web, web.world.lead)
    assert_problem(lead.get("/api/nowhere"), 404)
    assert_problem(web.client().get("/api/nowhere"), 404)
    assert_problem(lead.client.put("/api/cases", headers=lead._headers()), 405)


def _openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule)


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_openapi_document_is_3_1_and_lists_every_api_route(web: Web) -> None:
    response = web.client().get("/api/openapi.json")  # public
    assert response.status_code == 200
    doc = response.get_json()
    assert doc["openapi"].startswith("3.1")
    assert doc["info"]["title"] and doc["info"]["version"]
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": "An API token (rpr_...)."}
    assert doc["security"] == [{"bearer": []}]

    routes = {(_openapi_path(r.rule), m.lower()) for r in web.app.url_map.iter_rules()
              if r.rule.startswith("/api/") for m in (r.methods or ()) if m not in ("HEAD", "OPTIONS")}
    documented = {(p, m) for p, ops in doc["paths"].items() for m in ops}
    assert routes == documented
    assert len(routes) == 14  # the unlock, the extension; no POST /api/tokens: a token cannot make tokens

    schemas = doc["components"]["schemas"]
    assert {"type", "title", "status", "detail", "errors"} <= set(schemas["Problem"]["properties"])
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            params = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert params == set(re.findall(r"{(\w+)}", path)), (path, method)
            if path != "/api/openapi.json":
                assert "401" in op["responses"] and "security" not in op, (path, method)
            else:
                assert op["security"] == []
            for code, resp in op["responses"].items():
                media = set(resp.get("content", {}))
                assert media == ({"application/problem+json"} if int(code) >= 400 else {"application/json"}), (
                    path, method, code)
            if method == "post" and path not in ("/api/notifications/{notification_id}/read",):
                assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"].startswith(
                    "#/components/schemas/")
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(doc)))
    assert refs <= set(schemas)
    # No identity in any response schema.
    for name in ("CaseListItem", "CaseDetail", "EventOut"):
        assert not {"detainee_name", "detainee_number", "detainee_date_of_birth", "description"} & set(
            schemas[name]["properties"])


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_openapi_document_loads_in_schemathesis(web: Web) -> None:
    import schemathesis
    from schemathesis.core.result import Ok

    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", web.app)
    results = list(schema.get_all_operations())
    assert all(isinstance(r, Ok) for r in results), results
    operations = [r.ok() for r in results if isinstance(r, Ok)]
    labels = {op.label for op in operations}
    assert "DELETE /api/tokens/{token_id}" in labels and "POST /api/cases/{reference}/actions/{trigger}" in labels
    assert len(operations) >= 10, labels


def test_a_case_says_whether_its_history_checks_out(web: Web) -> None:
    lead = Api(web, web.world.lead)
    ref = web.world.triaged
    intact = lead.get(f"/api/cases/{ref}").get_json()
    assert (intact["history_verified"], intact["history_problems"]) == (True, [])
    web.database.disable_append_only()
    web.database.raw("UPDATE wf_history SET actor_id = 'someone-else' WHERE instance_id = :i AND seq = 1",
                     i=web.world.instance_ids[ref])
    altered = lead.get(f"/api/cases/{ref}").get_json()
    assert altered["history_verified"] is False
    assert any("does not match its hash (edited)" in p for p in altered["history_problems"])
    assert lead.get(f"/api/cases/{web.world.reported}").get_json()["history_verified"] is True
