"""sign-in throttling in buckets, and the addresses each account has signed in from

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 02:00:00.000000

Failed sign-ins are counted in ``sign_in_buckets`` (one row per account, client address and 15-minute
window, with a count) instead of one ``sign_in_failures`` row each, so that guessing cannot fill the
database; ``sign_in_addresses`` keeps the (hashed) networks each user has signed in from, which may
still sign in while the account is under attack (decision 20). The failures counted before the upgrade
are not carried over: they only ever throttled for 15 minutes. The downgrade restores the empty
``sign_in_failures`` table (and its indexes) and drops the two new ones.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('sign_in_buckets',
    sa.Column('account_hash', sa.String(length=64), nullable=False),
    sa.Column('client_hash', sa.String(length=64), nullable=False),
    sa.Column('window_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('refused', sa.Integer(), nullable=False),
    sa.Column('last_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('account_hash', 'client_hash', 'window_start', name=op.f('pk_sign_in_buckets'))
    )
    op.create_index('ix_sign_in_buckets_client_window', 'sign_in_buckets', ['client_hash', 'window_start'],
                    unique=False)
    op.create_index('ix_sign_in_buckets_window', 'sign_in_buckets', ['window_start'], unique=False)
    op.create_table('sign_in_addresses',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('client_hash', sa.String(length=64), nullable=False),
    sa.Column('first_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_sign_in_addresses_user_id_users')),
    sa.PrimaryKeyConstraint('user_id', 'client_hash', name=op.f('pk_sign_in_addresses'))
    )
    op.drop_index('ix_sign_in_failures_client_at', table_name='sign_in_failures')
    op.drop_index('ix_sign_in_failures_account_at', table_name='sign_in_failures')
    op.drop_table('sign_in_failures')


def downgrade() -> None:
    op.create_table('sign_in_failures',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_hash', sa.String(length=64), nullable=False),
    sa.Column('client_hash', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sign_in_failures'))
    )
    op.create_index('ix_sign_in_failures_account_at', 'sign_in_failures', ['account_hash', 'at'], unique=False)
    op.create_index('ix_sign_in_failures_client_at', 'sign_in_failures', ['client_hash', 'at'], unique=False)
    op.drop_table('sign_in_addresses')
    op.drop_index('ix_sign_in_buckets_window', table_name='sign_in_buckets')
    op.drop_index('ix_sign_in_buckets_client_window', table_name='sign_in_buckets')
    op.drop_table('sign_in_buckets')
