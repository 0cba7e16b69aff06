"""Delivery in the buyer's format against real local HTTP servers (tests/receiver.py):
the delivery page, its test console, reply rules, failures as sentences, settings
corrected after the order filled and the lead sent again, secret headers, and IDOR."""
import json
import re
import socket
from datetime import timedelta
from urllib.parse import parse_qs

import pytest
import sqlalchemy as sa

from app.aftersale.delivery import engine, http
from app.aftersale.delivery.webhook import signature
from app.extensions import db
from app.models import (
    DeliveryAttempt, DeliveryStatus, HttpDelivery, Notification, NotificationKind, Order,
    OrderStatus, Role, Sale, WebhookDelivery,
)
from app.models.types import utcnow
from app.market import operations
from app.services import ledger
from app.services.crypto import current_vault
from tests.conftest import csrf_token, log_in, make_user, wait_until
from tests.market_helpers import funded_buyer, verified_seller
from tests.receiver import Receiver

LEAD = {"email": "visitor@mail.example.com", "phone": "+1 415 555 0100", "first_name": "Vera",
        "last_name": "Lind", "consent_at": "2026-11-01T09:30:00Z",
        "source_url": "https://landing.example.com/offer", "default_country": "US",
        "floor_price": 100}
MAPPING = 'FirstName = first(full_name)\nLastName = last_name\nEmail = email\n' \
          'Phone = digits(phone)\nSource = "LeadX"'
TOKEN = "sk_live_9f8e7d6c5b4a"


@pytest.fixture
def crm():
    server = Receiver()
    yield server
    server.close()


def _order(client, api_key_for, buyer, url, quantity=5) -> int:
    ledger.manual_credit(buyer, 100_000, reason="test funds", actor=None)
    db.session.commit()
    response = client.post("/api/v1/orders", headers=api_key_for(buyer),
                           json={"price": 700, "quantity": quantity, "webhook_url": url})
    assert response.status_code == 201, response.json
    return response.json["id"]


def _page(client, order_id) -> str:
    return f"/buyer/orders/{order_id}/delivery"


def _save_format(client, order_id, **fields):
    data = {"method": "http", "body_format": "json", "mapping": MAPPING, "headers": "",
            "reply_kind": "status", "reply_path": "", "reply_accept": "", "reply_reason": "",
            **fields, "csrf_token": csrf_token(client, _page(client, order_id))}
    return client.post(f"/buyer/orders/{order_id}/delivery/format", data=data)


def _test(client, order_id) -> str:
    response = client.post(f"/buyer/orders/{order_id}/delivery/test",
                           data={"csrf_token": csrf_token(client, _page(client, order_id))})
    assert response.status_code == 200
    return response.get_data(as_text=True)


@pytest.mark.parametrize("body_format, content_type, read", [
    ("json", "application/json", lambda body: json.loads(body)),
    ("form", "application/x-www-form-urlencoded",
     lambda body: {k: v[0] for k, v in parse_qs(body.decode()).items()}),
    ("xml", "application/xml",
     lambda body: dict(re.findall(r"<(\w+)>([^<]*)</\1>", body.decode()))),
])
def test_the_test_console_sends_each_format_and_shows_request_and_reply(
        client, api_key_for, buyer, buyer_client, crm, body_format, content_type, read):
    order_id = _order(client, api_key_for, buyer, crm.url)
    assert _save_format(buyer_client, order_id, body_format=body_format).status_code == 302
    crm.body = b'{"result": "thanks"}'
    page = _test(buyer_client, order_id)
    request = crm.requests[-1]
    assert request["headers"]["Content-Type"] == content_type
    assert request["headers"]["X-LeadX-Test"] == "1"
    assert read(request["body"]) == {"FirstName": "Test", "LastName": "Lead (LeadX test)",
                                     "Email": "test.lead@example.com", "Phone": "14155550123",
                                     "Source": "LeadX"}
    assert 'id="test-result"' in page and "accepted" in page
    assert f"POST {crm.url}" in page and f"Content-Type: {content_type}" in page
    assert "Email" in page and "test.lead" in page and "HTTP 200" in page
    assert "{&#34;result&#34;: &#34;thanks&#34;}" in page  # the reply, escaped


@pytest.mark.parametrize("rule, accepted_body, rejected_body, reason", [
    ({"reply_kind": "json", "reply_path": "$.status", "reply_accept": "ok",
      "reply_reason": "$.error"},
     b'{"status": "ok"}', b'{"status": "rejected", "error": "Duplicate lead"}', "Duplicate lead"),
    ({"reply_kind": "xpath", "reply_path": "/response/result", "reply_accept": "success",
      "reply_reason": "/response/message"},
     b"<response><result>success</result></response>",
     b"<response><result>failure</result><message>Outside our area</message></response>",
     "Outside our area"),
    ({"reply_kind": "regex", "reply_path": r"^OK\b", "reply_accept": "",
      "reply_reason": r"ERROR: (.+)"},
     b"OK 5512", b"ERROR: phone number invalid", "phone number invalid"),
])
def test_reply_rules_read_a_real_crm_reply(client, api_key_for, buyer, buyer_client, crm, rule,
                                           accepted_body, rejected_body, reason):
    order_id = _order(client, api_key_for, buyer, crm.url)
    assert _save_format(buyer_client, order_id, **rule).status_code == 302
    order = db.session.get(Order, order_id)
    crm.body = accepted_body
    outcome = engine.send_test(order)
    assert outcome.error is None and outcome.status == 200 and outcome.reply == accepted_body
    crm.body = rejected_body
    assert engine.send_test(order).error == reason
    page = _test(buyer_client, order_id)
    # Labelled as the buyer system's own words, as the delivery log does.
    assert f'id="test-error">Rejected by your system: {reason}<' in page


def test_a_test_that_never_reached_the_crm_says_not_delivered(client, api_key_for, buyer,
                                                              buyer_client):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    order_id = _order(client, api_key_for, buyer, f"http://127.0.0.1:{port}/leads")
    page = _test(buyer_client, order_id)
    assert 'id="test-not-delivered">not delivered<' in page and ">rejected<" not in page
    assert "connection refused" in page


def test_an_unreadable_template_is_refused_with_its_line(client, api_key_for, buyer, buyer_client,
                                                         crm):
    order_id = _order(client, api_key_for, buyer, crm.url)
    response = _save_format(buyer_client, order_id, mapping="Email = email\nPass = password")
    assert response.status_code == 422
    assert "Line 2: password is not one of our fields." in response.get_data(as_text=True)
    assert db.session.get(HttpDelivery, order_id) is None


@pytest.fixture
def slow_crm():
    server = Receiver(delay=3)
    yield server
    server.close()


def test_failures_read_as_sentences(client, api_key_for, buyer, buyer_client, crm, slow_crm,
                                    monkeypatch):
    monkeypatch.setattr(engine, "TIMEOUT_SECONDS", 0.5)
    order_id = _order(client, api_key_for, buyer, crm.url)
    order = db.session.get(Order, order_id)

    def sentence(url):
        operations.set_webhook(db.session.get(Order, order_id), url)
        db.session.commit()
        outcome = engine.send_test(order)
        assert outcome.status is None or outcome.status >= 300
        return outcome.error

    assert sentence("http://127.0.0.1:9/leads") == "connection refused by 127.0.0.1"
    assert sentence(slow_crm.url) == "127.0.0.1 did not answer within 0.5 s"
    assert sentence("http://crm.no-such-name.invalid/leads") == \
        "the address crm.no-such-name.invalid could not be found"
    crm.status, crm.body = 500, b"Internal Server Error: database unavailable" + b"!" * 400
    assert sentence(crm.url) == ("127.0.0.1 answered HTTP 500: Internal Server Error: database "
                                 "unavailable" + "!" * 157)
    operations.set_webhook(db.session.get(Order, order_id), "http://127.0.0.1:9/leads")
    db.session.commit()
    page = _test(buyer_client, order_id)
    assert 'id="test-error">connection refused by 127.0.0.1<' in page
    for raw in ("HTTPConnectionPool", "Max retries", "Error:", "Traceback", "Errno"):
        assert raw not in page


def test_settings_are_corrected_after_the_order_filled_and_the_lead_sent_again(
        client, api_key_for, buyer, buyer_client, crm):
    order_id = _order(client, api_key_for, buyer, "http://127.0.0.1:9/wrong", quantity=1)
    assert client.post("/api/v1/leads", headers=api_key_for(verified_seller()),
                       json=LEAD).status_code == 201
    order = db.session.get(Order, order_id)
    assert order.status is OrderStatus.FILLED
    delivery = engine.log_for(order)[0]
    assert delivery.status is DeliveryStatus.PENDING
    assert delivery.last_error == "connection refused by 127.0.0.1"

    page = buyer_client.get(_page(buyer_client, order_id)).get_data(as_text=True)
    assert "connection refused by 127.0.0.1" in page and 'id="delivery-format"' in page
    response = buyer_client.post(f"/buyer/orders/{order_id}/webhook", data={
        "webhook_url": crm.url, "csrf_token": csrf_token(buyer_client, _page(buyer_client, order_id))})
    assert response.status_code == 302
    assert _save_format(buyer_client, order_id, body_format="form",
                        headers=f"X-Api-Key: {TOKEN}").status_code == 302
    response = buyer_client.post(f"/buyer/orders/{order_id}/deliveries/{delivery.id}/resend",
                                 data={"csrf_token": csrf_token(buyer_client,
                                                                _page(buyer_client, order_id))})
    assert response.status_code == 302
    assert wait_until(lambda: db.session.get(type(delivery), delivery.id).status
                      is DeliveryStatus.DELIVERED)
    sent = crm.requests[-1]
    assert sent["headers"]["X-Api-Key"] == TOKEN
    assert parse_qs(sent["body"].decode()) == {
        "FirstName": ["Vera"], "LastName": ["Lind"], "Email": ["visitor@mail.example.com"],
        "Phone": ["14155550100"], "Source": ["LeadX"]}

    # The token is encrypted at rest, masked in the attempt log and on the page.
    method = db.session.get(HttpDelivery, order_id)
    assert TOKEN.encode() not in method.headers_enc
    attempts = db.session.scalars(sa.select(DeliveryAttempt).where(
        DeliveryAttempt.delivery_id == delivery.id).order_by(DeliveryAttempt.id)).all()
    assert [a.error for a in attempts] == ["connection refused by 127.0.0.1", None]
    assert attempts[1].status_code == 200 and attempts[1].milliseconds >= 0
    logged = current_vault().decrypt(attempts[1].request_enc)
    assert b"visitor@mail.example.com" not in attempts[1].request_enc
    assert f"POST {crm.url}" in logged and "X-Api-Key: ••••••" in logged
    assert TOKEN not in logged and "Email=visitor%40mail.example.com" in logged
    page = buyer_client.get(_page(buyer_client, order_id)).get_data(as_text=True)
    assert TOKEN not in page and "X-Api-Key: ••••••" in page and 'id="attempts"' in page

    # Saved again with the masked value as shown: the token is kept.
    assert _save_format(buyer_client, order_id, body_format="form",
                        headers="X-Api-Key: ••••••").status_code == 302
    _test(buyer_client, order_id)
    assert crm.requests[-1]["headers"]["X-Api-Key"] == TOKEN


def test_leads_sold_before_the_order_had_a_url_are_sent_once_it_has_one(
        client, api_key_for, buyer, buyer_client, crm):
    ledger.manual_credit(buyer, 100_000, reason="test funds", actor=None)
    db.session.commit()
    placed = client.post("/api/v1/orders", headers=api_key_for(buyer),
                         json={"price": 700, "quantity": 1})
    order_id = placed.json["id"]
    assert client.post("/api/v1/leads", headers=api_key_for(verified_seller()),
                       json=LEAD).status_code == 201
    order = db.session.get(Order, order_id)
    assert order.status is OrderStatus.FILLED and engine.log_for(order) == []

    page = buyer_client.get(_page(buyer_client, order_id)).get_data(as_text=True)
    assert "1 lead(s) of this order were sold while it had no delivery URL: save one" in page
    buyer_client.post(f"/buyer/orders/{order_id}/webhook", data={
        "webhook_url": crm.url, "csrf_token": csrf_token(buyer_client, _page(buyer_client, order_id))})
    page = buyer_client.get(_page(buyer_client, order_id)).get_data(as_text=True)
    assert "Send them now" in page
    response = buyer_client.post(f"/buyer/orders/{order_id}/delivery/never-sent", data={
        "csrf_token": csrf_token(buyer_client, _page(buyer_client, order_id))})
    assert response.status_code == 302
    assert wait_until(lambda: len(crm.requests) == 1)
    assert json.loads(crm.requests[0]["body"])["lead"]["email"] == "visitor@mail.example.com"
    assert wait_until(lambda: engine.log_for(db.session.get(Order, order_id))[0].status
                      is DeliveryStatus.DELIVERED)
    # Sent once: nothing is left to send, and asking again sends nothing more.
    assert engine.never_sent(db.session.get(Order, order_id)) == []
    assert 'id="never-sent"' not in buyer_client.get(_page(buyer_client, order_id)).get_data(
        as_text=True)


def test_another_buyers_order_delivery_is_not_found(client, api_key_for, buyer, crm):
    order_id = _order(client, api_key_for, buyer, crm.url)
    other = funded_buyer()
    other_client = client.application.test_client()
    log_in(other_client, other)
    token = csrf_token(other_client, "/buyer/orders")
    assert other_client.get(f"/buyer/orders/{order_id}/delivery").status_code == 404
    for path in ("delivery/test", "delivery/format", "webhook", "deliveries/1/resend",
                 "delivery/never-sent"):
        response = other_client.post(f"/buyer/orders/{order_id}/{path}",
                                     data={"csrf_token": token, "webhook_url": "http://x.test/",
                                           "method": "webhook"})
        assert response.status_code == 404, path
    assert crm.requests == [] and db.session.get(Order, order_id).webhook_url == crm.url
    seller_client = client.application.test_client()
    log_in(seller_client, make_user(Role.SELLER))
    assert seller_client.get(f"/buyer/orders/{order_id}/delivery").status_code in (302, 403, 404)


def test_a_preset_fills_the_form_and_is_saved_only_when_the_buyer_saves(
        client, api_key_for, buyer, buyer_client, crm):
    order_id = _order(client, api_key_for, buyer, crm.url)
    page = buyer_client.get(f"/buyer/orders/{order_id}/delivery?preset=salesforce")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "oid = &#34;YOUR-ORG-ID&#34;" in html
    assert '<option selected value="form">' in html and db.session.get(HttpDelivery, order_id) is None
    assert _save_format(buyer_client, order_id, body_format="form",
                        mapping=http.PRESETS["salesforce"]["mapping"]).status_code == 302
    _test(buyer_client, order_id)
    sent = parse_qs(crm.requests[-1]["body"].decode())
    assert sent["oid"] == ["YOUR-ORG-ID"] and sent["lead_source"] == ["LeadX"]
    assert sent["last_name"] == ["Lead (LeadX test)"] and sent["zip"] == ["94105"]


def test_the_test_console_sends_the_signed_webhook_until_a_format_is_chosen(
        client, api_key_for, buyer, buyer_client, crm):
    order_id = _order(client, api_key_for, buyer, crm.url)
    response = buyer_client.post(f"/buyer/orders/{order_id}/webhook", data={
        "webhook_url": crm.url, "csrf_token": csrf_token(buyer_client, _page(buyer_client, order_id))})
    secret = re.search(r"(whsec_[\w-]+)", buyer_client.get(response.headers["Location"])
                       .get_data(as_text=True)).group(1)
    page = _test(buyer_client, order_id)
    sent = crm.requests[-1]
    assert sent["headers"]["X-Signature"] == signature(secret, sent["body"])
    payload = json.loads(sent["body"])
    assert payload["event"] == "lead.test" and payload["test"] is True
    assert payload["lead"]["last_name"] == "Lead (LeadX test)" and "accepted" in page
    # Chosen and then dropped again: back to the signed webhook.
    assert _save_format(buyer_client, order_id).status_code == 302
    assert _save_format(buyer_client, order_id, method="webhook").status_code == 302
    assert db.session.get(HttpDelivery, order_id) is None
    _test(buyer_client, order_id)
    assert "X-Signature" in crm.requests[-1]["headers"]


def test_a_rejection_by_the_buyers_system_waits_for_a_resend_and_no_answer_is_retried(
        client, api_key_for, buyer, buyer_client, crm):
    """SPEC §12: failed deliveries retry with backoff and can be re-sent once the
    settings are corrected. A CRM that answered and refused the lead (its reply rule
    reads "rejected") would refuse the same request again: no retry, a notice at once,
    the resend after the fix delivers it. A CRM that gave no good answer (HTTP 503) is
    retried, and so is one that answered nothing."""
    order_id = _order(client, api_key_for, buyer, crm.url, quantity=2)
    assert _save_format(buyer_client, order_id, reply_kind="json", reply_path="$.status",
                        reply_accept="ok", reply_reason="$.error").status_code == 302
    crm.body = b'{"status": "rejected", "error": "Phone is required"}'
    seller = api_key_for(verified_seller())
    assert client.post("/api/v1/leads", headers=seller, json=LEAD).status_code == 201
    order = db.session.get(Order, order_id)
    [rejected] = engine.log_for(order)
    # Its own state, apart from failed: the buyer's system refused it, nothing failed.
    assert rejected.status is DeliveryStatus.REJECTED and rejected.attempts == 1
    assert rejected.last_error == "Phone is required" and rejected.last_status_code == 200
    assert rejected.id not in engine.due_deliveries()
    [notice] = db.session.scalars(sa.select(Notification).where(
        Notification.user_id == buyer.id, Notification.kind == NotificationKind.DELIVERY_FAILING))
    assert "Your system rejected the delivery" in notice.body and "not retried" in notice.body
    assert notice.title == f"Your system rejected a lead of order #{order_id}"
    # The buyer's log reads it as their system's refusal, with its reason, not as ours.
    page = buyer_client.get(_page(buyer_client, order_id)).get_data(as_text=True)
    log = page.split('id="deliveries"')[1].split("</table>")[0]
    assert "<td>Rejected by your system</td>" in log and "<td>Failed</td>" not in log
    assert "Your system's reason: Phone is required" in log
    attempts = page.split('id="attempts"')[1]
    # Each attempt says how it was sent: an order may deliver by URL and by email.
    assert ('HTTP POST · <span class="text-danger">Rejected by your system: Phone is '
            'required</span>') in attempts
    lead_id = db.session.get(Sale, rejected.sale_id).lead_id
    journey = buyer_client.get(f"/buyer/leads/{lead_id}/journey").get_data(as_text=True)
    assert "Rejected by the buyer’s system · sale" in journey and "Delivery failed" not in journey
    [step] = [s for s in client.get(f"/api/v1/leads/{lead_id}/journey",
                                    headers=api_key_for(buyer)).json
              if s["kind"] == "delivery_attempt"]
    assert step["refused"] is True and step["delivered"] is False

    # No answer worth the name: the next lead's delivery is retried later.
    crm.status, crm.body = 503, b"maintenance"
    assert client.post("/api/v1/leads", headers=seller,
                       json=LEAD | {"email": "other@mail.example.com",
                                    "phone": "+1 415 555 0101"}).status_code == 201
    db.session.expire_all()
    retried = next(d for d in engine.log_for(order) if d.id != rejected.id)
    assert retried.status is DeliveryStatus.PENDING and retried.attempts == 1
    assert retried.last_error == "127.0.0.1 answered HTTP 503: maintenance"
    assert retried.next_attempt_at > utcnow()
    retried.next_attempt_at = utcnow() - timedelta(seconds=1)  # due now
    db.session.commit()
    assert engine.due_deliveries() == [retried.id]
    crm.status, crm.body = 200, b'{"status": "rejected", "error": "Phone is required"}'
    assert engine.deliver(retried.id) is False  # the retry job's attempt, rejected now
    db.session.expire_all()
    assert db.session.get(WebhookDelivery, retried.id).status is DeliveryStatus.REJECTED
    assert engine.due_deliveries() == []

    # The buyer adds the phone and sends the rejected one again: delivered.
    sent = len(crm.requests)
    crm.body = b'{"status": "ok"}'
    assert _save_format(buyer_client, order_id, reply_kind="json", reply_path="$.status",
                        reply_accept="ok", mapping=MAPPING).status_code == 302
    response = buyer_client.post(f"/buyer/orders/{order_id}/deliveries/{rejected.id}/resend",
                                 data={"csrf_token": csrf_token(buyer_client,
                                                                _page(buyer_client, order_id))})
    assert response.status_code == 302
    assert wait_until(lambda: db.session.get(WebhookDelivery, rejected.id).status
                      is DeliveryStatus.DELIVERED)
    assert len(crm.requests) == sent + 1


def test_a_delivery_of_an_erased_person_is_not_sent_again(client, api_key_for, buyer,
                                                           buyer_client, crm):
    """SPEC §7 and §12: a resend after the person was erased would send the buyer's
    system a lead without contacts; it is refused, saying why, and nothing is sent."""
    from app.services import privacy

    order_id = _order(client, api_key_for, buyer, crm.url, quantity=1)
    assert _save_format(buyer_client, order_id, reply_kind="json", reply_path="$.status",
                        reply_accept="ok", reply_reason="$.error").status_code == 302
    crm.body = b'{"status": "rejected", "error": "Duplicate in CRM"}'
    assert client.post("/api/v1/leads", headers=api_key_for(verified_seller()),
                       json=LEAD).status_code == 201
    [rejected] = engine.log_for(db.session.get(Order, order_id))
    assert rejected.status is DeliveryStatus.REJECTED
    privacy.erase(privacy.identify(email=LEAD["email"]), reason="DSR-7", actor=None)
    db.session.commit()
    sent = len(crm.requests)
    page = buyer_client.post(
        f"/buyer/orders/{order_id}/deliveries/{rejected.id}/resend",
        data={"csrf_token": csrf_token(buyer_client, _page(buyer_client, order_id))},
        follow_redirects=True).get_data(as_text=True)
    assert "were erased at their request: there is nothing left to send" in page
    assert "Sent again" not in page
    db.session.expire_all()
    assert db.session.get(WebhookDelivery, rejected.id).status is DeliveryStatus.REJECTED
    assert len(crm.requests) == sent
