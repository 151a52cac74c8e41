"""The case list and reporting a concern (the case page is web/case_page.py).

The list filters, sorts, counts and pages in SQL and reads only the columns it shows (never the
detainee row): one count, one page query and one query for the page's deadlines, whatever the size.

Reporting a concern is a question flow. The answers include identity, so the draft is kept on the
server as ciphertext bound to the signed-in session (``reprisals.accounts.save_draft``), never in the
cookie; it ends with the session. No case is written until the final Submit, which also deletes the
draft, in one transaction.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import (
    GovCheckboxesInput,
    GovDateInput,
    GovRadioInput,
    GovSelect,
    GovSubmitInput,
    GovTextArea,
    GovTextInput,
)
from markupsafe import Markup
from sqlalchemy import ColumnElement, Select, case, func, nulls_last, select
from sqlalchemy.orm import aliased
from werkzeug.datastructures import MultiDict
from wtforms import Field, Form, HiddenField, SelectField, SelectMultipleField, StringField, SubmitField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import ValidationError

from reprisals.access import visible_cases
from reprisals.accounts import WebSession, discard_draft, load_draft, save_draft
from reprisals.errors import InvalidInput
from reprisals.models import (
    AgeGroup,
    Body,
    Case,
    Channel,
    Establishment,
    Nation,
    Risk,
    Role,
    SanctionType,
    User,
)
from reprisals.protocol import SPEC_KEY
from reprisals.services import assignable_users, get_case, open_case
from web.context import db, me, now, runtime
from web.pagination import govuk_pagination
from web.security import roles
from workflow.models import DeadlineRow, WorkflowInstance
from workflow.spec import WorkflowSpec
from workflow.timers import LIVE, OPEN, OVERDUE, PAUSED

bp = Blueprint("cases", __name__, url_prefix="/cases")
LONDON = ZoneInfo("Europe/London")

# -- labels ----------------------------------------------------------------------------------------

RISK_LABELS = {Risk.URGENT: "Urgent", Risk.HIGH: "High", Risk.STANDARD: "Standard"}
RISK_TAGS = {Risk.URGENT: "govuk-tag--red", Risk.HIGH: "govuk-tag--orange", Risk.STANDARD: "govuk-tag--grey"}
NATION_LABELS = {Nation.ENGLAND: "England", Nation.WALES: "Wales", Nation.SCOTLAND: "Scotland",
                 Nation.NORTHERN_IRELAND: "Northern Ireland"}
CHANNEL_LABELS = {
    Channel.INSPECTION_INTERVIEW: "Inspection interview", Channel.SURVEY: "Survey",
    Channel.IMB_APPLICATION: "IMB application", Channel.PPO_COMPLAINT: "PPO complaint",
    Channel.LO_VISIT: "Lay Observer visit", Channel.LETTER: "Letter", Channel.PHONE: "Phone",
    Channel.VIA_FAMILY_OR_SOLICITOR: "Through family or a solicitor",
}
AGE_LABELS = {AgeGroup.CHILD: "Under 18", AgeGroup.ADULT: "18 or over"}
SANCTION_LABELS = {
    SanctionType.TRANSFER: "Transfer", SanctionType.LOSS_OF_JOB_OR_ACTIVITY: "Loss of job or activity",
    SanctionType.RECATEGORISATION: "Recategorisation", SanctionType.RESTRICTED_VISITS: "Restricted visits",
    SanctionType.RESTRICTED_PHONE_OR_CORRESPONDENCE: "Restricted phone calls or correspondence",
    SanctionType.PHYSICAL_ABUSE: "Physical abuse", SanctionType.VERBAL_ABUSE_OR_THREATS: "Verbal abuse or threats",
    SanctionType.RESTRICTED_FOOD_OR_ENTITLEMENTS: "Restricted food or entitlements",
    SanctionType.SEGREGATION: "Segregation", SanctionType.WORSE_ACCOMMODATION: "Worse accommodation",
    SanctionType.WITHDRAWN_SUPPORT_FOR_RELEASE: "Support for release withdrawn",
    SanctionType.INCENTIVE_DOWNGRADE: "Incentive level downgraded",
    SanctionType.ADVERSE_REPORT_OR_DISCIPLINARY_CHARGE: "Adverse report or disciplinary charge",
    SanctionType.RETALIATORY_SEARCH: "Retaliatory search", SanctionType.PRESSURE_ON_FAMILY: "Pressure on family",
    SanctionType.OTHER: "Other",
}


def options(pairs: Iterable[tuple[Any, str]]) -> list[SelectChoice]:
    return [SelectChoice(str(value), label) for value, label in pairs]


def long_date(d: date) -> str:
    return f"{d.day} {d:%B %Y}"


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


# == reporting a concern ===========================================================================

DONE_KEY = "report_done"
MAX_DESCRIPTION = 10_000  # as open_case (and the API) accept


class DateParts(Field):
    """A GOV.UK date input (day, month, year under one name) with the Design System's messages."""

    widget = GovDateInput()

    def __init__(self, label: str, *, subject: str, enter: str | None = None, future: str,
                 allow_today: bool = True, **kwargs: Any) -> None:
        super().__init__(label, **kwargs)
        self.subject, self.enter, self.future, self.allow_today = subject, enter, future, allow_today
        self.parts: list[str] = ["", "", ""]

    def process_formdata(self, valuelist: list[Any]) -> None:
        self.parts = ([str(v).strip() for v in valuelist] + ["", "", ""])[:3]
        self.raw_data = list(self.parts)
        self.data: date | None = None

    def _value(self) -> str:
        return ""

    def parsed(self) -> date | None:
        """The date, or None when blank; ValueError (with the message) when it cannot be one."""
        day, month, year = self.parts
        if not any(self.parts):
            return None
        missing = [n for n, v in (("day", day), ("month", month), ("year", year)) if not v]
        if missing:
            raise ValueError(f"{self.subject} must include a {' and a '.join(missing)}")
        if not (day.isdigit() and month.isdigit() and year.isdigit()):
            raise ValueError(f"{self.subject} must be a real date")
        if len(year) != 4:
            raise ValueError("Year must include 4 numbers")
        try:
            return date(int(year), int(month), int(day))
        except ValueError:
            raise ValueError(f"{self.subject} must be a real date") from None

    def pre_validate(self, form: Any) -> None:
        try:
            value = self.parsed()
        except ValueError as exc:
            raise ValidationError(str(exc)) from None
        if value is None:
            if self.enter:
                raise ValidationError(self.enter)
            return
        today = now().astimezone(LONDON).date()
        if value > today or (value == today and not self.allow_today):
            raise ValidationError(self.future)
        if value.year < 1900:
            raise ValidationError(f"{self.subject} must be after 1900")
        self.data = value


def _required(message: str) -> Any:
    def check(_form: Any, f: Field) -> None:
        if not f.data or (isinstance(f.data, str) and not f.data.strip()):
            raise ValidationError(message)
    return check


def _max_length(n: int, message: str) -> Any:
    def check(_form: Any, f: Field) -> None:
        if isinstance(f.data, str) and len(f.data.strip()) > n:
            raise ValidationError(message)
    return check


def _one_of(message: str) -> Any:
    def check(_form: Any, f: Field) -> None:
        allowed = {c.value for c in f.choices}
        values = f.data if isinstance(f.data, list) else [f.data]
        if any(v not in allowed for v in values if v):
            raise ValidationError(message)
    return check


NO_AUTOFILL = {"autocomplete": "off", "spellcheck": "false"}
_TIME = re.compile(r"^(\d{1,2})[:.](\d{2})$")


class StepForm(FlaskForm):
    submit = SubmitField("Continue", widget=GovSubmitInput())


class EstablishmentStep(StepForm):
    establishment_id = SelectField(
        "Which establishment is the person held in?", widget=GovSelect(), validate_choice=False,
        validators=[_required("Select the establishment"), _one_of("Select an establishment from the list")])


class ReceivedStep(StepForm):
    received_date = DateParts("Date received", id="received_date-day", subject="The date the concern was received",
                              enter="Enter the date the concern was received",
                              future="The date the concern was received must be today or in the past",
                              description="For example, 16 4 2025")
    received_time = StringField("Time received (optional)", widget=GovTextInput(),
                                description="Use the 24-hour clock, for example 14:30. If you leave this blank, "
                                            "the start of the day is recorded.")
    channel = SelectField("How was the concern received?", widget=GovRadioInput(), validate_choice=False,
                          choices=options((c.value, CHANNEL_LABELS[c]) for c in Channel),
                          validators=[_required("Select how the concern was received"),
                                      _one_of("Select how the concern was received")])

    def validate_received_time(self, f: Field) -> None:
        text = (f.data or "").strip()
        if not text:
            return
        m = _TIME.match(text)
        if not m or int(m[1]) > 23 or int(m[2]) > 59:
            raise ValidationError("Enter the time received using the 24-hour clock, for example 14:30")
        d = self.received_date.data
        if d is not None and datetime.combine(d, time(int(m[1]), int(m[2])), LONDON) > now():
            raise ValidationError("The time the concern was received must be in the past")


class PersonStep(StepForm):
    detainee_name = StringField("Full name", widget=GovTextInput(), render_kw=NO_AUTOFILL,
                                validators=[_required("Enter the person's name"),
                                            _max_length(200, "Name must be 200 characters or fewer")])
    detainee_number = StringField("Prison number (optional)", widget=GovTextInput(), render_kw=NO_AUTOFILL,
                                  description="For example, A1234BC",
                                  validators=[_max_length(40, "Prison number must be 40 characters or fewer")])
    detainee_date_of_birth = DateParts("Date of birth (optional)", id="detainee_date_of_birth-day",
                                       subject="Date of birth", future="Date of birth must be in the past",
                                       allow_today=False, description="For example, 27 3 1990")


class AgeGroupStep(StepForm):
    age_group = SelectField("How old is the person?", widget=GovRadioInput(), validate_choice=False,
                            choices=options((a.value, AGE_LABELS[a]) for a in AgeGroup),
                            validators=[_required("Select the person's age group"),
                                        _one_of("Select the person's age group")])


class WhatHappenedStep(StepForm):
    sanction_types = SelectMultipleField(
        "What kind of sanction is alleged?", widget=GovCheckboxesInput(), validate_choice=False,
        choices=options((s.value, SANCTION_LABELS[s]) for s in SanctionType), description="Select all that apply",
        validators=[_required("Select at least one kind of sanction"),
                    _one_of("Select kinds of sanction from the list")])
    detriment_date_1 = DateParts("When did it happen? (optional)", id="detriment_date_1-day",
                                 subject="The date it happened",
                                 future="The date it happened must be today or in the past",
                                 description="If it happened on more than one day, give up to three dates")
    detriment_date_2 = DateParts("Another date (optional)", id="detriment_date_2-day", subject="The second date",
                                 future="The second date must be today or in the past")
    detriment_date_3 = DateParts("Another date (optional)", id="detriment_date_3-day", subject="The third date",
                                 future="The third date must be today or in the past")
    description = TextAreaField(
        "What happened?", widget=GovTextArea(), render_kw={"spellcheck": "false", "rows": 8},
        description="Describe the alleged sanction and how it is linked to contact with a body. "
                    "You can add notes to the case once it is open.",
        validators=[_required("Describe what happened"),
                    _max_length(MAX_DESCRIPTION, f"Description must be {MAX_DESCRIPTION:,} characters or fewer: "
                                                 "add the rest as a note once the case is open")])


class OriginalContactStep(StepForm):
    original_contact_date = DateParts(
        "When did the person have the contact that led to the sanction? (optional)",
        id="original_contact_date-day", subject="The date of the contact",
        future="The date of the contact must be today or in the past",
        description="For example, the date of the inspection interview or the IMB application")


class OtherBodiesStep(StepForm):
    party_bodies = SelectMultipleField(
        "Which other bodies did the person have contact with? (optional)", widget=GovCheckboxesInput(),
        validate_choice=False, description="Bodies whose contact with the person may have led to the sanction. "
                                           "They will be able to see the case.",
        validators=[_one_of("Select bodies from the list")])


class RiskStep(StepForm):
    risk = SelectField("What is the risk to the person?", widget=GovRadioInput(), validate_choice=False,
                       choices=options([(Risk.URGENT.value, "Urgent: the person is at immediate risk of harm"),
                                        (Risk.HIGH.value, "High"), (Risk.STANDARD.value, "Standard")]),
                       validators=[_required("Select the risk to the person"),
                                   _one_of("Select the risk to the person")])


class AssignStep(StepForm):
    assigned_user_id = SelectField("Who should work on this case? (optional)", widget=GovSelect(),
                                   validate_choice=False, validators=[_one_of("Select a person from the list")])


@dataclass(frozen=True)
class Step:
    slug: str
    form: type[StepForm]
    title: str  # the page heading and title (never an answer)
    fields: tuple[str, ...]


STEPS = (
    Step("establishment", EstablishmentStep, "Which establishment is the person held in?", ("establishment_id",)),
    Step("received", ReceivedStep, "When and how was the concern received?",
         ("received_date", "received_time", "channel")),
    Step("person", PersonStep, "The person's details",
         ("detainee_name", "detainee_number", "detainee_date_of_birth")),
    Step("age-group", AgeGroupStep, "How old is the person?", ("age_group",)),
    Step("what-happened", WhatHappenedStep, "What happened?",
         ("sanction_types", "detriment_date_1", "detriment_date_2", "detriment_date_3", "description")),
    Step("original-contact", OriginalContactStep,
         "When did the person have the contact that led to the sanction?", ("original_contact_date",)),
    Step("other-bodies", OtherBodiesStep, "Which other bodies did the person have contact with?", ("party_bodies",)),
    Step("risk", RiskStep, "What is the risk to the person?", ("risk",)),
    Step("assign", AssignStep, "Who should work on this case?", ("assigned_user_id",)),
)
BY_SLUG = {s.slug: s for s in STEPS}
# open_case's field -> (the step that asks for it, the form field, how to name it in a message)
DOMAIN_FIELDS = {
    "establishment_id": ("establishment", "establishment_id", "Establishment"),
    "received_at": ("received", "received_date", "The date the concern was received"),
    "channel": ("received", "channel", "How the concern was received"),
    "detainee_name": ("person", "detainee_name", "Name"),
    "detainee_number": ("person", "detainee_number", "Prison number"),
    "detainee_date_of_birth": ("person", "detainee_date_of_birth", "Date of birth"),
    "age_group": ("age-group", "age_group", "Age group"),
    "sanction_types": ("what-happened", "sanction_types", "Kind of sanction"),
    "detriment_dates": ("what-happened", "detriment_date_1", "The date it happened"),
    "description": ("what-happened", "description", "Description"),
    "original_contact_date": ("original-contact", "original_contact_date", "The date of the contact"),
    "party_bodies": ("other-bodies", "party_bodies", "Other bodies"),
    "risk": ("risk", "risk", "Risk"),
    "assigned_user_id": ("assign", "assigned_user_id", "The person to work on the case"),
}


# -- the draft: ciphertext on the server, bound to the signed-in session ---------------------------

LINKED = "linked_case"  # the answer that holds the reference of the earlier case, when there is one


@dataclass
class Draft:
    answers: dict[str, list[str]] = field(default_factory=dict)
    done: list[str] = field(default_factory=list)

    def one(self, name: str) -> str:
        values = self.answers.get(name) or [""]
        return values[0]

    def complete(self) -> bool:
        return all(s.slug in self.done for s in STEPS)

    def first_missing(self) -> Step | None:
        return next((s for s in STEPS if s.slug not in self.done), None)


def _web_session() -> WebSession:
    web_session: WebSession = current_user.web_session
    return web_session


def _load_draft() -> Draft:
    text = load_draft(db(), runtime().cipher, _web_session())
    if text is None:
        return Draft()
    try:
        data = json.loads(text)
        return Draft({k: [str(v) for v in vs] for k, vs in data["a"].items()}, [str(s) for s in data["d"]])
    except (ValueError, KeyError, TypeError, AttributeError):
        return Draft()  # not a draft of this version: start again (the next save replaces it)


def _save_draft(draft: Draft) -> None:
    text = json.dumps({"a": draft.answers, "d": draft.done}, separators=(",", ":"))
    save_draft(db(), runtime().cipher, _web_session(), text, now())
    db().commit()


def _clear_draft() -> None:
    discard_draft(db(), _web_session())
    db().commit()


# -- building open_case's data from the answers ------------------------------------------------------


def _date_of(draft: Draft, name: str) -> date | None:
    parts = draft.answers.get(name) or []
    if len(parts) != 3 or not all(parts):
        return None
    try:
        return date(int(parts[2]), int(parts[1]), int(parts[0]))
    except ValueError:
        return None


def _received_at(draft: Draft) -> datetime | None:
    d = _date_of(draft, "received_date")
    if d is None:
        return None
    m = _TIME.match(draft.one("received_time"))
    at = time(int(m[1]), int(m[2])) if m else time(0, 0)
    return datetime.combine(d, at, LONDON)


def _form_id(text: str) -> int | str | None:
    """A select's value is text; the domain takes ids as whole numbers only (never coerced), so the page,
    whose choices are ids, turns its digits into one. Anything else goes on as given and is refused."""
    text = (text or "").strip()
    if not text:
        return None
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 10 else text


def _case_data(draft: Draft) -> dict[str, Any]:
    received = _received_at(draft)
    dob = _date_of(draft, "detainee_date_of_birth")
    contact = _date_of(draft, "original_contact_date")
    detriment = [d.isoformat() for d in (_date_of(draft, f"detriment_date_{i}") for i in (1, 2, 3)) if d]
    data: dict[str, Any] = {
        "establishment_id": _form_id(draft.one("establishment_id")),
        "received_at": received.isoformat() if received else "",
        "channel": draft.one("channel"),
        "detainee_name": draft.one("detainee_name"),
        "detainee_number": draft.one("detainee_number"),
        "detainee_date_of_birth": dob.isoformat() if dob else "",
        "age_group": draft.one("age_group"),
        "sanction_types": list(draft.answers.get("sanction_types", [])),
        "detriment_dates": detriment,
        "description": draft.one("description"),
        "original_contact_date": contact.isoformat() if contact else "",
        "party_bodies": list(draft.answers.get("party_bodies", [])),
        "risk": draft.one("risk"),
        "assigned_user_id": _form_id(draft.one("assigned_user_id")),
    }
    if draft.one(LINKED):
        data["linked_case"] = draft.one(LINKED)
    return data


# -- choices that depend on the database -------------------------------------------------------------


def _set_choices(form: StepForm, draft: Draft, reporter: User) -> None:
    if isinstance(form, EstablishmentStep):
        form.establishment_id.choices = options([("", "Select an establishment")] + [
            (i, n) for i, n in db().execute(select(Establishment.id, Establishment.name)
                                            .where(Establishment.active.is_(True)).order_by(Establishment.name))])
    elif isinstance(form, OtherBodiesStep):
        form.party_bodies.choices = options((c, n) for c, n in db().execute(
            select(Body.code, Body.name).where(Body.code != reporter.body_code).order_by(Body.name)))
    elif isinstance(form, AssignStep):
        nobody = "Me (you are reporting it)" if reporter.role is Role.STAFF else "Nobody yet"
        form.assigned_user_id.choices = options([("", nobody)] + [  # the reporter's own body only
            (u.id, f"{u.name} ({u.body_code}, {u.role.value})")
            for u in assignable_users(db(), reporter.body_code or "")])


def _names(draft: Draft, reporter: User) -> dict[str, str]:
    """Display names for the ids in the answers (check answers)."""
    out: dict[str, str] = {}
    est = draft.one("establishment_id")
    if est.isdigit():
        out["establishment"] = db().scalar(select(Establishment.name).where(Establishment.id == int(est))) or ""
    bodies: dict[str, str] = {c: n for c, n in db().execute(select(Body.code, Body.name))}
    out["party_bodies"] = ", ".join(bodies.get(c, c) for c in draft.answers.get("party_bodies", [])) or "None"
    who = draft.one("assigned_user_id")
    if who.isdigit():
        out["assigned"] = db().scalar(select(User.name).where(User.id == int(who))) or ""
    else:
        out["assigned"] = "You" if reporter.role is Role.STAFF else "Nobody yet"
    return out


def _summary(draft: Draft, reporter: User) -> list[dict[str, Any]]:
    names = _names(draft, reporter)
    received = _received_at(draft)

    def when(d: date | None, none: str = "Not given") -> str:
        return long_date(d) if d else none

    received_text = ""
    if received is not None:
        received_text = long_date(received.date()) + (f" at {received:%H:%M}" if draft.one("received_time") else "")
    detriment = [_date_of(draft, f"detriment_date_{i}") for i in (1, 2, 3)]
    rows: list[tuple[str, str, str, str]] = [  # key, value, step, the field the Change link names
        ("Establishment", names.get("establishment", ""), "establishment", "establishment"),
        ("Received", received_text, "received", "date received"),
        ("How it was received", CHANNEL_LABELS.get(Channel(draft.one("channel")), "") if draft.one("channel") in
         {c.value for c in Channel} else "", "received", "how it was received"),
        ("Name", draft.one("detainee_name"), "person", "name"),
        ("Prison number", draft.one("detainee_number") or "Not given", "person", "prison number"),
        ("Date of birth", when(_date_of(draft, "detainee_date_of_birth")), "person", "date of birth"),
        ("Age group", AGE_LABELS.get(AgeGroup(draft.one("age_group")), "") if draft.one("age_group") in
         {a.value for a in AgeGroup} else "", "age-group", "age group"),
        ("Kind of sanction", "\n".join(SANCTION_LABELS[SanctionType(s)] for s in draft.answers.get("sanction_types", [])
                                       if s in {t.value for t in SanctionType}), "what-happened", "kind of sanction"),
        ("When it happened", "\n".join(long_date(d) for d in detriment if d) or "Not given", "what-happened",
         "when it happened"),
        ("What happened", draft.one("description"), "what-happened", "what happened"),
        ("Date of the contact", when(_date_of(draft, "original_contact_date")), "original-contact",
         "date of the contact"),
        ("Other bodies", names["party_bodies"], "other-bodies", "other bodies"),
        ("Risk", RISK_LABELS.get(Risk(draft.one("risk")), "") if draft.one("risk") in {r.value for r in Risk} else "",
         "risk", "risk"),
        ("Assigned to", names["assigned"], "assign", "who should work on the case"),
    ]
    out = [{"key": {"text": k},
            "value": {"text": v, "classes": "app-pre-wrap"},
            "actions": {"items": [{"href": url_for("cases.report_step", step=step, change="1"),
                                   "text": "Change", "visuallyHiddenText": hidden}]}}
           for k, v, step, hidden in rows]
    if draft.one(LINKED):  # set from the earlier case's page; discarding the report removes it
        out.insert(0, {"key": {"text": "Linked to"},
                       "value": {"html": Markup('<a class="govuk-link" href="{}">{}</a>').format(
                           url_for("case.show", reference=draft.one(LINKED)), draft.one(LINKED))}})
    return out


# -- the views -----------------------------------------------------------------------------------------


class DiscardForm(FlaskForm):
    submit = SubmitField("Discard your answers and start again", widget=GovSubmitInput())


class SubmitReportForm(FlaskForm):
    submit = SubmitField("Submit", widget=GovSubmitInput())


class LinkForm(FlaskForm):
    """"Open a linked case" on an earlier case's page: the reference goes in the POST body (a reference,
    never identity), and into the draft."""

    linked = HiddenField()


def _form_for(step: Step, draft: Draft, formdata: MultiDict[str, str] | None) -> StepForm:
    if formdata is None:
        formdata = MultiDict([(k, v) for k in step.fields for v in draft.answers.get(k, [])])
    return step.form(formdata=formdata)


def _previous(step: Step) -> str:
    i = STEPS.index(step)
    return url_for("cases.report_step", step=STEPS[i - 1].slug) if i else url_for("cases.report")


def _field_params(step: Step, form: StepForm) -> dict[str, dict[str, Any]]:
    """How each field is rendered: a single question is the page's heading (label or legend)."""
    single = len(step.fields) == 1
    out: dict[str, dict[str, Any]] = {}
    for name in step.fields:
        f = form[name]
        grouped = isinstance(f.widget, GovRadioInput | GovCheckboxesInput | GovDateInput)
        if grouped:
            legend: dict[str, Any] = {"text": f.label.text,
                                      "classes": "govuk-fieldset__legend--l" if single else "govuk-fieldset__legend--m"}
            if single:
                legend["isPageHeading"] = True
            params: dict[str, Any] = {"fieldset": {"legend": legend}}
        else:
            label: dict[str, Any] = {"text": f.label.text, "classes": "govuk-label--l" if single else "govuk-label--s"}
            if single:
                label["isPageHeading"] = True
            params = {"label": label}
        if grouped and not f.description:
            params["hint"] = None  # no empty hint element
        if isinstance(f, DateParts):
            params["id"] = f.name  # the container; the error summary links to the day input
        if isinstance(f.widget, GovTextInput) and name == "received_time":
            params["classes"] = "govuk-input--width-5"
        out[name] = params
    return out


def _render_step(step: Step, form: StepForm, change: bool, status: int = 200) -> ResponseReturnValue:
    back = url_for("cases.report_check") if change else _previous(step)
    args: dict[str, Any] = {"change": "1"} if change else {}
    action = url_for("cases.report_step", step=step.slug, **args)
    return render_template("cases/report_step.html", title=step.title, step=step, form=form, back=back,
                           action=action, params=_field_params(step, form), single=len(step.fields) == 1), status


@bp.get("/new")
@roles(Role.LEAD, Role.STAFF)
def report() -> ResponseReturnValue:
    draft = _load_draft()
    return render_template("cases/report_start.html", title="Report a concern", has_draft=bool(draft.done),
                           linked=draft.one(LINKED), discard=DiscardForm(),
                           first=url_for("cases.report_step", step=STEPS[0].slug))


@bp.post("/new/linked")
@roles(Role.LEAD, Role.STAFF)
def report_linked() -> ResponseReturnValue:
    """Start (or continue) a report that will open a new case linked to an earlier one the user may see
    (a case they may not see is a 404, as everywhere). The link is checked again when the case is opened."""
    form = LinkForm()
    if not form.validate_on_submit() or not isinstance(form.linked.data, str):
        abort(400)
    earlier = get_case(db(), me(), form.linked.data.strip().upper())
    draft = _load_draft()
    draft.answers[LINKED] = [earlier.reference]
    _save_draft(draft)
    return redirect(url_for("cases.report"))


@bp.post("/new/discard")
@roles(Role.LEAD, Role.STAFF)
def report_discard() -> ResponseReturnValue:
    if DiscardForm().validate_on_submit():
        _clear_draft()
    return redirect(url_for("cases.report"))


@bp.route("/new/<step>", methods=["GET", "POST"])
@roles(Role.LEAD, Role.STAFF)
def report_step(step: str) -> ResponseReturnValue:
    current = BY_SLUG.get(step)
    if current is None:
        abort(404)
    change = request.args.get("change") == "1"
    draft = _load_draft()
    reporter = me()
    if request.method == "GET":
        form = _form_for(current, draft, None)
        _set_choices(form, draft, reporter)
        return _render_step(current, form, change)
    form = current.form()
    _set_choices(form, draft, reporter)
    if not form.validate():
        return _render_step(current, form, change)
    if isinstance(form, OriginalContactStep):
        contact, received = form.original_contact_date.data, _received_at(draft)
        if contact and received and contact > received.date():
            form.original_contact_date.errors = ["The date of the contact must be on or before the date the "
                                                 "concern was received"]
            return _render_step(current, form, change)
    updated = Draft(dict(draft.answers), list(draft.done))
    for name in current.fields:
        f = form[name]
        if isinstance(f, DateParts):
            updated.answers[name] = f.parts
        elif isinstance(f, SelectMultipleField):
            updated.answers[name] = [str(v) for v in (f.data or [])]
        else:
            updated.answers[name] = [str(f.data or "").strip()]
    if current.slug not in updated.done:
        updated.done.append(current.slug)
    _save_draft(updated)
    if change and updated.complete():
        return redirect(url_for("cases.report_check"))
    i = STEPS.index(current)
    missing = updated.first_missing()
    if i + 1 < len(STEPS):
        return redirect(url_for("cases.report_step", step=STEPS[i + 1].slug))
    if missing is not None:
        return redirect(url_for("cases.report_step", step=missing.slug))
    return redirect(url_for("cases.report_check"))


@bp.route("/new/check", methods=["GET", "POST"])
@roles(Role.LEAD, Role.STAFF)
def report_check() -> ResponseReturnValue:
    draft = _load_draft()
    missing = draft.first_missing()
    if missing is not None:
        return redirect(url_for("cases.report_step", step=missing.slug))
    reporter = me()
    form = SubmitReportForm()
    if request.method == "POST" and form.validate_on_submit():
        try:
            created = open_case(db(), runtime().engine, runtime().cipher, reporter, now(), _case_data(draft),
                                messenger=runtime().messenger)
        except InvalidInput as exc:
            db().rollback()
            if LINKED in exc.errors:  # no longer a case the user may see: unlinked, said so, checked again
                earlier = draft.answers.pop(LINKED, [""])[0]
                _save_draft(draft)
                form.submit.errors = [f"The new case cannot be linked to {earlier}: it is not a case you can see. "
                                      "Check your answers and submit again to open it without a link"]
                return render_template("cases/report_check.html", title="Check your answers before reporting the "
                                       "concern", rows=_summary(draft, reporter), submit_form=form, form=form,
                                       back=url_for("cases.report_step", step=STEPS[-1].slug)), 422
            return _step_with_domain_errors(draft, reporter, exc.errors)
        reference = created.reference
        if not discard_draft(db(), _web_session()):  # with the case, in one transaction
            # Submitted meanwhile (a double click, another tab): that submission made the case.
            db().rollback()
            return redirect(url_for("cases.index"))
        db().commit()
        session[DONE_KEY] = reference
        return redirect(url_for("cases.report_done"))
    return render_template("cases/report_check.html", title="Check your answers before reporting the concern",
                           rows=_summary(draft, reporter), submit_form=form,
                           back=url_for("cases.report_step", step=STEPS[-1].slug))


def _step_with_domain_errors(draft: Draft, reporter: User, errors: Mapping[str, str]) -> ResponseReturnValue:
    """Show open_case's refusal on the first step that holds a refused field (nothing was written)."""
    by_step: dict[str, list[tuple[str, str]]] = {}
    for name, message in errors.items():
        slug, form_field, label = DOMAIN_FIELDS.get(name.split("[")[0], ("establishment", "establishment_id", name))
        text = message if message[:1].isupper() else f"{label} {message}"
        by_step.setdefault(slug, []).append((form_field, text))
    step = next(s for s in STEPS if s.slug in by_step)
    form = _form_for(step, draft, None)
    _set_choices(form, draft, reporter)
    for form_field, text in by_step[step.slug]:
        form[form_field].errors = [*form[form_field].errors, text]
    return _render_step(step, form, change=True)


@bp.get("/new/done")
@roles(Role.LEAD, Role.STAFF)
def report_done() -> ResponseReturnValue:
    reference = session.get(DONE_KEY)
    if not isinstance(reference, str):
        return redirect(url_for("cases.report"))
    return render_template("cases/report_done.html", title="Concern reported", reference=reference)

