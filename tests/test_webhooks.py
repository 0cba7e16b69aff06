"""Buyers' webhooks against real local HTTP(S) servers (tests/receiver.py); made-up
host names are answered by a stand-in for the resolver (socket.getaddrinfo)."""
import hashlib
import hmac
import json
import socket
from datetime import timedelta
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import DeliveryStatus, Order, WebhookDelivery
from app.models.types import utcnow
from app.aftersale.delivery import engine
from tests.market_helpers import funded_buyer, verified_seller
from tests.receiver import Receiver, tls_server_context

PUBLIC = "93.184.215.14"


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def dns(monkeypatch):
    """`dns.answers[name]` lists the addresses answered to each lookup of name in turn,
    the last one repeating; other names go to the real resolver. `dns.lookups` records
    the lookups of those names."""
    real = socket.getaddrinfo
    fake = SimpleNamespace(answers={}, lookups=[])

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in fake.answers:
            return real(host, port, *args, **kwargs)
        fake.lookups.append(host)
        turns = fake.answers[host]
        addresses = turns.pop(0) if len(turns) > 1 else turns[0]
        return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, port, 0, 0)) if ":" in a
                else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return fake


@pytest.fixture
def private_off(app, monkeypatch):
    """As in production: webhooks may only go to public addresses."""
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_PRIVATE", False)


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
            (DeliveryStatus.PENDING, 1, "127.0.0.1 answered HTTP 503")
        assert delivery.next_attempt_at > utcnow() + timedelta(seconds=5)
        for _ in range(len(engine.RETRY_DELAYS)):
            engine.deliver(delivery.id)
        db.session.expire_all()
        delivery = db.session.get(WebhookDelivery, delivery.id)
        assert delivery.status is DeliveryStatus.FAILED
        assert len(down.requests) == len(engine.RETRY_DELAYS) + 1
        down.status = 200
        engine.resend(db.session.get(Order, delivery.order_id), delivery.id)
        db.session.commit()
        assert engine.deliver(delivery.id) is True
    finally:
        down.close()


def test_unreachable_endpoint_is_logged_not_raised(client, api_key_for):
    _order_with_webhook(client, api_key_for, "http://127.0.0.1:9/nothing-listens-here")
    response = client.post("/api/v1/leads", headers=api_key_for(verified_seller()), json=LEAD)
    assert response.status_code == 201
    delivery = db.session.scalar(sa.select(WebhookDelivery))
    assert delivery.status is DeliveryStatus.PENDING
    assert delivery.last_error == "connection refused by 127.0.0.1"


def _sell_one_lead(client, api_key_for, url) -> WebhookDelivery:
    _order_with_webhook(client, api_key_for, url)
    response = client.post("/api/v1/leads", headers=api_key_for(verified_seller()), json=LEAD)
    assert response.status_code == 201, response.json
    return db.session.scalar(sa.select(WebhookDelivery))


@pytest.mark.parametrize("host, address", [
    ("127.0.0.1", "127.0.0.1"),
    ("10.1.2.3", "10.1.2.3"),
    ("172.16.0.1", "172.16.0.1"),
    ("192.168.1.1", "192.168.1.1"),
    ("100.64.0.1", "100.64.0.1"),  # carrier-grade NAT
    ("192.0.0.8", "192.0.0.8"),  # IETF protocol assignments
    ("169.254.169.254", "169.254.169.254"),  # cloud metadata service
    ("0.0.0.0", "0.0.0.0"),
    ("224.0.0.1", "224.0.0.1"),
    ("[::1]", "::1"),
    ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),
    ("[fd00::1]", "fd00::1"),
    ("[fe80::1]", "fe80::1"),
    ("[64:ff9b::a9fe:a9fe]", "64:ff9b::a9fe:a9fe"),  # NAT64 to 169.254.169.254
    ("[2002:7f00:1::1]", "2002:7f00:1::1"),  # 6to4 from 127.0.0.1
    # Spellings of 127.0.0.1 that the resolver accepts.
    ("2130706433", "127.0.0.1"),
    ("0x7f.1", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"),
    ("127.1", "127.0.0.1"),
])
def test_non_public_addresses_are_refused_in_production(client, api_key_for, receiver, private_off,
                                                       host, address):
    delivery = _sell_one_lead(client, api_key_for, f"http://{host}:{receiver.port}/hooks/leads")
    name = urlsplit(f"http://{host}/").hostname
    subject = name if name == address else f"{name} resolves to {address}, which"
    assert delivery.last_error == (f"refused: {subject} is not a public address, and leads are "
                                   "delivered only to public addresses")
    assert delivery.status is DeliveryStatus.PENDING and receiver.requests == []


def test_a_name_with_one_private_address_among_public_ones_is_refused(client, api_key_for,
                                                                      receiver, dns, private_off):
    dns.answers["mixed.example"] = [[PUBLIC, "127.0.0.1"]]
    delivery = _sell_one_lead(client, api_key_for, f"http://mixed.example:{receiver.port}/hooks")
    assert delivery.last_error == ("refused: mixed.example resolves to 127.0.0.1, which is not a "
                                   "public address, and leads are delivered only to public addresses")
    assert receiver.requests == []


def test_dns_rebinding_cannot_reach_loopback(client, api_key_for, receiver, dns, private_off,
                                             monkeypatch):
    """The name answers a public address first and 127.0.0.1 after: the request goes to
    the address that was checked (here nothing listens), never to the receiver."""
    monkeypatch.setattr(engine, "TIMEOUT_SECONDS", 1)
    dns.answers["rebind.example"] = [[PUBLIC], ["127.0.0.1"]]
    delivery = _sell_one_lead(client, api_key_for, f"http://rebind.example:{receiver.port}/hooks")
    assert receiver.requests == [] and dns.lookups == ["rebind.example"]
    assert delivery.status is DeliveryStatus.PENDING and "rebind.example" in delivery.last_error


def test_https_goes_to_the_resolved_address_with_the_host_name_for_tls(
        client, api_key_for, dns, tmp_path, monkeypatch):
    context, ca_file = tls_server_context(tmp_path, "hooks.buyer.test")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_file))
    dns.answers["hooks.buyer.test"] = dns.answers["other.buyer.test"] = [["127.0.0.1"]]
    server = Receiver(tls=context)
    try:
        delivery = _sell_one_lead(client, api_key_for,
                                  f"https://hooks.buyer.test:{server.port}/hooks/leads")
        assert delivery.status is DeliveryStatus.DELIVERED and dns.lookups == ["hooks.buyer.test"]
        assert server.requests[0]["headers"]["Host"] == f"hooks.buyer.test:{server.port}"
        assert server.server_names == ["hooks.buyer.test"]
        # The certificate is checked against the name in the URL, not the address.
        order = db.session.get(Order, delivery.order_id)
        order.webhook_url = f"https://other.buyer.test:{server.port}/hooks/leads"
        engine.resend(order, delivery.id)
        db.session.commit()
        assert engine.deliver(delivery.id) is False
        delivery = db.session.get(WebhookDelivery, delivery.id)
        assert delivery.last_error == ("the secure connection to other.buyer.test failed: its "
                                       "certificate is not valid for other.buyer.test")
        assert len(server.requests) == 1 and server.server_names[-1] == "other.buyer.test"
    finally:
        server.close()


def test_the_next_address_is_tried_when_the_first_refuses_the_connection(client, api_key_for,
                                                                          receiver, dns):
    dns.answers["two.example"] = [["127.0.0.2", "127.0.0.1"]]  # nothing listens on .2
    delivery = _sell_one_lead(client, api_key_for, f"http://two.example:{receiver.port}/hooks")
    assert delivery.status is DeliveryStatus.DELIVERED and len(receiver.requests) == 1
    assert receiver.requests[0]["headers"]["Host"] == f"two.example:{receiver.port}"
    assert dns.lookups == ["two.example"]


def test_redirects_are_not_followed(client, api_key_for, receiver):
    redirecting = Receiver(status=302, headers={"Location": receiver.url})
    try:
        delivery = _sell_one_lead(client, api_key_for, redirecting.url)
    finally:
        redirecting.close()
    assert delivery.last_error == "127.0.0.1 answered HTTP 302" and len(redirecting.requests) == 1
    assert receiver.requests == []
