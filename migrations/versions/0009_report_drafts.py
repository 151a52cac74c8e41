"""report drafts kept on the server

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27 11:40:00.000000

Review by hand: autogenerate misses triggers and CHECK constraints. A batch operation on an
append-only table (wf_history, wf_ledger) rebuilds it on SQLite and drops its triggers: re-run
workflow.db.append_only_ddl for that table afterwards.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('report_drafts',
    sa.Column('session_id', sa.Integer(), nullable=False),
    sa.Column('ciphertext', sa.Text(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['session_id'], ['web_sessions.id'], name=op.f('fk_report_drafts_session_id_web_sessions'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('session_id', name=op.f('pk_report_drafts'))
    )
    with op.batch_alter_table('report_drafts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_report_drafts_updated_at'), ['updated_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('report_drafts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_report_drafts_updated_at'))

    op.drop_table('report_drafts')
