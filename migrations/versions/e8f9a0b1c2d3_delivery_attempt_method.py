"""delivery attempts: the method each was sent by

Issue 18 (SPEC §12): a lead's journey shows each delivery attempt with how it was sent
(our signed JSON webhook, or an HTTP POST in the buyer's format); the order's method
may change after an attempt, so the attempt keeps its own.

Revision ID: e8f9a0b1c2d3
Revises: d7e8f9a0b1c2
Create Date: 2026-12-05 04:10:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e8f9a0b1c2d3'
down_revision = 'd7e8f9a0b1c2'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('delivery_attempts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('method', sa.String(length=8), server_default='webhook',
                                      nullable=False))


def downgrade():
    with op.batch_alter_table('delivery_attempts', schema=None) as batch_op:
        batch_op.drop_column('method')
