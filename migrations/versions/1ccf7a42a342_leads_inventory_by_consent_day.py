"""leads: inventory indexed by consent day, not consent time

Issue 15 point 8: an upload's consent times are spread over months or years, so
each new lead went to a random page of ix_leads_status_consent_at and every commit
rewrote most of that index. Its replacement keys leads by status, UTC consent day
and id: a new lead lands at the end of its day (app.models.leads.utc_day).

Revision ID: 1ccf7a42a342
Revises: 3552fa5bdba0
Create Date: 2026-12-05 11:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '1ccf7a42a342'
down_revision = '3552fa5bdba0'
branch_labels = None
depends_on = None


def _utc_day() -> sa.TextClause:
    if op.get_bind().dialect.name == "postgresql":
        return sa.text("CAST(timezone('UTC', consent_at) AS DATE)")
    return sa.text("substr(consent_at, 1, 10)")


def upgrade():
    op.drop_index('ix_leads_status_consent_at', table_name='leads')
    op.create_index('ix_leads_status_consent_day', 'leads', ['status', _utc_day(), 'id'],
                    unique=False)


def downgrade():
    op.drop_index('ix_leads_status_consent_day', table_name='leads')
    op.create_index('ix_leads_status_consent_at', 'leads', ['status', 'consent_at'],
                    unique=False)
