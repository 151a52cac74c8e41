"""accounts that can read identity wait for a lead of their body: users.confirmed_at, refused_at,
refusal_reason

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-10 10:00:00.000000

A staff or lead account is "pending" while ``confirmed_at`` is NULL: it signs in but sees no case
content until an active, confirmed lead of its body confirms it (decision 22). Accounts that exist
are confirmed as of their creation, except those still invited (no password chosen yet): they were
made by an admin and no lead has seen them, so they wait like any new invitation.

Plain ADD COLUMN (no batch rebuild: SQLite supports it, and it works in offline --sql mode). Who refused
an account is the actor of its ``account_refused`` access-log entry, so no column names them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('users', sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('users', sa.Column('refused_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('users', sa.Column('refusal_reason', sa.Text(), nullable=True))
    op.execute("UPDATE users SET confirmed_at = created_at "
               "WHERE NOT (role IN ('staff', 'lead') AND password_hash = '!invited')")


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('refusal_reason')
        batch_op.drop_column('refused_at')
        batch_op.drop_column('confirmed_at')
