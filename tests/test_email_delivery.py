"""Leads delivered by email (SPEC §12) to a real SMTP server on loopback (aiosmtpd):
one message per lead, digests per hour or day of the order's time zone, several
addresses, failures as sentences retried with backoff and resent, the bulk store
path making email deliveries, the test console, and no contacts in clear on disk."""
import html
import socket
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from app.aftersale.delivery import emailing, engine, settings
from app.core import mail
from app.extensions import db
from app.market import jobs
from app.market.settle import group_key
from app.models import (
    DeliveryAttempt, DeliveryStatus, EmailStatus, LedgerTransaction, Notification,
    NotificationKind, Order, OutgoingEmail, WebhookDelivery,
)
from app.models.types import utcnow
from app.services import ledger
from app.services.crypto import current_vault
from tests.conftest import csrf_token, log_in, wait_until
from tests.test_delivery import LEAD
from tests.market_helpers import funded_buyer, live_leads, person, place, sales_of, verified_seller
from tests.query_count import counted
from tests.receiver import Receiver
from tests.smtp_server import bodies

REFUSED = "the mail server 127.0.0.1 refused the message: 451 Requested action aborted: " \
          "try again later"


def _email_order(buyer, *, mode="lead", digest="daily", zone="UTC", quantity=5,
                 addresses="crm@buyer.example, sales@buyer.example", **terms) -> Order:
    order = place(buyer, 700, quantity, timezone=zone, **terms)
    settings.use_email(order, addresses=addresses, mode=mode, digest=digest)
    db.session.commit()
    return order


def _funded(buyer):
    ledger.manual_credit(buyer, 100_000, reason="test funds", actor=None)
    db.session.commit()
    return buyer


def _email_deliveries(order) -> list[WebhookDelivery]:
    db.session.expire_all()
    return db.session.scalars(sa.select(WebhookDelivery).where(
        WebhookDelivery.order_id == order.id, WebhookDelivery.channel == "email")
        .order_by(WebhookDelivery.id)).all()


def _make_due(order, back=timedelta(0)) -> None:
    """As if the deliveries were made `back` earlier and their next try were due."""
    for delivery in _email_deliveries(order):
        delivery.created_at -= back
        delivery.next_attempt_at = utcnow() - timedelta(seconds=1)
    db.session.commit()


def _to_buyer(smtp_server, to="crm@buyer.example, sales@buyer.example"):
    """The messages to the order's addresses (a seller is told of their batch too)."""
    return smtp_server.to(to)


def _sell(client, api_key_for, lead=LEAD) -> None:
    assert client.post("/api/v1/leads", headers=api_key_for(verified_seller()),
                       json=lead).status_code == 201


def test_one_message_per_lead_to_every_address(app, client, api_key_for, smtp_server):
    buyer = funded_buyer()
    order = _email_order(buyer, name="Solar NY")
    _sell(client, api_key_for)  # the single-lead path (app.market.settle)
    [message] = smtp_server.wait_for(1)
    assert smtp_server.envelopes[0][1] == ["crm@buyer.example", "sales@buyer.example"]
    assert message["To"] == "crm@buyer.example, sales@buyer.example"
    assert message["Subject"] == f"New lead for order #{order.id} (Solar NY)"
    text, html = bodies(message)
    assert "visitor@mail.example.com" in text and "+14155550100" in text and "Vera Lind" in text
    assert "visitor@mail.example.com" in html
    [delivery] = _email_deliveries(order)
    assert delivery.status is DeliveryStatus.DELIVERED and delivery.last_status_code == 250
    [attempt] = db.session.scalars(sa.select(DeliveryAttempt).where(
        DeliveryAttempt.delivery_id == delivery.id)).all()
    assert attempt.method == "email" and attempt.status_code == 250 and attempt.error is None
    vault = current_vault()
    assert vault.decrypt(attempt.reply_enc) == "250 Message accepted"
    logged = vault.decrypt(attempt.request_enc)
    assert "To: crm@buyer.example, sales@buyer.example" in logged
    assert "visitor@mail.example.com" in logged
    # The order has no URL: nothing else was made for the sale, and it is not "never sent"
    # by email either (the delivery page counts sales without a URL delivery).
    assert [d.channel for d in engine.log_for(order)] == ["email"]
    # The lead's journey shows the attempt as an email and the server's reply code.
    journey = app.test_client()
    log_in(journey, buyer)
    page = journey.get(f"/buyer/leads/{sales_of(order)[0].lead_id}/journey").get_data(
        as_text=True)
    assert "Email · " in page and "SMTP 250" in page and "HTTP 250" not in page


def test_a_digest_waits_for_its_hour_then_sends_one_message(app, smtp_server):
    order = _email_order(funded_buyer(), mode="digest", digest="hourly",
                         zone="America/New_York")
    leads = live_leads(verified_seller(), [person(1), person(2), person(3)])
    jobs.match_leads([lead.id for lead in leads])
    assert len(_email_deliveries(order)) == 3
    assert emailing.send_due() == 0  # the hour they were sold in has not ended
    assert _to_buyer(smtp_server) == []
    _make_due(order, back=timedelta(hours=1))
    assert emailing.send_due() == 3
    [message] = _to_buyer(smtp_server)
    assert message["Subject"] == f"3 new leads for order #{order.id}"
    text, _ = bodies(message)
    for n in (1, 2, 3):
        assert person(n)["email"] in text
    assert "in the last hour (America/New_York)" in text
    assert {d.status for d in _email_deliveries(order)} == {DeliveryStatus.DELIVERED}
    assert emailing.send_due() == 0 and len(_to_buyer(smtp_server)) == 1  # never twice


def test_the_digest_period_is_the_orders_hour_or_day():
    now = datetime(2026, 12, 5, 3, 40, tzinfo=timezone.utc)  # 22:40 on the 4th in New York
    assert emailing.period_start(now, "America/New_York", "hourly") == \
        datetime(2026, 12, 5, 3, 0, tzinfo=timezone.utc)
    assert emailing.period_start(now, "America/New_York", "daily") == \
        datetime(2026, 12, 4, 5, 0, tzinfo=timezone.utc)  # midnight of the 4th there
    assert emailing.period_start(now, "Asia/Kolkata", "hourly") == \
        datetime(2026, 12, 5, 3, 30, tzinfo=timezone.utc)  # hours start at :30 UTC there


def test_the_bulk_store_path_makes_email_deliveries_beside_webhooks(app, smtp_server):
    receiver = Receiver()
    try:
        buyer = funded_buyer()
        order = place(buyer, 500, 10, webhook_url=receiver.url)
        settings.use_email(order, addresses="leads@buyer.example", mode="lead", digest="daily")
        db.session.commit()
        leads = live_leads(verified_seller(), [person(n) for n in range(1, 5)])
        jobs.match_leads([lead.id for lead in leads])
        sales = sales_of(order)
        assert len(sales) == 4
        # Stored by a group (app.market.grouped), not one by one.
        key = db.session.get(LedgerTransaction, sales[0].ledger_transaction_id).idempotency_key
        assert key == group_key(order.id, sales[0].id)
        rows = db.session.execute(sa.select(WebhookDelivery.sale_id, WebhookDelivery.channel)
                                  .where(WebhookDelivery.order_id == order.id)).all()
        assert sorted(rows) == sorted([(s.id, c) for s in sales for c in ("url", "email")])
        assert wait_until(lambda: len(receiver.requests) == 4)
        assert {d.status for d in _email_deliveries(order)} == {DeliveryStatus.DELIVERED}
        assert [m["Subject"] for m in _to_buyer(smtp_server, "leads@buyer.example")] == \
            [f"New lead for order #{order.id}"] * 4
    finally:
        receiver.close()


def test_a_refused_message_is_retried_then_given_up_and_resent(
        app, client, api_key_for, buyer, buyer_client, smtp_server):
    order = _email_order(_funded(buyer), addresses="crm@buyer.example")
    smtp_server.refuse = True
    _sell(client, api_key_for)
    [delivery] = _email_deliveries(order)
    assert delivery.status is DeliveryStatus.PENDING and delivery.attempts == 1
    assert delivery.last_error == REFUSED
    assert delivery.next_attempt_at > utcnow() + timedelta(seconds=5)  # the engine's backoff
    assert emailing.send_due() == 0  # not due yet

    # Every retry refused: given up, and the buyer is told.
    delivery.attempts = len(engine.RETRY_DELAYS)
    db.session.commit()
    _make_due(order)
    assert emailing.send_due() == 0
    [delivery] = _email_deliveries(order)
    assert delivery.status is DeliveryStatus.FAILED
    [notice] = db.session.scalars(sa.select(Notification).where(
        Notification.user_id == buyer.id,
        Notification.kind == NotificationKind.DELIVERY_FAILING)).all()
    assert notice.title == f"Leads of order #{order.id} could not be delivered by email"
    assert REFUSED in notice.body
    page = buyer_client.get(f"/buyer/orders/{order.id}/delivery").get_data(as_text=True)
    assert REFUSED in page and "Traceback" not in page and "SMTPDataError" not in page

    # The server is back; the buyer resends.
    smtp_server.refuse = False
    response = buyer_client.post(
        f"/buyer/orders/{order.id}/deliveries/{delivery.id}/resend",
        data={"csrf_token": csrf_token(buyer_client, f"/buyer/orders/{order.id}/delivery")})
    assert response.status_code == 302
    assert wait_until(lambda: _email_deliveries(order)[0].status is DeliveryStatus.DELIVERED)
    [message] = smtp_server.wait_for(1)
    assert "visitor@mail.example.com" in bodies(message)[0]
    errors = db.session.scalars(sa.select(DeliveryAttempt.error).where(
        DeliveryAttempt.delivery_id == delivery.id).order_by(DeliveryAttempt.id)).all()
    assert errors == [REFUSED, REFUSED, None]


def test_an_unreachable_mail_server_reads_as_a_sentence(app, smtp_server):
    order = _email_order(funded_buyer())
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        app.config["MAIL_PORT"] = sock.getsockname()[1]
        outcome = emailing.send_test(order)
    assert outcome.error == "connection refused by the mail server 127.0.0.1"
    assert outcome.code is None and "Subject: [Test] New lead" in outcome.shown
    app.config.update(MAIL_PORT=smtp_server.port, MAIL_USE_TLS=True)  # it offers no TLS
    assert emailing.send_test(order).error == (
        "the mail server 127.0.0.1 offers no secure connection (STARTTLS), which "
        "MAIL_USE_TLS asks for")


def test_the_test_console_sends_a_test_email_and_shows_message_and_reply(
        app, buyer, buyer_client, smtp_server):
    order = place(_funded(buyer), 700, 5)
    page_url = f"/buyer/orders/{order.id}/delivery"
    page = buyer_client.get(page_url).get_data(as_text=True)
    assert 'id="email-delivery"' in page and "Save an address to send a test email." in page

    def save(**fields):
        return buyer_client.post(f"/buyer/orders/{order.id}/delivery/email", data={
            "enabled": "y", "addresses": "", "mode": "lead", "digest": "daily", **fields,
            "csrf_token": csrf_token(buyer_client, page_url)})

    refused = save(addresses="crm@buyer.example, not-an-address")
    assert refused.status_code == 422
    assert "not-an-address is not an email address" in refused.get_data(as_text=True)
    assert settings.email_for(order) is None
    assert save(addresses="CRM@Buyer.example\nteam@buyer.example", mode="digest",
                digest="hourly").status_code == 302
    method = settings.email_for(db.session.get(Order, order.id))
    assert (method.addresses, method.mode, method.digest) == \
        ("CRM@buyer.example, team@buyer.example", "digest", "hourly")

    response = buyer_client.post(f"/buyer/orders/{order.id}/delivery/email/test",
                                 data={"csrf_token": csrf_token(buyer_client, page_url)})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    [message] = smtp_server.wait_for(1)
    assert message["Subject"] == f"[Test] New lead for order #{order.id}"
    assert smtp_server.envelopes[0][1] == ["CRM@buyer.example", "team@buyer.example"]
    assert 'id="email-test-result"' in page and "sent" in page and "SMTP 250" in page
    assert f"Subject: [Test] New lead for order #{order.id}" in page
    assert "To: CRM@buyer.example, team@buyer.example" in page
    assert f"Message-ID: {html.escape(message['Message-ID'])}" in page
    assert "test.lead@example.com" in page and "250 Message accepted" in page
    assert engine.log_for(order) == []  # a test is not a delivery
    assert '<input checked class="form-check-input" id="enabled"' in page  # as saved

    # Switched off: sales made from now on are not emailed.
    response = buyer_client.post(f"/buyer/orders/{order.id}/delivery/email", data={
        "addresses": "", "mode": "lead", "digest": "daily",
        "csrf_token": csrf_token(buyer_client, page_url)})
    assert response.status_code == 302 and settings.email_for(order) is None


def test_no_contacts_in_clear_on_disk(app, client, api_key_for, buyer, buyer_client):
    """Development: no MAIL_SERVER, the messages are kept in the outbox, encrypted."""
    assert not app.config["MAIL_SERVER"]
    order = _email_order(_funded(buyer))
    _sell(client, api_key_for)
    [delivery] = _email_deliveries(order)
    assert delivery.status is DeliveryStatus.DELIVERED
    kept = db.session.scalars(sa.select(OutgoingEmail).where(OutgoingEmail.kind == "delivery")
                              .order_by(OutgoingEmail.id)).all()
    assert [e.to for e in kept] == ["crm@buyer.example", "sales@buyer.example"]
    assert {e.status for e in kept} == {EmailStatus.KEPT}
    assert "visitor@mail.example.com" in mail.bodies(kept[0])[0]
    # Every value of every table, read raw: the person's contacts are nowhere in clear.
    needles = ("visitor@mail.example.com", "4155550100", "Lind")
    db.session.commit()
    for table in db.metadata.sorted_tables:
        for row in db.session.execute(sa.text(f"SELECT * FROM {table.name}")):
            for value in row:
                raw = bytes(value) if isinstance(value, (bytes, memoryview)) else str(value)
                for needle in needles:
                    found = needle.encode() in raw if isinstance(raw, bytes) else needle in raw
                    assert not found, (table.name, needle)
    attempt = db.session.scalars(sa.select(DeliveryAttempt).where(
        DeliveryAttempt.delivery_id == delivery.id)).one()
    assert current_vault().decrypt(attempt.reply_enc) == emailing.KEPT


def test_the_order_page_sends_delivery_settings_to_the_delivery_page(app, buyer, buyer_client):
    order = place(_funded(buyer), 700, 5, webhook_url="https://crm.example.com/hook")
    page = buyer_client.get(f"/buyer/orders/{order.id}").get_data(as_text=True)
    assert 'id="delivery-settings"' in page
    assert f"/buyer/orders/{order.id}/webhook" not in page and "Save webhook" not in page
    page = buyer_client.get(f"/buyer/orders/{order.id}/delivery").get_data(as_text=True)
    assert f'action="/buyer/orders/{order.id}/webhook"' in page  # its one home


def test_the_delivery_page_counts_never_sent_sales_in_one_query(
        app, client, api_key_for, buyer, buyer_client):
    order = place(_funded(buyer), 700, 5)
    leads = live_leads(verified_seller(), [person(n) for n in range(1, 4)])
    jobs.match_leads([lead.id for lead in leads])
    assert len(sales_of(order)) == 3
    with counted() as statements:
        assert engine.never_sent_count(order) == 3
    assert len(statements) == 1 and "count(" in statements[0].lower()
    assert statements[0].lower().count("select") <= 3  # the count and its two NOT EXISTS
    page = buyer_client.get(f"/buyer/orders/{order.id}/delivery").get_data(as_text=True)
    assert "3 lead(s) of this order were sold while it had no delivery URL" in page
