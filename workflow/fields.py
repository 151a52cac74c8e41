"""Checking and coercing the fields a person submits with a trigger.

Values arrive as form strings or JSON; they leave as JSON-native values (dates as ISO text) so
they can be stored in history and hashed the same way on every database.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from workflow.spec import FieldSpec, FieldType
from workflow.text import (
    DATE_FUTURE,
    DATETIME_FUTURE,
    clean_text,
    date_problem,
    datetime_problem,
    is_blank,
    shown,
    storage_problem,
)

LONDON = ZoneInfo("Europe/London")

_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off"}


def _blank(value: Any) -> bool:
    """Nothing given: None, an empty list, or text that shows nothing (spaces, zero-width characters)
    and can be stored (text that cannot is refused as such, not taken for a blank)."""
    if isinstance(value, str):
        return is_blank(value) and storage_problem(value) is None
    return value is None or (isinstance(value, list | tuple) and len(value) == 0)


def refusal_kind(spec: FieldSpec, message: str) -> str:
    """Which of ``workflow.spec.ERROR_KINDS`` the generic ``message`` from :func:`coerce` is."""
    if spec.max_length is not None and message == f"must be {spec.max_length} characters or fewer":
        return "max_length"
    if message in (DATE_FUTURE, DATETIME_FUTURE):
        return "not_future"
    return "invalid"


def worded(spec: FieldSpec, kind: str, generic: str) -> str:
    """The protocol file's message for this kind of refusal (``errors:``), else the generic one."""
    return spec.message(kind) or generic


def coerce(spec: FieldSpec, value: Any, *, now: datetime | None = None, zone: tzinfo = LONDON) -> Any:
    """Return the JSON-native value, or raise ValueError with a message for a person. ``now`` is
    what a ``not_future`` date or datetime is compared with (a date with today in ``zone``). The
    message is generic ("must be one of: …"); :func:`check_fields` words it as the file says."""
    t = spec.type
    if t in (FieldType.STRING, FieldType.TEXT):
        if not isinstance(value, str):
            raise ValueError("must be text")
        value = clean_text(value, multiline=t is FieldType.TEXT)
        if spec.max_length is not None and len(value) > spec.max_length:
            raise ValueError(f"must be {spec.max_length} characters or fewer")
        return value
    if t is FieldType.INTEGER:
        if isinstance(value, bool):
            raise ValueError("must be a whole number")
        if isinstance(value, int):
            return value
        try:
            return int(str(value).strip())
        except ValueError:
            raise ValueError("must be a whole number") from None
    if t is FieldType.BOOLEAN:
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValueError("must be yes or no")
    if t is FieldType.DATE:
        if isinstance(value, datetime):
            raise ValueError("must be a date, without a time")
        day: date | None = value if isinstance(value, date) else None
        if day is None:
            # Only text: a JSON number such as 20250416 would otherwise read as a date.
            try:
                day = date.fromisoformat(value.strip()) if isinstance(value, str) else None
            except ValueError:
                day = None
            if day is None:
                raise ValueError("must be a real date in the form YYYY-MM-DD")
        today = now.astimezone(zone).date() if spec.not_future and now is not None else None
        problem = date_problem(day, not_after=today)
        if problem:
            raise ValueError(problem)
        return day.isoformat()
    if t is FieldType.DATETIME:
        at: datetime | None = value if isinstance(value, datetime) else None
        if at is None:
            try:
                at = datetime.fromisoformat(value.strip()) if isinstance(value, str) else None
            except ValueError:
                at = None
            if at is None:
                raise ValueError("must be a date and time such as 2025-04-16T10:30:00+01:00")
        if at.tzinfo is None:
            raise ValueError("must include a time zone offset, such as +01:00 or Z")
        problem = datetime_problem(at, not_after=now if spec.not_future else None)
        if problem:
            raise ValueError(problem)
        return at.astimezone(UTC).isoformat()
    if t is FieldType.CHOICE:
        choices = spec.choices or ()
        if not isinstance(value, str) or value not in choices:
            raise ValueError(f"must be one of: {', '.join(choices)}")
        return value
    if t is FieldType.MULTICHOICE:
        choices = spec.choices or ()
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
            raise ValueError(f"must be a list of: {', '.join(choices)}")
        bad = [i for i in items if i not in choices]
        if bad:
            raise ValueError(f"'{shown(bad[0])}' is not one of: {', '.join(choices)}")
        return sorted(set(items))
    raise ValueError(f"unsupported field type {t}")  # pragma: no cover - the spec enum is closed


def check_fields(specs: Mapping[str, FieldSpec], given: Mapping[str, Any], *, now: datetime | None = None,
                 zone: tzinfo = LONDON) -> tuple[dict[str, Any], dict[str, str]]:
    """Validate all fields at once. Returns (clean values, errors by field name). ``now`` (aware) is
    the moment ``not_future`` fields are checked against; without it they are not."""
    clean: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name in given:
        if name not in specs:
            errors[shown(name)] = "is not a field of this action"
    for name, spec in specs.items():
        value = given.get(name)
        if _blank(value):
            continue
        try:
            clean[name] = coerce(spec, value, now=now, zone=zone)
        except ValueError as exc:
            errors[name] = worded(spec, refusal_kind(spec, str(exc)), str(exc))
    # Requirements are decided on clean values, so that a condition written as "true" is met by a
    # checkbox sent as "on" or a JSON true, and one naming a choice by a multichoice holding it.
    for name, spec in specs.items():
        if not _blank(given.get(name)):
            continue
        required = spec.required
        if spec.required_when:
            required = all(_meets(clean.get(other), allowed) for other, allowed in spec.required_when.items())
        if required:
            errors[name] = worded(spec, "required", "is required")
    return clean, errors


def _meets(value: Any, allowed: tuple[str, ...]) -> bool:
    items = value if isinstance(value, list) else [value]
    words = [("true" if v else "false") if isinstance(v, bool) else str(v) for v in items if v is not None]
    return any(word in allowed for word in words)
