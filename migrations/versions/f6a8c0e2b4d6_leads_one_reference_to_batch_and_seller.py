"""leads: one reference to (batch, seller) instead of one to each

A lead's seller is its batch's seller; one composite foreign key says so, and an
ingest of a million rows checks one key per row instead of two.

Revision ID: f6a8c0e2b4d6
Revises: 68290ec473c0
Create Date: 2026-12-05 00:10:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'f6a8c0e2b4d6'
down_revision = '68290ec473c0'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index('ix_batches_id_seller_id', 'batches', ['id', 'seller_id'], unique=True)
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('fk_leads_batch_id_batches'), type_='foreignkey')
        batch_op.drop_constraint(op.f('fk_leads_seller_id_users'), type_='foreignkey')
        batch_op.create_foreign_key(op.f('fk_leads_batch_id_batches'), 'batches',
                                    ['batch_id', 'seller_id'], ['id', 'seller_id'])


def downgrade():
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('fk_leads_batch_id_batches'), type_='foreignkey')
        batch_op.create_foreign_key(op.f('fk_leads_batch_id_batches'), 'batches',
                                    ['batch_id'], ['id'])
        batch_op.create_foreign_key(op.f('fk_leads_seller_id_users'), 'users',
                                    ['seller_id'], ['id'])
    op.drop_index('ix_batches_id_seller_id', table_name='batches')
