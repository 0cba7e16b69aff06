"""users: figures_revision

Issue 17 (SPEC §10): a counter per account, raised in the same transaction by every
write that changes the figures its pages aggregate (its sales, their returns and
outcomes, its batches' spot-checks). Pages read it with the signed-in user and reuse
figures computed at the same revision (app/core/figures.py).

Revision ID: 7c3e9a51d0b4
Revises: 1ccf7a42a342
Create Date: 2026-12-05 11:50:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '7c3e9a51d0b4'
down_revision = '1ccf7a42a342'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('figures_revision', sa.BigInteger(), server_default='0',
                                      nullable=False))


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('figures_revision')
