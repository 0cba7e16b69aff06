"""A card top-up its buyer leaves at the 3-D Secure step: they may finish or cancel it
from the balance page or the API, and the scheduler closes one left too long, cancelling
its PaymentIntent at Stripe; one whose webhook is late is rechecked at Stripe but
credited only by its webhook; no money moves twice (SPEC §5). Against localstripe, whose signed
webhooks reach the app served by a real WSGI server."""
import hashlib
import hmac
import json
import time
from datetime import timedelta

import pytest
import requests
import sqlalchemy as sa

from app.extensions import db
from app.models import LedgerTransaction, Role, TopUp, TopUpStatus
from app.services import ledger, payments
from app.tasks import BEAT_SCHEDULE, JOBS, _run_in_app_context
from tests.conftest import STRIPE_TEST_CONFIG, csrf_token, log_in, make_user, wait_until


@pytest.fixture
def buyer_at_3ds(stripe_app, client, api_key_for):
    """A buyer whose top-up of 25.00 waits at the 3-D Secure step, signed in."""
    buyer = make_user(Role.BUYER)
    card = payments.client().v1.payment_methods.create(params={
        "type": "card", "card": {"number": "4000000000003220", "exp_month": 12,
                                 "exp_year": 2030, "cvc": "123"}})
    response = client.post("/api/v1/topups", json={"amount": 2500, "payment_method": card.id},
                           headers=api_key_for(buyer))
    assert response.status_code == 201 and response.get_json()["status"] == "requires_action"
    log_in(client, buyer)
    return buyer, db.session.get(TopUp, response.get_json()["id"])


def _intent_status(topup: TopUp) -> str:
    return payments.client().v1.payment_intents.retrieve(topup.payment_intent_id).status


def _status(topup_id: int) -> TopUpStatus:
    db.session.expire_all()
    return db.session.get(TopUp, topup_id).status


def _authenticate(stripe_server, topup: TopUp) -> requests.Response:
    """What Stripe.js does in the browser when the buyer completes the challenge."""
    intent = payments.client().v1.payment_intents.retrieve(topup.payment_intent_id)
    return requests.post(f"{stripe_server}/v1/payment_intents/{intent.id}/_authenticate"
                         "?success=true",
                         json={"key": "pk_test_leadx", "client_secret": intent.client_secret})


def _topup_credits() -> int:
    """Card top-ups credited to any balance (each test starts with none)."""
    return db.session.scalar(sa.select(sa.func.count()).select_from(LedgerTransaction)
                             .where(LedgerTransaction.kind == "topup",
                                    LedgerTransaction.idempotency_key.like("topup:%")))


def _post(client, url: str, **kwargs):
    """A POST from the balance page's buttons (its CSRF token as static/js/balance.js
    sends it)."""
    token = csrf_token(client, "/buyer/balance")
    return client.post(url, headers={"X-CSRFToken": token}, **kwargs)


def _run_scheduled(app, name: str) -> None:
    """One run of a periodic job, as the embedded scheduler runs it (its own app
    context and session); the test's own transaction ends first, as it would not hold
    the database in production."""
    db.session.rollback()
    entry = BEAT_SCHEDULE[name]
    _run_in_app_context(app, JOBS[entry["task"]], ())


def test_the_balance_page_offers_to_finish_or_cancel_a_top_up_left_at_3ds(buyer_at_3ds, client):
    buyer, topup = buyer_at_3ds
    page = client.get("/buyer/balance").get_data(as_text=True)
    assert "Waiting for 3-D Secure" in page
    assert f'data-resume-url="/buyer/balance/topups/{topup.id}/resume"' in page
    assert f'action="/buyer/balance/topups/{topup.id}/cancel"' in page
    # Nothing for Stripe to do: the page does not poll while the buyer is away.
    assert "data-poll-url" not in page


def test_resuming_gives_back_the_3ds_step_and_a_finished_one_is_credited_once(
        buyer_at_3ds, client, stripe_server):
    buyer, topup = buyer_at_3ds
    resumed = _post(client, f"/buyer/balance/topups/{topup.id}/resume").get_json()
    assert resumed["status"] == "requires_action"
    assert resumed["client_secret"].startswith(topup.payment_intent_id)

    assert _authenticate(stripe_server, topup).status_code == 200
    assert wait_until(lambda: _status(topup.id) is TopUpStatus.SUCCEEDED)
    # Resuming or cancelling a paid top-up changes nothing.
    again = _post(client, f"/buyer/balance/topups/{topup.id}/resume").get_json()
    assert again["status"] == "succeeded" and again["client_secret"] is None
    _post(client, f"/buyer/balance/topups/{topup.id}/cancel")
    assert _status(topup.id) is TopUpStatus.SUCCEEDED
    assert ledger.balance_for(buyer).available == 2500 and _topup_credits() == 1


def test_the_buyer_cancels_a_top_up_left_at_3ds_and_stripe_can_no_longer_charge_it(
        buyer_at_3ds, client, stripe_server):
    buyer, topup = buyer_at_3ds
    response = _post(client, f"/buyer/balance/topups/{topup.id}/cancel", follow_redirects=True)
    page = response.get_data(as_text=True)
    assert f"Top-up #{topup.id} of $25.00 is cancelled; nothing was charged." in page
    assert "Cancelled by you; nothing was charged." in page
    assert _status(topup.id) is TopUpStatus.CANCELED and _intent_status(topup) == "canceled"
    assert f"/topups/{topup.id}/cancel" not in page  # nothing left to cancel

    # The authentication page left open in another tab can no longer take the money.
    assert _authenticate(stripe_server, topup).status_code == 400
    # Cancelling again (a second click, a retry) changes nothing.
    _post(client, f"/buyer/balance/topups/{topup.id}/cancel")
    time.sleep(1)  # room for a webhook localstripe might send
    assert _status(topup.id) is TopUpStatus.CANCELED
    assert ledger.balance_for(buyer).available == 0 and _topup_credits() == 0
    assert ledger.reconcile().ok


def test_another_buyer_cannot_cancel_it(buyer_at_3ds, app):
    _, topup = buyer_at_3ds
    other = app.test_client()
    log_in(other, make_user(Role.BUYER))
    assert _post(other, f"/buyer/balance/topups/{topup.id}/cancel").status_code == 404
    assert _post(other, f"/buyer/balance/topups/{topup.id}/resume").status_code == 404
    assert _status(topup.id) is TopUpStatus.REQUIRES_ACTION
    assert _intent_status(topup) == "requires_action"


def test_the_scheduler_closes_a_top_up_left_too_long_and_only_that_one(
        buyer_at_3ds, app, client, api_key_for, stripe_server):
    buyer, old = buyer_at_3ds
    card = payments.client().v1.payment_methods.create(params={
        "type": "card", "card": {"number": "4000000000003220", "exp_month": 12,
                                 "exp_year": 2030, "cvc": "123"}})
    fresh_id = client.post("/api/v1/topups", json={"amount": 4000, "payment_method": card.id},
                           headers=api_key_for(buyer)).get_json()["id"]
    limit = timedelta(seconds=app.config["TOPUP_WAIT_LIMIT_SECONDS"])
    db.session.execute(sa.update(TopUp).where(TopUp.id == old.id)
                       .values(created_at=old.created_at - limit - timedelta(minutes=1)))
    db.session.commit()

    _run_scheduled(app, "close-abandoned-topups")
    assert _status(old.id) is TopUpStatus.CANCELED and _intent_status(old) == "canceled"
    assert _status(fresh_id) is TopUpStatus.REQUIRES_ACTION  # still within the limit
    page = client.get("/buyer/balance").get_data(as_text=True)
    assert ("Expired: the payment was not completed within 1 hour, so it was cancelled "
            "and nothing was charged.") in page
    assert f"/topups/{old.id}/cancel" not in page and f"/topups/{fresh_id}/cancel" in page

    # A second run finds nothing more to do; the expired one cannot be charged.
    _run_scheduled(app, "close-abandoned-topups")
    assert _authenticate(stripe_server, old).status_code == 400
    time.sleep(1)
    assert _status(old.id) is TopUpStatus.CANCELED
    assert ledger.balance_for(buyer).available == 0 and _topup_credits() == 0


def test_a_top_up_paid_just_before_it_expires_is_credited_not_cancelled(
        buyer_at_3ds, app, stripe_server):
    buyer, topup = buyer_at_3ds
    assert _authenticate(stripe_server, topup).status_code == 200
    # The scheduler's run reaches it before (or after) Stripe's webhook: Stripe has the
    # last word, and its webhook credits it once.
    payments.close_abandoned_topups(older_than=timedelta(0))
    assert _intent_status(topup) == "succeeded"
    assert wait_until(lambda: _status(topup.id) is TopUpStatus.SUCCEEDED)
    assert ledger.balance_for(buyer).available == 2500 and _topup_credits() == 1
    assert ledger.reconcile().ok


@pytest.fixture
def webhooks_lost(stripe_server, live_server):
    """localstripe's events go to a port nobody listens on while the test runs."""
    from tests.stripe_server import free_port, register_webhook

    secret = STRIPE_TEST_CONFIG["STRIPE_WEBHOOK_SECRET"]
    register_webhook(stripe_server, f"http://127.0.0.1:{free_port()}/stripe/webhook", secret)
    yield
    register_webhook(stripe_server, f"{live_server}/stripe/webhook", secret)


def test_a_top_up_whose_webhook_is_late_waits_for_it_and_is_credited_once(
        stripe_app, webhooks_lost, app, client, api_key_for, caplog):
    buyer = make_user(Role.BUYER)
    response = client.post("/api/v1/topups", json={"amount": 2500,
                                                   "payment_method": "pm_card_visa"},
                           headers=api_key_for(buyer))
    assert response.status_code == 201 and response.get_json()["status"] == "processing"
    topup = db.session.get(TopUp, response.get_json()["id"])
    assert _intent_status(topup) == "succeeded"
    time.sleep(1)  # room for the webhook, which goes nowhere
    _run_scheduled(app, "close-abandoned-topups")  # within the limit: left alone
    assert _status(topup.id) is TopUpStatus.PROCESSING and _topup_credits() == 0
    log_in(client, buyer)
    assert "Waiting for Stripe to confirm" in client.get("/buyer/balance").get_data(as_text=True)

    limit = timedelta(seconds=app.config["TOPUP_WAIT_LIMIT_SECONDS"])
    db.session.execute(sa.update(TopUp).where(TopUp.id == topup.id)
                       .values(created_at=topup.created_at - limit - timedelta(minutes=1)))
    db.session.commit()
    with caplog.at_level("WARNING", logger="app.services.payments"):
        _run_scheduled(app, "close-abandoned-topups")
    # Past the limit Stripe is asked: the payment went through, so nothing is cancelled,
    # and only the verified webhook credits it (SPEC §5); the operators are told.
    assert _status(topup.id) is TopUpStatus.PROCESSING and _topup_credits() == 0
    assert _intent_status(topup) == "succeeded"
    assert any(topup.payment_intent_id in r.getMessage() for r in caplog.records)
    assert "Waiting for Stripe to confirm" in client.get("/buyer/balance").get_data(as_text=True)

    # The webhook arrives after all (Stripe retries for days): credited once, and the
    # job running again changes nothing.
    intent = payments.client().v1.payment_intents.retrieve(topup.payment_intent_id)
    payload = json.dumps({"id": "evt_late_delivery", "object": "event",
                          "type": "payment_intent.succeeded", "created": int(time.time()),
                          "data": {"object": intent.to_dict()}}).encode()
    stamp = int(time.time())
    mac = hmac.new(STRIPE_TEST_CONFIG["STRIPE_WEBHOOK_SECRET"].encode(),
                   f"{stamp}.".encode() + payload, hashlib.sha256).hexdigest()
    assert client.post("/stripe/webhook", data=payload, content_type="application/json",
                       headers={"Stripe-Signature": f"t={stamp},v1={mac}"}).status_code == 200
    assert _status(topup.id) is TopUpStatus.SUCCEEDED
    assert ledger.balance_for(buyer).available == 2500 and _topup_credits() == 1
    page = client.get("/buyer/balance").get_data(as_text=True)
    assert "Waiting for Stripe to confirm" not in page and "Credited" in page
    _run_scheduled(app, "close-abandoned-topups")
    assert _status(topup.id) is TopUpStatus.SUCCEEDED
    assert ledger.balance_for(buyer).available == 2500 and _topup_credits() == 1
    assert ledger.reconcile().ok


def test_the_api_cancels_a_top_up_waiting_for_its_buyer_as_the_balance_page_does(
        buyer_at_3ds, app, api_key_for, stripe_server):
    buyer, topup = buyer_at_3ds
    api = app.test_client()
    other = api.post(f"/api/v1/topups/{topup.id}/cancel",
                     headers=api_key_for(make_user(Role.BUYER)))
    assert other.status_code == 404 and _status(topup.id) is TopUpStatus.REQUIRES_ACTION
    headers = api_key_for(buyer)
    response = api.post(f"/api/v1/topups/{topup.id}/cancel", headers=headers)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["status"] == "canceled" and body["failure_message"] == (
        "Cancelled by you; nothing was charged.")
    assert _intent_status(topup) == "canceled"
    assert _authenticate(stripe_server, topup).status_code == 400  # nothing can charge it
    again = api.post(f"/api/v1/topups/{topup.id}/cancel", headers=headers)
    assert again.status_code == 200 and again.get_json()["status"] == "canceled"

    # A paid one (or one Stripe is confirming) is not the buyer's to cancel.
    paid = api.post("/api/v1/topups", json={"amount": 3000, "payment_method": "pm_card_visa"},
                    headers=headers).get_json()
    refused = api.post(f"/api/v1/topups/{paid['id']}/cancel", headers=headers)
    assert refused.status_code == 409
    assert refused.get_json()["error"]["code"] == "topup_not_waiting"
    assert wait_until(lambda: _status(paid["id"]) is TopUpStatus.SUCCEEDED)
    assert ledger.balance_for(buyer).available == 3000 and _topup_credits() == 1
