"""What deadlines mean for cases: who is reminded, who is told when one passes, who may move one.

The sweep works a batch of timers at a time (see ``workflow.sweep.BatchHandler``):
:func:`make_timer_handler`'s handler reads the batch's cases and leads at once, decides each timer's
messages in memory and adds the batch's outbox rows in one statement, in the batch's transaction. It
only *adds* outbox rows (keyed by timer and recipient, so a re-run adds nothing) and never writes the
case or its workflow instance: that keeps the sweep from contending with people acting on the case.
Messages carry the case reference, the deadline and a link — never identity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from reprisals.access import actor_for, can_view_case
from reprisals.errors import CaseNotFound, InvalidInput, NotAllowed
from reprisals.messaging import Messenger, Outgoing, case_url, leads_of_bodies, local_text, unique_users
from reprisals.models import Case, Risk, User
from workflow.deadlines import Timers
from workflow.engine import Engine
from workflow.models import DUE, LIVE, OVERDUE, REMINDER, DeadlineRow
from workflow.sweep import Fired

__all__ = ["TimerHandler", "local_text", "make_timer_handler"]


def late_text(seconds: float) -> str | None:
    if seconds < 60:
        return None
    minutes = int(seconds // 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [f"{days} day{'s' if days != 1 else ''}"] if days else []
    if hours:
        parts.append(f"{hours} hour{'s' if hours != 1 else ''}")
    if minutes and not days:
        parts.append(f"{minutes} minute{'s' if minutes != 1 else ''}")
    return " ".join(parts)


def make_timer_handler(messenger: Messenger) -> TimerHandler:
    """The domain's reaction to a fired timer: reminders to the assigned staff (or the leads when
    nobody is assigned); overdue notices to staff and leads; an escalation prompt to the leads."""
    return TimerHandler(messenger)


@dataclass(frozen=True)
class _CaseFacts:
    """What the handler needs of a case: never its identity or description."""

    reference: str
    body_code: str
    urgent: bool
    assigned: User | None


class TimerHandler:
    """A ``workflow.sweep.BatchHandler``: ``prepare`` reads the batch's cases, their assigned users and
    their bodies' leads in three statements, each timer's messages are decided in memory, and ``write``
    adds the outbox rows of the whole batch in one statement. Called on its own, it does all three for
    one timer."""

    def __init__(self, messenger: Messenger) -> None:
        self.messenger = messenger

    def __call__(self, session: Session, fired: Fired) -> None:
        batch = self.prepare(session, [fired])
        batch.handle(fired)
        batch.write(session, [fired])

    def prepare(self, session: Session, batch: Sequence[Fired]) -> _Batch:
        rows = session.execute(select(Case.instance_id, Case.reference, Case.owning_body_code, Case.risk,
                                      Case.assigned_user_id)
                               .where(Case.instance_id.in_({f.instance.id for f in batch}))).all()
        assigned_ids = {r.assigned_user_id for r in rows if r.assigned_user_id is not None}
        users = ({u.id: u for u in session.scalars(select(User).where(User.id.in_(assigned_ids)))}
                 if assigned_ids else {})
        cases = {r.instance_id: _CaseFacts(r.reference, r.owning_body_code, r.risk is Risk.URGENT,
                                           users.get(r.assigned_user_id) if r.assigned_user_id else None)
                 for r in rows}
        return _Batch(self.messenger, cases, leads_of_bodies(session, {c.body_code for c in cases.values()}))


@dataclass
class _Batch:
    messenger: Messenger
    cases: dict[int, _CaseFacts]
    leads: dict[str, list[User]]
    messages: dict[int, list[Outgoing]] = field(default_factory=dict)  # by timer

    def handle(self, fired: Fired) -> None:
        case = self.cases.get(fired.instance.id)
        if case is None:  # an instance of another host; nothing of ours to tell
            return
        deadline, timer, leads = fired.deadline, fired.timer, self.leads[case.body_code]
        context: dict[str, Any] = {
            "reference": case.reference,
            "deadline": deadline.label,
            "stage": deadline.stage,
            "due_at": deadline.due_at.isoformat(),
            "due_text": local_text(deadline.due_at),
            "url": case_url(self.messenger.base_url, case.reference),
            "late_by_seconds": int(fired.lateness.total_seconds()),
            "late_text": late_text(fired.lateness.total_seconds()),
        }
        # An assignee waiting for a lead's confirmation (a new role or body) hears nothing of the case.
        staff = [case.assigned] if case.assigned and case.assigned.active and not case.assigned.pending else []
        sends: list[tuple[str, User]] = []
        if timer.kind == REMINDER:
            sends = [("reminder", u) for u in (staff or leads)]
        elif timer.kind == DUE:
            sends = [("overdue", u) for u in unique_users(staff + leads)]
            if deadline.action == "overdue_escalate":
                sends += [("escalation_prompt", u) for u in leads]
        urgent = case.urgent or timer.kind == DUE
        self.messages[timer.id] = [Outgoing(user, template, context, f"timer:{timer.id}:{template}:{user.id}", urgent)
                                   for template, user in sends]

    def write(self, session: Session, fired: Sequence[Fired]) -> None:
        if fired:
            self.messenger.send_all(session, [m for f in fired for m in self.messages.get(f.timer.id, [])],
                                    fired[0].now)


# -- queries ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseDeadline:
    reference: str
    deadline: DeadlineRow


def list_deadlines(session: Session, *, due_before: datetime | None = None, overdue: bool = False,
                   case: Case | None = None) -> list[CaseDeadline]:
    """Running deadlines (open, paused or overdue), soonest first."""
    stmt = (select(Case.reference, DeadlineRow).join(Case, Case.instance_id == DeadlineRow.instance_id)
            .where(DeadlineRow.status.in_(LIVE)).order_by(DeadlineRow.due_at, DeadlineRow.id))
    if overdue:
        stmt = stmt.where(DeadlineRow.status == OVERDUE)
    if due_before is not None:
        stmt = stmt.where(DeadlineRow.due_at < due_before)
    if case is not None:
        stmt = stmt.where(DeadlineRow.instance_id == case.instance_id)
    return [CaseDeadline(ref, row) for ref, row in session.execute(stmt)]


def is_overdue(session: Session, case: Case) -> bool:
    return session.scalars(select(DeadlineRow.id).where(DeadlineRow.instance_id == case.instance_id,
                                                        DeadlineRow.status == OVERDUE).limit(1)).first() is not None


# -- leads' operations -----------------------------------------------------------------------------


def _live_deadline(session: Session, actor: User, case: Case, name: str) -> DeadlineRow:
    if not can_view_case(actor, case):
        raise CaseNotFound(case.reference)
    if "lead" not in actor_for(actor, case).roles:
        raise NotAllowed("only a lead of a body on this case can change its deadlines")
    row = session.scalars(select(DeadlineRow).where(DeadlineRow.instance_id == case.instance_id,
                                                    DeadlineRow.name == name, DeadlineRow.status.in_(LIVE))
                          .order_by(DeadlineRow.id.desc())).first()
    if row is None:
        running = [d.deadline.name for d in list_deadlines(session, case=case)]
        raise InvalidInput({"deadline": f"'{name}' is not a running deadline of {case.reference}"
                                        f" (running: {', '.join(running) or 'none'})"})
    return row


def extend_deadline(session: Session, engine: Engine, timers: Timers, actor: User, case: Case, name: str,
                    new_due: datetime, reason: str, now: datetime) -> DeadlineRow:
    row = _live_deadline(session, actor, case, name)
    return timers.extend(session, engine, case.instance, row, new_due, reason, str(actor.id), now)


def pause_deadline(session: Session, engine: Engine, timers: Timers, actor: User, case: Case, name: str,
                   reason: str, now: datetime) -> DeadlineRow:
    row = _live_deadline(session, actor, case, name)
    return timers.pause(session, engine, case.instance, row, reason, str(actor.id), now)


def resume_deadline(session: Session, engine: Engine, timers: Timers, actor: User, case: Case, name: str,
                    reason: str, now: datetime) -> DeadlineRow:
    row = _live_deadline(session, actor, case, name)
    return timers.resume(session, engine, case.instance, row, reason, str(actor.id), now)
