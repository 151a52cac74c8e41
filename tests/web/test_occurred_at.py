"""Actions dated when they happened, through the API and the command (decision 17)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from tests.factories import CONSENT, REFER
from tests.web.conftest import Cli, Web, World, assert_refused, case_state
from tests.web.test_api import Api, assert_problem

LONDON = ZoneInfo("Europe/London")


def local_day(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone(LONDON).date().isoformat()


def test_the_api_dates_an_action_when_it_happened_and_its_deadline_runs_from_then(web: Web) -> None:
    w = web.world  # the reported case was received on Wednesday 16 April 2025 at 10:00
    lead = Api(web, w.lead)
    version = lead.get(f"/api/cases/{w.reported}").get_json()["version"]
    body = lead.post(f"/api/cases/{w.reported}/actions/record_consent_and_risk",
                     {"expected_version": version, "fields": CONSENT, "occurred_at": "2025-04-17T09:00"}).get_json()
    assert body["history"][-1]["occurred_at"].startswith("2025-04-17T08:00:00")  # 09:00 BST
    body = lead.post(f"/api/cases/{w.reported}/actions/refer",
                     {"expected_version": body["version"], "fields": REFER, "occurred_at": "2025-04-22T10:00"}
                     ).get_json()
    (response,) = [d for d in body["live_deadlines"] if d["name"] == "establishment_response"]
    # 10 working days in England from Tuesday 22 April 2025 (the early May bank holiday is not one).
    assert local_day(response["due_at"]) == "2025-05-07"
    assert response["overdue"] and response["status"] == "overdue"  # long past when it was recorded
    event = body["history"][-1]
    assert event["occurred_at"].startswith("2025-04-22T09:00:00") and event["at"] > event["occurred_at"]
    assert "sent_on" not in event["values"]  # version 2: the action's moment is its date

    before = case_state(web.database, w.reported)
    problem = assert_problem(lead.post(f"/api/cases/{w.reported}/actions/record_response", {
        "expected_version": body["version"], "occurred_at": "2025-04-21",
        "fields": {"responder": "establishment", "summary": "Job restored."}}), 422)
    assert problem["errors"] == {"occurred_at": "must not be before the previous action, which happened at "
                                                "22 April 2025, 10:00"}
    assert case_state(web.database, w.reported) == before


def test_the_command_takes_occurred_at_and_refuses_a_moment_that_cannot_be(
        run: Cli, world: World, database: Any) -> None:
    lead = world.lead
    result = run("case", "advance", world.reported, "record_consent_and_risk", "--as", lead, "-f", "consent=full",
                 "-f", "risk=standard", "--occurred-at", "2025-04-16", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    (triage,) = [d for d in out["deadlines"] if d["name"] == "triage_decision"]
    assert triage["status"] == "overdue"
    before = case_state(database, world.reported)
    for moment, message in [("2030-01-01T10:00", "error: --occurred-at: must not be in the future"),
                            ("2025-04-15", "error: --occurred-at: must not be before the case was received"),
                            ("yesterday", "error: --occurred-at: must be a date, or a date and time")]:
        refused = run("case", "advance", world.reported, "refer", "--as", lead, "-f",
                      "recipients=head_of_establishment", "--occurred-at", moment)
        assert_refused(refused, message)
    assert case_state(database, world.reported) == before


def test_the_command_corrects_when_an_action_happened(run: Cli, world: World, database: Any) -> None:
    lead = world.lead
    done = run("case", "advance", world.reported, "record_consent_and_risk", "--as", lead, "-f", "consent=full",
               "-f", "risk=standard", "--occurred-at", "2025-04-18T10:00", "--json")
    assert done.exit_code == 0, done.output
    before = case_state(database, world.reported)
    refused = run("case", "redate", world.reported, "2", "--as", lead, "--occurred-at", "2025-04-15",
                  "--reason", "Typed the wrong day.")
    assert_refused(refused, "error: --occurred-at: must not be before the action before it")
    assert case_state(database, world.reported) == before
    result = run("case", "redate", world.reported, "2", "--as", lead, "--occurred-at", "2025-04-16T11:00",
                 "--reason", "Typed the wrong day.", "--json")
    assert result.exit_code == 0, result.output
    shown = run("case", "show", world.reported, "--as", lead, "--history", "--json")
    history = json.loads(shown.stdout)["history"]
    assert history[-1]["kind"] == "action_redated"
    (triage,) = [d for d in json.loads(result.stdout)["deadlines"] if d["name"] == "triage_decision"]
    assert triage["status"] == "overdue"


def test_the_api_corrects_when_an_action_happened(web: Web) -> None:
    w = web.world
    lead = Api(web, w.lead)
    version = lead.get(f"/api/cases/{w.reported}").get_json()["version"]
    body = lead.post(f"/api/cases/{w.reported}/actions/record_consent_and_risk",
                     {"expected_version": version, "fields": CONSENT, "occurred_at": "2025-04-18T10:00"}).get_json()
    seq = body["history"][-1]["seq"]
    before = case_state(web.database, w.reported)
    problem = assert_problem(lead.post(f"/api/cases/{w.reported}/events/{seq}/correction", {
        "expected_version": body["version"], "occurred_at": "2025-04-15", "reason": "Wrong day."}), 422)
    assert problem["errors"] == {"occurred_at": "must not be before the action before it, which happened at "
                                                "16 April 2025, 10:00"}
    staff = Api(web, w.staff)
    assert_problem(staff.post(f"/api/cases/{w.reported}/events/{seq}/correction", {
        "expected_version": body["version"], "occurred_at": "2025-04-17", "reason": "Wrong day."}), 403)
    assert case_state(web.database, w.reported) == before
    fixed = lead.post(f"/api/cases/{w.reported}/events/{seq}/correction", {
        "expected_version": body["version"], "occurred_at": "2025-04-17T09:00", "reason": "Wrong day."})
    assert fixed.status_code == 200, fixed.get_data(as_text=True)
    history = fixed.get_json()["history"]
    assert history[-1]["kind"] == "action_redated" and history[-1]["corrects_seq"] == seq
    assert history[seq - 1]["occurred_at"].startswith("2025-04-17T08:00:00")  # as corrected (09:00 BST)
    assert_problem(lead.post(f"/api/cases/{w.reported}/events/{seq}/correction", {
        "expected_version": body["version"], "occurred_at": "2025-04-17", "reason": "Again."}), 409)  # stale
