import hashlib
import hmac
import json
from datetime import timedelta

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import DeliveryStatus, WebhookDelivery
from app.models.types import utcnow
from app.services import webhooks
from tests.market_helpers import funded_buyer, verified_seller
from tests.receiver import Receiver


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


LEAD = {"email": "visitor@mail.example.com", "phone": "+1 415 555 0100", "first_name": "Vera",
        "consent_at": "2026-11-01T09:30:00Z", "source_url": "https://landing.example.com/offer",
        "default_country": "US", "floor_price": 100}


def _order_with_webhook(client, api_key_for, url):
    buyer = funded_buyer()
    response = client.post("/api/v1/orders", headers=api_key_for(buyer),
                           json={"price": 700, "quantity": 5, "webhook_url": url})
    assert response.status_code == 201
    return response.json


def test_real_time_lead_is_sold_and_the_signed_webhook_arrives(client, api_key_for, receiver):
    order = _order_with_webhook(client, api_key_for, receiver.url)
    secret = order["webhook_secret"]
    seller = verified_seller()
    response = client.post("/api/v1/leads", headers=api_key_for(seller), json=LEAD)
    assert response.status_code == 201, response.json
    sale = response.json["sales"][0]
    assert sale["price"] == 700 and sale["seller_share"] == 560
    assert receiver.arrived.wait(5)
    request = receiver.requests[0]
    expected = "sha256=" + hmac.new(secret.encode(), request["body"], hashlib.sha256).hexdigest()
    assert request["headers"]["X-Signature"] == expected
    payload = json.loads(request["body"])
    assert payload["sale_id"] == sale["sale_id"] and payload["order_id"] == order["id"]
    assert payload["lead"]["email"] == "visitor@mail.example.com"
    assert payload["lead"]["phone"] == "+14155550100"
    delivery = db.session.scalar(sa.select(WebhookDelivery))
    assert delivery.status is DeliveryStatus.DELIVERED and delivery.attempts == 1


def test_failed_deliveries_are_retried_with_backoff_then_given_up(client, api_key_for):
    down = Receiver(status=503)
    try:
        _order_with_webhook(client, api_key_for, down.url)
        client.post("/api/v1/leads", headers=api_key_for(verified_seller()), json=LEAD)
        delivery = db.session.scalar(sa.select(WebhookDelivery))
        assert (delivery.status, delivery.attempts, delivery.last_error) == \
            (DeliveryStatus.PENDING, 1, "HTTP 503")
        assert delivery.next_attempt_at > utcnow() + timedelta(seconds=5)
        for _ in range(len(webhooks.RETRY_DELAYS)):
            webhooks.deliver(delivery.id)
        db.session.expire_all()
        delivery = db.session.get(WebhookDelivery, delivery.id)
        assert delivery.status is DeliveryStatus.FAILED
        assert len(down.requests) == len(webhooks.RETRY_DELAYS) + 1
        down.status = 200
        order = delivery.order_id
        from app.models import Order

        webhooks.resend(db.session.get(Order, order), delivery.id)
        db.session.commit()
        assert webhooks.deliver(delivery.id) is True
    finally:
        down.close()


def test_unreachable_endpoint_is_logged_not_raised(client, api_key_for):
    _order_with_webhook(client, api_key_for, "http://127.0.0.1:9/nothing-listens-here")
    response = client.post("/api/v1/leads", headers=api_key_for(verified_seller()), json=LEAD)
    assert response.status_code == 201
    delivery = db.session.scalar(sa.select(WebhookDelivery))
    assert delivery.status is DeliveryStatus.PENDING and "ConnectionError" in delivery.last_error


def test_private_addresses_are_refused_in_production(app, client, api_key_for, receiver):
    _order_with_webhook(client, api_key_for, receiver.url)
    app.config["WEBHOOK_ALLOW_PRIVATE"] = False
    try:
        client.post("/api/v1/leads", headers=api_key_for(verified_seller()), json=LEAD)
    finally:
        app.config["WEBHOOK_ALLOW_PRIVATE"] = True
    delivery = db.session.scalar(sa.select(WebhookDelivery))
    assert "private address" in delivery.last_error and receiver.requests == []
