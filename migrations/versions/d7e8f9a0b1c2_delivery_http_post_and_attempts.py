"""delivery: HTTP POST in the buyer's format, and every attempt logged

Issue 18 (SPEC §12): an order may deliver its leads to its webhook URL in the buyer's
own format (a field mapping as JSON, form or XML; encrypted headers; a reply rule)
instead of our signed JSON; each delivery attempt keeps the request and the reply,
encrypted, with its milliseconds.

Revision ID: d7e8f9a0b1c2
Revises: c0a1b2d3e4f5
Create Date: 2026-12-05 03:20:00.000000

"""
from alembic import op
import sqlalchemy as sa

import app.models.types


# revision identifiers, used by Alembic.
revision = 'd7e8f9a0b1c2'
down_revision = 'c0a1b2d3e4f5'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('http_deliveries',
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('body_format', sa.String(length=8), nullable=False),
    sa.Column('mapping', sa.Text(), nullable=False),
    sa.Column('headers_enc', sa.LargeBinary(), nullable=True),
    sa.Column('reply_kind', sa.String(length=8), nullable=False),
    sa.Column('reply_path', sa.String(length=500), nullable=False),
    sa.Column('reply_accept', sa.String(length=200), nullable=False),
    sa.Column('reply_reason', sa.String(length=500), nullable=False),
    sa.Column('updated_at', app.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_http_deliveries_order_id_orders')),
    sa.PrimaryKeyConstraint('order_id', name=op.f('pk_http_deliveries'))
    )
    op.create_table('delivery_attempts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('delivery_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('at', app.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('milliseconds', sa.Integer(), nullable=False),
    sa.Column('request_enc', sa.LargeBinary(), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('reply_enc', sa.LargeBinary(), nullable=True),
    sa.Column('error', sa.String(length=500), nullable=True),
    sa.ForeignKeyConstraint(['delivery_id'], ['webhook_deliveries.id'], name=op.f('fk_delivery_attempts_delivery_id_webhook_deliveries')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_delivery_attempts'))
    )
    with op.batch_alter_table('delivery_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_delivery_attempts_delivery_id'), ['delivery_id'], unique=False)


def downgrade():
    with op.batch_alter_table('delivery_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_delivery_attempts_delivery_id'))
    op.drop_table('delivery_attempts')
    op.drop_table('http_deliveries')
