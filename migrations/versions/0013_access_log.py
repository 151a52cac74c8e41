"""the access log: append-only entries and the sealed days that chain them

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 01:00:00.000000

Who signed in, who was given what power, who saw what (``reprisals.access_log``). ``access_log`` refuses
UPDATE and DELETE (and TRUNCATE on PostgreSQL) with the triggers that guard history; ``access_log_days``
holds each sealed day's head. The downgrade drops both (and only these triggers: the trigger function
still guards history).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from workflow.db import append_only_ddl, drop_append_only_ddl

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GUARDED = ('access_log',)


def upgrade() -> None:
    op.create_table('access_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('via', sa.String(length=16), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('subject_user_id', sa.Integer(), nullable=True),
    sa.Column('case_id', sa.Integer(), nullable=True),
    sa.Column('client_hash', sa.String(length=64), nullable=True),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.Column('hash_version', sa.Integer(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_access_log_actor_id_users')),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_access_log_case_id_cases')),
    sa.ForeignKeyConstraint(['subject_user_id'], ['users.id'], name=op.f('fk_access_log_subject_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_access_log'))
    )
    op.create_index('ix_access_log_actor_id_at', 'access_log', ['actor_id', 'at'], unique=False)
    op.create_index('ix_access_log_case_id_at', 'access_log', ['case_id', 'at'], unique=False)
    op.create_index('ix_access_log_day_id', 'access_log', ['day', 'id'], unique=False)
    op.create_table('access_log_days',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('entries', sa.Integer(), nullable=False),
    sa.Column('last_id', sa.Integer(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('head', sa.String(length=64), nullable=False),
    sa.Column('sealed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('day', name=op.f('pk_access_log_days'))
    )
    for stmt in append_only_ddl(op.get_context().dialect.name, GUARDED):
        op.execute(stmt)


def downgrade() -> None:
    for stmt in drop_append_only_ddl(op.get_context().dialect.name, GUARDED, keep_function=True):
        op.execute(stmt)
    op.drop_table('access_log_days')
    op.drop_index('ix_access_log_day_id', table_name='access_log')
    op.drop_index('ix_access_log_case_id_at', table_name='access_log')
    op.drop_index('ix_access_log_actor_id_at', table_name='access_log')
    op.drop_table('access_log')
