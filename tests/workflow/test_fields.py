"""Field coercion: form strings and JSON in, JSON-native values out, a message a person understands."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from workflow.fields import check_fields, coerce
from workflow.spec import FieldSpec, FieldType

PRIORITIES = ("low", "high")


def field(type: str, **kw: Any) -> FieldSpec:
    return FieldSpec(type=FieldType(type), **kw)


def refusal(spec: FieldSpec, value: Any) -> str:
    with pytest.raises(ValueError) as err:
        coerce(spec, value)
    return str(err.value)


# -- string and text -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["string", "text"])
def test_text_stripped_when_surrounded_by_spaces(kind: str) -> None:
    assert coerce(field(kind), "  fetch the post \n") == "fetch the post"


def test_text_accepted_when_exactly_max_length_after_stripping() -> None:
    assert coerce(field("string", max_length=5), "  abcde  ") == "abcde"


def test_text_refused_when_longer_than_max_length() -> None:
    assert refusal(field("string", max_length=5), "abcdef") == "must be 5 characters or fewer"


@pytest.mark.parametrize("value", [5, 1.5, True, ["a"], {"a": 1}])
def test_text_refused_when_not_a_string(value: Any) -> None:
    assert refusal(field("text"), value) == "must be text"


# -- integer ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [(42, 42), ("42", 42), (" -7 ", -7), ("0", 0), (0, 0)])
def test_integer_parsed_when_whole_number(value: Any, expected: int) -> None:
    result = coerce(field("integer"), value)

    assert result == expected and type(result) is int


@pytest.mark.parametrize("value", [True, False, "4.5", "4.0", 4.5, "ten", "1e3", "", [1]])
def test_integer_refused_when_not_a_whole_number(value: Any) -> None:
    assert refusal(field("integer"), value) == "must be a whole number"


# -- boolean ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [True, "true", "Yes", " y ", "1", "on", 1])
def test_boolean_true_when_given_a_yes_word(value: Any) -> None:
    assert coerce(field("boolean"), value) is True


@pytest.mark.parametrize("value", [False, "false", "NO", "n", "0", "off", 0])
def test_boolean_false_when_given_a_no_word(value: Any) -> None:
    assert coerce(field("boolean"), value) is False


@pytest.mark.parametrize("value", ["maybe", "2", 2, "", ["yes"]])
def test_boolean_refused_when_neither_yes_nor_no(value: Any) -> None:
    assert refusal(field("boolean"), value) == "must be yes or no"


# -- date ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    ("2025-04-16", "2025-04-16"),
    (" 2025-04-16 ", "2025-04-16"),
    (date(2024, 2, 29), "2024-02-29"),
])
def test_date_as_iso_text_when_a_real_date(value: Any, expected: str) -> None:
    assert coerce(field("date"), value) == expected


@pytest.mark.parametrize("value", ["2025-02-30", "16/04/2025", "tomorrow", "2025-13-01", "", 2025.5])
def test_date_refused_when_not_a_real_iso_date(value: Any) -> None:
    assert refusal(field("date"), value) == "must be a real date in the form YYYY-MM-DD"


def test_date_refused_when_given_a_datetime() -> None:
    assert refusal(field("date"), datetime(2025, 4, 16, 9, 0, tzinfo=UTC)) == "must be a date, without a time"


# -- datetime --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    ("2025-04-16T10:30:00+01:00", "2025-04-16T09:30:00+00:00"),
    ("2025-04-16T09:30:00Z", "2025-04-16T09:30:00+00:00"),
    (" 2025-04-16T09:30:00+00:00 ", "2025-04-16T09:30:00+00:00"),
    (datetime(2025, 4, 16, 4, 30, tzinfo=timezone(timedelta(hours=-5))), "2025-04-16T09:30:00+00:00"),
])
def test_datetime_normalised_to_utc_when_it_has_a_zone(value: Any, expected: str) -> None:
    assert coerce(field("datetime"), value) == expected


@pytest.mark.parametrize("value", ["2025-04-16T09:30:00", "2025-04-16", datetime(2025, 4, 16, 9, 30)])
def test_datetime_refused_when_naive(value: Any) -> None:
    assert refusal(field("datetime"), value) == "must include a time zone offset, such as +01:00 or Z"


@pytest.mark.parametrize("value", ["half past nine", "2025-04-16T25:00:00Z", 1713259800])
def test_datetime_refused_when_unreadable(value: Any) -> None:
    assert refusal(field("datetime"), value) == "must be a date and time such as 2025-04-16T10:30:00+01:00"


# -- choice and multichoice ------------------------------------------------------------------------


def test_choice_kept_when_one_of_the_choices() -> None:
    assert coerce(field("choice", choices=PRIORITIES), "high") == "high"


@pytest.mark.parametrize("value", ["urgent", "High", " high", 1, ["high"]])
def test_choice_refused_listing_choices_when_not_one_of_them(value: Any) -> None:
    assert refusal(field("choice", choices=PRIORITIES), value) == "must be one of: low, high"


@pytest.mark.parametrize(("value", "expected"), [
    (["high", "low", "high"], ["high", "low"]),
    (("low",), ["low"]),
    ("low", ["low"]),
    ([], []),
])
def test_multichoice_sorted_and_unique_when_every_item_is_a_choice(value: Any, expected: list[str]) -> None:
    assert coerce(field("multichoice", choices=PRIORITIES), value) == expected


def test_multichoice_names_first_bad_item_when_an_item_is_not_a_choice() -> None:
    assert refusal(field("multichoice", choices=PRIORITIES), ["low", "urgent", "odd"]) == (
        "'urgent' is not one of: low, high")


@pytest.mark.parametrize("value", [5, {"low": True}, ["low", 3]])
def test_multichoice_refused_when_not_a_list_of_text(value: Any) -> None:
    assert refusal(field("multichoice", choices=PRIORITIES), value) == "must be a list of: low, high"


# -- check_fields: all at once ---------------------------------------------------------------------

FORM = {
    "summary": field("string", max_length=10),
    "count": field("integer"),
    "when": field("date", required=False),
    "tags": field("multichoice", choices=PRIORITIES, required=False),
}


def test_clean_values_returned_when_every_field_is_valid() -> None:
    clean, errors = check_fields(FORM, {"summary": " post ", "count": "3", "when": "2025-04-16", "tags": ["low"]})

    assert errors == {}
    assert clean == {"summary": "post", "count": 3, "when": "2025-04-16", "tags": ["low"]}


def test_optional_fields_left_out_when_blank() -> None:
    clean, errors = check_fields(FORM, {"summary": "post", "count": 1, "when": "  ", "tags": []})

    assert errors == {} and clean == {"summary": "post", "count": 1}


@pytest.mark.parametrize("blank", [None, "", "   ", [], ()])
def test_required_reported_when_a_required_field_is_blank(blank: Any) -> None:
    clean, errors = check_fields(FORM, {"summary": blank, "count": 1})

    assert errors == {"summary": "is required"} and "summary" not in clean


def test_every_problem_reported_when_several_fields_are_wrong() -> None:
    clean, errors = check_fields(FORM, {"summary": "much too long a summary", "when": "someday",
                                        "tags": ["urgent"], "colour": "red"})

    assert errors == {
        "summary": "must be 10 characters or fewer",
        "count": "is required",
        "when": "must be a real date in the form YYYY-MM-DD",
        "tags": "'urgent' is not one of: low, high",
        "colour": "is not a field of this action",
    }
    assert clean == {}


def test_zero_and_false_count_as_given_when_checking_required() -> None:
    specs = {"count": field("integer"), "agreed": field("boolean")}

    assert check_fields(specs, {"count": 0, "agreed": False}) == ({"count": 0, "agreed": False}, {})


# -- required_when ---------------------------------------------------------------------------------

CONSENT = {
    "consent": field("choice", choices=("full", "partial", "none")),
    "reason": field("text", required_when={"consent": ("none", "partial")}),
}


@pytest.mark.parametrize("consent", ["none", "partial"])
def test_conditional_field_required_when_condition_is_met(consent: str) -> None:
    assert check_fields(CONSENT, {"consent": consent}) == ({"consent": consent}, {"reason": "is required"})


def test_conditional_field_optional_when_condition_is_not_met() -> None:
    assert check_fields(CONSENT, {"consent": "full"}) == ({"consent": "full"}, {})


def test_conditional_field_kept_when_given_although_not_required() -> None:
    clean, errors = check_fields(CONSENT, {"consent": "full", "reason": " because "})

    assert errors == {} and clean == {"consent": "full", "reason": "because"}


def test_conditional_field_still_coerced_when_condition_is_met() -> None:
    specs = {**CONSENT, "reason": field("text", max_length=3, required_when={"consent": ("none",)})}

    assert check_fields(specs, {"consent": "none", "reason": "too long"})[1] == {
        "reason": "must be 3 characters or fewer"}


def test_conditional_field_optional_when_the_other_field_is_missing() -> None:
    assert check_fields(CONSENT, {}) == ({}, {"consent": "is required"})


def test_conditional_field_required_only_when_every_condition_is_met() -> None:
    specs = {
        "consent": CONSENT["consent"],
        "priority": field("choice", choices=PRIORITIES),
        "reason": field("text", required_when={"consent": ("none",), "priority": ("high",)}),
    }

    assert check_fields(specs, {"consent": "none", "priority": "low"})[1] == {}
    assert check_fields(specs, {"consent": "none", "priority": "high"})[1] == {"reason": "is required"}


URGENT = {
    "urgent": field("boolean", required=False),
    "justification": field("text", required_when={"urgent": ("true",)}),
}


@pytest.mark.parametrize("urgent", [True, "true", "on", "yes", "1"])
def test_conditional_field_required_when_a_boolean_condition_is_met_in_any_spelling(urgent: Any) -> None:
    # A checkbox posts "on" and JSON posts true; both mean the "true" the spec names.
    assert check_fields(URGENT, {"urgent": urgent})[1] == {"justification": "is required"}


@pytest.mark.parametrize("urgent", [False, "off", "no", None])
def test_conditional_field_optional_when_a_boolean_condition_is_not_met(urgent: Any) -> None:
    assert check_fields(URGENT, {"urgent": urgent})[1] == {}


def test_conditional_field_required_when_a_multichoice_holds_a_named_choice() -> None:
    specs = {
        "tags": field("multichoice", choices=("safety", "routine"), required=False),
        "detail": field("text", required_when={"tags": ("safety",)}),
    }

    assert check_fields(specs, {"tags": ["routine", "safety"]})[1] == {"detail": "is required"}
    assert check_fields(specs, {"tags": ["routine"]})[1] == {}


def test_only_the_other_fields_error_reported_when_the_condition_field_is_invalid() -> None:
    clean, errors = check_fields(CONSENT, {"consent": "maybe"})

    assert errors == {"consent": "must be one of: full, partial, none"} and clean == {}
