"""Deadlines and timers on a real database (SQLite and PostgreSQL), with a small spec of our own.

The engine must work for any spec, so these tests use a chore workflow rather than the protocol:
``waiting`` (an answer due in 3 working days, or 4 hours when urgent) → ``checking`` (several
deadlines, one anchored to a variable) → ``done``. Time is a FrozenClock; nothing sleeps.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.conftest import Database
from workflow.calendars import UnknownCalendar
from workflow.clock import FrozenClock
from workflow.deadlines import DeadlineError, NotAWorkingDay, Timers, parse_iso_time
from workflow.engine import Engine, SimpleActor
from workflow.models import DeadlineRow, HistoryEvent, TimerRow, WorkflowInstance
from workflow.spec import load_spec
from workflow.sweep import BatchHandler, Fired, PreparedBatch

LONDON = ZoneInfo("Europe/London")
CLERK = SimpleActor("clerk-1", frozenset({"clerk"}))
T0 = datetime(2025, 4, 16, 10, 0, tzinfo=LONDON)  # Wed 16 Apr 2025, 10:00 BST
T1 = datetime(2025, 4, 17, 10, 0, tzinfo=LONDON)  # Thu 17 Apr, the day before Good Friday
TABLES = ("wf_instances", "wf_history", "wf_ledger", "wf_deadlines", "wf_timers")

SPEC = {
    "key": "chore",
    "version": 1,
    "title": "Chore",
    "initial": "waiting",
    "roles": ["clerk"],
    "variables": {
        "risk": {"type": "choice", "choices": ["urgent", "standard"]},
        "received_at": {"type": "datetime"},
    },
    "stages": {
        "waiting": {"deadlines": [
            {"name": "answer", "label": "Answer", "reminders": ["1wd"],
             "due": {"by": "risk", "values": {"urgent": "4h", "standard": "3wd"}}},
            {"name": "call_back", "label": "Call back", "due": "1h", "when": {"risk": ["urgent"]}},
        ]},
        "checking": {"deadlines": [
            {"name": "check", "label": "Check", "due": "5wd", "reminders": ["2wd", "1wd"]},
            {"name": "quick", "label": "Quick look", "due": "4h", "reminders": ["0h", "1h", "5h"]},
            {"name": "since_receipt", "label": "Since receipt", "due": "10wd", "anchor": "received_at"},
        ]},
        "done": {"final": True},
    },
    "triggers": {
        "inspect": {"from": "waiting", "to": "checking", "roles": ["clerk"]},
        "send_back": {"from": "checking", "to": "waiting", "roles": ["clerk"]},
        "finish": {"from": ["waiting", "checking"], "to": "done", "roles": ["clerk"]},
    },
}

TIMERS = Timers()
ENGINE = Engine()
TIMERS.attach(ENGINE)
ENGINE.register(load_spec(yaml.safe_dump(SPEC, sort_keys=False), source="chore.yaml"))


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=LONDON)


def start(s: Session, now: datetime = T0, risk: str = "standard", calendar: str | None = "england",
          received_at: datetime = T0) -> WorkflowInstance:
    return ENGINE.start(s, "chore", CLERK, now, {"risk": risk, "received_at": received_at.isoformat()},
                        calendar=calendar)


def deadlines(s: Session, instance_id: int) -> dict[str, DeadlineRow]:
    """The instance's deadlines by name (the latest occurrence of each)."""
    rows = s.scalars(select(DeadlineRow).where(DeadlineRow.instance_id == instance_id).order_by(DeadlineRow.id))
    return {r.name: r for r in rows}


def timers_of(s: Session, deadline: DeadlineRow, status: str | None = None) -> list[TimerRow]:
    stmt = select(TimerRow).where(TimerRow.deadline_id == deadline.id).order_by(TimerRow.fire_at, TimerRow.id)
    if status:
        stmt = stmt.where(TimerRow.status == status)
    return list(s.scalars(stmt))


def count(database: Database, table: str, where: str = "1=1") -> int:
    return int(database.raw(f"SELECT count(*) FROM {table} WHERE {where}")[0][0])


def counts(database: Database) -> dict[str, int]:
    return {t: count(database, t) for t in TABLES}


def snapshot(database: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every deadline and timer row, every history row's id, every instance's version: what a refused
    operation must leave exactly as it was."""
    return {
        "deadlines": [tuple(r) for r in database.raw("SELECT * FROM wf_deadlines ORDER BY id")],
        "timers": [tuple(r) for r in database.raw("SELECT * FROM wf_timers ORDER BY id")],
        "history": [tuple(r) for r in database.raw("SELECT id, kind FROM wf_history ORDER BY id")],
        "instances": [tuple(r) for r in database.raw("SELECT id, version, stage FROM wf_instances ORDER BY id")],
    }


@dataclass
class Recorder:
    """A handler that records what it was given; it can be told to fail for some deadlines."""

    calls: list[tuple[int, str, str, datetime, timedelta]] = field(default_factory=list)
    fail_for: set[str] = field(default_factory=set)
    write_before_failing: bool = False

    def __call__(self, session: Session, fired: Fired) -> None:
        if fired.deadline.name in self.fail_for:
            if self.write_before_failing:
                ENGINE.append_event(session, fired.instance, "half_done", None, fired.now, {"timer": fired.timer.id})
            raise RuntimeError(f"mail server down for {fired.deadline.name}")
        self.calls.append((fired.timer.id, fired.timer.kind, fired.deadline.name, fired.now, fired.lateness))


def committed(database: Database, risk: str = "standard", now: datetime = T0) -> int:
    with database.session() as s:
        instance = start(s, now=now, risk=risk)
        s.commit()
        return instance.id


# -- entering and leaving stages ---------------------------------------------------------------------


def test_deadlines_and_timers_are_written_with_the_stage_change_when_a_stage_with_deadlines_is_entered(
        database: Database) -> None:
    s = database.session()
    instance = start(s)
    s.flush()
    assert len(deadlines(s, instance.id)) == 1  # pending in the same transaction as the new instance
    s.commit()

    with database.session() as fresh:
        rows = deadlines(fresh, instance.id)
        assert set(rows) == {"answer"}  # call_back applies only to urgent chores
        answer = rows["answer"]
        assert (answer.stage, answer.label, answer.status, answer.generation) == ("waiting", "Answer", "open", 1)
        assert (answer.unit, answer.amount, answer.reminders) == ("working_days", 3, ["1wd"])
        assert answer.entry_seq == 1  # the "created" event entered the stage
        assert answer.anchor_at == T0
        assert answer.due_at == local("2025-04-23 17:00")  # 17 Apr, (Easter), 22 Apr, 23 Apr
        timers = timers_of(fresh, answer)
        assert [(t.kind, t.ordinal, t.fire_at, t.available_at, t.status, t.generation) for t in timers] == [
            ("reminder", 1, local("2025-04-22 09:00"), local("2025-04-22 09:00"), "pending", 1),
            ("due", 0, local("2025-04-23 17:00"), local("2025-04-23 17:00"), "pending", 1),
        ]
        assert all(t.fire_at.tzinfo == UTC for t in timers)

        # One timer per occurrence, in the database too: a second scheduler cannot add a twin.
        fresh.add(TimerRow(deadline_id=answer.id, instance_id=answer.instance_id, kind="due", ordinal=0,
                           generation=1, fire_at=T1, available_at=T1, status="pending", created_at=T1))
        with pytest.raises(sa.exc.IntegrityError):
            fresh.flush()
        fresh.rollback()


def test_each_deadline_of_the_entered_stage_is_created_with_reminders_before_its_due_time_when_a_trigger_fires(
        database: Database) -> None:
    s = database.session()
    instance = start(s)
    event = ENGINE.fire(s, instance, "inspect", CLERK, {}, T1)
    s.commit()

    with database.session() as fresh:
        rows = deadlines(fresh, instance.id)
        assert {n: r.due_at for n, r in rows.items() if r.stage == "checking"} == {
            "check": local("2025-04-28 17:00"),  # 22, 23, 24, 25, 28 Apr
            "quick": T1 + timedelta(hours=4),
            "since_receipt": local("2025-05-02 17:00"),  # 10 WD from the variable received_at (16 Apr)
        }
        assert rows["since_receipt"].anchor_at == T0
        assert {r.entry_seq for r in rows.values() if r.stage == "checking"} == {event.seq}
        assert [(t.kind, t.fire_at) for t in timers_of(fresh, rows["check"])] == [
            ("reminder", local("2025-04-24 09:00")), ("reminder", local("2025-04-25 09:00")),
            ("due", local("2025-04-28 17:00"))]
        quick = rows["quick"]
        assert quick.reminders == ["0h", "1h", "5h"]
        # "0h" would fire at the due time itself and "5h" before it is already past: only "1h" remains.
        assert [(t.kind, t.ordinal, t.fire_at) for t in timers_of(fresh, quick)] == [
            ("reminder", 2, T1 + timedelta(hours=3)), ("due", 0, T1 + timedelta(hours=4))]
        for row in rows.values():
            for t in timers_of(fresh, row):
                if t.kind == "reminder":
                    assert row.created_at < t.fire_at < row.due_at


def test_no_deadline_or_timer_rows_remain_when_the_stage_change_rolls_back(database: Database) -> None:
    s = database.session()
    start(s)
    s.flush()
    s.rollback()
    assert counts(database) == dict.fromkeys(TABLES, 0)  # a start that rolls back leaves nothing

    instance_id = committed(database)
    before = snapshot(database)
    instance = s.get(WorkflowInstance, instance_id)
    assert instance is not None
    ENGINE.fire(s, instance, "inspect", CLERK, {}, T1)
    s.flush()
    rows = deadlines(s, instance_id).values()
    assert {r.name for r in rows if r.stage == "checking"} == {"check", "quick", "since_receipt"}  # not committed
    s.rollback()
    s.close()

    assert snapshot(database) == before
    assert count(database, "wf_deadlines", "stage = 'checking'") == 0
    assert count(database, "wf_timers", "status = 'pending'") == 2  # the waiting stage's, untouched


def test_timers_of_a_left_stage_are_cancelled_and_never_fire_when_the_sweep_runs_after_the_stage_change(
        database: Database) -> None:
    instance_id = committed(database)
    s = database.session()
    instance = s.get(WorkflowInstance, instance_id)
    assert instance is not None
    ENGINE.fire(s, instance, "finish", CLERK, {}, T1)
    s.commit()

    with database.session() as fresh:
        answer = deadlines(fresh, instance_id)["answer"]
        assert (answer.status, answer.closed_at, answer.overdue_at) == ("done", T1, None)
        assert [t.status for t in timers_of(fresh, answer)] == ["cancelled", "cancelled"]
    recorder = Recorder()
    result = TIMERS.sweep_due(s, T0 + timedelta(days=20), recorder)
    assert recorder.calls == [] and (result.fired, result.failed, result.skipped) == (0, 0, 0)

    # Defence in depth: even a timer still pending (a sweeper that read it before the stage change
    # committed) is cancelled, not fired, once its deadline is closed.
    database.raw("UPDATE wf_timers SET status = 'pending'")
    result = TIMERS.sweep_due(s, T0 + timedelta(days=20), recorder)
    s.close()
    assert recorder.calls == []
    assert (result.fired, result.skipped) == (0, 2)
    assert count(database, "wf_timers", "status = 'cancelled'") == 2
    assert count(database, "wf_deadlines", "status = 'overdue'") == 0


def test_deadlines_of_a_stage_entered_again_are_new_rows_when_the_instance_comes_back(database: Database) -> None:
    instance_id = committed(database)
    s = database.session()
    instance = s.get(WorkflowInstance, instance_id)
    assert instance is not None
    ENGINE.fire(s, instance, "inspect", CLERK, {}, T1)
    back = ENGINE.fire(s, instance, "send_back", CLERK, {}, T1 + timedelta(hours=1))
    s.commit()
    s.close()

    answers = database.raw("SELECT entry_seq, status FROM wf_deadlines WHERE name = 'answer' ORDER BY id")
    assert [(r.entry_seq, r.status) for r in answers] == [(1, "done"), (back.seq, "open")]
    assert count(database, "wf_deadlines", "stage = 'checking' AND status <> 'done'") == 0
    assert count(database, "wf_timers", "status = 'pending'") == 2  # only the new answer's reminder and due


def test_due_durations_follow_the_risk_variable_and_the_calendar_when_instances_differ(database: Database) -> None:
    s = database.session()
    standard = start(s, risk="standard")
    urgent = start(s, risk="urgent")
    easter = local("2025-04-17 10:00")
    scotland = start(s, now=easter, calendar="scotland")
    england = start(s, now=easter, calendar=None)  # England by default
    s.commit()

    std_rows, urg_rows = deadlines(s, standard.id), deadlines(s, urgent.id)
    assert set(std_rows) == {"answer"}
    assert std_rows["answer"].due_at == local("2025-04-23 17:00")
    assert set(urg_rows) == {"answer", "call_back"}
    assert urg_rows["answer"].due_at == T0 + timedelta(hours=4)
    assert (urg_rows["answer"].unit, urg_rows["answer"].amount) == ("hours", 4)
    assert urg_rows["call_back"].due_at == T0 + timedelta(hours=1)
    # "1wd before" a due time 4 hours away is in the past: no reminder, only the due timer.
    assert [t.kind for t in timers_of(s, urg_rows["answer"])] == ["due"]
    assert deadlines(s, england.id)["answer"].due_at == local("2025-04-24 17:00")  # 22, 23, 24 Apr
    assert deadlines(s, scotland.id)["answer"].due_at == local("2025-04-23 17:00")  # Easter Monday works
    s.close()


# -- the sweep ------------------------------------------------------------------------------------------


def test_timers_fire_only_once_due_and_a_passed_deadline_gets_no_reminder_when_swept(database: Database) -> None:
    early = committed(database)
    recorder = Recorder()
    s = database.session()

    result = TIMERS.sweep_due(s, local("2025-04-22 08:59"), recorder)
    assert recorder.calls == [] and result.fired == 0
    TIMERS.sweep_due(s, local("2025-04-22 09:00"), recorder)
    assert [(kind, name) for _, kind, name, _, _ in recorder.calls] == [("reminder", "answer")]
    assert deadlines(s, early)["answer"].status == "open"
    s.commit()
    # The same deadline on another instance whose reminder was never swept in time (no sweeper ran).
    late = committed(database)

    after_due = local("2025-04-27 12:00")
    result = TIMERS.sweep_due(s, after_due, recorder)
    assert (result.fired, result.skipped) == (2, 1)  # both due timers; the late reminder is dropped
    s.expire_all()
    for instance_id in (early, late):
        answer = deadlines(s, instance_id)["answer"]
        assert (answer.status, answer.overdue_at) == ("overdue", after_due)
        assert all(t.status == "fired" for t in timers_of(s, answer))
    late_reminder = timers_of(s, deadlines(s, late)["answer"])[0]
    assert late_reminder.kind == "reminder"
    assert late_reminder.last_error == "not sent: the deadline had already passed"
    assert late_reminder.lateness_ms is None
    assert [(kind, i) for i, (_, kind, _, _, _) in enumerate(recorder.calls)] == [
        ("reminder", 0), ("due", 1), ("due", 2)]
    s.close()


def test_each_missed_timer_fires_once_oldest_first_with_its_lateness_when_one_sweep_catches_up(
        database: Database) -> None:
    ids = [committed(database, "standard", T0), committed(database, "urgent", T0 + timedelta(hours=1)),
           committed(database, "standard", T0 + timedelta(days=5)), committed(database, "urgent", T0)]
    with database.session() as s:
        due_timers = list(s.scalars(select(TimerRow).where(TimerRow.kind == "due")
                                    .order_by(TimerRow.fire_at, TimerRow.id)))
    assert len(due_timers) == 6 and {t.instance_id for t in due_timers} == set(ids)
    now = local("2025-05-06 12:00")  # 20 days after the oldest
    clock = FrozenClock(now + timedelta(seconds=7))  # the real time each timer fired
    recorder = Recorder()

    with database.session() as s:
        result = TIMERS.sweep_due(s, now, recorder, clock=clock)

    assert [c[0] for c in recorder.calls] == [t.id for t in due_timers]  # oldest first
    assert result.fired == 6 and result.failed == 0
    expected_ms = [int((clock.now() - t.fire_at).total_seconds() * 1000) for t in due_timers]
    assert result.lateness_ms == expected_ms
    assert [c[4] for c in recorder.calls] == [clock.now() - t.fire_at for t in due_timers]
    with database.session() as s:
        fired = {t.id: t for t in s.scalars(select(TimerRow).where(TimerRow.kind == "due"))}
        assert [fired[t.id].lateness_ms for t in due_timers] == expected_ms
        assert {fired[t.id].fired_at for t in due_timers} == {clock.now()}
        assert all(fired[t.id].status == "fired" and fired[t.id].fired_by for t in due_timers)
    assert count(database, "wf_deadlines", "status = 'overdue'") == 6

    again = Recorder()
    with database.session() as s:
        second = TIMERS.sweep_due(s, now + timedelta(hours=1), again, clock=clock)
    assert again.calls == [] and (second.fired, second.failed, second.skipped) == (0, 0, 0)


def test_failing_timer_is_retried_later_without_blocking_others_when_the_handler_raises(
        database: Database) -> None:
    s = database.session()
    urgent = start(s, risk="urgent")  # answer (due T0 + 4 h) and call_back (due T0 + 1 h)
    s.commit()
    call_back_id = deadlines(s, urgent.id)["call_back"].id
    s.commit()
    history_before = count(database, "wf_history")
    now = T0 + timedelta(hours=5)
    recorder = Recorder(fail_for={"call_back"}, write_before_failing=True)

    result = TIMERS.sweep_due(s, now, recorder)

    assert (result.fired, result.failed) == (1, 1)
    assert [name for _, _, name, _, _ in recorder.calls] == ["answer"]  # the failure did not block it
    assert count(database, "wf_history") == history_before  # the handler's partial work was rolled back
    s.expire_all()
    call_back = s.get(DeadlineRow, call_back_id)
    assert call_back is not None
    (timer,) = timers_of(s, call_back)
    assert (timer.status, timer.attempts, timer.fired_at) == ("pending", 1, None)
    assert timer.last_error == "RuntimeError: mail server down for call_back"
    assert timer.available_at == now + timedelta(seconds=30)
    assert timer.fire_at == T0 + timedelta(hours=1)
    assert (call_back.status, call_back.overdue_at) == ("open", None)  # the overdue mark was rolled back too
    s.commit()

    same_time = TIMERS.sweep_due(s, now + timedelta(seconds=29), recorder)
    assert same_time.fired + same_time.failed == 0  # not before its retry time
    failed_again = TIMERS.sweep_due(s, now + timedelta(seconds=30), recorder)
    assert failed_again.failed == 1
    s.refresh(timer)
    assert (timer.attempts, timer.available_at) == (2, now + timedelta(seconds=90))  # the delay doubles

    healthy = Recorder()
    later = now + timedelta(seconds=90)
    retried = TIMERS.sweep_due(s, later, healthy, clock=FrozenClock(later))
    assert [(name, lateness) for _, _, name, _, lateness in healthy.calls] == [
        ("call_back", later - (T0 + timedelta(hours=1)))]
    assert retried.fired == 1
    s.expire_all()
    (timer,) = timers_of(s, call_back)
    assert (timer.status, timer.attempts, timer.last_error) == ("fired", 2, "RuntimeError: mail server down for "
                                                                           "call_back")
    assert s.get(DeadlineRow, call_back_id).status == "overdue"  # type: ignore[union-attr]
    s.close()


@dataclass
class BatchRecorder:
    """A ``BatchHandler`` whose effect is a ``noted`` history event per timer, written by ``write``. It can be
    told to fail handling or writing for some deadlines, or to fail preparing."""

    fail_handle: set[str] = field(default_factory=set)
    fail_write: set[str] = field(default_factory=set)
    fail_prepare: bool = False
    batches: list[list[int]] = field(default_factory=list)
    writes: list[list[int]] = field(default_factory=list)
    plain: list[int] = field(default_factory=list)

    def __call__(self, session: Session, fired: Fired) -> None:
        self.plain.append(fired.timer.id)
        ENGINE.append_event(session, fired.instance, "noted", None, fired.now, {"timer": fired.timer.id})

    def prepare(self, session: Session, batch: Sequence[Fired]) -> PreparedBatch:
        if self.fail_prepare:
            raise RuntimeError("cannot read the batch")
        self.batches.append([f.timer.id for f in batch])
        return _RecordedBatch(self)


@dataclass
class _RecordedBatch:
    recorder: BatchRecorder

    def handle(self, fired: Fired) -> None:
        if fired.deadline.name in self.recorder.fail_handle:
            raise RuntimeError(f"cannot decide for {fired.deadline.name}")

    def write(self, session: Session, fired: Sequence[Fired]) -> None:
        self.recorder.writes.append([f.timer.id for f in fired])
        for f in fired:  # written before failing: the savepoint must take it back
            ENGINE.append_event(session, f.instance, "noted", None, f.now, {"timer": f.timer.id})
        if any(f.deadline.name in self.recorder.fail_write for f in fired):
            raise RuntimeError("cannot write")


def two_urgent(database: Database) -> tuple[list[int], list[int]]:
    """Two urgent instances, each with a due call_back (T0 + 1 h) and answer (T0 + 4 h): the timer ids of
    each deadline, oldest first."""
    ids = [committed(database, "urgent"), committed(database, "urgent")]
    with database.session() as s:
        due = list(s.scalars(select(TimerRow).where(TimerRow.kind == "due").order_by(TimerRow.fire_at, TimerRow.id)))
        names = {d.id: d.name for d in s.scalars(select(DeadlineRow).where(DeadlineRow.instance_id.in_(ids)))}
    return ([t.id for t in due if names[t.deadline_id] == "call_back"],
            [t.id for t in due if names[t.deadline_id] == "answer"])


def noted(database: Database) -> list[int]:
    """The timers whose ``noted`` event was committed."""
    rows = database.raw("SELECT data FROM wf_history WHERE kind = 'noted'")
    return sorted(int((json.loads(d) if isinstance(d, str) else d)["timer"]) for (d,) in rows)


def timer_states(database: Database) -> dict[int, tuple[str, int]]:
    return {r[0]: (r[1], r[2]) for r in database.raw("SELECT id, status, attempts FROM wf_timers WHERE kind = 'due'")}


@pytest.mark.parametrize("failing", ["handle", "write"])
def test_only_the_failing_timers_effects_are_rolled_back_and_the_rest_of_the_batch_fires_when_a_batch_handler_fails(
        database: Database, failing: str) -> None:
    call_backs, answers = two_urgent(database)
    recorder = (BatchRecorder(fail_handle={"call_back"}) if failing == "handle"
                else BatchRecorder(fail_write={"call_back"}))

    with database.session() as s:
        result = TIMERS.sweep_due(s, T0 + timedelta(hours=5), recorder)

    assert (result.fired, result.failed) == (2, 2)
    assert recorder.batches == [call_backs + answers]  # one batch, oldest first
    assert noted(database) == sorted(answers)  # the failing timers' effects were rolled back
    states = timer_states(database)
    assert {states[t] for t in call_backs} == {("pending", 1)} and {states[t] for t in answers} == {("fired", 0)}
    assert count(database, "wf_deadlines", "status = 'overdue'") == 2  # the answers' only
    if failing == "write":  # together first, then one timer at a time
        assert recorder.writes == [call_backs + answers] + [[t] for t in call_backs + answers]
    else:
        assert recorder.writes == [answers]


def test_each_timer_gets_its_own_call_when_a_batch_handler_cannot_prepare(database: Database) -> None:
    call_backs, answers = two_urgent(database)
    recorder = BatchRecorder(fail_prepare=True)

    with database.session() as s:
        result = TIMERS.sweep_due(s, T0 + timedelta(hours=5), recorder)

    assert (result.fired, result.failed) == (4, 0)
    assert recorder.plain == call_backs + answers and recorder.writes == []
    assert noted(database) == sorted(call_backs + answers)


def test_timers_are_claimed_and_committed_a_batch_at_a_time_oldest_first_when_the_batch_size_is_small(
        database: Database) -> None:
    call_backs, answers = two_urgent(database)
    recorder = BatchRecorder()
    _: BatchHandler = recorder  # the protocol, checked by mypy

    with database.session() as s:
        first = TIMERS.sweep_due(s, T0 + timedelta(hours=5), recorder, batch_size=3, limit=3)
        assert timer_states(database) == {**{t: ("fired", 0) for t in call_backs + answers[:1]},
                                          answers[1]: ("pending", 0)}  # the first batch is committed
        rest = TIMERS.sweep_due(s, T0 + timedelta(hours=5), recorder, batch_size=3)

    assert (first.fired, rest.fired) == (3, 1)
    assert recorder.batches == [call_backs + answers[:1], answers[1:]]
    assert noted(database) == sorted(call_backs + answers)


# -- extending ------------------------------------------------------------------------------------------


def open_answer(database: Database, s: Session | None = None) -> tuple[Session, WorkflowInstance, DeadlineRow]:
    s = s or database.session()
    instance = start(s)
    s.commit()
    answer = deadlines(s, instance.id)["answer"]
    s.commit()  # end the read: on SQLite every transaction holds the write lock
    return s, instance, answer


def test_due_time_and_reminders_move_with_a_history_event_when_a_deadline_is_extended(database: Database) -> None:
    s, instance, answer = open_answer(database)
    new_due = local("2025-04-30 17:00")
    now = local("2025-04-18 11:00")

    TIMERS.extend(s, ENGINE, instance, answer, new_due, "  waiting for the interpreter  ", "lead-1", now)
    s.commit()

    with database.session() as fresh:
        row = deadlines(fresh, instance.id)["answer"]
        assert (row.due_at, row.generation, row.status) == (new_due, 2, "open")
        timers = timers_of(fresh, row)
        assert [(t.kind, t.generation, t.status, t.fire_at) for t in timers] == [
            ("reminder", 1, "cancelled", local("2025-04-22 09:00")),
            ("due", 1, "cancelled", local("2025-04-23 17:00")),
            ("reminder", 2, "pending", local("2025-04-29 09:00")),  # 1 WD before the new due day
            ("due", 2, "pending", new_due),
        ]
        event = fresh.scalars(select(HistoryEvent).where(HistoryEvent.instance_id == instance.id)
                              .order_by(HistoryEvent.seq.desc())).first()
        assert event is not None
        assert (event.kind, event.actor_id, event.at) == ("deadline_extended", "lead-1", now)
        assert event.data == {"deadline": "answer", "from": local("2025-04-23 17:00").astimezone(UTC).isoformat(),
                              "to": new_due.astimezone(UTC).isoformat(), "reason": "waiting for the interpreter"}

    recorder = Recorder()
    TIMERS.sweep_due(s, local("2025-04-24 09:00"), recorder)  # after the old due time
    assert recorder.calls == []
    TIMERS.sweep_due(s, new_due, recorder)
    assert [kind for _, kind, _, _, _ in recorder.calls] == ["due"]  # the moved reminder had passed
    s.close()


def test_overdue_deadline_runs_again_when_it_is_extended_to_a_time_still_ahead(database: Database) -> None:
    s, instance, answer = open_answer(database)
    now = local("2025-04-25 10:00")
    TIMERS.sweep_due(s, now, Recorder())
    s.refresh(answer)
    s.commit()
    assert answer.status == "overdue"
    before = snapshot(database)

    with pytest.raises(DeadlineError, match="in the past"):  # later than the old due time, but gone
        TIMERS.extend(s, ENGINE, instance, answer, local("2025-04-24 17:00"), "late post", "lead-1", now)
    s.commit()
    assert snapshot(database) == before

    TIMERS.extend(s, ENGINE, instance, answer, local("2025-05-02 17:00"), "response promised", "lead-1", now)
    s.commit()
    assert (answer.status, answer.overdue_at) == ("open", None)
    assert [t.kind for t in timers_of(s, answer, "pending")] == ["reminder", "due"]
    s.close()


INVALID_EXTENSIONS = [
    ("2025-04-17 09:00", "late post", "is in the past; an extension must be later than now"),
    ("2025-04-17 10:00", "late post", "is in the past"),  # exactly now
    ("2025-04-22 17:00", "late post", r"must be later than the current one \(2025-04-23T16:00:00\+00:00\)"),
    ("2025-04-23 17:00", "late post", "must be later than the current one"),  # the same time
    ("2025-04-30 17:00", "", "an extension needs a reason"),
    ("2025-04-30 17:00", "   ", "an extension needs a reason"),
]


def test_deadline_error_and_nothing_written_when_an_extension_is_invalid(database: Database) -> None:
    s, instance, answer = open_answer(database)
    _, other, _ = open_answer(database, s)
    before = snapshot(database)
    now = local("2025-04-17 10:00")

    for new_due, reason, message in INVALID_EXTENSIONS:
        with pytest.raises(DeadlineError, match=message):
            TIMERS.extend(s, ENGINE, instance, answer, local(new_due), reason, "lead-1", now)
    with pytest.raises(DeadlineError, match="belongs to another case"):
        TIMERS.extend(s, ENGINE, other, answer, local("2025-04-30 17:00"), "late post", "lead-1", now)
    s.commit()
    s.close()

    assert snapshot(database) == before


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_a_working_day_deadline_is_never_extended_onto_a_weekend_or_holiday_of_its_calendar(database: Database) -> None:
    s, instance, answer = open_answer(database)  # 3 working days, England
    scottish = start(s, calendar="scotland")
    s.commit()
    in_scotland = deadlines(s, scottish.id)["answer"]
    s.commit()
    before = snapshot(database)
    now = local("2025-04-17 10:00")

    refused = [(instance, answer, "2025-04-26 17:00", date(2025, 4, 26), "england", None),  # a Saturday
               (instance, answer, "2025-04-27 09:00", date(2025, 4, 27), "england", None),  # a Sunday
               (instance, answer, "2025-05-05 17:00", date(2025, 5, 5), "england", "May Day"),
               # the Scottish summer bank holiday: a working day in England, not in Scotland
               (scottish, in_scotland, "2025-08-04 17:00", date(2025, 8, 4), "scotland", "Summer Bank Holiday")]
    for inst, row, new_due, day, calendar, holiday in refused:
        with pytest.raises(NotAWorkingDay, match="is not a working day") as err:
            TIMERS.extend(s, ENGINE, inst, row, local(new_due), "late post", "lead-1", now)
        assert (err.value.day, err.value.calendar, err.value.holiday) == (day, calendar, holiday)
        s.rollback()
    assert snapshot(database) == before  # nothing written: no event, no timer, the due time as it was

    TIMERS.extend(s, ENGINE, instance, answer, local("2025-08-04 17:00"), "late post", "lead-1", now)
    s.commit()
    assert answer.due_at == local("2025-08-04 17:00")  # a working day in England

    # A clock-hour deadline (urgent) may end on any day.
    urgent = start(s, risk="urgent")
    s.commit()
    quick = deadlines(s, urgent.id)["answer"]
    assert quick.unit == "hours"
    TIMERS.extend(s, ENGINE, urgent, quick, local("2025-04-19 12:00"), "interpreter on Saturday", "lead-1", T0)
    s.commit()
    assert quick.due_at == local("2025-04-19 12:00")
    s.close()


def test_deadline_error_and_nothing_written_when_a_closed_deadline_is_extended_paused_or_resumed(
        database: Database) -> None:
    s, instance, answer = open_answer(database)
    ENGINE.fire(s, instance, "finish", CLERK, {}, T1)
    s.commit()
    s.refresh(answer)
    s.commit()
    before = snapshot(database)

    with pytest.raises(DeadlineError, match="'Answer' is no longer running"):
        TIMERS.extend(s, ENGINE, instance, answer, local("2025-04-30 17:00"), "late post", "lead-1", T1)
    with pytest.raises(DeadlineError, match="no longer running"):
        TIMERS.pause(s, ENGINE, instance, answer, "waiting", "lead-1", T1)
    with pytest.raises(DeadlineError, match="no longer running"):
        TIMERS.resume(s, ENGINE, instance, answer, "back", "lead-1", T1)
    s.commit()
    s.close()
    assert snapshot(database) == before


# -- pausing and resuming -------------------------------------------------------------------------------


def test_pause_cancels_timers_and_resume_shifts_the_due_time_by_the_paused_working_days(database: Database) -> None:
    s, instance, answer = open_answer(database)  # due Wed 23 Apr 17:00, reminder Tue 22 Apr 09:00
    TIMERS.pause(s, ENGINE, instance, answer, "interpreter needed", "lead-1", local("2025-04-17 10:00"))
    s.commit()
    assert (answer.status, answer.paused_at) == ("paused", local("2025-04-17 10:00"))
    assert timers_of(s, answer, "pending") == []
    s.commit()
    recorder = Recorder()
    TIMERS.sweep_due(s, local("2025-04-24 10:00"), recorder)  # past the old due time: the clock is stopped
    assert recorder.calls == []

    # Paused Thu 17 Apr, resumed Wed 23 Apr: the working days of 17 and 22 Apr ended meanwhile.
    TIMERS.resume(s, ENGINE, instance, answer, "interpreter found", "lead-1", local("2025-04-23 10:00"))
    s.commit()
    assert (answer.status, answer.paused_at, answer.generation) == ("open", None, 2)
    assert answer.due_at == local("2025-04-25 17:00")
    assert [(t.kind, t.fire_at) for t in timers_of(s, answer, "pending")] == [
        ("reminder", local("2025-04-24 09:00")), ("due", local("2025-04-25 17:00"))]
    events = ENGINE.history(s, instance)
    assert [e.kind for e in events[-2:]] == ["deadline_paused", "deadline_resumed"]
    assert events[-1].data["to"] == local("2025-04-25 17:00").astimezone(UTC).isoformat()

    # Over a long weekend, outside working hours, no working day ends: the due time stays.
    _, weekend, weekend_answer = open_answer(database, s)
    TIMERS.pause(s, ENGINE, weekend, weekend_answer, "weekend", "lead-1", local("2025-04-17 18:00"))
    TIMERS.resume(s, ENGINE, weekend, weekend_answer, "", "lead-1", local("2025-04-21 20:00"))  # Easter Monday
    assert weekend_answer.due_at == local("2025-04-23 17:00")

    # A clock-hour deadline moves by the clock time it was stopped.
    urgent = start(s, risk="urgent")
    call_back = deadlines(s, urgent.id)["call_back"]  # due T0 + 1 h
    TIMERS.pause(s, ENGINE, urgent, call_back, "no line", "lead-1", T0 + timedelta(minutes=20))
    TIMERS.resume(s, ENGINE, urgent, call_back, "line back", "lead-1", T0 + timedelta(hours=3, minutes=20))
    assert call_back.due_at == T0 + timedelta(hours=4)
    s.commit()
    s.close()


def test_deadline_is_still_ahead_when_a_clock_paused_on_its_due_day_resumes_after_that_day_ended(
        database: Database) -> None:
    s, instance, answer = open_answer(database)  # due Wed 23 Apr 17:00
    TIMERS.pause(s, ENGINE, instance, answer, "interpreter needed", "lead-1", local("2025-04-23 15:00"))
    resumed = local("2025-04-23 18:00")
    TIMERS.resume(s, ENGINE, instance, answer, "interpreter found", "lead-1", resumed)
    s.commit()
    # The day's end passed while the clock was stopped: that working day is given back.
    assert answer.due_at == local("2025-04-24 17:00")
    recorder = Recorder()
    TIMERS.sweep_due(s, resumed + timedelta(minutes=1), recorder)
    assert recorder.calls == []

    # A due time in the middle of a day (after an extension) keeps the time that was left.
    _, other, mid_day = open_answer(database, s)
    TIMERS.extend(s, ENGINE, other, mid_day, local("2025-04-24 12:00"), "one more morning", "lead-1", T1)
    TIMERS.pause(s, ENGINE, other, mid_day, "phone lines down", "lead-1", local("2025-04-24 11:00"))
    TIMERS.resume(s, ENGINE, other, mid_day, "lines back", "lead-1", local("2025-04-24 13:00"))
    s.commit()
    assert mid_day.due_at == local("2025-04-24 14:00")
    s.close()


def test_deadline_error_and_nothing_written_when_a_clock_operation_does_not_fit_its_state(
        database: Database) -> None:
    s = database.session()
    _, running, running_answer = open_answer(database, s)
    _, paused, paused_answer = open_answer(database, s)
    _, overdue, overdue_answer = open_answer(database, s)
    now = local("2025-04-17 10:00")
    TIMERS.pause(s, ENGINE, paused, paused_answer, "first", "lead-1", now)
    s.commit()
    database.raw(f"UPDATE wf_deadlines SET status = 'overdue' WHERE id = {overdue_answer.id}")
    s.refresh(overdue_answer)
    s.commit()
    before = snapshot(database)

    with pytest.raises(DeadlineError, match="the clock of 'Answer' is already paused"):
        TIMERS.pause(s, ENGINE, paused, paused_answer, "again", "lead-1", now)
    with pytest.raises(DeadlineError, match="the clock of 'Answer' is not paused"):
        TIMERS.resume(s, ENGINE, running, running_answer, "go", "lead-1", now)
    with pytest.raises(DeadlineError, match="pausing a clock needs a reason"):
        TIMERS.pause(s, ENGINE, running, running_answer, " ", "lead-1", now)
    with pytest.raises(DeadlineError, match="'Answer' is already overdue; extend it instead of pausing"):
        TIMERS.pause(s, ENGINE, overdue, overdue_answer, "late", "lead-1", now)
    s.commit()
    s.close()
    assert snapshot(database) == before


# -- times given by people; calendars ------------------------------------------------------------------


@pytest.mark.parametrize(("text", "message"), [
    ("not a date", "'not a date' must be a date, or a date and time, like 2025-04-17"),
    ("2025-13-01T09:00:00+01:00", "must be a date, or a date and time"),
    ("2025-02-30", "must be a date, or a date and time"),
    ("2025-03-30T01:30", "01:30 on 30 March 2025 did not happen in UK time (the clocks went forward)"),
    ("0001-01-01T00:00", "must be a real date on or after 1 January 1900"),
])
def test_deadline_error_when_a_person_gives_a_bad_time(text: str, message: str) -> None:
    with pytest.raises(DeadlineError, match=re.escape(message)):
        parse_iso_time(text)


def test_a_time_a_person_gives_is_uk_time_unless_it_has_an_offset_and_a_bare_date_is_noon() -> None:
    assert parse_iso_time(" 2025-05-07T09:00:00+01:00 ") == datetime(2025, 5, 7, 8, 0, tzinfo=UTC)
    assert parse_iso_time("2025-05-07T09:00:00Z").tzinfo == UTC
    assert parse_iso_time("2025-05-07T09:00") == datetime(2025, 5, 7, 8, 0, tzinfo=UTC)  # BST
    assert parse_iso_time("2025-01-07 09:00") == datetime(2025, 1, 7, 9, 0, tzinfo=UTC)  # GMT
    assert parse_iso_time("2025-05-07") == datetime(2025, 5, 7, 11, 0, tzinfo=UTC)  # 12:00 BST
    assert parse_iso_time("2025-10-26T01:30") == datetime(2025, 10, 26, 0, 30, tzinfo=UTC)  # twice: the first


def test_unknown_calendar_or_missing_anchor_and_nothing_written_when_an_instance_is_started(
        database: Database) -> None:
    s = database.session()
    with pytest.raises(UnknownCalendar, match="no working-day calendar 'narnia'; known: england"):
        start(s, calendar="narnia")
    s.commit()
    assert counts(database) == dict.fromkeys(TABLES, 0)

    instance = ENGINE.start(s, "chore", CLERK, T0, {"risk": "standard"}, calendar="england")
    with pytest.raises(DeadlineError, match="anchored to 'received_at', which this instance does not have"):
        ENGINE.fire(s, instance, "inspect", CLERK, {}, T1)
    s.rollback()
    s.close()
    assert counts(database) == dict.fromkeys(TABLES, 0)


def test_timer_ends_failed_and_is_not_retried_when_its_handler_keeps_failing(database: Database) -> None:
    from workflow.sweep import MAX_ATTEMPTS

    s = database.session()
    urgent = start(s, risk="urgent")
    s.commit()
    call_back = deadlines(s, urgent.id)["call_back"]
    s.commit()
    recorder = Recorder(fail_for={"call_back"})
    now = T0 + timedelta(hours=5)
    for _ in range(MAX_ATTEMPTS + 3):
        TIMERS.sweep_due(s, now, recorder)
        now += timedelta(hours=2)  # past any retry delay

    s.expire_all()
    (timer,) = timers_of(s, call_back)
    assert (timer.status, timer.attempts) == ("failed", MAX_ATTEMPTS)
    assert timer.last_error == "RuntimeError: mail server down for call_back"
    assert TIMERS.sweep_due(s, now + timedelta(days=30), recorder).failed == 0  # never tried again
    s.close()


def test_sweep_moves_on_when_a_timers_own_commit_fails(database: Database) -> None:
    s = database.session()
    urgent = start(s, risk="urgent")  # answer and call_back both due
    s.commit()
    s.close()
    if database.dialect == "postgresql":
        database.raw("CREATE FUNCTION refuse_first_fire() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                      "IF NEW.status = 'fired' AND NEW.kind = 'due' AND NEW.ordinal = 0 AND OLD.attempts = 0 "
                      "AND NEW.fire_at = (SELECT min(fire_at) FROM wf_timers WHERE kind = 'due') THEN "
                      "RAISE EXCEPTION 'disk full'; END IF; RETURN NEW; END $$")
        database.raw("CREATE TRIGGER refuse_first BEFORE UPDATE ON wf_timers FOR EACH ROW "
                     "EXECUTE FUNCTION refuse_first_fire()")
    else:
        database.raw("CREATE TRIGGER refuse_first BEFORE UPDATE OF status ON wf_timers "
                     "WHEN NEW.status = 'fired' AND OLD.attempts = 0 AND NEW.fire_at = "
                     "(SELECT min(fire_at) FROM wf_timers WHERE kind = 'due') "
                     "BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    s = database.session()
    result = TIMERS.sweep_due(s, T0 + timedelta(hours=5), Recorder())

    assert (result.fired, result.failed) == (1, 1)  # the other timer still fired
    rows = database.raw("SELECT status, attempts, last_error FROM wf_timers WHERE instance_id = :i AND kind = 'due' "
                        "ORDER BY fire_at", i=urgent.id)
    assert rows[0][0] == "pending" and rows[0][1] == 1 and "commit failed" in rows[0][2]
    assert rows[1][0] == "fired"
    s.close()


@pytest.mark.postgresql_only
def test_sweep_transactions_skip_the_wal_flush_wait_and_requests_keep_it_when_on_postgresql(
        database: Database) -> None:
    s = database.session()
    start(s, risk="urgent")
    s.commit()
    seen: list[str] = []

    def handler(session: Session, fired: Fired) -> None:
        seen.append(session.execute(sa.text("SHOW synchronous_commit")).scalar_one())

    result = TIMERS.sweep_due(s, T0 + timedelta(hours=5), handler)

    assert result.fired == 2 and seen == ["off", "off"]  # SET LOCAL: only the sweep's own transactions
    assert s.execute(sa.text("SHOW synchronous_commit")).scalar_one() == "on"
    s.close()
