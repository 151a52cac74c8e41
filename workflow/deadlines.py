"""Deadlines and their timers: rows written in the same transaction as the stage change.

Entering a stage creates its deadlines (from the spec, for the instance's variables and calendar)
and one timer row per moment something must happen (each reminder, and the due time). Leaving the
stage closes the deadlines and cancels their pending timers, in the same transaction — so a stage
change that rolls back leaves no timers, and a timer of a stage already left never fires. Leads
extend, pause and resume a deadline; a corrected action moves the deadlines it started.

The timers are fired by the sweep (``workflow.sweep``), which runs outside a request; ``Timers.sweep_due``
hands over to it, so that a host holds one object. See decision 7.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from workflow.calendars import DEFAULT_DAY_END, UnknownCalendar, WorkingCalendar, calendar_for
from workflow.clock import Clock, ensure_utc
from workflow.engine import Engine, StageChange
from workflow.errors import WorkflowError
from workflow.models import (
    CANCELLED,
    DONE,
    DUE,
    LIVE,
    OPEN,
    OVERDUE,
    PAUSED,
    PENDING,
    REMINDER,
    DeadlineRow,
    TimerRow,
    WorkflowInstance,
)
from workflow.moments import LONDON, parse_moment
from workflow.spec import STAGE_ENTRY, Duration, Unit, parse_duration
from workflow.sweep import BATCH_SIZE, Handler, SweepResult, sweep_due
from workflow.text import clean_text, is_blank


class DeadlineError(WorkflowError):
    """A deadline operation that cannot be done (bad extension, pausing a paused clock…)."""


class NotAWorkingDay(DeadlineError):
    """An extension of a working-day deadline onto a day that is not a working day of the calendar the
    deadline runs in (a weekend, or a holiday of that nation: ``holiday`` names it). The host says it in
    its own words (``reprisals.wording``); clock-hour deadlines may end on any day."""

    def __init__(self, day: date, calendar: str, holiday: str | None) -> None:
        self.day, self.calendar, self.holiday = day, calendar, holiday
        why = f"a holiday ({holiday})" if holiday else "a weekend"
        super().__init__(f"{day.isoformat()} is not a working day in the '{calendar}' calendar ({why}); a "
                         "working-day deadline must end on a working day")


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


@dataclass
class Timers:
    """Creates, closes and moves deadlines and their timers; ``sweep_due`` fires them (``workflow.sweep``).
    Register it on an engine with :meth:`attach`."""

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
        """Move a deadline later, with a reason; reminders move with it. A history event records it.
        A working-day deadline must end on a working day of the instance's calendar (``NotAWorkingDay``)."""
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
        if deadline.unit == Unit.WORKING_DAYS.value:
            cal = self.calendar(instance.calendar)
            day = cal.local_date(new_due)
            if not cal.is_working_day(day):
                raise NotAWorkingDay(day, cal.name, cal.holiday_name(day) if day.weekday() < 5 else None)
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
        """Fire every timer due at ``now``: ``workflow.sweep.sweep_due`` (this commits)."""
        return sweep_due(session, now, handler, limit=limit, clock=clock, worker=worker, batch_size=batch_size)


def _working_day_ends(cal: WorkingCalendar, start: datetime, end: datetime) -> int:
    """How many working days end (``cal.day_end``, local time) after ``start`` and by ``end``."""
    count, day = 0, cal.local_date(start)
    while cal.end_of(day) <= end:
        if cal.end_of(day) > start and cal.is_working_day(day):
            count += 1
        day += timedelta(days=1)
    return count

_T = cast(Table, TimerRow.__table__)
_D = cast(Table, DeadlineRow.__table__)
_INSERT_DEADLINE = insert(_D).returning(_D.c.id)
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


__all__ = ["DeadlineError", "Duration", "NotAWorkingDay", "Timers", "UnknownCalendar", "parse_iso_time"]
