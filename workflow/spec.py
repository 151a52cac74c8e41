"""The workflow spec: a versioned YAML document that describes stages, triggers and deadlines.

A spec is parsed with pydantic for its shape, then checked for references (stages, roles,
variables) and reachability. Every problem is reported with its path inside the file, for example
``stages.referred.deadlines[0].due: unknown unit 'weeks'``. Nothing here touches a database.

A spec may come from anyone allowed to upload one, so the loader has limits that keep a hostile or
mistaken file from breaking anything: its size (``MAX_SPEC_BYTES``), how deeply it nests (checked while
PyYAML composes it, before its recursion can hit Python's limit), how many aliases it uses and how many
values it holds once aliases are expanded (a "billion laughs" file is small but expands without end),
the version number and every duration (a deadline 99999999999 working days away cannot be computed).
"""

from __future__ import annotations

import functools
import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from workflow.errors import Problem, SpecError

NAME = r"^[a-z][a-z0-9_]*$"
MAX_SPEC_BYTES = 256 * 1024
MAX_DEPTH = 20  # mappings and lists inside each other; the bundled spec needs 7
MAX_ALIASES = 200
MAX_VALUES = 100_000  # every mapping, list, key and value, aliases expanded; the bundled spec has ~800
MAX_VERSION = 9999
MAX_WORKING_DAYS = 260  # about a year
MAX_HOURS = 8760  # a year of clock hours
MAX_FIELD_LENGTH = 1_000_000
MAX_ERROR_MESSAGE = 300
# The ways a field's value can be refused, each of which may have its own message in the file (``errors:``):
# nothing given where one is needed; not a value of the field's type or not one of its choices; too long;
# a date or moment after today or now.
ERROR_KINDS = ("required", "invalid", "max_length", "not_future")
ANY_OPEN_STAGE = "*"
STAGE_ENTRY = "stage_entry"


class Unit(StrEnum):
    WORKING_DAYS = "working_days"
    HOURS = "hours"  # clock hours: ignore weekends and holidays


_UNIT_WORDS = {
    "wd": Unit.WORKING_DAYS,
    "working day": Unit.WORKING_DAYS,
    "working days": Unit.WORKING_DAYS,
    "h": Unit.HOURS,
    "hour": Unit.HOURS,
    "hours": Unit.HOURS,
    "clock hour": Unit.HOURS,
    "clock hours": Unit.HOURS,
}
_DURATION = re.compile(r"^\s*(?P<sign>[-+]?)(?P<n>\d+)\s*(?P<unit>[a-z ]+?)\s*$")


@dataclass(frozen=True)
class Duration:
    amount: int
    unit: Unit

    def short(self) -> str:
        """The spec's own notation: '3wd' or '24h'."""
        return f"{self.amount}{'wd' if self.unit is Unit.WORKING_DAYS else 'h'}"

    def __str__(self) -> str:
        word = "working day" if self.unit is Unit.WORKING_DAYS else "hour"
        return f"{self.amount} {word}{'' if self.amount == 1 else 's'}"


def parse_duration(text: object) -> Duration:
    """Parse '10wd', '10 working days', '4h', '24 clock hours'. Raises ValueError with a reason."""
    if isinstance(text, bool) or not isinstance(text, str | int):
        raise ValueError(f"a duration must be text like '10wd' or '4h', not {text!r}")
    if isinstance(text, int):
        raise ValueError(f"a duration needs a unit: write '{text}wd' or '{text}h'")
    m = _DURATION.match(text.lower())
    if not m:
        raise ValueError(f"'{text}' is not a duration; write e.g. '10wd' (working days) or '4h' (clock hours)")
    if m["sign"] == "-":
        raise ValueError(f"'{text}' is negative; durations must be zero or more")
    unit = _UNIT_WORDS.get(m["unit"].strip())
    if unit is None:
        raise ValueError(f"unknown unit '{m['unit'].strip()}' in '{text}'; use 'wd' (working days) or 'h' (hours)")
    # Compare the digits before int(): Python refuses to convert more than 4,300 of them.
    limit = MAX_WORKING_DAYS if unit is Unit.WORKING_DAYS else MAX_HOURS
    digits = m["n"].lstrip("0") or "0"
    if len(digits) > len(str(limit)) or int(digits) > limit:
        what = "working days" if unit is Unit.WORKING_DAYS else "hours"
        raise ValueError(f"'{text.strip()}' is too long; a duration can be at most {limit} {what} (about a year)")
    return Duration(int(digits), unit)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class FieldType(StrEnum):
    STRING = "string"
    TEXT = "text"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    DATE = "date"
    DATETIME = "datetime"
    CHOICE = "choice"
    MULTICHOICE = "multichoice"


class FieldSpec(_Strict):
    type: FieldType
    label: str | None = None
    required: bool = True
    choices: tuple[str, ...] | None = None
    max_length: int | None = Field(default=None, gt=0, le=MAX_FIELD_LENGTH)
    # When true, the value is copied into the instance's variables (e.g. risk, consent).
    variable: bool = False
    # Only required when another field has one of these values, e.g. {consent: [none]}.
    required_when: dict[str, tuple[str, ...]] | None = None
    # A date or datetime of something that has happened: not after today (the engine's zone) or now.
    not_future: bool = False
    # Typed text may name someone: the host seals it in history (workflow.engine.Sealer). Text and hand-typed
    # strings are sensitive unless the protocol file says ``sensitive: false``; other types never are.
    sensitive: bool | None = None
    # The message shown for each way the value can be refused, in the Design System's words ("Select the
    # consent the person gave"); a kind without one gets the generic message. Keys: ERROR_KINDS.
    errors: dict[str, str] = Field(default_factory=dict)

    def message(self, kind: str) -> str | None:
        """The file's message for ``kind`` (one of ERROR_KINDS), or None for the generic one."""
        return self.errors.get(kind)

    def can_be_required(self) -> bool:
        return self.required or bool(self.required_when)

    @property
    def is_sensitive(self) -> bool:
        if self.type not in (FieldType.STRING, FieldType.TEXT):
            return False
        return True if self.sensitive is None else self.sensitive


class VariableSpec(_Strict):
    type: FieldType
    choices: tuple[str, ...] | None = None


class ByVariable(_Strict):
    by: str
    values: dict[str, str]
    default: str | None = None


class DeadlineSpec(_Strict):
    name: str = Field(pattern=NAME)
    label: str | None = None
    due: str | ByVariable
    anchor: str = STAGE_ENTRY
    reminders: tuple[str, ...] = ()
    on_due: str = "overdue"
    # Only created when every named variable has one of the listed values.
    when: dict[str, tuple[str | int, ...]] | None = None


class StageSpec(_Strict):
    label: str | None = None
    description: str | None = None
    final: bool = False
    deadlines: tuple[DeadlineSpec, ...] = ()
    # The stage's next step, for queues and the case page: the first of these triggers that is offered.
    # Presentation only (the rules do not read it).
    next: tuple[str, ...] = ()

    @field_validator("next", mode="before")
    @classmethod
    def _next_one_or_many(cls, v: Any) -> Any:
        return (v,) if isinstance(v, str) else v


class TriggerSpec(_Strict):
    label: str | None = None
    source: tuple[str, ...] = Field(alias="from")
    # No ``to``: the trigger leaves the stage as it is (its deadlines keep running, but those in ``closes``).
    dest: str | None = Field(default=None, alias="to")
    roles: tuple[str, ...] = ()
    fields: dict[str, FieldSpec] = Field(default_factory=dict)
    guards: tuple[str, ...] = ()
    # Variables this trigger sets to fixed values, e.g. {outcome: withdrawn}; null clears one.
    set: dict[str, Any] = Field(default_factory=dict)
    # May be dated before the previous action (a fact learned late, such as leaving custody); never
    # before the instance began.
    backdate: bool = False
    # Deadlines of the stage this trigger closes (as met, at the moment it happened) without leaving it.
    closes: tuple[str, ...] = ()
    # What the trigger means to the host (e.g. "referral"): the host checks it has the shape it needs.
    kind: str | None = Field(default=None, pattern=NAME)

    @field_validator("source", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return (v,) if isinstance(v, str) else v


class SpecDocument(_Strict):
    key: str = Field(pattern=NAME)
    version: int = Field(ge=1, le=MAX_VERSION, strict=True)  # strict: not true, 1.0 or "1"
    title: str
    initial: str
    roles: tuple[str, ...]
    variables: dict[str, VariableSpec] = Field(default_factory=dict)
    stages: dict[str, StageSpec]
    triggers: dict[str, TriggerSpec]
    # Data the host reads and checks (its ``spec_check``), such as the sanctions protocol's copy rules;
    # the engine does not look inside.
    rules: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class DueRule:
    """A deadline's duration, possibly chosen by an instance variable."""

    by: str | None
    values: Mapping[str, Duration]
    default: Duration | None

    def for_variables(self, variables: Mapping[str, Any]) -> Duration | None:
        if self.by is None:
            return self.default
        value = variables.get(self.by)
        return self.values.get(str(value), self.default) if value is not None else self.default


@dataclass(frozen=True)
class Deadline:
    name: str
    label: str
    due: DueRule
    anchor: str
    reminders: tuple[Duration, ...]
    on_due: str
    when: Mapping[str, tuple[str | int, ...]]

    def applies_to(self, variables: Mapping[str, Any]) -> bool:
        return all(variables.get(var) in allowed for var, allowed in self.when.items())


@dataclass(frozen=True)
class Trigger:
    name: str
    label: str
    sources: tuple[str, ...]
    dest: str | None  # None: the stage stays as it is
    roles: frozenset[str]
    fields: Mapping[str, FieldSpec]
    guards: tuple[str, ...]
    sets: Mapping[str, Any]
    backdate: bool = False
    closes: tuple[str, ...] = ()
    kind: str | None = None

    @property
    def stays(self) -> bool:
        return self.dest is None


@dataclass(frozen=True)
class Stage:
    name: str
    label: str
    description: str
    final: bool
    deadlines: tuple[Deadline, ...]
    next: tuple[str, ...] = ()


@dataclass(frozen=True)
class WorkflowSpec:
    """A validated spec. Immutable; one object per (key, version)."""

    key: str
    version: int
    title: str
    initial: str
    roles: frozenset[str]
    variables: Mapping[str, VariableSpec]
    stages: Mapping[str, Stage]
    triggers: Mapping[str, Trigger]
    source: str
    text: str
    rules: Mapping[str, Any] = field(default_factory=dict)

    @property
    def open_stages(self) -> tuple[str, ...]:
        return tuple(name for name, stage in self.stages.items() if not stage.final)

    def triggers_from(self, stage: str) -> list[Trigger]:
        return [t for t in self.triggers.values() if stage in t.sources]


def _loc_to_path(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _pydantic_problems(err: ValidationError) -> list[Problem]:
    problems: list[Problem] = []
    for e in err.errors():
        skip = ("str", "ByVariable", "function-before[_one_or_many(), tuple[str, ...]]")
        loc = [p for p in e["loc"] if p not in skip]
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif loc == ["version"]:
            msg = f"must be a whole number from 1 to {MAX_VERSION}"
        problems.append(Problem(_loc_to_path(loc), msg))
    return problems


def _too_large() -> Problem:
    return Problem("", f"the file is larger than {MAX_SPEC_BYTES // 1024} KiB; a protocol spec is a few KiB")


def decode_spec(data: bytes, source: str = "<spec>") -> str:
    """The text of a spec file's bytes, or SpecError: too large, or not UTF-8."""
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(source, [_too_large()])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(source, [Problem("", f"the file is not UTF-8 text (byte {exc.start + 1} cannot be read); "
                                             "save it as UTF-8")]) from None


def load_spec_file(path: str | Path) -> WorkflowSpec:
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = f.read(MAX_SPEC_BYTES + 1)  # never more: the path may be /dev/zero
    except FileNotFoundError:
        raise SpecError(str(p), [Problem("", "file not found")]) from None
    except IsADirectoryError:
        raise SpecError(str(p), [Problem("", "this is a folder, not a file")]) from None
    except OSError as exc:
        raise SpecError(str(p), [Problem("", f"cannot read the file: {exc.strerror or exc}")]) from None
    return load_spec(decode_spec(data, str(p)), source=str(p))


class _Refused(yaml.YAMLError):
    def __init__(self, mark: Any, problem: str) -> None:
        super().__init__(problem)
        self.problem_mark = mark
        self.problem = problem


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing deep nesting and many aliases while it composes the document
    (its composer recurses once per level: 10,000 nested lists would exceed Python's recursion limit)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise _Refused(mark, f"more than {MAX_ALIASES} aliases (*name)")
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise _Refused(mark, f"nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _expands_too_far(value: Any) -> bool:
    """More than MAX_VALUES keys and values once aliases are expanded. Stops counting at the limit,
    so a document that expands to billions costs no more than one at the limit."""
    stack, seen = [value], 0
    while stack:
        item = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            return True
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _parse_yaml(text: str, source: str) -> Any:
    if len(text) > MAX_SPEC_BYTES or len(text.encode("utf-8", "replace")) > MAX_SPEC_BYTES:
        raise SpecError(source, [_too_large()])
    loader = _BoundedLoader(text)
    try:
        raw = loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(exc, "problem", None) or str(exc)
        what = reason if isinstance(exc, _Refused) else f"not valid YAML: {reason}"
        raise SpecError(source, [Problem(where, what)]) from None
    finally:
        loader.dispose()
    if _expands_too_far(raw):
        raise SpecError(source, [Problem("", f"the document holds more than {MAX_VALUES:,} values once its "
                                             "aliases are expanded")])
    return raw


def load_spec(text: str, source: str = "<spec>") -> WorkflowSpec:
    """Parse and validate a spec. Raises SpecError listing every problem found.

    A spec is immutable and a function of its text: one process parses each text once (an engine is built
    per app and per command; parsing a protocol file takes a third of a second)."""
    return _load_spec(text, source)


@functools.lru_cache(maxsize=32)
def _load_spec(text: str, source: str) -> WorkflowSpec:
    raw = _parse_yaml(text, source)
    if not isinstance(raw, dict):
        raise SpecError(source, [Problem("", "a spec must be a mapping with key, version, stages and triggers")])
    try:
        doc = SpecDocument.model_validate(raw)
    except ValidationError as err:
        raise SpecError(source, _pydantic_problems(err)) from None
    problems: list[Problem] = []
    spec = _build(doc, source, text, problems)
    if problems:
        raise SpecError(source, problems)
    assert spec is not None
    return spec


def _duration(text: str, path: str, problems: list[Problem]) -> Duration | None:
    try:
        return parse_duration(text)
    except ValueError as exc:
        problems.append(Problem(path, str(exc)))
        return None


def _build(doc: SpecDocument, source: str, text: str, problems: list[Problem]) -> WorkflowSpec | None:
    stage_names = set(doc.stages)
    roles = set(doc.roles)
    for name in doc.stages:
        if not re.match(NAME, name):
            problems.append(Problem(f"stages.{name}", "stage names are lower_snake_case"))
    if doc.initial not in stage_names:
        problems.append(Problem("initial", f"unknown stage '{doc.initial}'"))
    for vname, var in doc.variables.items():
        if var.type in (FieldType.CHOICE, FieldType.MULTICHOICE) and not var.choices:
            problems.append(Problem(f"variables.{vname}.choices", "a choice variable needs choices"))

    stages: dict[str, Stage] = {}
    for sname, s in doc.stages.items():
        deadlines: list[Deadline] = []
        seen: set[str] = set()
        for i, d in enumerate(s.deadlines):
            dpath = f"stages.{sname}.deadlines[{i}]"
            if d.name in seen:
                problems.append(Problem(f"{dpath}.name", f"deadline '{d.name}' appears twice in this stage"))
            seen.add(d.name)
            rule = _due_rule(d.due, f"{dpath}.due", doc, problems)
            if d.anchor != STAGE_ENTRY:
                anchor_var = doc.variables.get(d.anchor)
                if anchor_var is None:
                    problems.append(Problem(f"{dpath}.anchor",
                                            f"'{d.anchor}' is neither 'stage_entry' nor a declared variable"))
                elif anchor_var.type is not FieldType.DATETIME:
                    problems.append(Problem(f"{dpath}.anchor", f"variable '{d.anchor}' is not a datetime"))
            reminders = []
            for j, r in enumerate(d.reminders):
                dur = _duration(r, f"{dpath}.reminders[{j}]", problems)
                if dur is not None:
                    reminders.append(dur)
            for var_name in (d.when or {}):
                if var_name not in doc.variables:
                    problems.append(Problem(f"{dpath}.when.{var_name}", f"unknown variable '{var_name}'"))
            if rule is not None:
                deadlines.append(Deadline(d.name, d.label or d.name.replace("_", " "), rule, d.anchor,
                                          tuple(reminders), d.on_due, dict(d.when or {})))
        if s.final and s.deadlines:
            problems.append(Problem(f"stages.{sname}.deadlines", "a final stage cannot have deadlines"))
        if s.final and s.next:
            problems.append(Problem(f"stages.{sname}.next", "a final stage has no next step"))
        for i, tname in enumerate(s.next):
            named = doc.triggers.get(tname)
            if named is None:
                problems.append(Problem(f"stages.{sname}.next[{i}]", f"unknown trigger '{tname}'"))
            elif sname not in named.source and ANY_OPEN_STAGE not in named.source:
                problems.append(Problem(f"stages.{sname}.next[{i}]", f"'{tname}' does not start from '{sname}'"))
        stages[sname] = Stage(sname, s.label or sname.replace("_", " ").capitalize(), s.description or "",
                              s.final, tuple(deadlines), tuple(s.next))

    triggers: dict[str, Trigger] = {}
    for tname, t in doc.triggers.items():
        tpath = f"triggers.{tname}"
        if not re.match(NAME, tname):
            problems.append(Problem(tpath, "trigger names are lower_snake_case verbs"))
        sources: list[str] = []
        for i, src in enumerate(t.source):
            if src == ANY_OPEN_STAGE:
                sources.extend(n for n, st in doc.stages.items() if not st.final)
            elif src not in stage_names:
                problems.append(Problem(f"{tpath}.from[{i}]", f"unknown stage '{src}'"))
            else:
                sources.append(src)
        if not t.source:
            problems.append(Problem(f"{tpath}.from", "a trigger needs at least one source stage"))
        if t.dest is not None and t.dest not in stage_names:
            problems.append(Problem(f"{tpath}.to", f"trigger leads nowhere: unknown stage '{t.dest}'"))
        if t.dest is None and any(doc.stages[s].final for s in sources):
            problems.append(Problem(f"{tpath}.to", "a trigger that stays at its stage cannot start from a final stage"))
        for i, name in enumerate(t.closes):
            if not any(d.name == name for s in sources for d in doc.stages[s].deadlines):
                problems.append(Problem(f"{tpath}.closes[{i}]", f"no stage this trigger starts from has a "
                                                                 f"deadline '{name}'"))
        if not t.roles:
            problems.append(Problem(f"{tpath}.roles", "no role may fire this trigger; list at least one"))
        for i, role in enumerate(t.roles):
            if role not in roles:
                problems.append(Problem(f"{tpath}.roles[{i}]", f"unknown role '{role}'"))
        for fname, f in t.fields.items():
            fpath = f"{tpath}.fields.{fname}"
            if f.type in (FieldType.CHOICE, FieldType.MULTICHOICE) and not f.choices:
                problems.append(Problem(f"{fpath}.choices", "a choice field needs choices"))
            if f.not_future and f.type not in (FieldType.DATE, FieldType.DATETIME):
                problems.append(Problem(f"{fpath}.not_future", "only a date or datetime field can be not_future"))
            if f.variable and fname not in doc.variables:
                problems.append(Problem(f"{fpath}.variable", f"'{fname}' is not a declared variable"))
            for other in (f.required_when or {}):
                if other not in t.fields:
                    problems.append(Problem(f"{fpath}.required_when.{other}", f"unknown field '{other}'"))
            problems.extend(_error_problems(fpath, f))
        for var_name, value in t.set.items():
            set_var = doc.variables.get(var_name)
            if set_var is None:
                problems.append(Problem(f"{tpath}.set.{var_name}", f"unknown variable '{var_name}'"))
            elif value is not None and set_var.choices and value not in set_var.choices:
                allowed = ", ".join(set_var.choices)
                problems.append(Problem(f"{tpath}.set.{var_name}", f"'{value}' is not one of {allowed}"))
        triggers[tname] = Trigger(tname, t.label or tname.replace("_", " ").capitalize(),
                                  tuple(dict.fromkeys(sources)), t.dest, frozenset(t.roles),
                                  dict(t.fields), tuple(t.guards), dict(t.set), t.backdate, tuple(t.closes),
                                  t.kind)

    if problems:
        return None
    # Reachability: every stage reachable from the initial one; every open stage has a way out.
    reachable = {doc.initial}
    queue = deque([doc.initial])
    while queue:
        here = queue.popleft()
        for trig in triggers.values():
            if here in trig.sources and trig.dest is not None and trig.dest not in reachable:
                reachable.add(trig.dest)
                queue.append(trig.dest)
    for sname in doc.stages:
        if sname not in reachable:
            problems.append(Problem(f"stages.{sname}", f"unreachable from the initial stage '{doc.initial}'"))
        elif not stages[sname].final and not any(sname in t.sources and not t.stays for t in triggers.values()):
            problems.append(Problem(f"stages.{sname}", "an open stage with no trigger out of it (mark it final?)"))
    if problems:
        return None
    return WorkflowSpec(doc.key, doc.version, doc.title, doc.initial, frozenset(roles), dict(doc.variables),
                        stages, triggers, source, text, dict(doc.rules))


def _error_problems(fpath: str, f: FieldSpec) -> list[Problem]:
    """A field's ``errors:``: known kinds only, each one that can happen to this field, each a sentence."""
    problems: list[Problem] = []
    for kind, text in f.errors.items():
        path = f"{fpath}.errors.{kind}"
        if kind not in ERROR_KINDS:
            problems.append(Problem(path, f"unknown error '{kind}'; the kinds are {', '.join(ERROR_KINDS)}"))
            continue
        never = {"required": not f.can_be_required() and "the field is never required (required: false, "
                                                          "no required_when)",
                 "max_length": f.max_length is None and "the field has no max_length",
                 "not_future": not f.not_future and "the field is not not_future"}.get(kind)
        if never:
            problems.append(Problem(path, f"this error cannot happen: {never}"))
        if not text.strip():
            problems.append(Problem(path, "an error message needs words"))
        elif len(text) > MAX_ERROR_MESSAGE or "\n" in text:
            problems.append(Problem(path, f"an error message is one line of at most {MAX_ERROR_MESSAGE} characters"))
    return problems


def _due_rule(due: str | ByVariable, path: str, doc: SpecDocument, problems: list[Problem]) -> DueRule | None:
    if isinstance(due, str):
        d = _duration(due, path, problems)
        return None if d is None else DueRule(None, {}, d)
    var = doc.variables.get(due.by)
    if var is None:
        problems.append(Problem(f"{path}.by", f"unknown variable '{due.by}'"))
        return None
    values: dict[str, Duration] = {}
    for key, text in due.values.items():
        if var.choices and key not in var.choices:
            problems.append(Problem(f"{path}.values.{key}", f"'{key}' is not one of {', '.join(var.choices)}"))
        d = _duration(text, f"{path}.values.{key}", problems)
        if d is not None:
            values[key] = d
    default = _duration(due.default, f"{path}.default", problems) if due.default is not None else None
    if var.choices and due.default is None:
        missing = [c for c in var.choices if c not in due.values]
        if missing:
            problems.append(Problem(f"{path}.values", f"no duration for {', '.join(missing)} and no default"))
    return DueRule(due.by, values, default)

