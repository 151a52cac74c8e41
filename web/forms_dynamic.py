"""Forms built from a trigger's fields in the workflow spec, with GOV.UK widgets.

choice → radios, boolean → yes/no radios, multichoice → checkboxes, date → the GOV.UK date input,
text → textarea, string → text input, integer → numeric text input, datetime → text input (ISO).
The form checks what a person can get wrong (required, a real date, length); the engine checks the
rest (``required_when``, guards) and its errors are mapped back onto the same fields by name. Every
message is the protocol file's where it has one (a field's ``errors:``, decision 31), else a generic one
in the same style.

A form fits its case (``ActionForm.fit``, from ``reprisals.protocol.fields_that_apply``): fields that do
not apply are left out, and their posted values never read; choices the case rules out are not offered,
and refused if posted. A field required only when one radio has one value (``required_when``) is revealed
under that radio (the Design System's conditional reveal) and ignored when that value is not chosen. An
optional radio ends with "None of these", so an answer given by mistake can be taken back.
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
from markupsafe import Markup
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
from wtforms.validators import Length, Optional, StopValidation, ValidationError

from reprisals.letters import RECIPIENT_WORDS
from reprisals.protocol import FieldsThatApply, fields_that_apply
from reprisals.services import MOMENT_FIELDS
from workflow.spec import FieldSpec, FieldType, Trigger, WorkflowSpec

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


NONE_OF_THESE = "None of these"


class ChoiceField(RadioField):
    """Radios whose unanswered question gets the field's own "Select …" message (``Required``), not
    WTForms' "Not a valid choice." (its choice check runs first); a value not offered is refused with
    the same message, or ``invalid_message``."""

    def __init__(self, label: str, *, invalid_message: str | None = None, **kwargs: Any) -> None:
        super().__init__(label, invalid_choice_message=invalid_message or _select(label), **kwargs)

    def pre_validate(self, form: FlaskForm) -> None:
        if self.data in (None, ""):
            return  # unanswered: Required says so, in the question's words
        super().pre_validate(form)


class MultiChoiceField(SelectMultipleField):
    """Checkboxes; a value not offered (a recipient the case rules out) is refused with the field's message,
    not WTForms' "'x' is not a valid choice for this field."."""

    def __init__(self, label: str, *, invalid_message: str, **kwargs: Any) -> None:
        super().__init__(label, **kwargs)
        self.invalid_message = invalid_message

    def pre_validate(self, form: FlaskForm) -> None:
        offered = {_choice_value(c) for c in self.choices or ()}
        if any(v not in offered for v in self.data or ()):
            raise ValidationError(self.invalid_message)


class WholeNumberField(IntegerField):
    """A whole number, refused with the field's message (not "Not a valid integer value.")."""

    def __init__(self, label: str, *, invalid_message: str, **kwargs: Any) -> None:
        super().__init__(label, **kwargs)
        self.invalid_message = invalid_message

    def process_formdata(self, valuelist: list[Any]) -> None:
        text = str(valuelist[0]).strip() if valuelist else ""
        self.data = None
        if not text:
            return
        if not (text.lstrip("-").isdigit() and len(text) < 19):
            raise ValueError(self.invalid_message)
        self.data = int(text)


class Radios(GovRadioInput):
    """GOV.UK radios with "or" before the "None of these" answer (the value ``""``) that takes an answer back."""

    def map_gov_params(self, field: Any, **kwargs: Any) -> dict[str, Any]:
        params: dict[str, Any] = super().map_gov_params(field, **kwargs)
        items = params.get("items") or []
        if items and items[-1].get("value") == "" and len(items) > 1:
            items.insert(len(items) - 1, {"divider": "or"})
        return params


def _choice_value(choice: Any) -> Any:
    return choice.value if isinstance(choice, SelectChoice) else choice[0] if isinstance(choice, tuple) else choice


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

    def __init__(self, label: str | None = None, validators: Any = None, *, invalid_message: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(label, validators, format="%d %m %Y", widget=DateInput(), **kwargs)
        self.invalid_message = invalid_message

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
            raise ValueError(self.invalid_message or f"{self.label.text} must be a real date") from None


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


def applies_only_when(spec: FieldSpec) -> tuple[str, str] | None:
    """(the other field, its one value) when this field is asked only after that answer: required only
    when one other field has one value. Such a field is revealed under that answer."""
    if not spec.required_when or len(spec.required_when) != 1:  # (required_when overrides required)
        return None
    other, values = next(iter(spec.required_when.items()))
    return (other, values[0]) if len(values) == 1 else None


def _needed_when(spec: FieldSpec, specs: Mapping[str, FieldSpec]) -> str:
    parts = []
    for other, allowed in (spec.required_when or {}).items():
        other_spec = specs.get(other)
        question = label_of(other, other_spec) if other_spec is not None else other.replace("_", " ")
        parts.append(f"your answer to {question[0].lower() + question[1:]} is "
                     f"{' or '.join(words(v).lower() for v in allowed)}")
    return "Needed if " + "; and ".join(parts) + "."


def make_field(name: str, spec: FieldSpec, specs: Mapping[str, FieldSpec] | None = None) -> Any:
    """The field for one of the spec's fields; its messages are the file's (``errors:``) where it has them."""
    label = label_of(name, spec)
    required = spec.message("required") or _message(label, spec)
    invalid = spec.message("invalid")
    checks: list[Any] = [Required(required) if spec.required and not spec.required_when else Optional()]
    if spec.max_length:
        checks.append(Length(max=spec.max_length, message=spec.message("max_length")
                             or f"{label} must be {spec.max_length:,} characters or fewer"))
    hint = "Optional." if not spec.can_be_required() else ""
    if spec.required_when and applies_only_when(spec) is None:
        hint = _needed_when(spec, specs or {})
    t = spec.type
    options = [SelectChoice(c, words(c)) for c in spec.choices or ()]
    if t in (FieldType.CHOICE, FieldType.BOOLEAN):
        if t is FieldType.BOOLEAN:
            options = [SelectChoice("yes", "Yes"), SelectChoice("no", "No")]
        if not spec.can_be_required():  # an answer given by mistake can be taken back
            options.append(SelectChoice("", NONE_OF_THESE))
            hint = ""
        return ChoiceField(label, choices=options, validators=checks, widget=Radios(), description=hint,
                           validate_choice=True, invalid_message=invalid or _select(label))
    if t is FieldType.MULTICHOICE:
        return MultiChoiceField(label, choices=options, validators=checks, widget=GovCheckboxesInput(),
                                description=hint or "Select all that apply.",
                                invalid_message=invalid or f"Select {label[0].lower() + label[1:]} from the list")  # noqa: S608
    if t is FieldType.DATE:
        return GovDateField(label, validators=checks, description=hint or "For example, 27 3 2025",
                            invalid_message=invalid)
    if t is FieldType.TEXT:
        return TextAreaField(label, validators=checks, widget=GovTextArea(), description=hint)
    if t is FieldType.INTEGER:
        return WholeNumberField(label, validators=checks, widget=GovTextInput(), description=hint,
                                render_kw={"inputmode": "numeric"},
                                invalid_message=invalid or f"{label} must be a whole number")
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

    def fit(self, fit: FieldsThatApply, *, fresh: bool) -> None:
        """Ask only what applies to this case (``reprisals.protocol.fields_that_apply``): fields left out
        are removed (a value posted for one is never read), choices narrowed (one posted anyway is refused
        with the field's message), and on a fresh form the required copies ticked, with hints saying why."""
        self.trigger_fields = tuple(n for n in self.trigger_fields if n not in fit.left_out)
        for name in fit.left_out:
            if name in self:
                del self[name]
        for name, offered in fit.choices.items():
            if name in self.trigger_fields:
                keep = set(offered) | {""}
                self[name].choices = [c for c in self[name].choices or () if _choice_value(c) in keep]
        for name, hint in fit.hints.items():
            if name in self.trigger_fields:
                self[name].description = hint
        if fresh:
            for name, values in fit.preset.items():
                if name in self.trigger_fields:
                    self[name].data = list(values)

    def _revealed(self) -> dict[str, tuple[str, str]]:
        """The fields revealed under one answer of another field on this form: name -> (other, value)."""
        out: dict[str, tuple[str, str]] = {}
        for name in self.trigger_fields:
            when = applies_only_when(self.specs[name])
            if when is not None and when[0] in self.trigger_fields and \
                    self.specs[when[0]].type in (FieldType.CHOICE, FieldType.BOOLEAN):
                other, value = when
                if self.specs[other].type is FieldType.BOOLEAN:
                    value = "yes" if value.lower() in ("true", "yes") else "no"
                out[name] = (other, value)
        return out

    def values(self) -> dict[str, Any]:
        """The engine's view of what was entered: blanks left out, dates as ISO text, and a revealed field
        left out unless the answer that reveals it was chosen (text typed before the answer was changed)."""
        out: dict[str, Any] = {}
        revealed = self._revealed()
        for name in self.trigger_fields:
            if name in revealed:
                other, value = revealed[name]
                if self[other].data != value:
                    continue
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
                if message in spec.errors.values():  # the engine used the file's words
                    text = message
                elif message == "is required":
                    text = _message(label, spec)
                else:
                    text = f"{label} {message}"
                self[name].errors = [*self[name].errors, text]
            else:
                loose.append(f"{name.replace('_', ' ').capitalize()} {message}")
        return loose

    def field_names(self) -> tuple[str, ...]:
        return (*self.trigger_fields, "occurred_on", "occurred_time")

    def shown_fields(self) -> tuple[str, ...]:
        """The fields rendered at the top level, in order: those revealed under an answer are inside it."""
        revealed = self._revealed()
        return tuple(n for n in self.field_names() if n not in revealed)

    def render_field(self, name: str) -> Markup:
        """One field as the GOV.UK macro renders it, with the fields it reveals inside its answers."""
        field = self[name]
        params: dict[str, Any]
        if field.type in ("ChoiceField", "RadioField", "MultiChoiceField", "SelectMultipleField", "GovDateField"):
            params = {"fieldset": {"legend": {"text": field.label.text, "classes": "govuk-fieldset__legend--s"}}}
        elif field.type == "TextAreaField":
            params = {"label": {"classes": "govuk-label--s"}, "rows": 4}
        else:
            params = {"label": {"classes": "govuk-label--s"}}
        if not field.description:
            params["hint"] = None  # no empty hint element
        under = [(dep, value) for dep, (other, value) in self._revealed().items() if other == name]
        if under:
            values = [_choice_value(c) for c in field.choices or ()]
            items: list[dict[str, Any]] = [{} for _ in values]
            for dep, value in under:
                if value in values:
                    items[values.index(value)] = {"conditional": {"html": self.render_field(dep)}}
            params["items"] = items
        rendered: Markup = field(params=params)
        return rendered


_FORMS: dict[tuple[str, int, str], type[ActionForm]] = {}


def action_form_class(spec_key: str, spec_version: int, trigger: Trigger) -> type[ActionForm]:
    key = (spec_key, spec_version, trigger.name)
    cls = _FORMS.get(key)
    if cls is None:
        # Version 1's date fields that say when the action happened are the "When did this happen?"
        # question, asked once for every action (reprisals.services.MOMENT_FIELDS).
        attrs: dict[str, Any] = {name: make_field(name, f, trigger.fields) for name, f in trigger.fields.items()
                                 if name not in ActionForm.__dict__ and not hasattr(FlaskForm, name)
                                 and not (name in MOMENT_FIELDS and f.type is FieldType.DATE)}
        attrs["trigger_fields"] = tuple(attrs)
        attrs["occurred_on"] = GovDateField(WHEN_LABEL, validators=[Optional()],
                                            description="For example, 17 4 2025. Leave it blank if it happened "
                                                        "just now.")
        attrs["specs"] = dict(trigger.fields)
        cls = _FORMS[key] = type(f"ActionForm_{trigger.name}", (ActionForm,), attrs)
    return cls


def action_form(spec: WorkflowSpec, trigger: Trigger, variables: Mapping[str, Any], *, fresh: bool) -> ActionForm:
    """The trigger's form for one case, asking only what applies to it (``ActionForm.fit``): ``fresh`` for
    the form as first shown (nothing posted: required copies ticked), else reading the posted form."""
    cls = action_form_class(spec.key, spec.version, trigger)
    form = cls(formdata=None) if fresh else cls()
    form.fit(fields_that_apply(spec, trigger, variables), fresh=fresh)
    return form
