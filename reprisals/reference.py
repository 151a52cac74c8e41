"""Reference data an install needs before its first case: the bodies and the establishments.

* The four bodies of the sanctions protocol (:data:`PROTOCOL_BODIES`) are in every database: migration
  0010 inserts them, and so does :func:`reprisals.schema.create_all`. Other bodies can be added.
* Establishments are added one at a time or imported from a CSV file (:func:`import_establishments`):
  a header row naming the columns, then one establishment a line; UTF-8 with or without a byte-order
  mark (Excel's "CSV UTF-8"); type and nation as codes (``young_offender_institution``) or their
  labels (``Young offender institution``), in any case. Every problem of the file is reported with
  its line number, and nothing is imported if there is one. A name that exists already is refused
  unless the import updates.

The operations flush and never commit. ``actor`` is the signed-in administrator, or ``None`` for the
operator at the command line (who holds the database's credentials anyway).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from reprisals.errors import InvalidInput, NotAllowed
from reprisals.models import Body, Establishment, EstablishmentType, Nation, Role, User
from reprisals.vocabulary import NATION_LABELS

PROTOCOL_BODIES: tuple[tuple[str, str], ...] = (
    ("HMIP", "HM Inspectorate of Prisons"),
    ("IMB", "Independent Monitoring Boards"),
    ("PPO", "Prisons and Probation Ombudsman"),
    ("LO", "Lay Observers"),
)

TYPE_LABELS: dict[EstablishmentType, str] = {
    EstablishmentType.PRISON: "Prison",
    EstablishmentType.YOUNG_OFFENDER_INSTITUTION: "Young offender institution",
    EstablishmentType.SECURE_TRAINING_CENTRE: "Secure training centre",
    EstablishmentType.IMMIGRATION_REMOVAL_CENTRE: "Immigration removal centre",
    EstablishmentType.SHORT_TERM_HOLDING_FACILITY: "Short-term holding facility",
    EstablishmentType.COURT_CUSTODY: "Court custody",
    EstablishmentType.ESCORT: "Escort (PECS)",
    EstablishmentType.POLICE_CUSTODY: "Police custody",
}

REQUIRED_COLUMNS = ("name", "type", "nation", "operator")
OPTIONAL_COLUMNS = ("address_line_1", "address_line_2", "address_line_3", "town", "postcode",
                    "head_of_establishment_title")
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
LENGTHS = {"name": 200, "operator": 200, "address_line_1": 200, "address_line_2": 200, "address_line_3": 200,
           "town": 100, "postcode": 16, "head_of_establishment_title": 100}
CAPTIONS = {"name": "Name", "operator": "Operator", "address_line_1": "Address line 1",
            "address_line_2": "Address line 2", "address_line_3": "Address line 3", "town": "Town or city",
            "postcode": "Postcode", "head_of_establishment_title": "Title of the head of establishment"}

BODY_CODE = re.compile(r"^[A-Z][A-Z0-9]{1,7}$")
Progress = Callable[[int, int], None]


def _require_admin(actor: User | None) -> None:
    if actor is not None and (actor.role is not Role.ADMIN or not actor.active):
        raise NotAllowed("only an administrator can do this")


def _key(text: str) -> str:
    """``Short-term holding facility``, ``short_term_holding_facility`` → ``short term holding facility``."""
    return " ".join(re.sub(r"[-_]", " ", text).split()).casefold()


_TYPES = {_key(t.value): t for t in EstablishmentType} | {_key(label): t for t, label in TYPE_LABELS.items()}
_NATIONS = {_key(n.value): n for n in Nation} | {_key(label): n for n, label in NATION_LABELS.items()}


def parse_type(text: str) -> EstablishmentType | None:
    return _TYPES.get(_key(text))


def parse_nation(text: str) -> Nation | None:
    return _NATIONS.get(_key(text))


# -- bodies -----------------------------------------------------------------------------------------


def seed_protocol_bodies(session: Session) -> int:
    """Insert those of the four protocol bodies that are missing; returns how many were added."""
    present = set(session.scalars(select(Body.code)))
    missing = [Body(code=code, name=name) for code, name in PROTOCOL_BODIES if code not in present]
    session.add_all(missing)
    session.flush()
    return len(missing)


def list_bodies(session: Session) -> list[Body]:
    return list(session.scalars(select(Body).order_by(Body.code)))


def add_body(session: Session, actor: User | None, data: Mapping[str, Any]) -> Body:
    """A new body (``code``, ``name``). Refuses a malformed or existing code and an existing name."""
    _require_admin(actor)
    errors: dict[str, str] = {}
    code = str(data.get("code") or "").strip().upper()
    name = " ".join(str(data.get("name") or "").split())
    if not code:
        errors["code"] = "Enter the body's code, such as IMB"
    elif not BODY_CODE.match(code):
        errors["code"] = "Code must be 2 to 8 letters or digits and start with a letter, such as IMB"
    elif session.get(Body, code) is not None:
        errors["code"] = f"A body with the code {code} already exists"
    if not name:
        errors["name"] = "Enter the body's name"
    elif len(name) > 200:
        errors["name"] = "Name must be 200 characters or fewer"
    elif session.scalar(select(func.count()).select_from(Body).where(func.lower(Body.name) == name.lower())):
        errors["name"] = "A body with this name already exists"
    if errors:
        raise InvalidInput(errors)
    body = Body(code=code, name=name)
    session.add(body)
    session.flush()
    return body


# -- establishments ---------------------------------------------------------------------------------


def list_establishments(session: Session) -> list[Establishment]:
    return list(session.scalars(select(Establishment).order_by(Establishment.name, Establishment.id)))


def establishment_values(data: Mapping[str, Any], *, from_form: bool = False) -> tuple[dict[str, Any], dict[str, str]]:
    """The values of one establishment and the problem with each bad one (no database reads).

    ``data`` holds text (a form, a CSV row, command options); absent optional fields are left out
    of the values, empty ones become ``None``. ``from_form``: type and nation come from a list, so a
    missing one reads "Select …" rather than "Enter …"."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name in ("name", "operator", *OPTIONAL_COLUMNS):
        if name not in data:
            continue
        text = " ".join(str(data.get(name) or "").split())
        if "\x00" in text:
            errors[name] = f"{CAPTIONS[name]} must not contain NUL characters"
        elif len(text) > LENGTHS[name]:
            errors[name] = f"{CAPTIONS[name]} must be {LENGTHS[name]} characters or fewer"
        values[name] = text or None
    if not values.get("name") and "name" not in errors:
        errors["name"] = "Enter the establishment's name"
    if not values.get("operator") and "operator" not in errors:
        errors["operator"] = "Enter who runs the establishment"
    verb = "Select" if from_form else "Enter"
    type_text = str(data.get("type") or "").strip()
    if not type_text:
        errors["type"] = f"{verb} the type of establishment"
    elif (kind := parse_type(type_text)) is None:
        errors["type"] = (f"'{type_text[:60]}' is not a type of establishment: use one of "
                          + ", ".join(TYPE_LABELS.values()) + " (or its code, such as young_offender_institution)")
    else:
        values["type"] = kind
    nation_text = str(data.get("nation") or "").strip()
    if not nation_text:
        errors["nation"] = f"{verb} the nation"
    elif (nation := parse_nation(nation_text)) is None:
        errors["nation"] = (f"'{nation_text[:60]}' is not a nation: use England, Wales, Scotland or Northern "
                            "Ireland (or its code, such as northern_ireland)")
    else:
        values["nation"] = nation
    return values, errors


def _name_taken(session: Session, name: str, current: Establishment | None) -> bool:
    clash = session.scalars(select(Establishment.id).where(func.lower(Establishment.name) == name.lower())).first()
    return clash is not None and (current is None or clash != current.id)


def establishment_fields(session: Session, data: Mapping[str, Any], current: Establishment | None, *,
                         from_form: bool = False) -> dict[str, Any]:
    """Checked values for a new establishment or ``current``; :class:`InvalidInput` lists every problem."""
    values, errors = establishment_values(data, from_form=from_form)
    if "name" not in errors and _name_taken(session, values["name"], current):
        errors["name"] = "An establishment with this name already exists"
    if errors:
        raise InvalidInput(errors)
    return values


def add_establishment(session: Session, actor: User | None, data: Mapping[str, Any]) -> Establishment:
    """One establishment from text values (name, type, nation, operator and the optional columns)."""
    _require_admin(actor)
    row = Establishment(active=True, **establishment_fields(session, data, None))
    session.add(row)
    session.flush()
    return row


# -- CSV import -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowProblem:
    """One problem of an import file: its line (``None``: the whole file), column and message."""

    line: int | None
    column: str | None
    message: str
    exists: bool = False  # the name is an establishment already (fixed by importing with update)

    def text(self) -> str:
        where = [f"line {self.line}"] if self.line is not None else []
        where += [self.column] if self.column else []
        return ": ".join([*where, self.message])


class ImportRefused(InvalidInput):
    """The file has problems; nothing was imported. ``problems`` in file order."""

    def __init__(self, problems: list[RowProblem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.line or 0, COLUMNS.index(p.column)
                                                        if p.column in COLUMNS else -1))
        super().__init__({f"problem {i + 1}": p.text() for i, p in enumerate(self.problems)})


@dataclass(frozen=True)
class CsvRow:
    line: int
    values: dict[str, Any]


@dataclass
class ImportResult:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    names: list[str] = field(default_factory=list)


def _header_name(text: str) -> str:
    """``Address line 1`` and ``address_line_1`` name the same column."""
    return re.sub(r"\s+", "_", text.strip().casefold())


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ImportRefused([RowProblem(line, None, "the file is not UTF-8 text: save it as \"CSV UTF-8\" "
                                                    "(Excel: Save as, then CSV UTF-8) and try again")]) from None


def parse_establishments_csv(data: bytes) -> list[CsvRow]:
    """Every row of the file as establishment values, or :class:`ImportRefused` with every problem
    (no database reads: names already taken are the import's check)."""
    rows, problems = _parse(data)
    if problems:
        raise ImportRefused(problems)
    return rows


def _parse(data: bytes) -> tuple[list[CsvRow], list[RowProblem]]:
    """The good rows and every problem. Rows with problems are left out."""
    text = _decode(data)
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        return [], [RowProblem(line, None, "the file contains a NUL character: it is not a CSV text file")]
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    problems: list[RowProblem] = []
    rows: list[CsvRow] = []
    header: list[str] | None = None
    first_of: dict[str, int] = {}
    next_line = 1
    try:
        for record in reader:
            line, next_line = next_line, reader.line_num + 1
            if not any(cell.strip() for cell in record):
                continue  # blank lines, and lines of commas only, are skipped
            if header is None:
                header = [_header_name(cell) for cell in record]
                problems += _header_problems(header, line)
                if problems:
                    break
                continue
            if len(record) > len(header):
                problems.append(RowProblem(line, None, f"has {len(record)} values but the header row has "
                                                       f"{len(header)} columns"))
                continue
            cells = dict(zip(header, record, strict=False))
            values, errors = establishment_values({c: cells.get(c, "") for c in header})
            problems += [RowProblem(line, column, message) for column, message in errors.items()]
            name = values.get("name")
            if name and "name" not in errors:
                earlier = first_of.setdefault(name.casefold(), line)
                if earlier != line:
                    problems.append(RowProblem(line, "name", f"{name} is also on line {earlier}"))
                    continue
            if not errors:
                rows.append(CsvRow(line, values))
    except csv.Error as exc:
        problems.append(RowProblem(reader.line_num or next_line, None, f"the CSV is malformed here ({exc}); check "
                                                                       "its quotes"))
    if header is None:
        problems.append(RowProblem(None, None, "the file is empty: it needs a header row (name,type,nation,"
                                               "operator…) and a row for each establishment"))
    elif not rows and not problems:
        problems.append(RowProblem(None, None, "the file has a header row but no establishments"))
    return rows, problems


def _header_problems(header: list[str], line: int) -> list[RowProblem]:
    problems = [RowProblem(line, None, f"the header row has no {c} column") for c in REQUIRED_COLUMNS
                if c not in header]
    seen: set[str] = set()
    for name in header:
        if not name:
            problems.append(RowProblem(line, None, "the header row has a column without a name"))
        elif name not in COLUMNS:
            problems.append(RowProblem(line, None, f"'{name[:60]}' is not a column: use {', '.join(COLUMNS)}"))
        elif name in seen:
            problems.append(RowProblem(line, None, f"the header row has the {name} column twice"))
        seen.add(name)
    return problems


def import_establishments(session: Session, actor: User | None, data: bytes, *, update: bool = False,
                          progress: Progress | None = None) -> ImportResult:
    """Add every establishment of a CSV file, or none. With ``update``, a row whose name is an
    establishment already (in any case) sets that establishment's values — the columns the file has;
    an empty cell empties an optional field — and an establishment keeps its id and whether it is
    active; without, such a row is a problem. :class:`ImportRefused` lists every problem, and then
    nothing has been written. ``progress(done, total)`` is called as rows are written."""
    _require_admin(actor)
    rows, problems = _parse(data)
    existing = {e.name.casefold(): e for e in session.scalars(select(Establishment))}
    problems += [RowProblem(r.line, "name", f"an establishment called {r.values['name']} already exists",
                            exists=True)
                 for r in rows if not update and r.values["name"].casefold() in existing]
    if problems:
        raise ImportRefused(problems)
    result = ImportResult()
    total = len(rows)
    for done, row in enumerate(rows, start=1):
        current = existing.get(row.values["name"].casefold())
        if current is None:
            session.add(Establishment(active=True, **row.values))
            result.added += 1
        else:
            changed = {k: v for k, v in row.values.items() if getattr(current, k) != v}
            for key, value in changed.items():
                setattr(current, key, value)
            if changed:
                result.updated += 1
            else:
                result.unchanged += 1
        result.names.append(row.values["name"])
        if progress is not None:
            progress(done, total)
    session.flush()
    return result
