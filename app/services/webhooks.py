"""Buyer webhooks (SPEC §11): each sale POSTed as JSON with
`X-Signature: sha256=<hex HMAC of the body with the order's webhook secret>`, retried
with growing delays until the buyer's server answers 2xx, each attempt logged. Only
public addresses are called, unless WEBHOOK_ALLOW_PRIVATE (app.services.outbound)."""
import hashlib
import hmac
import json
from datetime import timedelta
from typing import Iterable

import requests
import sqlalchemy as sa
from flask import current_app

from app.core import events
from app.errors import Conflict
from app.extensions import db
from app.models import DeliveryStatus, Lead, Order, Sale, WebhookDelivery
from app.models.types import utcnow
from app.people import notifications
from app.services import outbound
from app.services.delivery import sale_record
from app.services.crypto import current_vault

# Delay before attempt n+1 after n failures: minutes to hours, about a day in all.
RETRY_DELAYS = [timedelta(seconds=s) for s in (10, 30, 120, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600)]
TIMEOUT_SECONDS = 5


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver(delivery_id: int) -> bool:
    """One attempt; True when the buyer's server took the sale."""
    delivery = db.session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.status is DeliveryStatus.DELIVERED:
        return True
    order = db.session.get(Order, delivery.order_id)
    sale = db.session.get(Sale, delivery.sale_id)
    lead = db.session.get(Lead, sale.lead_id)
    url, secret_enc = order.webhook_url, order.webhook_secret_enc
    event = delivery.event
    if event == "lead.erased":
        # Tells the buyer to delete the person too; carries no personal data itself.
        payload = {"event": event, "sale_id": sale.id, "order_id": sale.order_id,
                   "lead_id": lead.id, "erased_at": lead.erased_at.isoformat()
                   if lead.erased_at else None}
    else:
        payload = {"event": event, **sale_record(sale, lead)}
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    db.session.commit()  # no transaction (nor SQLite lock) held over the network call
    error, status_code = (None, None) if url else ("the order has no webhook URL", None)
    if url:
        headers = {"Content-Type": "application/json", "User-Agent": "LeadX-Webhook/1",
                   "X-Signature": signature(current_vault().decrypt(secret_enc), body),
                   "X-LeadX-Event": event, "X-LeadX-Delivery": str(delivery_id)}
        try:
            status_code = outbound.post(
                url, data=body, headers=headers, timeout=TIMEOUT_SECONDS,
                allow_private=current_app.config["WEBHOOK_ALLOW_PRIVATE"])
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}"
        except outbound.Refused as exc:
            error = str(exc)
        except requests.RequestException as exc:
            error = type(exc).__name__ + ": " + str(exc)[:300]
    delivery = db.session.get(WebhookDelivery, delivery_id)
    delivery.attempts += 1
    delivery.last_status_code = status_code
    delivery.last_error = error
    if error is None:
        delivery.status = DeliveryStatus.DELIVERED
        delivery.delivered_at = utcnow()
    elif delivery.attempts > len(RETRY_DELAYS):
        delivery.status = DeliveryStatus.FAILED
        notifications.delivery_failing(delivery, error)
    else:
        delivery.next_attempt_at = utcnow() + RETRY_DELAYS[delivery.attempts - 1]
    db.session.commit()
    return error is None


def deliver_sales(sale_ids: Iterable[int]) -> None:
    ids = list(db.session.scalars(sa.select(WebhookDelivery.id).where(
        WebhookDelivery.sale_id.in_(list(sale_ids)),
        WebhookDelivery.status == DeliveryStatus.PENDING)))
    for delivery_id in ids:
        deliver(delivery_id)


def due_deliveries(limit: int = 500) -> list[int]:
    return list(db.session.scalars(sa.select(WebhookDelivery.id).where(
        WebhookDelivery.status == DeliveryStatus.PENDING,
        WebhookDelivery.next_attempt_at <= utcnow()).order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)))


def resend(order: Order, delivery_id: int) -> WebhookDelivery:
    """The buyer asks for a delivery again (after fixing their endpoint); it is sent
    once the caller commits (DeliveryRequested)."""
    delivery = db.session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.order_id != order.id:
        raise Conflict("No such delivery for this order.", code="unknown_delivery")
    delivery.status = DeliveryStatus.PENDING
    delivery.next_attempt_at = utcnow()
    db.session.flush()
    events.record(events.DeliveryRequested((delivery.sale_id,)))
    return delivery


def log_for(order: Order, limit: int = 100, offset: int = 0) -> list[WebhookDelivery]:
    return db.session.scalars(sa.select(WebhookDelivery).where(WebhookDelivery.order_id == order.id)
                              .order_by(WebhookDelivery.id.desc()).limit(limit)
                              .offset(offset)).all()
