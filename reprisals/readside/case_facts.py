"""The case page's facts (decision 30): its history, the people it names, its deadlines with their pauses
and extensions, the proposed finding waiting for a second lead, the status banner (what is due next, by
when, by whom, and the one next step to offer), what stops if the case is closed early, and what a
decision needs in front of it (the response, the proposed finding and its assessment).

Everything here reads; nothing writes or commits. Free text (reasons, summaries, the assessment) is read
only through the viewer's ``Sensitive`` view: outside their unlock window it is None, with whether it was
given, so the page can say "Reason given — show identity to read it".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from reprisals.access import actor_for, visible_cases
from reprisals.letters import RESPONDER_WORDS
from reprisals.models import Body, Case, User
from reprisals.protocol import SECOND_LEAD_OUTCOMES, kind_of, proposed_by_actor
from reprisals.sensitive import Sensitive, split_event
from reprisals.services import offered_actions
from reprisals.vocabulary import OUTCOME_LABELS, TimeLeft, time_left
from workflow.calendars import WorkingCalendar
from workflow.clock import ensure_utc
from workflow.engine import Engine, Offer
from workflow.models import LIVE, OVERDUE, PAUSED, PENDING, REMINDER, DeadlineRow, HistoryEvent, TimerRow
from workflow.spec import Trigger, Unit, WorkflowSpec

# Closing a case early: never "the next step"; offered behind a page that says what stops.
STOPPING_KINDS = frozenset({"withdrawal", "left_custody"})
STOPPING_TRIGGERS = frozenset({"withdraw", "left_custody"})  # version 1 names them, without kinds


def is_stopping(spec: WorkflowSpec, trigger: str) -> bool:
    """Whether ``trigger`` closes the case early (the person withdrew or left custody)."""
    return trigger in STOPPING_TRIGGERS or kind_of(spec, trigger) in STOPPING_KINDS


# -- history and the people it names ----------------------------------------------------------------


def history(session: Session, case: Case, after_seq: int = 0) -> list[Any]:
    """The case's history as plain rows, oldest first (no ORM objects: a page shows hundreds of events)."""
    h = HistoryEvent
    return list(session.execute(
        select(h.seq, h.kind, h.trigger, h.from_stage, h.to_stage, h.actor_id, h.at, h.data, h.corrects_seq)
        .where(h.instance_id == case.instance_id, h.seq > after_seq).order_by(h.seq)))


def people_named(events: Iterable[Any]) -> set[Any]:
    """The user ids a history names: who acted, and who a case was assigned from and to."""
    ids: set[Any] = set()
    for e in events:
        ids.add(e.actor_id)
        if e.kind == "assigned" and isinstance(e.data, dict):
            ids |= {e.data.get("from"), e.data.get("to")}
    return ids


def users_by_id(session: Session, ids: Iterable[Any]) -> dict[str, User]:
    """Users by id (as text), in one query; ids that are not users' are left out."""
    wanted = {int(i) for i in ids if i is not None and str(i).isdigit() and len(str(i)) < 10}
    if not wanted:
        return {}
    return {str(u.id): u for u in session.scalars(select(User).where(User.id.in_(wanted)))}


def body_names(session: Session) -> dict[str, str]:
    return {b.code: b.name for b in session.scalars(select(Body))}


def visible_references(session: Session, viewer: User, references: Iterable[str]) -> set[str]:
    """Those of ``references`` naming cases ``viewer`` may see (a case they may not see is never named)."""
    wanted = {r for r in references if r}
    if not wanted:
        return set()
    return set(session.scalars(visible_cases(viewer).with_only_columns(Case.reference)
                               .where(Case.reference.in_(wanted))))


# -- the proposed finding and the response ------------------------------------------------------------


@dataclass(frozen=True)
class Proposal:
    """A proposed finding (PROTOCOL: one that needs a second lead cannot be confirmed by its proposer)."""

    finding: str  # in words
    proposed_by: User | None
    on: datetime
    assessment: str | None  # the assessment's text, inside the viewer's window
    assessment_given: bool = False
    needs_second_lead: bool = True


def proposal(session: Session, case: Case, spec: WorkflowSpec, view: Sensitive | None, *,
             waiting_only: bool = True) -> Proposal | None:
    """The finding proposed on the case, from the latest action that proposed it. ``waiting_only``: only
    one waiting for a second lead (an outcome that needs one, while the case is in follow-up or closure
    review)."""
    v = case.instance.variables
    finding = v.get("proposed_finding")
    if not finding or case.stage in ("closed", "reported", "triage"):
        return None
    needs_second = finding in SECOND_LEAD_OUTCOMES
    if waiting_only and not needs_second:
        return None
    h = HistoryEvent
    rows = session.execute(select(h.seq, h.kind, h.trigger, h.data, h.at).where(
        h.instance_id == case.instance_id, h.kind == "transition").order_by(h.seq.desc()))
    event = next((r for r in rows if kind_of(spec, r.trigger) == "finding"), None)
    if event is None:
        return None
    by = str(v.get("finding_proposed_by") or "")
    proposer = session.get(User, int(by)) if by.isdigit() and len(by) < 10 else None
    happened = event.data.get("occurred_at") if isinstance(event.data, dict) else None  # as recorded
    on = ensure_utc(datetime.fromisoformat(happened)) if isinstance(happened, str) else ensure_utc(event.at)
    _, free = split_event(spec, event)
    text = view.text(free["assessment"]) if view is not None and "assessment" in free else None
    return Proposal(OUTCOME_LABELS.get(str(finding), str(finding)), proposer, on, text, "assessment" in free,
                    needs_second)


@dataclass(frozen=True)
class ResponseFacts:
    """The latest response recorded on the case (from the establishment, or an escalation's recipient)."""

    responder: str | None  # in words
    on: datetime
    summary: str | None  # inside the viewer's window
    summary_given: bool
    recorded_by: User | None


def latest_response(session: Session, case: Case, spec: WorkflowSpec, view: Sensitive | None) -> ResponseFacts | None:
    h = HistoryEvent
    rows = session.execute(select(h.seq, h.kind, h.trigger, h.data, h.at, h.actor_id).where(
        h.instance_id == case.instance_id, h.kind == "transition").order_by(h.seq.desc()))
    event = next((r for r in rows if kind_of(spec, r.trigger) == "response"), None)
    if event is None:
        return None
    data, free = split_event(spec, event)
    given = dict(data.get("fields") or {})
    responder = given.get("responder")
    happened = event.data.get("occurred_at") if isinstance(event.data, dict) else None
    on = ensure_utc(datetime.fromisoformat(happened)) if isinstance(happened, str) else ensure_utc(event.at)
    summary = view.text(free["summary"]) if view is not None and "summary" in free else None
    by = users_by_id(session, [event.actor_id]).get(str(event.actor_id))
    return ResponseFacts(RESPONDER_WORDS.get(str(responder), str(responder).replace("_", " ").capitalize())
                         if responder else None, on, summary, "summary" in free, by)


@dataclass(frozen=True)
class DecisionContext:
    """What a lead needs in front of them where a decision is made (accept, reject, close, send back)."""

    response: ResponseFacts | None
    proposal: Proposal | None

    @property
    def sensitive(self) -> bool:
        """Whether it holds free text that is shown only inside an unlock window."""
        return bool((self.response and self.response.summary_given)
                    or (self.proposal and self.proposal.assessment_given))


DECISION_KINDS = frozenset({"finding", "closure", "send_back"})


def is_decision(spec: WorkflowSpec, trigger: str, stage: str) -> bool:
    """Accepting or rejecting the response (from assessment), closing, or sending a finding back."""
    kind = kind_of(spec, trigger)
    return kind in DECISION_KINDS or (kind == "escalation" and stage == "assessment")


def decision_context(session: Session, case: Case, spec: WorkflowSpec, trigger: str,
                     view: Sensitive | None) -> DecisionContext | None:
    """The decision context of ``trigger`` on ``case``, or None where it is not a decision."""
    if not is_decision(spec, trigger, case.stage):
        return None
    found = proposal(session, case, spec, view, waiting_only=False) if kind_of(spec, trigger) in (
        "closure", "send_back") else None
    context = DecisionContext(latest_response(session, case, spec, view), found)
    return context if context.response or context.proposal else None


# -- deadlines ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pause:
    since: datetime
    by: str  # a name
    reason: str | None  # inside the viewer's window
    reason_given: bool
    left_when_paused: str  # '3 working days left', '5 hours left'


@dataclass(frozen=True)
class Extension:
    was: datetime
    now: datetime
    by: str
    on: datetime  # when it was extended
    reason: str | None
    reason_given: bool


@dataclass(frozen=True)
class DeadlineFacts:
    name: str
    label: str
    stage: str
    due_at: datetime
    in_hours: bool  # a clock-hour deadline (urgent): said in hours
    left: TimeLeft
    overdue: bool
    paused: bool
    pause: Pause | None = None
    extensions: list[Extension] = field(default_factory=list)
    reminders: int = 0  # reminders still to be sent


def _name(users: dict[str, User], uid: Any) -> str:
    u = users.get(str(uid)) if uid is not None else None
    return u.name if u else ("The system" if uid is None else "Unknown user")


def deadlines(session: Session, case: Case, spec: WorkflowSpec, calendar: WorkingCalendar, at: datetime,
              view: Sensitive | None = None) -> list[DeadlineFacts]:
    """The case's running deadlines (open, paused or overdue), soonest first, each with how much time is
    left (working days, or hours for a clock-hour one), its pause (since when, by whom, why, the time left
    when it was paused) and its extensions (from what to what, by whom, why), and how many reminders are
    still to come. Three queries."""
    rows = list(session.scalars(select(DeadlineRow).where(DeadlineRow.instance_id == case.instance_id,
                                                          DeadlineRow.status.in_(LIVE))
                                .order_by(DeadlineRow.due_at, DeadlineRow.id)))
    if not rows:
        return []
    h = HistoryEvent
    first_entry = min(r.entry_seq for r in rows)
    events = list(session.execute(select(h.seq, h.kind, h.trigger, h.actor_id, h.at, h.data).where(
        h.instance_id == case.instance_id, h.kind.in_(("deadline_extended", "deadline_paused")),
        h.seq > first_entry).order_by(h.seq)))
    reminders: dict[int, int] = {int(d): int(n) for d, n in session.execute(
        select(TimerRow.deadline_id, func.count()).where(TimerRow.deadline_id.in_([r.id for r in rows]),
                                                         TimerRow.status == PENDING, TimerRow.kind == REMINDER)
        .group_by(TimerRow.deadline_id))}
    users = users_by_id(session, {e.actor_id for e in events})
    spec_free = _FreeText(spec, view)
    out: list[DeadlineFacts] = []
    at = ensure_utc(at)
    for row in rows:
        mine = [e for e in events if e.seq > row.entry_seq and isinstance(e.data, dict)
                and e.data.get("deadline") == row.name]
        in_hours = row.unit == Unit.HOURS.value
        due = ensure_utc(row.due_at)
        paused = row.status == PAUSED
        pause = None
        if paused and row.paused_at is not None:
            since = ensure_utc(row.paused_at)
            event = next((e for e in reversed(mine) if e.kind == "deadline_paused"), None)
            reason, given = spec_free.reason(event)
            pause = Pause(since, _name(users, event.actor_id) if event is not None else "Unknown user", reason, given,
                          time_left(due, since, in_hours=in_hours, calendar=calendar).words)
        extensions = []
        for e in mine:
            if e.kind != "deadline_extended" or not e.data.get("from") or not e.data.get("to"):
                continue
            reason, given = spec_free.reason(e)
            extensions.append(Extension(ensure_utc(datetime.fromisoformat(str(e.data["from"]))),
                                        ensure_utc(datetime.fromisoformat(str(e.data["to"]))),
                                        _name(users, e.actor_id), ensure_utc(e.at), reason, given))
        left = time_left(due, at, in_hours=in_hours, calendar=calendar)
        overdue = not paused and (row.status == OVERDUE or left.overdue)
        out.append(DeadlineFacts(row.name, row.label, row.stage, due, in_hours, left, overdue, paused, pause,
                                 extensions, reminders.get(row.id, 0)))
    return out


@dataclass
class _FreeText:
    spec: WorkflowSpec
    view: Sensitive | None

    def reason(self, event: Any) -> tuple[str | None, bool]:
        """An event's reason: its text inside the viewer's window (else None), and whether one was given."""
        if event is None:
            return None, False
        _, free = split_event(self.spec, event)
        if "reason" not in free:
            return None, False
        return (self.view.text(free["reason"]) if self.view is not None else None), True


# -- the status banner ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Status:
    """The top of every case page: the stage, what is due next, by when and by whom, and the one next step
    this user is offered (``primary``); the rest of their actions, and those that close the case early."""

    stage: str  # in words
    closed: bool
    next_step: Trigger | None  # the stage's next step (whoever may take it)
    primary: Offer | None  # the next step, if this user is offered it
    due: DeadlineFacts | None  # the soonest running deadline
    by_whom: str | None
    overdue: bool
    waiting_for: str | None  # "Waiting for a lead other than …": the proposer's name
    others: list[Offer]
    stopping: list[Offer]


def status(engine: Engine, session: Session, user: User, case: Case, spec: WorkflowSpec, at: datetime,
           running: list[DeadlineFacts], waiting: Proposal | None) -> Status:
    offers = offered_actions(engine, user, case, at)
    offered = {o.trigger.name: o for o in offers}
    stage = spec.stages.get(case.stage)
    names = [n for n in (stage.next if stage is not None else ()) if n in spec.triggers
             and not is_stopping(spec, n)]
    proposer_here = waiting is not None and proposed_by_actor(case.instance.variables, actor_for(user, case).id)
    primary = next((offered[n] for n in names if n in offered), None)
    if primary is not None and proposer_here and kind_of(spec, primary.trigger.name) == "closure":
        primary = None  # the proposer may close only with an outcome that needs no second lead
    step = primary.trigger if primary is not None else (spec.triggers[names[0]] if names else None)
    stopping = [o for o in offers if is_stopping(spec, o.trigger.name)]
    others = [o for o in offers if o is not primary and o not in stopping]
    ticking = [d for d in running if not d.paused]
    due = ticking[0] if ticking else (running[0] if running else None)
    owning = body_names(session).get(case.owning_body_code, case.owning_body_code)
    by_whom = None
    if waiting is not None:
        name = waiting.proposed_by.name if waiting.proposed_by else "the lead who proposed it"
        by_whom = f"A lead of {owning} other than {name}"
    elif step is not None:
        assignee = users_by_id(session, [case.assigned_user_id]).get(str(case.assigned_user_id))
        if assignee is not None and assignee.role.value in step.roles:
            by_whom = assignee.name
        elif "lead" in step.roles:
            by_whom = f"A lead of {owning}"
        else:
            by_whom = "Whoever the case is assigned to"
    return Status(stage.label if stage is not None else case.stage, bool(stage is not None and stage.final), step,
                  primary, due, by_whom, any(d.overdue for d in running),
                  (waiting.proposed_by.name if waiting.proposed_by else "the lead who proposed it")
                  if waiting is not None else None, others, stopping)
