"""Database plumbing the engine needs on every backend: SQLite made safe for writers, and the
database-level guards that make history tables append-only."""

from __future__ import annotations

import contextlib
import random
import sqlite3
import time
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection

from workflow.history import LEDGER, LEDGER_GENESIS
from workflow.models import APPEND_ONLY_TABLES, ChainHead, metadata

SQLITE_BUSY_TIMEOUT_MS = 30_000
# An execution option a session may put on its connection for one transaction (``Session.connection(
# execution_options={SQLITE_SYNCHRONOUS: "NORMAL"})``): that transaction's commit does not wait for the
# disk. Only for work whose lost tail is harmless after a power loss (outbox delivery: decision 10);
# every other transaction keeps ``synchronous=FULL``. Other databases ignore it.
SQLITE_SYNCHRONOUS = "sqlite_synchronous"
_SYNCHRONOUS_LEVELS = ("FULL", "NORMAL")


def create_db_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine. On SQLite: WAL, foreign keys on, a busy timeout, and every transaction
    begins with ``BEGIN IMMEDIATE`` so writers queue instead of failing on lock upgrades (SQLite
    ignores ``SELECT … FOR UPDATE``). Commits wait for the disk (``synchronous=FULL``) unless the
    transaction asks otherwise with the ``SQLITE_SYNCHRONOUS`` execution option."""
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {})
        kwargs["connect_args"].setdefault("timeout", SQLITE_BUSY_TIMEOUT_MS / 1000)
        if ":memory:" in url or url in ("sqlite://", "sqlite+pysqlite://"):
            raise ValueError("an in-memory SQLite database cannot be shared between sessions; use a file")
        # A pooled connection (SQLAlchemy's default QueuePool for files): closing a connection
        # checkpoints the WAL, so opening one per transaction would double every commit.
        engine = create_engine(url, **kwargs)
        _make_sqlite_safe(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _make_sqlite_safe(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from pysqlite so that BEGIN is ours.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=FULL")
        cur.close()
        _record.info[SQLITE_SYNCHRONOUS] = "FULL"

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # The level lives on the pooled DBAPI connection and can only change outside a transaction, so
        # it is set here, before BEGIN, whenever this transaction wants another level than the last one.
        wanted = conn.get_execution_options().get(SQLITE_SYNCHRONOUS, "FULL")
        if wanted not in _SYNCHRONOUS_LEVELS:
            raise ValueError(f"{SQLITE_SYNCHRONOUS} must be one of {', '.join(_SYNCHRONOUS_LEVELS)}, not {wanted!r}")
        info = conn.connection.info
        if info.get(SQLITE_SYNCHRONOUS) != wanted:
            conn.exec_driver_sql(f"PRAGMA synchronous={wanted}")
            info[SQLITE_SYNCHRONOUS] = wanted
        _begin_immediate(conn)


# SQLite's own busy handler sleeps ever longer between tries (up to 100 ms each), so a writer waiting for
# the lock can miss every short gap another writer leaves between its transactions (the sweep leaves 5 ms
# between batches) and wait for the whole run. BEGIN IMMEDIATE is therefore tried without SQLite's wait
# and retried here every millisecond or so, up to the same busy timeout; other statements keep SQLite's.
_POLL_S = (0.0005, 0.0015)


def _begin_immediate(conn: Connection) -> None:
    dbapi_conn = conn.connection.dbapi_connection
    assert dbapi_conn is not None
    give_up = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    try:
        try:
            dbapi_conn.execute("PRAGMA busy_timeout=0")
            while time.monotonic() < give_up:
                try:
                    dbapi_conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) and "busy" not in str(exc):
                        break
                time.sleep(random.uniform(*_POLL_S))
        except sqlite3.Error:
            pass  # a damaged file, a closed connection: raised just below, by SQLAlchemy
        # Timed out, or another error: once more through SQLAlchemy (still without SQLite's wait), which
        # raises it as its own exception — what callers catch, as before.
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    finally:
        with contextlib.suppress(sqlite3.Error):
            dbapi_conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")


def append_only_ddl(dialect: str, tables: tuple[str, ...] = APPEND_ONLY_TABLES) -> list[str]:
    """Statements that make the given tables refuse UPDATE, DELETE (and TRUNCATE on PostgreSQL)."""
    out: list[str] = []
    if dialect == "postgresql":
        out.append(
            "CREATE OR REPLACE FUNCTION wf_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION '% on % refused: history is append-only', TG_OP, TG_TABLE_NAME "
            "USING ERRCODE = 'insufficient_privilege'; END $$"
        )
        for t in tables:
            out.append(f"CREATE TRIGGER {t}_append_only BEFORE UPDATE OR DELETE ON {t} "
                       "FOR EACH ROW EXECUTE FUNCTION wf_refuse_change()")
            out.append(f"CREATE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON {t} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION wf_refuse_change()")
    elif dialect == "sqlite":
        for t in tables:
            for op in ("UPDATE", "DELETE"):
                out.append(f"CREATE TRIGGER {t}_no_{op.lower()} BEFORE {op} ON {t} "
                           f"BEGIN SELECT RAISE(ABORT, '{op} on {t} refused: history is append-only'); END")
    else:
        raise ValueError(f"no append-only triggers for dialect {dialect}")
    return out


def drop_append_only_ddl(dialect: str, tables: tuple[str, ...] = APPEND_ONLY_TABLES, *,
                         keep_function: bool = False) -> list[str]:
    """The reverse of :func:`append_only_ddl`; ``keep_function`` leaves PostgreSQL's shared trigger
    function for the tables still guarded by it."""
    out: list[str] = []
    if dialect == "postgresql":
        for t in tables:
            out += [f"DROP TRIGGER IF EXISTS {t}_append_only ON {t}", f"DROP TRIGGER IF EXISTS {t}_no_truncate ON {t}"]
        if not keep_function:
            out.append("DROP FUNCTION IF EXISTS wf_refuse_change()")
    else:
        for t in tables:
            out += [f"DROP TRIGGER IF EXISTS {t}_no_update", f"DROP TRIGGER IF EXISTS {t}_no_delete"]
    return out


def seed_rows() -> list[tuple[str, dict[str, Any]]]:
    """Rows the engine needs before first use (the ledger head), as (table, values)."""
    return [(ChainHead.__tablename__, {"name": LEDGER, "seq": 0, "hash": LEDGER_GENESIS})]


def create_all(engine: Engine) -> None:
    """Create every table on this MetaData, the append-only triggers and the seed rows (tests and
    tools; production uses Alembic, whose initial revision does the same)."""
    with engine.begin() as conn:
        metadata.create_all(conn)
        for stmt in append_only_ddl(conn.dialect.name):
            # Through text(), as Alembic's op.execute does: exec_driver_sql hands psycopg 3 a
            # parameter set, and it then reads the '%' of the PL/pgSQL RAISE as a placeholder.
            conn.execute(text(stmt))
        for table, values in seed_rows():
            conn.execute(metadata.tables[table].insert().values(**values))
