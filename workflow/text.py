"""What text and dates a person may give, in one place for every surface (pages, API, command).

Text arrives from JSON (``"\\ud800"`` decodes to a lone surrogate), from forms, and from command-line
arguments (bytes that are not UTF-8 become lone surrogates through ``surrogateescape``). Such text
cannot be encrypted, hashed into history or stored by PostgreSQL, so it is refused with a message
naming the code point (never the text itself, which may be identity). Accepted text is NFC
normalised, its line endings made ``\\n`` and its surrounding whitespace stripped.

Dates are real ones between 1900 and 2100; anything outside is a typing slip (or an attempt to
overflow a time zone conversion), not a fact.
"""

from __future__ import annotations

import unicodedata
from datetime import date, datetime, tzinfo

MIN_YEAR = 1900
MAX_YEAR = 2100
TOO_EARLY = f"must be a real date on or after 1 January {MIN_YEAR}"
TOO_LATE = f"must be a real date on or before 31 December {MAX_YEAR}"
DATE_FUTURE = "must be today or in the past"
DATETIME_FUTURE = "must not be in the future"

# Letters that render as nothing (Hangul and other fillers, the braille blank): a name made of them
# is as empty as one made of spaces.
_BLANK_LOOKING = frozenset("\u115f\u1160\u3164\uffa0\u2800\u180e")
# Categories that show nothing on their own: controls, formats (zero-width space, joiners, U+FEFF,
# U+2060), combining marks without a base, separators (spaces, including U+00A0).
_INVISIBLE = frozenset({"Cc", "Cf", "Mn", "Mc", "Me", "Zs", "Zl", "Zp"})


def _code(ch: str) -> str:
    return f"U+{ord(ch):04X}"


def unstorable(ch: str) -> bool:
    """A lone surrogate, a non-character (U+FDD0 to U+FDEF, U+xFFFE, U+xFFFF) or U+FFFD (what a
    decoder puts where it could not read the bytes): nothing a person meant to write."""
    cp = ord(ch)
    return (0xD800 <= cp <= 0xDFFF or 0xFDD0 <= cp <= 0xFDEF or (cp & 0xFFFE) == 0xFFFE
            or cp == 0xFFFD)


def storage_problem(value: str) -> str | None:
    """Why this text cannot be stored at all, as words after the field's name; None if it can."""
    for ch in value:
        if unstorable(ch):
            return f"must not contain characters that cannot be stored ({_code(ch)})"
    return None


def text_problem(value: str, *, multiline: bool) -> str | None:
    """Why this text is refused, as words after the field's name, or None. Multi-line text may hold
    newlines and tabs; other control characters are refused everywhere, and one-line text must be
    on one line."""
    problem = storage_problem(value)
    if problem:
        return problem
    for ch in value:
        if unicodedata.category(ch) != "Cc":
            continue
        if multiline and ch in "\n\r\t":
            continue
        if ch in "\n\r":
            return "must be on one line"
        return f"must not contain control characters ({_code(ch)})"
    return None


def is_blank(value: str) -> bool:
    """True when the text shows nothing: only spaces, zero-width and other invisible characters, or
    combining marks with nothing to combine with."""
    return all(unicodedata.category(ch) in _INVISIBLE or ch in _BLANK_LOOKING for ch in value)


def clean_text(value: str, *, multiline: bool) -> str:
    """The text as stored (NFC, ``\\n`` line endings, stripped); ValueError with the reason if refused."""
    value = value.strip()
    problem = text_problem(value, multiline=multiline)
    if problem:
        raise ValueError(problem)
    if multiline:
        value = value.replace("\r\n", "\n").replace("\r", "\n")
    return unicodedata.normalize("NFC", value)


def shown(value: object, limit: int = 40) -> str:
    """A value a person gave, safe to quote in a message: characters that cannot be printed or
    stored are written as code points, and long values are cut."""
    text = str(value)
    out = "".join(_code(ch) if unstorable(ch) or not ch.isprintable() else ch for ch in text[:limit])
    return out + ("…" if len(text) > limit else "")


def date_problem(value: date, *, not_after: date | None = None) -> str | None:
    """Why this date is refused (out of range, or after ``not_after``, usually today), or None."""
    if value.year < MIN_YEAR:
        return TOO_EARLY
    if not_after is not None and value > not_after:
        return DATE_FUTURE
    if value.year > MAX_YEAR:
        return TOO_LATE
    return None


def datetime_problem(value: datetime, *, not_after: datetime | None = None,
                     zone: tzinfo | None = None) -> str | None:
    """As :func:`date_problem` for a moment; its year is judged before any zone conversion (which
    would overflow at year 1 or 9999). A naive value is read in ``zone`` for the comparison."""
    if value.year < MIN_YEAR:
        return TOO_EARLY
    if not_after is not None:
        aware = value if value.tzinfo is not None or zone is None else value.replace(tzinfo=zone)
        if aware > not_after:
            return DATETIME_FUTURE
    if value.year > MAX_YEAR:
        return TOO_LATE
    return None
