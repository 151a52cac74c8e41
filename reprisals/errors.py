"""The domain's error tree; ``web/`` and the CLI map each to a status and one clear line."""

from __future__ import annotations


class ReprisalsError(Exception):
    """Base of the domain's deliberate errors."""


class CaseNotFound(ReprisalsError):
    """No such case, or one the user may not see (the two are indistinguishable on purpose)."""

    def __init__(self, reference: str) -> None:
        self.reference = reference
        super().__init__(f"no case {reference}")


class NotAllowed(ReprisalsError):
    pass


class InvalidInput(ReprisalsError):
    """Input that fails validation: every problem, by field."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in sorted(self.errors.items())))


class IdentityUnreadable(ReprisalsError):
    """A ciphertext that does not decrypt with any configured key, or belongs to another row."""


class ConfigurationError(ReprisalsError):
    """One or more configuration problems, each naming the variable."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))
