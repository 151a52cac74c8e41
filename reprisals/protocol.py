"""The sanctions protocol: the spec files shipped with the product, and the guards they name."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta

from reprisals.crypto import Cipher
from workflow.calendars import DEFAULT_DAY_END
from workflow.deadlines import Timers
from workflow.engine import Condition, Engine, GuardContext
from workflow.errors import Problem
from workflow.spec import Trigger, WorkflowSpec, load_spec, load_spec_file

SPEC_KEY = "sanctions"
REOPEN_MONTHS = 6  # calendar months, from the moment the case closed
LONDON = ZoneInfo("Europe/London")
MAX_ESCALATION_LEVEL = 2
CONSENTED = ("full", "anonymous")
OVERRIDE_GROUNDS = ("risk_to_life", "child_safeguarding")
SECOND_LEAD_OUTCOMES = ("substantiated", "partly_substantiated", "inconclusive")


CONSENT_RANK = {"none": 0, "anonymous": 1, "full": 2}
OVERRIDE_CONDITION = "only with an override for risk to life or child safeguarding, with a reason"


def _disclosure_needs_override(variables: Mapping[str, Any]) -> bool:
    """Nothing may be disclosed without an override when the person has not consented, or narrowed or
    withdrew their consent after giving it (``change_consent``)."""
    return variables.get("consent") not in CONSENTED or bool(variables.get("consent_lowered"))


def consent_allows_referral(ctx: GuardContext) -> str | None:
    overriding = bool(ctx.fields.get("override_ground") or ctx.fields.get("override_reason"))
    if not _disclosure_needs_override(ctx.variables):
        if overriding:
            return ("consent was given, so there is nothing to override; leave the override ground and "
                    "reason empty")
        return None
    if ctx.probe:
        return Condition(OVERRIDE_CONDITION)
    if ctx.fields.get("override_ground") in OVERRIDE_GROUNDS and ctx.fields.get("override_reason"):
        return None
    if ctx.variables.get("consent_lowered"):
        return ("the person narrowed or withdrew their consent: nothing more may be sent unless a lead "
                "overrides for risk to life or child safeguarding, with a reason")
    return ("the person has not consented: nothing may be sent to the establishment unless a lead "
            "overrides for risk to life or child safeguarding, with a reason")


def recipients_fit_establishment(ctx: GuardContext) -> str | None:
    if ctx.probe:
        return None
    recipients = ctx.fields.get("recipients") or []
    if "head_of_establishment" not in recipients:
        return "the referral must go to the head of the establishment"
    return None


@dataclass(frozen=True)
class CopyRule:
    recipient: str
    label: str
    when: Mapping[str, tuple[Any, ...]]
    because: str

    def applies_to(self, variables: Mapping[str, Any]) -> bool:
        return all(variables.get(name) in allowed for name, allowed in self.when.items())


def copy_rules(spec: WorkflowSpec | None) -> list[CopyRule]:
    """The protocol file's copy rules (``rules.copies``), checked when the spec was registered."""
    raw = (spec.rules.get("copies") if spec is not None else None) or []
    return [CopyRule(r["recipient"], r.get("label", r["recipient"]), {k: tuple(v) for k, v in r["when"].items()},
                     r.get("because", "")) for r in raw]


def required_copies(spec: WorkflowSpec | None, variables: Mapping[str, Any]) -> list[CopyRule]:
    return [r for r in copy_rules(spec) if r.applies_to(variables)]


def copies_follow_rules(ctx: GuardContext) -> str | None:
    """A referral or escalation copies whom the protocol's rules require for this case, and no one whose
    rule does not fit it (the Youth Custody Service for an adult)."""
    rules = copy_rules(ctx.spec)
    needed = [r for r in rules if r.applies_to(ctx.variables)]
    if ctx.probe:
        if not needed:
            return None
        names = ", ".join(r.label for r in needed)
        return Condition(f"it must copy {names}")
    sent = set(ctx.fields.get("recipients") or []) | set(ctx.fields.get("copies") or [])
    if ctx.fields.get("recipient"):
        sent.add(ctx.fields["recipient"])
    missing = [r for r in needed if r.recipient not in sent]
    if missing:
        r = missing[0]
        return f"it must copy {r.label}: {r.because}"
    for r in rules:
        if r.recipient in sent and not r.applies_to(ctx.variables):
            return f"{r.label} is copied only when {r.because}; that is not so for this case, so remove it"
    return None


@dataclass(frozen=True)
class FieldsThatApply:
    """What a trigger's form asks on one case (``fields_that_apply``): the fields left out, the choices
    offered where the case narrows them, the values ticked to begin with, and hints that say why."""

    left_out: frozenset[str]
    choices: Mapping[str, tuple[str, ...]]
    preset: Mapping[str, tuple[str, ...]]
    hints: Mapping[str, str]


OVERRIDE_FIELDS = ("override_ground", "override_reason")
ALWAYS_SENT = "head_of_establishment"


def fields_that_apply(spec: WorkflowSpec, trigger: Trigger, variables: Mapping[str, Any]) -> FieldsThatApply:
    """The same rules as the guards, for the form: the consent override only where nothing may be
    disclosed without one (``consent_allows_referral``); copies only to those whose rule
    (``rules.copies``) fits the case, those it requires ticked (``copies_follow_rules``), and the escalation's
    recipient likewise; a referral
    always to the head of the establishment (``recipients_fit_establishment``). A value for a field left
    out is never read; a choice not offered is refused by the form and by the guards."""
    left_out: set[str] = set()
    choices: dict[str, tuple[str, ...]] = {}
    preset: dict[str, tuple[str, ...]] = {}
    hints: dict[str, str] = {}
    if "consent_allows_referral" in trigger.guards and not _disclosure_needs_override(variables):
        left_out.update(f for f in OVERRIDE_FIELDS if f in trigger.fields)
    rules = copy_rules(spec)
    needed = [r for r in rules if r.applies_to(variables)]
    unfit = {r.recipient for r in rules if not r.applies_to(variables)}
    copy_fields = [n for n in ("recipients", "recipient", "copies")
                   if n in trigger.fields and trigger.fields[n].choices]
    for name in copy_fields:
        offered = tuple(c for c in trigger.fields[name].choices or () if c not in unfit)
        if offered != trigger.fields[name].choices:
            choices[name] = offered
        if name == "recipient":
            continue  # one answer: the copies that must go with it are asked for beside it
        ticked = [r.recipient for r in needed if r.recipient in offered]
        if name == "recipients" and "recipients_fit_establishment" in trigger.guards and ALWAYS_SENT in offered:
            ticked.insert(0, ALWAYS_SENT)
        if ticked:
            preset[name] = tuple(ticked)
        musts = [f"{r.label} must be copied: {r.because}" for r in needed if r.recipient in offered]
        if musts:
            hints[name] = "; ".join(m[0].upper() + m[1:] for m in musts) + "."
    return FieldsThatApply(frozenset(left_out), choices, preset, hints)


def consent_is_none(ctx: GuardContext) -> str | None:
    if ctx.variables.get("consent") != "none":
        return "record only is for cases without consent; this person consented, so refer or decline"
    return None


def consent_changes(ctx: GuardContext) -> str | None:
    if ctx.probe:
        return None
    current = ctx.instance.variables.get("consent")
    if ctx.fields.get("consent") == current:
        return f"consent is already recorded as '{current}'; choose the consent the person gives now"
    return None


def urgent_contact_awaited(ctx: GuardContext) -> str | None:
    if ctx.instance.variables.get("risk") != "urgent":
        return "contact is confirmed only on urgent cases (within 24 hours of the referral)"
    if ctx.instance.variables.get("contact_confirmed"):
        return "contact with the establishment has already been confirmed"
    return None


def escalation_below_max(ctx: GuardContext) -> str | None:
    level = int(ctx.instance.variables.get("escalation_level") or 0)
    if level >= MAX_ESCALATION_LEVEL:
        return f"the case is already at the highest escalation level ({MAX_ESCALATION_LEVEL})"
    return None


def proposed_by_actor(variables: Mapping[str, Any], actor_id: str) -> bool:
    return variables.get("finding_proposed_by") == actor_id


def second_lead_confirms(ctx: GuardContext) -> str | None:
    if ctx.probe:
        if proposed_by_actor(ctx.instance.variables, ctx.actor.id):
            return Condition("you proposed the finding, so you may close it alone only as not substantiated; "
                             "another lead confirms the other outcomes")
        return None
    outcome = ctx.fields.get("outcome")
    if outcome in SECOND_LEAD_OUTCOMES and proposed_by_actor(ctx.variables, ctx.actor.id):
        return (f"a different lead must confirm the outcome '{outcome}': you proposed the finding, "
                "so another lead has to close the case")
    return None


def reopen_until(closed_at: datetime) -> datetime:
    """The last moment a case closed at ``closed_at`` may be reopened: the same date and time six calendar
    months later, UK time (the month's last day where that date does not exist: 31 August to 28 February)."""
    local = closed_at.astimezone(LONDON)
    return (local.replace(tzinfo=None) + relativedelta(months=REOPEN_MONTHS)).replace(tzinfo=LONDON)


def within_reopen_window(ctx: GuardContext) -> str | None:
    closed = ctx.instance.variables.get("closed_at")
    if closed is None:
        return None
    until = reopen_until(datetime.fromisoformat(closed))
    if ctx.moment > until:
        return (f"the case closed more than six months ago (it could be reopened until {until.day} "
                f"{until:%B %Y}) and cannot be reopened; open a new case linked to this one")
    return None


# -- what triggers mean to the services -------------------------------------------------------------
#
# The services act on what some triggers mean: recording consent and risk, a referral, an escalation, a
# response, a proposed finding, a closure, a reopening, a return to triage. A protocol file says which
# trigger means what (``kind:``); version 1 predates that and is read with the names it uses
# (``V1_KINDS``). A version that lacks a meaning the services need, or gives one to a trigger of the
# wrong shape, is refused when it is loaded or uploaded (decision 18).

# "finding" is required too: the second-lead rule depends on who proposed the finding.
REQUIRED_KINDS = ("consent", "referral", "escalation", "response", "finding", "closure", "reopen")
# Meanings the services act on when a version has them (none is required: version 1 has none of them).
OPTIONAL_KINDS = ("retriage", "consent_change", "contact", "send_back", "decline", "record_only", "follow_up",
                  "withdrawal", "left_custody")
KNOWN_KINDS = (*REQUIRED_KINDS, *OPTIONAL_KINDS)
V1_KINDS = {"record_consent_and_risk": "consent", "refer": "referral", "escalate": "escalation",
            "reject_response": "escalation", "record_response": "response", "accept_response": "finding",
            "close": "closure", "reopen": "reopen", "further_detriment": "retriage"}


def kind_of(spec: WorkflowSpec, trigger: str | None) -> str | None:
    """What ``trigger`` means to the services in ``spec``, or None."""
    trig = spec.triggers.get(trigger) if isinstance(trigger, str) else None
    if trig is None:
        return None
    if any(t.kind for t in spec.triggers.values()):
        return trig.kind
    return V1_KINDS.get(trig.name)


def _needs_fields(trig: Trigger, *names: str, variable: bool = True) -> str | None:
    for name in names:
        f = trig.fields.get(name)
        if f is None:
            return f"needs a field '{name}'"
        if variable and not f.variable:
            return f"its field '{name}' must be 'variable: true'"
    return None


def meaning_problems(spec: WorkflowSpec) -> list[Problem]:
    """Why the services could not work with ``spec`` (only the sanctions protocol is checked)."""
    if spec.key != SPEC_KEY:
        return []
    problems: list[Problem] = []
    found: dict[str, list[str]] = {}
    for trig in spec.triggers.values():
        kind = kind_of(spec, trig.name)
        if kind is None:
            continue
        path = f"triggers.{trig.name}.kind"
        if kind not in KNOWN_KINDS:
            problems.append(Problem(path, f"unknown kind '{kind}'; use one of {', '.join(KNOWN_KINDS)}"))
            continue
        found.setdefault(kind, []).append(trig.name)
        dest = spec.stages.get(trig.dest) if trig.dest is not None else None
        wrong: str | None = None
        if kind == "consent":
            wrong = _needs_fields(trig, "consent", "risk")
        elif kind == "referral":
            wrong = _needs_fields(trig, "recipients", variable=False) or (
                "must move the case to another stage" if dest is None or dest.final else None)
        elif kind == "consent_change":
            wrong = _needs_fields(trig, "consent") or ("must leave the case at its stage" if dest is not None else None)
        elif kind == "contact":
            wrong = "must leave the case at its stage" if dest is not None else None
        elif kind in ("escalation", "response", "retriage", "send_back"):
            wrong = "must move the case to an open stage" if dest is None or dest.final else None
        elif kind == "finding":
            wrong = _needs_fields(trig, "proposed_finding")
        elif kind == "closure":
            wrong = _needs_fields(trig, "outcome") or (
                "must move the case to a final stage" if dest is None or not dest.final else None)
        elif kind == "reopen":
            starts_final = all(spec.stages[s].final for s in trig.sources)
            wrong = ("must start from a final stage and move the case to an open one"
                     if not starts_final or dest is None or dest.final else None)
        if wrong:
            problems.append(Problem(f"triggers.{trig.name}", f"a trigger of kind '{kind}' {wrong}"))
    problems.extend(_rule_problems(spec))
    for kind in REQUIRED_KINDS:
        if kind not in found:
            problems.append(Problem("triggers", f"no trigger has kind '{kind}'; the service needs one "
                                                f"(add 'kind: {kind}' to the trigger that does it)"))
    return problems


def _rule_problems(spec: WorkflowSpec) -> list[Problem]:
    """The copy rules' shape: a list of {recipient, when: {variable: [values]}, label?, because?}."""
    copies = spec.rules.get("copies")
    if copies is None:
        return []
    if not isinstance(copies, list):
        return [Problem("rules.copies", "must be a list of rules")]
    problems: list[Problem] = []
    for i, rule in enumerate(copies):
        path = f"rules.copies[{i}]"
        if not isinstance(rule, dict) or not isinstance(rule.get("recipient"), str):
            problems.append(Problem(path, "needs a 'recipient'"))
            continue
        unknown = set(rule) - {"recipient", "label", "when", "because"}
        if unknown:
            problems.append(Problem(f"{path}.{sorted(unknown)[0]}", "unknown key"))
        when = rule.get("when")
        if not isinstance(when, dict) or not when or not all(isinstance(v, list) for v in when.values()):
            problems.append(Problem(f"{path}.when", "must map variables to lists of values"))
            continue
        for name in when:
            if name not in spec.variables:
                problems.append(Problem(f"{path}.when.{name}", f"unknown variable '{name}'"))
    return problems


GUARDS = {
    "consent_allows_referral": consent_allows_referral,
    "recipients_fit_establishment": recipients_fit_establishment,
    "consent_is_none": consent_is_none,
    "escalation_below_max": escalation_below_max,
    "second_lead_confirms": second_lead_confirms,
    "within_reopen_window": within_reopen_window,
    "copies_follow_rules": copies_follow_rules,
    "consent_changes": consent_changes,
    "urgent_contact_awaited": urgent_contact_awaited,
}


def bundled_specs() -> list[WorkflowSpec]:
    folder = resources.files("reprisals") / "protocols"
    return [load_spec(f.read_text(encoding="utf-8"), source=f"protocols/{f.name}")
            for f in sorted(folder.iterdir(), key=lambda f: f.name) if f.name.endswith(".yaml")]


def build_engine(extra_spec_files: list[Path] | None = None, day_end: time = DEFAULT_DAY_END, *,
                 cipher: Cipher) -> Engine:
    """An engine with the protocol's guards, every bundled spec version registered, deadline timers created
    on every stage change (working days end at ``day_end``, UK time), and the case keys (wrapped by
    ``cipher``) sealing sensitive text in history."""
    from reprisals.sealing import Keyring

    engine = Engine(guards=dict(GUARDS), began_as="the case was received", spec_check=meaning_problems,
                    sealer=Keyring(cipher))
    Timers(day_end=day_end).attach(engine)
    for spec in bundled_specs():
        engine.register(spec)
    for path in extra_spec_files or []:
        engine.register(load_spec_file(path))
    return engine


def check_spec_file(path: str | Path) -> WorkflowSpec:
    """Validate a spec file as the product would load it (shape, references, guards)."""
    spec = load_spec_file(path)
    Engine(guards=dict(GUARDS), spec_check=meaning_problems).register(spec)
    return spec
