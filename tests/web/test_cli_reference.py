"""``reprisals bodies``, ``establishments`` and ``tokens``, run for real against both databases: what
each prints, and for bad input one ``error:`` line per problem, a non-zero exit and nothing written."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from reprisals.accounts import user_for_token
from reprisals.models import Establishment
from tests.conftest import Database
from tests.web.conftest import Cli, World, assert_refused, count_rows

EXAMPLE_CSV = Path(__file__).resolve().parents[2] / "docs" / "examples" / "establishments.csv"
REFERENCE_TABLES = ("bodies", "establishments", "api_tokens", "users")


def write(tmp_path: Path, text: str | bytes, name: str = "in.csv") -> str:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return str(path)


# -- refusals: one database per module, unchanged by each ---------------------------------------------


@pytest.mark.parametrize(("csv", "expected"), [
    pytest.param("name,type,nation,operator\nHMP Fine,prison,england,HMPPS\nHMP Bad,castle,england,\n"
                 "HMP Fine,prison,wales,HMPPS\n",
                 ["error: line 3: type: 'castle' is not a type of establishment",
                  "error: line 3: operator: Enter who runs the establishment",
                  "error: line 4: name: HMP Fine is also on line 2"], id="bad-rows"),
    pytest.param("name,type,nation,operator\nHMP New,prison,england,HMPPS\nHMP THORNBURY FEN,prison,england,HMPPS\n",
                 ["error: line 3: name: an establishment called HMP THORNBURY FEN already exists; add --update to "
                  "change it"], id="exists"),
    pytest.param("name,type,nation,operator\nHMP Caf\u00e9,prison,england,HMPPS\n".encode("cp1252"),
                 ["error: line 2: the file is not UTF-8 text"], id="not-utf-8"),
    pytest.param("name;type;nation;operator\nHMP X;prison;england;HMPPS\n",
                 ["error: line 1: the header row has no name column"], id="semicolons"),
])
def test_establishments_import_reports_every_bad_line_and_imports_nothing_when_the_file_has_problems(
        shared_run: Cli, shared_database: Database, tmp_path: Path, csv: str | bytes, expected: list[str]) -> None:
    before = count_rows(shared_database, REFERENCE_TABLES)

    result = shared_run("establishments", "import", write(tmp_path, csv))

    lines = assert_refused(result, *expected)
    assert len(lines) == len(expected) or expected[0].startswith("error: line 1:")
    assert count_rows(shared_database, REFERENCE_TABLES) == before


def test_establishments_import_refuses_a_file_it_cannot_read(shared_run: Cli, tmp_path: Path) -> None:
    result = shared_run("establishments", "import", str(tmp_path / "missing.csv"))

    assert_refused(result, f"error: cannot read {tmp_path / 'missing.csv'}: No such file or directory")


@pytest.mark.parametrize(("options", "expected"), [
    pytest.param(["--code", "IMB", "--name", "Another IMB"], ["error: code: A body with the code IMB already exists"],
                 id="existing"),
    pytest.param(["--code", "i-m-b", "--name", "Dashes"], ["error: code: Code must be 2 to 8 letters or digits"],
                 id="bad-code"),
    pytest.param(["--code", "X", "--name", ""], ["error: code: Code must be", "error: name: Enter the body's name"],
                 id="two-problems"),
])
def test_bodies_add_refuses_a_bad_or_existing_code_and_adds_nothing(
        shared_run: Cli, shared_database: Database, options: list[str], expected: list[str]) -> None:
    before = count_rows(shared_database, REFERENCE_TABLES)

    lines = assert_refused(shared_run("bodies", "add", *options), *expected)

    assert len(lines) == len(expected)
    assert count_rows(shared_database, REFERENCE_TABLES) == before


def test_tokens_add_refuses_an_unknown_email_and_makes_no_token(shared_run: Cli, shared_database: Database) -> None:
    before = count_rows(shared_database, REFERENCE_TABLES)

    result = shared_run("tokens", "add", "--email", "nobody@example.test", "--name", "script")

    assert_refused(result, "error: no active user has the e-mail address nobody@example.test")
    assert count_rows(shared_database, REFERENCE_TABLES) == before


@pytest.mark.parametrize(("token_id", "expected"), [
    ("999999", "error: there is no API token 999999 (see `reprisals tokens list`)"),
    ("seven", "error: 'seven' is not a token id"),
])
def test_tokens_revoke_refuses_an_unknown_id(shared_run: Cli, shared_database: Database, token_id: str,
                                             expected: str) -> None:
    before = count_rows(shared_database, REFERENCE_TABLES)

    assert_refused(shared_run("tokens", "revoke", token_id), expected)

    assert count_rows(shared_database, REFERENCE_TABLES) == before


def test_establishments_add_lists_every_problem_and_adds_nothing(shared_run: Cli, shared_database: Database) -> None:
    before = count_rows(shared_database, REFERENCE_TABLES)

    result = shared_run("establishments", "add", "--name", "hmp thornbury fen", "--type", "castle", "--nation",
                        "Wales", "--operator", "HMPPS", "--postcode", "X" * 17)

    lines = assert_refused(result, "error: name: An establishment with this name already exists",
                           "error: type: 'castle' is not a type of establishment",
                           "error: postcode: Postcode must be 16 characters or fewer")
    assert len(lines) == 3
    assert count_rows(shared_database, REFERENCE_TABLES) == before


# -- changes ------------------------------------------------------------------------------------------


def test_the_readmes_example_file_imports_and_lists_with_ids(run: Cli, database: Database) -> None:
    result = run("establishments", "import", str(EXAMPLE_CSV), "--json")

    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["added"], out["updated"], out["unchanged"]) == (7, 0, 0)
    assert {e["nation"] for e in out["establishments"]} == {"england", "wales", "scotland", "northern_ireland"}
    listed = run("establishments", "list")
    assert listed.exit_code == 0, listed.output
    ids = dict(database.raw("SELECT name, id FROM establishments"))
    assert re.search(rf"^\s+{ids['HMP Loughmore']}  HMP Loughmore\s+Prison\s+Northern Ireland\s+Northern Ireland "
                     r"Prison Service$", listed.stdout, re.M), listed.stdout


def test_establishments_import_with_update_changes_existing_rows_and_reads_standard_input(
        run: Cli, world: World, database: Database) -> None:
    csv = ("name,type,nation,operator,address_line_1,postcode,head_of_establishment_title\n"
           "HMP Thornbury Fen,prison,england,HMPPS,1 Fen Road,TF1 2AB,Governor\n"
           "HMP Added,Prison,Scotland,SPS,,,\n")

    refused = run("establishments", "import", "-", input=csv)
    assert_refused(refused, "error: line 2: name: an establishment called HMP Thornbury Fen already exists")
    updated = run("establishments", "import", "-", "--update", input=csv)

    assert updated.exit_code == 0, updated.output
    assert updated.stdout == "imported -: 1 added, 1 updated, 0 unchanged\n"
    with database.session() as s:
        row = s.get(Establishment, world.establishment_id)
        assert row is not None
        assert (row.address_line_1, row.postcode, row.head_of_establishment_title, row.town) == (
            "1 Fen Road", "TF1 2AB", "Governor", None)
        assert s.scalar(sa.select(sa.func.count()).select_from(Establishment)) == 2


def test_bodies_add_makes_a_body_users_can_belong_to(run: Cli, database: Database) -> None:
    added = run("bodies", "add", "--code", "npm", "--name", "NPM Secretariat")
    assert added.exit_code == 0, added.output
    assert added.stdout == "body NPM added: NPM Secretariat\n"

    user = run("users", "add", "--email", "sec@example.test", "--name", "Sec", "--role", "auditor", "--body", "NPM",
               "--password-stdin", input="correct horse battery staple\n")

    assert user.exit_code == 0, user.output
    assert [b["code"] for b in json.loads(run("bodies", "list", "--json").stdout)] == [
        "HMIP", "IMB", "LO", "NPM", "PPO"]


def test_a_token_from_the_command_works_until_it_is_revoked_and_its_secret_is_printed_once(
        run: Cli, world: World, database: Database) -> None:
    made = run("tokens", "add", "--email", world.staff.upper(), "--name", "nightly export")
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip()
    assert made.stdout == secret + "\n" and "cannot be shown again" in made.stderr
    with database.session() as s:
        assert user_for_token(s, secret, datetime.now(UTC)) is not None
        token_id = s.execute(sa.text("SELECT id FROM api_tokens")).scalar_one()

    listed = run("tokens", "list", "--email", world.staff, "--json")
    assert [(t["id"], t["name"], t["revoked_at"]) for t in json.loads(listed.stdout)] == [
        (token_id, "nightly export", None)]
    assert secret not in listed.stdout and secret not in run("tokens", "list").stdout

    revoked = run("tokens", "revoke", str(token_id))
    assert revoked.exit_code == 0, revoked.output
    assert revoked.stdout == f"API token {token_id} (nightly export) of {world.staff} is revoked\n"
    with database.session() as s:
        assert user_for_token(s, secret, datetime.now(UTC)) is None
    again = run("tokens", "revoke", str(token_id))
    assert again.exit_code == 0 and "was already revoked on" in again.stdout
