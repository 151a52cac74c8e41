"""Go-live on an empty install, as a new body would do it: from an empty database to its first case
through the ``reprisals`` command and the API only — no demo data, no factories, no direct writes.

The steps are the README's "Going live" section; the first CSV is the example the README shows
(``docs/examples/establishments.csv``), saved by Excel with a byte-order mark.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from reprisals.config import load_settings
from reprisals.runtime import Runtime
from tests.conftest import EmptyDatabase
from tests.web.conftest import Cli, base_env
from web.app import create_app
from workflow.db import create_db_engine

EXAMPLE_CSV = Path(__file__).resolve().parents[2] / "docs" / "examples" / "establishments.csv"
PASSWORD = "a long enough pass phrase"

# Labels instead of codes, in the case a person types them, with Windows line ends: all four nations.
LABELS_CSV = (
    "Name,Type,Nation,Operator,Town,Head of establishment title\r\n"
    "HMP Ravensmoor,Prison,England,HMPPS,Ravensmoor,Governor\r\n"
    "Tŷ Afon Secure Training Centre,Secure training centre,WALES,Youth Custody Service,Afon,Director\r\n"
    "Dunmarra Police Custody Suite,police custody,Scotland,Police Scotland,Dunmarra,Custody Inspector\r\n"
    "Ballyvere Court Custody,Court Custody,northern ireland,NI Courts and Tribunals Service,Ballyvere,Manager\r\n"
)

USERS = [  # (e-mail, role, body)
    ("lead@imb.example", "lead", "IMB"),
    ("staff@imb.example", "staff", "IMB"),
    ("auditor@imb.example", "auditor", "IMB"),
    ("lead@hmip.example", "lead", "HMIP"),
    ("admin@ops.example", "admin", None),
]


def test_a_body_goes_from_an_empty_database_to_its_first_case_with_the_command_and_the_api(
        empty_db: EmptyDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = base_env(empty_db.url, tmp_path)
    run = Cli(env)

    def ok(*args: str, input: str | bytes | None = None) -> str:
        result = run(*args, input=input)
        assert result.exit_code == 0, (args, result.output)
        return result.stdout

    assert "database at revision" in ok("db", "upgrade")

    bodies = json.loads(ok("bodies", "list", "--json"))
    assert [b["code"] for b in bodies] == ["HMIP", "IMB", "LO", "PPO"]

    for email, role, body in USERS:
        ok("users", "add", "--email", email, "--name", f"{role.title()} {body or 'Ops'}", "--role", role,
           *(("--body", body) if body else ()), "--password-stdin", input=PASSWORD + "\n")

    with_bom = tmp_path / "excel.csv"
    with_bom.write_bytes(b"\xef\xbb\xbf" + EXAMPLE_CSV.read_bytes())
    labels = tmp_path / "labels.csv"
    labels.write_bytes(LABELS_CSV.encode("utf-8"))
    assert ok("establishments", "import", str(with_bom)).endswith(": 7 added, 0 updated, 0 unchanged\n")
    assert ok("establishments", "import", str(labels)).endswith(": 4 added, 0 updated, 0 unchanged\n")

    listed = {e["name"]: e for e in json.loads(ok("establishments", "list", "--json"))}
    assert len(listed) == 11
    assert {e["nation"] for e in listed.values()} == {"england", "wales", "scotland", "northern_ireland"}
    assert listed["HMP Thornbury Fen"]["name"] == "HMP Thornbury Fen"  # the byte-order mark is not in the name
    assert listed["HMP Thornbury Fen"]["head_of_establishment_title"] == "Governor"
    assert (listed["Tŷ Afon Secure Training Centre"]["type"], listed["Tŷ Afon Secure Training Centre"]["nation"]) == (
        "secure_training_centre", "wales")
    assert listed["Ballyvere Court Custody"]["nation"] == "northern_ireland"

    token = ok("tokens", "add", "--email", "lead@imb.example", "--name", "first case").strip()
    assert token.startswith("rpr_") and "\n" not in token
    assert [t["email"] for t in json.loads(ok("tokens", "list", "--json"))] == ["lead@imb.example"]

    rt = Runtime.from_settings(load_settings(env, dotenv=None))
    try:
        client = create_app(runtime=rt, testing=True).test_client()
        auth = {"Authorization": f"Bearer {token}"}

        establishments = client.get("/api/establishments", headers=auth)
        assert establishments.status_code == 200, establishments.get_data(as_text=True)
        by_name = {e["name"]: e for e in establishments.get_json()["items"]}
        assert {n: by_name[n]["id"] for n in listed} == {n: e["id"] for n, e in listed.items()}
        yoi = by_name["HMYOI Cwm Dulais"]
        assert (yoi["type"], yoi["nation"], yoi["operator"], yoi["active"]) == (
            "young_offender_institution", "wales", "HMPPS", True)

        created = client.post("/api/cases", headers=auth, json={
            "establishment_id": yoi["id"], "received_at": "2025-08-22T15:00:00+01:00", "channel": "imb_application",
            "age_group": "child", "sanction_types": ["verbal_abuse_or_threats"], "risk": "urgent",
            "description": "Threatened after speaking to the board.", "detainee_name": "A Person",
            "party_bodies": ["HMIP"]})
        assert created.status_code == 201, created.get_data(as_text=True)
        reference = created.get_json()["reference"]

        shown = client.get(f"/api/cases/{reference}", headers=auth)
        assert shown.status_code == 200, shown.get_data(as_text=True)
        case = shown.get_json()
        assert (case["stage"], case["owning_body"], case["parties"], case["establishment"]["name"]) == (
            "reported", "IMB", ["HMIP"], "HMYOI Cwm Dulais")
        assert case["history_verified"] is True
    finally:
        rt.close()

    engine = create_db_engine(empty_db.url)
    try:
        with engine.connect() as conn:
            count = {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
                     for t in ("bodies", "users", "establishments", "cases", "api_tokens")}
    finally:
        engine.dispose()
    assert count == {"bodies": 4, "users": len(USERS), "establishments": 11, "cases": 1, "api_tokens": 1}
    assert "history verified: 1 cases" in ok("audit", "verify")
