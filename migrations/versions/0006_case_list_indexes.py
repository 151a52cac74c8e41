"""case list indexes: cases by received time, instances by stage

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 10:00:00

The case list (web/cases.py) reads its default order (newest first) from ix_cases_received_at_id
and stops after a page instead of sorting every visible case; a stage filter finds the instances
at that stage from ix_wf_instances_stage. Neither table is append-only, so the batch operations
drop no triggers.
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.create_index('ix_cases_received_at_id', ['received_at', 'id'], unique=False)
    with op.batch_alter_table('wf_instances', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_wf_instances_stage'), ['stage'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('wf_instances', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_wf_instances_stage'))
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_index('ix_cases_received_at_id')
