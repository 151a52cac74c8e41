"""What deadlines mean for cases: who is reminded, who is told when one passes, who may move one.

The sweep calls :func:`make_timer_handler`'s handler inside its per-timer transaction. The handler
only *adds* outbox rows (keyed by timer and recipient, so a re-run adds nothing) and never writes the
case or its workflow instance: that keeps the sweep from contending with people acting on the case.
Messages carry the case reference, the deadline and a link — never identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from reprisals.access import actor_for, can_view_case
from reprisals.errors import CaseNotFound, InvalidInput, NotAllowed
from reprisals.messaging import Messenger, case_url, leads_of, local_text, unique_users
from reprisals.models import Case, Risk, User
from workflow.engine import Engine
from workflow.models import DeadlineRow
from workflow.timers import DUE, LIVE, OVERDUE, REMINDER, Fired, Handler, Timers

__all__ = ["local_text", "make_timer_handler"]


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


def make_timer_handler(messenger: Messenger) -> Handler:
    """The domain's reaction to a fired timer: reminders to the assigned staff (or the leads when
    nobody is assigned); overdue notices to staff and leads; an escalation prompt to the leads."""

    def handle(session: Session, fired: Fired) -> None:
        case = session.scalars(select(Case).where(Case.instance_id == fired.instance.id)).one_or_none()
        if case is None:  # an instance of another host; nothing of ours to tell
            return
        deadline, timer = fired.deadline, fired.timer
        context: dict[str, Any] = {
            "reference": case.reference,
            "deadline": deadline.label,
            "stage": deadline.stage,
            "due_at": deadline.due_at.isoformat(),
            "due_text": local_text(deadline.due_at),
            "url": case_url(messenger.base_url, case.reference),
            "late_by_seconds": int(fired.lateness.total_seconds()),
            "late_text": late_text(fired.lateness.total_seconds()),
        }
        staff = [case.assigned_user] if case.assigned_user and case.assigned_user.active else []
        leads = leads_of(session, case.owning_body_code)
        urgent = case.risk is Risk.URGENT
        sends: list[tuple[str, User]] = []
        if timer.kind == REMINDER:
            sends = [("reminder", u) for u in (staff or leads)]
        elif timer.kind == DUE:
            sends = [("overdue", u) for u in unique_users(staff + leads)]
            if deadline.action == "overdue_escalate":
                sends += [("escalation_prompt", u) for u in leads]
        for template, user in sends:
            messenger.send(session, user, template, context, f"timer:{timer.id}:{template}:{user.id}", fired.now,
                           urgent=urgent or timer.kind == DUE)

    return handle


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
