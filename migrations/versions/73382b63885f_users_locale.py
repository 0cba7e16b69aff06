"""users.locale: the locale notices and emails are written in for each user

A notice or an email is written once, often by a job or by someone else's request
(an admin deciding a return): its amounts, numbers and dates follow the reader's
locale, which their browser says at sign-up and each login (Accept-Language).
Existing users have none until they next log in (en_US meanwhile).

Revision ID: 73382b63885f
Revises: d5403abbcec2
Create Date: 2026-12-05 23:50:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '73382b63885f'
down_revision = 'd5403abbcec2'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('locale', sa.String(length=35), nullable=True))


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('locale')
