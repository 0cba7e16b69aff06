"""accounts: companies and their members

Issue 16 (SPEC §2): a seller or buyer account is a company that invites members by
email. The company's account stays its founding owner's user (it holds the balance,
orders, batches and the company's name); members point at it and sign in as
themselves. Invitations are one-time links of a new purpose.

Revision ID: c0a1b2d3e4f5
Revises: fa6f7d027abc
Create Date: 2026-12-05 02:50:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c0a1b2d3e4f5'
down_revision = 'fa6f7d027abc'
branch_labels = None
depends_on = None


LINK_PURPOSES = ("verify_email", "reset_password")


def _purpose_check(purposes) -> str:
    return "purpose IN (%s)" % ", ".join(f"'{purpose}'" for purpose in purposes)


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('company_name', sa.String(length=120), nullable=True))
        batch_op.add_column(sa.Column('account_holder_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('company_role', sa.Enum('owner', 'member', name='company_role', native_enum=False, create_constraint=True, length=32), nullable=True))
        batch_op.create_index(batch_op.f('ix_users_account_holder_id'), ['account_holder_id'], unique=False)
        batch_op.create_unique_constraint(batch_op.f('uq_users_company_name'), ['company_name'])
        batch_op.create_foreign_key(batch_op.f('fk_users_account_holder_id_users'), 'users', ['account_holder_id'], ['id'])

    with op.batch_alter_table('account_links', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_account_links_link_purpose'), type_='check')
        batch_op.create_check_constraint(
            'link_purpose', _purpose_check(LINK_PURPOSES + ("invitation",)))


def downgrade():
    op.execute("DELETE FROM account_links WHERE purpose = 'invitation'")
    with op.batch_alter_table('account_links', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_account_links_link_purpose'), type_='check')
        batch_op.create_check_constraint('link_purpose', _purpose_check(LINK_PURPOSES))

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_users_account_holder_id_users'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('uq_users_company_name'), type_='unique')
        batch_op.drop_index(batch_op.f('ix_users_account_holder_id'))
        batch_op.drop_constraint(batch_op.f('ck_users_company_role'), type_='check')
        batch_op.drop_column('company_role')
        batch_op.drop_column('account_holder_id')
        batch_op.drop_column('company_name')
