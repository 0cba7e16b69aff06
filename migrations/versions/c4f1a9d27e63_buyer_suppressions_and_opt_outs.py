"""buyer suppression lists, opt-out requests and the notices telling buyers

Issue 19 (SPEC §14): a buyer's own list of people never to receive (keyed hashes
only); a person's opt-out, confirmed by a one-time link; each buyer's notice of it
with its 10-business-day deadline and acknowledgement.

Revision ID: c4f1a9d27e63
Revises: a9b8c7d6e5f4
Create Date: 2026-12-05 05:40:00.000000

"""
from alembic import op
import sqlalchemy as sa

from app.models.types import UTCDateTime


# revision identifiers, used by Alembic.
revision = 'c4f1a9d27e63'
down_revision = 'a9b8c7d6e5f4'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'buyer_suppressions',
        sa.Column('buyer_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=1), nullable=False),
        sa.Column('value_hash', sa.LargeBinary(length=16), nullable=False),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['buyer_id'], ['users.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('buyer_id', 'kind', 'value_hash'),
    )
    op.create_index('ix_buyer_suppressions_value_hash', 'buyer_suppressions', ['value_hash'])
    op.create_table(
        'opt_out_requests',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('email_hash', sa.LargeBinary(length=16), nullable=True),
        sa.Column('phone_hash', sa.LargeBinary(length=16), nullable=True),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('expires_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('confirmed_at', UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('token_hash'),
    )
    op.create_table(
        'opt_out_notices',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('buyer_id', sa.Integer(), nullable=False),
        sa.Column('sale_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('order_id', sa.Integer(), nullable=False),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('due_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('acknowledged_at', UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['buyer_id'], ['users.id']),
        sa.ForeignKeyConstraint(['order_id'], ['orders.id']),
        sa.ForeignKeyConstraint(['sale_id'], ['sales.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('sale_id'),
    )
    op.create_index('ix_opt_out_notices_buyer_id', 'opt_out_notices', ['buyer_id'])
    op.create_index('ix_opt_out_notices_open', 'opt_out_notices', ['due_at'],
                    sqlite_where=sa.text('acknowledged_at IS NULL'),
                    postgresql_where=sa.text('acknowledged_at IS NULL'))


def downgrade():
    op.drop_index('ix_opt_out_notices_open', table_name='opt_out_notices')
    op.drop_index('ix_opt_out_notices_buyer_id', table_name='opt_out_notices')
    op.drop_table('opt_out_notices')
    op.drop_table('opt_out_requests')
    op.drop_index('ix_buyer_suppressions_value_hash', table_name='buyer_suppressions')
    op.drop_table('buyer_suppressions')
