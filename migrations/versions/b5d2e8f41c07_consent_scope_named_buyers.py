"""leads.consent_scope_id, lead_form_named_buyers, users.named_on_forms

SPEC §14: a hosted form may name the buyers who may contact the person instead of
describing kinds of buyer. Its leads then go to those buyers alone: each lead keeps the
form version whose named buyers it was collected under. Buyers choose whether sellers
may name them.

Revision ID: b5d2e8f41c07
Revises: 7c3e9a51d0b4
Create Date: 2026-12-05 14:45:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b5d2e8f41c07'
down_revision = '7c3e9a51d0b4'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'lead_form_named_buyers',
        sa.Column('version_id', sa.Integer(), nullable=False),
        sa.Column('buyer_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['buyer_id'], ['users.id'],
                                name=op.f('fk_lead_form_named_buyers_buyer_id_users')),
        sa.ForeignKeyConstraint(['version_id'], ['lead_form_versions.id'],
                                name=op.f('fk_lead_form_named_buyers_version_id_lead_form_versions')),
        sa.PrimaryKeyConstraint('version_id', 'buyer_id', name=op.f('pk_lead_form_named_buyers')))
    # A plain ADD COLUMN with its reference on both dialects: leads is the largest
    # table, and a batch operation would copy it on SQLite.
    if op.get_bind().dialect.name == 'sqlite':  # Alembic would add the reference apart
        op.execute('ALTER TABLE leads ADD COLUMN consent_scope_id INTEGER '
                   'CONSTRAINT fk_leads_consent_scope_id_lead_form_versions '
                   'REFERENCES lead_form_versions (id)')
    else:
        op.add_column('leads', sa.Column('consent_scope_id', sa.Integer(), nullable=True))
        op.create_foreign_key(op.f('fk_leads_consent_scope_id_lead_form_versions'), 'leads',
                              'lead_form_versions', ['consent_scope_id'], ['id'])
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('named_on_forms', sa.Boolean(), server_default=sa.false(),
                                      nullable=False))


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('named_on_forms')
    if op.get_bind().dialect.name == 'sqlite':
        # SQLite cannot drop a referencing column in place: the batch copy of the table
        # keeps column indexes but not the expression index, built again as it was.
        with op.batch_alter_table('leads', schema=None) as batch_op:
            batch_op.drop_column('consent_scope_id')
        op.create_index('ix_leads_status_consent_day', 'leads',
                        ['status', sa.text("substr(consent_at, 1, 10)"), 'id'], unique=False)
    else:
        op.drop_constraint(op.f('fk_leads_consent_scope_id_lead_form_versions'), 'leads',
                           type_='foreignkey')
        op.drop_column('leads', 'consent_scope_id')
    op.drop_table('lead_form_named_buyers')
