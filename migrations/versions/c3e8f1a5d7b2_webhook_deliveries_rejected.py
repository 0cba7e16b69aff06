"""webhook_deliveries: rejected, apart from failed

A delivery the buyer's system answered and refused (its reply rule said no) was
stored as failed, the state of a delivery whose every retry went unanswered: the
buyer read a refusal of theirs as a failure of ours. It has its own state now;
deliveries stored so (an answer of 2xx with an error) are marked rejected.

Revision ID: c3e8f1a5d7b2
Revises: b7e4d2a9c1f0
Create Date: 2026-12-06 18:40:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c3e8f1a5d7b2'
down_revision = 'b7e4d2a9c1f0'
branch_labels = None
depends_on = None


def _statuses(condition: str) -> None:
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_webhook_deliveries_delivery_status'), type_='check')
        batch_op.create_check_constraint('delivery_status', sa.text(condition))


def upgrade():
    _statuses("status IN ('pending', 'delivered', 'failed', 'rejected')")
    op.execute("UPDATE webhook_deliveries SET status = 'rejected' WHERE status = 'failed' "
               "AND last_error IS NOT NULL AND last_status_code BETWEEN 200 AND 299")


def downgrade():
    op.execute("UPDATE webhook_deliveries SET status = 'failed' WHERE status = 'rejected'")
    _statuses("status IN ('pending', 'delivered', 'failed')")
