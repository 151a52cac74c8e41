"""pseudonyms: detainees' keyed hashes and the person they are linked to; possible matches for leads

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 19:00:00.000000

Decision 26. The hashes need REPRISALS_PSEUDONYM_KEY and the identity (under each case's key), so this
revision only adds the columns; ``reprisals db upgrade`` then links every person not yet linked (and
``reprisals people link`` does it on its own). Plain ADD COLUMN: SQLite supports it, and it works in offline
--sql mode.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0018'
down_revision: str | None = '0017'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('detainees', sa.Column('name_hash', sa.String(length=64), nullable=True))
    op.add_column('detainees', sa.Column('dob_hash', sa.String(length=64), nullable=True))
    op.add_column('detainees', sa.Column('number_hash', sa.String(length=64), nullable=True))
    op.add_column('detainees', sa.Column('person', sa.String(length=20), nullable=True))
    op.create_index('ix_detainees_name_hash', 'detainees', ['name_hash'], unique=False)
    op.create_index(op.f('ix_detainees_person'), 'detainees', ['person'], unique=False)
    op.create_table('person_matches',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('other_case_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('found_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_by_user_id', sa.Integer(), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_person_matches_case_id_cases')),
    sa.ForeignKeyConstraint(['other_case_id'], ['cases.id'], name=op.f('fk_person_matches_other_case_id_cases')),
    sa.ForeignKeyConstraint(['decided_by_user_id'], ['users.id'],
                            name=op.f('fk_person_matches_decided_by_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_person_matches')),
    sa.UniqueConstraint('case_id', 'other_case_id', name='uq_person_matches_pair')
    )
    op.create_index(op.f('ix_person_matches_case_id'), 'person_matches', ['case_id'], unique=False)
    op.create_index(op.f('ix_person_matches_other_case_id'), 'person_matches', ['other_case_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_person_matches_other_case_id'), table_name='person_matches')
    op.drop_index(op.f('ix_person_matches_case_id'), table_name='person_matches')
    op.drop_table('person_matches')
    op.drop_index(op.f('ix_detainees_person'), table_name='detainees')
    op.drop_index('ix_detainees_name_hash', table_name='detainees')
    with op.batch_alter_table('detainees', schema=None) as batch_op:
        batch_op.drop_column('person')
        batch_op.drop_column('number_hash')
        batch_op.drop_column('dob_hash')
        batch_op.drop_column('name_hash')
