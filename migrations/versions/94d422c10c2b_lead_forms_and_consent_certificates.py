"""lead forms, their versions and consent certificates

Issue 19 (SPEC §14): a seller's hosted lead form, versioned in what the person reads
(fields, consent text, buyers disclosed), and the exchange's consent certificate of
each lead submitted through one.

Revision ID: 94d422c10c2b
Revises: 9d3c5e7f2b14
Create Date: 2026-12-05 05:45:00.000000

"""
from alembic import op
import sqlalchemy as sa

from app.models.types import UTCDateTime


# revision identifiers, used by Alembic.
revision = '94d422c10c2b'
down_revision = '9d3c5e7f2b14'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'lead_forms',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('public_id', sa.String(length=32), nullable=False),
        sa.Column('seller_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=120), nullable=False),
        sa.Column('default_country', sa.String(length=2), nullable=False),
        sa.Column('floor_price', sa.BigInteger(), nullable=False),
        sa.Column('cap', sa.Integer(), nullable=False),
        sa.Column('sub_id', sa.String(length=255), nullable=True),
        sa.Column('thank_you_message', sa.Text(), nullable=False),
        sa.Column('thank_you_url', sa.Text(), nullable=True),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.CheckConstraint('cap >= 1', name=op.f('ck_lead_forms_cap_positive')),
        sa.CheckConstraint('floor_price >= 0',
                           name=op.f('ck_lead_forms_floor_price_not_negative')),
        sa.ForeignKeyConstraint(['seller_id'], ['users.id'],
                                name=op.f('fk_lead_forms_seller_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_lead_forms')),
        sa.UniqueConstraint('public_id', name=op.f('uq_lead_forms_public_id')),
    )
    op.create_index(op.f('ix_lead_forms_seller_id'), 'lead_forms', ['seller_id'])
    op.create_table(
        'lead_form_versions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('form_id', sa.Integer(), nullable=False),
        sa.Column('number', sa.Integer(), nullable=False),
        sa.Column('fields', sa.JSON(), nullable=False),
        sa.Column('consent_text', sa.Text(), nullable=False),
        sa.Column('disclosed_buyers', sa.Text(), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['form_id'], ['lead_forms.id'],
                                name=op.f('fk_lead_form_versions_form_id_lead_forms')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_lead_form_versions')),
        sa.UniqueConstraint('form_id', 'number', name=op.f('uq_lead_form_versions_form_id_number')),
    )
    op.create_table(
        'consent_certificates',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('public_id', sa.String(length=32), nullable=False),
        sa.Column('lead_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                  nullable=False),
        sa.Column('form_version_id', sa.Integer(), nullable=False),
        sa.Column('form_token', sa.String(length=32), nullable=False),
        sa.Column('page_url', sa.Text(), nullable=False),
        sa.Column('referrer', sa.Text(), nullable=True),
        sa.Column('user_agent', sa.String(length=512), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('time_on_page_ms', sa.Integer(), nullable=True),
        sa.Column('served_ms', sa.Integer(), nullable=False),
        sa.Column('inputs', sa.JSON(), nullable=False),
        sa.Column('contact_hash', sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(['lead_id'], ['leads.id'],
                                name=op.f('fk_consent_certificates_lead_id_leads')),
        sa.ForeignKeyConstraint(
            ['form_version_id'], ['lead_form_versions.id'],
            name=op.f('fk_consent_certificates_form_version_id_lead_form_versions')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_consent_certificates')),
        sa.UniqueConstraint('form_token', name=op.f('uq_consent_certificates_form_token')),
        sa.UniqueConstraint('lead_id', name=op.f('uq_consent_certificates_lead_id')),
        sa.UniqueConstraint('public_id', name=op.f('uq_consent_certificates_public_id')),
    )
    op.create_index(op.f('ix_consent_certificates_form_version_id'), 'consent_certificates',
                    ['form_version_id'])


def downgrade():
    op.drop_index(op.f('ix_consent_certificates_form_version_id'),
                  table_name='consent_certificates')
    op.drop_table('consent_certificates')
    op.drop_table('lead_form_versions')
    op.drop_index(op.f('ix_lead_forms_seller_id'), table_name='lead_forms')
    op.drop_table('lead_forms')
