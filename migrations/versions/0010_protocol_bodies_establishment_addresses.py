"""the four bodies of the sanctions protocol; establishments' addresses and head's title

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 17:00:00.000000

A data migration as well as a schema one: an empty database must hold the four bodies of the
sanctions protocol after `reprisals db upgrade`, so that the first users can be added. Each body is
inserted only if its code is not there yet (a database that already has them, from `reprisals demo`
before this revision, upgrades cleanly); plain SQL, so offline (`--sql`) output carries them too.
The values are written out here, not imported: a migration must not change when the code does.
Downgrading keeps the bodies (users and cases refer to them).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BODIES = (
    ("HMIP", "HM Inspectorate of Prisons"),
    ("IMB", "Independent Monitoring Boards"),
    ("PPO", "Prisons and Probation Ombudsman"),
    ("LO", "Lay Observers"),
)
COLUMNS = (
    ("address_line_1", 200), ("address_line_2", 200), ("address_line_3", 200), ("town", 100), ("postcode", 16),
    ("head_of_establishment_title", 100),
)


def upgrade() -> None:
    with op.batch_alter_table('establishments', schema=None) as batch_op:
        for name, length in COLUMNS:
            batch_op.add_column(sa.Column(name, sa.String(length=length), nullable=True))
    for code, name in BODIES:
        op.execute(f"INSERT INTO bodies (code, name) SELECT '{code}', '{name}' "  # constants, not input
                   f"WHERE NOT EXISTS (SELECT 1 FROM bodies WHERE code = '{code}')")


def downgrade() -> None:
    with op.batch_alter_table('establishments', schema=None) as batch_op:
        for name, _length in reversed(COLUMNS):
            batch_op.drop_column(name)
