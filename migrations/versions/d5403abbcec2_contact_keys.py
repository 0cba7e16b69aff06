"""contact_keys: leads found by contact through one narrow table

Issue 15 (SPEC §10): two indexes on leads' random 16-byte email and phone hashes were
the largest cost of storing an upload. A row of contact_keys is a hash's first 8 bytes
as a signed integer with the kind in its low bit (email 0, phone 1) and the lead's id;
readers compare the full hash on the lead (app/models/contact_keys.py). Existing
leads get their keys here, then the two indexes go.

Revision ID: d5403abbcec2
Revises: b5d2e8f41c07
Create Date: 2026-12-05 14:40:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'd5403abbcec2'
down_revision = 'b5d2e8f41c07'
branch_labels = None
depends_on = None

CHUNK = 10_000


def _key(digest, kind_bit):
    return (int.from_bytes(bytes(digest)[:8], "big", signed=True) & ~1) | kind_bit


def upgrade():
    op.create_table(
        'contact_keys',
        sa.Column('key', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('lead_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                  autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint('key', 'lead_id', name=op.f('pk_contact_keys')),
        sqlite_with_rowid=False,
    )
    connection = op.get_bind()
    keys = sa.table('contact_keys', sa.column('key'), sa.column('lead_id'))
    after = 0
    while True:
        leads = connection.execute(sa.text(
            "SELECT id, email_hash, phone_hash FROM leads WHERE id > :after ORDER BY id "
            "LIMIT :chunk"), {"after": after, "chunk": CHUNK}).all()
        if not leads:
            break
        rows = [{"key": _key(digest, bit), "lead_id": lead_id}
                for lead_id, email_hash, phone_hash in leads
                for digest, bit in ((email_hash, 0), (phone_hash, 1)) if digest]
        if rows:
            connection.execute(keys.insert(), rows)
        after = leads[-1][0]
    op.drop_index('ix_leads_email_hash', table_name='leads')
    op.drop_index('ix_leads_phone_hash', table_name='leads')


def downgrade():
    op.create_index('ix_leads_phone_hash', 'leads', ['phone_hash'], unique=False)
    op.create_index('ix_leads_email_hash', 'leads', ['email_hash'], unique=False)
    op.drop_table('contact_keys')
