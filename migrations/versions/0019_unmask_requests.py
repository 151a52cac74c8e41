"""auditors see identity only through a lead's approval: unmask_requests

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 19:00:00.000000

Decision 27. One row per auditor's request to see who the person of a case is (``reprisals.unmasking``): who
asked and when, its state (requested, approved, refused, viewed), who decided and when, when it was seen,
and the seqs of its history events (which hold the reasons, sealed with the case's key). Expiry is computed
from ``decided_at``, never stored. A new table: the downgrade drops it, and with it no append-only trigger.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0019'
down_revision: str | None = '0018'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('unmask_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('requested_by_id', sa.Integer(), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('decided_by_id', sa.Integer(), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('viewed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('request_seq', sa.Integer(), nullable=False),
    sa.Column('decision_seq', sa.Integer(), nullable=True),
    sa.Column('view_seq', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_unmask_requests_case_id_cases')),
    sa.ForeignKeyConstraint(['decided_by_id'], ['users.id'], name=op.f('fk_unmask_requests_decided_by_id_users')),
    sa.ForeignKeyConstraint(['requested_by_id'], ['users.id'],
                            name=op.f('fk_unmask_requests_requested_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_unmask_requests'))
    )
    with op.batch_alter_table('unmask_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_unmask_requests_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_unmask_requests_requested_by_id'), ['requested_by_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('unmask_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_unmask_requests_requested_by_id'))
        batch_op.drop_index(batch_op.f('ix_unmask_requests_case_id'))
    op.drop_table('unmask_requests')
