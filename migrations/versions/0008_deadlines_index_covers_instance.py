"""The deadlines' (status, due_at) index also covers instance_id: the lead queue and its counts walk
running deadlines in due order and need only the instance of each.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 09:31:00

Review by hand: autogenerate misses triggers and CHECK constraints. A batch operation on an
append-only table (wf_history, wf_ledger) rebuilds it on SQLite and drops its triggers: re-run
workflow.db.append_only_ddl for that table afterwards.
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index('ix_wf_deadlines_status_due_at', table_name='wf_deadlines')
    op.create_index('ix_wf_deadlines_status_due_at', 'wf_deadlines', ['status', 'due_at', 'instance_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_wf_deadlines_status_due_at', table_name='wf_deadlines')
    op.create_index('ix_wf_deadlines_status_due_at', 'wf_deadlines', ['status', 'due_at'], unique=False)
