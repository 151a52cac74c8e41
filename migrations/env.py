"""Alembic environment. Run it through :mod:`migrations` (or ``alembic -c migrations/alembic.ini
-x url=…``); the URL comes from ``config.attributes["url"]`` or ``-x url=``, never the environment.

Online runs use :func:`workflow.db.create_db_engine` and put the whole run in one transaction on
both dialects (our SQLite engine issues its own ``BEGIN IMMEDIATE``, so SQLite DDL is
transactional too). On SQLite, foreign keys are switched off for the run and checked before
commit, because batch operations drop and rebuild tables, and dropping a referenced table with
foreign keys on deletes or refuses its rows. Before commit, every append-only table that exists
must still carry its guard triggers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from alembic import context
from alembic.operations import ops
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from reprisals.schema import METADATA
from workflow.db import append_only_ddl, create_db_engine
from workflow.models import APPEND_ONLY_TABLES

config = context.config
target_metadata = list(METADATA)

_TRIGGER = re.compile(r"CREATE TRIGGER (\w+) BEFORE [\w ]+? ON (\w+)")


def _url() -> str:
    url = config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise RuntimeError("no database URL: use migrations.upgrade(url) or `alembic -x url=…`")
    return str(url)


def _number_revision(_context: Any, _revision: Any, directives: list[Any]) -> None:
    """Give a new script the next numbered id (``0002`` after ``0001``) unless one was chosen."""
    script = directives[0]
    if not isinstance(script, ops.MigrationScript) or re.fullmatch(r"\d{4}", script.rev_id or ""):
        return
    head = ScriptDirectory.from_config(config).get_current_head()
    script.rev_id = f"{int(head) + 1 if head else 1:04d}"


def expected_guards(dialect: str, tables: Iterable[str]) -> dict[str, set[str]]:
    """The guard triggers each of ``tables`` must carry, read from ``append_only_ddl``."""
    wanted = set(tables)
    out: dict[str, set[str]] = {t: set() for t in wanted}
    for stmt in append_only_ddl(dialect):
        match = _TRIGGER.match(stmt)
        if match and match[2] in wanted:
            out[match[2]].add(match[1])
    return out


def enabled_triggers(connection: Connection) -> dict[str, set[str]]:
    """Triggers per table in the current schema (on PostgreSQL, only those not disabled)."""
    if connection.dialect.name == "sqlite":
        sql = "SELECT tbl_name, name FROM sqlite_master WHERE type = 'trigger'"
    else:
        sql = (
            "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE NOT t.tgisinternal AND t.tgenabled <> 'D' "
            "AND c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())"
        )
    out: dict[str, set[str]] = {}
    for table, name in connection.exec_driver_sql(sql):
        out.setdefault(table, set()).add(name)
    return out


def _check_append_only_guards(connection: Connection) -> None:
    present = set(inspect(connection).get_table_names()) & set(APPEND_ONLY_TABLES)
    found = enabled_triggers(connection)
    for table, names in expected_guards(connection.dialect.name, present).items():
        missing = names - found.get(table, set())
        if missing:
            raise RuntimeError(
                f"migration left {table} without its append-only triggers {sorted(missing)}: "
                "re-run workflow.db.append_only_ddl for it in the revision"
            )


def _check_foreign_keys(connection: Connection) -> None:
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise RuntimeError(f"migration broke foreign keys: {broken[:5]}")


def run_migrations_offline() -> None:
    url = _url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.startswith("sqlite"),
        compare_type=True,
        transactional_ddl=True,
        process_revision_directives=_number_revision,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = _url()
    sqlite = url.startswith("sqlite")
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            if sqlite:
                # Must be set outside a transaction (inside one SQLite ignores it), so on the
                # driver connection before SQLAlchemy begins one.
                cursor = connection.connection.cursor()
                cursor.execute("PRAGMA foreign_keys=OFF")
                cursor.close()
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=sqlite,
                compare_type=True,
                transactional_ddl=True,
                process_revision_directives=_number_revision,
            )
            with context.begin_transaction():
                context.run_migrations()
                if sqlite:
                    _check_foreign_keys(connection)
                _check_append_only_guards(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
