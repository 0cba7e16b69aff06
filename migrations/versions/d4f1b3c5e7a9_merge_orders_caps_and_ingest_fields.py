"""merge: orders' caps and schedules, and the ingest's new fields

Two lines of migrations written side by side (orders; rejections, batches and leads)
touch different tables; this revision joins them.

Revision ID: d4f1b3c5e7a9
Revises: 5c1a7e2d9b40, c3e5a7b9d1f3
Create Date: 2026-12-04 19:15:00.000000

"""


# revision identifiers, used by Alembic.
revision = 'd4f1b3c5e7a9'
down_revision = ('5c1a7e2d9b40', 'c3e5a7b9d1f3')
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
