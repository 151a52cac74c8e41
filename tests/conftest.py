"""Shared fixtures. Every database test runs twice: on SQLite (a file) and on PostgreSQL.

PostgreSQL is required (CI starts it). Set REPRISALS_TEST_DATABASES=sqlite to run only the SQLite
half on a machine without it; CI never sets it.
"""

from __future__ import annotations

import os
import queue
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from reprisals.schema import create_all
from workflow.clock import FrozenClock
from workflow.db import create_db_engine

PG_ADMIN_URL = os.environ.get("REPRISALS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
DATABASES = [d.strip() for d in os.environ.get("REPRISALS_TEST_DATABASES", "sqlite,postgresql").split(",") if d.strip()]
# A test whose subject does not depend on the database (a page, a file, a command's words) runs on one;
# row logic (history, the access log, the outbox, locks) runs on both.
ONE_DATABASE = pytest.mark.parametrize("database", DATABASES[:1], indirect=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``@pytest.mark.postgresql_only`` tests exist only for PostgreSQL (a scenario SQLite cannot
    have, such as TRUNCATE): their SQLite instances are not collected, rather than skipped."""
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_sqlite = callspec is not None and callspec.params.get("database") == "sqlite"
        (drop if on_sqlite and item.get_closest_marker("postgresql_only") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@dataclass
class Database:
    """A fresh, fully created database for one test."""

    dialect: str
    url: str
    engine: sa.Engine

    def session(self) -> Session:
        return sessionmaker(self.engine, expire_on_commit=False)()

    def raw(self, sql: str, **params: object) -> list[sa.Row]:
        """Run raw SQL in its own transaction (tampering tests). Returns rows for SELECTs."""
        with self.engine.begin() as conn:
            result = conn.execute(sa.text(sql), params)
            return list(result) if result.returns_rows else []

    def disable_append_only(self) -> None:
        """What a database superuser can do: switch off the append-only triggers."""
        from reprisals.schema import DOMAIN_APPEND_ONLY
        from workflow.db import drop_append_only_ddl
        from workflow.models import APPEND_ONLY_TABLES

        with self.engine.begin() as conn:
            for stmt in drop_append_only_ddl(self.dialect, (*APPEND_ONLY_TABLES, *DOMAIN_APPEND_ONLY)):
                conn.exec_driver_sql(stmt)


def checkpoint_sqlite(path: str | Path) -> None:
    """Move everything in the WAL into the database file and empty the WAL. On a plain sqlite3
    connection: our engines open every transaction with BEGIN IMMEDIATE, inside which a checkpoint
    cannot run."""
    con = sqlite3.connect(path, isolation_level=None)
    try:
        busy, _, _ = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0, "the WAL checkpoint was blocked by another connection"
    finally:
        con.close()


def _pg_admin() -> sa.Engine:
    return sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tmpl") / "template.db"
    engine = create_db_engine(f"sqlite:///{path}")
    create_all(engine)
    engine.dispose()
    checkpoint_sqlite(path)
    return path


@pytest.fixture(scope="session")
def _pg_template() -> Iterator[str]:
    name = f"rpr_tmpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = _pg_admin()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    engine = create_db_engine(url, poolclass=sa.pool.NullPool)
    create_all(engine)
    engine.dispose()
    yield name
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


class _PgDatabases:
    """Fresh PostgreSQL databases from the template, made one ahead and dropped behind, on a thread of this
    worker: ``DROP DATABASE`` waits for a checkpoint (about a second here) and ``CREATE DATABASE`` copies the
    template; neither needs the test to wait for it. Every test still gets a database no test used before."""

    def __init__(self, template: str) -> None:
        self.template = template
        self.admin = _pg_admin()
        self.ready: queue.Queue[str] = queue.Queue()
        self.work: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="pg-databases", daemon=True)
        self.thread.start()
        self.work.put(("create", self._name()))

    @staticmethod
    def _name() -> str:
        return f"rpr_t_{uuid.uuid4().hex[:10]}"

    def _create(self, name: str) -> None:
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')

    def _drop(self, name: str) -> None:
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _run(self) -> None:
        while (task := self.work.get()) is not None:
            what, name = task
            try:
                if what == "create":
                    self._create(name)
                    self.ready.put(name)
                else:
                    self._drop(name)
            except Exception:  # a spare that failed is made again in the test's own thread
                if what == "create":
                    self.ready.put("")
            finally:
                self.work.task_done()

    def take(self) -> str:
        name = self.ready.get()
        self.work.put(("create", self._name()))  # the next test's, while this one runs
        if not name:
            name = self._name()
            self._create(name)
        return name

    def give_back(self, name: str) -> None:
        self.work.put(("drop", name))

    def close(self) -> None:
        self.work.join()
        while not self.ready.empty():
            if spare := self.ready.get():
                self._drop(spare)
        self.work.put(None)
        self.thread.join(timeout=60)
        self.admin.dispose()


@pytest.fixture(scope="session")
def _pg_databases(_pg_template: str) -> Iterator[_PgDatabases]:
    pool = _PgDatabases(_pg_template)
    yield pool
    pool.close()


@pytest.fixture(params=DATABASES)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        template = request.getfixturevalue("_sqlite_template")
        path = tmp_path / "test.db"
        shutil.copyfile(template, path)
        url = f"sqlite:///{path}"
        engine = create_db_engine(url)
        yield Database("sqlite", url, engine)
        engine.dispose()
    else:
        pool: _PgDatabases = request.getfixturevalue("_pg_databases")
        name = pool.take()
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
        engine = create_db_engine(url, pool_size=25, max_overflow=10)
        yield Database("postgresql", url, engine)
        engine.dispose()
        pool.give_back(name)


@dataclass(frozen=True)
class EmptyDatabase:
    """A database with no tables at all (migrations, `db upgrade`)."""

    dialect: str
    url: str


@pytest.fixture(params=DATABASES)
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EmptyDatabase]:
    if request.param == "sqlite":
        yield EmptyDatabase("sqlite", f"sqlite:///{tmp_path / 'empty.db'}")
        return
    name = f"rpr_e_{uuid.uuid4().hex[:10]}"
    admin = _pg_admin()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield EmptyDatabase("postgresql", PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def session(database: Database) -> Iterator[Session]:
    s = database.session()
    yield s
    s.rollback()
    s.close()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2025, 4, 16, 9, 30, tzinfo=UTC))
