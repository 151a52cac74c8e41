"""The case list (reporting a concern is web/report.py; the case page is web/case_page.py).

The list filters, sorts, counts and pages in SQL and reads only the columns it shows (never the
detainee row): one count, one page query and one query for the page's deadlines, whatever the size.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, render_template, request, url_for
from flask.typing import ResponseReturnValue
from govuk_frontend_wtf.wtforms_widgets import (
    GovSelect,
    GovTextInput,
)
from sqlalchemy import ColumnElement, Select, case, func, nulls_last, select
from sqlalchemy.orm import aliased
from wtforms import Form, SelectField, StringField
from wtforms.fields.choices import SelectChoice

from reprisals.access import visible_cases
from reprisals.models import (
    Body,
    Case,
    Establishment,
    Nation,
    Risk,
    Role,
    User,
)
from reprisals.protocol import SPEC_KEY
from reprisals.vocabulary import NATION_LABELS, RISK_LABELS, long_date
from web.context import db, me, now, runtime
from web.pagination import govuk_pagination
from web.security import roles
from workflow.models import LIVE, OPEN, OVERDUE, PAUSED, DeadlineRow, WorkflowInstance
from workflow.spec import WorkflowSpec

bp = Blueprint("cases", __name__, url_prefix="/cases")
LONDON = ZoneInfo("Europe/London")

RISK_TAGS = {Risk.URGENT: "govuk-tag--red", Risk.HIGH: "govuk-tag--orange", Risk.STANDARD: "govuk-tag--grey"}


def options(pairs: Iterable[tuple[Any, str]]) -> list[SelectChoice]:
    return [SelectChoice(str(value), label) for value, label in pairs]


# == the case list =================================================================================

PAGE_SIZE = 25
COUNT_CAP = 10_000
SORTS = {"received_newest": "Received (newest first)", "received_oldest": "Received (oldest first)",
         "risk": "Risk (most urgent first)", "time_left": "Time left (least first)"}
_REFERENCE = re.compile(r"^[A-Z0-9-]{1,20}$")


class FilterForm(Form):
    """The list's filters, read from the query string (GET: nothing changes, so no CSRF)."""

    q = StringField("Case reference", widget=GovTextInput(),
                    description="All or the start of a reference, for example RPR-2025-0012")
    stage = SelectField("Stage", widget=GovSelect(), validate_choice=False)
    risk = SelectField("Risk", widget=GovSelect(), validate_choice=False)
    body = SelectField("Owning body", widget=GovSelect(), validate_choice=False)
    establishment = SelectField("Establishment", widget=GovSelect(), validate_choice=False)
    nation = SelectField("Nation", widget=GovSelect(), validate_choice=False)
    overdue = SelectField("Overdue", widget=GovSelect(), validate_choice=False)
    assigned = SelectField("Assigned to", widget=GovSelect(), validate_choice=False)
    sort = SelectField("Sort by", widget=GovSelect(), validate_choice=False)


@dataclass
class ListFilters:
    values: dict[str, str] = field(default_factory=dict)  # the valid filters, as given
    errors: list[dict[str, str]] = field(default_factory=list)  # GOV.UK error summary items


def _stages() -> list[tuple[str, str]]:
    engine = runtime().engine
    seen: dict[str, str] = {}
    for version in reversed(engine.versions(SPEC_KEY)):
        for name, stage in engine.spec(SPEC_KEY, version).stages.items():
            seen.setdefault(name, stage.label)
    return list(seen.items())


def _filter_form(viewer: User) -> tuple[FilterForm, ListFilters, list[tuple[str, str]]]:
    form = FilterForm(request.args)
    any_ = [("", "Any")]
    form.stage.choices = options(any_ + _stages())
    form.risk.choices = options(any_ + [(r.value, RISK_LABELS[r]) for r in Risk])
    form.body.choices = options(any_ + [(c, n) for c, n in db().execute(select(Body.code, Body.name)
                                                                         .order_by(Body.name))])
    form.establishment.choices = options(any_ + [
        (i, n) for i, n in db().execute(select(Establishment.id, Establishment.name).order_by(Establishment.name))])
    form.nation.choices = options(any_ + [(n.value, NATION_LABELS[n]) for n in Nation])
    form.overdue.choices = options([*any_, ("yes", "Overdue"), ("no", "Not overdue")])
    colleagues = [(str(i), n + ("" if active else " (inactive)")) for i, n, active in db().execute(
        select(User.id, User.name, User.active).where(User.body_code == viewer.body_code,
                                                      User.role.in_((Role.STAFF, Role.LEAD)),
                                                      User.id != viewer.id).order_by(User.name, User.id))]
    form.assigned.choices = options([*any_, ("me", "Me"), ("nobody", "Nobody"), *colleagues])
    form.sort.choices = options(SORTS.items())
    filters = ListFilters()
    messages = {"stage": "Select a stage from the list", "risk": "Select a risk from the list",
                "body": "Select an owning body from the list", "establishment": "Select an establishment from the list",
                "nation": "Select a nation from the list", "overdue": "Select overdue or not overdue",
                "assigned": "Select who the case is assigned to from the list",
                "sort": "Select a sort order from the list"}
    for name, message in messages.items():
        f: SelectField = getattr(form, name)
        value = (f.data or "").strip()
        if not value:
            continue
        if value not in {c.value for c in f.choices}:
            f.errors = [message]
            f.data = ""
            filters.errors.append({"text": message, "href": f"#{f.id}"})
        else:
            filters.values[name] = value
    q = (form.q.data or "").strip().upper()
    if q:
        if _REFERENCE.match(q):
            filters.values["q"] = q
        else:
            message = "Enter a case reference using only letters, numbers and hyphens, like RPR-2025-0012"
            form.q.errors = [message]
            filters.errors.append({"text": message, "href": f"#{form.q.id}"})
    return form, filters, colleagues


def _page_number(filters: ListFilters) -> int:
    raw = request.args.get("page", "").strip()
    if not raw:
        return 1
    if raw.isdigit() and 1 <= int(raw) <= 1_000_000:
        return int(raw)
    filters.errors.append({"text": "Page must be a whole number, 1 or more: the first page is shown",
                           "href": "#results"})
    return 1


# Query values that narrow the list (as opposed to sort and page).
FILTERS = ("q", "stage", "risk", "body", "establishment", "nation", "overdue", "assigned")


def _conditions(viewer: User, values: Mapping[str, str]) -> tuple[list[ColumnElement[bool]], set[str]]:
    """The WHERE clauses for the viewer and filters, and which joins they need."""
    where: list[ColumnElement[bool]] = []
    visible = visible_cases(viewer).whereclause
    if visible is not None:
        where.append(visible)
    joins: set[str] = set()
    if "q" in values:
        where.append(Case.reference.like(values["q"] + "%"))  # letters, digits and hyphens only
        if db().get_bind().dialect.name == "sqlite":  # its LIKE ignores case, so cannot use the index:
            where.append(Case.reference.between(values["q"], values["q"] + "~"))  # a binary range can
    if "stage" in values:
        where.append(Case.current_stage == values["stage"])  # the mirror: one table's index (decision 6)
    if "risk" in values:
        where.append(Case.risk == Risk(values["risk"]))
    if "body" in values:
        where.append(Case.owning_body_code == values["body"])
    if "establishment" in values:
        where.append(Case.establishment_id == int(values["establishment"]))
    if "nation" in values:
        joins.add("establishment")
        where.append(Establishment.nation == Nation(values["nation"]))
    if "overdue" in values:
        overdue = select(DeadlineRow.instance_id).where(DeadlineRow.status == OVERDUE)
        where.append(Case.instance_id.in_(overdue) if values["overdue"] == "yes" else Case.instance_id.not_in(overdue))
    assigned = values.get("assigned")
    if assigned == "me":
        where.append(Case.assigned_user_id == viewer.id)
    elif assigned == "nobody":
        where.append(Case.assigned_user_id.is_(None))
    elif assigned:
        where.append(Case.assigned_user_id == int(assigned))
    return where, joins


def _join(stmt: Select[Any], joins: set[str]) -> Select[Any]:
    if "establishment" in joins:
        stmt = stmt.join(Establishment, Establishment.id == Case.establishment_id)
    return stmt


@dataclass(frozen=True)
class Row:
    reference: str
    stage: str
    risk: Risk
    risk_label: str
    risk_tag: str
    establishment: str
    received: str
    assigned: str | None
    time_left: str | None
    overdue: bool
    paused: bool


def _time_left(due: datetime, at: datetime) -> str:
    left = due - at
    if left < timedelta(hours=1):
        return "Less than 1 hour"
    if left < timedelta(days=1):
        hours = int(left.total_seconds() // 3600)
        return f"{hours} hour{'s' if hours != 1 else ''}"
    days = left.days
    return f"{days} day{'s' if days != 1 else ''}"


def _list_rows(viewer: User, values: Mapping[str, str], page: int) -> tuple[list[Row], int]:
    where, joins = _conditions(viewer, values)
    # Counting stops at COUNT_CAP + 1: past that the page says "more than 10,000" (and the sort and
    # filters narrow it); a full count of 100,000 visible cases would cost more than the page.
    matching = _join(select(Case.id).select_from(Case), joins).where(*where).limit(COUNT_CAP + 1).subquery()
    total = db().execute(select(func.count()).select_from(matching)).scalar_one()
    # First the page's ids (only the joins the filters need, so the database can sort narrow rows
    # or walk an index), then what is shown for those 25.
    ids = _join(select(Case.id).select_from(Case), joins).where(*where)
    sort = values.get("sort", "received_newest")
    if sort == "received_oldest":
        ids = ids.order_by(Case.received_at, Case.id)
    elif sort == "risk":
        rank = case((Case.risk == Risk.URGENT, 0), (Case.risk == Risk.HIGH, 1), else_=2)
        ids = ids.order_by(rank, Case.received_at.desc(), Case.id.desc())
    elif sort == "time_left":
        due = (select(func.min(DeadlineRow.due_at))
               .where(DeadlineRow.instance_id == Case.instance_id, DeadlineRow.status.in_((OPEN, OVERDUE)))
               .scalar_subquery())
        ids = ids.order_by(nulls_last(due.asc()), Case.received_at.desc(), Case.id.desc())
    elif any(k in values for k in FILTERS):
        # With filters, let them lead (their indexes) and sort the matches: walking the received-time
        # index instead reads every visible case when few match (measured 100+ ms at 100,000 cases).
        # coalesce(x, x) is x, but hides the index from the planner on both databases.
        received = func.coalesce(Case.received_at, Case.received_at)
        ids = ids.order_by(received.desc(), Case.id.desc())
    else:
        ids = ids.order_by(Case.received_at.desc(), Case.id.desc())
    page_ids = list(db().scalars(ids.limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)))
    assignee = aliased(User)
    stmt = (select(Case.id, Case.reference, Case.instance_id, Case.risk, Case.received_at, WorkflowInstance.stage,
                   WorkflowInstance.spec_key, WorkflowInstance.spec_version, Establishment.name, assignee.name)
            .select_from(Case)
            .join(WorkflowInstance, WorkflowInstance.id == Case.instance_id)
            .join(Establishment, Establishment.id == Case.establishment_id)
            .outerjoin(assignee, assignee.id == Case.assigned_user_id)
            .where(Case.id.in_(page_ids)))
    by_id = {r[0]: tuple(r)[1:] for r in db().execute(stmt)} if page_ids else {}
    found = [by_id[i] for i in page_ids if i in by_id]
    deadlines: dict[int, list[tuple[str, datetime]]] = {}
    if found:
        for instance_id, status, due_at in db().execute(
                select(DeadlineRow.instance_id, DeadlineRow.status, DeadlineRow.due_at)
                .where(DeadlineRow.instance_id.in_([r[1] for r in found]), DeadlineRow.status.in_(LIVE))):
            deadlines.setdefault(instance_id, []).append((status, due_at))
    specs: dict[tuple[str, int], WorkflowSpec] = {}
    at = now()
    rows = []
    for reference, instance_id, risk, received_at, stage, key, version, est, assigned in found:
        spec = specs.get((key, version)) or specs.setdefault((key, version), runtime().engine.spec(key, version))
        stage_def = spec.stages.get(stage)
        live = deadlines.get(instance_id, [])
        running = [d for s, d in live if s in (OPEN, OVERDUE)]
        rows.append(Row(
            reference=reference, stage=stage_def.label if stage_def else stage, risk=risk,
            risk_label=RISK_LABELS[risk], risk_tag=RISK_TAGS[risk], establishment=est,
            received=long_date(received_at.astimezone(LONDON).date()), assigned=assigned,
            overdue=any(s == OVERDUE for s, _ in live),
            paused=not running and any(s == PAUSED for s, _ in live),
            time_left=_time_left(min(running), at) if running else None))
    return rows, int(total)


def _pagination(values: Mapping[str, str], page: int, pages: int) -> dict[str, Any] | None:
    def href(n: int) -> str:
        args: dict[str, Any] = {**values, "page": n}
        return url_for("cases.index", **args) + "#results"

    return govuk_pagination(page, pages, href, "Pages of cases")


@bp.get("/")
@roles(Role.LEAD, Role.STAFF, Role.AUDITOR)
def index() -> ResponseReturnValue:
    viewer = me()
    form, filters, _ = _filter_form(viewer)
    page = _page_number(filters)
    rows, total = _list_rows(viewer, filters.values, page)
    capped = total > COUNT_CAP
    pages = max(1, math.ceil(min(total, COUNT_CAP) / PAGE_SIZE))
    if page > pages:
        filters.errors.append({"text": f"There is no page {page}: there {'is' if pages == 1 else 'are'} "
                                       f"{pages} page{'' if pages == 1 else 's'}. The first page is shown",
                               "href": "#results"})
        page = 1
        rows, total = _list_rows(viewer, filters.values, page)
    first = (page - 1) * PAGE_SIZE + 1
    return render_template(
        "cases/index.html", title="Cases", filters=form, errors=filters.errors, rows=rows, total=total,
        page=page, pages=pages, first=first, last=first + len(rows) - 1, capped=capped, cap=COUNT_CAP,
        filtered=any(k != "sort" for k in filters.values),
        pagination=_pagination(filters.values, page, pages))


