"""Deadlines, timers and the outbox: wf_deadlines (one row per deadline of a stage entry),
wf_timers (one row per reminder or due moment, unique per occurrence) and outbox (messages
delivered after commit, unique per idempotency key).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 06:23:35.761032

Review by hand: autogenerate misses triggers and CHECK constraints. A batch operation on an
append-only table (wf_history, wf_ledger) rebuilds it on SQLite and drops its triggers: re-run
workflow.db.append_only_ddl for that table afterwards.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('wf_deadlines',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('instance_id', sa.Integer(), nullable=False),
    sa.Column('entry_seq', sa.Integer(), nullable=False),
    sa.Column('stage', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('label', sa.String(length=200), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('unit', sa.String(length=16), nullable=False),
    sa.Column('amount', sa.Integer(), nullable=False),
    sa.Column('reminders', sa.JSON(), nullable=False),
    sa.Column('anchor_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('paused_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('overdue_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['instance_id'], ['wf_instances.id'], name=op.f('fk_wf_deadlines_instance_id_wf_instances')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_wf_deadlines')),
    sa.UniqueConstraint('instance_id', 'entry_seq', 'name', name='uq_wf_deadlines_occurrence')
    )
    with op.batch_alter_table('wf_deadlines', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_wf_deadlines_instance_id'), ['instance_id'], unique=False)
        batch_op.create_index('ix_wf_deadlines_status_due_at', ['status', 'due_at'], unique=False)

    op.create_table('wf_timers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('deadline_id', sa.Integer(), nullable=False),
    sa.Column('instance_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('ordinal', sa.Integer(), nullable=False),
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('fire_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('available_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('fired_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('lateness_ms', sa.BigInteger(), nullable=True),
    sa.Column('fired_by', sa.String(length=100), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['deadline_id'], ['wf_deadlines.id'], name=op.f('fk_wf_timers_deadline_id_wf_deadlines')),
    sa.ForeignKeyConstraint(['instance_id'], ['wf_instances.id'], name=op.f('fk_wf_timers_instance_id_wf_instances')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_wf_timers')),
    sa.UniqueConstraint('deadline_id', 'kind', 'ordinal', 'generation', name='uq_wf_timers_occurrence')
    )
    with op.batch_alter_table('wf_timers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_wf_timers_deadline_id'), ['deadline_id'], unique=False)
        batch_op.create_index('ix_wf_timers_status_available_at', ['status', 'available_at', 'id'], unique=False)
        batch_op.create_index('ix_wf_timers_instance_id_status', ['instance_id', 'status'], unique=False)

    op.create_table('outbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('recipient', sa.String(length=320), nullable=False),
    sa.Column('template', sa.String(length=64), nullable=False),
    sa.Column('context', sa.JSON(), nullable=False),
    sa.Column('urgent', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_outbox_idempotency_key'))
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_status_next_attempt_at', ['status', 'next_attempt_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_status_next_attempt_at')

    op.drop_table('outbox')
    with op.batch_alter_table('wf_timers', schema=None) as batch_op:
        batch_op.drop_index('ix_wf_timers_instance_id_status')
        batch_op.drop_index('ix_wf_timers_status_available_at')
        batch_op.drop_index(batch_op.f('ix_wf_timers_deadline_id'))

    op.drop_table('wf_timers')
    with op.batch_alter_table('wf_deadlines', schema=None) as batch_op:
        batch_op.drop_index('ix_wf_deadlines_status_due_at')
        batch_op.drop_index(batch_op.f('ix_wf_deadlines_instance_id'))

    op.drop_table('wf_deadlines')
