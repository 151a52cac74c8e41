"""cases find the cases opened from them: an index on cases.linked_case_id

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 10:00:00.000000

"Open a linked case": a case closed longer ago than it may be reopened is followed by a new case that
points at it (``cases.linked_case_id``, nullable, a foreign key to ``cases.id`` since 0001). The earlier
case's page and JSON list the cases opened from it by that column, so it is indexed. The column and its
foreign key exist already; this revision adds only the index. ``cases`` is not append-only, so the
batch operation drops no triggers.
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cases_linked_case_id'), ['linked_case_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cases_linked_case_id'))
