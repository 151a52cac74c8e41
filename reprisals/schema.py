"""All tables of the product: the engine's and the domain's (one MetaData) and the outbox's."""

from __future__ import annotations

import sqlalchemy as sa

import notifications.models
import reprisals.access_log
import reprisals.accounts
import reprisals.admin
import reprisals.models
import reprisals.protocol_store
import reprisals.sealing
import reprisals.two_factor
import reprisals.unmasking  # noqa: F401  (these register the domain's tables on the engine's MetaData)
import workflow.db
import workflow.models

# The domain's append-only tables, guarded like history (workflow.db.append_only_ddl).
DOMAIN_APPEND_ONLY: tuple[str, ...] = ("access_log",)

METADATA: tuple[sa.MetaData, ...] = (workflow.models.metadata, notifications.models.metadata)


def create_all(engine: sa.Engine) -> None:
    """Create everything directly (tests and tools); production uses Alembic (`reprisals db upgrade`).
    Like the migrations, it inserts the four bodies of the sanctions protocol."""
    from sqlalchemy.orm import Session

    from reprisals.reference import seed_protocol_bodies

    workflow.db.create_all(engine)
    with engine.begin() as conn:
        notifications.models.metadata.create_all(conn)
        for stmt in workflow.db.append_only_ddl(conn.dialect.name, DOMAIN_APPEND_ONLY):
            conn.execute(sa.text(stmt))
    with Session(engine) as session:
        seed_protocol_bodies(session)
        session.commit()


def combined_metadata() -> sa.MetaData:
    """One MetaData holding a copy of every table, for schema comparisons."""
    combined = sa.MetaData(naming_convention=workflow.models.NAMING_CONVENTION)
    for md in METADATA:
        for table in md.tables.values():
            table.to_metadata(combined)
    return combined
