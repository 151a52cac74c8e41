"""The spec loader: a valid spec loads as written; every broken spec names the place and the reason."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.workflow.errand import budget_ok, dump, errand_doc, errand_spec
from workflow.engine import Engine
from workflow.errors import Problem, SpecError
from workflow.spec import Duration, Unit, load_spec, load_spec_file, parse_duration

Doc = dict[str, Any]


def problems_of(doc: Doc) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as err:
        load_spec(dump(doc), source="broken.yaml")
    assert err.value.source == "broken.yaml"
    return [(p.path, p.message) for p in err.value.problems]


# -- a valid spec ----------------------------------------------------------------------------------


def test_spec_loads_as_written_when_valid() -> None:
    spec = errand_spec()

    assert (spec.key, spec.version, spec.title, spec.initial) == ("errand", 1, "Errand", "drafted")
    assert spec.roles == {"clerk", "manager"}
    assert list(spec.stages) == ["drafted", "submitted", "approved", "closed"]
    assert spec.open_stages == ("drafted", "submitted", "approved")
    assert spec.stages["closed"].final and not spec.stages["approved"].final
    assert spec.stages["submitted"].label == "Submitted"
    assert spec.source == "errand-v1.yaml"
    assert spec.text == dump(errand_doc())


def test_star_source_means_every_open_stage_when_a_trigger_comes_from_anywhere() -> None:
    spec = errand_spec()

    assert spec.triggers["close"].sources == ("drafted", "submitted", "approved")
    assert [t.name for t in spec.triggers_from("approved")] == ["close"]
    assert spec.triggers_from("closed") == []


def test_a_stages_next_step_is_kept_in_order_and_a_single_name_is_a_list_of_one() -> None:
    doc = errand_doc()
    doc["stages"]["submitted"]["next"] = ["approve", "reject"]
    doc["stages"]["drafted"]["next"] = "submit"
    spec = load_spec(dump(doc))
    assert spec.stages["submitted"].next == ("approve", "reject")
    assert spec.stages["drafted"].next == ("submit",)
    assert errand_spec().stages["submitted"].next == ()


def test_trigger_keeps_roles_fields_guards_and_sets_when_loaded() -> None:
    spec = errand_spec()
    approve, submit, close = spec.triggers["approve"], spec.triggers["submit"], spec.triggers["close"]

    assert approve.roles == {"manager"} and approve.guards == ("budget_ok",) and approve.dest == "approved"
    assert list(submit.fields) == ["priority", "summary", "received_at"]
    assert submit.fields["summary"].max_length == 20 and not submit.fields["received_at"].required
    assert close.sets == {"priority": None}
    assert submit.label == "Submit"


def test_deadlines_keep_their_durations_when_loaded() -> None:
    spec = errand_spec()
    decide, acknowledge = spec.stages["submitted"].deadlines
    (submit_by,) = spec.stages["drafted"].deadlines

    assert submit_by.due.for_variables({}) == Duration(5, Unit.WORKING_DAYS)
    assert decide.due.for_variables({"priority": "high"}) == Duration(2, Unit.WORKING_DAYS)
    assert decide.due.for_variables({"priority": "low"}) == Duration(10, Unit.WORKING_DAYS)
    assert decide.due.for_variables({}) is None
    assert decide.reminders == (Duration(1, Unit.WORKING_DAYS),)
    assert decide.label == "decide by" and decide.anchor == "stage_entry"
    assert acknowledge.due.for_variables({}) == Duration(24, Unit.HOURS)
    assert acknowledge.anchor == "received_at"


def test_default_duration_applies_when_a_choice_has_no_value_of_its_own() -> None:
    doc = errand_doc()
    doc["stages"]["submitted"]["deadlines"][0]["due"] = {"by": "priority", "values": {"high": "2wd"},
                                                         "default": "7wd"}
    decide = load_spec(dump(doc)).stages["submitted"].deadlines[0]

    assert decide.due.for_variables({"priority": "low"}) == Duration(7, Unit.WORKING_DAYS)
    assert decide.due.for_variables({"priority": "high"}) == Duration(2, Unit.WORKING_DAYS)


# -- broken specs: one fault, one problem, at its exact path --------------------------------------

Mutation = Callable[[Doc], None]


def _set(path: str, value: Any) -> Mutation:
    """A mutation that sets doc[a][b]...[z] = value (a path of keys and list indexes, dot-separated)."""

    def apply(doc: Doc) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[int(last) if isinstance(node, list) else last] = value

    return apply


def _drop(path: str) -> Mutation:
    def apply(doc: Doc) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        del node[last]

    return apply


def _unreachable_stage(doc: Doc) -> None:
    doc["stages"]["archived"] = {}  # `close` from "*" leads out of it, but nothing leads in


def _dead_end_stage(doc: Doc) -> None:
    doc["stages"]["parked"] = {}
    doc["triggers"]["park"] = {"from": "submitted", "to": "parked", "roles": ["manager"]}
    doc["triggers"]["close"]["from"] = ["drafted", "submitted", "approved"]


DECIDE = "stages.submitted.deadlines[0]"
SUBMIT_BY = "stages.drafted.deadlines[0]"

BROKEN: list[tuple[str, Mutation, str, str]] = [
    ("trigger-to-nowhere", _set("triggers.submit.to", "nowhere"),
     "triggers.submit.to", "trigger leads nowhere: unknown stage 'nowhere'"),
    ("unknown-from-stage", _set("triggers.submit.from", ["drafted", "limbo"]),
     "triggers.submit.from[1]", "unknown stage 'limbo'"),
    ("unknown-initial-stage", _set("initial", "dreaming"), "initial", "unknown stage 'dreaming'"),
    ("unreachable-stage", _unreachable_stage, "stages.archived", "unreachable from the initial stage 'drafted'"),
    ("open-stage-without-exit", _dead_end_stage,
     "stages.parked", "an open stage with no trigger out of it (mark it final?)"),
    ("unknown-role", _set("triggers.approve.roles", ["manager", "boss"]),
     "triggers.approve.roles[1]", "unknown role 'boss'"),
    ("no-role", _set("triggers.approve.roles", []),
     "triggers.approve.roles", "no role may fire this trigger; list at least one"),
    ("bad-unit", _set("stages.drafted.deadlines.0.due", "2 weeks"),
     f"{SUBMIT_BY}.due", "unknown unit 'weeks' in '2 weeks'; use 'wd' (working days) or 'h' (hours)"),
    ("bad-unit-in-values", _set("stages.submitted.deadlines.0.due.values.high", "2 fortnights"),
     f"{DECIDE}.due.values.high",
     "unknown unit 'fortnights' in '2 fortnights'; use 'wd' (working days) or 'h' (hours)"),
    ("bad-unit-in-default", _set("stages.submitted.deadlines.0.due.default", "3 moons"),
     f"{DECIDE}.due.default", "unknown unit 'moons' in '3 moons'; use 'wd' (working days) or 'h' (hours)"),
    ("bad-unit-in-reminder", _set("stages.submitted.deadlines.0.reminders", ["1wd", "1 month"]),
     f"{DECIDE}.reminders[1]", "unknown unit 'month' in '1 month'; use 'wd' (working days) or 'h' (hours)"),
    ("negative-duration", _set("stages.drafted.deadlines.0.due", "-3wd"),
     f"{SUBMIT_BY}.due", "'-3wd' is negative; durations must be zero or more"),
    ("negative-reminder", _set("stages.submitted.deadlines.0.reminders", ["-1h"]),
     f"{DECIDE}.reminders[0]", "'-1h' is negative; durations must be zero or more"),
    ("not-a-duration", _set("stages.drafted.deadlines.0.due", "soon"),
     f"{SUBMIT_BY}.due", "'soon' is not a duration; write e.g. '10wd' (working days) or '4h' (clock hours)"),
    ("missing-title", _drop("title"), "title", "required key is missing"),
    # Without ``to`` a trigger stays at its stage, and may close deadlines of that stage only.
    ("closes-unknown-deadline", _set("triggers.reject.closes", ["nope"]), "triggers.reject.closes[0]",
     "no stage this trigger starts from has a deadline 'nope'"),
    ("missing-trigger-from", _drop("triggers.submit.from"), "triggers.submit.from", "required key is missing"),
    ("missing-field-type", _drop("triggers.submit.fields.summary.type"),
     "triggers.submit.fields.summary.type", "required key is missing"),
    ("missing-deadline-due", _drop("stages.drafted.deadlines.0.due"), f"{SUBMIT_BY}.due", "required key is missing"),
    ("unknown-top-key", _set("colour", "red"), "colour", "unknown key"),
    ("unknown-stage-key", _set("stages.drafted.colour", "red"), "stages.drafted.colour", "unknown key"),
    ("unknown-trigger-key", _set("triggers.submit.role", ["clerk"]), "triggers.submit.role", "unknown key"),
    ("unknown-deadline-key", _set("stages.drafted.deadlines.0.due_in", "5wd"), f"{SUBMIT_BY}.due_in", "unknown key"),
    ("by-undeclared-variable", _set("stages.submitted.deadlines.0.due.by", "urgency"),
     f"{DECIDE}.due.by", "unknown variable 'urgency'"),
    ("choice-missing-no-default", _set("stages.submitted.deadlines.0.due.values", {"low": "10wd"}),
     f"{DECIDE}.due.values", "no duration for high and no default"),
    ("value-not-a-choice", _set("stages.submitted.deadlines.0.due.values.medium", "5wd"),
     f"{DECIDE}.due.values.medium", "'medium' is not one of low, high"),
    ("anchor-not-datetime", _set("stages.submitted.deadlines.1.anchor", "priority"),
     "stages.submitted.deadlines[1].anchor", "variable 'priority' is not a datetime"),
    ("anchor-undeclared", _set("stages.submitted.deadlines.1.anchor", "arrived_at"),
     "stages.submitted.deadlines[1].anchor", "'arrived_at' is neither 'stage_entry' nor a declared variable"),
    ("when-undeclared-variable", _set("stages.drafted.deadlines.0.when", {"colour": ["red"]}),
     f"{SUBMIT_BY}.when.colour", "unknown variable 'colour'"),
    ("final-stage-with-deadline", _set("stages.closed.deadlines", [{"name": "archive_by", "due": "1wd"}]),
     "stages.closed.deadlines", "a final stage cannot have deadlines"),
    ("duplicate-deadline", _set("stages.drafted.deadlines", [{"name": "d", "due": "1wd"}, {"name": "d", "due": "2wd"}]),
     "stages.drafted.deadlines[1].name", "deadline 'd' appears twice in this stage"),
    ("field-variable-undeclared", _set("triggers.submit.fields.summary.variable", True),
     "triggers.submit.fields.summary.variable", "'summary' is not a declared variable"),
    ("choice-field-without-choices", _drop("triggers.submit.fields.priority.choices"),
     "triggers.submit.fields.priority.choices", "a choice field needs choices"),
    ("choice-variable-without-choices", _drop("variables.priority.choices"),
     "variables.priority.choices", "a choice variable needs choices"),
    ("required-when-unknown-field", _set("triggers.reject.fields.reason.required_when", {"severity": ["high"]}),
     "triggers.reject.fields.reason.required_when.severity", "unknown field 'severity'"),
    ("set-undeclared-variable", _set("triggers.close.set", {"outcome": "done"}),
     "triggers.close.set.outcome", "unknown variable 'outcome'"),
    ("set-value-not-a-choice", _set("triggers.close.set", {"priority": "urgent"}),
     "triggers.close.set.priority", "'urgent' is not one of low, high"),
    ("version-zero", _set("version", 0), "version", "must be a whole number from 1 to 9999"),
    ("stage-name-not-snake-case", _set("stages.Archived", {}), "stages.Archived", "stage names are lower_snake_case"),
    # A stage's next step (shown in queues and on the case page) is a trigger that starts from it.
    ("next-unknown-trigger", _set("stages.submitted.next", ["sumbit"]), "stages.submitted.next[0]",
     "unknown trigger 'sumbit'"),
    ("next-from-another-stage", _set("stages.submitted.next", "submit"), "stages.submitted.next[0]",
     "'submit' does not start from 'submitted'"),
    ("next-on-a-final-stage", _set("stages.closed.next", ["close"]), "stages.closed.next",
     "a final stage has no next step"),
    ("trigger-name-not-snake-case", _set("triggers.Close-All", {"from": "*", "to": "closed", "roles": ["manager"]}),
     "triggers.Close-All", "trigger names are lower_snake_case verbs"),
]


@pytest.mark.parametrize(("mutate", "path", "message"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_exactly_one_problem_at_its_path_when_spec_has_one_fault(mutate: Mutation, path: str, message: str) -> None:
    doc = errand_doc()
    mutate(doc)

    assert problems_of(doc) == [(path, message)]


def test_every_problem_listed_when_spec_has_several_faults() -> None:
    doc = errand_doc()
    doc["triggers"]["submit"]["to"] = "nowhere"
    doc["triggers"]["approve"]["roles"] = ["boss"]
    doc["stages"]["drafted"]["deadlines"][0]["due"] = "-1wd"

    assert sorted(problems_of(doc)) == sorted([
        ("triggers.submit.to", "trigger leads nowhere: unknown stage 'nowhere'"),
        ("triggers.approve.roles[0]", "unknown role 'boss'"),
        (f"{SUBMIT_BY}.due", "'-1wd' is negative; durations must be zero or more"),
    ])


def test_error_text_names_source_and_path_when_spec_is_broken() -> None:
    doc = errand_doc()
    doc["triggers"]["submit"]["to"] = "nowhere"

    with pytest.raises(SpecError) as err:
        load_spec(dump(doc), source="specs/errand.yaml")

    assert str(err.value) == "specs/errand.yaml: triggers.submit.to: trigger leads nowhere: unknown stage 'nowhere'"


@pytest.mark.parametrize(("text", "where", "reason"), [
    ("key: errand\nstages: [unclosed\n", "line 3, column 1", "expected ',' or ']', but got '<stream end>'"),
    ("key: errand\n  bad: indent\n", "line 2, column 6", "mapping values are not allowed here"),
])
def test_line_and_column_given_when_yaml_is_invalid(text: str, where: str, reason: str) -> None:
    with pytest.raises(SpecError) as err:
        load_spec(text, source="bad.yaml")

    assert [(p.path, p.message) for p in err.value.problems] == [(where, f"not valid YAML: {reason}")]


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just a sentence\n"])
def test_refused_as_not_a_mapping_when_yaml_is_not_a_mapping(text: str) -> None:
    with pytest.raises(SpecError) as err:
        load_spec(text)

    assert err.value.problems == [Problem("", "a spec must be a mapping with key, version, stages and triggers")]


# -- files -----------------------------------------------------------------------------------------


def test_spec_loads_with_its_path_as_source_when_file_exists(tmp_path: Path) -> None:
    path = tmp_path / "errand.yaml"
    path.write_text(dump(errand_doc()), encoding="utf-8")

    spec = load_spec_file(path)

    assert spec.source == str(path) and spec.key == "errand"


def test_file_not_found_reported_when_file_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"

    with pytest.raises(SpecError) as err:
        load_spec_file(path)

    assert err.value.source == str(path)
    assert err.value.problems == [Problem("", "file not found")]


def test_cannot_read_reported_when_file_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("title: caf\u00e9\n".encode("latin-1"))

    with pytest.raises(SpecError) as err:
        load_spec_file(path)

    assert err.value.problems == [Problem("", "the file is not UTF-8 text (byte 11 cannot be read); save it as UTF-8")]


def test_problem_paths_refer_to_file_when_file_is_broken(tmp_path: Path) -> None:
    doc = errand_doc()
    doc["triggers"]["approve"]["roles"] = ["boss"]
    path = tmp_path / "errand.yaml"
    path.write_text(dump(doc), encoding="utf-8")

    with pytest.raises(SpecError) as err:
        load_spec_file(path)

    assert err.value.source == str(path)
    assert err.value.problems == [Problem("triggers.approve.roles[0]", "unknown role 'boss'")]


# -- durations -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("10wd", Duration(10, Unit.WORKING_DAYS)),
    ("10 working days", Duration(10, Unit.WORKING_DAYS)),
    ("1 working day", Duration(1, Unit.WORKING_DAYS)),
    (" 3 WD ", Duration(3, Unit.WORKING_DAYS)),
    ("4h", Duration(4, Unit.HOURS)),
    ("24 clock hours", Duration(24, Unit.HOURS)),
    ("+2 hours", Duration(2, Unit.HOURS)),
    ("0h", Duration(0, Unit.HOURS)),
])
def test_duration_parsed_when_written_in_a_known_unit(text: str, expected: Duration) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(("value", "message"), [
    (10, "a duration needs a unit: write '10wd' or '10h'"),
    (True, "a duration must be text like '10wd' or '4h', not True"),
    (None, "a duration must be text like '10wd' or '4h', not None"),
    ("2 weeks", "unknown unit 'weeks' in '2 weeks'; use 'wd' (working days) or 'h' (hours)"),
    ("-1wd", "'-1wd' is negative; durations must be zero or more"),
    ("1.5h", "'1.5h' is not a duration; write e.g. '10wd' (working days) or '4h' (clock hours)"),
    ("wd", "'wd' is not a duration; write e.g. '10wd' (working days) or '4h' (clock hours)"),
])
def test_duration_refused_with_reason_when_malformed(value: object, message: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_duration(value)

    assert str(err.value) == message


@pytest.mark.parametrize(("duration", "text"), [
    (Duration(1, Unit.WORKING_DAYS), "1 working day"),
    (Duration(10, Unit.WORKING_DAYS), "10 working days"),
    (Duration(1, Unit.HOURS), "1 hour"),
    (Duration(4, Unit.HOURS), "4 hours"),
])
def test_duration_reads_as_words_when_shown_to_people(duration: Duration, text: str) -> None:
    assert str(duration) == text


# -- registration ----------------------------------------------------------------------------------


def test_register_refused_when_spec_names_an_unknown_guard() -> None:
    engine = Engine()  # no guards

    with pytest.raises(SpecError) as err:
        engine.register(errand_spec())

    assert err.value.problems == [Problem("triggers.approve.guards[0]", "unknown guard 'budget_ok'")]
    assert engine.versions("errand") == []


def test_register_is_idempotent_when_same_version_has_same_text() -> None:
    engine = Engine(guards={"budget_ok": budget_ok})
    engine.register(errand_spec())
    machine = engine.machine("errand", 1)

    engine.register(errand_spec())

    assert engine.versions("errand") == [1]
    assert engine.machine("errand", 1) is machine


def test_register_refused_when_same_version_has_different_text() -> None:
    engine = Engine(guards={"budget_ok": budget_ok})
    engine.register(errand_spec())
    original = engine.spec("errand", 1)

    with pytest.raises(SpecError) as err:
        engine.register(errand_spec(title="Errand, renamed"))

    assert err.value.problems == [Problem("version", "errand version 1 is already registered with different "
                                                     "content; bump the version")]
    assert engine.spec("errand", 1) is original and original.title == "Errand"


def test_both_versions_kept_when_a_new_version_is_registered() -> None:
    engine = Engine(guards={"budget_ok": budget_ok})
    engine.register(errand_spec(1))
    engine.register(errand_spec(2, title="Errand II"))

    assert engine.versions("errand") == [1, 2]
    assert engine.spec("errand").title == "Errand II"
    assert engine.spec("errand", 1).title == "Errand"


# -- limits: a file anyone may upload cannot break anything -----------------------------------------


@pytest.mark.parametrize(("text", "message"), [
    ("260wd", None),
    ("8760h", None),
    ("0260 working days", None),
    ("261wd", "'261wd' is too long; a duration can be at most 260 working days (about a year)"),
    ("99999999999wd", "'99999999999wd' is too long; a duration can be at most 260 working days (about a year)"),
    ("8761h", "'8761h' is too long; a duration can be at most 8760 hours (about a year)"),
    # more digits than Python converts to an int (4,300): refused before int() is tried
    ("9" * 5000 + "h", f"'{'9' * 5000}h' is too long; a duration can be at most 8760 hours (about a year)"),
])
def test_duration_refused_when_longer_than_a_year(text: str, message: str | None) -> None:
    if message is None:
        assert parse_duration(text).amount in (260, 8760)
        return
    with pytest.raises(ValueError) as err:
        parse_duration(text)

    assert str(err.value) == message


def test_longest_durations_still_give_a_due_time_when_a_stage_is_entered() -> None:
    from datetime import UTC, datetime

    from workflow.calendars import calendar_for

    cal = calendar_for("england")
    start = datetime(2025, 4, 16, 10, tzinfo=UTC)

    assert cal.due(start, parse_duration("260wd")).year == 2026
    assert cal.due(start, parse_duration("8760h")) == datetime(2026, 4, 16, 10, tzinfo=UTC)


@pytest.mark.parametrize(("mutate", "expected"), [
    pytest.param(_set("version", 2**63), [("version", "must be a whole number from 1 to 9999")], id="huge"),
    pytest.param(_set("version", 10_000), [("version", "must be a whole number from 1 to 9999")], id="10000"),
    pytest.param(_set("version", 0), [("version", "must be a whole number from 1 to 9999")], id="zero"),
    pytest.param(_set("version", True), [("version", "must be a whole number from 1 to 9999")], id="bool"),
    pytest.param(_set("version", 1.0), [("version", "must be a whole number from 1 to 9999")], id="float"),
    pytest.param(_set("version", "2"), [("version", "must be a whole number from 1 to 9999")], id="text"),
    pytest.param(_set("stages.drafted.deadlines.0.due", "99999999999wd"),
                 [("stages.drafted.deadlines[0].due",
                   "'99999999999wd' is too long; a duration can be at most 260 working days (about a year)")],
                 id="due"),
    pytest.param(_set("stages.submitted.deadlines.0.reminders", ["300wd"]),
                 [("stages.submitted.deadlines[0].reminders[0]",
                   "'300wd' is too long; a duration can be at most 260 working days (about a year)")],
                 id="reminder"),
    pytest.param(_set("stages.submitted.deadlines.0.due.values.high", "9000h"),
                 [("stages.submitted.deadlines[0].due.values.high",
                   "'9000h' is too long; a duration can be at most 8760 hours (about a year)")], id="by-variable"),
    pytest.param(_set("triggers.submit.fields.summary.max_length", 10**30),
                 [("triggers.submit.fields.summary.max_length", "Input should be less than or equal to 1000000")],
                 id="max-length"),
])
def test_refused_at_its_path_when_a_number_is_beyond_the_sane_range(mutate: Mutation,
                                                                    expected: list[tuple[str, str]]) -> None:
    doc = errand_doc()
    mutate(doc)

    assert problems_of(doc) == expected


def _nested(depth: int) -> str:
    return "key: " + "[" * depth + "]" * depth + "\n"


def _alias_bomb(levels: int = 9) -> str:
    """The "billion laughs": each level lists the previous one nine times (9**9 values, a few hundred bytes)."""
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [{', '.join([f'*{prev}'] * 9)}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param(_nested(10_000), Problem("line 1, column 25", "nested more than 20 levels deep"), id="deep-lists"),
    pytest.param("a:\n" + "".join(" " * i + f"k{i}:\n" for i in range(1, 40)),
                 Problem("line 20, column 20", "nested more than 20 levels deep"), id="deep-mappings"),
    pytest.param(_alias_bomb(), Problem("", "the document holds more than 100,000 values once its aliases are "
                                            "expanded"), id="billion-laughs"),
    pytest.param("a: &a x\nb: [" + ", ".join(["*a"] * 201) + "]\n",
                 Problem("line 2, column 805", "more than 200 aliases (*name)"), id="many-aliases"),
    pytest.param("# " + "x" * (256 * 1024) + "\n",
                 Problem("", "the file is larger than 256 KiB; a protocol spec is a few KiB"), id="oversize"),
    pytest.param("title: " + "é" * (130 * 1024) + "\n",  # fewer characters than the limit, more bytes
                 Problem("", "the file is larger than 256 KiB; a protocol spec is a few KiB"), id="oversize-bytes"),
])
def test_refused_with_one_problem_when_yaml_would_exhaust_the_loader(text: str, expected: Problem) -> None:
    with pytest.raises(SpecError) as err:
        load_spec(text, source="hostile.yaml")

    assert err.value.problems == [expected]


def test_spec_with_anchors_and_aliases_loads_when_within_the_limits() -> None:
    doc = errand_doc()
    doc["triggers"]["annotate"]["roles"] = doc["roles"]  # PyYAML writes the shared list as &id001 / *id001
    text = dump(doc)
    assert "&id001" in text and "*id001" in text

    assert load_spec(text).triggers["annotate"].roles == {"clerk", "manager"}


def test_file_refused_without_reading_it_all_when_larger_than_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"# " + b"x" * (300 * 1024))

    with pytest.raises(SpecError) as err:
        load_spec_file(path)
    with pytest.raises(SpecError) as endless:
        load_spec_file("/dev/zero")  # a file that never ends is read only up to the limit

    assert err.value.problems == [Problem("", "the file is larger than 256 KiB; a protocol spec is a few KiB")]
    assert endless.value.problems == err.value.problems
