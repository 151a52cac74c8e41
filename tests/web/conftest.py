"""Fixtures for the shell's tests: the real ``reprisals`` command run in-process (click's CliRunner)
with its configuration in the environment, and a small committed world of users and cases.

The CLI reads its settings from the process environment (and a ``.env`` in the working folder), so
each run gets a clean environment: every ``REPRISALS_*`` variable of the test process is removed
(``REPRISALS_TEST_DATABASES`` would otherwise be refused as an unknown setting) and the working
folder is the test's tmp_path.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from flask import Flask
from flask.testing import FlaskClient

from reprisals.models import Role
from reprisals.passwords import hash_password
from reprisals.protocol import build_engine
from reprisals.runtime import Runtime
from tests.conftest import DATABASES, PG_ADMIN_URL, Database, _pg_admin
from tests.factories import (
    CONSENT,
    TEST_KEY,
    TEST_PSEUDONYM_KEY,
    case_data,
    cipher,
    make_establishment,
    make_user,
)
from web.cli import cli
from workflow.clock import FrozenClock
from workflow.db import create_db_engine
from workflow.engine import Engine

SECRET_KEY = "test-secret-key-that-is-long-enough-0123456789"
COUNTED = ("users", "cases", "detainees", "wf_instances", "wf_history", "wf_ledger", "case_sequences")


# -- an empty database, for `db upgrade` ----------------------------------------------------------




# -- running the command ----------------------------------------------------------------------------


def clean_environ() -> dict[str, str]:
    """The test process's environment without any REPRISALS_* variable (for subprocesses)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("REPRISALS_")}


@dataclass
class Cli:
    """``run("case", "show", ...)`` runs ``reprisals case show ...`` with this configuration."""

    env: dict[str, str]

    def __call__(self, *args: str, input: str | bytes | None = None, env: dict[str, str | None] | None = None,
                 ) -> Result:
        full: dict[str, str | None] = {k: None for k in os.environ if k.startswith("REPRISALS_")}
        full.update(self.env)
        full.update(env or {})
        return CliRunner().invoke(cli, list(args), input=input, env=full, catch_exceptions=True)


@pytest.fixture
def run(database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """The command, configured for the ``database`` fixture (schema created, no rows)."""
    monkeypatch.chdir(tmp_path)  # no stray .env
    return Cli(base_env(database.url, tmp_path))


@pytest.fixture
def run_without_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """The command for subcommands that need no database (protocol, keys)."""
    monkeypatch.chdir(tmp_path)
    return Cli(base_env(f"sqlite:///{tmp_path / 'unused.db'}", tmp_path))


def base_env(url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "REPRISALS_DATABASE_URL": url,
        "REPRISALS_INSTANCE_PATH": str(tmp_path / "instance"),
        "REPRISALS_ENCRYPTION_KEYS": TEST_KEY,
        "REPRISALS_PSEUDONYM_KEY": TEST_PSEUDONYM_KEY,
        "REPRISALS_SECRET_KEY": SECRET_KEY,
        "REPRISALS_LOG_LEVEL": "WARNING",
    }


def assert_refused(result: Result, *expected: str, code: int = 1) -> list[str]:
    """The command failed cleanly: exit code, one ``error:`` line per problem on stderr (each
    expected fragment on some line), nothing on stdout, no traceback. Returns the error lines."""
    assert result.exit_code == code, (result.exit_code, result.output)
    # CliRunner swallows unexpected exceptions (exit code 1, no traceback printed): only a
    # deliberate exit counts as a clean refusal.
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines, "nothing on stderr"
    assert all(line.startswith("error: ") for line in lines), lines
    for fragment in expected:
        assert any(fragment in line for line in lines), (fragment, lines)
    return lines


def count_rows(database: Database, tables: tuple[str, ...] = COUNTED) -> dict[str, int]:
    with database.engine.connect() as conn:
        return {t: int(conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in tables}


# -- a small world ----------------------------------------------------------------------------------


@dataclass
class World:
    """Committed rows the CLI can act on. Cases are owned by IMB, HMIP is party, assigned to ``staff``;
    ``reported`` is at stage reported and ``triaged`` at triage (consent: full)."""

    establishment_id: int
    lead: str
    second_lead: str
    staff: str
    other_staff: str
    outside_lead: str
    auditor: str
    admin: str
    reported: str
    triaged: str
    instance_ids: dict[str, int] = field(default_factory=dict)


@pytest.fixture(scope="session")
def wf() -> Engine:
    return build_engine(cipher=cipher())


@pytest.fixture
def world(database: Database, wf: Engine) -> World:
    return make_world(database, wf)


def make_world(database: Database, wf: Engine) -> World:
    from reprisals.services import advance_case, open_case

    now = datetime.now(UTC)
    with database.session() as s:
        est = make_establishment(s, name="HMP Thornbury Fen")
        lead = make_user(s, role=Role.LEAD, body="IMB")
        second = make_user(s, role=Role.LEAD, body="IMB")
        staff = make_user(s, role=Role.STAFF, body="IMB")
        other = make_user(s, role=Role.STAFF, body="IMB")
        outside = make_user(s, role=Role.LEAD, body="PPO")
        auditor = make_user(s, role=Role.AUDITOR, body="IMB")
        admin = make_user(s, role=Role.ADMIN, body=None)
        c = cipher()
        reported = open_case(s, wf, c, lead, now, case_data(est, assigned_user_id=staff.id))
        triaged = open_case(s, wf, c, lead, now, case_data(est, assigned_user_id=staff.id))
        advance_case(s, wf, lead, triaged, "record_consent_and_risk", CONSENT, now)
        w = World(est.id, lead.email, second.email, staff.email, other.email, outside.email, auditor.email,
                  admin.email, reported.reference, triaged.reference,
                  {reported.reference: reported.instance_id, triaged.reference: triaged.instance_id})
        s.commit()
    return w


def case_state(database: Database, reference: str) -> dict[str, Any]:
    """What a refused command must leave as it was."""
    row = database.raw(
        "SELECT i.stage, i.version, i.head_seq, c.consent, c.risk, c.outcome, c.description_ciphertext "
        "FROM cases c JOIN wf_instances i ON i.id = c.instance_id WHERE c.reference = :r", r=reference)[0]
    return {**row._asdict(), **count_rows(database, ("wf_history", "wf_deadlines", "case_contacts"))}



# -- one database per module, for commands that must change nothing ---------------------------------
# Creating a PostgreSQL database per test costs ~0.5 s. Tests of refusals share one database and
# world per module: each asserts that its command changed nothing, so the next sees the same rows.


@pytest.fixture(scope="module", params=DATABASES)
def shared_database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("shared") / "shared.db"
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        url = f"sqlite:///{path}"
        engine = create_db_engine(url)
        yield Database("sqlite", url, engine)
        engine.dispose()
        return
    template = request.getfixturevalue("_pg_template")
    name = f"rpr_s_{uuid.uuid4().hex[:10]}"
    admin = _pg_admin()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    engine = create_db_engine(url)
    yield Database("postgresql", url, engine)
    engine.dispose()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(scope="module")
def shared_world(shared_database: Database, wf: Engine) -> World:
    return make_world(shared_database, wf)


@pytest.fixture
def shared_run(shared_database: Database, shared_world: World, tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> Cli:
    """The command, configured for the module's shared database (with ``shared_world`` in it)."""
    monkeypatch.chdir(tmp_path)
    return Cli(base_env(shared_database.url, tmp_path))


# -- the web application -----------------------------------------------------------------------------

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


@functools.cache
def password_hash() -> str:
    return hash_password(PASSWORD)


def csrf_token(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF token on the page"
    return found.group(1)


@dataclass
class Web:
    """The real application on the ``database`` fixture with ``world`` in it; every world user's
    password is ``PASSWORD``; the clock is frozen at the world's creation and moves when told."""

    app: Flask
    rt: Runtime
    clock: FrozenClock
    database: Database
    world: World

    def client(self) -> FlaskClient:
        return self.app.test_client()

    def sign_in(self, email: str, password: str = PASSWORD, client: FlaskClient | None = None) -> FlaskClient:
        client = client or self.client()
        page = client.get("/sign-in")
        response = client.post("/sign-in", data={"email": email, "password": password,
                                                 "csrf_token": csrf_token(page.get_data(as_text=True))})
        assert response.status_code == 302, response.get_data(as_text=True)[:2000]
        return client

    def post(self, client: FlaskClient, path: str, data: dict[str, Any], *, form_page: str | None = None,
             **kw: Any) -> Any:
        """POST ``data`` with the CSRF token read from ``form_page`` (default: ``path``)."""
        page = client.get(form_page or path)
        return client.post(path, data={**data, "csrf_token": csrf_token(page.get_data(as_text=True))}, **kw)


def settings_env(database: Database, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**base_env(database.url, tmp_path), **{f"REPRISALS_{k}": v for k, v in extra.items()}}


@pytest.fixture
def web(database: Database, world: World, tmp_path: Path) -> Iterator[Web]:
    from reprisals.config import load_settings
    from web.app import create_app

    with database.engine.begin() as conn:
        conn.execute(sa.text("UPDATE users SET password_hash = :h"), {"h": password_hash()})
    clock = FrozenClock(datetime.now(UTC))
    rt = Runtime.from_settings(load_settings(settings_env(database, tmp_path), dotenv=None), clock=clock)
    app = create_app(runtime=rt, testing=True)
    yield Web(app, rt, clock, database, world)
    rt.close()
