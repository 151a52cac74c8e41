"""Migrations: one numbered, linear history whose head is exactly the models' schema, with the
append-only guards on wf_history and wf_ledger after every step, up and down.

Each database test starts from an empty database (not the ``database`` fixture, which is built
with ``create_all``): a file on SQLite, a new database on PostgreSQL.
"""

from __future__ import annotations

import io
import re
import shutil
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

import migrations
from reprisals.schema import combined_metadata
from tests.conftest import EmptyDatabase
from workflow.db import create_db_engine
from workflow.history import LEDGER, LEDGER_GENESIS

metadata = combined_metadata()  # every table: the engine's and the domain's, and the outbox

# Written out rather than derived from workflow.db, so that renaming a trigger is a visible change.
GUARD_TRIGGERS = {
    "sqlite": {
        "wf_history": {"wf_history_no_update", "wf_history_no_delete"},
        "wf_ledger": {"wf_ledger_no_update", "wf_ledger_no_delete"},
        "access_log": {"access_log_no_update", "access_log_no_delete"},
    },
    "postgresql": {
        "wf_history": {"wf_history_append_only", "wf_history_no_truncate"},
        "wf_ledger": {"wf_ledger_append_only", "wf_ledger_no_truncate"},
        "access_log": {"access_log_append_only", "access_log_no_truncate"},
    },
}


@contextmanager
def connected(db: EmptyDatabase) -> Iterator[sa.Connection]:
    engine = create_db_engine(db.url)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def run(db: EmptyDatabase, sql: str) -> list[tuple[Any, ...]]:
    engine = create_db_engine(db.url)
    try:
        with engine.begin() as conn:
            result = conn.exec_driver_sql(sql)
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()


def list_triggers(db: EmptyDatabase) -> dict[str, set[str]]:
    """Enabled user triggers per table, from the catalogue."""
    if db.dialect == "sqlite":
        sql = "SELECT tbl_name, name FROM sqlite_master WHERE type = 'trigger'"
    else:
        sql = (
            "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE NOT t.tgisinternal AND t.tgenabled <> 'D'"
        )
    found: dict[str, set[str]] = {}
    for table, name in run(db, sql):
        found.setdefault(table, set()).add(name)
    return found


def table_names(db: EmptyDatabase) -> set[str]:
    with connected(db) as conn:
        return set(sa.inspect(conn).get_table_names())


def assert_guards_match_tables(db: EmptyDatabase) -> None:
    """Every append-only table that exists carries exactly its guard triggers; nothing else does."""
    tables = table_names(db)
    expected = {t: names for t, names in GUARD_TRIGGERS[db.dialect].items() if t in tables}
    assert list_triggers(db) == expected
    if db.dialect == "postgresql":
        functions = run(db, "SELECT proname FROM pg_proc WHERE proname = 'wf_refuse_change'")
        assert len(functions) == (1 if expected else 0)


def schema_diff(db: EmptyDatabase) -> list[object]:
    with connected(db) as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        return list(compare_metadata(context, metadata))


def constraint_names(db: EmptyDatabase) -> dict[str, set[str]]:
    """Names of primary keys, foreign keys, unique and CHECK constraints and indexes, per table.
    Autogenerate ignores CHECK constraints and constraint names, so they are compared here."""
    out: dict[str, set[str]] = {}
    with connected(db) as conn:
        inspector = sa.inspect(conn)
        for table in metadata.tables:
            names: set[str | None] = {inspector.get_pk_constraint(table)["name"]}
            names |= {fk["name"] for fk in inspector.get_foreign_keys(table)}
            names |= {uq["name"] for uq in inspector.get_unique_constraints(table)}
            names |= {ck["name"] for ck in inspector.get_check_constraints(table)}
            names |= {ix["name"] for ix in inspector.get_indexes(table) if not ix.get("duplicates_constraint")}
            out[table] = {str(n) for n in names}
    return out


def model_constraint_names() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for name, table in metadata.tables.items():
        names = {c.name for c in table.constraints} | {ix.name for ix in table.indexes}
        assert None not in names, f"{name} has an unnamed constraint"
        out[name] = {str(n) for n in names}
    return out


def assert_append_only(db: EmptyDatabase) -> None:
    """UPDATE and DELETE (and TRUNCATE on PostgreSQL) on the history tables fail in the database."""
    run(
        db,
        "INSERT INTO wf_instances (spec_key, spec_version, stage, variables, calendar, created_at, "
        "stage_entered_at, updated_at, head_seq, head_hash, version) VALUES ('t', 1, 'start', '{}', NULL, "
        "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 1, 'h1', 1)",
    )
    (instance_id,) = run(db, "SELECT max(id) FROM wf_instances")[0]
    run(
        db,
        "INSERT INTO wf_history (instance_id, seq, kind, at, data, prev_hash, hash) "
        f"VALUES ({instance_id}, 1, 'started', CURRENT_TIMESTAMP, '{{}}', 'h0', 'h1')",
    )
    run(
        db,
        f"INSERT INTO wf_ledger (seq, instance_id, genesis_hash, prev_hash, hash) "
        f"VALUES ({instance_id}, {instance_id}, 'h1', 'l0', 'l1')",
    )
    before = {t: run(db, f"SELECT * FROM {t} ORDER BY 1") for t in ("wf_history", "wf_ledger")}
    attempts = [
        "UPDATE wf_history SET kind = 'forged'",
        f"DELETE FROM wf_history WHERE instance_id = {instance_id}",
        "DELETE FROM wf_history",  # SQLite's truncate optimisation, if triggers did not stop it
        "UPDATE wf_ledger SET hash = 'forged'",
        f"DELETE FROM wf_ledger WHERE instance_id = {instance_id}",
        "DELETE FROM wf_ledger",
    ]
    if db.dialect == "postgresql":
        attempts += ["TRUNCATE wf_history", "TRUNCATE wf_ledger", "TRUNCATE wf_instances CASCADE"]
    for sql in attempts:
        with pytest.raises(sa.exc.DBAPIError, match="refused: history is append-only"):
            run(db, sql)
    assert {t: run(db, f"SELECT * FROM {t} ORDER BY 1") for t in before} == before
    assert before["wf_history"] and before["wf_ledger"]


def assert_ledger_head_seeded(db: EmptyDatabase) -> None:
    assert run(db, "SELECT name, seq, hash FROM wf_chain_heads") == [(LEDGER, 0, LEDGER_GENESIS)]


# --- The scripts ---------------------------------------------------------------------------


def test_revisions_are_numbered_and_form_one_line_with_one_head() -> None:
    script = ScriptDirectory(str(migrations.SCRIPT_LOCATION))
    revisions = sorted(script.walk_revisions(), key=lambda r: r.revision)
    files = sorted(p.name for p in (migrations.SCRIPT_LOCATION / "versions").glob("*.py"))

    assert revisions, "no revisions"
    # Alembic skips a file without a revision; every file must be one of the chain.
    assert sorted(Path(r.path).name for r in revisions) == files
    for number, rev in enumerate(revisions, start=1):
        assert rev.revision == f"{number:04d}"
        assert re.fullmatch(rf"{rev.revision}_[a-z0-9_]+\.py", Path(rev.path).name)
        assert rev.down_revision == (f"{number - 1:04d}" if number > 1 else None)
        assert not rev.branch_labels and not rev.dependencies
    assert migrations.heads() == [revisions[-1].revision]
    assert script.get_bases() == ["0001"]


def test_alembic_config_carries_url_in_attributes_not_in_options() -> None:
    config = migrations.alembic_config("sqlite:///x.db")
    assert config.attributes["url"] == "sqlite:///x.db"
    assert config.get_main_option("sqlalchemy.url") is None
    assert Path(config.get_main_option("script_location") or "") == migrations.SCRIPT_LOCATION
    assert config.config_file_name is None


@pytest.mark.parametrize(
    ("url", "guard_triggers"),
    [
        ("sqlite:///never-created.db", GUARD_TRIGGERS["sqlite"]),
        ("postgresql+psycopg://nobody@127.0.0.1:1/never", GUARD_TRIGGERS["postgresql"]),
    ],
    ids=["sqlite", "postgresql"],
)
def test_offline_sql_has_one_transaction_with_the_triggers_and_the_ledger_head(
    url: str, guard_triggers: dict[str, set[str]]
) -> None:
    config = migrations.alembic_config(url)
    config.output_buffer = io.StringIO()

    command.upgrade(config, "head", sql=True)

    sql = config.output_buffer.getvalue()
    assert sql.count("BEGIN;") == 1 and sql.rstrip().endswith("COMMIT;")
    for table, names in guard_triggers.items():
        for name in names:
            assert re.search(rf"CREATE TRIGGER {name} BEFORE [A-Z ]+ ON {table}\b", sql)
    assert f"INSERT INTO wf_chain_heads (name, seq, hash) VALUES ('{LEDGER}', 0, '{LEDGER_GENESIS}')" in sql


# --- Against an empty database --------------------------------------------------------------


def test_upgrade_of_an_empty_database_gives_exactly_the_models_schema(
    empty_db: EmptyDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no alembic.ini in sight: configuration is in code
    assert migrations.current(empty_db.url) is None

    migrations.upgrade(empty_db.url)

    assert migrations.current(empty_db.url) == migrations.heads()[0]
    assert schema_diff(empty_db) == []
    assert table_names(empty_db) == set(metadata.tables) | {"alembic_version"}
    assert constraint_names(empty_db) == model_constraint_names()


def test_history_tables_refuse_update_delete_and_truncate_when_upgraded(empty_db: EmptyDatabase) -> None:
    migrations.upgrade(empty_db.url)

    assert_guards_match_tables(empty_db)
    assert_append_only(empty_db)


def test_ledger_head_row_exists_when_upgraded(empty_db: EmptyDatabase) -> None:
    migrations.upgrade(empty_db.url)

    assert_ledger_head_seeded(empty_db)


def test_guards_hold_after_every_step_up_down_to_base_and_up_again(empty_db: EmptyDatabase) -> None:
    script = ScriptDirectory(str(migrations.SCRIPT_LOCATION))
    upward = [r.revision for r in reversed(list(script.walk_revisions()))]

    for rev in upward:
        migrations.upgrade(empty_db.url, rev)
        assert migrations.current(empty_db.url) == rev
        assert_guards_match_tables(empty_db)
    for _ in upward:
        migrations.downgrade(empty_db.url, "-1")
        assert_guards_match_tables(empty_db)

    assert migrations.current(empty_db.url) is None
    assert table_names(empty_db) == {"alembic_version"}
    assert list_triggers(empty_db) == {}

    migrations.upgrade(empty_db.url)

    assert_guards_match_tables(empty_db)
    assert schema_diff(empty_db) == []
    assert_ledger_head_seeded(empty_db)
    assert_append_only(empty_db)


# --- The environment's own checks, against a throw-away revision after the real head ----------

REAL_HEAD = migrations.heads()[0]
NEXT = f"{int(REAL_HEAD) + 1:04d}"

REVISION_NEXT = """
import sqlalchemy as sa
from alembic import op

from workflow.db import append_only_ddl

revision = "NEXT"
down_revision = "REAL_HEAD"
branch_labels = None
depends_on = None


def upgrade():
BODY


def downgrade():
    pass
"""

# A table rebuild, as SQLite batch operations do: the old table is dropped, and its triggers with it.
REBUILD_HISTORY = """
with op.batch_alter_table("wf_history", recreate="always") as batch:
    batch.add_column(sa.Column("note", sa.String(20)))
"""
REAPPLY_HISTORY_GUARDS = """
for stmt in append_only_ddl(op.get_context().dialect.name, ("wf_history",)):
    op.execute(stmt)
"""
REBUILD_INSTANCES = """
with op.batch_alter_table("wf_instances", recreate="always") as batch:
    batch.add_column(sa.Column("note", sa.String(20)))
"""
DANGLING_PARTY = """
op.execute("INSERT INTO bodies (code, name) VALUES ('X', 'X')")
op.execute("INSERT INTO case_parties (case_id, body_code) VALUES (999, 'X')")
"""


def config_with_next(db: EmptyDatabase, tmp_path: Path, body: str) -> Config:
    """Config for a copy of the real scripts plus a revision after the head whose upgrade runs ``body``."""
    location = tmp_path / "scripts"
    shutil.copytree(migrations.SCRIPT_LOCATION, location, ignore=shutil.ignore_patterns("__pycache__"))
    script = (REVISION_NEXT.replace("BODY", textwrap.indent(body.strip(), "    "))
              .replace("REAL_HEAD", REAL_HEAD).replace("NEXT", NEXT))
    (location / "versions" / f"{NEXT}_test_only.py").write_text(script)
    config = migrations.alembic_config(db.url)
    config.set_main_option("script_location", str(location))
    return config


def column_names(db: EmptyDatabase, table: str) -> set[str]:
    with connected(db) as conn:
        return {c["name"] for c in sa.inspect(conn).get_columns(table)}


def test_upgrade_rolls_back_when_a_revision_drops_the_append_only_triggers(
    empty_db: EmptyDatabase, tmp_path: Path
) -> None:
    config = config_with_next(empty_db, tmp_path, REBUILD_HISTORY)
    command.upgrade(config, REAL_HEAD)

    with pytest.raises(RuntimeError, match="wf_history without its append-only triggers"):
        command.upgrade(config, NEXT)

    assert migrations.current(empty_db.url) == REAL_HEAD
    assert "note" not in column_names(empty_db, "wf_history")
    assert_guards_match_tables(empty_db)
    assert_append_only(empty_db)


def test_upgrade_keeps_guards_when_a_revision_rebuilds_a_history_table_and_reapplies_them(
    empty_db: EmptyDatabase, tmp_path: Path
) -> None:
    config = config_with_next(empty_db, tmp_path, REBUILD_HISTORY + REAPPLY_HISTORY_GUARDS)

    command.upgrade(config, "head")

    assert migrations.current(empty_db.url) == NEXT
    assert "note" in column_names(empty_db, "wf_history")
    assert_guards_match_tables(empty_db)
    assert_append_only(empty_db)


@pytest.mark.parametrize("empty_db", ["sqlite"], indirect=True)
def test_sqlite_rebuild_of_a_referenced_table_keeps_rows_when_upgraded(empty_db: EmptyDatabase, tmp_path: Path) -> None:
    # With foreign keys on, dropping wf_instances during the rebuild would delete (or refuse) the
    # rows history points at; the environment turns them off for the run and checks them after.
    config = config_with_next(empty_db, tmp_path, REBUILD_INSTANCES)
    command.upgrade(config, REAL_HEAD)
    assert_append_only(empty_db)  # leaves an instance with history and a ledger entry
    before = run(empty_db, "SELECT id, instance_id FROM wf_history")

    command.upgrade(config, NEXT)

    assert "note" in column_names(empty_db, "wf_instances")
    assert run(empty_db, "SELECT id, instance_id FROM wf_history") == before
    assert run(empty_db, "PRAGMA foreign_key_check") == []
    assert run(empty_db, "PRAGMA foreign_keys") == [(1,)]


@pytest.mark.parametrize("empty_db", ["sqlite"], indirect=True)
def test_sqlite_upgrade_rolls_back_when_a_revision_leaves_a_dangling_foreign_key(
    empty_db: EmptyDatabase, tmp_path: Path
) -> None:
    config = config_with_next(empty_db, tmp_path, DANGLING_PARTY)
    command.upgrade(config, REAL_HEAD)

    with pytest.raises(RuntimeError, match="broke foreign keys"):
        command.upgrade(config, NEXT)

    assert migrations.current(empty_db.url) == REAL_HEAD
    assert run(empty_db, "SELECT count(*) FROM case_parties") == [(0,)]
