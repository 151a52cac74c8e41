"""E-mail address checks (syntax only: the machine may have no DNS, and a typo must be caught when
the address is entered, not when the first reminder bounces)."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email


def email_problem(address: str) -> str | None:
    """None if the address is usable, else why not (for a person)."""
    try:
        validate_email(address, check_deliverability=False, globally_deliverable=False, test_environment=True)
    except EmailNotValidError as exc:
        return str(exc)
    return None


def normalise_email(address: str) -> str:
    return address.strip().lower()
