"""What comes next on a case, in words: the one next action (the stage's ``next`` in the protocol file, the
first of them the viewer is offered) and its deadline ("due 5pm Fri 4 Dec", "Paused: 3 working days left
when paused"). Shared by the lead's queue, the staff home and the case list, so every row says it alike."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from reprisals.access import CaseActor, has_access
from reprisals.models import Risk, Role, User
from reprisals.protocol import kind_of
from reprisals.vocabulary import LONDON, moment_words, time_left
from workflow.calendars import WorkingCalendar, calendar_for
from workflow.engine import Engine
from workflow.models import LIVE, OPEN, OVERDUE, PAUSED, DeadlineRow, WorkflowInstance
from workflow.spec import Unit, WorkflowSpec

RUNNING = (OPEN, OVERDUE)  # deadlines whose clock runs
NEVER_NEXT = ("withdrawal", "left_custody")  # they end a case: offered, never suggested
RISK_RANK = {Risk.URGENT: 0, Risk.HIGH: 1, Risk.STANDARD: 2}
RISK_TAGS = {Risk.URGENT: "govuk-tag--red", Risk.HIGH: "govuk-tag--orange", Risk.STANDARD: "govuk-tag--grey"}


@dataclass(frozen=True)
class Due:
    """A case's nearest deadline, in words."""

    due_at: datetime | None  # the nearest running deadline (None: paused or none)
    label: str | None  # the deadline's label, "Consent and risk"
    words: str  # "due 5pm Fri 4 Dec" | "Paused: 3 working days left when paused" | "No deadline"
    left: str | None  # "3 working days left" | "overdue by 5 hours" | "due today" | "2 working days left when paused"
    overdue: bool
    paused: bool


NO_DEADLINE = Due(None, None, "No deadline", None, False, False)


@dataclass(frozen=True)
class Step:
    """An action of the protocol on one case: its trigger, label, and whether the viewer may take it."""

    trigger: str
    label: str
    offered: bool  # the viewer may take it now: shown as a link to its form
    by: str | None = None  # when not offered: who must ("a lead of IMB")


@dataclass
class Deadlines:
    """The live deadlines of some instances, read once for a page."""

    rows: dict[int, list[DeadlineRow]]

    @classmethod
    def read(cls, session: Session, instance_ids: Iterable[int]) -> Deadlines:
        ids = list(instance_ids)
        out: dict[int, list[DeadlineRow]] = {i: [] for i in ids}
        if ids:
            for row in session.scalars(select(DeadlineRow).where(DeadlineRow.instance_id.in_(ids),
                                                                 DeadlineRow.status.in_(LIVE))
                                       .order_by(DeadlineRow.due_at, DeadlineRow.id)):
                out[row.instance_id].append(row)
        return cls(out)

    def of(self, instance_id: int) -> list[DeadlineRow]:
        return self.rows.get(instance_id, [])


_CALENDARS: dict[str | None, WorkingCalendar] = {}


def _calendar(name: str | None) -> WorkingCalendar:
    if name not in _CALENDARS:
        _CALENDARS[name] = calendar_for(name)
    return _CALENDARS[name]


def due_of(live: list[DeadlineRow], calendar: str | None, at: datetime) -> Due:
    """The nearest running deadline in words; a case whose deadlines are all paused says "Paused" with the
    time that was left when it was paused (the nearest)."""
    running = [d for d in live if d.status in RUNNING]
    if running:
        d = min(running, key=lambda r: (r.due_at, r.id))
        left = time_left(d.due_at, at, in_hours=d.unit == Unit.HOURS.value, calendar=_calendar(calendar))
        when = moment_words(d.due_at, short=True)
        if d.due_at.astimezone(LONDON).year != at.astimezone(LONDON).year:  # the short form has no year
            when += f" {d.due_at.astimezone(LONDON).year}"
        return Due(d.due_at, d.label, f"due {when}", left.words, left.overdue, False)
    paused = [d for d in live if d.status == PAUSED and d.paused_at is not None]
    if paused:
        d = min(paused, key=lambda r: (r.due_at - (r.paused_at or r.due_at), r.id))
        assert d.paused_at is not None
        left = time_left(d.due_at, d.paused_at, in_hours=d.unit == Unit.HOURS.value, calendar=_calendar(calendar))
        return Due(None, d.label, f"Paused: {left.words} when paused", f"{left.words} when paused", False, True)
    return NO_DEADLINE


def case_actor(viewer: User, assigned_user_id: int | None) -> CaseActor:
    """The viewer's roles on a case they can see (``access.case_roles`` for a visible case: a lead sees only
    cases of their body, so is its lead; staff and leads are its staff when it is assigned to them)."""
    roles: set[str] = set()
    if has_access(viewer):
        if viewer.role is Role.LEAD:
            roles.add("lead")
        if viewer.role in (Role.STAFF, Role.LEAD) and assigned_user_id == viewer.id:
            roles.add("staff")
    return CaseActor(str(viewer.id), frozenset(roles))


def who_must(spec: WorkflowSpec, trigger: str, body: str, assignee: str | None,
             leads: Mapping[str, list[str]] | None = None) -> str:
    """Who may take ``trigger``: "a lead of IMB (Ann Lead, Bob Lead)", the assignee by name, or both
    ("Sam Staff or a lead of IMB")."""
    trig = spec.triggers[trigger]
    if "lead" in trig.roles:
        names = (leads or {}).get(body, [])
        named = f" ({', '.join(names[:3])}{' and others' if len(names) > 3 else ''})" if names else ""
        lead = f"a lead of {body}{named}"
        return f"{assignee} or {lead}" if "staff" in trig.roles and assignee else lead
    return assignee or "the member of staff it is assigned to (nobody yet)"


def next_step(engine: Engine, spec: WorkflowSpec, instance: WorkflowInstance, actor: CaseActor, at: datetime,
              body: str, assignee: str | None, leads: Mapping[str, list[str]] | None = None) -> Step | None:
    """The stage's next step: the first trigger of ``stage.next`` the actor is offered; if none is, the first
    of them with who must take it. None at a stage with no next step (closed)."""
    stage = spec.stages.get(instance.stage)
    if stage is None or not stage.next:
        return None
    offered = {o.trigger.name for o in engine.offers(instance, actor, at)} if actor.roles else set()
    for name in stage.next:
        if name in offered and kind_of(spec, name) not in NEVER_NEXT:
            return Step(name, spec.triggers[name].label, True)
    first = stage.next[0]
    return Step(first, spec.triggers[first].label, False, who_must(spec, first, body, assignee, leads))


def other_steps(engine: Engine, spec: WorkflowSpec, instance: WorkflowInstance, actor: CaseActor,
                at: datetime, skip: str | None) -> list[Step]:
    """The other actions the actor is offered (not the next step, never withdraw or left custody)."""
    return [Step(o.trigger.name, o.trigger.label, True) for o in engine.offers(instance, actor, at)
            if o.trigger.name != skip and kind_of(spec, o.trigger.name) not in NEVER_NEXT]


def instances(session: Session, ids: Iterable[int]) -> dict[int, WorkflowInstance]:
    wanted = list(ids)
    if not wanted:
        return {}
    return {i.id: i for i in session.scalars(select(WorkflowInstance).where(WorkflowInstance.id.in_(wanted)))}


def leads_by_body(session: Session, bodies: Iterable[str]) -> dict[str, list[str]]:
    """The names of each body's active, confirmed leads (for "who must do the rest")."""
    wanted = sorted(set(bodies))
    out: dict[str, list[str]] = {b: [] for b in wanted}
    if wanted:
        for code, name in session.execute(
                select(User.body_code, User.name).where(User.body_code.in_(wanted), User.role == Role.LEAD,
                                                        User.active.is_(True), User.confirmed_at.is_not(None))
                .order_by(User.name, User.id)):
            out[str(code)].append(name)
    return out
