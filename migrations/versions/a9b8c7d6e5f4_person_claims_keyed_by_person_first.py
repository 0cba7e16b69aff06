"""person claims: keyed by person, then buyer

Issue 14 (SPEC §10 matching figures): the matcher reads the claims of a chunk's
people; keyed by buyer first, PostgreSQL's index scan probed every (buyer, person)
pair of the two lists (0.6 s a chunk once the table held 100k claims).

Revision ID: a9b8c7d6e5f4
Revises: e8f9a0b1c2d3
Create Date: 2026-12-05 05:40:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'a9b8c7d6e5f4'
down_revision = 'e8f9a0b1c2d3'
branch_labels = None
depends_on = None


def _key(columns):
    with op.batch_alter_table('person_claims', schema=None) as batch_op:
        batch_op.drop_constraint('pk_person_claims', type_='primary')
        batch_op.create_primary_key('pk_person_claims', columns)


def upgrade():
    _key(['person_hash', 'buyer_id'])


def downgrade():
    _key(['buyer_id', 'person_hash'])
