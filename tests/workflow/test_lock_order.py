"""Row locks are taken in one order everywhere: the instance, then its timers, then its deadlines (decision 7).

On PostgreSQL each race is forced (``tests.support.interleave``): one transaction is stopped right after
it took its locks until the other is seen waiting for a lock, then both go on. Before the order was
fixed a lead extending, pausing or resuming a deadline while someone fired a trigger on the same case
deadlocked every time; now one of them wins and the other gets ``StaleInstance`` (a clean conflict),
and the sweep, which never locks an instance, lets both finish.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from tests.conftest import Database
from tests.support.interleave import Interleaving, Outcome
from tests.workflow.test_timers import CLERK, ENGINE, TIMERS, Recorder, deadlines, local, snapshot, start
from workflow.deadlines import DeadlineError
from workflow.errors import StaleInstance
from workflow.models import WorkflowInstance

EXTEND_NOW = local("2025-04-18 11:00")
NEW_DUE = local("2025-04-30 17:00")
SWEEP_AT = local("2025-04-23 17:30")  # the answer fell due at 17:00

# What each statement that takes a lock looks like on the wire.
LOCKED_DEADLINE = r"FROM wf_deadlines .*FOR UPDATE"
UPDATED_INSTANCE = r"^UPDATE wf_instances"
CLAIMED_TIMERS = r"FROM wf_timers .*FOR UPDATE SKIP LOCKED"


@pytest.fixture
def race(database: Database) -> Iterator[Interleaving]:
    if database.dialect != "postgresql":
        pytest.skip("forcing an interleaving needs row locks")
    admin = sa.create_engine(database.url, poolclass=sa.pool.NullPool)
    interleaving = Interleaving(database.engine, admin)
    yield interleaving
    interleaving.close()
    admin.dispose()


def committed_instance(database: Database) -> int:
    with database.session() as s:
        instance = start(s)
        s.commit()
        return instance.id


def lead_op(operation: str, instance_id: int, now: datetime = EXTEND_NOW) -> Callable[[Session], None]:
    def work(s: Session) -> None:
        instance = s.get_one(WorkflowInstance, instance_id)
        answer = deadlines(s, instance_id)["answer"]
        if operation == "extend":
            TIMERS.extend(s, ENGINE, instance, answer, NEW_DUE, "interpreter", "lead-1", now)
        elif operation == "pause":
            TIMERS.pause(s, ENGINE, instance, answer, "interpreter", "lead-1", now)
        else:
            TIMERS.resume(s, ENGINE, instance, answer, "back", "lead-1", now)
    return work


def fire_inspect(instance_id: int, now: datetime = EXTEND_NOW) -> Callable[[Session], None]:
    def work(s: Session) -> None:
        ENGINE.fire(s, s.get_one(WorkflowInstance, instance_id), "inspect", CLERK, {}, now)
    return work


def pause_first(database: Database, instance_id: int) -> None:
    with database.session() as s:
        lead_op("pause", instance_id, local("2025-04-17 11:00"))(s)
        s.commit()


def errors(outcomes: dict[str, Outcome]) -> dict[str, str | None]:
    """Each side's error class (the driver's, for a database error: ``DeadlockDetected``), or None."""
    return {name: None if o.error is None else type(getattr(o.error, "orig", None) or o.error).__name__
            for name, o in outcomes.items()}


@pytest.mark.postgresql_only
@pytest.mark.parametrize("operation", ["extend", "pause", "resume"])
def test_lead_wins_and_the_trigger_gets_a_clean_conflict_when_a_deadline_change_locks_first(
        database: Database, race: Interleaving, operation: str) -> None:
    instance_id = committed_instance(database)
    if operation == "resume":
        pause_first(database, instance_id)
    race.hold("lead", after=LOCKED_DEADLINE, until_waiting="actor")

    outcomes = race.run({"lead": lead_op(operation, instance_id), "actor": fire_inspect(instance_id)},
                        database.session, first="lead", second="actor")

    assert race.held == [f"lead after {LOCKED_DEADLINE}"]  # the interleaving really happened
    assert errors(outcomes) == {"lead": None, "actor": "StaleInstance"}
    with database.session() as s:
        instance = s.get_one(WorkflowInstance, instance_id)
        assert instance.stage == "waiting"
        kinds = [e.kind for e in ENGINE.history(s, instance)]
        assert kinds[-1] == {"extend": "deadline_extended", "pause": "deadline_paused",
                             "resume": "deadline_resumed"}[operation]


@pytest.mark.postgresql_only
@pytest.mark.parametrize("operation", ["extend", "pause", "resume"])
def test_trigger_wins_and_the_deadline_change_gets_a_clean_conflict_when_the_trigger_locks_first(
        database: Database, race: Interleaving, operation: str) -> None:
    instance_id = committed_instance(database)
    if operation == "resume":
        pause_first(database, instance_id)
    race.hold("actor", after=UPDATED_INSTANCE, until_waiting="lead")

    outcomes = race.run({"lead": lead_op(operation, instance_id), "actor": fire_inspect(instance_id)},
                        database.session, first="actor", second="lead")

    assert race.held == [f"actor after {UPDATED_INSTANCE}"]
    assert errors(outcomes) == {"actor": None, "lead": "StaleInstance"}
    with database.session() as s:
        instance = s.get_one(WorkflowInstance, instance_id)
        assert instance.stage == "checking"
        assert deadlines(s, instance_id)["answer"].status == "done"


@pytest.mark.postgresql_only
@pytest.mark.parametrize("other", ["lead", "actor"])
def test_both_finish_when_the_sweep_has_claimed_a_due_timer_and_someone_acts_on_the_case(
        database: Database, race: Interleaving, other: str) -> None:
    instance_id = committed_instance(database)
    recorder = Recorder()
    race.hold("sweep", after=CLAIMED_TIMERS, until_waiting=other)
    work = {"sweep": lambda s: TIMERS.sweep_due(s, SWEEP_AT, recorder),
            "lead": lead_op("extend", instance_id, SWEEP_AT), "actor": fire_inspect(instance_id, SWEEP_AT)}

    outcomes = race.run({"sweep": work["sweep"], other: work[other]}, database.session, first="sweep", second=other)

    assert race.held == [f"sweep after {CLAIMED_TIMERS}"]
    assert errors(outcomes) == {"sweep": None, other: None}
    assert [kind for _, kind, _, _, _ in recorder.calls] == ["due"]
    with database.session() as s:
        answer = deadlines(s, instance_id)["answer"]
        # The sweep's overdue mark was waited for, then the lead reopened it or the stage change closed it.
        assert (answer.status, answer.overdue_at is None) == (("open", True) if other == "lead" else ("done", False))


def test_deadline_change_is_refused_and_nothing_written_when_the_case_changed_since_it_was_read(
        database: Database) -> None:
    instance_id = committed_instance(database)
    reader = database.session()
    instance = reader.get_one(WorkflowInstance, instance_id)
    answer = deadlines(reader, instance_id)["answer"]
    reader.commit()  # read in an earlier transaction: what a page a lead looked at a moment ago knew
    with database.session() as other:
        ENGINE.append_event(other, other.get_one(WorkflowInstance, instance_id), "note_added", "clerk-1",
                            EXTEND_NOW, {})
        other.commit()
    before = snapshot(database)

    with pytest.raises(StaleInstance):
        TIMERS.extend(reader, ENGINE, instance, answer, NEW_DUE, "interpreter", "lead-1", EXTEND_NOW)
    reader.rollback()
    reader.close()

    assert snapshot(database) == before


def test_deadline_error_not_conflict_when_the_case_is_current_and_the_change_does_not_fit(
        database: Database) -> None:
    instance_id = committed_instance(database)
    with database.session() as s, pytest.raises(DeadlineError, match="not paused"):
        lead_op("resume", instance_id)(s)
