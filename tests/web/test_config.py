"""Configuration: REPRISALS_* variables validated once, every problem one line naming the variable;
development defaults that work with no configuration at all, and production that refuses to start
without its keys."""

from __future__ import annotations

import stat
from datetime import time
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from reprisals.config import load_settings
from reprisals.crypto import generate_key
from reprisals.errors import ConfigurationError
from tests.factories import TEST_KEY
from tests.web.conftest import SECRET_KEY, Cli


def problems_of(environ: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(environ, dotenv=None)
    return caught.value.problems


def test_defaults_give_sqlite_and_persisted_dev_keys_in_instance_folder_when_environment_is_empty(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    instance = tmp_path / "instance"

    first = load_settings({}, dotenv=None)

    assert (first.env, first.is_production) == ("development", False)
    assert first.instance_path == instance
    assert first.database_url == f"sqlite:///{instance / 'reprisals.db'}"
    assert first.secret_key == (instance / "secret_key").read_text(encoding="ascii").strip()
    assert len(first.secret_key) >= 32
    assert first.encryption_keys == ((instance / "encryption_key").read_text(encoding="ascii").strip(),)
    Fernet(first.encryption_keys[0].encode())  # a usable key
    for name in ("secret_key", "encryption_key"):
        assert stat.S_IMODE((instance / name).stat().st_mode) == 0o600
    assert any(w.startswith("REPRISALS_SECRET_KEY is not set") for w in first.warnings)
    assert any(w.startswith("REPRISALS_ENCRYPTION_KEYS is not set") and "DEVELOPMENT" in w for w in first.warnings)
    assert (first.scheduler_interval, first.working_day_end, first.log_level) == (15.0, time(17, 0), "INFO")
    assert first.base_url == "http://127.0.0.1:5000"
    assert first.trusted_proxies == 0  # X-Forwarded-For is believed only when told how many proxies set it

    second = load_settings({}, dotenv=None)

    assert (second.secret_key, second.encryption_keys) == (first.secret_key, first.encryption_keys)
    assert second.warnings == first.warnings  # still loud on every start


def test_given_values_are_used_without_warnings_when_everything_is_set(tmp_path: Path) -> None:
    key = generate_key()
    settings = load_settings({
        "REPRISALS_ENV": "production", "REPRISALS_INSTANCE_PATH": str(tmp_path),
        "REPRISALS_DATABASE_URL": "postgres://app@db.internal/reprisals", "REPRISALS_SECRET_KEY": SECRET_KEY,
        "REPRISALS_ENCRYPTION_KEYS": f" {key} , {generate_key()} ", "REPRISALS_SCHEDULER_INTERVAL": "2.5",
        "REPRISALS_WORKING_DAY_END": "16:30", "REPRISALS_BASE_URL": "https://reprisals.example/",
        "REPRISALS_LOG_LEVEL": "debug", "REPRISALS_SMTP_URL": "smtps://mail.example:465",
        "REPRISALS_TRUSTED_PROXIES": "1", "REPRISALS_PSEUDONYM_KEY": "p" * 40,
    }, dotenv=None)

    assert settings.is_production
    assert settings.warnings == ()
    assert settings.database_url == "postgresql+psycopg://app@db.internal/reprisals"
    assert settings.encryption_keys[0] == key and len(settings.encryption_keys) == 2
    assert (settings.scheduler_interval, settings.working_day_end) == (2.5, time(16, 30))
    assert (settings.base_url, settings.log_level) == ("https://reprisals.example", "DEBUG")
    assert settings.trusted_proxies == 1
    assert list(tmp_path.iterdir()) == []  # no development key written


def test_production_refuses_listing_both_keys_and_writes_none_when_keys_are_missing(tmp_path: Path) -> None:
    problems = problems_of({"REPRISALS_ENV": "production", "REPRISALS_INSTANCE_PATH": str(tmp_path / "instance"),
                            "REPRISALS_DATABASE_URL": "postgresql://app@db/reprisals"})

    assert len(problems) == 3
    assert problems[0].startswith("REPRISALS_SECRET_KEY: required in production")
    assert problems[1].startswith("REPRISALS_ENCRYPTION_KEYS: required in production")
    assert problems[2].startswith("REPRISALS_PSEUDONYM_KEY: required in production")
    assert not (tmp_path / "instance").exists()


@pytest.mark.parametrize(("name", "value", "fragment"), [
    ("DATABASE_URL", "mysql://root@localhost/reprisals", "must be sqlite:///PATH or postgresql://"),
    ("DATABASE_URL", "sqlite://", "must be sqlite:///PATH"),
    ("SCHEDULER_INTERVAL", "every minute", "'every minute' is not a number of seconds between 0.1 and 3600"),
    ("SCHEDULER_INTERVAL", "0", "is not a number of seconds"),
    ("SCHEDULER_INTERVAL", "nan", "is not a number of seconds"),
    ("SCHEDULER_INTERVAL", "86400", "is not a number of seconds"),
    ("WORKING_DAY_END", "5pm", "'5pm' is not a time such as 17:00"),
    ("WORKING_DAY_END", "25:00", "is not a time"),
    ("ENCRYPTION_KEYS", "not-a-key", "key 1 is not a Fernet key"),
    ("ENCRYPTION_KEYS", f"{TEST_KEY},short", "key 2 is not a Fernet key"),
    ("ENCRYPTION_KEYS", " , ", "at least one key is required"),
    ("SECRET_KEY", "too-short", "too short (9 characters)"),
    ("ENV", "staging", "'staging' is not one of development, production, test"),
    ("LOG_LEVEL", "chatty", "is not one of DEBUG, INFO, WARNING, ERROR"),
    # The message shows the expected form (its wording changed when SMTP_URL parsing got stricter).
    ("SMTP_URL", "mail.example:25", "smtp://user:password@host:587"),
    ("BASE_URL", "reprisals.example", "must be an http:// or https:// address"),
    ("PROTOCOL_FILES", "/no/such/spec.yaml", "/no/such/spec.yaml does not exist"),
    ("TRUSTED_PROXIES", "yes", "'yes' is not a whole number from 0 to 5 (how many reverse proxies are in front"),
    ("TRUSTED_PROXIES", "-1", "is not a whole number from 0 to 5"),
    ("TRUSTED_PROXIES", "9", "is not a whole number from 0 to 5"),
    ("FOO", "1", "unknown setting"),
])
def test_one_line_names_the_variable_when_a_value_is_bad(tmp_path: Path, name: str, value: str, fragment: str) -> None:
    base = {"REPRISALS_INSTANCE_PATH": str(tmp_path), "REPRISALS_DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
            "REPRISALS_SECRET_KEY": SECRET_KEY, "REPRISALS_ENCRYPTION_KEYS": generate_key()}

    problems = problems_of({**base, f"REPRISALS_{name}": value})

    assert len(problems) == 1, problems
    assert problems[0].startswith(f"REPRISALS_{name}: ")
    assert fragment in problems[0]
    if name in ("ENCRYPTION_KEYS", "SECRET_KEY"):
        assert value not in problems[0]  # secrets are never echoed


def test_every_problem_is_listed_at_once_when_several_values_are_bad(tmp_path: Path) -> None:
    problems = problems_of({
        "REPRISALS_INSTANCE_PATH": str(tmp_path), "REPRISALS_DATABASE_URL": "oracle://x",
        "REPRISALS_SCHEDULER_INTERVAL": "-1", "REPRISALS_WORKING_DAY_END": "noon",
        "REPRISALS_ENCRYPTION_KEYS": "nope", "REPRISALS_FOO": "bar",
    })

    named = sorted(p.split(":", 1)[0] for p in problems)
    assert named == ["REPRISALS_DATABASE_URL", "REPRISALS_ENCRYPTION_KEYS", "REPRISALS_FOO",
                     "REPRISALS_SCHEDULER_INTERVAL", "REPRISALS_WORKING_DAY_END"]


def test_environment_wins_over_dotenv_file_when_both_set_a_variable(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("REPRISALS_SCHEDULER_INTERVAL=30\nREPRISALS_LOG_LEVEL=ERROR\n", encoding="utf-8")

    settings = load_settings({"REPRISALS_INSTANCE_PATH": str(tmp_path), "REPRISALS_SCHEDULER_INTERVAL": "45"},
                             dotenv=dotenv)

    assert (settings.scheduler_interval, settings.log_level) == (45.0, "ERROR")


def test_unknown_variable_in_dotenv_file_is_refused_when_loading(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("REPRISALS_DATABSE_URL=sqlite:///typo.db\n", encoding="utf-8")

    with pytest.raises(ConfigurationError) as caught:
        load_settings({"REPRISALS_INSTANCE_PATH": str(tmp_path)}, dotenv=dotenv)

    assert [p.split(":", 1)[0] for p in caught.value.problems] == ["REPRISALS_DATABSE_URL"]


def test_cli_prints_configuration_lines_and_exits_2_when_configuration_is_bad(run_without_database: Cli) -> None:
    result = run_without_database("audit", "verify", env={
        "REPRISALS_DATABASE_URL": "mysql://root@localhost/db", "REPRISALS_SCHEDULER_INTERVAL": "soon",
        "REPRISALS_WORKING_DAY_END": "teatime", "REPRISALS_ENCRYPTION_KEYS": "nope", "REPRISALS_FOO": "1"})

    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert all(line.startswith("error: configuration: REPRISALS_") for line in lines), lines
    assert sorted(line.split(":")[2].strip() for line in lines) == [
        "REPRISALS_DATABASE_URL", "REPRISALS_ENCRYPTION_KEYS", "REPRISALS_FOO", "REPRISALS_SCHEDULER_INTERVAL",
        "REPRISALS_WORKING_DAY_END"]


def test_cli_refuses_production_without_keys_when_a_command_needs_the_database(run_without_database: Cli) -> None:
    result = run_without_database("case", "show", "RPR-2025-0001", "--as", "a@example.test", env={
        "REPRISALS_ENV": "production", "REPRISALS_SECRET_KEY": None, "REPRISALS_ENCRYPTION_KEYS": None})

    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: configuration: REPRISALS_SECRET_KEY: required in production (a long random string)",
        "error: configuration: REPRISALS_ENCRYPTION_KEYS: required in production (make one with "
        "`reprisals keys generate`)"]


def test_sqlite_folder_is_refused_not_created_when_it_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "folder"
    problems = problems_of({"REPRISALS_INSTANCE_PATH": str(tmp_path),
                            "REPRISALS_DATABASE_URL": f"sqlite:///{missing}/x.db"})
    assert problems == [f"REPRISALS_DATABASE_URL: the folder {missing} for the SQLite file does not exist"]
    assert not missing.exists()


def test_test_suite_variables_are_ignored_when_loading(tmp_path: Path) -> None:
    settings = load_settings({"REPRISALS_INSTANCE_PATH": str(tmp_path), "REPRISALS_TEST_DATABASES": "sqlite"},
                             dotenv=None)
    assert settings.database_url == f"sqlite:///{tmp_path / 'reprisals.db'}"


def test_development_key_files_are_private_when_generated(tmp_path: Path) -> None:
    load_settings({"REPRISALS_INSTANCE_PATH": str(tmp_path)}, dotenv=None)
    for name in ("secret_key", "encryption_key"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600
