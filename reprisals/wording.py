"""Refusals in the domain's words (the `reprisals` command and the API use it for every refusal on a case).

The engine's errors carry structured facts (the trigger, the stage, the roles, the instance's
version) but know nothing of cases; this turns them into one sentence a person can act on: the
case's reference, the action's and stage's labels from the case's protocol version, and what can
be done next. Never a class name or an internal id.
"""

from __future__ import annotations

from collections.abc import Sequence

from reprisals.errors import CaseNotFound, ReprisalsError
from reprisals.models import Nation
from reprisals.vocabulary import WORKING_DAY_REGIONS, day_words
from workflow.deadlines import NotAWorkingDay
from workflow.errors import (
    GuardFailed,
    NotPermitted,
    StaleInstance,
    TransitionNotAllowed,
    UnknownTrigger,
    WorkflowError,
)
from workflow.spec import WorkflowSpec

ROLE_WORDS = {"lead": "a lead of a body on the case", "staff": "the member of staff assigned to it"}


def action_label(spec: WorkflowSpec | None, trigger: str) -> str:
    t = spec.triggers.get(trigger) if spec is not None else None
    return t.label if t is not None else trigger.replace("_", " ")


def stage_label(spec: WorkflowSpec | None, stage: str) -> str:
    s = spec.stages.get(stage) if spec is not None else None
    return s.label if s is not None else stage.replace("_", " ")


def _either(words: Sequence[str]) -> str:
    words = list(words)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def not_a_working_day(exc: NotAWorkingDay) -> str:
    """'Saturday 5 December 2026 is not a working day in England and Wales: choose a working day'; a bank
    holiday on a weekday is named ('… is a bank holiday (Christmas Day) in England and Wales: …')."""
    try:
        where = WORKING_DAY_REGIONS[Nation(exc.calendar)]
    except ValueError:
        where = exc.calendar.replace("_", " ").title()
    why = f"is a bank holiday ({exc.holiday}) in" if exc.holiday else "is not a working day in"
    return f"{day_words(exc.day)} {why} {where}: choose a working day"


def explain(exc: BaseException, *, reference: str | None = None, spec: WorkflowSpec | None = None,
            next_actions: Sequence[str] = ()) -> str:
    """One sentence for ``exc``. ``next_actions`` are trigger names the person may fire now. Field
    errors (``MissingFields``, ``InvalidInput``) are not for this: they are one line per field."""
    case = reference or "this case"
    then = (f" Next you can: {', '.join(action_label(spec, n) for n in next_actions)}." if next_actions
            else " There is nothing you can do on it now.")
    if isinstance(exc, TransitionNotAllowed):
        return (f"{case} is at stage '{stage_label(spec, exc.stage)}': "
                f"'{action_label(spec, exc.trigger)}' cannot be done from there.{then}")
    if isinstance(exc, NotPermitted):
        need = _either([ROLE_WORDS.get(r, r) for r in sorted(exc.allowed)]) if exc.allowed else "nobody"
        return f"you cannot '{action_label(spec, exc.trigger)}' on {case}: only {need} can."
    if isinstance(exc, GuardFailed):
        return f"{case}: '{action_label(spec, exc.trigger)}' cannot be done: {exc.reason}"
    if isinstance(exc, StaleInstance):
        now = f" (it is now at version {exc.actual})" if exc.actual is not None else ""
        return f"{case} was changed by someone else meanwhile{now}. Show it again and retry. Nothing was saved."
    if isinstance(exc, UnknownTrigger):
        return f"'{exc.trigger}' is not an action of the protocol.{then if reference else ''}"
    if isinstance(exc, CaseNotFound):
        return f"there is no case {exc.reference} that you can see"
    if isinstance(exc, NotAWorkingDay):
        return f"{case}: {not_a_working_day(exc)}"
    if isinstance(exc, WorkflowError | ReprisalsError):
        return str(exc) if reference is None else f"{case}: {exc}"
    return "that cannot be done"
