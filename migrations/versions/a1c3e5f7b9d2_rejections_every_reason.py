"""rejections: every reason of a row

A rejected row lists every reason it has (SPEC §3): `codes` holds them all,
";"-joined, beside `code`, the first. Rows stored before keep their one reason.

Revision ID: a1c3e5f7b9d2
Revises: 0f34e6e32eca
Create Date: 2026-12-04 18:20:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a1c3e5f7b9d2'
down_revision = '0f34e6e32eca'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('rejections', schema=None) as batch_op:
        batch_op.add_column(sa.Column('codes', sa.String(length=255), server_default='',
                                      nullable=False))
    op.execute("UPDATE rejections SET codes = code")


def downgrade():
    with op.batch_alter_table('rejections', schema=None) as batch_op:
        batch_op.drop_column('codes')
