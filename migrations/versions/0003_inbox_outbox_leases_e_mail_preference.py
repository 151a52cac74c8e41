"""The in-app inbox (inbox_items), the outbox claim lease (outbox.claimed_until) and each
user's e-mail preference (users.email_notifications, on by default).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 07:23:29.597847

Review by hand: autogenerate misses triggers and CHECK constraints. A batch operation on an
append-only table (wf_history, wf_ledger) rebuilds it on SQLite and drops its triggers: re-run
workflow.db.append_only_ddl for that table afterwards.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('inbox_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('message_key', sa.String(length=200), nullable=False),
    sa.Column('recipient', sa.String(length=320), nullable=False),
    sa.Column('template', sa.String(length=64), nullable=False),
    sa.Column('subject', sa.String(length=300), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('link', sa.String(length=500), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('read_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbox_items')),
    sa.UniqueConstraint('message_key', name='uq_inbox_items_message_key')
    )
    with op.batch_alter_table('inbox_items', schema=None) as batch_op:
        batch_op.create_index('ix_inbox_items_recipient_read_at', ['recipient', 'read_at'], unique=False)

    # Plain ADD COLUMN (no batch rebuild): SQLite supports it, and it works in offline --sql mode.
    op.add_column('outbox', sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True))
    op.add_column('users', sa.Column('email_notifications', sa.Boolean(), server_default=sa.true(), nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('email_notifications')

    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('claimed_until')

    with op.batch_alter_table('inbox_items', schema=None) as batch_op:
        batch_op.drop_index('ix_inbox_items_recipient_read_at')

    op.drop_table('inbox_items')
