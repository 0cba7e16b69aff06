"""A card top-up its buyer leaves at the 3-D Secure step: they may finish or cancel it
from the balance page, and the scheduler closes one left too long, cancelling its
PaymentIntent at Stripe; no money moves twice (SPEC §5). Against localstripe, whose
signed webhooks reach the app served by a real WSGI server."""
import time
from datetime import timedelta

import pytest
import requests
import sqlalchemy as sa

from app.extensions import db
from app.models import LedgerTransaction, Role, TopUp, TopUpStatus
from app.services import ledger, payments
from app.tasks import _run_in_app_context, celery
from tests.conftest import csrf_token, log_in, make_user, wait_until


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
    entry = celery.conf.beat_schedule[name]
    _run_in_app_context(app, celery.tasks[entry["task"]], ())


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
    # last word, and the webhook credits it once either way.
    assert payments.close_abandoned_topups(older_than=timedelta(0)) == 0
    assert _intent_status(topup) == "succeeded"
    assert wait_until(lambda: _status(topup.id) is TopUpStatus.SUCCEEDED)
    assert ledger.balance_for(buyer).available == 2500 and _topup_credits() == 1
    assert ledger.reconcile().ok
