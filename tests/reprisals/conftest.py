"""Fixtures for the domain's tests: one protocol engine per process, a cipher, and a committed cast
of users (the owning body IMB, a party body HMIP, an unrelated body PPO)."""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from reprisals.crypto import Cipher
from reprisals.models import Establishment, Role, User
from reprisals.protocol import build_engine
from tests.conftest import PG_ADMIN_URL, Database, _pg_admin
from tests.factories import cipher, make_establishment, make_user
from workflow.db import append_only_ddl, create_all, create_db_engine, seed_rows
from workflow.engine import Engine
from workflow.models import metadata

COUNTED_TABLES = ("cases", "detainees", "wf_instances", "wf_history", "wf_ledger", "case_sequences")


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Overrides tests/conftest.py's template, whose checkpoint runs inside the ``BEGIN IMMEDIATE``
    that every SQLAlchemy connection of ours opens and so fails with "database table is locked".
    The checkpoint runs here on a plain sqlite3 connection, outside any transaction."""
    path = tmp_path_factory.mktemp("tmpl_reprisals") / "template.db"
    engine = create_db_engine(f"sqlite:///{path}")
    create_all(engine)
    engine.dispose()
    checkpoint_sqlite(path)
    return path


@pytest.fixture(scope="session")
def _pg_template() -> Iterator[str]:
    """Overrides tests/conftest.py's template, which fails because workflow.db.create_all passes the
    PL/pgSQL function (with its RAISE '%' placeholders) through ``exec_driver_sql``, and psycopg 3
    then parses '%' as a parameter. Here the same DDL goes to the driver without parameters."""
    name = f"rpr_tmpl_r_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = _pg_admin()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    engine = create_db_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        metadata.create_all(conn)
        cursor = conn.connection.dbapi_connection.cursor()
        for stmt in append_only_ddl("postgresql"):
            cursor.execute(stmt)
        for table, values in seed_rows():
            conn.execute(metadata.tables[table].insert().values(**values))
    engine.dispose()
    yield name
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def checkpoint_sqlite(path: str | Path) -> None:
    """Move everything in the WAL into the database file and empty the WAL."""
    con = sqlite3.connect(path, isolation_level=None)
    try:
        busy, _, _ = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0, "the WAL checkpoint was blocked by another connection"
    finally:
        con.close()


@pytest.fixture(scope="session")
def wf() -> Engine:
    """The protocol engine, built once (the product builds one per process)."""
    return build_engine()


@pytest.fixture
def cipher_() -> Cipher:
    return cipher()


@dataclass
class Cast:
    establishment: Establishment
    lead: User  # IMB lead: owns the cases below
    second_lead: User  # another IMB lead
    staff: User  # IMB staff, assigned to the cases they open
    other_staff: User  # IMB staff, not assigned
    party_lead: User  # HMIP lead: HMIP is party to the cases
    outside_lead: User  # PPO lead: no part in the cases
    auditor: User  # IMB auditor
    admin: User


@pytest.fixture
def cast(database: Database) -> Cast:
    """Users and an establishment, committed so that every session sees them."""
    with database.session() as s:
        c = Cast(
            establishment=make_establishment(s, name="HMP Thornbury Fen"),
            lead=make_user(s, role=Role.LEAD, body="IMB", name="Lead One"),
            second_lead=make_user(s, role=Role.LEAD, body="IMB", name="Lead Two"),
            staff=make_user(s, role=Role.STAFF, body="IMB"),
            other_staff=make_user(s, role=Role.STAFF, body="IMB"),
            party_lead=make_user(s, role=Role.LEAD, body="HMIP"),
            outside_lead=make_user(s, role=Role.LEAD, body="PPO"),
            auditor=make_user(s, role=Role.AUDITOR, body="IMB"),
            admin=make_user(s, role=Role.ADMIN, body=None),
        )
        s.commit()
    return c


def count_rows(database: Database, tables: tuple[str, ...] = COUNTED_TABLES) -> dict[str, int]:
    """Row counts read in a fresh transaction (what another connection sees)."""
    with database.engine.connect() as conn:
        return {t: int(conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in tables}
