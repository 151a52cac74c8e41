"""The sanctions protocol: the spec files shipped with the product, and the guards they name."""

from __future__ import annotations

from datetime import datetime, time
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta

from workflow.calendars import DEFAULT_DAY_END
from workflow.engine import Engine, GuardContext
from workflow.spec import WorkflowSpec, load_spec, load_spec_file
from workflow.timers import Timers

SPEC_KEY = "sanctions"
REOPEN_MONTHS = 6  # calendar months, from the moment the case closed
LONDON = ZoneInfo("Europe/London")
MAX_ESCALATION_LEVEL = 2
CONSENTED = ("full", "anonymous")
OVERRIDE_GROUNDS = ("risk_to_life", "child_safeguarding")
SECOND_LEAD_OUTCOMES = ("substantiated", "partly_substantiated", "inconclusive")


def consent_allows_referral(ctx: GuardContext) -> str | None:
    if ctx.variables.get("consent") in CONSENTED:
        if ctx.fields.get("override_ground") or ctx.fields.get("override_reason"):
            return ("consent was given, so there is nothing to override; leave the override ground and "
                    "reason empty")
        return None
    if ctx.fields.get("override_ground") in OVERRIDE_GROUNDS and ctx.fields.get("override_reason"):
        return None
    return ("the person has not consented: nothing may be sent to the establishment unless a lead "
            "overrides for risk to life or child safeguarding, with a reason")


def recipients_fit_establishment(ctx: GuardContext) -> str | None:
    recipients = ctx.fields.get("recipients") or []
    if "head_of_establishment" not in recipients:
        return "the referral must go to the head of the establishment"
    return None


def consent_is_none(ctx: GuardContext) -> str | None:
    if ctx.variables.get("consent") != "none":
        return "record only is for cases without consent; this person consented, so refer or decline"
    return None


def escalation_below_max(ctx: GuardContext) -> str | None:
    level = int(ctx.instance.variables.get("escalation_level") or 0)
    if level >= MAX_ESCALATION_LEVEL:
        return f"the case is already at the highest escalation level ({MAX_ESCALATION_LEVEL})"
    return None


def second_lead_confirms(ctx: GuardContext) -> str | None:
    outcome = ctx.fields.get("outcome")
    if outcome in SECOND_LEAD_OUTCOMES and ctx.variables.get("finding_proposed_by") == ctx.actor.id:
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


GUARDS = {
    "consent_allows_referral": consent_allows_referral,
    "recipients_fit_establishment": recipients_fit_establishment,
    "consent_is_none": consent_is_none,
    "escalation_below_max": escalation_below_max,
    "second_lead_confirms": second_lead_confirms,
    "within_reopen_window": within_reopen_window,
}


def bundled_specs() -> list[WorkflowSpec]:
    folder = resources.files("reprisals") / "protocols"
    return [load_spec(f.read_text(encoding="utf-8"), source=f"protocols/{f.name}")
            for f in sorted(folder.iterdir(), key=lambda f: f.name) if f.name.endswith(".yaml")]


def build_engine(extra_spec_files: list[Path] | None = None, day_end: time = DEFAULT_DAY_END) -> Engine:
    """An engine with the protocol's guards, every bundled spec version registered, and deadline
    timers created on every stage change (working days end at ``day_end``, UK time)."""
    engine = Engine(guards=dict(GUARDS), began_as="the case was received")
    Timers(day_end=day_end).attach(engine)
    for spec in bundled_specs():
        engine.register(spec)
    for path in extra_spec_files or []:
        engine.register(load_spec_file(path))
    return engine


def check_spec_file(path: str | Path) -> WorkflowSpec:
    """Validate a spec file as the product would load it (shape, references, guards)."""
    spec = load_spec_file(path)
    Engine(guards=dict(GUARDS)).register(spec)
    return spec
