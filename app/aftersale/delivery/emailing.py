"""Jobs (own their commits): sales delivered by email (SPEC §12) to the addresses an
order has (EmailDelivery), one message per lead as soon as it is sold, or a digest of
the leads sold in the last hour or day of the order's time zone.

A delivery by email is a row of webhook_deliveries with channel "email", made where
the sale is stored (app.market.settle, app.market.grouped). Messages go through the
app's mail (app.core.mail_jobs.transmit; kept in the outbox without MAIL_SERVER),
and are retried with the engine's backoff; each attempt is logged with the message
sent and the server's reply, and a failure reads as a sentence. A person erased
while their message was on its way leaves its text neither in the log nor in the
outbox (app.services.privacy.erased_among); one erased before it goes is left out.

A send first claims its deliveries by moving their next attempt a lease ahead in a
committed conditional UPDATE, so the after-commit dispatch and the periodic job never
send one lead twice at once."""
import smtplib
import socket
import ssl
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable, Optional
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import current_app
from flask_mailman import EmailMultiAlternatives

from app.aftersale.delivery.engine import RETRY_DELAYS, sample_sale
from app.consent import certificates
from app.core import mail, mail_jobs
from app.extensions import db
from app.models import (
    DeliveryAttempt, DeliveryStatus, EmailDelivery, EmailStatus, Lead, Order, Sale,
    WebhookDelivery,
)
from app.models.types import utcnow
from app.people import notifications
from app.services import privacy
from app.services.crypto import current_vault
from app.services.delivery import sale_record

LEASE = timedelta(minutes=5)  # longer than any SMTP conversation (MAIL_TIMEOUT)
DIGEST_LIMIT = 200  # leads in one message; more go in the next
KEPT = "kept in the development outbox (no MAIL_SERVER is set), not sent"


@dataclass(frozen=True)
class Outcome:
    shown: str  # the message as sent: its headers and text body
    milliseconds: int
    code: Optional[int] = None  # the SMTP server's reply code
    reply: str = ""
    error: Optional[str] = None  # None: the server took it


def addresses(method: EmailDelivery) -> list[str]:
    return [a for a in method.addresses.split(", ") if a]


def message_for(order: Order, method: EmailDelivery, records: list[dict],
                test: bool = False) -> EmailMultiAlternatives:
    """One message with the sales in `records` (sale_record), to the order's addresses."""
    label = f"order #{order.id}" + (f" ({order.name})" if order.name else "")
    if len(records) == 1:
        subject = f"New lead for {label}"
    else:
        subject = f"{len(records)} new leads for {label}"
    if test:
        subject = f"[Test] {subject}"
    text, html = mail.render(
        "delivery_leads", subject, reader=order.buyer, order=order, records=records, test=test,
        digest=method.digest if method.mode == "digest" else None,
        link=mail.public_url(f"/buyer/orders/{order.id}/delivery"))
    message = EmailMultiAlternatives(
        subject=subject, body=text, to=addresses(method),
        from_email=current_app.config["MAIL_DEFAULT_SENDER"],
        headers={"Message-ID": mail.new_message_id()})
    message.attach_alternative(html, "text/html")
    return message


def shown(message: EmailMultiAlternatives) -> str:
    headers = {"From": message.from_email, "To": ", ".join(message.to),
               "Subject": message.subject, **message.extra_headers}
    return "\n".join(f"{name}: {value}" for name, value in headers.items()) \
        + "\n\n" + message.body


def failure(exc: Exception, host: str) -> str:
    """What went wrong with the SMTP conversation, as a sentence for the buyer."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "the mail server refused " + "; ".join(
            f"{address} ({code} {_text(reply)})" for address, (code, reply) in exc.recipients.items())
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return f"the mail server {host} refused LeadX's login (MAIL_USERNAME, MAIL_PASSWORD)"
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return f"the mail server {host} offers no secure connection (STARTTLS), which " \
               "MAIL_USE_TLS asks for"
    if isinstance(exc, ssl.SSLError):
        return f"the secure connection (TLS) to the mail server {host} failed"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"the mail server {host} refused the message: {exc.smtp_code} {_text(exc.smtp_error)}"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"the mail server {host} did not answer in time"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by the mail server {host}"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return f"the mail server {host} closed the connection"
    return f"could not reach the mail server {host}"


def _text(reply) -> str:
    return (reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)).strip()


def send(message: EmailMultiAlternatives, lead_ids: Iterable[int] = ()) -> Outcome:
    """The message (carrying `lead_ids`' contacts) through the app's mail; no
    transaction is held while it goes."""
    started = time.monotonic()
    lead_ids = list(lead_ids)  # read for each copy: an iterator would link the first only
    text = shown(message)
    if mail.outbox_enabled():
        bodies = (message.body, message.alternatives[0][0])
        if privacy.erased_among(lead_ids):  # erased since the message was made
            bodies, lead_ids = (privacy.ERASED_TEXT, privacy.ERASED_TEXT), ()
        for address in message.to:  # a copy each, as each recipient would read it
            mail.store(address, message.subject, *bodies, kind="delivery",
                       status=EmailStatus.KEPT, lead_ids=lead_ids)
        db.session.commit()
        return Outcome(text, round((time.monotonic() - started) * 1000), reply=KEPT)
    host = current_app.config["MAIL_SERVER"]
    try:
        reply = mail_jobs.transmit(message)
    except (smtplib.SMTPException, OSError) as exc:
        return Outcome(text, round((time.monotonic() - started) * 1000),
                       error=failure(exc, host)[:500])
    refused = "".join(f"\nRefused {address}: {code} {_text(answer)}"
                      for address, (code, answer) in reply.refused.items())
    return Outcome(text, round((time.monotonic() - started) * 1000), reply.code,
                   f"{reply.code} {reply.text}{refused}")


def send_test(order: Order) -> Outcome:
    """The sample sale sent to the order's addresses now; nothing is stored."""
    method = db.session.get(EmailDelivery, order.id)
    if method is None:
        return Outcome("", 0, error="the order has no email addresses")
    message = message_for(order, method, [sample_sale(order)], test=True)
    db.session.commit()  # nothing held over the conversation
    return send(message)


def period_start(now: datetime, zone: str, digest: str) -> datetime:
    """The start of the hour or day `now` is in, in the order's time zone."""
    local = now.astimezone(ZoneInfo(zone))
    local = local.replace(minute=0, second=0, microsecond=0)
    if digest == "daily":
        local = local.replace(hour=0)
    return local.astimezone(now.tzinfo)


def _pending(where) -> list[tuple]:
    return db.session.execute(
        sa.select(WebhookDelivery.id, WebhookDelivery.order_id, WebhookDelivery.attempts,
                  WebhookDelivery.created_at, EmailDelivery.mode, EmailDelivery.digest,
                  Order.timezone)
        .join(Order, Order.id == WebhookDelivery.order_id)
        .outerjoin(EmailDelivery, EmailDelivery.order_id == WebhookDelivery.order_id)
        .where(WebhookDelivery.channel == "email",
               WebhookDelivery.status == DeliveryStatus.PENDING, where)
        .order_by(WebhookDelivery.id)).all()


def _due(rows: list[tuple], now: datetime, digests_due: bool) -> dict[int, list[list[int]]]:
    """The deliveries to send now, per order, in the messages they go in: a lead a
    message, or a digest once its period has ended (or when it is a retry)."""
    sends: dict[int, list[list[int]]] = defaultdict(list)
    digests: dict[int, list[int]] = defaultdict(list)
    for delivery_id, order_id, attempts, created_at, mode, digest, zone in rows:
        if mode != "digest":
            sends[order_id].append([delivery_id])
        elif attempts or (digests_due and created_at < period_start(now, zone, digest)):
            digests[order_id].append(delivery_id)
    for order_id, ids in digests.items():
        sends[order_id] += [ids[i:i + DIGEST_LIMIT] for i in range(0, len(ids), DIGEST_LIMIT)]
    return sends


def deliver_sales(sale_ids: Iterable[int]) -> int:
    """Just after the sales (or a resend) committed: the messages of orders that take a
    message per lead, and resent deliveries of digests. Returns how many were taken."""
    rows = _pending(WebhookDelivery.sale_id.in_(list(sale_ids)))
    db.session.commit()
    return _send_all(_due(rows, utcnow(), digests_due=False))


def send_due() -> int:
    """The periodic job: digests whose hour or day has ended, and retries now due."""
    now = utcnow()
    rows = _pending(WebhookDelivery.next_attempt_at <= now)
    db.session.commit()
    return _send_all(_due(rows, now, digests_due=True))


def _send_all(sends: dict[int, list[list[int]]]) -> int:
    return sum(len(ids) for order_id, messages in sends.items() for ids in messages
               if _send(order_id, ids))


def _claim(delivery_ids: list[int]) -> list[int]:
    now = utcnow()
    claimed = list(db.session.scalars(
        sa.update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(delivery_ids),
               WebhookDelivery.status == DeliveryStatus.PENDING,
               WebhookDelivery.next_attempt_at <= now)
        .values(next_attempt_at=now + LEASE)
        .returning(WebhookDelivery.id).execution_options(synchronize_session=False)))
    db.session.commit()
    return claimed


def _send(order_id: int, delivery_ids: list[int]) -> bool:
    """One message with these deliveries of one order; True when the server took it."""
    ids = _claim(delivery_ids)
    if not ids:
        return False  # delivered already, or another worker has them
    order = db.session.get(Order, order_id)
    method = db.session.get(EmailDelivery, order_id)
    rows = db.session.execute(
        sa.select(WebhookDelivery, Sale, Lead).join(Sale, Sale.id == WebhookDelivery.sale_id)
        .join(Lead, Lead.id == Sale.lead_id).where(WebhookDelivery.id.in_(ids))
        .order_by(WebhookDelivery.id)).all()
    erased = [delivery for delivery, _, lead in rows if lead.erased_at is not None]
    for delivery in erased:  # the person asked to be erased before we sent them
        delivery.status = DeliveryStatus.FAILED
        delivery.last_error = "the person asked to be erased before the lead was sent"
    rows = [row for row in rows if row[2].erased_at is None]
    if not rows:
        db.session.commit()
        return False
    certified = certificates.by_lead([lead.id for _, _, lead in rows])
    message = method and message_for(order, method, [
        sale_record(sale, lead, certificate=certified.get(lead.id)) for _, sale, lead in rows])
    delivery_ids = [delivery.id for delivery, _, _ in rows]
    lead_ids = [lead.id for _, _, lead in rows]
    db.session.commit()
    outcome = send(message, lead_ids) if message else \
        Outcome("nothing sent", 0, error="the order has no email addresses")
    _record(order_id, delivery_ids, lead_ids, outcome)
    return outcome.error is None


def _record(order_id: int, delivery_ids: list[int], lead_ids: list[int],
            outcome: Outcome) -> None:
    vault = current_vault()
    # One blob for the message, logged with each lead it carried: an erasure of one of
    # them finds the others' logs of it by this blob (app.services.privacy); one that
    # came while the message was on its way leaves no text to log.
    erased = privacy.erased_among(lead_ids)
    request = vault.encrypt(privacy.ERASED_TEXT if erased else outcome.shown)
    reply = vault.encrypt(outcome.reply) if outcome.reply else None
    now, given_up = utcnow(), None
    for delivery in db.session.scalars(sa.select(WebhookDelivery)
                                       .where(WebhookDelivery.id.in_(delivery_ids))):
        delivery.attempts += 1
        delivery.last_status_code = outcome.code
        delivery.last_error = outcome.error
        db.session.add(DeliveryAttempt(
            delivery_id=delivery.id, milliseconds=outcome.milliseconds, method="email",
            request_enc=request, status_code=outcome.code, reply_enc=reply,
            error=outcome.error))
        if outcome.error is None:
            delivery.status, delivery.delivered_at = DeliveryStatus.DELIVERED, now
        elif delivery.attempts > len(RETRY_DELAYS):
            delivery.status = DeliveryStatus.FAILED
            given_up = delivery
        else:
            delivery.next_attempt_at = now + RETRY_DELAYS[delivery.attempts - 1]
    if given_up is not None:  # one notice for the message, not one per lead in it
        notifications.delivery_failing(given_up, outcome.error)
    db.session.commit()
