"""A field's own error messages in the protocol file (``errors:``, decision 31): checked when the spec
loads, each problem at its path, and used by the engine for every surface (pages, API, command)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.workflow.errand import dump, errand_doc
from workflow.errors import SpecError
from workflow.fields import check_fields
from workflow.spec import ERROR_KINDS, load_spec

SUBMIT = "triggers.submit.fields"


def _with_errors(field: str, errors: Any, trigger: str = "submit", **more: Any) -> dict[str, Any]:
    doc = errand_doc()
    doc["triggers"][trigger]["fields"][field].update({"errors": errors, **more})
    return doc


def _problems(doc: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as err:
        load_spec(dump(doc), source="broken.yaml")
    return [(p.path, p.message) for p in err.value.problems]


def test_messages_load_beside_the_field_and_a_field_without_them_has_none() -> None:
    doc = _with_errors("priority", {"required": "Select the priority", "invalid": "Select the priority"})
    spec = load_spec(dump(doc))
    priority = spec.triggers["submit"].fields["priority"]
    assert priority.message("required") == "Select the priority" and priority.message("max_length") is None
    assert spec.triggers["submit"].fields["summary"].errors == {}


@pytest.mark.parametrize(("field", "errors", "more", "expected"), [
    pytest.param("priority", {"missing": "Select it"}, {}, (
        f"{SUBMIT}.priority.errors.missing", f"unknown error 'missing'; the kinds are {', '.join(ERROR_KINDS)}"),
        id="unknown-kind"),
    pytest.param("priority", {"max_length": "Too long"}, {}, (
        f"{SUBMIT}.priority.errors.max_length", "this error cannot happen: the field has no max_length"),
        id="no-max-length"),
    pytest.param("received_at", {"required": "Enter it"}, {}, (
        f"{SUBMIT}.received_at.errors.required",
        "this error cannot happen: the field is never required (required: false, no required_when)"),
        id="never-required"),
    pytest.param("received_at", {"not_future": "Not later"}, {}, (
        f"{SUBMIT}.received_at.errors.not_future", "this error cannot happen: the field is not not_future"),
        id="not-not-future"),
    pytest.param("summary", {"required": "  "}, {}, (
        f"{SUBMIT}.summary.errors.required", "an error message needs words"), id="blank"),
    pytest.param("summary", {"required": "Enter\nthe summary"}, {}, (
        f"{SUBMIT}.summary.errors.required", "an error message is one line of at most 300 characters"),
        id="two-lines"),
    pytest.param("summary", {"required": 7}, {}, (
        f"{SUBMIT}.summary.errors.required", "Input should be a valid string"), id="not-text"),
])
def test_a_message_that_cannot_be_used_is_refused_at_its_path(field: str, errors: Any, more: dict[str, Any],
                                                             expected: tuple[str, str]) -> None:
    assert _problems(_with_errors(field, errors, **more)) == [expected]


def test_the_engine_gives_the_files_message_for_each_kind_and_the_generic_one_otherwise() -> None:
    doc = _with_errors("priority", {"required": "Select the priority", "invalid": "Select low or high"})
    doc["triggers"]["submit"]["fields"]["summary"]["errors"] = {"max_length": "The summary must be 20 "
                                                                              "characters or fewer"}
    doc["triggers"]["submit"]["fields"]["received_at"].update(
        {"not_future": True, "errors": {"invalid": "Enter a real moment", "not_future": "It cannot be later"}})
    fields = load_spec(dump(doc)).triggers["submit"].fields
    now = datetime(2025, 4, 16, 9, tzinfo=UTC)

    assert check_fields(fields, {}, now=now)[1] == {"priority": "Select the priority", "summary": "is required"}
    _, errors = check_fields(fields, {"priority": "medium", "summary": "x" * 21, "received_at": "soon"}, now=now)
    assert errors == {"priority": "Select low or high", "summary": "The summary must be 20 characters or fewer",
                      "received_at": "Enter a real moment"}
    _, errors = check_fields(fields, {"priority": "low", "summary": "ok", "received_at": "2025-04-17T09:00:00Z"},
                             now=now)
    assert errors == {"received_at": "It cannot be later"}
    # Text that cannot be stored keeps its specific generic message (it names the code point).
    _, errors = check_fields(fields, {"priority": "low", "summary": "a\x01b"}, now=now)
    assert errors == {"summary": "must not contain control characters (U+0001)"}
