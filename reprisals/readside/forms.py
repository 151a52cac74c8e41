"""The read side of the forms: what the report-a-concern questions offer and say, and what a new case's
confirmation tells the reporter (decision 31). The views render what these return; they build no query.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from reprisals.messaging import leads_of_bodies
from reprisals.models import Body, Case, Establishment, EstablishmentType, Risk, Role, User
from reprisals.protocol import SPEC_KEY
from reprisals.protocol_store import active_version
from reprisals.services import assignable_users
from reprisals.vocabulary import RISK_MEANINGS
from workflow.engine import Engine
from workflow.models import DeadlineRow
from workflow.spec import Duration, Unit, WorkflowSpec

# -- the questions' options ---------------------------------------------------------------------------


def establishment_options(session: Session) -> list[tuple[int, str]]:
    """The establishments a concern can be reported for (active ones), by name."""
    return [(i, n) for i, n in session.execute(
        select(Establishment.id, Establishment.name).where(Establishment.active.is_(True))
        .order_by(Establishment.name))]


def establishment_type(session: Session, establishment_id: int | None) -> EstablishmentType | None:
    if establishment_id is None:
        return None
    return session.scalar(select(Establishment.type).where(Establishment.id == establishment_id))


def establishment_name(session: Session, establishment_id: int | None) -> str:
    if establishment_id is None:
        return ""
    return session.scalar(select(Establishment.name).where(Establishment.id == establishment_id)) or ""


def other_body_options(session: Session, own_body: str | None) -> list[tuple[str, str]]:
    """The bodies other than the reporter's, by name (those that may be parties to the case)."""
    return [(c, n) for c, n in session.execute(
        select(Body.code, Body.name).where(Body.code != own_body).order_by(Body.name))]


def body_names(session: Session) -> dict[str, str]:
    return {c: n for c, n in session.execute(select(Body.code, Body.name))}


def assignee_options(session: Session, own_body: str) -> list[tuple[int, str]]:
    """Who a new case of ``own_body`` may be assigned to: 'Name (IMB, staff)'."""
    return [(u.id, f"{u.name} ({u.body_code}, {u.role.value})") for u in assignable_users(session, own_body)]


def user_name(session: Session, user_id: int | None) -> str:
    if user_id is None:
        return ""
    return session.scalar(select(User.name).where(User.id == user_id)) or ""


# -- the risk question: what each level means and which deadlines it sets --------------------------------


def _within(d: Duration) -> str:
    if d.unit is Unit.WORKING_DAYS and d.amount == 0:
        return "the same working day"
    return f"within {d}"


def risk_hints(spec: WorkflowSpec) -> dict[str, str]:
    """For each risk level: what it means, and the deadlines the protocol file sets by it, those in clock
    hours (which run through weekends and holidays) said first."""
    out: dict[str, str] = {}
    for risk in Risk:
        hours: list[str] = []
        days: list[str] = []
        for stage in spec.stages.values():
            for d in stage.deadlines:
                if set(d.when) - {"risk"} or (d.when and risk.value not in d.when.get("risk", ())):
                    continue  # set by something other than the risk, or not for this level
                if d.due.by != "risk" and not d.when:
                    continue  # the same whatever the risk
                due = d.due.for_variables({"risk": risk.value})
                if due is None:
                    continue
                (hours if due.unit is Unit.HOURS else days).append(f"{d.label.lower()} {_within(due)}")
        words = [RISK_MEANINGS[risk]]
        if hours:
            words.append("Deadlines run in hours, weekends and holidays included: " + ", ".join(hours) + ".")
        if days:
            lead = "Other deadlines" if hours else "Deadlines"
            words.append(f"{lead} in working days: " + ", ".join(days) + ".")
        out[risk.value] = " ".join(words)
    return out


def new_case_spec(session: Session, engine: Engine) -> WorkflowSpec:
    """The protocol version a case reported now opens on."""
    return engine.spec(SPEC_KEY, active_version(session, engine, SPEC_KEY))


# -- after the report: the confirmation ------------------------------------------------------------------


@dataclass(frozen=True)
class OpenedCase:
    reference: str
    first_deadline: str | None  # its label, such as 'Consent and risk recorded'
    due_at: datetime | None
    told: tuple[str, ...]  # who was sent a message, by name or role (never the person's identity)


def opened_case(session: Session, reference: str) -> OpenedCase | None:
    """What the reporter is told when the case opens: its first deadline, and who was told about it."""
    case = session.scalars(select(Case).where(Case.reference == reference)).one_or_none()
    if case is None:
        return None
    first = session.scalars(select(DeadlineRow).where(DeadlineRow.instance_id == case.instance_id,
                                                      DeadlineRow.status != "done")  # overdue too
                            .order_by(DeadlineRow.due_at, DeadlineRow.id).limit(1)).first()
    told: list[str] = []
    if case.assigned_user_id is not None and case.assigned_user_id != case.receiving_user_id:
        assignee = session.get(User, case.assigned_user_id)
        if assignee is not None:
            role = "lead" if assignee.role is Role.LEAD else "member of staff"
            told.append(f"{assignee.name}, the {role} it is assigned to")
    codes = sorted(case.party_codes)
    if codes:
        names = body_names(session)
        for code, leads in leads_of_bodies(session, codes).items():
            if leads:
                told.append(f"The leads of {names.get(code, code)}, who can now see the case")
    return OpenedCase(case.reference, first.label if first else None, first.due_at if first else None, tuple(told))

