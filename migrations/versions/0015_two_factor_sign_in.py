"""two-factor sign-in: credentials, recovery codes, reset requests, and sessions that gave a second factor

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 10:00:00.000000

``two_factor_credentials`` (a user's TOTP secret as ciphertext, the last time-step accepted, wrong codes),
``recovery_codes`` (SHA-256 of each one-time code), ``two_factor_resets`` (an admin's request awaiting a
lead's approval) and ``web_sessions.two_factor_at`` (``reprisals.two_factor``). Existing sessions have
given no second factor; in development that changes nothing for accounts without two-factor sign-in.
``web_sessions`` is not append-only, so the batch operation of the downgrade drops no triggers.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('two_factor_credentials',
    sa.Column('user_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('secret_ciphertext', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('enrolled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_step', sa.Integer(), nullable=True),
    sa.Column('wrong_codes', sa.Integer(), nullable=False),
    sa.Column('wrong_since', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_two_factor_credentials_user_id_users')),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_two_factor_credentials'))
    )
    op.create_table('recovery_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_recovery_codes_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recovery_codes'))
    )
    op.create_index('ix_recovery_codes_user_id_code_hash', 'recovery_codes', ['user_id', 'code_hash'], unique=True)
    op.create_table('two_factor_resets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('asked_by_id', sa.Integer(), nullable=False),
    sa.Column('asked_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_by_id', sa.Integer(), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=True),
    sa.ForeignKeyConstraint(['asked_by_id'], ['users.id'], name=op.f('fk_two_factor_resets_asked_by_id_users')),
    sa.ForeignKeyConstraint(['decided_by_id'], ['users.id'], name=op.f('fk_two_factor_resets_decided_by_id_users')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_two_factor_resets_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_two_factor_resets'))
    )
    op.create_index(op.f('ix_two_factor_resets_user_id'), 'two_factor_resets', ['user_id'], unique=False)
    op.add_column('web_sessions', sa.Column('two_factor_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.drop_column('two_factor_at')
    op.drop_index(op.f('ix_two_factor_resets_user_id'), table_name='two_factor_resets')
    op.drop_table('two_factor_resets')
    op.drop_index('ix_recovery_codes_user_id_code_hash', table_name='recovery_codes')
    op.drop_table('recovery_codes')
    op.drop_table('two_factor_credentials')
