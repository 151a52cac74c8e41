"""PROTOCOL.md's worked example and its urgent Welsh variant, on an empty install, through the command and
the API only, every action dated on the day the example gives while the clock stands at a later date
(decision 17): every due date of the example comes out as the protocol says."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from reprisals.config import load_settings
from reprisals.runtime import Runtime
from tests.conftest import EmptyDatabase
from tests.web.conftest import Cli, base_env
from web.app import create_app
from workflow.clock import FrozenClock
from workflow.db import create_db_engine

LONDON = ZoneInfo("Europe/London")
EXAMPLE_CSV = Path(__file__).resolve().parents[2] / "docs" / "examples" / "establishments.csv"
PASSWORD = "a long enough pass phrase"


def uk(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=LONDON)


def local(iso: str) -> str:
    """A due time as the protocol states it: 'Tue 2025-05-06 17:00' (UK time)."""
    return f"{datetime.fromisoformat(iso).astimezone(LONDON):%a %Y-%m-%d %H:%M}"


@dataclass
class Install:
    client: FlaskClient
    clock: FrozenClock
    tokens: dict[str, str]
    establishments: dict[str, int]
    url: str

    def call(self, who: str, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        response = self.client.open(path, method=method, json=body,
                                    headers={"Authorization": f"Bearer {self.tokens[who]}"})
        assert response.status_code == status, (path, response.get_data(as_text=True))
        return response.get_json()

    def act(self, who: str, ref: str, trigger: str, fields: dict[str, Any], occurred_at: str, at: str) -> Any:
        """Record an action that happened at ``occurred_at``, with the clock at ``at`` (later)."""
        self.clock.set(uk(at))
        version = self.call(who, "GET", f"/api/cases/{ref}")["version"]
        return self.call(who, "POST", f"/api/cases/{ref}/actions/{trigger}",
                         {"expected_version": version, "fields": fields, "occurred_at": occurred_at})

    def due(self, ref: str, who: str = "lead") -> dict[str, str]:
        return {d["name"]: local(d["due_at"]) for d in self.call(who, "GET", f"/api/cases/{ref}")["live_deadlines"]}

    def reminders(self, ref: str) -> list[str]:
        """When the pending reminders of a case will go (read from the database: nothing shows them yet)."""
        engine = create_db_engine(self.url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.text(
                    "SELECT t.fire_at FROM wf_timers t JOIN cases c ON c.instance_id = t.instance_id "
                    "WHERE c.reference = :r AND t.kind = 'reminder' AND t.status = 'pending' ORDER BY t.fire_at"),
                    {"r": ref}).scalars().all()
        finally:
            engine.dispose()
        return [local(r.isoformat() if isinstance(r, datetime) else str(r)) for r in rows]


@pytest.fixture
def install(empty_db: EmptyDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Install]:
    """An empty database made ready as the README's "Going live" says, with the command only."""
    monkeypatch.chdir(tmp_path)
    env = base_env(empty_db.url, tmp_path)
    run = Cli(env)

    def ok(*args: str, input: str | None = None) -> str:
        result = run(*args, input=input)
        assert result.exit_code == 0, (args, result.output)
        return result.stdout

    ok("db", "upgrade")
    people = {"lead": ("lead@imb.example", "lead", "IMB"), "second": ("second@imb.example", "lead", "IMB"),
              "hmip": ("lead@hmip.example", "lead", "HMIP")}
    for email, role, body in people.values():
        ok("users", "add", "--email", email, "--name", email.split("@")[0].title(), "--role", role, "--body", body,
           "--password-stdin", input=PASSWORD + "\n")
    ok("establishments", "import", str(EXAMPLE_CSV))
    establishments = {e["name"]: e["id"] for e in json.loads(ok("establishments", "list", "--json"))}
    tokens = {who: ok("tokens", "add", "--email", email, "--name", "scenario").strip()
              for who, (email, _role, _body) in people.items()}
    clock = FrozenClock(uk("2025-04-16T12:00"))
    rt = Runtime.from_settings(load_settings(env, dotenv=None), clock=clock)
    try:
        yield Install(create_app(runtime=rt, testing=True).test_client(), clock, tokens, establishments,
                      empty_db.url)
    finally:
        rt.close()


def test_the_worked_example_dated_as_it_happened_while_recorded_later(install: Install) -> None:
    i = install
    i.clock.set(uk("2025-04-16T11:00"))
    ref = i.call("lead", "POST", "/api/cases", {
        "establishment_id": i.establishments["HMP Thornbury Fen"], "received_at": "2025-04-16T10:00",
        "channel": "imb_application", "age_group": "adult", "sanction_types": ["loss_of_job_or_activity"],
        "original_contact_date": "2025-04-07", "detriment_dates": ["2025-04-08"], "risk": "standard",
        "description": "Lost his kitchen job for talking to inspectors.", "detainee_name": "A Person",
        "party_bodies": ["HMIP"]}, status=201)["reference"]

    # Consent and risk on the 16th, recorded on Friday the 25th.
    i.act("lead", ref, "record_consent_and_risk", {"consent": "full", "risk": "standard"},
          "2025-04-16T11:30", at="2025-04-25T09:00")
    assert i.due(ref)["triage_decision"] == "Tue 2025-04-22 17:00"  # 18 and 21 April are bank holidays
    # Triage and the referral to the governor on Thursday the 17th, recorded on the 25th too.
    i.act("lead", ref, "refer", {"recipients": ["head_of_establishment"]}, "2025-04-17", at="2025-04-25T09:05")
    assert i.due(ref)["establishment_response"] == "Tue 2025-05-06 17:00"  # 5 May is a bank holiday
    assert i.reminders(ref) == ["Wed 2025-04-30 09:00"]  # the reminder, still ahead when it was recorded
    # The response arrives Friday 2 May and is accepted the same day; both recorded on Friday 9 May.
    i.act("lead", ref, "record_response", {"responder": "establishment", "summary": "Job restored."},
          "2025-05-02T10:00", at="2025-05-09T09:00")
    i.act("lead", ref, "accept_response", {"proposed_finding": "substantiated", "assessment": "It followed."},
          "2025-05-02T15:00", at="2025-05-09T09:10")
    assert i.due(ref)["follow_up_contact"] == "Tue 2025-06-03 17:00"
    i.act("lead", ref, "complete_follow_up", {"summary": "Back at work."}, "2025-05-20", at="2025-05-21T09:00")
    closed = i.act("second", ref, "close", {"outcome": "substantiated", "summary": "Confirmed."},
                   "2025-05-22T11:00", at="2025-05-23T09:00")
    assert closed["stage"] == "closed" and closed["closed_at"].startswith("2025-05-22T10:00")  # 11:00 BST
    happened = [e["occurred_at"][:10] for e in closed["history"] if e["kind"] == "transition"]
    assert happened == ["2025-04-16", "2025-04-17", "2025-05-02", "2025-05-02", "2025-05-20", "2025-05-22"]
    assert all(e["at"] > e["occurred_at"] for e in closed["history"] if e["kind"] == "transition")


def test_the_urgent_welsh_variant_counts_hours_then_welsh_working_days(install: Install) -> None:
    i = install
    i.clock.set(uk("2025-08-22T15:30"))
    ref = i.call("lead", "POST", "/api/cases", {
        "establishment_id": i.establishments["HMYOI Cwm Dulais"], "received_at": "2025-08-22T15:00",
        "channel": "imb_application", "age_group": "child", "sanction_types": ["verbal_abuse_or_threats"],
        "risk": "urgent", "description": "Threatened after speaking to the board.",
        "detainee_name": "A Person"}, status=201)["reference"]
    i.act("lead", ref, "record_consent_and_risk", {"consent": "full", "risk": "urgent"}, "2025-08-22T15:00",
          at="2025-08-22T16:00")
    # An urgent case needs a time: a bare date is refused, naming the field.
    version = i.call("lead", "GET", f"/api/cases/{ref}")["version"]
    problem = i.call("lead", "POST", f"/api/cases/{ref}/actions/refer", {
        "expected_version": version, "fields": {"recipients": ["head_of_establishment"]},
        "occurred_at": "2025-08-22"}, status=422)
    assert problem["errors"] == {"occurred_at": "needs a time as well as a date, like 2025-04-17T10:00: an urgent "
                                                "case counts in hours"}
    i.act("lead", ref, "refer", {"recipients": ["head_of_establishment", "youth_custody_service"]},
          "2025-08-22T15:00", at="2025-08-22T18:00")
    due = i.due(ref)
    assert due["urgent_contact"] == "Sat 2025-08-23 15:00"  # 24 clock hours
    assert due["urgent_written_response"] == "Mon 2025-09-01 17:00"  # 5 working days in Wales; 25 Aug a holiday
    # No response: overdue from 5pm Mon 1 Sep; on Tue 2 Sep the lead escalates, recorded on the 3rd.
    # The governor is reached on Saturday morning: contact confirmed (version 2), met, and the case stays
    # referred with its written-response deadline running.
    confirmed = i.act("lead", ref, "confirm_contact", {"contact_with": "Duty governor"}, "2025-08-23T11:00",
                      at="2025-08-26T09:00")
    assert confirmed["stage"] == "referred" and "urgent_contact" not in i.due(ref)
    assert i.due(ref)["urgent_written_response"] == "Mon 2025-09-01 17:00"
    # A child's escalation goes to (or copies) the Youth Custody Service; one without it is refused.
    i.clock.set(uk("2025-09-03T09:00"))
    version = i.call("lead", "GET", f"/api/cases/{ref}")["version"]
    problem = i.call("lead", "POST", f"/api/cases/{ref}/actions/escalate", {
        "expected_version": version, "fields": {"reason": "overdue", "recipient": "hmpps"},
        "occurred_at": "2025-09-02T10:00"}, status=422)
    assert "it must copy the Youth Custody Service: the person is a child" in problem["detail"], problem
    i.act("lead", ref, "escalate", {"reason": "overdue", "recipient": "youth_custody_service"},
          "2025-09-02T10:00", at="2025-09-03T09:00")
    assert i.due(ref)["level_1_response"] == "Tue 2025-09-09 17:00"
