"""The sweep: claims due timers in batches and fires them. The only part of deadlines that runs outside
a request.

``sweep_due`` claims due timers in batches, oldest first (``FOR UPDATE SKIP LOCKED`` on PostgreSQL;
SQLite transactions are serialised by ``BEGIN IMMEDIATE``), calls the host's handler for each in its own
savepoint, marks each fired with when and how late, and commits once per batch: a timer's effects and
its fired mark commit together. A failing handler is rolled back to its savepoint, logged, and the timer
retried later; a batch whose commit fails is fired again one timer per transaction. See decision 7.

It needs nothing of the deadlines' rules (calendars, spec): the timer rows say what is due.
``workflow.deadlines`` writes those rows; ``Timers.sweep_due`` calls this.
"""

from __future__ import annotations

import logging
import os
import socket
import time as time_module
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import Table, bindparam, select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from workflow.clock import Clock, ensure_utc
from workflow.models import (
    CANCELLED,
    DUE,
    FAILED,
    FIRED,
    OPEN,
    OVERDUE,
    PENDING,
    REMINDER,
    DeadlineRow,
    TimerRow,
    WorkflowInstance,
)

log = logging.getLogger(__name__)

MAX_RETRY_DELAY = 3600.0
MAX_ATTEMPTS = 10  # after this many failures a timer ends ``failed`` (visible), not retried for ever
BATCH_SIZE = 100  # timers claimed, fired and committed together by the sweep
# SQLite's write lock has no queue: a sweep that began its next batch at once could keep a request waiting
# for its whole run. Between batches the sweep on SQLite leaves the lock free this long; a waiting writer
# polls for it every millisecond or so (``workflow.db``, decision 4), so it gets in.
SQLITE_PAUSE_S = 0.005


@dataclass(frozen=True)
class Fired:
    """What a handler is given: the timer, its deadline and instance, the sweep's time, lateness."""

    timer: TimerRow
    deadline: DeadlineRow
    instance: WorkflowInstance
    now: datetime
    lateness: timedelta


Handler = Callable[[Session, Fired], None]


class PreparedBatch(Protocol):
    """What ``BatchHandler.prepare`` returns for one batch: ``handle`` decides a timer's effects without
    writing (it has no session; raising fails that timer alone), ``write`` then writes the effects of the
    timers whose ``handle`` succeeded, in the batch's transaction."""

    def handle(self, fired: Fired) -> None: ...

    def write(self, session: Session, fired: Sequence[Fired]) -> None: ...


class BatchHandler(Protocol):
    """A handler that works a batch at a time (optional: any ``Handler`` will do).

    The sweep calls ``prepare(session, batch)`` once per batch with the timers it is about to fire (it
    should only read), ``handle`` for each timer, then ``write`` once for all that succeeded — in a
    savepoint; if that fails, ``write`` again for each timer in its own savepoint, so only a failing
    timer's effects are lost (and it is retried). A plain call handles one timer on its own. If
    ``prepare`` raises, the sweep logs it and calls the handler once per timer instead."""

    def __call__(self, session: Session, fired: Fired) -> None: ...

    def prepare(self, session: Session, batch: Sequence[Fired]) -> PreparedBatch: ...


@dataclass
class SweepResult:
    fired: int = 0
    failed: int = 0
    skipped: int = 0
    lateness_ms: list[int] = field(default_factory=list)

    def snapshot(self) -> tuple[int, int, int, int]:
        return self.fired, self.failed, self.skipped, len(self.lateness_ms)

    def restore(self, snapshot: tuple[int, int, int, int]) -> None:
        """Forget what was counted since ``snapshot`` (a batch that did not commit)."""
        self.fired, self.failed, self.skipped, n = snapshot
        del self.lateness_ms[n:]


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def sweep_due(session: Session, now: datetime, handler: Handler, *, limit: int | None = None,
              clock: Clock | None = None, worker: str | None = None,
              batch_size: int = BATCH_SIZE) -> SweepResult:
    """Fire every timer due at ``now``, oldest first, ``batch_size`` timers per transaction (this commits).

    Each batch is claimed at once (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), each timer's handler runs
    in its own savepoint, and the batch's fired marks are written together and committed with the
    handlers' effects: a timer's effects and its fired mark still commit or vanish together. A batch
    whose commit fails is fired again one timer per transaction, so one bad row never blocks the sweep.
    ``limit`` caps the timers claimed; ``clock`` gives the real time each timer fired (for lateness);
    by default ``now``.
    """
    now = ensure_utc(now)
    worker = worker or worker_id()
    result = SweepResult()
    postgres = session.get_bind().dialect.name == "postgresql"
    done = 0
    claim = (select(TimerRow).where(TimerRow.status == PENDING, TimerRow.available_at <= now)
             .order_by(TimerRow.available_at, TimerRow.id))
    if postgres:
        claim = claim.with_for_update(skip_locked=True)
    while limit is None or done < limit:
        size = batch_size if limit is None else min(batch_size, limit - done)
        if postgres:
            # Safe to skip the wait for the WAL flush: a crash can only lose whole transactions,
            # each holding its timers' effects together with their fired marks, so a lost one simply
            # fires again (and its messages are keyed, so nothing is sent twice).
            session.execute(_ASYNC_COMMIT)
        timers = list(session.scalars(claim.limit(size)))
        if not timers:
            session.rollback()
            break
        done += len(timers)
        ids = [t.id for t in timers]
        before = result.snapshot()
        try:
            _fire_batch(session, timers, now, handler, clock, worker, result)
            session.commit()
            if not postgres:
                time_module.sleep(SQLITE_PAUSE_S)
        except SQLAlchemyError:
            # Some row of the batch could not be written or committed: none of it happened. Fire the
            # batch again one timer per transaction, so only the bad timer is held back.
            session.rollback()
            result.restore(before)
            log.exception("a batch of %d timers could not be committed; firing them one at a time", len(ids))
            if not _fire_singly(session, ids, now, handler, clock, worker, result, postgres):
                break
    return result

def _fire_singly(session: Session, ids: list[int], now: datetime, handler: Handler, clock: Clock | None,
                 worker: str, result: SweepResult, postgres: bool) -> bool:
    """Fire these timers (if still due and not taken by another sweeper) one per transaction. A timer whose
    own commit fails is recorded as a failed attempt in a new transaction. False: stop this sweep."""
    claim = select(TimerRow).where(TimerRow.id == bindparam("tid"), TimerRow.status == PENDING,
                                   TimerRow.available_at <= now)
    if postgres:
        claim = claim.with_for_update(skip_locked=True)
    for timer_id in ids:
        if postgres:
            session.execute(_ASYNC_COMMIT)
        timer = session.scalars(claim, {"tid": timer_id}).first()
        if timer is None:
            session.rollback()
            continue
        before = result.snapshot()
        try:
            _fire_batch(session, [timer], now, handler, clock, worker, result)
            session.commit()
        except SQLAlchemyError as exc:
            # The timer's own bookkeeping failed to commit: record the attempt in a new transaction
            # and move it back, or the oldest timer would block every sweep from now on.
            session.rollback()
            log.exception("timer %s could not be committed", timer_id)
            result.restore(before)
            result.failed += 1
            if not _record_failure(session, timer_id, now, f"commit failed: {type(exc).__name__}"):
                return False
    return True

def _record_failure(session: Session, timer_id: int, now: datetime, error: str) -> bool:
    try:
        timer = session.get(TimerRow, timer_id)
        if timer is None:
            session.rollback()
            return True
        _failed_attempt(timer, now, error)
        session.commit()
        return True
    except SQLAlchemyError:
        session.rollback()
        log.exception("timer %s: the failure could not be recorded either; stopping this sweep", timer_id)
        return False

def _failed_attempt(timer: TimerRow, now: datetime, error: str) -> float:
    timer.attempts += 1
    timer.last_error = error[:2000]
    if timer.attempts >= MAX_ATTEMPTS:
        timer.status = FAILED
        return 0.0
    delay = min(MAX_RETRY_DELAY, 15.0 * 2.0 ** timer.attempts)
    timer.available_at = now + timedelta(seconds=delay)
    return float(delay)

def _fire_batch(session: Session, timers: list[TimerRow], now: datetime, handler: Handler,
                clock: Clock | None, worker: str, result: SweepResult) -> None:
    """Fire claimed timers, oldest first, in the caller's transaction (the caller commits).

    Their deadlines and instances are read in one statement each. A plain handler runs in a savepoint
    per timer; a ``BatchHandler`` prepares the batch, handles each timer without writing and writes
    the effects of those that succeeded together (see ``_write``). A failure rolls back only that
    timer's effects and schedules its retry. The deadlines' overdue marks and the timers' fired marks
    are written at the end, one statement each (executed for many rows)."""
    deadlines = {d.id: d for d in session.scalars(
        select(DeadlineRow).where(DeadlineRow.id.in_({t.deadline_id for t in timers})))}
    instances = {i.id: i for i in session.scalars(
        select(WorkflowInstance).where(WorkflowInstance.id.in_({t.instance_id for t in timers})))}
    marks: list[dict[str, Any]] = []
    overdue: list[dict[str, Any]] = []
    batch: list[Fired] = []
    claimed_at = clock.now() if clock else now
    for timer in timers:
        deadline = deadlines[timer.deadline_id]
        if deadline.status not in (OPEN, OVERDUE) or deadline.generation != timer.generation:
            marks.append(_mark(timer, CANCELLED))  # its stage was left or it was moved; never fire it
            result.skipped += 1
        elif timer.kind == REMINDER and deadline.due_at <= now:
            marks.append(_mark(timer, FIRED, clock.now() if clock else now, worker,
                               error="not sent: the deadline had already passed"))
            result.skipped += 1
        else:
            batch.append(Fired(timer, deadline, instances[timer.instance_id], now,
                               max(timedelta(0), claimed_at - timer.fire_at)))
    prepared = _prepare(session, handler, batch)
    ok: list[Fired] = []
    was: dict[int, tuple[str, datetime | None]] = {}  # each deadline's state before its due timer fired
    fired_ats: dict[int, datetime] = {}
    for fired in batch:
        timer, deadline = fired.timer, fired.deadline
        fired_at = fired_ats[timer.id] = clock.now() if clock else now
        if fired_at != claimed_at:
            fired = replace(fired, lateness=max(timedelta(0), fired_at - timer.fire_at))
        if timer.kind == DUE:  # written with the fired marks below, if the handler succeeds
            was[timer.id] = (deadline.status, deadline.overdue_at)
            set_committed_value(deadline, "status", OVERDUE)
            set_committed_value(deadline, "overdue_at", now)
        try:
            if prepared is None:
                with session.begin_nested():
                    handler(session, fired)
            else:
                prepared.handle(fired)
        except Exception as exc:  # a handler failure must never block the other timers
            _handler_failed(fired, exc, was.get(timer.id), result)
            continue
        ok.append(fired)
    if prepared is not None and ok:
        ok = _write(session, prepared, ok, was, result)
    for fired in ok:
        timer = fired.timer
        lateness_ms = int(fired.lateness.total_seconds() * 1000)  # BIGINT: a catch-up can be months late
        marks.append(_mark(timer, FIRED, fired_ats[timer.id], worker, lateness_ms))
        if timer.kind == DUE:
            overdue.append({"did": fired.deadline.id, "at": now})
        result.fired += 1
        result.lateness_ms.append(lateness_ms)
    conn = session.connection()
    if overdue:
        conn.execute(_MARK_OVERDUE, overdue)
    if marks:
        conn.execute(_MARK_TIMER, marks)
    by_id = {t.id: t for t in timers}
    for mark in marks:  # the session's objects show what was written, without writing it again
        timer = by_id[mark["tid"]]
        for column in _MARKED:
            set_committed_value(timer, column, mark[column])

def _write(session: Session, prepared: PreparedBatch, ok: list[Fired],
           was: dict[int, tuple[str, datetime | None]], result: SweepResult) -> list[Fired]:
    """Write the effects of the timers whose handling succeeded: together, or if that fails, one
    timer at a time (each in its own savepoint). Returns the timers whose effects were written."""
    try:
        with session.begin_nested():
            prepared.write(session, ok)
        return ok
    except Exception:
        log.exception("writing the effects of %d timers together failed; writing them one at a time", len(ok))
    written = []
    for fired in ok:
        try:
            with session.begin_nested():
                prepared.write(session, [fired])
        except Exception as exc:
            _handler_failed(fired, exc, was.get(fired.timer.id), result)
            continue
        written.append(fired)
    return written

def _handler_failed(fired: Fired, exc: Exception, deadline_was: tuple[str, datetime | None] | None,
                    result: SweepResult) -> None:
    """Roll back the deadline's overdue mark and count a failed attempt (retried later, or ``failed``)."""
    timer, deadline = fired.timer, fired.deadline
    if deadline_was is not None:
        set_committed_value(deadline, "status", deadline_was[0])
        set_committed_value(deadline, "overdue_at", deadline_was[1])
    delay = _failed_attempt(timer, fired.now, f"{type(exc).__name__}: {exc}")
    result.failed += 1
    if timer.status == FAILED:
        log.error("timer %s (deadline %s, instance %s) failed %s times; giving up (status failed)",
                  timer.id, deadline.id, fired.instance.id, timer.attempts)
    else:
        log.exception("timer %s (deadline %s, instance %s) failed; retry in %.0f s", timer.id, deadline.id,
                      fired.instance.id, delay, exc_info=exc)


def _prepare(session: Session, handler: Handler, batch: list[Fired]) -> PreparedBatch | None:
    """``handler.prepare(session, batch)`` if the handler has one (in a savepoint); None for a plain handler,
    or if ``prepare`` failed (then the handler is called for each timer, each in its own savepoint)."""
    prepare = getattr(handler, "prepare", None)
    if prepare is None or not batch:
        return None
    try:
        with session.begin_nested():
            return cast(PreparedBatch, prepare(session, batch))
    except Exception:
        log.exception("preparing a batch of %d timers failed; calling the handler for each timer", len(batch))
        return None


def _mark(timer: TimerRow, status: str, fired_at: datetime | None = None, worker: str | None = None,
          lateness_ms: int | None = None, error: str | None = None) -> dict[str, Any]:
    return {"tid": timer.id, "status": status, "fired_at": fired_at, "fired_by": worker, "lateness_ms": lateness_ms,
            "last_error": error if error is not None else timer.last_error}


_ASYNC_COMMIT = text("SET LOCAL synchronous_commit = off")
_T = cast(Table, TimerRow.__table__)
_D = cast(Table, DeadlineRow.__table__)
_MARKED = ("status", "fired_at", "fired_by", "lateness_ms", "last_error")
_MARK_TIMER = update(_T).where(_T.c.id == bindparam("tid")).values({c: bindparam(c) for c in _MARKED})
_MARK_OVERDUE = update(_D).where(_D.c.id == bindparam("did")).values(status=OVERDUE, overdue_at=bindparam("at"))


__all__ = ["BATCH_SIZE", "MAX_ATTEMPTS", "BatchHandler", "Fired", "Handler", "PreparedBatch", "SweepResult",
           "sweep_due", "worker_id"]
