"""The database's one Alembic history (engine and domain tables share one MetaData).

Alembic is configured here, in code, so the installed package needs no ``alembic.ini``: the
scripts live beside this file and the database URL travels in ``Config.attributes["url"]``,
never through the process environment.

Revisions are numbered (``0001``, ``0002``…) and form one straight line. To write the next one::

    .venv/bin/alembic -c migrations/alembic.ini -x url=sqlite:///instance/dev.db \\
        revision --autogenerate -m "what changes"

``env.py`` numbers it. Autogenerate does not see triggers or CHECK constraints, so review every
script by hand. Every upgrade and downgrade refuses to commit if a table that must be append-only
has lost its guard triggers (SQLite batch operations rebuild tables and drop them silently), so
a revision that rebuilds ``wf_history`` or ``wf_ledger`` must re-run ``append_only_ddl`` itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from workflow.db import create_db_engine

SCRIPT_LOCATION = Path(__file__).resolve().parent


def alembic_config(url: str) -> Config:
    """An Alembic Config for the database at ``url``, reading no file and no environment."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.set_main_option("path_separator", "os")
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    # Run env.py for plain `revision` too, so that it can number the new script.
    config.set_main_option("revision_environment", "true")
    config.attributes["url"] = url
    return config


def upgrade(url: str, revision: str = "head", encryption_keys: Sequence[str] = ()) -> None:
    """Upgrade the database to ``revision`` in one transaction (on SQLite too). Revisions that re-encrypt
    (0017) need the configured ``encryption_keys`` when the database holds cases."""
    config = alembic_config(url)
    config.attributes["encryption_keys"] = list(encryption_keys)
    command.upgrade(config, revision)


def downgrade(url: str, revision: str, encryption_keys: Sequence[str] = ()) -> None:
    """Downgrade the database to ``revision`` (``"base"`` drops everything) in one transaction."""
    config = alembic_config(url)
    config.attributes["encryption_keys"] = list(encryption_keys)
    command.downgrade(config, revision)


def current(url: str) -> str | None:
    """The database's revision, or None if it has never been migrated (or is at base)."""
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def heads() -> list[str]:
    """The head revisions of the scripts (exactly one while the history is linear)."""
    return list(ScriptDirectory(str(SCRIPT_LOCATION)).get_heads())
