"""outgoing_email_leads: the leads whose contacts a stored message carries

A delivery by email kept in the development outbox carried the leads' contacts in
its bodies, and an erasure could not find it: the person's name, email and phone
stayed after "their contacts are gone". The link names the leads a message carries,
so an erasure clears its bodies and the outbox audits a view of it (SPEC §7).
Messages stored before it have no links: production stores no delivery by email
(it goes straight to the server), so they are development outbox copies only.

Revision ID: 88a466036819
Revises: c3e8f1a5d7b2
Create Date: 2026-12-06 18:41:02.469492

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '88a466036819'
down_revision = 'c3e8f1a5d7b2'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('outgoing_email_leads',
    sa.Column('email_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('lead_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['email_id'], ['outgoing_emails.id'], name=op.f('fk_outgoing_email_leads_email_id_outgoing_emails'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], name=op.f('fk_outgoing_email_leads_lead_id_leads')),
    sa.PrimaryKeyConstraint('email_id', 'lead_id', name=op.f('pk_outgoing_email_leads'))
    )
    with op.batch_alter_table('outgoing_email_leads', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outgoing_email_leads_lead_id'), ['lead_id'], unique=False)


def downgrade():
    with op.batch_alter_table('outgoing_email_leads', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outgoing_email_leads_lead_id'))
    op.drop_table('outgoing_email_leads')
