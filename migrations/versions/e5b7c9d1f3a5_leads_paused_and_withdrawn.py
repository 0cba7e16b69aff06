"""leads: paused and withdrawn

A seller may pause the unsold leads of a batch (a resume lists them again) or
withdraw them for good (SPEC §3); both are lead statuses, so the market's one
rule about live leads keeps them out of every sale.

Revision ID: e5b7c9d1f3a5
Revises: d4f1b3c5e7a9
Create Date: 2026-12-04 20:55:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e5b7c9d1f3a5'
down_revision = 'd4f1b3c5e7a9'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_leads_lead_status'), type_='check')
        batch_op.create_check_constraint(
            'lead_status',
            sa.text("status IN ('held', 'live', 'delisted', 'paused', 'withdrawn')"))


def downgrade():
    # Without these statuses a paused lead waits as held (never sold, as when paused)
    # and a withdrawn one is delisted (final, as when withdrawn).
    op.execute("UPDATE leads SET status = 'held' WHERE status = 'paused'")
    op.execute("UPDATE leads SET status = 'delisted' WHERE status = 'withdrawn'")
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_leads_lead_status'), type_='check')
        batch_op.create_check_constraint(
            'lead_status', sa.text("status IN ('held', 'live', 'delisted')"))
