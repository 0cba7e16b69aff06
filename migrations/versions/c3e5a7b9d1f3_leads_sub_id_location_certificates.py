"""leads: sub_id, city, postal code, consent certificates

The §3 fields of the second edition: the seller's own source (sub_id), the city and
postal code, and the TrustedForm and Jornaya certificates of consent.

Revision ID: c3e5a7b9d1f3
Revises: b2d4f6a8c0e1
Create Date: 2026-12-04 18:55:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c3e5a7b9d1f3'
down_revision = 'b2d4f6a8c0e1'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('trustedform_cert_url', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('jornaya_leadid', sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column('sub_id', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('city', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('postal_code', sa.String(length=16), nullable=True))


def downgrade():
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.drop_column('postal_code')
        batch_op.drop_column('city')
        batch_op.drop_column('sub_id')
        batch_op.drop_column('jornaya_leadid')
        batch_op.drop_column('trustedform_cert_url')
