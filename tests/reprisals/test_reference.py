"""Reference data: the protocol's bodies in every database, adding bodies, and importing
establishments from CSV — every bad line reported with its number, and all or nothing."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from reprisals import reference
from reprisals.errors import InvalidInput, NotAllowed
from reprisals.models import Body, Establishment, EstablishmentType, Nation
from reprisals.reference import ImportRefused, import_establishments, parse_establishments_csv
from tests.conftest import Database
from tests.factories import make_user
from tests.reprisals.conftest import Cast

HEADER = "name,type,nation,operator\n"


def problems(data: bytes | str) -> list[str]:
    with pytest.raises(ImportRefused) as refused:
        parse_establishments_csv(data.encode() if isinstance(data, str) else data)
    return [p.text() for p in refused.value.problems]


# -- parsing (no database) --------------------------------------------------------------------------


def test_codes_labels_and_a_byte_order_mark_all_read_the_same_when_the_file_is_excels() -> None:
    codes = HEADER + "HMYOI Cwm Dulais,young_offender_institution,wales,HMPPS\n"
    labels = ("Name,Type,Nation,Operator,Address line 1,Head of establishment title\r\n"
              "  HMYOI  Cwm Dulais ,YOUNG OFFENDER INSTITUTION,Wales,HMPPS,Heol y Cwm,Governor\r\n")

    [from_codes] = parse_establishments_csv(b"\xef\xbb\xbf" + codes.encode())
    [from_labels] = parse_establishments_csv(labels.encode())

    expected = {"name": "HMYOI Cwm Dulais", "type": EstablishmentType.YOUNG_OFFENDER_INSTITUTION,
                "nation": Nation.WALES, "operator": "HMPPS"}
    assert from_codes.values == expected
    assert from_labels.values == {**expected, "address_line_1": "Heol y Cwm", "head_of_establishment_title": "Governor"}


@pytest.mark.parametrize(("text", "kind"), [
    ("Short-term holding facility", EstablishmentType.SHORT_TERM_HOLDING_FACILITY),
    ("short_term_holding_facility", EstablishmentType.SHORT_TERM_HOLDING_FACILITY),
    ("Escort (PECS)", EstablishmentType.ESCORT), ("escort", EstablishmentType.ESCORT),
    ("Northern Ireland", Nation.NORTHERN_IRELAND), ("NORTHERN_IRELAND", Nation.NORTHERN_IRELAND),
    ("northern-ireland", Nation.NORTHERN_IRELAND),
])
def test_a_type_or_nation_is_read_from_its_code_or_its_label_in_any_case(
        text: str, kind: EstablishmentType | Nation) -> None:
    parse = reference.parse_nation if isinstance(kind, Nation) else reference.parse_type
    assert parse(text) is kind


def test_every_bad_row_is_reported_with_its_line_when_a_file_has_several() -> None:
    data = (HEADER                                            # 1
            + "HMP Good,prison,england,HMPPS\n"               # 2
            + ",castle,Englnd,\n"                             # 3: four problems
            + "hmp good,prison,wales,HMPPS\n"                 # 4: the name of line 2 again
            + "\n"                                            # 5: blank, skipped
            + '"HMP Two\nLines",prison,scotland,SPS\n'        # 6-7: one record; fine
            + "HMP Wide,prison,scotland,SPS,extra\n"          # 8: a value too many
            + f"{'x' * 201},prison,england,HMPPS\n")          # 9: too long

    assert problems(data) == [
        "line 3: name: Enter the establishment's name",
        "line 3: type: 'castle' is not a type of establishment: use one of Prison, Young offender institution, "
        "Secure training centre, Immigration removal centre, Short-term holding facility, Court custody, "
        "Escort (PECS), Police custody (or its code, such as young_offender_institution)",
        "line 3: nation: 'Englnd' is not a nation: use England, Wales, Scotland or Northern Ireland (or its code, "
        "such as northern_ireland)",
        "line 3: operator: Enter who runs the establishment",
        "line 4: name: hmp good is also on line 2",
        "line 8: has 5 values but the header row has 4 columns",
        "line 9: name: Name must be 200 characters or fewer",
    ]


@pytest.mark.parametrize(("data", "expected"), [
    (b"", ["the file is empty: it needs a header row (name,type,nation,operator\u2026) and a row for each "
           "establishment"]),
    (HEADER.encode(), ["the file has a header row but no establishments"]),
    (b"name,kind,nation\nHMP X,prison,england\n", [
        "line 1: the header row has no type column", "line 1: the header row has no operator column",
        "line 1: 'kind' is not a column: use name, type, nation, operator, address_line_1, address_line_2, "
        "address_line_3, town, postcode, head_of_establishment_title"]),
    (b"name,type,nation,operator,Name\n", ["line 1: the header row has the name column twice"]),
    (HEADER.encode() + "HMP Caf\u00e9,prison,england,HMPPS\n".encode("latin-1"), [
        'line 2: the file is not UTF-8 text: save it as "CSV UTF-8" (Excel: Save as, then CSV UTF-8) and try again']),
    (HEADER.encode() + b"HMP X\x00,prison,england,HMPPS\n", [
        "line 2: the file contains a NUL character: it is not a CSV text file"]),
    (HEADER.encode() + b'"HMP X"y,prison,england,HMPPS\n', [
        "line 2: the CSV is malformed here (',' expected after '\"'); check its quotes"]),
], ids=["empty", "header only", "columns", "twice", "latin-1", "nul", "quotes"])
def test_a_file_that_is_not_a_table_of_establishments_is_refused_saying_why(data: bytes, expected: list[str]) -> None:
    assert problems(data) == expected


# -- importing ----------------------------------------------------------------------------------------


def _names(session: Session) -> list[str]:
    return list(session.scalars(sa.select(Establishment.name).order_by(Establishment.name)))


def test_nothing_is_imported_when_one_row_is_bad(session: Session, cast: Cast) -> None:
    before = _names(session)
    data = (HEADER + "HMP New One,prison,england,HMPPS\nHMP New Two,prison,atlantis,HMPPS\n").encode()

    with pytest.raises(ImportRefused) as refused:
        import_establishments(session, cast.admin, data)

    assert [p.line for p in refused.value.problems] == [3]
    assert _names(session) == before


def test_a_name_that_exists_is_refused_unless_the_import_updates_and_then_it_is_updated(
        session: Session, cast: Cast) -> None:
    existing = cast.establishment.id  # HMP Thornbury Fen, England, HMPPS, active
    data = (b"name,type,nation,operator,town,head_of_establishment_title\n"
            b"hmp thornbury fen,prison,wales,Sodexo,Thornbury,Governor\n"
            b"HMP Brand New,prison,scotland,SPS,,\n")

    with pytest.raises(ImportRefused) as refused:
        import_establishments(session, cast.admin, data)
    assert [(p.line, p.column, p.exists) for p in refused.value.problems] == [(2, "name", True)]
    assert "HMP Brand New" not in _names(session)

    result = import_establishments(session, cast.admin, data, update=True)
    assert (result.added, result.updated, result.unchanged) == (1, 1, 0)
    row = session.get(Establishment, existing)
    assert row is not None
    assert (row.name, row.nation, row.operator, row.town, row.head_of_establishment_title, row.active) == (
        "hmp thornbury fen", Nation.WALES, "Sodexo", "Thornbury", "Governor", True)
    again = import_establishments(session, cast.admin, data, update=True)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 2)


def test_only_an_admin_or_the_operator_imports_and_progress_is_reported(session: Session, cast: Cast) -> None:
    data = (HEADER + "HMP A,prison,england,HMPPS\nHMP B,prison,england,HMPPS\n").encode()
    with pytest.raises(NotAllowed):
        import_establishments(session, cast.lead, data)
    seen: list[tuple[int, int]] = []

    import_establishments(session, None, data, progress=lambda done, total: seen.append((done, total)))

    assert seen == [(1, 2), (2, 2)]


# -- bodies -------------------------------------------------------------------------------------------


def test_every_database_has_the_four_protocol_bodies_and_seeding_again_adds_none(session: Session) -> None:
    assert [(b.code, b.name) for b in reference.list_bodies(session)] == sorted(reference.PROTOCOL_BODIES)
    assert reference.seed_protocol_bodies(session) == 0


@pytest.mark.parametrize(("data", "errors"), [
    ({"code": "", "name": ""}, {"code": "Enter the body's code, such as IMB", "name": "Enter the body's name"}),
    ({"code": "imb", "name": "Another"}, {"code": "A body with the code IMB already exists"}),
    ({"code": "1AB", "name": "Digits"}, {"code": "Code must be 2 to 8 letters or digits and start with a letter, "
                                                 "such as IMB"}),
    ({"code": "TOOLONGXX", "name": "Long"}, {"code": "Code must be 2 to 8 letters or digits and start with a "
                                                     "letter, such as IMB"}),
    ({"code": "NEW", "name": "lay observers"}, {"name": "A body with this name already exists"}),
])
def test_a_bad_or_existing_body_is_refused_and_nothing_is_added(
        database: Database, data: dict[str, str], errors: dict[str, str]) -> None:
    with database.session() as s:
        with pytest.raises(InvalidInput) as refused:
            reference.add_body(s, None, data)
        assert refused.value.errors == errors
        s.rollback()
        assert s.scalar(sa.select(sa.func.count()).select_from(Body)) == 4


def test_a_new_body_is_added_by_an_admin_only(session: Session) -> None:
    admin, lead = make_user(session, role=reference.Role.ADMIN), make_user(session, role=reference.Role.LEAD)
    with pytest.raises(NotAllowed):
        reference.add_body(session, lead, {"code": "NPM", "name": "NPM secretariat"})

    body = reference.add_body(session, admin, {"code": " npm ", "name": "  NPM   secretariat "})

    assert (body.code, body.name) == ("NPM", "NPM secretariat")
