"""A small workflow of our own (an errand), as data, for the engine's tests.

Not the domain's protocol: the engine must work for any spec. ``errand_doc()`` returns a fresh,
mutable mapping so a test can break exactly one thing and see exactly one problem.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from tests.conftest import Database
from workflow.engine import Engine, GuardContext, SimpleActor
from workflow.spec import WorkflowSpec, load_spec

CLERK = SimpleActor("clerk-1", frozenset({"clerk"}))
MANAGER = SimpleActor("manager-1", frozenset({"manager"}))
BOTH = SimpleActor("both-1", frozenset({"clerk", "manager"}))
NOBODY = SimpleActor("visitor-1", frozenset())

BUDGET_LIMIT = 1000
BUDGET_MESSAGE = "amounts above 1000 need the finance director"

SUBMIT_FIELDS = {"priority": "high", "summary": "Fetch the post"}


def errand_doc(version: int = 1) -> dict[str, Any]:
    return {
        "key": "errand",
        "version": version,
        "title": "Errand",
        "initial": "drafted",
        "roles": ["clerk", "manager"],
        "variables": {
            "priority": {"type": "choice", "choices": ["low", "high"]},
            "received_at": {"type": "datetime"},
            "amount": {"type": "integer"},
        },
        "stages": {
            "drafted": {"deadlines": [{"name": "submit_by", "due": "5wd"}]},
            "submitted": {
                "deadlines": [
                    {"name": "decide_by", "due": {"by": "priority", "values": {"low": "10wd", "high": "2wd"}},
                     "reminders": ["1wd"]},
                    {"name": "acknowledge_by", "due": "24h", "anchor": "received_at"},
                ],
            },
            "approved": {},
            "closed": {"final": True},
        },
        "triggers": {
            "submit": {
                "from": "drafted",
                "to": "submitted",
                "roles": ["clerk"],
                "fields": {
                    "priority": {"type": "choice", "choices": ["low", "high"], "variable": True},
                    "summary": {"type": "string", "max_length": 20},
                    "received_at": {"type": "datetime", "variable": True, "required": False},
                },
            },
            "annotate": {"from": "submitted", "to": "submitted", "roles": ["clerk", "manager"],
                         "fields": {"note": {"type": "text"}}},
            "approve": {
                "from": "submitted",
                "to": "approved",
                "roles": ["manager"],
                "guards": ["budget_ok"],
                "fields": {"amount": {"type": "integer", "variable": True}},
            },
            "reject": {"from": "submitted", "to": "drafted", "roles": ["manager"],
                       "fields": {"reason": {"type": "text"}}},
            "close": {"from": "*", "to": "closed", "roles": ["manager"], "set": {"priority": None}},
        },
    }


def dump(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False)


def errand_spec(version: int = 1, **changes: Any) -> WorkflowSpec:
    doc = errand_doc(version)
    doc.update(changes)
    return load_spec(dump(doc), source=f"errand-v{version}.yaml")


def budget_ok(ctx: GuardContext) -> str | None:
    amount = ctx.variables.get("amount")
    return BUDGET_MESSAGE if isinstance(amount, int) and amount > BUDGET_LIMIT else None


def errand_engine(*versions: int) -> Engine:
    engine = Engine(guards={"budget_ok": budget_ok})
    for v in versions or (1,):
        engine.register(errand_spec(v))
    return engine


def errand_v2_spec() -> WorkflowSpec:
    """Version 2: `reject` is gone; `escalate` leads to a new `escalated` stage."""
    doc = errand_doc(2)
    doc["title"] = "Errand II"
    del doc["triggers"]["reject"]
    doc["stages"]["escalated"] = {}
    doc["triggers"]["escalate"] = {"from": "submitted", "to": "escalated", "roles": ["manager"]}
    return load_spec(dump(doc), source="errand-v2.yaml")


# -- database helpers ------------------------------------------------------------------------------

NOW = datetime(2025, 4, 16, 9, 30, tzinfo=UTC)
PATHS = {
    "drafted": [],
    "submitted": [("submit", CLERK, SUBMIT_FIELDS)],
    "approved": [("submit", CLERK, SUBMIT_FIELDS), ("approve", MANAGER, {"amount": 5})],
    "closed": [("submit", CLERK, SUBMIT_FIELDS), ("close", MANAGER, {})],
}


def start_errand(database: Database, engine: Engine, stage: str = "drafted", *, notes: int = 0,
                 now: datetime = NOW) -> int:
    """A committed instance brought to ``stage`` through the engine, with ``notes`` host events."""
    with database.session() as s:
        instance = engine.start(s, "errand", CLERK, now, {"amount": 0})
        for i, (trigger, actor, fields) in enumerate(PATHS[stage], start=1):
            engine.fire(s, instance, trigger, actor, fields, now + timedelta(minutes=i))
        for n in range(notes):
            engine.append_event(s, instance, "note", CLERK.id, now + timedelta(hours=1, minutes=n), {"n": n})
        s.commit()
        return instance.id


def snapshot(database: Database, instance_id: int) -> dict[str, Any]:
    """What another connection sees of an instance: its row, its history and the ledger."""
    (row,) = database.raw(
        "SELECT stage, version, variables, spec_version, head_seq, head_hash, stage_entered_at, updated_at "
        "FROM wf_instances WHERE id = :id", id=instance_id)
    out = dict(row._mapping)
    if isinstance(out["variables"], str):
        out["variables"] = json.loads(out["variables"])
    out["history"] = database.raw("SELECT count(*) FROM wf_history WHERE instance_id = :id", id=instance_id)[0][0]
    out["all_history"] = database.raw("SELECT count(*) FROM wf_history")[0][0]
    out["ledger"] = database.raw("SELECT count(*) FROM wf_ledger")[0][0]
    return out
