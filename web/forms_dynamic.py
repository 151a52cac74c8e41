"""Forms built from a trigger's fields in the workflow spec, with GOV.UK widgets.

choice → radios, boolean → yes/no radios, multichoice → checkboxes, date → the GOV.UK date input,
text → textarea, string → text input, integer → numeric text input, datetime → text input (ISO).
The form checks what a person can get wrong (required, a real date, length); the engine checks the
rest (``required_when``, guards) and its errors are mapped back onto the same fields by name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import (
    GovCheckboxesInput,
    GovDateInput,
    GovRadioInput,
    GovSubmitInput,
    GovTextArea,
    GovTextInput,
)
from wtforms import (
    DateField,
    Field,
    HiddenField,
    IntegerField,
    RadioField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length, Optional, StopValidation

from reprisals.letters import RECIPIENT_WORDS
from reprisals.services import MOMENT_FIELDS
from workflow.spec import FieldSpec, FieldType, Trigger

# Words for the spec's choice values where "capitalise and replace underscores" reads badly.
CHOICE_WORDS = {
    "full": "Full consent",
    "anonymous": "Anonymous (identifiers removed)",
    "none": "No consent",
    **RECIPIENT_WORDS,  # head of establishment, HMPPS, the Youth Custody Service… (one list, the domain's)
    "risk_to_life": "Risk to life",
    "child_safeguarding": "Child safeguarding",
    "overdue": "The response is overdue",
    "unsatisfactory": "The response is unsatisfactory",
    "imb_application": "IMB application",
    "ppo_complaint": "PPO complaint",
    "lo_visit": "Lay Observer visit",
    "via_family_or_solicitor": "Via family or solicitor",
    "escort": "Escort (PECS)",
}


def words(value: str) -> str:
    """A spec value for people: 'partly_substantiated' → 'Partly substantiated'."""
    return CHOICE_WORDS.get(value) or value.replace("_", " ").capitalize()


class Required:
    """Required, with a GOV.UK message; works for every field type (date input, checkboxes…)."""

    field_flags = {"required": True}

    def __init__(self, message: str) -> None:
        self.message = message

    def __call__(self, form: FlaskForm, field: Field) -> None:
        if field.errors:  # it could not be read (not a real date): that message says more
            raise StopValidation()
        if field.data in (None, "", []) or (isinstance(field.data, str) and not field.data.strip()):
            raise StopValidation(self.message)


class ChoiceField(RadioField):
    """Radios whose unanswered question gets the field's own "Select …" message (``Required``), not
    WTForms' "Not a valid choice." (its choice check runs first); a value not offered is refused with
    the same message."""

    def __init__(self, label: str, **kwargs: Any) -> None:
        super().__init__(label, invalid_choice_message=_select(label), **kwargs)

    def pre_validate(self, form: FlaskForm) -> None:
        if self.data in (None, ""):
            return  # unanswered: Required says so, in the question's words
        super().pre_validate(form)


class DateInput(GovDateInput):
    """The GOV.UK date input whose first box carries the field's id (the error summary links to it),
    tolerant of a date posted as one value."""

    def map_gov_params(self, field: Any, **kwargs: Any) -> dict[str, Any]:
        raw = field.raw_data
        if raw is not None and len(raw) != 3:
            field.raw_data = None
        try:
            params: dict[str, Any] = super().map_gov_params(field, **kwargs)
        finally:
            field.raw_data = raw
        params["id"] = f"{field.id}-date"
        params["items"][0]["id"] = field.id
        return params


class GovDateField(DateField):
    """Day, month and year boxes; all blank is no date; anything else must be a real date."""

    def __init__(self, label: str | None = None, validators: Any = None, **kwargs: Any) -> None:
        super().__init__(label, validators, format="%d %m %Y", widget=DateInput(), **kwargs)

    def process_formdata(self, valuelist: list[Any]) -> None:
        if not valuelist:
            return
        parts = [str(v).strip() for v in valuelist]
        if not any(parts):
            self.data = None
            return
        self.data = None
        try:
            if len(parts) == 1:
                self.data = date.fromisoformat(parts[0])
            else:
                self.data = datetime.strptime(" ".join(parts), "%d %m %Y").date()
        except ValueError:
            raise ValueError(f"{self.label.text} must be a real date") from None


def _select(label: str) -> str:
    return f"Select {label[0].lower() + label[1:]}"


def _message(label: str, spec: FieldSpec) -> str:
    if spec.type in (FieldType.CHOICE, FieldType.BOOLEAN):
        return _select(label)
    if spec.type is FieldType.MULTICHOICE:
        return f"Select at least one option for {label[0].lower() + label[1:]}"
    return f"Enter {label[0].lower() + label[1:]}"


def label_of(name: str, spec: FieldSpec) -> str:
    return spec.label or name.replace("_", " ").capitalize()


def make_field(name: str, spec: FieldSpec) -> Any:
    label = label_of(name, spec)
    checks: list[Any] = [Required(_message(label, spec)) if spec.required and not spec.required_when else Optional()]
    if spec.max_length:
        checks.append(Length(max=spec.max_length,
                             message=f"{label} must be {spec.max_length} characters or fewer"))
    hint = "Optional." if not spec.required and not spec.required_when else ""
    if spec.required_when:
        hint = "Needed when " + "; ".join(
            f"{other.replace('_', ' ')} is {' or '.join(words(v).lower() for v in allowed)}"
            for other, allowed in spec.required_when.items()) + "."
    t = spec.type
    options = [SelectChoice(c, words(c)) for c in spec.choices or ()]
    if t is FieldType.CHOICE:
        return ChoiceField(label, choices=options, validators=checks, widget=GovRadioInput(), description=hint,
                           validate_choice=True)
    if t is FieldType.BOOLEAN:
        return ChoiceField(label, choices=[SelectChoice("yes", "Yes"), SelectChoice("no", "No")], validators=checks,
                           widget=GovRadioInput(), description=hint)
    if t is FieldType.MULTICHOICE:
        return SelectMultipleField(label, choices=options, validators=checks, widget=GovCheckboxesInput(),
                                   description=hint or "Select all that apply.")
    if t is FieldType.DATE:
        return GovDateField(label, validators=checks, description=hint or "For example, 27 3 2025")
    if t is FieldType.TEXT:
        return TextAreaField(label, validators=checks, widget=GovTextArea(), description=hint)
    if t is FieldType.INTEGER:
        return IntegerField(label, validators=checks, widget=GovTextInput(), description=hint,
                            render_kw={"inputmode": "numeric"})
    if t is FieldType.DATETIME:
        return StringField(label, validators=checks, widget=GovTextInput(),
                           description=hint or "A date and time such as 2025-04-16T10:30:00+01:00")
    return StringField(label, validators=checks, widget=GovTextInput(), description=hint)


WHEN_LABEL = "When did this happen?"
TIME_FORM = re.compile(r"^(?P<h>[01]?\d|2[0-3])[:.](?P<m>[0-5]\d)$")


class ActionForm(FlaskForm):
    """The base of every trigger's form: what the page showed (version and last event), when it happened
    (a date, and a time where it matters: blank is now), and submit."""

    expected_version = HiddenField()
    seen_seq = HiddenField()
    occurred_on: Any = None  # set per form (GovDateField): the day it happened
    occurred_time = StringField("Time (optional)", widget=GovTextInput(),
                                description="For example, 14:30 (UK time). An urgent case needs one.",
                                render_kw={"inputmode": "numeric", "autocomplete": "off"})
    submit = SubmitField("Continue", widget=GovSubmitInput())

    trigger_fields: tuple[str, ...] = ()
    specs: Mapping[str, FieldSpec] = {}

    def values(self) -> dict[str, Any]:
        """The engine's view of what was entered: blanks left out, dates as ISO text."""
        out: dict[str, Any] = {}
        for name in self.trigger_fields:
            value = self[name].data
            if value in (None, "", []):
                continue
            if isinstance(value, date):
                value = value.isoformat()
            elif isinstance(value, str):
                value = value.strip()
                if not value:
                    continue
            out[name] = value
        return out

    def occurred_at(self, today: date) -> str | None:
        """When it happened, as the one parser of moments reads it (``2025-04-17`` or ``2025-04-17T14:30``),
        or None for now. A time without a date is today. Refused times are on ``occurred_time``."""
        day = self["occurred_on"].data
        typed = (self.occurred_time.data or "").strip()
        if not typed:
            return day.isoformat() if isinstance(day, date) else None
        m = TIME_FORM.match(typed)
        if m is None:
            self.occurred_time.errors = [*self.occurred_time.errors,
                                         "Enter the time as hours and minutes, like 14:30"]
            return None
        on = day if isinstance(day, date) else today
        return f"{on.isoformat()}T{int(m['h']):02d}:{m['m']}"

    def add_errors(self, errors: Mapping[str, str]) -> list[str]:
        """Put the engine's errors on their fields; returns those that fit no field."""
        loose: list[str] = []
        for name, message in errors.items():
            if name == "occurred_at":
                target = self.occurred_time if message.startswith("needs a time") else self["occurred_on"]
                target.errors = [*target.errors, f"The date it happened {message}"]
                continue
            if name in self.trigger_fields:
                spec = self.specs[name]
                label = label_of(name, spec)
                text = _message(label, spec) if message == "is required" else f"{label} {message}"
                self[name].errors = [*self[name].errors, text]
            else:
                loose.append(f"{name.replace('_', ' ').capitalize()} {message}")
        return loose

    def field_names(self) -> tuple[str, ...]:
        return (*self.trigger_fields, "occurred_on", "occurred_time")


_FORMS: dict[tuple[str, int, str], type[ActionForm]] = {}


def action_form_class(spec_key: str, spec_version: int, trigger: Trigger) -> type[ActionForm]:
    key = (spec_key, spec_version, trigger.name)
    cls = _FORMS.get(key)
    if cls is None:
        # Version 1's date fields that say when the action happened are the "When did this happen?"
        # question, asked once for every action (reprisals.services.MOMENT_FIELDS).
        attrs: dict[str, Any] = {name: make_field(name, f) for name, f in trigger.fields.items()
                                 if name not in ActionForm.__dict__ and not hasattr(FlaskForm, name)
                                 and not (name in MOMENT_FIELDS and f.type is FieldType.DATE)}
        attrs["trigger_fields"] = tuple(attrs)
        attrs["occurred_on"] = GovDateField(WHEN_LABEL, validators=[Optional()],
                                            description="For example, 17 4 2025. Leave it blank if it happened "
                                                        "just now.")
        attrs["specs"] = dict(trigger.fields)
        cls = _FORMS[key] = type(f"ActionForm_{trigger.name}", (ActionForm,), attrs)
    return cls
