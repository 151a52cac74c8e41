"""The homes: a lead's queue and its counts, what a member of staff owes, an auditor's recent activity.

The lead's queue orders a body's open cases (owned or party to) overdue first, then by time left (the nearest
running deadline), then by risk (urgent, high, standard); cases whose deadlines are all paused come last, by
risk. It is computed in the database and stays fast with 100,000 cases (benchmark 5): computing every open
case's nearest deadline and sorting them all costs time in proportion to the body's cases, so

* a body with few open cases (``SMALL``) is ordered directly, each case's nearest deadline found through
  ``ix_wf_deadlines_instance_id``;
* a larger one is found by walking running deadlines in due order (``ix_wf_deadlines_status_due_at``, one
  ordered range per status, merged) and keeping the first cases of the body: the first time a case is met is
  its nearest deadline. The walk takes ``k`` deadlines and grows ``k`` fourfold until the queue is full, so
  it reads about as many deadlines as it takes to find 50 of the body's cases.

The overdue and due-this-week counts read at most ``COUNT_SCAN`` deadlines per status for the same reason
(beyond, "N or more"); they count what the case list's ``overdue=yes`` and ``due=week`` filters list.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Subquery, case, exists, func, null, or_, select, union_all
from sqlalchemy.orm import Session

from reprisals.models import Body, Case, CaseParty, Establishment, Risk, Role, User
from reprisals.readside.rows import CaseRow, case_rows
from reprisals.readside.steps import RUNNING
from workflow.engine import Engine
from workflow.models import DeadlineRow, HistoryEvent, WorkflowInstance

QUEUE_SIZE = 50
SMALL = 300
COUNT_SCAN = 1000
WEEK = timedelta(days=7)


def _visible_to_body(body: str) -> ColumnElement[bool]:
    """Owned by the body or the body is party to it. EXISTS (a primary-key probe per case), not IN (a
    list of every case the body is party to, built before the first row)."""
    party = exists().where(CaseParty.case_id == Case.id, CaseParty.body_code == body)
    return or_(Case.owning_body_code == body, party)


def _risk_rank() -> ColumnElement[int]:
    return case((Case.risk == Risk.URGENT, 0), (Case.risk == Risk.HIGH, 1), else_=2)


def queue_ids(session: Session, body: str, limit: int = QUEUE_SIZE) -> list[int]:
    """The ids of a body's open cases in queue order (overdue, time left, risk), at most ``limit``."""
    cond = (Case.closed_at.is_(None), _visible_to_body(body))
    some = select(Case.id).where(*cond).limit(SMALL + 1).subquery()
    count = session.scalar(select(func.count()).select_from(some)) or 0
    if count == 0:
        return []
    return _ordered_directly(session, cond, limit) if count <= SMALL else _walked(session, cond, limit)


def _ordered_directly(session: Session, cond: tuple[ColumnElement[bool], ...], need: int) -> list[int]:
    nearest = (select(func.min(DeadlineRow.due_at))
               .where(DeadlineRow.instance_id == Case.instance_id, DeadlineRow.status.in_(RUNNING))
               .correlate(Case).scalar_subquery().label("due"))
    stmt = (select(Case.id, nearest).where(*cond)
            .order_by(nearest.asc().nulls_last(), _risk_rank(), Case.id).limit(need))
    return [row[0] for row in session.execute(stmt)]


def _first_running(k: int) -> Subquery:
    """The first ``k`` running deadlines in due order: each status's ordered index range, merged."""
    parts = [select(DeadlineRow.id, DeadlineRow.instance_id, DeadlineRow.due_at).where(DeadlineRow.status == status)
             .order_by(DeadlineRow.due_at, DeadlineRow.id).limit(k).subquery().select() for status in RUNNING]
    merged = union_all(*parts).subquery()
    return select(merged).order_by(merged.c.due_at, merged.c.id).limit(k).subquery("first_running")


def _walked(session: Session, cond: tuple[ColumnElement[bool], ...], need: int) -> list[int]:
    k = max(1000, need * 20)
    while True:
        first = _first_running(k)
        due = func.min(first.c.due_at).label("due")
        stmt = (select(Case.id, due).select_from(first).join(Case, Case.instance_id == first.c.instance_id)
                .where(*cond).group_by(Case.id, Case.risk).order_by(due, _risk_rank(), Case.id).limit(need))
        out = [row[0] for row in session.execute(stmt)]
        if len(out) >= need:
            return out
        walked = session.scalar(select(func.count()).select_from(first)) or 0
        if walked < k:
            break  # every running deadline was read
        k *= 4
    running = exists().where(DeadlineRow.instance_id == Case.instance_id, DeadlineRow.status.in_(RUNNING))
    rest = (select(Case.id, null()).where(*cond, ~running).order_by(_risk_rank(), Case.id).limit(need - len(out)))
    return out + [row[0] for row in session.execute(rest)]


@dataclass(frozen=True)
class LeadSummary:
    overdue: int
    due_this_week: int
    overdue_at_least: bool  # more may be overdue than were counted
    due_this_week_at_least: bool


def lead_summary(session: Session, body: str, at: datetime) -> LeadSummary:
    """How many of the body's open cases have a running deadline past due, and due within seven days. Each
    count looks at no more than ``COUNT_SCAN`` running deadlines per status (the earliest of the range); past
    that it is a lower bound, shown as "N or more"."""
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
    week, more_week = count(at, at + WEEK)
    return LeadSummary(overdue, week, more_overdue, more_week)


@dataclass(frozen=True)
class LeadHome:
    rows: list[CaseRow]
    summary: LeadSummary
    size: int  # the queue's most rows
    body_has_cases: bool  # any case at all, open or closed (an empty body sees what to do first)


def lead_home(session: Session, engine: Engine, lead: User, at: datetime) -> LeadHome:
    assert lead.body_code is not None
    ids = queue_ids(session, lead.body_code)
    rows = case_rows(session, engine, lead, ids, at)
    return LeadHome(rows, lead_summary(session, lead.body_code, at), QUEUE_SIZE,
                    bool(ids) or _any_case(session, lead.body_code))


def _any_case(session: Session, body: str) -> bool:
    return session.scalar(select(Case.id).where(_visible_to_body(body)).limit(1)) is not None


# -- staff ---------------------------------------------------------------------------------------------

STAFF_LIMIT = 200


@dataclass(frozen=True)
class StaffHome:
    rows: list[CaseRow]  # their open cases: the soonest running deadline first, then the paused, by reference
    more: bool  # more than STAFF_LIMIT


def staff_home(session: Session, engine: Engine, user: User, at: datetime) -> StaffHome:
    """The open cases assigned to ``user``: on each, what they can do, and who (named) must do the rest."""
    nearest = (select(func.min(DeadlineRow.due_at))
               .where(DeadlineRow.instance_id == Case.instance_id, DeadlineRow.status.in_(RUNNING))
               .correlate(Case).scalar_subquery())
    ids = list(session.scalars(select(Case.id).where(Case.assigned_user_id == user.id, Case.closed_at.is_(None))
                               .order_by(nearest.asc().nulls_last(), _risk_rank(), Case.reference)
                               .limit(STAFF_LIMIT + 1)))
    rows = case_rows(session, engine, user, ids[:STAFF_LIMIT], at, others=True, name_leads=True)
    return StaffHome(rows, len(ids) > STAFF_LIMIT)


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


# -- a body that has just gone live ----------------------------------------------------------------------


def body_name(session: Session, code: str | None) -> str | None:
    return session.scalar(select(Body.name).where(Body.code == code)) if code else None


def has_establishments_and_users(session: Session) -> tuple[bool, bool]:
    """For an administrator's first steps: is there an establishment yet, and a user other than admins?"""
    est = session.scalar(select(Establishment.id).limit(1)) is not None
    users = session.scalar(select(User.id).where(User.role != Role.ADMIN).limit(1)) is not None
    return est, users
