"""The schema comes from the migrations; they must match the models exactly."""
import json

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app.extensions import db
from app.models.types import in_schema


def test_migrations_match_the_models(app):
    with db.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "render_as_batch": True,
                              "include_object": in_schema(connection.dialect.name)}
        )
        diff = compare_metadata(context, db.metadata)
    assert diff == []


def test_schema_was_built_by_alembic(app):
    with db.engine.connect() as connection:
        version = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    assert version


def test_contact_blob_migration_reseals_existing_leads_and_back(tmp_path):
    """9326308954b9 turns five encrypted columns into one sealed blob (and back)."""
    from pathlib import Path

    import sqlalchemy as sa
    from flask_migrate import downgrade, upgrade

    from app import create_app
    from app.services.crypto import current_vault

    migrations = str(Path(__file__).parent.parent / "migrations")
    app = create_app("testing", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/m.sqlite3",
                     UPLOAD_DIR=str(tmp_path))
    before = "9326308954b9-1"  # the schema just before the blob; raw SQL, not today's models
    with app.app_context():
        upgrade(directory=migrations, revision=before)
        stamp = "'2026-01-01 00:00:00.000000'"
        db.session.execute(sa.text(
            "INSERT INTO users (id, email, password_hash, role, display_name, trust_level, "
            f"is_active_account, session_nonce, created_at) VALUES (1, 'm@example.com', 'x', "
            f"'seller', '', 'verified', 1, 'n', {stamp})"))
        db.session.execute(sa.text(
            "INSERT INTO batches (id, seller_id, source, status, filename, file_size, "
            "default_country, floor_price, cap, mapping, rows_total, rows_processed, "
            "bytes_processed, accepted, rejected, cross_seller_duplicates, created_at) VALUES "
            f"(1, 1, 'upload', 'processing', 'x.csv', 0, 'US', 0, 1, '{{}}', 0, 0, 0, 0, 0, 0, "
            f"{stamp})"))
        db.session.commit()
        batch_id, seller_id = 1, 1
        vault = current_vault()
        contact = {"first_name": "Ада", "last_name": None, "email": "a@example.com",
                   "phone": "+14155550100", "ip": "192.0.2.1"}
        db.session.execute(sa.text(
            "INSERT INTO leads (batch_id, seller_id, status, row_number, first_name_enc, "
            "last_name_enc, email_enc, phone_enc, ip_enc, has_email, has_phone, gender, "
            "marital_status, employed, interests, consent_at, source_url, "
            "cross_seller_duplicate, floor_price, cap, sold_count, created_at) VALUES "
            "(:b, :s, 'pending', 2, :f, NULL, :e, :p, :i, 1, 1, 'f', 'unknown', 'unknown', "
            "'[]', '2026-01-01 00:00:00.000000', 'https://x.example.com', 0, 0, 1, 0, "
            "'2026-01-01 00:00:00.000000')"),
            {"b": batch_id, "s": seller_id, "f": vault.encrypt("Ада"),
             "e": vault.encrypt("a@example.com"), "p": vault.encrypt("+14155550100"),
             "i": vault.encrypt("192.0.2.1")})
        db.session.commit()

        upgrade(directory=migrations, revision="9326308954b9")
        blob, status = db.session.execute(
            sa.text("SELECT contact_enc, status FROM leads")).one()
        assert vault.open_contact(blob) == contact
        assert status == "live"  # its verified seller's status; the batch still hides it
        db.session.rollback()  # SQLite: the migration needs the write lock

        downgrade(directory=migrations, revision=before)
        row = db.session.execute(sa.text(
            "SELECT first_name_enc, last_name_enc, email_enc, phone_enc, ip_enc FROM leads")).one()
        assert [vault.decrypt(v) for v in row] == list(contact.values())
        db.session.remove()


def test_daily_caps_and_delivery_hours_become_caps_and_schedules_and_back(tmp_path):
    """5c1a7e2d9b40: the daily cap is the day's lead cap, delivery hours a window every day."""
    from pathlib import Path

    import sqlalchemy as sa
    from flask_migrate import downgrade, upgrade

    from app import create_app

    migrations = str(Path(__file__).parent.parent / "migrations")
    app = create_app("testing", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/m.sqlite3",
                     UPLOAD_DIR=str(tmp_path))
    before = "0f34e6e32eca"
    stamp = "'2026-01-01 00:00:00.000000'"
    with app.app_context():
        upgrade(directory=migrations, revision=before)
        db.session.execute(sa.text(
            "INSERT INTO users (id, email, password_hash, role, display_name, trust_level, "
            f"is_active_account, session_nonce, created_at, payouts_enabled) VALUES "
            f"(1, 'b@example.com', 'x', 'buyer', '', 'new', 1, 'n', {stamp}, 0)"))
        for order_id, cap, filled, day, start, end in [(1, 5, 2, "2026-12-04", 22, 6),
                                                       (2, None, 0, None, None, None),
                                                       (3, None, 0, None, 9, 9)]:
            db.session.execute(sa.text(
                "INSERT INTO orders (id, buyer_id, name, status, price, quantity, filled, spent, "
                "held, filters, daily_cap, day_filled, fill_day, delivery_start_hour, "
                "delivery_end_hour, timezone, lookback_days, created_at, updated_at) VALUES "
                f"(:id, 1, '', 'open', 300, 10, 0, 0, 0, '{{}}', :cap, :filled, :day, :start, "
                f":end, 'Europe/Madrid', 30, {stamp}, {stamp})"),
                {"id": order_id, "cap": cap, "filled": filled, "day": day, "start": start,
                 "end": end})
        db.session.commit()

        upgrade(directory=migrations)
        rows = db.session.execute(sa.text(
            "SELECT cap_day, day_leads, day_key, schedule, hour_leads, revision FROM orders "
            "ORDER BY id")).all()
        assert rows[0][:3] == (5, 2, "2026-12-04")
        assert json.loads(rows[0][3]) == [{"days": EVERY_DAY, "start": "22:00", "end": "06:00",
                                           "price": None}]
        assert rows[1][:4] == (None, 0, None, None) and rows[1][4:] == (0, 0)
        assert rows[2][3] is None  # equal hours were always open
        timezone = db.session.execute(sa.text("SELECT timezone FROM users")).scalar()
        assert timezone == "UTC"
        db.session.rollback()  # SQLite: the migration needs the write lock

        downgrade(directory=migrations, revision=before)
        rows = db.session.execute(sa.text(
            "SELECT daily_cap, day_filled, fill_day, delivery_start_hour, delivery_end_hour "
            "FROM orders ORDER BY id")).all()
        assert rows == [(5, 2, "2026-12-04", 22, 6), (None, 0, None, None, None),
                        (None, 0, None, None, None)]
        db.session.remove()


EVERY_DAY = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def test_outbox_bodies_are_encrypted_by_the_migration_and_back(tmp_path):
    """b4d2f6a8c1e9 encrypts the bodies of the messages already in the outbox (and back)."""
    from pathlib import Path

    import sqlalchemy as sa
    from flask_migrate import downgrade, upgrade

    from app import create_app
    from app.services.crypto import current_vault

    migrations = str(Path(__file__).parent.parent / "migrations")
    app = create_app("testing", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/m.sqlite3",
                     UPLOAD_DIR=str(tmp_path))
    before = "b4d2f6a8c1e9-1"
    with app.app_context():
        upgrade(directory=migrations, revision=before)
        db.session.execute(sa.text(
            "INSERT INTO outgoing_emails (kind, \"to\", subject, text_body, html_body, "
            "message_id, status, attempts, next_attempt_at, created_at) VALUES ('test', "
            "'b@example.com', 'Hello', 'Call Vera on +14155550100', '<p>Vera</p>', '<m@x>', "
            "'kept', 0, '2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000')"))
        db.session.commit()

        upgrade(directory=migrations, revision="b4d2f6a8c1e9")
        text, html = db.session.execute(
            sa.text("SELECT text_body_enc, html_body_enc FROM outgoing_emails")).one()
        assert b"+14155550100" not in bytes(text)
        vault = current_vault()
        assert (vault.decrypt(text), vault.decrypt(html)) == \
            ("Call Vera on +14155550100", "<p>Vera</p>")
        db.session.rollback()  # SQLite: the migration needs the write lock

        downgrade(directory=migrations, revision=before)
        assert db.session.execute(sa.text("SELECT text_body, html_body FROM outgoing_emails")
                                  ).one() == ("Call Vera on +14155550100", "<p>Vera</p>")
        db.session.remove()


def test_contact_keys_are_made_from_existing_leads_and_back(tmp_path):
    """d5403abbcec2 writes the keys of the leads already stored, then drops the two hash
    indexes; going back brings the indexes back."""
    from pathlib import Path

    import sqlalchemy as sa
    from flask_migrate import downgrade, upgrade

    from app import create_app
    from app.models import Role
    from app.models.contact_keys import keys_of
    from tests.conftest import make_user
    from tests.ingest_helpers import csv_bytes, ingest, person

    migrations = str(Path(__file__).parent.parent / "migrations")
    app = create_app("testing", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/m.sqlite3",
                     UPLOAD_DIR=str(tmp_path))
    with app.app_context():
        upgrade(directory=migrations)  # the models are the head's (later columns included)
        ingest(make_user(Role.SELLER), csv_bytes([person(i) for i in range(30)]
                                                 + [person(30, email=""), person(31, phone="")]))
        keys = {pair for row in db.session.execute(sa.text(
            "SELECT id, email_hash, phone_hash FROM leads")).all() for pair in keys_of(*row)}
        assert len(keys) == 62
        db.session.rollback()  # SQLite: the migration needs the write lock

        downgrade(directory=migrations, revision="b5d2e8f41c07")
        inspector = sa.inspect(db.engine)
        assert "contact_keys" not in inspector.get_table_names()
        assert {"ix_leads_email_hash", "ix_leads_phone_hash"} <= {
            index["name"] for index in inspector.get_indexes("leads")}

        upgrade(directory=migrations, revision="d5403abbcec2")
        assert set(db.session.execute(sa.text("SELECT key, lead_id FROM contact_keys")).all()) \
            == keys
        db.session.rollback()  # its write lock, before the inspector's connection
        inspector = sa.inspect(db.engine)
        assert not {"ix_leads_email_hash", "ix_leads_phone_hash"} & {
            index["name"] for index in inspector.get_indexes("leads")}
        db.session.remove()


def test_deliveries_the_buyers_system_refused_become_rejected_and_back(tmp_path):
    """c3e8f1a5d7b2: a delivery stored as failed whose last answer was 2xx with an error
    (the buyer's system refused it) is rejected; one that got no good answer stays failed."""
    from pathlib import Path

    import sqlalchemy as sa
    from flask_migrate import downgrade, upgrade

    from app import create_app
    from app.core import events
    from app.market import jobs
    from app.models import WebhookDelivery
    from tests.ingest_helpers import person
    from tests.market_helpers import funded_buyer, live_leads, place, sales_of, verified_seller

    migrations = str(Path(__file__).parent.parent / "migrations")
    app = create_app("testing", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/m.sqlite3",
                     UPLOAD_DIR=str(tmp_path))
    before = "b7e4d2a9c1f0"
    with app.app_context():
        upgrade(directory=migrations)  # the models are the head's: its sales, then back
        leads = live_leads(verified_seller(), [person(i) for i in range(4)])
        order = place(funded_buyer(), 300, 4)
        with events.muted():
            jobs.match_leads([lead.id for lead in leads])
        answers = [(200, "Phone is required"), (503, "HTTP 503 from the server"),
                   (None, "connection refused"), (200, None)]
        db.session.add_all(WebhookDelivery(
            sale_id=sale.id, order_id=order.id, status="delivered" if error is None else "failed",
            attempts=1, last_status_code=code, last_error=error)
            for sale, (code, error) in zip(sales_of(order), answers, strict=True))
        db.session.commit()
        downgrade(directory=migrations, revision=before)  # as they were stored before

        upgrade(directory=migrations, revision="c3e8f1a5d7b2")
        statuses = db.session.execute(sa.text(
            "SELECT status FROM webhook_deliveries ORDER BY id")).scalars().all()
        assert statuses == ["rejected", "failed", "failed", "delivered"]
        db.session.rollback()  # SQLite: the migration needs the write lock

        downgrade(directory=migrations, revision=before)
        statuses = db.session.execute(sa.text(
            "SELECT status FROM webhook_deliveries ORDER BY id")).scalars().all()
        assert statuses == ["failed", "failed", "failed", "delivered"]
        db.session.remove()


def test_the_links_of_messages_to_the_leads_they_carry_come_and_go(tmp_path):
    """88a466036819: outgoing_email_leads is made empty (earlier messages are development
    outbox copies nobody linked) and dropped again, the messages staying."""
    from pathlib import Path

    import sqlalchemy as sa
    from flask_migrate import downgrade, upgrade

    from app import create_app
    from app.core import mail
    from app.models import EmailStatus
    from tests.ingest_helpers import person
    from tests.market_helpers import live_leads, verified_seller

    migrations = str(Path(__file__).parent.parent / "migrations")
    app = create_app("testing", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/m.sqlite3",
                     UPLOAD_DIR=str(tmp_path))
    with app.app_context():
        upgrade(directory=migrations)
        [lead] = live_leads(verified_seller(), [person(1)])
        email = mail.store("crm@buyer.example", "New lead", "text", "<p>html</p>",
                           status=EmailStatus.KEPT, lead_ids=[lead.id])
        db.session.commit()
        links = "SELECT email_id, lead_id FROM outgoing_email_leads"
        assert db.session.execute(sa.text(links)).all() == [(email.id, lead.id)]
        db.session.rollback()  # SQLite: the migration needs the write lock

        downgrade(directory=migrations, revision="c3e8f1a5d7b2")
        assert "outgoing_email_leads" not in sa.inspect(db.engine).get_table_names()
        assert email.id in db.session.execute(sa.text("SELECT id FROM outgoing_emails")).scalars()
        db.session.rollback()

        upgrade(directory=migrations, revision="88a466036819")
        assert db.session.execute(sa.text(links)).all() == []
        db.session.remove()
