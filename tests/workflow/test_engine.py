"""The engine on a real database (SQLite and PostgreSQL): moves, refusals that change nothing,
spec versions, and concurrent writers."""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.conftest import Database
from tests.workflow.errand import (
    BOTH,
    BUDGET_MESSAGE,
    CLERK,
    MANAGER,
    NOBODY,
    NOW,
    PATHS,
    SUBMIT_FIELDS,
    errand_engine,
    errand_v2_spec,
    snapshot,
    start_errand,
)
from workflow.engine import Engine, SimpleActor, StageChange
from workflow.errors import (
    GuardFailed,
    MissingFields,
    NotPermitted,
    StaleInstance,
    TransitionNotAllowed,
    UnknownTrigger,
    WorkflowError,
)
from workflow.history import event_hash, genesis_hash, verify
from workflow.models import HistoryEvent, LedgerEntry, WorkflowInstance


def load(session: Session, instance_id: int) -> WorkflowInstance:
    instance = session.get(WorkflowInstance, instance_id)
    assert instance is not None
    return instance


def events_of(database: Database, instance_id: int) -> list[HistoryEvent]:
    with database.session() as s:
        return list(s.scalars(select(HistoryEvent).where(HistoryEvent.instance_id == instance_id)
                              .order_by(HistoryEvent.seq)))


def assert_chain_intact(events: list[HistoryEvent], instance_id: int) -> None:
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    prev = genesis_hash(instance_id)
    for e in events:
        assert e.prev_hash == prev, f"event {e.seq} does not follow its predecessor"
        assert event_hash(e) == e.hash, f"event {e.seq} does not match its hash"
        prev = e.hash
    assert len({e.prev_hash for e in events}) == len(events), "two events share a predecessor: a fork"


# -- moving --------------------------------------------------------------------------------------


def test_instance_at_initial_stage_with_created_event_when_started(database: Database) -> None:
    engine = errand_engine()
    with database.session() as s:
        instance = engine.start(s, "errand", CLERK, NOW, {"amount": 0}, data={"origin": "phone"})
        s.commit()
        instance_id = instance.id

    with database.session() as s:
        instance = load(s, instance_id)
        (created,) = engine.history(s, instance)
        ledger = list(s.scalars(select(LedgerEntry)))

        assert (instance.spec_key, instance.spec_version, instance.stage) == ("errand", 1, "drafted")
        assert instance.variables == {"amount": 0}
        assert instance.created_at == instance.stage_entered_at == NOW
        assert (created.seq, created.kind, created.trigger, created.from_stage, created.to_stage) == (
            1, "created", None, None, "drafted")
        assert created.actor_id == CLERK.id and created.at == NOW
        assert created.data == {"spec": "errand@1", "origin": "phone", "occurred_at": NOW.isoformat()}
        assert instance.began_at == instance.acted_at == NOW
        assert (instance.head_seq, instance.head_hash) == (1, created.hash)
        assert [(e.instance_id, e.genesis_hash) for e in ledger] == [(instance_id, created.hash)]
        assert verify(s).ok


def test_stage_moves_and_history_grows_when_trigger_fired(database: Database) -> None:
    engine = errand_engine()
    instance_id = start_errand(database, engine)
    later = NOW + timedelta(hours=2)
    before = snapshot(database, instance_id)

    with database.session() as s:
        instance = load(s, instance_id)
        event = engine.fire(s, instance, "submit", CLERK,
                            {**SUBMIT_FIELDS, "received_at": "2025-04-16T10:00:00+01:00"}, later)
        s.commit()

    after = snapshot(database, instance_id)
    assert after["stage"] == "submitted"
    assert after["version"] == before["version"] + 1
    assert after["history"] == before["history"] + 1
    assert after["variables"] == {"amount": 0, "priority": "high", "received_at": "2025-04-16T09:00:00+00:00"}
    assert (event.seq, event.kind, event.trigger, event.from_stage, event.to_stage, event.actor_id) == (
        2, "transition", "submit", "drafted", "submitted", CLERK.id)
    assert event.data == {"fields": {"priority": "high", "summary": "Fetch the post",
                                     "received_at": "2025-04-16T09:00:00+00:00"},
                          "occurred_at": event.at.isoformat()}
    with database.session() as s:
        instance = load(s, instance_id)
        assert instance.stage_entered_at == later and instance.updated_at == later
        assert instance.created_at == NOW
    assert_chain_intact(events_of(database, instance_id), instance_id)


def test_variable_cleared_and_no_way_on_when_final_stage_reached(database: Database) -> None:
    engine = errand_engine()
    instance_id = start_errand(database, engine, "submitted")

    with database.session() as s:
        instance = load(s, instance_id)
        engine.fire(s, instance, "close", MANAGER, None, NOW)
        s.commit()
        assert engine.allowed_triggers(instance, BOTH) == []
        with pytest.raises(TransitionNotAllowed):
            engine.fire(s, instance, "close", MANAGER, None, NOW)

    assert snapshot(database, instance_id)["stage"] == "closed"
    assert snapshot(database, instance_id)["variables"] == {"amount": 0, "priority": None}


def test_host_variables_and_data_kept_when_passed_with_a_trigger(database: Database) -> None:
    engine = errand_engine()
    instance_id = start_errand(database, engine, "submitted")

    with database.session() as s:
        instance = load(s, instance_id)
        event = engine.fire(s, instance, "annotate", MANAGER, {"note": "chased"}, NOW,
                            variables={"level": 2}, data={"channel": "email"})
        s.commit()

    assert event.data == {"fields": {"note": "chased"}, "occurred_at": NOW.isoformat(), "variables": {"level": 2},
                          "channel": "email"}
    assert snapshot(database, instance_id)["variables"]["level"] == 2
    assert snapshot(database, instance_id)["stage"] == "submitted"


def test_host_event_appended_without_moving_when_append_event_called(database: Database) -> None:
    engine = errand_engine()
    instance_id = start_errand(database, engine, "submitted")
    before = snapshot(database, instance_id)

    with database.session() as s:
        instance = load(s, instance_id)
        note = engine.append_event(s, instance, "note", "someone", NOW, {"text": "called back"})
        fix = engine.append_event(s, instance, "correction", "someone", NOW, {"text": "called twice"},
                                  corrects_seq=note.seq)
        s.commit()

    after = snapshot(database, instance_id)
    assert after["stage"] == before["stage"] and after["variables"] == before["variables"]
    assert after["history"] == before["history"] + 2 and after["head_seq"] == before["head_seq"] + 2
    assert (note.seq, note.kind, note.trigger, note.to_stage) == (3, "note", None, None)
    assert fix.corrects_seq == 3
    assert_chain_intact(events_of(database, instance_id), instance_id)


ALLOWED = [
    ("drafted", CLERK, ["submit"]),
    ("drafted", MANAGER, ["close"]),
    ("submitted", CLERK, ["annotate"]),
    ("submitted", MANAGER, ["annotate", "approve", "reject", "close"]),
    ("submitted", NOBODY, []),
    ("approved", BOTH, ["close"]),
    ("closed", BOTH, []),
]


def test_only_permitted_triggers_offered_when_asked_what_is_allowed(database: Database) -> None:
    # One database for every case: creating one per case would cost more than the cases.
    engine = errand_engine()
    ids = {stage: start_errand(database, engine, stage) for stage in PATHS}

    with database.session() as s:
        offered = [(stage, actor.id, [t.name for t in engine.allowed_triggers(load(s, ids[stage]), actor)])
                   for stage, actor, _ in ALLOWED]

    assert offered == [(stage, actor.id, expected) for stage, actor, expected in ALLOWED]


def test_listeners_told_of_every_move_when_registered(database: Database) -> None:
    engine = errand_engine()
    seen: list[tuple[str | None, str | None, str]] = []

    def listener(session: Session, change: StageChange) -> None:
        assert change.event in session  # inside the same transaction, before commit
        seen.append((change.trigger, change.from_stage, change.to_stage))

    engine.listeners.append(listener)
    with database.session() as s:
        instance = engine.start(s, "errand", CLERK, NOW)
        engine.fire(s, instance, "submit", CLERK, SUBMIT_FIELDS, NOW)
        engine.append_event(s, instance, "note", CLERK.id, NOW)
        s.commit()

    assert seen == [(None, None, "drafted"), ("submit", "drafted", "submitted")]


# -- refusals change nothing -----------------------------------------------------------------------

Attempt = Callable[[Engine, Session, WorkflowInstance], Any]
Check = Callable[[Any, WorkflowInstance], None]


def _fire(trigger: str, actor: SimpleActor, fields: dict[str, Any] | None = None, now: datetime = NOW) -> Attempt:
    return lambda engine, s, instance: engine.fire(s, instance, trigger, actor, fields, now)


def _stale_fire() -> Attempt:
    return lambda engine, s, instance: engine.fire(s, instance, "approve", MANAGER, {"amount": 5}, NOW,
                                                   expected_version=instance.version - 1)


def _stale_append() -> Attempt:
    return lambda engine, s, instance: engine.append_event(s, instance, "note", "x", NOW,
                                                           expected_version=instance.version + 1)


def _append(kind: str, **kw: Any) -> Attempt:
    return lambda engine, s, instance: engine.append_event(s, instance, kind, "x", NOW, **kw)


def _is_stale(err: StaleInstance, instance: WorkflowInstance) -> None:
    assert err.instance_id == instance.id and err.actual == instance.version and err.expected != instance.version


REFUSALS: list[tuple[str, str, Attempt, type[Exception], Check]] = [
    ("unknown-trigger", "submitted", _fire("fly", MANAGER), UnknownTrigger,
     lambda e, i: (e.trigger == "fly" and str(e) == "'fly' is not an action of the errand workflow") or _no()),
    ("auto-transition-name", "submitted", _fire("to_closed", BOTH), UnknownTrigger,
     lambda e, i: e.trigger == "to_closed" or _no()),
    ("python-attribute-name", "submitted", _fire("__init__", BOTH), UnknownTrigger, lambda e, i: None),
    ("wrong-stage", "drafted", _fire("approve", MANAGER, {"amount": 5}), TransitionNotAllowed,
     lambda e, i: (e.trigger, e.stage) == ("approve", "drafted") or _no()),
    ("final-stage", "closed", _fire("close", MANAGER), TransitionNotAllowed,
     lambda e, i: e.stage == "closed" or _no()),
    ("wrong-role", "submitted", _fire("approve", CLERK, {"amount": 5}), NotPermitted,
     lambda e, i: (e.roles, e.allowed) == (["clerk"], ["manager"]) or _no()),
    ("no-role", "submitted", _fire("annotate", NOBODY, {"note": "hi"}), NotPermitted,
     lambda e, i: (e.roles, e.allowed) == ([], ["clerk", "manager"]) or _no()),
    ("missing-fields", "drafted", _fire("submit", CLERK, {}), MissingFields,
     lambda e, i: e.errors == {"priority": "is required", "summary": "is required"} or _no()),
    ("invalid-fields", "drafted",
     _fire("submit", CLERK, {"priority": "urgent", "summary": "x" * 21, "received_at": "2025-04-16T10:00",
                             "colour": "red"}), MissingFields,
     lambda e, i: e.errors == {"priority": "must be one of: low, high",
                               "summary": "must be 20 characters or fewer",
                               "received_at": "must include a time zone offset, such as +01:00 or Z",
                               "colour": "is not a field of this action"} or _no()),
    ("guard", "submitted", _fire("approve", MANAGER, {"amount": 5000}), GuardFailed,
     lambda e, i: (e.guard, e.reason, str(e)) == ("budget_ok", BUDGET_MESSAGE, BUDGET_MESSAGE) or _no()),
    ("stale-fire", "submitted", _stale_fire(), StaleInstance, _is_stale),
    ("stale-append", "submitted", _stale_append(), StaleInstance, _is_stale),
    ("reserved-kind", "submitted", _append("transition"), ValueError, lambda e, i: None),
    ("correcting-nothing", "submitted", _append("correction", corrects_seq=99), ValueError, lambda e, i: None),
    ("naive-time", "submitted", _fire("annotate", CLERK, {"note": "hi"}, now=datetime(2025, 4, 16, 9, 30)),
     ValueError, lambda e, i: None),
]


def _no() -> None:
    raise AssertionError("the error does not carry what it should")


def _refuse_and_compare(database: Database, engine: Engine, stage: str, attempt: Attempt,
                        error: type[Exception], check: Check) -> None:
    instance_id = start_errand(database, engine, stage)
    before = snapshot(database, instance_id)

    with database.session() as s:
        instance = load(s, instance_id)
        in_memory = (instance.stage, instance.version, dict(instance.variables), instance.head_seq)
        with pytest.raises(error) as err:
            attempt(engine, s, instance)
        check(err.value, instance)

        assert instance not in s.dirty and not s.is_modified(instance)
        assert not s.new
        assert (instance.stage, instance.version, dict(instance.variables), instance.head_seq) == in_memory
        # Commit whatever the session holds: had the refusal flushed or left anything pending, it
        # would now be in the database. (SQLite cannot be read from a second connection meanwhile:
        # every transaction there holds the write lock.)
        s.commit()

    assert snapshot(database, instance_id) == before


def test_nothing_changes_when_engine_refuses(database: Database) -> None:
    """Every refusal, each on a fresh instance of one database (a database per case would cost far
    more than the cases), every failing case reported by name."""
    engine = errand_engine()
    failures: list[str] = []
    for name, stage, attempt, error, check in REFUSALS:
        try:
            _refuse_and_compare(database, engine, stage, attempt, error, check)
        except (Exception, pytest.fail.Exception) as exc:
            failures.append(f"{name}: {exc!r}")

    assert failures == []


def test_refusal_message_lists_every_field_when_fields_are_missing(database: Database) -> None:
    engine = errand_engine()
    instance_id = start_errand(database, engine)

    with database.session() as s, pytest.raises(MissingFields) as err:
        engine.fire(s, load(s, instance_id), "submit", CLERK, {"colour": "red"}, NOW)

    assert str(err.value) == ("'submit' cannot be done: colour: is not a field of this action; "
                              "priority: is required; summary: is required")


def test_guard_sees_proposed_variables_without_them_being_applied_when_it_refuses(database: Database) -> None:
    seen: list[dict[str, Any]] = []

    def budget_ok(ctx: Any) -> str | None:
        seen.append(dict(ctx.variables))
        return "no"

    engine = Engine(guards={"budget_ok": budget_ok})
    engine.register(errand_engine().spec("errand", 1))
    instance_id = start_errand(database, engine, "submitted")

    with database.session() as s:
        instance = load(s, instance_id)
        with pytest.raises(GuardFailed):
            engine.fire(s, instance, "approve", MANAGER, {"amount": "77"}, NOW)
        assert seen == [{"amount": 77, "priority": "high"}]
        assert instance.variables == {"amount": 0, "priority": "high"}
        assert not s.is_modified(instance)


def test_loaded_instance_unchanged_and_clean_when_only_queried(database: Database) -> None:
    engine = errand_engine()
    ids = {stage: start_errand(database, engine, stage) for stage in PATHS}
    before = {stage: snapshot(database, instance_id) for stage, instance_id in ids.items()}

    with database.session() as s:
        for stage, instance_id in ids.items():
            instance = load(s, instance_id)
            for actor in (CLERK, MANAGER, BOTH, NOBODY):
                engine.allowed_triggers(instance, actor)
            for trigger in engine.spec_of(instance).triggers:
                with contextlib.suppress(WorkflowError):
                    engine.check(instance, trigger, BOTH,
                                 {"amount": 5, "note": "n", "reason": "r", **SUBMIT_FIELDS}, NOW)
            engine.history(s, instance)

            assert instance.stage == stage  # never reset to the initial stage
            assert instance not in s.dirty and not s.is_modified(instance) and not s.new
        s.commit()

    assert {stage: snapshot(database, instance_id) for stage, instance_id in ids.items()} == before


def test_check_returns_clean_fields_without_moving_when_trigger_would_succeed(database: Database) -> None:
    engine = errand_engine()
    instance_id = start_errand(database, engine, "submitted")

    with database.session() as s:
        instance = load(s, instance_id)
        trigger, clean = engine.check(instance, "approve", MANAGER, {"amount": " 12 "}, NOW,
                                      expected_version=instance.version)

        assert (trigger.name, clean) == ("approve", {"amount": 12})
        assert instance.stage == "submitted" and not s.is_modified(instance)


# -- the machine gives no way round the engine -----------------------------------------------------


def test_no_to_stage_methods_anywhere_when_instances_are_moved(database: Database) -> None:
    engine = errand_engine()
    instance_id = start_errand(database, engine, "approved")
    machine = engine.machine("errand", 1)

    with database.session() as s:
        instance = load(s, instance_id)
        engine.fire(s, instance, "close", MANAGER, None, NOW)
        s.commit()

        assert machine.auto_transitions is False
        assert machine.models == []  # nothing attached, nothing retained
        assert not [name for name in machine.events if name.startswith("to_")]
        for obj in (instance, WorkflowInstance):
            assert not [a for a in dir(obj) if a.startswith("to_")]
            assert not [a for a in dir(obj) if a in engine.spec_of(instance).triggers]
        assert not [a for a in dir(machine) if a.startswith("to_")]


# -- spec versions ---------------------------------------------------------------------------------


def test_instance_keeps_its_spec_version_when_a_new_version_is_registered(database: Database) -> None:
    engine = errand_engine()
    old_id = start_errand(database, engine, "submitted")
    engine.register(errand_v2_spec())
    new_id = start_errand(database, engine, "submitted")

    with database.session() as s:
        old, new = load(s, old_id), load(s, new_id)
        assert (old.spec_version, new.spec_version) == (1, 2)
        assert engine.spec_of(old).title == "Errand" and engine.spec_of(new).title == "Errand II"
        assert [t.name for t in engine.allowed_triggers(old, MANAGER)] == ["annotate", "approve", "reject", "close"]
        assert [t.name for t in engine.allowed_triggers(new, MANAGER)] == ["annotate", "approve", "close",
                                                                           "escalate"]
        with pytest.raises(UnknownTrigger):
            engine.fire(s, old, "escalate", MANAGER, None, NOW)
        with pytest.raises(UnknownTrigger):
            engine.fire(s, new, "reject", MANAGER, {"reason": "r"}, NOW)

        engine.fire(s, old, "reject", MANAGER, {"reason": "r"}, NOW)
        engine.fire(s, new, "escalate", MANAGER, None, NOW)
        s.commit()

    assert snapshot(database, old_id)["stage"] == "drafted" and snapshot(database, old_id)["spec_version"] == 1
    assert snapshot(database, new_id)["stage"] == "escalated" and snapshot(database, new_id)["spec_version"] == 2


# -- concurrency -----------------------------------------------------------------------------------


def _run_threads(n: int, work: Callable[[int], Any]) -> list[Any]:
    """Run work(0..n-1) in n real threads at once; return each result or the exception raised."""

    def guarded(i: int) -> Any:
        try:
            return work(i)
        except Exception as exc:  # the outcome we assert on
            return exc

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(guarded, range(n)))


def test_one_wins_and_other_is_stale_when_two_sessions_fire_at_once(database: Database) -> None:
    two_sessions_fire_at_once(database, with_expected_version=True)


# SQLite serialises whole transactions (BEGIN IMMEDIATE): the second writer sees the first's commit,
# so there only a version read before both started can tell it was overtaken.
@pytest.mark.postgresql_only
def test_one_wins_and_other_is_stale_by_the_orm_version_when_two_sessions_fire_at_once(database: Database) -> None:
    two_sessions_fire_at_once(database, with_expected_version=False)


def two_sessions_fire_at_once(database: Database, with_expected_version: bool) -> None:
    engine = errand_engine()
    instance_id = start_errand(database, engine, "submitted")
    before = snapshot(database, instance_id)
    version = before["version"]
    loaded = threading.Barrier(2, timeout=10)

    def work(i: int) -> str:
        with database.session() as s:
            if database.dialect == "sqlite":
                loaded.wait()  # start together; the first load holds the write lock until commit
                instance = load(s, instance_id)
            else:
                instance = load(s, instance_id)
                loaded.wait()  # both hold the same version before either writes
            try:
                engine.fire(s, instance, "annotate", MANAGER, {"note": f"writer {i}"}, NOW,
                            expected_version=version if with_expected_version else None)
                s.commit()
            except StaleInstance:
                s.rollback()
                raise
        return "won"

    outcomes = _run_threads(2, work)

    assert sorted(type(o).__name__ if isinstance(o, Exception) else o for o in outcomes) == ["StaleInstance", "won"]
    after = snapshot(database, instance_id)
    assert after["history"] == before["history"] + 1
    assert after["all_history"] == before["all_history"] + 1
    assert after["version"] == version + 1
    events = events_of(database, instance_id)
    assert_chain_intact(events, instance_id)
    assert events[-1].data["fields"]["note"] in ("writer 0", "writer 1")
    with database.session() as s:
        assert verify(s).ok


WRITERS = 20


def test_single_unforked_chain_when_many_writers_append_at_once(database: Database) -> None:
    engine = errand_engine()
    instance_id = start_errand(database, engine, "submitted")
    base = snapshot(database, instance_id)["history"]
    go = threading.Barrier(WRITERS, timeout=30)

    def work(i: int) -> int:
        go.wait()
        for attempt in range(1, 200):
            with database.session() as s:
                try:
                    instance = load(s, instance_id)
                    if i % 2:
                        engine.fire(s, instance, "annotate", MANAGER, {"note": f"writer {i}"}, NOW)
                    else:
                        engine.append_event(s, instance, "note", f"writer-{i}", NOW, {"writer": i})
                    s.commit()
                    return attempt
                except StaleInstance:
                    s.rollback()
        raise AssertionError(f"writer {i} never got through")

    outcomes = _run_threads(WRITERS, work)

    assert [o for o in outcomes if isinstance(o, Exception)] == []
    if database.dialect == "postgresql":
        assert sum(outcomes) > WRITERS, "no writer was ever overtaken: the race was not exercised"
    events = events_of(database, instance_id)
    assert len(events) == base + WRITERS
    assert_chain_intact(events, instance_id)
    writers = sorted(e.data.get("writer", -1) for e in events if e.kind == "note")
    assert writers == list(range(0, WRITERS, 2))
    notes = sorted(e.data["fields"]["note"] for e in events[base:] if e.kind == "transition")
    assert notes == sorted(f"writer {i}" for i in range(1, WRITERS, 2))
    after = snapshot(database, instance_id)
    assert (after["head_seq"], after["head_hash"]) == (events[-1].seq, events[-1].hash)
    with database.session() as s:
        report = verify(s)
        assert report.ok, report.findings


def test_ledger_unforked_when_many_instances_start_at_once(database: Database) -> None:
    engine = errand_engine()
    existing = start_errand(database, engine)
    go = threading.Barrier(WRITERS, timeout=30)

    def work(i: int) -> int:
        go.wait()
        with database.session() as s:
            instance = engine.start(s, "errand", SimpleActor(f"starter-{i}", frozenset({"clerk"})), NOW,
                                    {"amount": i})
            s.commit()
            return instance.id

    outcomes = _run_threads(WRITERS, work)

    assert [o for o in outcomes if isinstance(o, Exception)] == []
    with database.session() as s:
        ledger = list(s.scalars(select(LedgerEntry).order_by(LedgerEntry.seq)))
        assert [e.seq for e in ledger] == list(range(1, WRITERS + 2))
        assert sorted(e.instance_id for e in ledger) == sorted([existing, *outcomes])
        assert len({e.prev_hash for e in ledger}) == len(ledger)
        for earlier, later in itertools.pairwise(ledger):
            assert later.prev_hash == earlier.hash
        report = verify(s)
        assert report.ok, report.findings
        assert report.instances == WRITERS + 1
