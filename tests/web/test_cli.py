"""The ``reprisals`` command, run for real (in-process with CliRunner, and once as the installed
script in a subprocess) against a real database: outputs, exit codes, one ``error:`` line per
problem, no tracebacks, and nothing written when a command is refused."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

import migrations
from reprisals import access_log
from reprisals.access_log import AccessEntry
from reprisals.crypto import Cipher
from reprisals.demo import CASES, DEMO_PASSWORD, USERS
from reprisals.errors import IdentityUnreadable
from reprisals.models import Case, Detainee, Role, User
from reprisals.passwords import verify_password
from reprisals.sealing import Keyring
from reprisals.services import read_description
from tests.conftest import Database, EmptyDatabase
from tests.factories import (
    CANARY_DESCRIPTION,
    CANARY_DOB,
    CANARY_NAME,
    CANARY_NUMBER,
    TEST_KEY,
    case_data,
)
from tests.web.conftest import (
    Cli,
    World,
    assert_refused,
    base_env,
    case_state,
    clean_environ,
    count_rows,
)
from workflow.history import event_hash
from workflow.models import HistoryEvent

CANARIES = (CANARY_NAME, CANARY_NUMBER, CANARY_DOB, CANARY_DESCRIPTION)
BUNDLED_SPEC = Path(__file__).resolve().parents[2] / "reprisals" / "protocols" / "sanctions-v1.yaml"
REPRISALS_BIN = Path(sys.executable).with_name("reprisals")


def london_year() -> int:
    return datetime.now(ZoneInfo("Europe/London")).year


def assert_no_identity(text: str) -> None:
    for canary in CANARIES:
        assert canary not in text
    assert "Canarywhistle" not in text


# -- db upgrade -----------------------------------------------------------------------------------


def test_db_upgrade_creates_the_schema_at_head_when_database_is_empty(
        empty_db: EmptyDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    run = Cli(base_env(empty_db.url, tmp_path))
    (head,) = migrations.heads()

    first = run("db", "upgrade")
    assert first.exit_code == 0, first.output
    assert f"database at revision {head}" in first.stdout
    assert migrations.current(empty_db.url) == head

    again = run("db", "upgrade")  # idempotent: nothing to do the second time
    assert again.exit_code == 0, again.output
    loaded = run("demo")
    assert loaded.exit_code == 0, loaded.output
    verified = run("audit", "verify")
    assert verified.exit_code == 0, verified.output


def test_installed_command_upgrades_loads_demo_and_refuses_bad_input_cleanly_when_run_as_a_process(
        tmp_path: Path) -> None:
    assert REPRISALS_BIN.is_file(), f"{REPRISALS_BIN} is not installed (pip install -e .)"
    env = {**clean_environ(), "REPRISALS_INSTANCE_PATH": str(tmp_path / "instance"), "REPRISALS_LOG_LEVEL": "WARNING"}

    def reprisals(*args: str, stdin: str = "", **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(REPRISALS_BIN), *args], input=stdin, capture_output=True, text=True,
                              env={**env, **extra}, cwd=tmp_path, timeout=60, check=False)

    upgraded = reprisals("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert (tmp_path / "instance" / "reprisals.db").is_file()  # the default: SQLite in the instance folder

    demo = reprisals("demo", "--if-empty")
    assert demo.returncode == 0, demo.stderr
    assert DEMO_PASSWORD in demo.stdout
    assert "warning: REPRISALS_ENCRYPTION_KEYS is not set" in demo.stderr  # development keys, said loudly

    bad = reprisals("case", "open", "--as", "lead.imb@demo.test", stdin="{not json")
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: the input is not valid JSON")
    assert "Traceback" not in bad.stderr

    misconfigured = reprisals("audit", "verify", REPRISALS_SCHEDULER_INTERVAL="soon")
    assert misconfigured.returncode == 2
    assert misconfigured.stderr.splitlines() == [
        "error: configuration: REPRISALS_SCHEDULER_INTERVAL: 'soon' is not a number of seconds between 0.1 and 3600"]


def test_commands_exit_3_saying_to_upgrade_when_database_has_no_schema(run_without_database: Cli) -> None:
    result = run_without_database("audit", "verify")

    lines = assert_refused(result, "error: the database cannot be used: no such table", code=3)
    assert lines[0].endswith("has `reprisals db upgrade` been run?)")


# -- demo -----------------------------------------------------------------------------------------


def test_demo_loads_users_and_cases_and_prints_sign_in_details_when_database_is_empty(
        run: Cli, database: Database) -> None:
    result = run("demo")

    assert result.exit_code == 0, result.output
    assert f"password: {DEMO_PASSWORD}" in result.stdout
    for email, _name, role, _body in USERS:
        assert re.search(rf"^\s+{re.escape(email)}\s+{role.value}\b", result.stdout, re.M), email
    counts = count_rows(database)
    assert counts["users"] == len(USERS)
    assert counts["cases"] == len(CASES)
    stages = sorted(r.stage for r in database.raw("SELECT stage FROM wf_instances"))
    assert stages == sorted(c[5] for c in CASES)
    with database.session() as s:
        lead = s.scalars(sa.select(User).where(User.email == "lead.imb@demo.test")).one()
        assert verify_password(lead.password_hash, DEMO_PASSWORD)
    assert run("audit", "verify").exit_code == 0


def test_demo_refuses_and_loads_nothing_more_when_database_already_has_data(run: Cli, database: Database) -> None:
    assert run("demo").exit_code == 0
    before = count_rows(database)

    result = run("demo")

    assert_refused(result, "error: the database already has data")
    assert count_rows(database) == before


def test_demo_succeeds_without_loading_when_if_empty_and_database_has_data(run: Cli, database: Database) -> None:
    assert run("demo").exit_code == 0
    before = count_rows(database)

    result = run("demo", "--if-empty")

    assert result.exit_code == 0, result.output
    assert "nothing loaded" in result.stdout
    assert count_rows(database) == before


# -- case open ------------------------------------------------------------------------------------


def test_case_open_creates_case_with_next_yearly_reference_when_file_is_a_valid_case(
        run: Cli, world: World, database: Database, tmp_path: Path) -> None:
    file = tmp_path / "case.json"
    file.write_text(json.dumps(case_data_for(world)), encoding="utf-8")

    result = run("case", "open", "--as", world.lead, "--file", str(file), "--json")

    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert re.fullmatch(r"RPR-\d{4}-\d{4}", out["reference"])
    # The world holds cases 0001 and 0002 of this year.
    assert out["reference"] == f"RPR-{london_year()}-0003"
    assert out["stage"] == "reported"
    assert out["owning_body"] == "IMB"
    assert set(out["allowed_actions"]) == {"record_consent_and_risk", "withdraw", "left_custody"}
    assert_no_identity(result.output)
    with database.session() as s:
        case = s.scalars(sa.select(Case).where(Case.reference == out["reference"])).one()
        assert read_description(Cipher([TEST_KEY]), case) == CANARY_DESCRIPTION
        assert CANARY_NAME not in case.detainee.name_ciphertext


def test_case_open_reads_standard_input_and_prints_one_line_when_no_file_given(run: Cli, world: World) -> None:
    result = run("case", "open", "--as", world.staff, input=json.dumps(case_data_for(world)))

    assert result.exit_code == 0, result.output
    assert result.stdout == f"opened RPR-{london_year()}-0003 at stage reported\n"


def case_data_for(world: World, **overrides: Any) -> dict[str, Any]:
    return case_data(SimpleNamespace(id=world.establishment_id), **overrides)  # type: ignore[arg-type]


REQUIRED = ("establishment_id", "received_at", "channel", "age_group", "risk", "description", "detainee_name",
            "sanction_types")


@pytest.mark.parametrize(("payload", "expected"), [
    pytest.param(b"{not json", ["error: the input is not valid JSON: Expecting property name"], id="bad-json"),
    pytest.param(b"", ["error: the input is not valid JSON"], id="empty"),
    pytest.param(b"\xff\xfe{}", ["error: the input is not UTF-8 text"], id="not-utf8"),
    pytest.param(b"[1, 2]", ["error: the input must be a JSON object"], id="array"),
    pytest.param(b'"a case"', ["error: the input must be a JSON object"], id="string"),
    pytest.param(b"{}", [f"error: {name}: " for name in REQUIRED], id="missing-fields"),
])
def test_case_open_refuses_with_one_error_line_per_problem_and_writes_nothing_when_input_is_bad(
        shared_run: Cli, shared_world: World, shared_database: Database, tmp_path: Path, payload: bytes,
        expected: list[str]) -> None:
    before = count_rows(shared_database)
    file = tmp_path / "case.json"
    file.write_bytes(payload)

    result = shared_run("case", "open", "--as", shared_world.lead, "--file", str(file))

    lines = assert_refused(result, *expected)
    assert len(lines) == len(expected)
    assert count_rows(shared_database) == before


def test_case_open_names_each_bad_field_and_writes_nothing_when_fields_are_invalid(
        shared_run: Cli, shared_world: World, shared_database: Database) -> None:
    before = count_rows(shared_database)
    data = case_data_for(shared_world, establishment_id=999_999, risk="apocalyptic", received_at="yesterday",
                         colour="blue")

    result = shared_run("case", "open", "--as", shared_world.lead, input=json.dumps(data))

    lines = assert_refused(
        result, "error: establishment_id: is not a known establishment", "error: risk: must be one of",
        "error: received_at: must be a date and time", "error: colour: is not a field of a new case")
    assert len(lines) == 4
    assert_no_identity(result.output)
    assert count_rows(shared_database) == before


def test_case_open_refuses_when_user_is_unknown_or_may_not_report(
        shared_run: Cli, shared_world: World, shared_database: Database) -> None:
    before = count_rows(shared_database)
    payload = json.dumps(case_data_for(shared_world))

    assert_refused(shared_run("case", "open", "--as", "nobody@example.test", input=payload),
                   "error: no active user with e-mail nobody@example.test")
    assert_refused(shared_run("case", "open", "--as", shared_world.admin, input=payload),
                   "error: only staff and leads of a body can report a concern")
    assert count_rows(shared_database) == before


# -- case show ------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["lead", "staff"])
def test_case_show_gives_stage_and_allowed_actions_without_identity_when_user_may_see_case(
        shared_run: Cli, shared_world: World, who: str) -> None:
    result = shared_run("case", "show", shared_world.triaged, "--as", getattr(shared_world, who), "--json", "--history")

    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["reference"] == shared_world.triaged
    assert out["stage"] == "triage"
    # Record only is not offered: its guard (no consent) fails whatever is typed, and this person consented.
    expected = {"lead": {"refer", "decline", "change_consent", "withdraw", "left_custody"},
                "staff": {"change_consent", "withdraw", "left_custody"}}[who]
    assert set(out["allowed_actions"]) == expected
    assert [(e["seq"], e["trigger"]) for e in out["history"]] == [(1, None), (2, "record_consent_and_risk")]
    assert_no_identity(result.output)

    human = shared_run("case", "show", shared_world.triaged, "--as", getattr(shared_world, who), "--history")
    assert human.exit_code == 0, human.output
    assert f"{shared_world.triaged}  stage: triage" in human.stdout
    assert_no_identity(human.output)


@pytest.mark.parametrize("who", ["other_staff", "outside_lead", "admin"])
def test_case_show_says_no_case_like_for_a_missing_one_when_user_may_not_see_it(
        shared_run: Cli, shared_world: World, who: str) -> None:
    hidden = shared_run("case", "show", shared_world.reported, "--as", getattr(shared_world, who), "--json")
    missing = shared_run("case", "show", "RPR-1999-0042", "--as", getattr(shared_world, who), "--json")

    assert assert_refused(hidden) == [f"error: there is no case {shared_world.reported} that you can see"]
    assert assert_refused(missing) == ["error: there is no case RPR-1999-0042 that you can see"]


def test_case_show_refuses_when_acting_user_is_unknown(shared_run: Cli, shared_world: World) -> None:
    assert_refused(shared_run("case", "show", shared_world.reported, "--as", "ghost@example.test"),
                   "error: no active user with e-mail ghost@example.test")


# -- case advance ---------------------------------------------------------------------------------


def test_case_advance_moves_case_and_records_history_when_fields_given_with_field_options(
        run: Cli, world: World, database: Database) -> None:
    before = case_state(database, world.reported)
    result = run("case", "advance", world.reported, "record_consent_and_risk", "--as", world.staff,
                 "-f", "consent=full", "-f", "risk=high")

    assert result.exit_code == 0, result.output
    assert result.stdout == f"{world.reported}: reported → triage\n"
    after = case_state(database, world.reported)
    assert (after["stage"], after["consent"], after["risk"]) == ("triage", "full", "high")
    assert after["version"] == before["version"] + 1
    assert after["wf_history"] == before["wf_history"] + 1


def test_case_advance_accepts_list_fields_from_fields_json_when_referring(
        run: Cli, world: World, database: Database) -> None:
    fields = {"recipients": ["head_of_establishment"]}

    result = run("case", "advance", world.triaged, "refer", "--as", world.lead, "--fields-json", json.dumps(fields),
                 "--json")

    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["previous_stage"], out["stage"]) == ("triage", "referred")
    contact = database.raw("SELECT kind, recipients FROM case_contacts")
    assert [r.kind for r in contact] == ["referral"]
    assert "head_of_establishment" in str(contact[0].recipients)


def test_case_advance_collects_repeated_field_into_a_list_when_given_twice(
        run: Cli, world: World, database: Database) -> None:
    # Both values arrive: the second is the Youth Custody Service, which the copy rules refuse for an adult.
    before = case_state(database, world.triaged)
    result = run("case", "advance", world.triaged, "refer", "--as", world.lead, "--json",
                 "-f", "recipients=head_of_establishment", "-f", "recipients=youth_custody_service")

    assert_refused(result, "the Youth Custody Service is copied only when the person is a child; that is not "
                           "so for this case, so remove it")
    assert case_state(database, world.triaged) == before


REFUSALS = [
    pytest.param("triaged", "escalate_to_the_moon", "lead", [],
                 ["error: 'escalate_to_the_moon' is not an action of the protocol. Next you can: "],
                 id="unknown-trigger"),
    # transitions adds to_<stage>() to every model; it must not be reachable from the command line.
    pytest.param("triaged", "to_closed", "lead", [],
                 ["error: 'to_closed' is not an action of the protocol."], id="auto-transition"),
    pytest.param("reported", "refer", "lead", ["-f", "recipients=head_of_establishment"],
                 ["is at stage 'Reported': 'Refer to the establishment' cannot be done"
                  " from there. Next you can: Record consent and risk"],
                 id="wrong-stage"),
    pytest.param("triaged", "refer", "staff", ["-f", "recipients=head_of_establishment"],
                 ["error: you cannot 'Refer to the establishment' on RPR-"], id="wrong-role"),
    pytest.param("triaged", "refer", "lead", ["-f", "recipients=youth_custody_service"],
                 [": 'Refer to the establishment' cannot be done: the referral"
                  " must go to the head of the establishment"], id="guard"),
    pytest.param("reported", "record_consent_and_risk", "lead",
                 ["-f", "consent=maybe", "-f", "risk=extreme"],
                 ["error: consent: Select the consent the person gave", "error: risk: Select the risk to the person"],
                 id="malformed-fields"),
    pytest.param("reported", "record_consent_and_risk", "lead", ["-f", "consent=full"],
                 ["error: risk: "], id="missing-fields"),
    pytest.param("reported", "record_consent_and_risk", "lead", ["--fields-json", "{consent: full}"],
                 ["error: --fields-json is not valid JSON"], id="fields-json-not-json"),
    pytest.param("reported", "record_consent_and_risk", "lead", ["--fields-json", '["consent", "full"]'],
                 ["error: --fields-json must be a JSON object"], id="fields-json-not-object"),
    pytest.param("reported", "record_consent_and_risk", "lead", ["-f", "consent"],
                 ["error: --field 'consent' must be name=value"], id="field-without-value"),
    pytest.param("reported", "record_consent_and_risk", "lead",
                 ["--expected-version", "1", "-f", "consent=full", "-f", "risk=high"],
                 [" was changed by someone else meanwhile (it is now at"
                  " version 2). Show it again and retry."], id="stale-version"),
    pytest.param("reported", "withdraw", "outside_lead", [], ["that you can see"], id="not-visible"),
]


@pytest.mark.parametrize(("case", "trigger", "who", "extra", "expected"), REFUSALS)
def test_case_advance_refuses_with_specific_message_and_changes_nothing_when_action_is_not_possible(
        shared_run: Cli, shared_world: World, shared_database: Database, case: str, trigger: str, who: str,
        extra: list[str], expected: list[str]) -> None:
    reference = getattr(shared_world, case)
    before = case_state(shared_database, reference)

    result = shared_run("case", "advance", reference, trigger, "--as", getattr(shared_world, who), *extra)

    lines = assert_refused(result, *expected)
    assert len(lines) == len(expected)
    assert case_state(shared_database, reference) == before


# -- audit verify ---------------------------------------------------------------------------------


@pytest.fixture
def history(run: Cli, world: World) -> World:
    """The world with a third event on the triaged case (now referred): reported has 1 event,
    triaged has 3."""
    result = run("case", "advance", world.triaged, "refer", "--as", world.lead,
                 "-f", "recipients=head_of_establishment")
    assert result.exit_code == 0, result.output
    return world


def test_audit_verify_passes_when_history_is_untouched(run: Cli, history: World) -> None:
    result = run("audit", "verify")

    assert result.exit_code == 0, result.output
    history_line, log_line = result.stdout.splitlines()
    assert history_line == "history verified: 2 cases, 4 events, no broken links"
    assert re.fullmatch(r"access log verified: \d+ entries, 0 sealed days, no broken links", log_line), log_line
    as_json = json.loads(run("audit", "verify", "--json").stdout)
    assert as_json.pop("access_log") == {"ok": True, "entries": int(log_line.split()[3]), "sealed_days": 0,
                                         "problems": []}
    assert as_json == {"ok": True, "instances": 2, "events": 4, "findings": []}


def _edit_data(db: Database, short: int, long: int) -> None:
    with db.engine.begin() as conn:
        conn.execute(sa.update(HistoryEvent.__table__)
                     .where(HistoryEvent.instance_id == long, HistoryEvent.seq == 2)
                     .values(data={"fields": {"consent": "none"}}))


def _delete_event(db: Database, short: int, long: int) -> None:
    db.raw("DELETE FROM wf_history WHERE instance_id = :i AND seq = 2", i=long)


def _forge_event(db: Database, short: int, long: int) -> None:
    """A forger who knows the hash recipe appends a well-formed event but cannot move the head."""
    with db.session() as s:
        head = s.scalars(sa.select(HistoryEvent).where(HistoryEvent.instance_id == short)).one()
        forged = HistoryEvent(instance_id=short, seq=2, kind="transition", trigger="withdraw", from_stage="reported",
                              to_stage="closed", actor_id=head.actor_id, at=head.at, data={}, corrects_seq=None,
                              prev_hash=head.hash, hash="", hash_version=2)
        forged.hash = event_hash(forged)
        s.add(forged)
        s.commit()


def _swap_events(db: Database, short: int, long: int) -> None:
    db.raw("UPDATE wf_history SET seq = -1 WHERE instance_id = :i AND seq = 2", i=long)
    db.raw("UPDATE wf_history SET seq = 2 WHERE instance_id = :i AND seq = 3", i=long)
    db.raw("UPDATE wf_history SET seq = 3 WHERE instance_id = :i AND seq = -1", i=long)


def _delete_history(db: Database, short: int, long: int) -> None:
    db.raw("DELETE FROM wf_history WHERE instance_id = :i", i=short)


@pytest.mark.parametrize(("tamper", "which", "kinds", "message"), [
    pytest.param(_edit_data, "long", {"edited"}, "event 2 (id {id2}) does not match its hash (edited)", id="edit"),
    pytest.param(_delete_event, "long", {"missing", "broken-link"}, "events 2..2 are missing (deleted)",
                 id="delete-event"),
    pytest.param(_forge_event, "short", {"head-mismatch", "stage-mismatch"},
                 "the chain ends at event 2 but the instance records head 1",
                 id="forge"),
    pytest.param(_swap_events, "long", {"edited", "broken-link", "head-mismatch", "stage-mismatch"},
                 "does not follow its predecessor",
                 id="swap"),
    pytest.param(_delete_history, "short", {"history-deleted"}, "its whole history is missing",
                 id="delete-history"),
])
def test_audit_verify_fails_naming_each_problem_when_history_was_tampered_with(
        run: Cli, history: World, database: Database, tamper: Any, which: str, kinds: set[str],
        message: str) -> None:
    short, long = history.instance_ids[history.reported], history.instance_ids[history.triaged]
    id2 = database.raw("SELECT id FROM wf_history WHERE instance_id = :i AND seq = 2", i=long)[0].id
    database.disable_append_only()
    tamper(database, short, long)
    instance = short if which == "short" else long

    result = run("audit", "verify")

    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert lines[-1].startswith("history NOT verified: ")
    broken = lines[:-1]
    assert broken and all(line.startswith(f"BROKEN: instance {instance}: ") for line in broken), broken
    assert any(message.format(id2=id2) in line for line in broken), broken

    report = json.loads(run("audit", "verify", "--json").stdout)
    assert report["ok"] is False
    assert {f["what"] for f in report["findings"]} == kinds
    assert {f["instance"] for f in report["findings"]} == {instance}


# -- protocol -------------------------------------------------------------------------------------


def test_protocol_check_succeeds_when_file_is_the_bundled_spec(run_without_database: Cli) -> None:
    result = run_without_database("protocol", "check", str(BUNDLED_SPEC))

    assert result.exit_code == 0, result.output
    assert result.stdout == f"{BUNDLED_SPEC}: ok — sanctions version 1, 8 stages, 14 triggers\n"


def _variant(old: str, new: str) -> Any:
    def make(text: str) -> str:
        assert old in text, f"the bundled spec no longer contains {old!r}"
        return text.replace(old, new, 1)
    return make


@pytest.mark.parametrize(("make", "expected"), [
    pytest.param(_variant("    to: referred\n", "    to: nowhere\n"),
                 "triggers.refer.to: trigger leads nowhere: unknown stage 'nowhere'", id="unknown-stage"),
    pytest.param(_variant("due: 10wd", "due: 10 fortnights"),
                 "stages.referred.deadlines[0].due: unknown unit 'fortnights'", id="bad-duration"),
    pytest.param(_variant("guards: [consent_is_none]", "guards: [no_such_guard]"),
                 "triggers.record_only.guards[0]: unknown guard 'no_such_guard'", id="unknown-guard"),
    pytest.param(_variant("    label: Triage\n", "    label: Triage\n    colour: blue\n"),
                 "stages.triage.colour: unknown key", id="unknown-key"),
    pytest.param(lambda text: text + "\nstages: [unclosed\n", "not valid YAML", id="invalid-yaml"),
    pytest.param(None, "file not found", id="missing-file"),
])
def test_protocol_check_fails_naming_file_and_path_when_spec_is_broken(
        run_without_database: Cli, tmp_path: Path, make: Any, expected: str) -> None:
    file = tmp_path / "broken.yaml"
    if make is not None:
        file.write_text(make(BUNDLED_SPEC.read_text(encoding="utf-8")), encoding="utf-8")

    result = run_without_database("protocol", "check", str(file))

    lines = assert_refused(result)
    assert any(line.startswith(f"error: {file}: ") and expected in line for line in lines), lines


def test_protocol_show_json_describes_stages_deadlines_and_triggers_when_asked(run_without_database: Cli) -> None:
    result = run_without_database("protocol", "show", "--json")

    assert result.exit_code == 0, result.output
    spec = json.loads(result.stdout)
    assert (spec["key"], spec["version"], spec["initial"]) == ("sanctions", 2, "reported")
    assert set(spec["stages"]) == {"reported", "triage", "referred", "escalated", "assessment", "follow_up",
                                   "closure_review", "closed"}
    assert spec["stages"]["closed"]["final"] is True
    response = spec["stages"]["referred"]["deadlines"][0]
    assert (response["name"], response["due"], response["reminders"]) == (
        "establishment_response", "10 working days", ["3 working days"])
    refer = spec["triggers"]["refer"]
    assert (refer["from"], refer["to"], refer["roles"]) == (["triage"], "referred", ["lead"])
    assert refer["guards"] == ["consent_allows_referral", "recipients_fit_establishment", "copies_follow_rules"]

    human = run_without_database("protocol", "show")
    assert human.exit_code == 0
    assert "→ refer → referred  [lead]" in human.stdout


def test_protocol_show_includes_configured_spec_files_when_protocol_files_set(
        run_without_database: Cli, tmp_path: Path) -> None:
    v3 = tmp_path / "sanctions-v3.yaml"
    v3.write_text(_variant("version: 1\n", "version: 3\n")(BUNDLED_SPEC.read_text(encoding="utf-8")),
                  encoding="utf-8")
    env = {"REPRISALS_PROTOCOL_FILES": str(v3)}

    newest = run_without_database("protocol", "show", "--json", env=env)
    first = run_without_database("protocol", "show", "--json", "--version", "1", env=env)

    assert newest.exit_code == 0, newest.output
    assert json.loads(newest.stdout)["version"] == 3
    assert json.loads(first.stdout)["version"] == 1


def test_protocol_show_refuses_when_version_is_unknown(run_without_database: Cli) -> None:
    assert_refused(run_without_database("protocol", "show", "--version", "99"),
                   "error: no workflow spec sanctions version 99 is registered")


# -- users add ------------------------------------------------------------------------------------

GOOD_PASSWORD = "correct horse battery staple"


def test_users_add_creates_user_with_hashed_password_when_input_is_valid(
        run: Cli, world: World, database: Database) -> None:
    result = run("users", "add", "--email", " New.Person@Example.TEST ", "--name", "New Person", "--role", "lead",
                 "--body", "ppo", "--password-stdin", input=GOOD_PASSWORD + "\n")

    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"user \d+ added: new.person@example.test \(lead, PPO\)\n", result.stdout)
    assert GOOD_PASSWORD not in result.output
    with database.session() as s:
        user = s.scalars(sa.select(User).where(User.email == "new.person@example.test")).one()
        assert (user.role, user.body_code, user.active) == (Role.LEAD, "PPO", True)
        assert user.password_hash != GOOD_PASSWORD
        assert verify_password(user.password_hash, GOOD_PASSWORD)
        # The operator's accounts are confirmed (a body's first lead comes from the server), and logged.
        assert not user.pending and user.confirmed_at is not None
        entry = s.scalars(sa.select(AccessEntry).where(AccessEntry.subject_user_id == user.id)).one()
        assert (entry.kind, entry.via, entry.actor_id, entry.detail) == ("user_added", "cli", None,
                                                                          {"role": "lead", "body": "PPO"})


@pytest.mark.parametrize(("options", "password", "expected"), [
    pytest.param(["--email", "a@example.test", "--role", "staff", "--body", "IMB"], "short",
                 ["error: password: must be at least 12 characters"], id="short-password"),
    pytest.param(["--email", "not-an-address", "--role", "staff", "--body", "IMB"], GOOD_PASSWORD,
                 ["error: email: is not an e-mail address"], id="bad-email"),
    pytest.param(["--email", "a@example.test", "--role", "staff", "--body", "XYZ"], GOOD_PASSWORD,
                 ["error: body: 'XYZ' is not a body"], id="unknown-body"),
    pytest.param(["--email", "{lead_upper}", "--role", "staff", "--body", "IMB"], GOOD_PASSWORD,
                 ["error: email: is already in use"], id="duplicate-email"),
    pytest.param(["--email", "a@example.test", "--role", "admin", "--body", "IMB"], GOOD_PASSWORD,
                 ["error: body: admins belong to no body"], id="admin-with-body"),
    pytest.param(["--email", "a@example.test", "--role", "staff"], GOOD_PASSWORD,
                 ["error: body: is required for this role"], id="staff-without-body"),
    pytest.param(["--email", "@example.test", "--role", "staff", "--body", "IMB"], "short",
                 ["error: email: is not an e-mail address", "error: password: must be at least 12 characters"],
                 id="two-problems"),
])
def test_users_add_refuses_with_one_line_per_problem_and_adds_nobody_when_input_is_bad(
        shared_run: Cli, shared_world: World, shared_database: Database, options: list[str], password: str,
        expected: list[str]) -> None:
    before = count_rows(shared_database, ("users",))
    options = [o.replace("{lead_upper}", shared_world.lead.upper()) for o in options]

    result = shared_run("users", "add", "--name", "Someone", *options, "--password-stdin", input=password + "\n")

    lines = assert_refused(result, *expected)
    assert len(lines) == len(expected)
    assert password not in result.output
    assert count_rows(shared_database, ("users",)) == before


# -- keys -----------------------------------------------------------------------------------------


def test_keys_generate_prints_a_new_fernet_key_when_run(run_without_database: Cli) -> None:
    first, second = run_without_database("keys", "generate"), run_without_database("keys", "generate")

    assert first.exit_code == 0
    key = first.stdout.strip()
    assert first.stdout == key + "\n"
    token = Fernet(key.encode()).encrypt(b"x")
    assert Fernet(key.encode()).decrypt(token) == b"x"
    assert second.stdout.strip() != key


def _identity_tokens(database: Database) -> list[str]:
    with database.session() as s:
        tokens = [c.description_ciphertext for c in s.scalars(sa.select(Case))]
        for d in s.scalars(sa.select(Detainee)):
            tokens += [t for t in (d.name_ciphertext, d.number_ciphertext, d.date_of_birth_ciphertext) if t]
    return tokens


def _read_identity(database: Database, cipher: Cipher) -> set[str]:
    with database.session() as s:
        out = set()
        for c in s.scalars(sa.select(Case)):
            d = c.detainee
            keys = Keyring(cipher)
            out |= {read_description(cipher, c),
                    keys.decrypt(s, c.instance_id, f"detainee:{c.id}:name", d.name_ciphertext),
                    keys.decrypt(s, c.instance_id, f"detainee:{c.id}:number", d.number_ciphertext or ""),
                    keys.decrypt(s, c.instance_id, f"detainee:{c.id}:date_of_birth", d.date_of_birth_ciphertext or "")}
    return out


def test_keys_rotate_lets_the_old_key_be_dropped_when_new_key_is_put_first(
        run: Cli, world: World, database: Database) -> None:
    new = run("keys", "generate").stdout.strip()
    only_new = {"REPRISALS_ENCRYPTION_KEYS": new}
    with pytest.raises(IdentityUnreadable):  # without rotation the old key could not go
        _read_identity(database, Cipher([new]))

    result = run("keys", "rotate", env={"REPRISALS_ENCRYPTION_KEYS": f"{new},{TEST_KEY}"})

    assert result.exit_code == 0, result.output
    assert result.stdout == "re-wrapped 2 key(s) or draft(s) with the first key\n"  # the 2 cases' keys
    assert _read_identity(database, Cipher([new])) == set(CANARIES)
    shown = run("case", "show", world.reported, "--as", world.lead, "--json", env=only_new)
    assert shown.exit_code == 0, shown.output
    again = run("keys", "rotate", env=only_new)
    assert again.stdout == "re-wrapped 0 key(s) or draft(s) with the first key\n"
    with database.session() as s:  # each rotation is in the access log, as the operator's
        assert [(e.kind, e.via, e.actor_id, e.detail) for e in access_log.entries(s, kind="keys_rotated")] == [
            ("keys_rotated", "cli", None, {"keys_rewrapped": 0}),
            ("keys_rotated", "cli", None, {"keys_rewrapped": 2})]


def test_keys_rotate_refuses_and_changes_nothing_when_a_stored_value_matches_no_configured_key(
        shared_run: Cli, shared_world: World, shared_database: Database) -> None:
    before = _identity_tokens(shared_database)
    stranger = shared_run("keys", "generate").stdout.strip()

    result = shared_run("keys", "rotate", env={"REPRISALS_ENCRYPTION_KEYS": stranger})

    assert_refused(result, "error: a stored value cannot be decrypted with any configured key")
    assert _identity_tokens(shared_database) == before


def test_report_figures_counts_the_demo_cases_in_text_csv_and_json_and_refuses_a_bad_period(
        run: Cli, database: Database) -> None:
    assert run("demo").exit_code == 0
    everything = "2000-01-01..2100-12-31"

    text = run("report", "figures", "--period", everything)
    assert text.exit_code == 0, text.output
    assert f"cases received: {len(CASES)}" in text.stdout and "exact counts: not for publication" in text.stdout
    assert "Kinds of sanction alleged" in text.stdout and "Protocol deadlines that fell due" in text.stdout

    as_json = run("report", "figures", "--period", everything, "--format", "json", "--publish")
    data = json.loads(as_json.stdout)
    assert data["received"] == str(len(CASES)) and data["published"] is True  # 12: not suppressed
    risk = next(t for t in data["tables"] if t["key"] == "risk")
    assert {r["label"] for r in risk["rows"]} == {"Urgent", "High", "Standard"}
    assert all(r["count"] in ("0", "fewer than 5", "suppressed") or int(r["count"].replace(",", "")) >= 5
               for t in data["tables"] for r in t["rows"])

    as_csv = run("report", "figures", "--period", everything, "--body", "imb", "--format", "csv", "--publish")
    lines = as_csv.stdout.splitlines()
    assert lines[:3] == ["period,1 January 2000 to 31 December 2100", "body,Independent Monitoring Boards",
                         "counts,for publication: counts under 5 suppressed"]
    assert "table,row,count" in lines
    for secret in ("Zebediah", "CANARY"):
        assert secret not in text.stdout + as_json.stdout + as_csv.stdout
    with database.session() as s:  # the copies that left (CSV, JSON) are exports in the access log; text is not
        assert [(e.via, e.detail["format"], e.detail["body"]) for e in access_log.entries(s, kind="export")] == [
            ("cli", "csv", "IMB"), ("cli", "json", "all")]

    # One day's few demo cases: counts under 5 never appear, in the summary either.
    days_ago = min(c[4] for c in CASES)  # the most recent day (demo cases are received days before now)
    today = (datetime.now(ZoneInfo("Europe/London")).date() - timedelta(days=days_ago)).isoformat()
    exact_small = json.loads(run("report", "figures", "--period", f"{today}..{today}", "--format", "json").stdout)
    assert 0 < int(exact_small["received"]) < 5, exact_small["received"]
    small = run("report", "figures", "--period", f"{today}..{today}", "--publish", "--format", "json")
    assert json.loads(small.stdout)["received"] == "fewer than 5"
    assert "cases received: fewer than 5" in run("report", "figures", "--period", f"{today}..{today}",
                                                 "--publish").stdout
    refused = run("report", "figures", "--period", "last year")
    assert_refused(refused, "error: period: must be a year (2025), a financial year (2025-26)")
    assert_refused(run("report", "figures", "--period", "2025", "--body", "XYZ"), "error: body: is not a known body")


def test_long_commands_draw_progress_on_a_terminal_and_nothing_extra_when_captured(tmp_path: Path) -> None:
    import os
    import pty

    env = {**clean_environ(), "REPRISALS_INSTANCE_PATH": str(tmp_path / "instance"), "REPRISALS_LOG_LEVEL": "WARNING"}
    for args in (("db", "upgrade"), ("demo",)):
        assert subprocess.run([str(REPRISALS_BIN), *args], capture_output=True, env=env, cwd=tmp_path,
                              timeout=60, check=False).returncode == 0

    for args, label, result in [(("audit", "verify"), "checking history", "history verified: 12 cases"),
                                (("keys", "rotate"), "re-wrapping case keys", "re-wrapped 0 key(s)")]:
        leader, follower = pty.openpty()  # standard error is a terminal; standard output is captured
        proc = subprocess.Popen([str(REPRISALS_BIN), *args], stdout=subprocess.PIPE, stderr=follower, env=env,
                                cwd=tmp_path, text=True)
        os.close(follower)
        out, _ = proc.communicate(timeout=60)
        drawn = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            drawn += chunk
        os.close(leader)
        assert proc.returncode == 0 and result in out, (args, out)
        screen = drawn.decode(errors="replace")
        assert label in screen and re.search(r"\b(\d+)/\1\b", screen), (args, screen)  # drawn to the end, n/n

        captured = subprocess.run([str(REPRISALS_BIN), *args], capture_output=True, text=True, env=env,
                                  cwd=tmp_path, timeout=60, check=False)
        assert label not in captured.stderr and result in captured.stdout  # piped: no bar


# -- case show: deadlines and actors; deadlines list --case -----------------------------------------


def test_case_show_lists_running_deadlines_and_names_actors_in_text_and_json(shared_run: Cli,
                                                                              shared_world: World) -> None:
    as_json = shared_run("case", "show", shared_world.triaged, "--as", shared_world.lead, "--history", "--json")
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert [(d["name"], d["label"], d["status"]) for d in data["deadlines"]] == [
        ("triage_decision", "Triage decision", "overdue")]  # received in 2025: past when it was recorded
    actors = {e["actor"] for e in data["history"]}
    assert len(actors) == 1 and actors.pop().endswith(f"<{shared_world.lead}>")  # a name and e-mail, not an id
    assert all(not str(e["actor"]).isdigit() for e in data["history"])

    text = shared_run("case", "show", shared_world.triaged, "--as", shared_world.lead, "--history")
    assert text.exit_code == 0, text.output
    assert "deadline: Triage decision — due " in text.stdout and "(overdue)" in text.stdout
    assert "received: Wed 16 Apr 2025, 10:00 (UK time)" in text.stdout  # not 09:00, unlabelled UTC
    assert f"by {data['history'][0]['actor']}" in text.stdout


def test_case_show_history_gives_free_text_to_no_one_without_a_reason(shared_run: Cli, shared_world: World) -> None:
    """Without --reason a lead reads what an auditor reads: structured data and which free text was given
    (tests/web/test_unlock.py: with a reason)."""
    lead = shared_run("case", "show", shared_world.triaged, "--as", shared_world.lead, "--history", "--json")
    auditor = shared_run("case", "show", shared_world.triaged, "--as", shared_world.auditor, "--history", "--json")
    assert auditor.exit_code == 0, auditor.output
    seen, full = json.loads(auditor.stdout)["history"], json.loads(lead.stdout)["history"]
    moved = next(e for e in seen if e["kind"] == "transition")
    assert moved["data"]["fields"] == {"consent": "full", "risk": "standard"} and moved["free_text"] is None
    assert seen == full


def test_deadlines_list_filters_by_case_and_refuses_an_unknown_reference(shared_run: Cli,
                                                                          shared_world: World) -> None:
    result = shared_run("deadlines", "list", "--case", shared_world.triaged.lower(), "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows and {r["reference"] for r in rows} == {shared_world.triaged}
    everything = json.loads(shared_run("deadlines", "list", "--json").stdout)
    assert {r["reference"] for r in everything} >= {shared_world.triaged, shared_world.reported}

    assert_refused(shared_run("deadlines", "list", "--case", "RPR-1999-0042"), "error: there is no case RPR-1999-0042")
