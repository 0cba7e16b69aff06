"""leads: one sealed contact blob, no pending status, no unused indexes

Ingest speed (issue #3): a lead's five encrypted contact fields become one AES-GCM blob
(one nonce and tag instead of five; ContactVault.seal_contact); uploads store leads
with their final status and hide them through their batch's status instead of
rewriting every row at the end, so `pending` goes; ix_leads_status is the leading
half of ix_leads_status_consent_at and no query looks leads up by seller_id.

Existing contacts are re-sealed with the configured CONTACT_ENCRYPTION_KEY.

Revision ID: 9326308954b9
Revises: 3db9def476a5
Create Date: 2026-11-23 01:40:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '9326308954b9'
down_revision = 'd01f8a74588c'
branch_labels = None
depends_on = None

OLD_COLUMNS = ("first_name_enc", "last_name_enc", "email_enc", "phone_enc", "ip_enc")
PAGE = 1000


def _vault():
    from flask import current_app

    from app.services.crypto import vault_from_config

    return vault_from_config(current_app.config)


def _pages(connection, columns: str):
    last = 0
    while rows := connection.execute(sa.text(
            f"SELECT id, {columns} FROM leads WHERE id > :last ORDER BY id LIMIT {PAGE}"),
            {"last": last}).fetchall():
        yield rows
        last = rows[-1][0]


def upgrade():
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('contact_enc', sa.LargeBinary(), nullable=True))

    connection = op.get_bind()
    vault = None
    for rows in _pages(connection, ", ".join(OLD_COLUMNS)):
        vault = vault or _vault()
        connection.execute(sa.text("UPDATE leads SET contact_enc = :blob WHERE id = :id"), [
            {"id": row[0], "blob": vault.seal_contact(*(vault.decrypt(v) for v in row[1:]))}
            for row in rows])
    # Leads of a batch still processing take the status they will have; the batch hides them.
    connection.execute(sa.text(
        "UPDATE leads SET status = CASE WHEN (SELECT trust_level FROM users "
        "WHERE users.id = leads.seller_id) = 'verified' THEN 'live' ELSE 'held' END "
        "WHERE status = 'pending'"))

    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.alter_column('contact_enc', existing_type=sa.LargeBinary(), nullable=False)
        for column in OLD_COLUMNS:
            batch_op.drop_column(column)
        batch_op.drop_index('ix_leads_status')
        batch_op.drop_index('ix_leads_seller_id')
        batch_op.drop_constraint(op.f('ck_leads_lead_status'), type_='check')
        batch_op.create_check_constraint(
            'lead_status', sa.text("status IN ('held', 'live', 'delisted')"))


def downgrade():
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_leads_lead_status'), type_='check')
        batch_op.create_check_constraint(
            'lead_status', sa.text("status IN ('pending', 'held', 'live', 'delisted')"))
        batch_op.create_index('ix_leads_seller_id', ['seller_id'], unique=False)
        batch_op.create_index('ix_leads_status', ['status'], unique=False)
        for column in OLD_COLUMNS:
            batch_op.add_column(sa.Column(column, sa.LargeBinary(), nullable=True))

    connection = op.get_bind()
    vault = None
    for rows in _pages(connection, "contact_enc"):
        vault = vault or _vault()
        params = []
        for lead_id, blob in rows:
            contact = vault.open_contact(blob)
            params.append({"id": lead_id, **{
                f"{name}_enc": vault.encrypt(contact[name]) for name in
                ("first_name", "last_name", "email", "phone", "ip")}})
        connection.execute(sa.text(
            "UPDATE leads SET " + ", ".join(f"{c} = :{c}" for c in OLD_COLUMNS)
            + " WHERE id = :id"), params)

    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.drop_column('contact_enc')
