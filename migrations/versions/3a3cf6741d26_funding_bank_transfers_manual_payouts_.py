"""funding: bank transfers, manual payouts, automatic top-ups

Issue 16 (SPEC §5, funding in every setup): bank transfers an admin records against
a buyer's reference, manual payouts to sellers without Stripe Connect (each counted
once by the bank's transaction id), and a buyer's automatic top-up with a saved card.

Revision ID: 3a3cf6741d26
Revises: f6a8c0e2b4d6
Create Date: 2026-12-04 23:34:18.163536

"""
from alembic import op
import sqlalchemy as sa

import app.models.types


# revision identifiers, used by Alembic.
revision = '3a3cf6741d26'
down_revision = 'f6a8c0e2b4d6'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('bank_transfers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('buyer_id', sa.Integer(), nullable=False),
    sa.Column('reference', sa.String(length=32), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('received_on', sa.Date(), nullable=False),
    sa.Column('bank_transaction_id', sa.String(length=100), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('recorded_by_id', sa.Integer(), nullable=False),
    sa.Column('ledger_transaction_id', sa.Integer(), nullable=False),
    sa.Column('created_at', app.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('amount > 0', name=op.f('ck_bank_transfers_amount_positive')),
    sa.ForeignKeyConstraint(['buyer_id'], ['users.id'], name=op.f('fk_bank_transfers_buyer_id_users')),
    sa.ForeignKeyConstraint(['ledger_transaction_id'], ['ledger_transactions.id'], name=op.f('fk_bank_transfers_ledger_transaction_id_ledger_transactions')),
    sa.ForeignKeyConstraint(['recorded_by_id'], ['users.id'], name=op.f('fk_bank_transfers_recorded_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bank_transfers')),
    sa.UniqueConstraint('bank_transaction_id', name=op.f('uq_bank_transfers_bank_transaction_id'))
    )
    with op.batch_alter_table('bank_transfers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_bank_transfers_buyer_id'), ['buyer_id'], unique=False)

    op.create_table('manual_payouts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('seller_id', sa.Integer(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('paid_on', sa.Date(), nullable=False),
    sa.Column('bank_transaction_id', sa.String(length=100), nullable=False),
    sa.Column('destination', sa.String(length=255), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('recorded_by_id', sa.Integer(), nullable=False),
    sa.Column('ledger_transaction_id', sa.Integer(), nullable=False),
    sa.Column('created_at', app.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('amount > 0', name=op.f('ck_manual_payouts_amount_positive')),
    sa.ForeignKeyConstraint(['ledger_transaction_id'], ['ledger_transactions.id'], name=op.f('fk_manual_payouts_ledger_transaction_id_ledger_transactions')),
    sa.ForeignKeyConstraint(['recorded_by_id'], ['users.id'], name=op.f('fk_manual_payouts_recorded_by_id_users')),
    sa.ForeignKeyConstraint(['seller_id'], ['users.id'], name=op.f('fk_manual_payouts_seller_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_manual_payouts')),
    sa.UniqueConstraint('bank_transaction_id', name=op.f('uq_manual_payouts_bank_transaction_id'))
    )
    with op.batch_alter_table('manual_payouts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_manual_payouts_seller_id'), ['seller_id'], unique=False)

    op.create_table('auto_topups',
    sa.Column('buyer_id', sa.Integer(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('threshold', sa.BigInteger(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('payment_method_id', sa.String(length=255), nullable=True),
    sa.Column('card_label', sa.String(length=64), nullable=False),
    sa.Column('setup_intent_id', sa.String(length=255), nullable=True),
    sa.Column('pending_topup_id', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=False),
    sa.Column('last_error_at', app.models.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', app.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('amount > 0', name=op.f('ck_auto_topups_amount_positive')),
    sa.CheckConstraint('threshold >= 0', name=op.f('ck_auto_topups_threshold_not_negative')),
    sa.ForeignKeyConstraint(['buyer_id'], ['users.id'], name=op.f('fk_auto_topups_buyer_id_users')),
    sa.ForeignKeyConstraint(['pending_topup_id'], ['topups.id'], name=op.f('fk_auto_topups_pending_topup_id_topups')),
    sa.PrimaryKeyConstraint('buyer_id', name=op.f('pk_auto_topups')),
    sa.UniqueConstraint('setup_intent_id', name=op.f('uq_auto_topups_setup_intent_id'))
    )
    with op.batch_alter_table('topups', schema=None) as batch_op:
        batch_op.add_column(sa.Column('automatic', sa.Boolean(), server_default=sa.false(), nullable=False))



def downgrade():
    with op.batch_alter_table('topups', schema=None) as batch_op:
        batch_op.drop_column('automatic')

    op.drop_table('auto_topups')
    with op.batch_alter_table('manual_payouts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_manual_payouts_seller_id'))

    op.drop_table('manual_payouts')
    with op.batch_alter_table('bank_transfers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_bank_transfers_buyer_id'))

    op.drop_table('bank_transfers')
