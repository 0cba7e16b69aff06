"""orders: the person's calling hours a phone lead is held for

Issue 19 (SPEC §14 quiet hours): an order may take phone leads only while the
person's local time is inside its calling window (minutes after midnight).

Revision ID: 7b2e4d8f1a60
Revises: c4f1a9d27e63
Create Date: 2026-12-05 05:45:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '7b2e4d8f1a60'
down_revision = 'c4f1a9d27e63'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('calling_from', sa.SmallInteger(), nullable=True))
        batch_op.add_column(sa.Column('calling_until', sa.SmallInteger(), nullable=True))


def downgrade():
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_column('calling_until')
        batch_op.drop_column('calling_from')
