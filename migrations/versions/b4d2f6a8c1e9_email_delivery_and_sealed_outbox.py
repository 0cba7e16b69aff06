"""delivery by email, and the outbox's bodies encrypted

Issue 18 (SPEC §12): an order may also deliver its leads by email (one message per
lead, or an hourly or daily digest): its addresses and mode, and a channel on each
delivery ("url" or "email"). Those messages carry the leads' contacts, so the stored
bodies of outgoing email are encrypted like other personal data (SPEC §3).

Revision ID: b4d2f6a8c1e9
Revises: 94d422c10c2b
Create Date: 2026-12-05 05:40:00.000000

"""
from alembic import op
import sqlalchemy as sa

import app.models.types


# revision identifiers, used by Alembic.
revision = 'b4d2f6a8c1e9'
down_revision = '94d422c10c2b'
branch_labels = None
depends_on = None

PAGE = 500


def _vault():
    from flask import current_app

    from app.services.crypto import vault_from_config

    return vault_from_config(current_app.config)


def _reseal(connection, source: tuple[str, str], target: tuple[str, str], convert) -> None:
    last = 0
    while rows := connection.execute(sa.text(
            f"SELECT id, {source[0]}, {source[1]} FROM outgoing_emails WHERE id > :last "
            f"ORDER BY id LIMIT {PAGE}"), {"last": last}).fetchall():
        connection.execute(sa.text(
            f"UPDATE outgoing_emails SET {target[0]} = :a, {target[1]} = :b WHERE id = :id"),
            [{"id": row[0], "a": convert(row[1]), "b": convert(row[2])} for row in rows])
        last = rows[-1][0]


def upgrade():
    op.create_table('email_deliveries',
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('addresses', sa.Text(), nullable=False),
    sa.Column('mode', sa.String(length=8), nullable=False),
    sa.Column('digest', sa.String(length=8), nullable=False),
    sa.Column('updated_at', app.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_email_deliveries_order_id_orders')),
    sa.PrimaryKeyConstraint('order_id', name=op.f('pk_email_deliveries'))
    )
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('channel', sa.String(length=8), server_default='url',
                                      nullable=False))

    with op.batch_alter_table('outgoing_emails', schema=None) as batch_op:
        batch_op.add_column(sa.Column('text_body_enc', sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column('html_body_enc', sa.LargeBinary(), nullable=True))
    connection = op.get_bind()
    if connection.execute(sa.text("SELECT 1 FROM outgoing_emails LIMIT 1")).first():
        vault = _vault()
        _reseal(connection, ("text_body", "html_body"), ("text_body_enc", "html_body_enc"),
                vault.encrypt)
    with op.batch_alter_table('outgoing_emails', schema=None) as batch_op:
        batch_op.alter_column('text_body_enc', existing_type=sa.LargeBinary(), nullable=False)
        batch_op.alter_column('html_body_enc', existing_type=sa.LargeBinary(), nullable=False)
        batch_op.drop_column('text_body')
        batch_op.drop_column('html_body')


def downgrade():
    with op.batch_alter_table('outgoing_emails', schema=None) as batch_op:
        batch_op.add_column(sa.Column('text_body', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('html_body', sa.Text(), nullable=True))
    connection = op.get_bind()
    if connection.execute(sa.text("SELECT 1 FROM outgoing_emails LIMIT 1")).first():
        vault = _vault()
        _reseal(connection, ("text_body_enc", "html_body_enc"), ("text_body", "html_body"),
                vault.decrypt)
    with op.batch_alter_table('outgoing_emails', schema=None) as batch_op:
        batch_op.alter_column('text_body', existing_type=sa.Text(), nullable=False)
        batch_op.alter_column('html_body', existing_type=sa.Text(), nullable=False)
        batch_op.drop_column('text_body_enc')
        batch_op.drop_column('html_body_enc')

    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.drop_column('channel')
    op.drop_table('email_deliveries')
