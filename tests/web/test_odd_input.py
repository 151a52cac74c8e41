"""Odd input on every surface — the API, the pages and the command: a lone surrogate, dates before
1900 or in absurd years, a number for a date, an identity made of invisible characters, ids given as
``true`` or ``"1"``, a consent date in the future. Each is refused with its field's message and
nothing is written (row counts compared)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.web.conftest import COUNTED, Cli, Web, World, assert_refused, count_rows, csrf_token
from tests.web.test_api import Api, assert_problem, consent_fields, new_case_body
from tests.web.test_cli import case_data_for

TABLES = (*COUNTED, "outbox", "case_notes")

NEW_CASE_ODDITIES = [
    pytest.param({"description": "lost his job \ud800 after"}, "description",
                 "must not contain characters that cannot be stored (U+D800)", id="lone-surrogate"),
    pytest.param({"detainee_name": "\u200b\u200b \ufeff\u2060\u00a0"}, "detainee_name", "is required",
                 id="invisible-identity"),
    pytest.param({"detainee_name": "\u0301\u0301"}, "detainee_name", "is required", id="combining-marks-alone"),
    pytest.param({"received_at": 1744794000}, "received_at", "must be a date and time", id="received-at-number"),
    pytest.param({"received_at": "1899-12-31T10:00:00+00:00"}, "received_at", "on or after 1 January 1900",
                 id="received-before-1900"),
    pytest.param({"original_contact_date": "0001-01-01"}, "original_contact_date", "on or after 1 January 1900",
                 id="year-one"),
    pytest.param({"detriment_dates": ["9999-12-31"]}, "detriment_dates[0]", "", id="absurd-year"),
    pytest.param({"establishment_id": True}, "establishment_id", "", id="establishment-true"),
    pytest.param({"establishment_id": "1"}, "establishment_id", "", id="establishment-string"),
    pytest.param({"establishment_id": 1.0}, "establishment_id", "", id="establishment-float"),
]


@pytest.mark.parametrize(("override", "field", "message"), NEW_CASE_ODDITIES)
def test_api_refuses_odd_new_case_input_by_field_and_writes_nothing(web: Web, override: dict[str, Any], field: str,
                                                                    message: str) -> None:
    lead = Api(web, web.world.lead)
    before = count_rows(web.database, TABLES)
    body = new_case_body(web, **override)
    raw = json.dumps(body, ensure_ascii=True)  # "\ud800" travels as JSON's own escape, as a client sends it

    problem = assert_problem(lead.post("/api/cases", data=raw, content_type="application/json"), 422)

    assert field in problem["errors"], problem
    assert message in problem["errors"][field]
    assert "\ud800" not in json.dumps(problem) and "Error" not in json.dumps(problem)
    assert count_rows(web.database, TABLES) == before


def test_api_says_what_is_wrong_in_plain_words_never_in_the_validator_s(web: Web) -> None:
    """Not "Input should be a valid dictionary or instance of NewCase", "List should have at least 1 item
    after validation", "less than or equal to 2147483647": the field, and what it must be."""
    lead = Api(web, web.world.lead)
    before = count_rows(web.database, TABLES)
    cases = [
        ([1, 2], "body", "must be a JSON object"),
        (new_case_body(web, sanction_types=[]), "sanction_types", "choose at least one"),
        (new_case_body(web, establishment_id=10**30), "establishment_id", "is too large"),
        (new_case_body(web, detainee_name=""), "detainee_name", "is required"),
        (new_case_body(web, received_at="2025-04"), "received_at", "must be a date and time, like 2025-04-16T09:30"),
        (new_case_body(web, risk="extreme"), "risk", "must be one of 'urgent', 'high' or 'standard'"),
    ]
    for body, field, message in cases:
        problem = assert_problem(lead.post("/api/cases", body), 422)
        assert message in problem["errors"].get(field, ""), (body, problem)
        text = json.dumps(problem)
        for jargon in ("Input should", "NewCase", "2147483647", "after validation", "instance of", "parse"):
            assert jargon not in text, (jargon, problem)
    version = lead.get(f"/api/cases/{web.world.reported}").get_json()["version"]
    for odd in (True, "1", 1.0):  # a version is a whole number, never coerced (true is not version 1)
        problem = assert_problem(lead.post(f"/api/cases/{web.world.reported}/actions/record_consent_and_risk",
                                           {"expected_version": odd, "fields": consent_fields(web)}), 422)
        assert problem["errors"] == {"expected_version": "must be a whole number"}, (odd, problem)
    assert version and count_rows(web.database, TABLES) == before


def test_api_refuses_consent_recorded_in_the_future_and_changes_nothing(web: Web) -> None:
    lead = Api(web, web.world.lead)
    version = lead.get(f"/api/cases/{web.world.reported}").get_json()["version"]
    before = count_rows(web.database, TABLES)
    tomorrow = (web.clock.now() + timedelta(days=2)).date().isoformat()

    problem = assert_problem(lead.post(f"/api/cases/{web.world.reported}/actions/record_consent_and_risk", {
        "expected_version": version, "fields": consent_fields(web), "occurred_at": tomorrow}), 422)

    assert problem["errors"] == {"occurred_at": "must not be in the future"}
    assert count_rows(web.database, TABLES) == before


@pytest.mark.parametrize(("override", "field", "message"), [
    pytest.param({"detainee_name": "\u200b\ufeff"}, "detainee_name", "is required", id="invisible-identity"),
    pytest.param({"received_at": 1744794000}, "received_at", "must be a date and time", id="received-at-number"),
    pytest.param({"received_at": "1066-10-14T10:00"}, "received_at", "on or after 1 January 1900", id="1066"),
    pytest.param({"establishment_id": True}, "establishment_id", "", id="establishment-true"),
    pytest.param({"establishment_id": "1"}, "establishment_id", "", id="establishment-string"),
])
def test_case_open_command_refuses_odd_input_with_one_error_line_and_writes_nothing(
        run: Cli, world: World, tmp_path: Path, database: Any, override: dict[str, Any], field: str,
        message: str) -> None:
    before = count_rows(database, TABLES)
    data = {**json.loads(json.dumps(case_data_for(world), default=str)), **override}
    path = tmp_path / "case.json"
    path.write_text(json.dumps(data), encoding="utf-8")

    result = run("case", "open", "--as", world.lead, "--file", str(path))

    lines = assert_refused(result, f"error: {field}: ", message)
    assert not any("\u200b" in line for line in lines)
    assert count_rows(database, TABLES) == before


def test_case_advance_command_refuses_consent_recorded_in_the_future(run: Cli, world: World, database: Any) -> None:
    before = count_rows(database, TABLES)
    result = run("case", "advance", world.reported, "record_consent_and_risk", "--as", world.lead,
                 "-f", "consent=full", "-f", "risk=standard", "--occurred-at", "2999-01-01")
    assert_refused(result, "error: --occurred-at: ")
    assert count_rows(database, TABLES) == before


def test_note_with_a_control_character_from_the_page_is_refused_with_a_govuk_error(web: Web) -> None:
    client = web.sign_in(web.world.lead)
    before = count_rows(web.database, TABLES)
    page = f"/cases/{web.world.reported}"
    form = client.get(page).get_data(as_text=True)
    # (Bytes that are not UTF-8 reach a form as their %XX escapes, which is harmless text.)
    body = f"note=seen+on+the+wing+%01+today&csrf_token={csrf_token(form)}"
    response = client.post(f"{page}/notes", data=body, content_type="application/x-www-form-urlencoded")

    html = response.get_data(as_text=True)
    assert response.status_code not in (302, 500), (response.status_code, html[:500])
    assert "govuk-error-summary" in html and "must not contain control characters (U+0001)" in html
    assert count_rows(web.database, TABLES) == before


def test_action_form_refuses_odd_dates_and_invisible_text_with_govuk_errors_and_writes_nothing(web: Web) -> None:
    from tests.web.test_case_actions import Pages, d

    lead = Pages(web, web.world.lead, web.world.reported)
    before = count_rows(web.database, TABLES)
    tomorrow = (datetime.now(ZoneInfo("Europe/London")) + timedelta(days=1)).date().isoformat()
    for typed, message in [(["31", "12", "1899"], "The date it happened must be a real date on or after 1 January 19"),
                           (["1", "1", "9999"], "The date it happened must be a real date on or before 31 December"),
                           (d(tomorrow), "The date it happened must not be in the future"),
                           (["31", "2", "2025"], "When did this happen? must be a real date")]:
        response = lead.submit("record_consent_and_risk", {"consent": "full", "risk": "standard",
                                                           "occurred_on": typed})
        html = response.get_data(as_text=True)
        assert response.status_code == 200 and "govuk-error-summary" in html, (typed, response.status_code)
        assert message in html and 'href="#occurred_on"' in html, (typed, message)
    html = lead.submit("record_consent_and_risk", {"consent": "full", "risk": "standard",
                                                   "occurred_time": "25:70"}).get_data(as_text=True)
    assert "Enter the time as hours and minutes, like 14:30" in html and 'href="#occurred_time"' in html
    # Text made only of invisible characters is no text: the reason of a decline is required.
    triaged = Pages(web, web.world.lead, web.world.triaged)
    html = triaged.submit("decline", {"reason": "\u200b\u2060\ufeff "}).get_data(as_text=True)
    assert "govuk-error-summary" in html and 'href="#reason"' in html
    assert count_rows(web.database, TABLES) == before
