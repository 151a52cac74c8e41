"""Each role's home page: a lead's queue, what a member of staff owes, an auditor's recent activity,
an administrator's links.

The lead's queue is computed in the database and stays fast with 100,000 cases (benchmark 5): it
orders a body's open cases by risk, then by the nearest running deadline (overdue first). Computing
every open case's nearest deadline and sorting them all costs time in proportion to the body's
cases, so for each risk level (urgent, then high, then standard) while the queue has room:

* a level with few open cases (``SMALL``) is ordered directly, each case's nearest deadline found
  through ``ix_wf_deadlines_instance_id``;
* a large level is found by walking running deadlines in due order (``ix_wf_deadlines_status_due_at``,
  one ordered range per status, merged) and keeping the first cases of that level: the first time a
  case is met is its nearest deadline. The walk takes ``k`` deadlines and grows ``k`` fourfold until
  the queue is full, so it reads about as many deadlines as it takes to find 50 cases of the level.

Cases with no running deadline (all paused) come last in their level. The overdue and due-this-week
counts read at most ``COUNT_SCAN`` deadlines per status for the same reason (beyond, "N or more").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, render_template
from flask.typing import ResponseReturnValue
from sqlalchemy import ColumnElement, Subquery, and_, exists, func, null, or_, select, union_all
from sqlalchemy.orm import Session

from reprisals.confirmations import list_pending
from reprisals.messaging import local_text
from reprisals.models import Case, CaseParty, Risk, Role, User
from reprisals.protocol import SPEC_KEY
from web.context import db, me, now, runtime
from web.security import pending_words, signed_in
from workflow.engine import Engine
from workflow.models import OPEN, OVERDUE, DeadlineRow, HistoryEvent, WorkflowInstance

bp = Blueprint("home", __name__)

RUNNING = (OPEN, OVERDUE)  # deadlines whose clock runs (a paused one has no time left to show)
QUEUE_SIZE = 50
SMALL = 300
COUNT_SCAN = 1000
RISK_ORDER = (Risk.URGENT, Risk.HIGH, Risk.STANDARD)


@dataclass(frozen=True)
class QueueItem:
    reference: str
    risk: Risk
    stage: str
    due_at: datetime | None
    assigned_user_id: int | None
    spec_key: str
    spec_version: int


@dataclass(frozen=True)
class LeadSummary:
    overdue: int
    due_this_week: int
    overdue_at_least: bool  # more may be overdue than were counted
    due_this_week_at_least: bool


def _visible_to_body(body: str) -> ColumnElement[bool]:
    """Owned by the body or the body is party to it. EXISTS (a primary-key probe per case), not IN (a
    list of every case the body is party to, built before the first row)."""
    party = exists().where(CaseParty.case_id == Case.id, CaseParty.body_code == body)
    return or_(Case.owning_body_code == body, party)


_COLUMNS = (Case.reference, Case.risk, WorkflowInstance.stage)
_TAIL = (Case.assigned_user_id, WorkflowInstance.spec_key, WorkflowInstance.spec_version)


def lead_queue(session: Session, body: str, limit: int = QUEUE_SIZE) -> list[QueueItem]:
    """A body's open cases (owned or party to) by risk, then nearest running deadline; at most ``limit``."""
    visible = _visible_to_body(body)
    out: list[QueueItem] = []
    for risk in RISK_ORDER:
        need = limit - len(out)
        if need <= 0:
            break
        cond = (Case.risk == risk, Case.closed_at.is_(None), visible)
        some = select(Case.id).where(*cond).limit(SMALL + 1).subquery()
        count = session.scalar(select(func.count()).select_from(some)) or 0
        if count == 0:
            continue
        out += _ordered_directly(session, cond, need) if count <= SMALL else _walked(session, cond, need)
    return out


def _ordered_directly(session: Session, cond: tuple[ColumnElement[bool], ...], need: int) -> list[QueueItem]:
    nearest = (select(func.min(DeadlineRow.due_at))
               .where(DeadlineRow.instance_id == Case.instance_id, DeadlineRow.status.in_(RUNNING))
               .correlate(Case).scalar_subquery().label("due"))
    stmt = (select(*_COLUMNS, nearest, *_TAIL).join(WorkflowInstance, WorkflowInstance.id == Case.instance_id)
            .where(*cond).order_by(nearest.asc().nulls_last(), Case.id).limit(need))
    return [QueueItem(*row) for row in session.execute(stmt)]


def _first_running(k: int) -> Subquery:
    """The first ``k`` running deadlines in due order: each status's ordered index range, merged."""
    parts = [select(DeadlineRow.id, DeadlineRow.instance_id, DeadlineRow.due_at).where(DeadlineRow.status == status)
             .order_by(DeadlineRow.due_at, DeadlineRow.id).limit(k).subquery().select() for status in RUNNING]
    merged = union_all(*parts).subquery()
    return select(merged).order_by(merged.c.due_at, merged.c.id).limit(k).subquery("first_running")


def _walked(session: Session, cond: tuple[ColumnElement[bool], ...], need: int) -> list[QueueItem]:
    k = max(1000, need * 20)
    while True:
        first = _first_running(k)
        due = func.min(first.c.due_at).label("due")
        stmt = (select(*_COLUMNS, due, *_TAIL).select_from(first)
                .join(Case, Case.instance_id == first.c.instance_id)
                .join(WorkflowInstance, WorkflowInstance.id == Case.instance_id).where(*cond)
                .group_by(Case.id, *_COLUMNS, *_TAIL).order_by(due, Case.id).limit(need))
        out = [QueueItem(*row) for row in session.execute(stmt)]
        if len(out) >= need:
            return out
        walked = session.scalar(select(func.count()).select_from(first)) or 0
        if walked < k:
            break  # every running deadline was read
        k *= 4
    running = exists().where(DeadlineRow.instance_id == Case.instance_id, DeadlineRow.status.in_(RUNNING))
    rest = (select(*_COLUMNS, null(), *_TAIL).join(WorkflowInstance, WorkflowInstance.id == Case.instance_id)
            .where(*cond, ~running).order_by(Case.id).limit(need - len(out)))
    return out + [QueueItem(*row) for row in session.execute(rest)]


def lead_summary(session: Session, body: str, at: datetime) -> LeadSummary:
    """How many of the body's open cases are overdue, and due within seven days. Each count looks at
    no more than ``COUNT_SCAN`` running deadlines per status (the earliest of the range); past that
    it is a lower bound, shown as "N or more"."""
    visible = _visible_to_body(body)

    def count(after: datetime | None, until: datetime) -> tuple[int, bool]:
        parts = []
        for status in RUNNING:
            conds = [DeadlineRow.status == status, DeadlineRow.due_at <= until]
            if after is not None:
                conds.append(DeadlineRow.due_at > after)
            parts.append(select(DeadlineRow.instance_id).where(*conds)
                         .order_by(DeadlineRow.due_at).limit(COUNT_SCAN).subquery())
        truncated = any((session.scalar(select(func.count()).select_from(p)) or 0) >= COUNT_SCAN for p in parts)
        found = union_all(*(p.select() for p in parts)).subquery("in_range")
        ids = (select(Case.id).distinct().select_from(found).join(Case, Case.instance_id == found.c.instance_id)
               .where(Case.closed_at.is_(None), visible))
        return int(session.scalar(select(func.count()).select_from(ids.subquery())) or 0), truncated

    overdue, more_overdue = count(None, at)
    week, more_week = count(at, at + timedelta(days=7))
    return LeadSummary(overdue, week, more_overdue, more_week)


def next_steps(engine: Engine, user: User, item: QueueItem) -> list[str]:
    """The actions the lead may take on a queued case (the queue holds only cases of their body)."""
    roles = {"lead"} | ({"staff"} if item.assigned_user_id == user.id else set())
    spec = engine.spec(item.spec_key, item.spec_version)
    return [t.label or t.name for t in spec.triggers_from(item.stage) if t.roles & roles]


def time_left(due: datetime | None, at: datetime) -> tuple[str, bool]:
    """('3 days left' | 'overdue by 5 hours', overdue?)"""
    if due is None:
        return "no running deadline", False
    seconds = (due - at).total_seconds()
    overdue = seconds < 0
    seconds = abs(seconds)
    if seconds >= 2 * 86400:
        amount = f"{int(seconds // 86400)} days"
    elif seconds >= 3600:
        hours = int(seconds // 3600)
        amount = f"{hours} hour{'s' if hours != 1 else ''}"
    else:
        minutes = max(1, int(seconds // 60))
        amount = f"{minutes} minute{'s' if minutes != 1 else ''}"
    return (f"overdue by {amount}", True) if overdue else (f"{amount} left", False)


# -- staff ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OwedDeadline:
    reference: str
    stage: str
    label: str
    due_at: datetime


def staff_owes(session: Session, user: User) -> tuple[list[OwedDeadline], list[tuple[str, str]]]:
    """Running deadlines of the open cases assigned to ``user``, soonest first; and their open cases
    with no running deadline (reference, stage)."""
    stmt = (select(Case.reference, WorkflowInstance.stage, DeadlineRow.label, DeadlineRow.due_at)
            .join(WorkflowInstance, WorkflowInstance.id == Case.instance_id)
            .join(DeadlineRow, and_(DeadlineRow.instance_id == Case.instance_id, DeadlineRow.status.in_(RUNNING)))
            .where(Case.assigned_user_id == user.id, Case.closed_at.is_(None))
            .order_by(DeadlineRow.due_at, Case.reference).limit(200))
    owed = [OwedDeadline(*row) for row in session.execute(stmt)]
    running = exists().where(DeadlineRow.instance_id == Case.instance_id, DeadlineRow.status.in_(RUNNING))
    others = session.execute(select(Case.reference, WorkflowInstance.stage)
                             .join(WorkflowInstance, WorkflowInstance.id == Case.instance_id)
                             .where(Case.assigned_user_id == user.id, Case.closed_at.is_(None), ~running)
                             .order_by(Case.reference).limit(200)).all()
    return owed, [(r, s) for r, s in others]


# -- auditors ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Activity:
    reference: str
    what: str
    who: str
    at: datetime


EVENT_WORDS = {"created": "Case reported", "assigned": "Assignment changed", "note_added": "Note added",
               "identity_viewed": "Identity viewed (with a reason)", "deadline_extended": "Deadline extended",
               "deadline_paused": "Deadline paused", "deadline_resumed": "Deadline resumed"}


def recent_activity(session: Session, engine: Engine, user: User, limit: int = 30) -> list[Activity]:
    """The latest history events of the cases the auditor's body owns or is party to: what, by whom
    (a user's name), when — never the event's data (reasons, fields), which may identify a person."""
    assert user.body_code is not None
    stmt = (select(Case.reference, WorkflowInstance.spec_key, WorkflowInstance.spec_version, HistoryEvent.kind,
                   HistoryEvent.trigger, HistoryEvent.actor_id, HistoryEvent.at)
            .select_from(HistoryEvent).join(Case, Case.instance_id == HistoryEvent.instance_id)
            .join(WorkflowInstance, WorkflowInstance.id == Case.instance_id)
            .where(_visible_to_body(user.body_code)).order_by(HistoryEvent.id.desc()).limit(limit))
    rows = session.execute(stmt).all()
    ids = {int(r.actor_id) for r in rows if r.actor_id and r.actor_id.isdigit()}
    names = dict(session.execute(select(User.id, User.name).where(User.id.in_(ids))).all()) if ids else {}
    out = []
    for r in rows:
        if r.kind == "transition" and r.trigger:
            trig = engine.spec(r.spec_key, r.spec_version).triggers.get(r.trigger)
            what = trig.label if trig and trig.label else r.trigger.replace("_", " ").capitalize()
        else:
            what = EVENT_WORDS.get(r.kind, r.kind.replace("_", " ").capitalize())
        who = names.get(int(r.actor_id), "A user") if r.actor_id and r.actor_id.isdigit() else "The system"
        out.append(Activity(r.reference, what, who, r.at))
    return out


@bp.get("/")
@signed_in
def index() -> ResponseReturnValue:
    user, at = me(), now()
    engine = runtime().engine

    def stage_label(key: str | None, version: int | None, stage: str) -> str:
        spec = engine.spec(key or SPEC_KEY, version)
        return spec.stages[stage].label if stage in spec.stages else stage.replace("_", " ").capitalize()

    context: dict[str, Any] = {"user": user, "time_left": lambda d: time_left(d, at), "local_text": local_text,
                               "stage_label": stage_label}
    if user.pending:  # nothing of any case until a lead of the body confirms the account (decision 22)
        context.update(pending_words=pending_words(user))
    elif user.role is Role.LEAD and user.body_code:
        items = lead_queue(db(), user.body_code)
        context.update(to_confirm=len(list_pending(db(), user)))
        context.update(queue=[(i, next_steps(engine, user, i)) for i in items],
                       summary=lead_summary(db(), user.body_code, at), queue_size=QUEUE_SIZE)
    elif user.role is Role.STAFF:
        owed, without = staff_owes(db(), user)
        context.update(owed=owed, without=without)
    elif user.role is Role.AUDITOR and user.body_code:
        context.update(activity=recent_activity(db(), engine, user))
    return render_template("home/index.html", **context)
