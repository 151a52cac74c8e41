"""Deadlines and timers: rows written in the same transaction as the stage change, fired by a sweep.

Entering a stage creates its deadlines (from the spec, for the instance's variables and calendar)
and one timer row per moment something must happen (each reminder, and the due time). Leaving the
stage closes the deadlines and cancels their pending timers, in the same transaction — so a stage
change that rolls back leaves no timers, and a timer of a stage already left never fires.

``sweep_due`` is the only part that runs outside a request: it claims due timers in batches, oldest
first (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite transactions are serialised by ``BEGIN
IMMEDIATE``), calls the host's handler for each in its own savepoint, marks each fired with when and
how late, and commits once per batch: a timer's effects and its fired mark commit together. A failing
handler is rolled back to its savepoint, logged, and the timer retried later; a batch whose commit
fails is fired again one timer per transaction. See decision 7.
"""

from __future__ import annotations

import logging
import os
import socket
import time as time_module
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta, tzinfo
from typing import Any, Protocol, cast

from sqlalchemy import Table, bindparam, insert, select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from workflow.calendars import DEFAULT_DAY_END, UnknownCalendar, WorkingCalendar, calendar_for
from workflow.clock import Clock, ensure_utc
from workflow.engine import Engine, StageChange
from workflow.errors import WorkflowError
from workflow.models import DeadlineRow, TimerRow, WorkflowInstance
from workflow.moments import LONDON, parse_moment
from workflow.spec import STAGE_ENTRY, Duration, Unit, parse_duration
from workflow.text import clean_text, is_blank

log = logging.getLogger(__name__)

OPEN, PAUSED, OVERDUE, DONE = "open", "paused", "overdue", "done"
LIVE = (OPEN, PAUSED, OVERDUE)
PENDING, FIRED, CANCELLED = "pending", "fired", "cancelled"
REMINDER, DUE = "reminder", "due"
MAX_RETRY_DELAY = 3600.0
MAX_ATTEMPTS = 10  # after this many failures a timer ends ``failed`` (visible), not retried for ever
FAILED = "failed"
BATCH_SIZE = 100  # timers claimed, fired and committed together by the sweep
# SQLite's write lock has no queue: a sweep that began its next batch at once could keep a request waiting
# for its whole run. Between batches the sweep on SQLite leaves the lock free this long; a waiting writer
# polls for it every millisecond or so (``workflow.db``, decision 4), so it gets in.
SQLITE_PAUSE_S = 0.005


class DeadlineError(WorkflowError):
    """A deadline operation that cannot be done (bad extension, pausing a paused clock…)."""


MAX_REASON = 2000


def _reason(reason: str, *, missing: str | None) -> str:
    """The reason as recorded (``workflow.text.clean_text``); DeadlineError when it cannot be, or when
    it is blank and ``missing`` says one is needed."""
    if not isinstance(reason, str):
        raise DeadlineError("the reason must be text")
    try:
        clean = clean_text(reason, multiline=True)
    except ValueError as exc:
        raise DeadlineError(f"the reason {exc}") from None
    if is_blank(clean):
        if missing:
            raise DeadlineError(missing)
        return ""
    if len(clean) > MAX_REASON:
        raise DeadlineError(f"the reason must be {MAX_REASON} characters or fewer")
    return clean


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


@dataclass
class Timers:
    """Creates, moves and sweeps timers. Register it on an engine with :meth:`attach`."""

    day_end: time = DEFAULT_DAY_END

    def attach(self, engine: Engine) -> Timers:
        engine.listeners.append(self.on_stage_change)
        engine.calendar_check = self.calendar
        return self

    def calendar(self, name: str | None) -> WorkingCalendar:
        return calendar_for(name, self.day_end)

    # -- stage changes ---------------------------------------------------------------------------

    def on_stage_change(self, session: Session, change: StageChange) -> None:
        """Close the old stage's deadlines and create the new stage's, in the caller's transaction.

        Deadlines run from when the change happened (``change.moment``), which may be earlier than when it
        was recorded (``change.now``): the old stage's deadlines close at that moment (met if it was by
        their due time), and the new ones are due from it. Reminders already past when it is recorded are
        not created (never sent late); a deadline already past is overdue at once, and its due timer fires
        at the next sweep (its notices go then).

        Written with Core statements built once (this runs on every transition; the ORM unit of work
        would double its cost); ORM objects of these rows already in the session are expired."""
        instance, now, moment = change.instance, change.now, change.moment
        if change.stays:  # the stage goes on: only the deadlines the trigger names end (met, at its moment)
            if change.closes:
                self._close_named(session, instance.id, change.closes, moment)
            return
        if change.from_stage is not None:
            self._close_live(session, instance.id, moment)
        stage = change.spec.stages[change.to_stage]
        if stage.final or not stage.deadlines:
            return
        cal = self.calendar(instance.calendar)
        variables = instance.variables
        conn = session.connection()
        timers: list[dict[str, Any]] = []
        for spec_deadline in stage.deadlines:
            if not spec_deadline.applies_to(variables):
                continue
            duration = spec_deadline.due.for_variables(variables)
            if duration is None:
                continue
            anchor = moment if spec_deadline.anchor == STAGE_ENTRY else _variable_time(variables, spec_deadline.anchor)
            due = cal.due(anchor, duration)
            late = due <= now
            reminders = [r.short() for r in spec_deadline.reminders]
            deadline_id = conn.execute(_INSERT_DEADLINE, {
                "instance_id": instance.id, "entry_seq": change.event.seq, "stage": change.to_stage,
                "name": spec_deadline.name, "label": spec_deadline.label, "action": spec_deadline.on_due,
                "unit": duration.unit.value, "amount": duration.amount, "reminders": reminders,
                "anchor_at": anchor, "due_at": due, "status": OVERDUE if late else OPEN, "generation": 1,
                "paused_at": None, "overdue_at": due if late else None, "closed_at": None, "created_at": now,
            }).scalar_one()
            timers += _timer_values(deadline_id, instance.id, 1, due, reminders, cal, now)
        if timers:
            conn.execute(_INSERT_TIMER, timers)

    def _close_live(self, session: Session, instance_id: int, now: datetime) -> None:
        conn = session.connection()
        conn.execute(_CANCEL_INSTANCE_TIMERS, {"iid": instance_id})
        conn.execute(_CLOSE_DEADLINES, {"iid": instance_id, "at": now})
        for obj in list(session.identity_map.values()):
            if isinstance(obj, DeadlineRow | TimerRow) and obj.instance_id == instance_id:
                session.expire(obj)

    def _close_named(self, session: Session, instance_id: int, names: tuple[str, ...], at: datetime) -> None:
        rows = list(session.scalars(select(DeadlineRow).where(DeadlineRow.instance_id == instance_id,
                                                              DeadlineRow.name.in_(names),
                                                              DeadlineRow.status.in_(LIVE))))
        for row in rows:
            self._cancel_pending(session, row)
            row.status, row.closed_at = DONE, at
        session.flush()

    def _schedule(self, session: Session, row: DeadlineRow, cal: WorkingCalendar, now: datetime) -> None:
        """Create the due timer and every reminder still ahead (never a reminder after the due time)."""
        values = _timer_values(row.id, row.instance_id, row.generation, row.due_at, row.reminders, cal, now)
        session.connection().execute(_INSERT_TIMER, values)

    def _cancel_pending(self, session: Session, row: DeadlineRow) -> None:
        session.execute(update(TimerRow).where(TimerRow.deadline_id == row.id, TimerRow.status == PENDING)
                        .values(status=CANCELLED))

    # -- leads' operations -----------------------------------------------------------------------

    def extend(self, session: Session, engine: Engine, instance: WorkflowInstance, deadline: DeadlineRow,
               new_due: datetime, reason: str, actor_id: str, now: datetime) -> DeadlineRow:
        """Move a deadline later, with a reason; reminders move with it. A history event records it."""
        new_due = ensure_utc(new_due)
        now = ensure_utc(now)
        self._lock(session, engine, instance, deadline)
        self._check_live(instance, deadline)
        reason = _reason(reason, missing="an extension needs a reason")
        if new_due <= now:
            raise DeadlineError(f"the new due time {new_due.isoformat()} is in the past; an extension must be later "
                                "than now")
        if new_due <= deadline.due_at:
            raise DeadlineError(f"the new due time must be later than the current one ({deadline.due_at.isoformat()})")
        previous = deadline.due_at
        engine.append_event(session, instance, "deadline_extended", actor_id, now,
                            {"deadline": deadline.name, "from": previous.isoformat(), "to": new_due.isoformat(),
                             "reason": reason}, sealed=("reason",))
        self._cancel_pending(session, deadline)
        deadline.due_at = new_due
        deadline.generation += 1
        if deadline.status == OVERDUE:
            deadline.status, deadline.overdue_at = OPEN, None
        session.flush()
        if deadline.status == OPEN:
            self._schedule(session, deadline, self.calendar(instance.calendar), now)
        session.flush()
        return deadline

    def pause(self, session: Session, engine: Engine, instance: WorkflowInstance, deadline: DeadlineRow,
              reason: str, actor_id: str, now: datetime) -> DeadlineRow:
        now = ensure_utc(now)
        self._lock(session, engine, instance, deadline)
        self._check_live(instance, deadline)
        if deadline.status == PAUSED:
            raise DeadlineError(f"the clock of '{deadline.label}' is already paused")
        if deadline.status == OVERDUE:
            raise DeadlineError(f"'{deadline.label}' is already overdue; extend it instead of pausing")
        reason = _reason(reason, missing="pausing a clock needs a reason")
        engine.append_event(session, instance, "deadline_paused", actor_id, now,
                            {"deadline": deadline.name, "reason": reason}, sealed=("reason",))
        self._cancel_pending(session, deadline)
        deadline.status, deadline.paused_at = PAUSED, now
        session.flush()
        return deadline

    def resume(self, session: Session, engine: Engine, instance: WorkflowInstance, deadline: DeadlineRow,
               reason: str, actor_id: str, now: datetime) -> DeadlineRow:
        """Restart a paused clock: the due time moves by the time it was paused (for a working-day
        deadline, by the working days that ended while it was paused; in hours for a clock-hour one).
        A clock that had time left when it was paused is never overdue when it resumes."""
        now = ensure_utc(now)
        self._lock(session, engine, instance, deadline)
        self._check_live(instance, deadline)
        if deadline.status != PAUSED or deadline.paused_at is None:
            raise DeadlineError(f"the clock of '{deadline.label}' is not paused")
        reason = _reason(reason or "", missing=None)
        cal = self.calendar(instance.calendar)
        if deadline.unit == Unit.WORKING_DAYS.value:
            # Count the working days whose end passed during the pause, not calendar dates: a clock
            # paused at 15:00 on its due day and resumed at 18:00 lost that day, and must not come
            # back overdue.
            shift = _working_day_ends(cal, deadline.paused_at, now)
            new_due = cal.add_working_days(deadline.due_at, shift) if shift else deadline.due_at
            if new_due <= now and deadline.paused_at < deadline.due_at:  # due mid-day, after an extension
                new_due = deadline.due_at + (now - deadline.paused_at)
        else:
            new_due = deadline.due_at + (now - deadline.paused_at)
        engine.append_event(session, instance, "deadline_resumed", actor_id, now,
                            {"deadline": deadline.name, "reason": reason,
                             "from": deadline.due_at.isoformat(), "to": new_due.isoformat()}, sealed=("reason",))
        deadline.due_at, deadline.status, deadline.paused_at = new_due, OPEN, None
        deadline.generation += 1
        session.flush()
        self._schedule(session, deadline, cal, now)
        session.flush()
        return deadline

    @staticmethod
    def _lock(session: Session, engine: Engine, instance: WorkflowInstance, deadline: DeadlineRow) -> None:
        """Lock in the one order every writer of a case uses (decision 7): the instance row (``StaleInstance``
        if it moved on since it was read), then the deadline's pending timers, then the deadline, and re-read
        it. ``Engine.fire`` locks the instance first too, so the two wait for each other instead of
        deadlocking; the sweep locks timers then deadlines and never an instance, so a due timer firing
        right now is waited for and its ``overdue`` seen, not overwritten."""
        engine.lock(session, instance)
        session.execute(select(TimerRow.id).where(TimerRow.deadline_id == deadline.id, TimerRow.status == PENDING)
                        .with_for_update())
        session.refresh(deadline, with_for_update=True)

    @staticmethod
    def _check_live(instance: WorkflowInstance, deadline: DeadlineRow) -> None:
        if deadline.instance_id != instance.id:
            raise DeadlineError("that deadline belongs to another case")
        if deadline.status not in LIVE:
            raise DeadlineError(f"'{deadline.label}' is no longer running (its stage was left)")

    def redate(self, session: Session, engine: Engine, instance: WorkflowInstance, entry_seq: int, was: datetime,
               moment: datetime, now: datetime) -> list[DeadlineRow]:
        """An action (history event ``entry_seq``) happened at ``moment``, not ``was``: move the deadlines it
        started from the old moment to the new one (due times recomputed in the instance's calendar; live
        ones rescheduled, overdue at once if already past, reminders only if still ahead), and the closing
        time of the deadlines it closed. The caller locks the instance and records the correction.
        Returns the deadlines whose due time moved."""
        was, moment, now = ensure_utc(was), ensure_utc(moment), ensure_utc(now)
        engine.lock(session, instance)
        rows = list(session.scalars(select(DeadlineRow).where(DeadlineRow.instance_id == instance.id)
                                    .with_for_update()))
        cal = self.calendar(instance.calendar)
        moved: list[DeadlineRow] = []
        for row in rows:
            if row.entry_seq < entry_seq and row.closed_at is not None and ensure_utc(row.closed_at) == was:
                row.closed_at = moment  # closed by the corrected action: met or missed as it really happened
            if row.entry_seq != entry_seq or ensure_utc(row.anchor_at) != was:
                continue
            row.anchor_at = moment
            row.due_at = cal.due(moment, Duration(row.amount, Unit(row.unit)))
            moved.append(row)
            if row.status in (OPEN, OVERDUE):
                self._cancel_pending(session, row)
                row.generation += 1
                late = row.due_at <= now
                row.status, row.overdue_at = (OVERDUE, row.due_at) if late else (OPEN, None)
                session.flush()
                self._schedule(session, row, cal, now)
        session.flush()
        return moved

    # -- the sweep -------------------------------------------------------------------------------

    def sweep_due(self, session: Session, now: datetime, handler: Handler, *, limit: int | None = None,
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
                self._fire_batch(session, timers, now, handler, clock, worker, result)
                session.commit()
                if not postgres:
                    time_module.sleep(SQLITE_PAUSE_S)
            except SQLAlchemyError:
                # Some row of the batch could not be written or committed: none of it happened. Fire the
                # batch again one timer per transaction, so only the bad timer is held back.
                session.rollback()
                result.restore(before)
                log.exception("a batch of %d timers could not be committed; firing them one at a time", len(ids))
                if not self._fire_singly(session, ids, now, handler, clock, worker, result, postgres):
                    break
        return result

    def _fire_singly(self, session: Session, ids: list[int], now: datetime, handler: Handler, clock: Clock | None,
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
                self._fire_batch(session, [timer], now, handler, clock, worker, result)
                session.commit()
            except SQLAlchemyError as exc:
                # The timer's own bookkeeping failed to commit: record the attempt in a new transaction
                # and move it back, or the oldest timer would block every sweep from now on.
                session.rollback()
                log.exception("timer %s could not be committed", timer_id)
                result.restore(before)
                result.failed += 1
                if not self._record_failure(session, timer_id, now, f"commit failed: {type(exc).__name__}"):
                    return False
        return True

    def _record_failure(self, session: Session, timer_id: int, now: datetime, error: str) -> bool:
        try:
            timer = session.get(TimerRow, timer_id)
            if timer is None:
                session.rollback()
                return True
            self._failed_attempt(timer, now, error)
            session.commit()
            return True
        except SQLAlchemyError:
            session.rollback()
            log.exception("timer %s: the failure could not be recorded either; stopping this sweep", timer_id)
            return False

    @staticmethod
    def _failed_attempt(timer: TimerRow, now: datetime, error: str) -> float:
        timer.attempts += 1
        timer.last_error = error[:2000]
        if timer.attempts >= MAX_ATTEMPTS:
            timer.status = FAILED
            return 0.0
        delay = min(MAX_RETRY_DELAY, 15.0 * 2.0 ** timer.attempts)
        timer.available_at = now + timedelta(seconds=delay)
        return float(delay)

    def _fire_batch(self, session: Session, timers: list[TimerRow], now: datetime, handler: Handler,
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
                self._handler_failed(fired, exc, was.get(timer.id), result)
                continue
            ok.append(fired)
        if prepared is not None and ok:
            ok = self._write(session, prepared, ok, was, result)
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

    def _write(self, session: Session, prepared: PreparedBatch, ok: list[Fired],
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
                self._handler_failed(fired, exc, was.get(fired.timer.id), result)
                continue
            written.append(fired)
        return written

    def _handler_failed(self, fired: Fired, exc: Exception, deadline_was: tuple[str, datetime | None] | None,
                        result: SweepResult) -> None:
        """Roll back the deadline's overdue mark and count a failed attempt (retried later, or ``failed``)."""
        timer, deadline = fired.timer, fired.deadline
        if deadline_was is not None:
            set_committed_value(deadline, "status", deadline_was[0])
            set_committed_value(deadline, "overdue_at", deadline_was[1])
        delay = self._failed_attempt(timer, fired.now, f"{type(exc).__name__}: {exc}")
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


def _working_day_ends(cal: WorkingCalendar, start: datetime, end: datetime) -> int:
    """How many working days end (``cal.day_end``, local time) after ``start`` and by ``end``."""
    count, day = 0, cal.local_date(start)
    while cal.end_of(day) <= end:
        if cal.end_of(day) > start and cal.is_working_day(day):
            count += 1
        day += timedelta(days=1)
    return count


_ASYNC_COMMIT = text("SET LOCAL synchronous_commit = off")
_T = cast(Table, TimerRow.__table__)
_D = cast(Table, DeadlineRow.__table__)
_INSERT_DEADLINE = insert(_D).returning(_D.c.id)
_MARKED = ("status", "fired_at", "fired_by", "lateness_ms", "last_error")
_MARK_TIMER = update(_T).where(_T.c.id == bindparam("tid")).values({c: bindparam(c) for c in _MARKED})
_MARK_OVERDUE = update(_D).where(_D.c.id == bindparam("did")).values(status=OVERDUE, overdue_at=bindparam("at"))
_INSERT_TIMER = insert(_T)
_CANCEL_INSTANCE_TIMERS = (update(_T).where(_T.c.instance_id == bindparam("iid"), _T.c.status == PENDING)
                           .values(status=CANCELLED))
_CLOSE_DEADLINES = (update(_D).where(_D.c.instance_id == bindparam("iid"), _D.c.status.in_(LIVE))
                    .values(status=DONE, closed_at=bindparam("at")))


def _timer_values(deadline_id: int, instance_id: int, generation: int, due: datetime, reminders: list[str],
                  cal: WorkingCalendar, now: datetime) -> list[dict[str, Any]]:
    """Rows for the due timer and each reminder strictly between now and the due time."""
    base = {"deadline_id": deadline_id, "instance_id": instance_id, "generation": generation, "status": PENDING,
            "attempts": 0, "fired_at": None, "lateness_ms": None, "fired_by": None, "last_error": None,
            "created_at": now}
    out = [{**base, "kind": DUE, "ordinal": 0, "fire_at": due, "available_at": due}]
    for i, spec_text in enumerate(reminders):
        at = cal.before(due, parse_duration(spec_text))
        if now < at < due:
            out.append({**base, "kind": REMINDER, "ordinal": i + 1, "fire_at": at, "available_at": at})
    return out


def _variable_time(variables: dict[str, Any], name: str) -> datetime:
    value = variables.get(name)
    if not value:
        raise DeadlineError(f"the deadline is anchored to '{name}', which this instance does not have")
    return ensure_utc(datetime.fromisoformat(str(value)))


def parse_iso_time(text: str, *, zone: tzinfo = LONDON) -> datetime:
    """A moment given by a person on the command line (``--now``, ``--to``, ``--due-before``), read by the
    one parser of moments (``workflow.moments.parse_moment``): UK time unless an offset is given; a bare
    date is 12:00 that day. DeadlineError with the reason when it is not one."""
    try:
        return parse_moment(text, zone=zone)
    except ValueError as exc:
        raise DeadlineError(f"'{text}' {exc}") from None


__all__ = ["BatchHandler", "DeadlineError", "Duration", "Fired", "SweepResult", "Timers", "UnknownCalendar",
           "parse_iso_time"]
