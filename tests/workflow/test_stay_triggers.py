"""Triggers that leave the stage as it is (a spec trigger with no ``to:``): they record the action and
change variables, close only the deadlines they name (as met, at the moment they happened), and leave
the stage's other deadlines running — never recreated, their reminders untouched."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.conftest import Database
from tests.workflow.errand import CLERK, MANAGER, NOW, SUBMIT_FIELDS, budget_ok, dump, errand_doc
from workflow.deadlines import Timers
from workflow.engine import Engine
from workflow.errors import SpecError
from workflow.models import DeadlineRow, TimerRow
from workflow.spec import load_spec


def stay_engine() -> Engine:
    doc = errand_doc()
    doc["triggers"]["acknowledge"] = {"from": "submitted", "roles": ["clerk"], "closes": ["acknowledge_by"],
                                      "fields": {"note": {"type": "text", "required": False}}}
    doc["triggers"]["reprioritise"] = {"from": ["submitted"], "roles": ["manager"],
                                       "fields": {"priority": {"type": "choice", "choices": ["low", "high"],
                                                               "variable": True}}}
    engine = Engine(guards={"budget_ok": budget_ok})
    Timers().attach(engine)
    engine.register(load_spec(dump(doc), source="errand-stay.yaml"))
    return engine


def test_a_trigger_without_to_keeps_the_stage_and_closes_only_what_it_names(database: Database) -> None:
    engine = stay_engine()
    with database.session() as s:
        instance = engine.start(s, "errand", CLERK, NOW, {"amount": 0})
        engine.fire(s, instance, "submit", CLERK, {**SUBMIT_FIELDS, "received_at": NOW.isoformat()},
                    NOW + timedelta(minutes=1))
        entered, before = instance.stage_entered_at, {
            d.name: (d.id, d.due_at, d.generation) for d in s.scalars(select(DeadlineRow))
            if d.stage == "submitted"}
        later = NOW + timedelta(hours=2)
        event = engine.fire(s, instance, "acknowledge", CLERK, {}, later + timedelta(hours=1), occurred_at=later)
        engine.fire(s, instance, "reprioritise", MANAGER, {"priority": "low"}, later + timedelta(hours=2))
        s.commit()

        assert instance.stage == "submitted" and instance.stage_entered_at == entered
        assert (event.from_stage, event.to_stage, event.trigger) == ("submitted", "submitted", "acknowledge")
        assert instance.variables["priority"] == "low"  # a variable changed, the stage did not
        rows = {d.name: d for d in s.scalars(select(DeadlineRow)) if d.stage == "submitted"}
        assert set(rows) == set(before)  # nothing recreated
        ack, decide = rows["acknowledge_by"], rows["decide_by"]
        assert (ack.status, ack.closed_at) == ("done", later) and ack.closed_at <= ack.due_at  # met, when it happened
        assert (decide.id, decide.due_at, decide.generation) == before["decide_by"] and decide.status == "open"
        pending = {(t.deadline_id, t.kind) for t in s.scalars(select(TimerRow).where(TimerRow.status == "pending"))}
        assert (ack.id, "due") not in pending and (decide.id, "due") in pending and (decide.id, "reminder") in pending


def test_a_spec_is_refused_when_a_stay_trigger_closes_a_deadline_its_stages_lack() -> None:
    doc = errand_doc()
    doc["triggers"]["acknowledge"] = {"from": "submitted", "roles": ["clerk"], "closes": ["submit_by"]}
    doc["triggers"]["tidy"] = {"from": "closed", "roles": ["clerk"]}
    with pytest.raises(SpecError) as err:
        load_spec(dump(doc), source="bad.yaml")
    text = str(err.value)
    assert "triggers.acknowledge.closes[0]: no stage this trigger starts from has a deadline 'submit_by'" in text
    assert "triggers.tidy.to: a trigger that stays at its stage cannot start from a final stage" in text
