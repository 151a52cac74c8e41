"""Every field of every action of both bundled protocol files has its error messages in the file, and each
way the field can be refused, posted to the real action form (and through the engine, as the API and the
command see it), gets the file's message — never a generic WTForms or engine one (decision 31)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from werkzeug.datastructures import MultiDict

from reprisals.protocol import bundled_specs
from reprisals.services import MOMENT_FIELDS
from tests.conftest import DATABASES
from tests.web.conftest import Web
from web.forms_dynamic import action_form_class
from workflow.fields import check_fields
from workflow.spec import FieldSpec, FieldType, Trigger, WorkflowSpec

SPECS = {spec.version: spec for spec in bundled_specs()}
# WTForms' and the engine's own words, and this module's generic fallbacks: none may reach a person.
GENERIC = ("Not a valid", "not a valid choice", "This field is required", "is required", "must be one of",
           "is not one of", "must be a list of", "Invalid", "Select at least one option for", "Field must be")
NOW = datetime(2025, 4, 16, 9, tzinfo=UTC)


def kinds(spec: FieldSpec) -> list[str]:
    """The ways this field's value can be refused."""
    out = ["required"] if spec.can_be_required() else []
    if spec.type not in (FieldType.TEXT, FieldType.STRING):
        out.append("invalid")
    if spec.max_length is not None:
        out.append("max_length")
    if spec.not_future:
        out.append("not_future")
    return out


def bad(spec: FieldSpec, kind: str) -> Any:
    """A value refused for ``kind``, as a form posts it."""
    if kind == "max_length":
        return "x" * ((spec.max_length or 0) + 1)
    if kind == "not_future":
        tomorrow = (NOW + timedelta(days=2)).date()
        return [str(tomorrow.day), str(tomorrow.month), str(tomorrow.year)]
    return {FieldType.CHOICE: "not-a-choice", FieldType.BOOLEAN: "maybe", FieldType.MULTICHOICE: ["not-a-choice"],
            FieldType.DATE: ["31", "2", "2025"], FieldType.INTEGER: "many",
            FieldType.DATETIME: "soon"}[spec.type]


def meeting(trig: Trigger, name: str) -> dict[str, Any]:
    """Answers that make a ``required_when`` field required (the other field given the value named)."""
    spec = trig.fields[name]
    out: dict[str, Any] = {}
    for other, values in (spec.required_when or {}).items():
        out[other] = [values[0]] if trig.fields[other].type is FieldType.MULTICHOICE else values[0]
    return out


def every_field() -> list[Any]:
    return [pytest.param(version, t.name, name, id=f"v{version}-{t.name}-{name}")
            for version, spec in SPECS.items() for t in spec.triggers.values() for name in t.fields]


@pytest.mark.parametrize("version", sorted(SPECS))
def test_every_field_of_every_action_has_the_files_message_for_each_way_it_can_be_refused(version: int) -> None:
    spec: WorkflowSpec = SPECS[version]
    missing = [f"{t.name}.{name}: {kind}" for t in spec.triggers.values() for name, f in t.fields.items()
               for kind in kinds(f) if not f.message(kind)]
    assert missing == []
    for t in spec.triggers.values():
        for name, f in t.fields.items():
            for message in f.errors.values():  # the Design System's style: a sentence, no field name glued on
                assert message[0].isupper() and not message.endswith("."), (t.name, name, message)
                assert "_" not in message and not message.startswith(f"{f.label} "), (t.name, name, message)


def _post(web: Web, trig: Trigger, spec: WorkflowSpec, data: dict[str, Any]) -> Any:
    cls = action_form_class(spec.key, spec.version, trig)
    posted = MultiDict([(k, v) for k, vs in data.items() for v in (vs if isinstance(vs, list) else [vs])])
    form = cls(formdata=posted, meta={"csrf": False})
    form.validate()
    return form


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)  # forms and pages: one database proves them
def test_each_refusal_posted_to_the_real_form_and_to_the_engine_gets_the_files_words(web: Web) -> None:
    """One walk over both files (one app): for every field and every way it can be refused, the page's form
    (what a person posts; engine errors put on its fields as the page does) and the engine's own message
    (what the API and the command return) are the file's."""
    checked = 0
    with web.app.test_request_context("/", method="POST"):
        for spec in SPECS.values():
            for trig in spec.triggers.values():
                for name, f in trig.fields.items():
                    on_form = not (name in MOMENT_FIELDS and f.type is FieldType.DATE)  # "When did this happen?"
                    for kind in kinds(f):
                        expected = f.message(kind)
                        where = (spec.version, trig.name, name, kind)
                        # The engine (API, command): the field alone, refused for this kind.
                        given = meeting(trig, name) if kind == "required" else {
                            name: _iso(bad(f, kind)) if f.type is FieldType.DATE else bad(f, kind)}
                        _, errors = check_fields(trig.fields, given, now=NOW)
                        assert errors.get(name) == expected, (where, errors)
                        if not on_form:
                            continue
                        # The page's form: what WTForms refuses, then what the engine refuses, on the field.
                        form = _post(web, trig, spec, given if kind == "required" else {name: bad(f, kind)})
                        if not form[name].errors:
                            form.add_errors({name: errors[name]})
                        shown = form[name].errors
                        assert shown and shown[0] == expected, (where, shown)
                        for field_errors in form.errors.values():
                            for message in field_errors:
                                assert not any(g in message for g in GENERIC), (where, message)
                        checked += 1
    assert checked > 80  # every field of both files, each way (the count guards against an empty walk)


def _iso(parts: list[str]) -> str:
    day, month, year = parts
    return f"{year}-{int(month):02d}-{int(day):02d}" if not (day == "31" and month == "2") else "2025-02-31"


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)  # forms and pages: one database proves them
def test_a_refused_action_through_the_page_says_it_in_the_files_words(web: Web) -> None:
    """End to end once: the page's error summary and the field's message are the file's."""
    from tests.web.test_case_actions import Pages

    lead = Pages(web, web.world.lead, web.world.reported)
    html = lead.submit("record_consent_and_risk", {"consent": "perhaps",
                                                   "risk_reason": "x" * 2001}).get_data(as_text=True)
    for message in ("Select the consent the person gave", "Select the risk to the person",
                    "The reason for the risk level must be 2,000 characters or fewer"):
        assert html.count(message) == 2, message  # in the error summary and on the field
    assert "Not a valid choice" not in html and "Field must be" not in html
