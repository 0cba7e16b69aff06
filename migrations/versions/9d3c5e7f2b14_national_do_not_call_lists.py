"""national do-not-call lists, and the leads flagged by them

Issue 19 (SPEC §14): an admin loads a country's do-not-call list (keyed hashes of
the numbers); phone leads on it are flagged and never sold for phone contact.

Revision ID: 9d3c5e7f2b14
Revises: 7b2e4d8f1a60
Create Date: 2026-12-05 05:50:00.000000

"""
from alembic import op
import sqlalchemy as sa

from app.models.types import UTCDateTime


# revision identifiers, used by Alembic.
revision = '9d3c5e7f2b14'
down_revision = '7b2e4d8f1a60'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'do_not_call_entries',
        sa.Column('country', sa.String(length=2), nullable=False),
        sa.Column('phone_hash', sa.LargeBinary(length=16), nullable=False),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('country', 'phone_hash'),
    )
    op.create_index('ix_do_not_call_entries_phone_hash', 'do_not_call_entries', ['phone_hash'])
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('do_not_call', sa.Boolean(), server_default=sa.false(),
                                      nullable=False))


def downgrade():
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.drop_column('do_not_call')
    op.drop_index('ix_do_not_call_entries_phone_hash', table_name='do_not_call_entries')
    op.drop_table('do_not_call_entries')
