"""orders: bid_url and max_bid; pings and their bids

Issue 18 (SPEC §4 rule 9, §11, §12): live bids. An order may name a bid URL and the
most it bids; a real-time lead's ping and each order's answer are kept for the
lead's journey and for the post that completes a ping.

Revision ID: 3552fa5bdba0
Revises: b4d2f6a8c1e9
Create Date: 2026-12-05 05:40:00.000000

"""
from alembic import op
import sqlalchemy as sa

import app.models.types


# revision identifiers, used by Alembic.
revision = '3552fa5bdba0'
down_revision = 'b4d2f6a8c1e9'
branch_labels = None
depends_on = None

BIGINT_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade():
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('bid_url', sa.String(length=2000), nullable=True))
        batch_op.add_column(sa.Column('max_bid', sa.BigInteger(), nullable=True))
    op.create_table(
        'pings',
        sa.Column('id', BIGINT_ID, nullable=False),
        sa.Column('public_id', sa.String(length=32), nullable=False),
        sa.Column('seller_id', sa.Integer(), nullable=False),
        sa.Column('lead_id', sa.BigInteger().with_variant(sa.Integer, "sqlite"), nullable=True),
        sa.Column('attributes', sa.JSON(), nullable=False),
        sa.Column('attributes_hash', sa.String(length=64), nullable=False),
        sa.Column('default_country', sa.String(length=2), nullable=True),
        sa.Column('floor_price', sa.BigInteger(), nullable=False),
        sa.Column('cap', sa.Integer(), nullable=False),
        sa.Column('price', sa.BigInteger(), nullable=True),
        sa.Column('order_id', sa.Integer(), nullable=True),
        sa.Column('deadline_ms', sa.Integer(), nullable=False),
        sa.Column('answered_ms', sa.Integer(), nullable=False),
        sa.Column('created_at', app.models.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('expires_at', app.models.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column('posted_at', app.models.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['seller_id'], ['users.id']),
        sa.ForeignKeyConstraint(['lead_id'], ['leads.id']),
        sa.ForeignKeyConstraint(['order_id'], ['orders.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('public_id'),
    )
    op.create_index('ix_pings_seller_id', 'pings', ['seller_id'])
    op.create_index('ix_pings_lead_id', 'pings', ['lead_id'])
    op.create_table(
        'ping_bids',
        sa.Column('id', BIGINT_ID, nullable=False),
        sa.Column('ping_id', sa.BigInteger().with_variant(sa.Integer, "sqlite"), nullable=False),
        sa.Column('order_id', sa.Integer(), nullable=False),
        sa.Column('buyer_id', sa.Integer(), nullable=False),
        sa.Column('outcome', sa.String(length=16), nullable=False),
        sa.Column('amount', sa.BigInteger(), nullable=True),
        sa.Column('detail', sa.String(length=200), nullable=True),
        sa.Column('milliseconds', sa.Integer(), nullable=True),
        sa.Column('won', sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(['ping_id'], ['pings.id']),
        sa.ForeignKeyConstraint(['order_id'], ['orders.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_ping_bids_ping_id', 'ping_bids', ['ping_id'])


def downgrade():
    op.drop_index('ix_ping_bids_ping_id', table_name='ping_bids')
    op.drop_table('ping_bids')
    op.drop_index('ix_pings_lead_id', table_name='pings')
    op.drop_index('ix_pings_seller_id', table_name='pings')
    op.drop_table('pings')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_column('max_bid')
        batch_op.drop_column('bid_url')
