"""Reporting a concern: a question flow on the cases blueprint (the list is web/cases.py).

The answers include identity, so the draft is kept on the
server as ciphertext bound to the signed-in session (``reprisals.accounts.save_draft``), never in the
cookie; it ends with the session. No case is written until the final "Open the case", which also deletes
the draft, in one transaction.

One question per page (decision 31): what kind of sanction, when it happened (as many dates as needed:
"Add another date" is a submit button, so it works without JavaScript), and what happened (with a
character count). The person's number is named as the establishment names it; a date of birth that
contradicts the age group is questioned. The reads go through ``reprisals.readside.forms``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from flask import abort, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import (
    GovCharacterCount,
    GovCheckboxesInput,
    GovDateInput,
    GovRadioInput,
    GovSelect,
    GovSubmitInput,
    GovTextInput,
)
from markupsafe import Markup
from werkzeug.datastructures import MultiDict
from wtforms import Field, HiddenField, SelectField, SelectMultipleField, StringField, SubmitField, TextAreaField
from wtforms.validators import ValidationError

from reprisals.accounts import WebSession, discard_draft, load_draft, save_draft
from reprisals.errors import InvalidInput
from reprisals.models import AgeGroup, Channel, Risk, Role, SanctionType, User
from reprisals.readside.forms import (
    assignee_options,
    body_names,
    establishment_name,
    establishment_options,
    establishment_type,
    new_case_spec,
    opened_case,
    other_body_options,
    risk_hints,
    user_name,
)
from reprisals.services import get_case, open_case
from reprisals.vocabulary import (
    AGE_LABELS,
    CHANNEL_LABELS,
    RISK_LABELS,
    SANCTION_LABELS,
    long_date,
    moment_words,
    number_label,
)
from web.cases import bp as bp
from web.cases import options
from web.context import db, me, now, runtime
from web.security import roles

LONDON = ZoneInfo("Europe/London")


# == reporting a concern ===========================================================================

DONE_KEY = "report_done"
MAX_DESCRIPTION = 10_000  # as open_case (and the API) accept
MAX_DATES = 10  # detriment dates on the report ("Add another date" up to this)
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
ADULT_AGE = 18


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
    # Labelled as the establishment names it (``vocabulary.number_label``): set with the choices.
    detainee_number = StringField("Prison number (optional)", widget=GovTextInput(), render_kw=NO_AUTOFILL,
                                  description="For example, A1234BC")
    detainee_date_of_birth = DateParts("Date of birth (optional)", id="detainee_date_of_birth-day",
                                       subject="Date of birth", future="Date of birth must be in the past",
                                       allow_today=False, description="For example, 27 3 1990")
    number_name = "Prison number"

    def validate_detainee_number(self, f: Field) -> None:
        if isinstance(f.data, str) and len(f.data.strip()) > 40:
            raise ValidationError(f"{self.number_name} must be 40 characters or fewer")


class AgeGroupStep(StepForm):
    age_group = SelectField("How old is the person?", widget=GovRadioInput(), validate_choice=False,
                            choices=options((a.value, AGE_LABELS[a]) for a in AgeGroup),
                            validators=[_required("Select the person's age group"),
                                        _one_of("Select the person's age group")])


class SanctionStep(StepForm):
    sanction_types = SelectMultipleField(
        "What kind of sanction is alleged?", widget=GovCheckboxesInput(), validate_choice=False,
        choices=options((s.value, SANCTION_LABELS[s]) for s in SanctionType), description="Select all that apply",
        validators=[_required("Select at least one kind of sanction"),
                    _one_of("Select kinds of sanction from the list")])


class DatesStep(StepForm):
    """When it happened: one date input per day (``dates_form`` adds them), "Add another date" and a
    "Remove" button for each: submit buttons, so the MoJ add-another pattern works without JavaScript."""

    add = SubmitField("Add another date", widget=GovSubmitInput())


def date_field_name(i: int) -> str:
    return f"detriment_date_{i}"


def dates_form(n: int) -> type[DatesStep]:
    """The dates question with ``n`` date inputs (1 to MAX_DATES)."""
    attrs: dict[str, Any] = {}
    for i in range(1, n + 1):
        subject = "The date it happened" if n == 1 else f"The {ORDINALS[i - 1]} date"
        attrs[date_field_name(i)] = DateParts(
            f"Date {i}", id=f"{date_field_name(i)}-day", subject=subject,
            future=f"{subject} must be today or in the past",
            description="For example, 8 4 2025" if i == 1 else "")
    return type(f"DatesStep{n}", (DatesStep,), attrs)


class DescriptionStep(StepForm):
    description = TextAreaField(
        "What happened?", widget=GovCharacterCount(), render_kw={"spellcheck": "false", "rows": 8},
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
    # Each level's hint says what it means and the deadlines it sets (``readside.forms.risk_hints``).
    risk = SelectField("What is the risk to the person?", widget=GovRadioInput(), validate_choice=False,
                       choices=options((r.value, RISK_LABELS[r]) for r in Risk),
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
    Step("sanction", SanctionStep, "What kind of sanction is alleged?", ("sanction_types",)),
    Step("dates", DatesStep, "When did it happen?", ()),  # its dates: ``_fields_of``
    Step("description", DescriptionStep, "What happened?", ("description",)),
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
    "detainee_number": ("person", "detainee_number", "The person's number"),
    "detainee_date_of_birth": ("person", "detainee_date_of_birth", "Date of birth"),
    "age_group": ("age-group", "age_group", "Age group"),
    "sanction_types": ("sanction", "sanction_types", "Kind of sanction"),
    "detriment_dates": ("dates", "detriment_date_1", "The date it happened"),
    "description": ("description", "description", "Description"),
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


def _date_count(draft: Draft) -> int:
    """How many date inputs the dates question has: those in the draft (blank ones too), at least one."""
    return max([1, *(i for i in range(1, MAX_DATES + 1) if date_field_name(i) in draft.answers)])


def _dates(draft: Draft) -> list[date]:
    found = (_date_of(draft, date_field_name(i)) for i in range(1, MAX_DATES + 1))
    return [d for d in found if d is not None]


def _set_dates(draft: Draft, entries: list[list[str]]) -> None:
    """Store the dates question's inputs, numbered from 1 again (after one is removed)."""
    for i in range(1, MAX_DATES + 1):
        draft.answers.pop(date_field_name(i), None)
    for i, parts in enumerate(entries[:MAX_DATES], start=1):
        draft.answers[date_field_name(i)] = parts


def _dob_problem(draft: Draft, dob: date | None, age_group: str) -> str | None:
    """A date of birth that contradicts the age group, in words that ask to check one or the other."""
    if dob is None or age_group not in {a.value for a in AgeGroup}:
        return None
    received = _received_at(draft)
    on = received.astimezone(LONDON).date() if received else now().astimezone(LONDON).date()
    age = on.year - dob.year - ((on.month, on.day) < (dob.month, dob.day))
    if age_group == AgeGroup.CHILD.value and age >= ADULT_AGE:
        return ("The date of birth shows the person was 18 or over when the concern was received: check the "
                "date of birth or the person's age")
    if age_group == AgeGroup.ADULT.value and age < ADULT_AGE:
        return ("The date of birth shows the person was under 18 when the concern was received: check the "
                "date of birth or the person's age")
    return None


def _contradiction(draft: Draft) -> str | None:
    """The draft's date of birth contradicts its age answer (both given): in words, else None."""
    if "age-group" not in draft.done:
        return None
    return _dob_problem(draft, _date_of(draft, "detainee_date_of_birth"), draft.one("age_group"))


def _case_data(draft: Draft) -> dict[str, Any]:
    received = _received_at(draft)
    dob = _date_of(draft, "detainee_date_of_birth")
    contact = _date_of(draft, "original_contact_date")
    detriment = [d.isoformat() for d in _dates(draft)]
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
        form.establishment_id.choices = options([("", "Select an establishment"), *establishment_options(db())])
    elif isinstance(form, PersonStep):
        name, hint = _number_words(draft)
        form.number_name = name
        form.detainee_number.label.text = f"{name} (optional)"
        form.detainee_number.description = hint
    elif isinstance(form, OtherBodiesStep):
        form.party_bodies.choices = options(other_body_options(db(), reporter.body_code))
    elif isinstance(form, AssignStep):
        nobody = "Me (you are reporting it)" if reporter.role is Role.STAFF else "Nobody yet"
        form.assigned_user_id.choices = options([("", nobody), *assignee_options(db(), reporter.body_code or "")])


def _establishment_id(draft: Draft) -> int | None:
    est = _form_id(draft.one("establishment_id"))
    return est if isinstance(est, int) else None


def _number_words(draft: Draft) -> tuple[str, str]:
    """What the person's number is called where they are held ('Home Office reference'), and its hint."""
    return number_label(establishment_type(db(), _establishment_id(draft)))


def _names(draft: Draft, reporter: User) -> dict[str, str]:
    """Display names for the ids in the answers (check answers)."""
    out: dict[str, str] = {"establishment": establishment_name(db(), _establishment_id(draft))}
    bodies = body_names(db())
    out["party_bodies"] = ", ".join(bodies.get(c, c) for c in draft.answers.get("party_bodies", [])) or "None"
    who = _form_id(draft.one("assigned_user_id"))
    if isinstance(who, int):
        out["assigned"] = user_name(db(), who)
    else:
        out["assigned"] = "You" if reporter.role is Role.STAFF else "Nobody yet"
    return out


def _label(labels: Mapping[Any, str], enum: Any, value: str) -> str:
    return labels.get(enum(value), "") if value in {e.value for e in enum} else ""


def _summary(draft: Draft, reporter: User) -> list[dict[str, Any]]:
    """Check your answers, in three summary cards: the person, what happened, the case."""
    names = _names(draft, reporter)
    received = _received_at(draft)

    def when(d: date | None, none: str = "Not given") -> str:
        return long_date(d) if d else none

    received_text = ""
    if received is not None:
        received_text = long_date(received.date()) + (f" at {received:%H:%M}" if draft.one("received_time") else "")
    number_name = _number_words(draft)[0]
    Row = tuple[str, str, str, str]  # key, value, step, the field the Change link names
    cards: list[tuple[str, list[Row]]] = [
        ("The person", [
            ("Name", draft.one("detainee_name"), "person", "name"),
            (number_name, draft.one("detainee_number") or "Not given", "person", number_name.lower()),
            ("Date of birth", when(_date_of(draft, "detainee_date_of_birth")), "person", "date of birth"),
            ("Age", _label(AGE_LABELS, AgeGroup, draft.one("age_group")), "age-group", "age"),
        ]),
        ("What happened", [
            ("Kind of sanction", "\n".join(SANCTION_LABELS[SanctionType(s)]
                                           for s in draft.answers.get("sanction_types", [])
                                           if s in {t.value for t in SanctionType}), "sanction", "kind of sanction"),
            ("When it happened", "\n".join(long_date(d) for d in _dates(draft)) or "Not given", "dates",
             "when it happened"),
            ("What happened", draft.one("description"), "description", "what happened"),
            ("Date of the contact", when(_date_of(draft, "original_contact_date")), "original-contact",
             "date of the contact"),
        ]),
        ("The case", [
            ("Establishment", names["establishment"], "establishment", "establishment"),
            ("Received", received_text, "received", "date received"),
            ("How it was received", _label(CHANNEL_LABELS, Channel, draft.one("channel")), "received",
             "how it was received"),
            ("Other bodies", names["party_bodies"], "other-bodies", "other bodies"),
            ("Risk", _label(RISK_LABELS, Risk, draft.one("risk")), "risk", "risk"),
            ("Assigned to", names["assigned"], "assign", "who should work on the case"),
        ]),
    ]
    out: list[dict[str, Any]] = []
    for title, rows in cards:
        items = [{"key": {"text": k},
                  "value": {"text": v, "classes": "app-pre-wrap"},
                  "actions": {"items": [{"href": url_for("cases.report_step", step=step, change="1"),
                                         "text": "Change", "visuallyHiddenText": hidden}]}}
                 for k, v, step, hidden in rows]
        if title == "The case" and draft.one(LINKED):  # set from the earlier case's page; discarding removes it
            items.insert(0, {"key": {"text": "Linked to"},
                             "value": {"html": Markup('<a class="govuk-link" href="{}">{}</a>').format(
                                 url_for("case.show", reference=draft.one(LINKED)), draft.one(LINKED))}})
        out.append({"card": {"title": {"text": title, "headingLevel": 2}}, "rows": items})
    return out


# -- the views -----------------------------------------------------------------------------------------


class DiscardForm(FlaskForm):
    submit = SubmitField("Discard your answers and start again", widget=GovSubmitInput())


class SubmitReportForm(FlaskForm):
    submit = SubmitField("Open the case", widget=GovSubmitInput())


class LinkForm(FlaskForm):
    """"Open a linked case" on an earlier case's page: the reference goes in the POST body (a reference,
    never identity), and into the draft."""

    linked = HiddenField()


def _fields_of(step: Step, draft: Draft, formdata: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    """The step's fields: its own, or for the dates question one per date (as posted, else as in the draft)."""
    if step.form is not DatesStep:
        return step.fields
    if formdata is not None:
        n = max([1, *(i for i in range(1, MAX_DATES + 1) if date_field_name(i) in formdata)])
    else:
        n = _date_count(draft)
    return tuple(date_field_name(i) for i in range(1, n + 1))


def _form_class(step: Step, fields: tuple[str, ...]) -> type[StepForm]:
    return dates_form(len(fields)) if step.form is DatesStep else step.form


def _form_for(step: Step, draft: Draft, formdata: MultiDict[str, str] | None) -> StepForm:
    fields = _fields_of(step, draft)
    if formdata is None:
        formdata = MultiDict([(k, v) for k in fields for v in draft.answers.get(k, [])])
    return _form_class(step, fields)(formdata=formdata)


def _previous(step: Step) -> str:
    i = STEPS.index(step)
    return url_for("cases.report_step", step=STEPS[i - 1].slug) if i else url_for("cases.report")


def _field_params(step: Step, form: StepForm, fields: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """How each field is rendered: a single question is the page's heading (label or legend)."""
    single = len(fields) == 1 and step.form is not DatesStep
    out: dict[str, dict[str, Any]] = {}
    for name in fields:
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
            if step.form is DatesStep:
                params["fieldset"]["legend"]["classes"] = "govuk-fieldset__legend--s"
        if isinstance(f.widget, GovTextInput) and name == "received_time":
            params["classes"] = "govuk-input--width-5"
        if isinstance(f.widget, GovCharacterCount):
            params["maxlength"] = MAX_DESCRIPTION
        if isinstance(form, RiskStep) and name == "risk":
            hints = risk_hints(new_case_spec(db(), runtime().engine))
            params["items"] = [{"hint": {"text": hints.get(str(c.value), "")}} for c in f.choices or ()]
        out[name] = params
    return out


def _render_step(step: Step, form: StepForm, change: bool, status: int = 200, *,
                 fields: tuple[str, ...] | None = None) -> ResponseReturnValue:
    fields = fields if fields is not None else step.fields
    back = url_for("cases.report_check") if change else _previous(step)
    args: dict[str, Any] = {"change": "1"} if change else {}
    action = url_for("cases.report_step", step=step.slug, **args)
    template = "cases/report_dates.html" if step.form is DatesStep else "cases/report_step.html"
    return render_template(template, title=step.title, step=step, form=form, back=back, fields=fields,
                           action=action, params=_field_params(step, form, fields),
                           single=len(fields) == 1 and step.form is not DatesStep,
                           max_dates=MAX_DATES), status


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


def _dates_button(current: Step, draft: Draft, form: StepForm, fields: tuple[str, ...],
                  change: bool) -> ResponseReturnValue | None:
    """"Add another date" and "Remove": keep what was typed (checked on Continue), add or remove one input."""
    remove = request.form.get("remove", "")
    adding = "add" in request.form
    if not adding and not remove:
        return None
    entries = [form[name].parts for name in fields]
    if remove.isdigit() and 1 <= int(remove) <= len(entries):
        del entries[int(remove) - 1]
    elif adding:
        if len(entries) >= MAX_DATES:
            form[fields[-1]].errors = [f"You can give up to {MAX_DATES} dates: give the others in the description"]
            return _render_step(current, form, change, 200, fields=fields)
        entries.append(["", "", ""])
    updated = Draft(dict(draft.answers), list(draft.done))
    _set_dates(updated, entries or [["", "", ""]])
    _save_draft(updated)
    anchor = f"#{date_field_name(len(entries))}-day" if adding else ""
    args: dict[str, Any] = {"change": "1"} if change else {}
    return redirect(url_for("cases.report_step", step=current.slug, **args) + anchor)


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
        if isinstance(form, AgeGroupStep) and request.args.get("check") == "1" and (problem := _contradiction(draft)):
            form.age_group.errors = [problem]  # sent here by a date of birth that contradicts the answer
        return _render_step(current, form, change, fields=_fields_of(current, draft))
    fields = _fields_of(current, draft, request.form)
    form = _form_class(current, fields)()
    _set_choices(form, draft, reporter)
    if current.form is DatesStep:
        form.validate()
        if form.csrf_token.errors:
            return _render_step(current, form, change, fields=fields)
        button = _dates_button(current, draft, form, fields, change)
        if button is not None:
            return button
    if not form.validate():
        return _render_step(current, form, change, fields=fields)
    if isinstance(form, OriginalContactStep):
        contact, received = form.original_contact_date.data, _received_at(draft)
        if contact and received and contact > received.date():
            form.original_contact_date.errors = ["The date of the contact must be on or before the date the "
                                                 "concern was received"]
            return _render_step(current, form, change, fields=fields)
    if isinstance(form, AgeGroupStep):
        problem = _dob_problem(draft, _date_of(draft, "detainee_date_of_birth"), str(form.age_group.data or ""))
        if problem:
            form.age_group.errors = [problem]
            return _render_step(current, form, change, fields=fields)
    updated = Draft(dict(draft.answers), list(draft.done))
    if current.form is DatesStep:
        given = [form[name].parts for name in fields if any(form[name].parts)]
        _set_dates(updated, given or [["", "", ""]])
    for name in () if current.form is DatesStep else fields:
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
    if _contradiction(updated) and current.slug != "age-group":  # a date of birth changed after the age
        return redirect(url_for("cases.report_step", step="age-group", change="1", check="1"))
    if change and updated.complete():
        return redirect(url_for("cases.report_check"))
    i = STEPS.index(current)
    missing = updated.first_missing()
    if i + 1 < len(STEPS):
        return redirect(url_for("cases.report_step", step=STEPS[i + 1].slug))
    if missing is not None:
        return redirect(url_for("cases.report_step", step=missing.slug))
    return redirect(url_for("cases.report_check"))


CHECK_TITLE = "Check your answers before opening the case"


@bp.route("/new/check", methods=["GET", "POST"])
@roles(Role.LEAD, Role.STAFF)
def report_check() -> ResponseReturnValue:
    draft = _load_draft()
    missing = draft.first_missing()
    if missing is not None:
        return redirect(url_for("cases.report_step", step=missing.slug))
    if _contradiction(draft):
        return redirect(url_for("cases.report_step", step="age-group", change="1", check="1"))
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
                                      "Check your answers and open the case again to open it without a link"]
                return render_template("cases/report_check.html", title=CHECK_TITLE, cards=_summary(draft, reporter),
                                       submit_form=form, form=form,
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
    return render_template("cases/report_check.html", title=CHECK_TITLE, cards=_summary(draft, reporter),
                           submit_form=form, back=url_for("cases.report_step", step=STEPS[-1].slug))


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
    return _render_step(step, form, change=True, fields=_fields_of(step, draft))


@bp.get("/new/done")
@roles(Role.LEAD, Role.STAFF)
def report_done() -> ResponseReturnValue:
    reference = session.get(DONE_KEY)
    if not isinstance(reference, str):
        return redirect(url_for("cases.report"))
    opened = opened_case(db(), reference)
    due = moment_words(opened.due_at) if opened is not None and opened.due_at is not None else None
    return render_template("cases/report_done.html", title="Concern reported", reference=reference,
                           opened=opened, due=due)
