"""instances record when they began and when their latest action happened

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 19:20:00.000000

Actions are dated when they happened (decision 17): no action may be dated before the instance began
(a case's receipt) or before its previous protocol action. Existing rows are filled in: an instance of a
case began when the case was received, any other when it was created; its latest action happened when
its stage was entered (every action before this revision moved the stage).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('wf_instances', sa.Column('began_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('wf_instances', sa.Column('acted_at', sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE wf_instances SET "
               "began_at = COALESCE((SELECT cases.received_at FROM cases WHERE cases.instance_id = wf_instances.id), "
               "created_at), acted_at = stage_entered_at")


def downgrade() -> None:
    with op.batch_alter_table('wf_instances', schema=None) as batch_op:
        batch_op.drop_column('acted_at')
        batch_op.drop_column('began_at')
