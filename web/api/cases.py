"""Cases, deadlines and notifications over the API: thin views over ``reprisals`` services, with the
pages' access rules (a case the user may not see is a 404)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from flask import Response, g, jsonify, request, url_for
from pydantic import BaseModel
from sqlalchemy.orm import Session

from notifications.models import InboxItem
from notifications.outbox import inbox_item, list_inbox, mark_read, unread_count
from reprisals.deadlines import extend_deadline as extend_service
from reprisals.errors import CaseNotFound
from reprisals.models import Case, User
from reprisals.pseudonyms import person_view
from reprisals.readside.case_list import check_filters, filter_options
from reprisals.readside.case_list import list_cases as read_case_list
from reprisals.readside.lookups import visible_deadlines
from reprisals.readside.rows import CaseRow
from reprisals.readside.steps import Deadlines
from reprisals.sensitive import Sensitive, letters_for, read_sensitive, split_event, unlock
from reprisals.services import (
    advance_case,
    allowed_actions,
    corrected_moments,
    get_case,
    get_case_history,
    linked_cases,
    occurred_at_of,
    offered_actions,
    open_case,
    redate_action,
)
from web.api import ApiProblem, api_user, bearer, bp, invalid, json_body, query_args
from web.api.models import (
    ActionOut,
    ActionRequest,
    CaseDetail,
    CaseList,
    CaseListItem,
    CaseQuery,
    CorrectionRequest,
    DeadlineList,
    DeadlineOut,
    DeadlineQuery,
    DeadlineSummary,
    EstablishmentOut,
    EventOut,
    ExtensionRequest,
    FieldOut,
    IdentityOut,
    LetterOut,
    NewCase,
    NextStepOut,
    NoteOut,
    NotificationList,
    NotificationOut,
    NotificationQuery,
    NotificationRead,
    SensitiveOut,
    UnlockRequest,
)
from web.api.spec import document
from web.context import db, now, runtime
from web.security import api_token
from workflow.errors import StaleInstance
from workflow.history import verify_instance
from workflow.models import OVERDUE, DeadlineRow, HistoryEvent
from workflow.spec import FieldType, WorkflowSpec

REFERENCE = re.compile(r"^RPR-\d{4}-\d{4,6}$")
STRUCTURED = {FieldType.CHOICE, FieldType.MULTICHOICE, FieldType.DATE, FieldType.DATETIME, FieldType.BOOLEAN,
              FieldType.INTEGER}
CASE_PATH = {"reference": "A case reference such as RPR-2025-0001."}


def _json(model: BaseModel, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response = jsonify(model.model_dump(mode="json", exclude_none=False))
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _case(session: Session, user: User, reference: str) -> Case:
    if not REFERENCE.match(reference):
        raise CaseNotFound("?")
    return get_case(session, user, reference)


# -- shaping ---------------------------------------------------------------------------------------


def _deadline(reference: str, row: DeadlineRow) -> DeadlineOut:
    return DeadlineOut(case_reference=reference, name=row.name, label=row.label, stage=row.stage,
                       status=row.status, due_at=row.due_at, overdue=row.status == OVERDUE)  # type: ignore[arg-type]


def _live(session: Session, instance_ids: list[int]) -> dict[int, list[DeadlineRow]]:
    return Deadlines.read(session, instance_ids).rows


def _summary_fields(user: User, case: Case, live: list[DeadlineRow]) -> dict[str, Any]:
    spec = runtime().engine.spec_of(case.instance)
    stage = spec.stages.get(case.stage)
    first = live[0] if live else None
    est = case.establishment
    return {
        "reference": case.reference, "stage": case.stage, "stage_label": stage.label if stage else case.stage,
        "version": case.instance.version, "risk": case.risk, "consent": case.consent,
        "owning_body": case.owning_body_code, "parties": sorted(case.party_codes),
        "establishment": EstablishmentOut(id=est.id, name=est.name, type=est.type.value, nation=est.nation),
        "received_at": case.received_at, "assigned_to_me": case.assigned_user_id == user.id,
        "outcome": case.outcome,
        "deadlines": DeadlineSummary(running=len(live), overdue=sum(1 for d in live if d.status == OVERDUE),
                                     next_due_at=first.due_at if first else None,
                                     next_label=first.label if first else None),
    }


def _event(event: HistoryEvent, spec: WorkflowSpec, field_types: dict[str, dict[str, FieldType]],
           corrections: dict[int, datetime], view: Sensitive) -> EventOut:
    """Names of fields, and the values of structured ones; free text (text and hand-typed fields,
    reasons) only inside the reader's unlock window."""
    given = event.data.get("fields") if event.trigger else None
    values: dict[str, Any] = {}
    names: list[str] = []
    if isinstance(given, dict):
        types = field_types.get(event.trigger or "", {})
        names = sorted(given)
        values = {k: v for k, v in given.items() if types.get(k) in STRUCTURED}
    _, free = split_event(spec, event)
    return EventOut(seq=event.seq, kind=event.kind, trigger=event.trigger, from_stage=event.from_stage,
                    to_stage=event.to_stage, actor_id=event.actor_id, at=event.at,
                    occurred_at=occurred_at_of(event, corrections), corrects_seq=event.corrects_seq,
                    fields_given=names, values=values, free_text_given=sorted(free),
                    free_text={k: view.text(v) or "" for k, v in free.items()} if view.unlocked else None)


def _sensitive(view: Sensitive) -> SensitiveOut | None:
    if not view.unlocked or view.identity is None or view.until is None:
        return None
    person = view.identity
    return SensitiveOut(unlocked_until=view.until, identity=IdentityOut(
        name=person.name, number=person.number, date_of_birth=person.date_of_birth),
        description=view.description or "",
        notes=[NoteOut(id=n.id, author_id=n.author_id, at=n.at, text=n.text) for n in view.notes or []])


def _detail(session: Session, user: User, case: Case) -> CaseDetail:
    engine = runtime().engine
    spec = engine.spec_of(case.instance)
    live = _live(session, [case.instance_id])[case.instance_id]
    actions = []
    for offer in offered_actions(engine, user, case, now()):
        trig = offer.trigger
        fields = {fname: FieldOut(type=f.type.value, label=f.label, required=f.required,
                                  choices=list(f.choices) if f.choices else None, max_length=f.max_length,
                                  required_when={k: list(v) for k, v in f.required_when.items()}
                                  if f.required_when else None)
                  for fname, f in trig.fields.items()}
        actions.append(ActionOut(name=trig.name, label=trig.label, to_stage=trig.dest, fields=fields,
                                 conditions=list(offer.conditions)))
    field_types = {t.name: {n: f.type for n, f in t.fields.items()} for t in spec.triggers.values()}
    events = get_case_history(session, engine, case)
    corrections = corrected_moments(events)
    integrity = verify_instance(session, case.instance_id)
    links = linked_cases(session, user, case)
    person = person_view(session, user, case)
    # Inside the reader's window this response is a logged view (committed by the view, or by the action's
    # commit: a read that fails never leaves an entry).
    view = read_sensitive(session, runtime().cipher, user, case, now(), via="api", what="api case",
                          client=request.remote_addr)
    return CaseDetail(
        **_summary_fields(user, case, live),
        channel=case.channel, age_group=case.age_group, sanction_types=list(case.sanction_types),
        detriment_dates=list(case.detriment_dates or []),
        original_contact_date=case.original_contact_date.isoformat() if case.original_contact_date else None,
        closed_at=case.closed_at, allowed_actions=actions,
        live_deadlines=[_deadline(case.reference, d) for d in live],
        history=[_event(e, spec, field_types, corrections, view) for e in events],
        letters=[LetterOut.model_validate(letter.as_dict()) for letter in letters_for(view)],
        history_verified=integrity.ok, history_problems=[f.message for f in integrity.findings],
        linked_case=links.linked_to.reference if links.linked_to else None,
        linked_cases=[later.reference for later in links.linked_from],
        person=person.person, same_person_cases=[o.reference for o in person.others],
        note_count=view.note_count, may_unlock=view.may_unlock, sensitive=_sensitive(view),
    )


# -- cases -----------------------------------------------------------------------------------------


@bp.get("/cases")
@api_token
@bearer
@document(200, CaseList, query=CaseQuery, tag="cases")
def list_cases() -> Response:
    """The cases you may see, newest first (or as sorted), as the case list page lists them.

    Filters: stage, risk, overdue, due, assigned, reference, body, nation, establishment. Never identity or
    the description. The count stops at 10,000 (total_capped).
    """
    q = query_args(CaseQuery)
    user, session, engine = api_user(), db(), runtime().engine
    raw = {"q": q.reference, "stage": q.stage, "risk": q.risk.value if q.risk else None,
           "overdue": None if q.overdue is None else ("yes" if q.overdue else "no"), "due": q.due,
           "assigned": q.assigned, "body": q.body, "nation": q.nation.value if q.nation else None,
           "establishment": str(q.establishment) if q.establishment is not None else None, "sort": q.sort}
    checked = check_filters(filter_options(session, engine, user), raw)
    if checked.errors:
        raise invalid({API_NAMES.get(k, k): v for k, v in checked.errors.items()}, "Some query parameters are invalid.")
    listed = read_case_list(session, engine, user, checked.filters, now(), page=q.page, per_page=q.per_page)
    return _json(CaseList(items=[_list_item(row) for row in listed.rows], page=q.page, per_page=q.per_page,
                          total=listed.counted, total_capped=listed.capped))


API_NAMES = {"q": "reference"}


def _list_item(row: CaseRow) -> CaseListItem:
    est = row.establishment
    d = row.deadlines
    step = row.step
    return CaseListItem(
        reference=row.reference, stage=row.stage, stage_label=row.stage_label, version=row.version, risk=row.risk,
        consent=row.consent, owning_body=row.owning_body, parties=list(row.parties),
        establishment=EstablishmentOut(id=est.id, name=est.name, type=est.type.value, nation=est.nation),
        received_at=row.received_at, assigned_to_me=row.assigned_to_me, outcome=row.outcome,
        deadlines=DeadlineSummary(running=d.running, overdue=d.overdue, next_due_at=d.next_due_at,
                                  next_label=d.next_label),
        next_step=NextStepOut(action=step.trigger, label=step.label, yours=step.offered, by=step.by) if step else None,
        time_left=row.due.left, paused=row.due.paused)


@bp.get("/cases/<reference>")
@api_token
@bearer
@document(200, CaseDetail, 404, tag="cases", path_parameters=CASE_PATH)
def show_case(reference: str) -> Response:
    """One case: summary, the actions you may take, live deadlines and history.

    Identity, the description, the notes and free text only inside your unlock window (see POST
    /api/cases/{reference}/unlock); each response that carries them is recorded in the access log.
    """
    user, session = api_user(), db()
    detail = _detail(session, user, _case(session, user, reference))
    session.commit()  # the access log's entry, when sensitive content is in it
    return _json(detail)


@bp.post("/cases/<reference>/unlock")
@api_token
@bearer
@document(200, CaseDetail, 400, 403, 404, 415, json=UnlockRequest, tag="cases", path_parameters=CASE_PATH)
def unlock_case(reference: str) -> Response:
    """Show identity: give a reason to read the case's identity, description, notes and free text for 30 minutes.

    For the owning body's leads and the assigned staff. The reason is recorded in the case's history with your
    name; the answer is the case with its sensitive content, and each read until the window ends is recorded.
    """
    user, session = api_user(), db()
    case = _case(session, user, reference)
    body = json_body(UnlockRequest)
    unlock(session, runtime().engine, runtime().cipher, user, case, body.reason, now(), via="api",
           client=request.remote_addr)
    detail = _detail(session, user, case)
    session.commit()
    return _json(detail)


@bp.post("/cases")
@api_token
@bearer
@document(201, CaseDetail, 400, 403, 415, json=NewCase, tag="cases")
def create_case() -> Response:
    """Record a reported concern (staff and leads of a body).

    The person's identity and the description are stored encrypted and never returned.
    """
    user, session = api_user(), db()
    body = json_body(NewCase)
    data = body.model_dump(exclude_unset=True)
    data["sanction_types"] = [s.value for s in body.sanction_types]
    case = open_case(session, runtime().engine, runtime().cipher, user, now(), data, messenger=runtime().messenger)
    detail = _detail(session, user, case)  # built before the commit: a committed case is never answered 5xx
    session.commit()
    return _json(detail, 201, {"Location": url_for("api.show_case", reference=case.reference)})


@bp.post("/cases/<reference>/actions/<trigger>")
@api_token
@bearer
@document(200, CaseDetail, 400, 403, 404, 409, 415, json=ActionRequest, tag="cases",
          path_parameters={**CASE_PATH, "trigger": "An action of the protocol, as listed in allowed_actions."})
def act(reference: str, trigger: str) -> Response:
    """Take an action on a case (the protocol's triggers), with its fields and the version you read.

    A different current version is a 409 and nothing is saved.
    """
    user, session = api_user(), db()
    case = _case(session, user, reference)
    body = json_body(ActionRequest)
    spec = runtime().engine.spec_of(case.instance)
    if trigger not in spec.triggers:
        raise ApiProblem(404, "Not found", "There is no such action.")
    # a refusal names the case, the action's and stage's labels and what can be done next (web.api)
    g.case_context = {"reference": case.reference, "spec": spec,
                      "next_actions": allowed_actions(runtime().engine, user, case, now())}
    advance_case(session, runtime().engine, user, case, trigger, body.fields, now(), messenger=runtime().messenger,
                 expected_version=body.expected_version, occurred_at=body.occurred_at)
    detail = _detail(session, user, case)  # before the commit: a saved action is never answered "Nothing was saved"
    session.commit()
    return _json(detail)


@bp.post("/cases/<reference>/events/<int(min=1, max=2147483647):seq>/correction")
@api_token
@bearer
@document(200, CaseDetail, 400, 403, 404, 409, 415, json=CorrectionRequest, tag="cases",
          path_parameters={**CASE_PATH, "seq": "The action's place in the case's history (its seq)."})
def correct_moment(reference: str, seq: int) -> Response:
    """Correct when an action happened (leads): a correction pointing at it is added to the history and the
    deadlines the action started are recomputed from the right moment."""
    user, session = api_user(), db()
    case = _case(session, user, reference)
    body = json_body(CorrectionRequest)
    if body.expected_version != case.instance.version:
        raise StaleInstance(case.instance_id, body.expected_version, case.instance.version)
    g.case_context = {"reference": case.reference, "spec": runtime().engine.spec_of(case.instance)}
    redate_action(session, runtime().engine, runtime().timers, user, case, seq, body.occurred_at, body.reason, now())
    detail = _detail(session, user, case)
    session.commit()
    return _json(detail)


# -- deadlines -------------------------------------------------------------------------------------


@bp.get("/deadlines")
@api_token
@bearer
@document(200, DeadlineList, query=DeadlineQuery, tag="deadlines")
def list_deadlines() -> Response:
    """The running deadlines of the cases you may see, soonest first (overdue=true: only overdue ones)."""
    q = query_args(DeadlineQuery)
    user, session = api_user(), db()
    rows = visible_deadlines(session, user, overdue=q.overdue, page=q.page, per_page=q.per_page)
    return _json(DeadlineList(items=[_deadline(d.reference, d.row) for d in rows], page=q.page, per_page=q.per_page))


# part: deadlines. Refusals: a day that is not a working day is a 422 on ``due`` (web.api).
@bp.post("/cases/<reference>/deadlines/<name>/extension")
@api_token
@bearer
@document(200, DeadlineOut, 400, 403, 404, 409, 415, json=ExtensionRequest, tag="deadlines",
          path_parameters={**CASE_PATH, "name": "A running deadline of the case, as in live_deadlines."})
def extend_deadline(reference: str, name: str) -> Response:
    """Extend a running deadline (leads of a body on the case), with a reason; it falls due at the end of the
    day given. A deadline counted in working days must end on a working day of the case's nation."""
    user, session = api_user(), db()
    case = _case(session, user, reference)
    body = json_body(ExtensionRequest)
    if body.expected_version != case.instance.version:
        raise StaleInstance(case.instance_id, body.expected_version, case.instance.version)
    rt = runtime()
    g.case_context = {"reference": case.reference, "spec": rt.engine.spec_of(case.instance)}
    due = rt.timers.calendar(case.instance.calendar).end_of(body.due)
    row = extend_service(session, rt.engine, rt.timers, user, case, name, due, body.reason, now())
    out = _deadline(case.reference, row)
    session.commit()
    return _json(out)


# -- notifications ---------------------------------------------------------------------------------


def _notification(item: InboxItem) -> NotificationOut:
    return NotificationOut(id=item.id, subject=item.subject, body=item.body, link=item.link,
                           created_at=item.created_at, read_at=item.read_at)


@bp.get("/notifications")
@api_token
@bearer
@document(200, NotificationList, query=NotificationQuery, tag="notifications")
def list_notifications() -> Response:
    """Your in-app notifications, newest first, and how many are unread."""
    q = query_args(NotificationQuery)
    me, session = str(api_user().id), db()
    items = list_inbox(session, me, limit=q.limit, unread=bool(q.unread))
    return _json(NotificationList(unread_count=unread_count(session, me), items=[_notification(i) for i in items]))


@bp.post("/notifications/<int(min=1, max=2147483647):notification_id>/read")
@api_token
@bearer
@document(200, NotificationRead, 404, tag="notifications",
          path_parameters={"notification_id": "The notification's id."})
def read_notification(notification_id: int) -> Response:
    """Mark one of your notifications read."""
    me, session = str(api_user().id), db()
    if not mark_read(session, me, notification_id, now()):
        raise ApiProblem(404, "Not found", "You have no such notification.")
    item = inbox_item(session, me, notification_id)
    assert item is not None
    answer = NotificationRead(id=item.id, read_at=item.read_at, unread_count=unread_count(session, me))
    session.commit()
    return _json(answer)
