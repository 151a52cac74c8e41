"""One case as a row of a queue or list, in words: what it is (never who), what comes next and by when.

``case_rows`` reads a page's rows in a fixed number of queries whatever the page's size: the cases' columns
with their workflow instances, establishments and assignees; the parties; the live deadlines; and (only
when a step is not the viewer's) the names of the leads who must take it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from reprisals.models import Case as CaseModel
from reprisals.models import CaseParty, Consent, EstablishmentType, Nation, Outcome, Risk, User
from reprisals.models import Establishment as EstablishmentModel
from reprisals.readside.steps import RISK_TAGS, Deadlines, Due, Step, case_actor, due_of, next_step, other_steps
from reprisals.readside.steps import leads_by_body as _leads_by_body
from reprisals.vocabulary import LONDON, RISK_LABELS, long_date
from workflow.engine import Engine
from workflow.models import OVERDUE, WorkflowInstance
from workflow.spec import WorkflowSpec


@dataclass(frozen=True)
class Place:
    id: int
    name: str
    type: EstablishmentType
    nation: Nation


@dataclass(frozen=True)
class DeadlineCounts:
    running: int  # live deadlines (open, paused or overdue), as the API has always counted them
    overdue: int
    next_due_at: datetime | None  # the soonest live deadline
    next_label: str | None


@dataclass(frozen=True)
class CaseRow:
    reference: str
    stage: str  # the protocol's name, "triage"
    stage_label: str  # "Triage"
    version: int  # the instance's version (the API's expected_version)
    risk: Risk
    risk_label: str
    risk_tag: str  # the GOV.UK tag's colour class
    consent: Consent | None
    outcome: Outcome | None
    owning_body: str
    parties: tuple[str, ...]
    establishment: Place
    received_at: datetime
    received: str  # "16 April 2025"
    assigned_user_id: int | None
    assigned_to_me: bool
    assignee: str | None  # the assignee's name
    deadlines: DeadlineCounts
    due: Due
    step: Step | None  # the one next action (None at a final stage)
    others: tuple[Step, ...] = ()  # with ``others=True``: what else the viewer may do


def case_rows(session: Session, engine: Engine, viewer: User, case_ids: Sequence[int], at: datetime, *,
              others: bool = False, name_leads: bool = False) -> list[CaseRow]:
    """The rows of ``case_ids`` (cases the viewer may see), in that order."""
    if not case_ids:
        return []
    assignee = aliased(User)
    stmt = (select(CaseModel.id, CaseModel.reference, CaseModel.risk, CaseModel.consent, CaseModel.outcome,
                   CaseModel.owning_body_code, CaseModel.received_at, CaseModel.assigned_user_id, WorkflowInstance,
                   EstablishmentModel.id, EstablishmentModel.name, EstablishmentModel.type, EstablishmentModel.nation,
                   assignee.name)
            .select_from(CaseModel)
            .join(WorkflowInstance, WorkflowInstance.id == CaseModel.instance_id)
            .join(EstablishmentModel, EstablishmentModel.id == CaseModel.establishment_id)
            .outerjoin(assignee, assignee.id == CaseModel.assigned_user_id)
            .where(CaseModel.id.in_(list(case_ids))))
    found = {row[0]: row for row in session.execute(stmt)}
    parties: dict[int, list[str]] = {i: [] for i in found}
    for case_id, code in session.execute(select(CaseParty.case_id, CaseParty.body_code)
                                         .where(CaseParty.case_id.in_(list(found))).order_by(CaseParty.body_code)):
        parties[case_id].append(code)
    deadlines = Deadlines.read(session, [row[8].id for row in found.values()])
    leads = _leads_by_body(session, {row[5] for row in found.values()}) if name_leads else {}
    specs: dict[tuple[str, int], WorkflowSpec] = {}
    out = []
    for case_id in case_ids:
        if case_id not in found:
            continue
        (_, reference, risk, consent, outcome, body, received_at, assigned_id, instance, est_id, est_name, est_type,
         nation, assignee_name) = found[case_id]
        key = (instance.spec_key, instance.spec_version)
        spec = specs.get(key) or specs.setdefault(key, engine.spec(*key))
        stage = spec.stages.get(instance.stage)
        live = deadlines.of(instance.id)
        actor = case_actor(viewer, assigned_id)
        step = next_step(engine, spec, instance, actor, at, body, assignee_name, leads)
        more = tuple(other_steps(engine, spec, instance, actor, at, step.trigger if step and step.offered else None)
                     ) if others and actor.roles else ()
        out.append(CaseRow(
            reference=reference, stage=instance.stage, stage_label=stage.label or instance.stage if stage
            else instance.stage, version=instance.version, risk=risk, risk_label=RISK_LABELS[risk],
            risk_tag=RISK_TAGS[risk], consent=consent, outcome=outcome, owning_body=body,
            parties=tuple(parties[case_id]), establishment=Place(est_id, est_name, est_type, nation),
            received_at=received_at, received=long_date(received_at.astimezone(LONDON).date()),
            assigned_user_id=assigned_id, assigned_to_me=assigned_id == viewer.id, assignee=assignee_name,
            deadlines=DeadlineCounts(len(live), sum(1 for d in live if d.status == OVERDUE),
                                     live[0].due_at if live else None, live[0].label if live else None),
            due=due_of(live, instance.calendar, at), step=step, others=more))
    return out
