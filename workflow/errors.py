"""The engine's error tree. Every refusal raises one of these and changes nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class WorkflowError(Exception):
    """Base of every error the engine raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec: where (a path inside the file) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class SpecError(WorkflowError):
    """A spec file that cannot be used. Lists every problem with its path in the file."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = [f"{source}: {p}" for p in self.problems]
        super().__init__("\n".join(lines))


class UnknownSpec(WorkflowError):
    def __init__(self, key: str, version: int | None = None) -> None:
        self.key = key
        self.version = version
        what = key if version is None else f"{key} version {version}"
        super().__init__(f"no workflow spec {what} is registered")


class UnknownTrigger(WorkflowError):
    def __init__(self, trigger: str, spec_key: str) -> None:
        self.trigger = trigger
        super().__init__(f"'{trigger}' is not an action of the {spec_key} workflow")


class TransitionNotAllowed(WorkflowError):
    def __init__(self, trigger: str, stage: str) -> None:
        self.trigger = trigger
        self.stage = stage
        super().__init__(f"'{trigger}' cannot be done while the case is at stage '{stage}'")


class NotPermitted(WorkflowError):
    def __init__(self, trigger: str, roles: Sequence[str], allowed: Sequence[str]) -> None:
        self.trigger = trigger
        self.roles = list(roles)
        self.allowed = list(allowed)
        need = " or ".join(sorted(allowed)) or "nobody"
        super().__init__(f"'{trigger}' can be done only by a {need} of the case")


class MissingFields(WorkflowError):
    """Every missing or invalid field, by name, with a message a person understands."""

    def __init__(self, trigger: str, errors: dict[str, str]) -> None:
        self.trigger = trigger
        self.errors = dict(errors)
        detail = "; ".join(f"{name}: {msg}" for name, msg in sorted(self.errors.items()))
        super().__init__(f"'{trigger}' cannot be done: {detail}")


class GuardFailed(WorkflowError):
    def __init__(self, trigger: str, guard: str, message: str) -> None:
        self.trigger = trigger
        self.guard = guard
        self.reason = message
        super().__init__(message)


class StaleInstance(WorkflowError):
    def __init__(self, instance_id: int, expected: int | None = None, actual: int | None = None) -> None:
        self.instance_id = instance_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            "the case was changed by someone else meanwhile; reload it and try again"
        )
