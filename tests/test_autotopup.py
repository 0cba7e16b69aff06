"""Automatic top-up with a saved card (issue 16, SPEC §5) against localstripe: a
SetupIntent saves the card; a committed movement that takes the available balance
below the buyer's threshold charges it off-session, once; the signed webhook credits
it; a refused card stops automatic top-ups and the buyer is told why."""
import time

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import AutoTopUp, Role, TopUp, TopUpStatus
from app.services import autotopup, ledger, payments
from tests.conftest import CSRF_RE, log_in, make_user, wait_until


@pytest.fixture
def api_buyer(stripe_app, api_key_for):
    buyer = make_user(Role.BUYER)
    return buyer, api_key_for(buyer)


def _save_card(buyer, number: str, threshold: int = 5_000, amount: int = 10_000):
    """What the balance page does: a SetupIntent from the server, confirmed with the
    card the way Stripe.js confirms it, then saved with the buyer's terms."""
    secret = autotopup.start_card_setup(buyer)
    setup_id = secret.split("_secret_")[0]
    api = payments.client().v1
    method = api.payment_methods.create(params={
        "type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"}})
    intent = api.setup_intents.confirm(setup_id, params={"payment_method": method.id})
    if intent.status == "requires_action":  # the buyer completes 3-D Secure in the browser
        intent = api.setup_intents.confirm(setup_id)
    assert intent.status == "succeeded"
    return autotopup.save(buyer, setup_intent_id=setup_id, threshold=threshold, amount=amount)


def _automatic(buyer) -> list[TopUp]:
    return db.session.scalars(sa.select(TopUp).where(TopUp.buyer_id == buyer.id,
                                                     TopUp.automatic.is_(True))
                              .order_by(TopUp.id)).all()


def _fund_by_card(client, headers, buyer, amount: int):
    response = client.post("/api/v1/topups", json={"amount": amount, "payment_method": "pm_card_visa"},
                           headers=headers)
    assert response.status_code == 201, response.get_json()
    assert wait_until(lambda: ledger.balance_for(buyer).available == amount)


def test_an_order_that_takes_the_balance_below_the_threshold_tops_up_once(api_buyer, client):
    buyer, headers = api_buyer
    _fund_by_card(client, headers, buyer, 6_000)
    settings = _save_card(buyer, "4242424242424242")
    assert settings.enabled and settings.card_label.endswith("4242")
    assert _automatic(buyer) == []  # saving the card charges nothing

    # An order holds 20.00: 40.00 left, below 50.00. Its commit starts the top-up.
    placed = client.post("/api/v1/orders", headers=headers, json={"price": 500, "quantity": 4})
    assert placed.status_code == 201, placed.get_json()
    started = _automatic(buyer)
    assert len(started) == 1 and started[0].amount == 10_000
    # A second movement while that top-up is in flight starts no other one.
    ledger.manual_debit(buyer, 100, reason="fee", actor=None)
    db.session.commit()
    assert wait_until(lambda: _automatic(buyer)[0].status is TopUpStatus.SUCCEEDED)
    assert len(_automatic(buyer)) == 1
    assert ledger.balance_for(buyer).available == 6_000 - 2_000 - 100 + 10_000
    assert wait_until(lambda: db.session.get(AutoTopUp, buyer.id).pending_topup_id is None)
    assert ledger.reconcile().ok

    # Above the threshold now: more spending that stays above it charges nothing.
    ledger.manual_debit(buyer, 1_000, reason="fee", actor=None)
    db.session.commit()
    assert len(_automatic(buyer)) == 1
    # Running the job again for the same account (a retried job) is harmless too.
    account = ledger.account(ledger.AccountKind.BUYER_AVAILABLE, buyer)
    assert autotopup.check(account.id) is None


def test_a_declined_card_stops_automatic_top_ups_and_the_buyer_sees_why(app, api_buyer, client):
    buyer, headers = api_buyer
    _fund_by_card(client, headers, buyer, 6_000)
    _save_card(buyer, "4000000000000341")  # saved fine, declined when charged
    ledger.manual_debit(buyer, 2_000, reason="fee", actor=None)
    db.session.commit()
    [failed] = _automatic(buyer)
    assert failed.status is TopUpStatus.FAILED and "declined" in failed.failure_message
    settings = db.session.get(AutoTopUp, buyer.id)
    db.session.refresh(settings)
    assert not settings.enabled and settings.pending_topup_id is None
    assert "declined" in settings.last_error
    assert ledger.balance_for(buyer).available == 4_000

    browser = app.test_client()
    log_in(browser, buyer)
    page = browser.get("/buyer/balance").get_data(as_text=True)
    assert 'id="auto-topup-error"' in page and "declined" in page
    assert "off until you turn it on again" in page
    # Nothing more is tried while it is off.
    ledger.manual_debit(buyer, 100, reason="fee", actor=None)
    db.session.commit()
    assert len(_automatic(buyer)) == 1

    # The buyer turns it on again from the page (the plain form): the error clears.
    token = CSRF_RE.search(page).group(1)
    response = browser.post("/buyer/balance/auto-topup", data={
        "csrf_token": token, "threshold": "10.00", "amount": "25.00", "enabled": "y"})
    assert response.status_code == 302
    db.session.refresh(settings)
    assert settings.enabled and settings.last_error == "" and settings.threshold == 1_000


def test_a_card_that_asks_for_3d_secure_each_time_cannot_top_up_unattended(api_buyer, client):
    buyer, headers = api_buyer
    _fund_by_card(client, headers, buyer, 6_000)
    _save_card(buyer, "4000000000003220")
    ledger.manual_debit(buyer, 2_000, reason="fee", actor=None)
    db.session.commit()
    [failed] = _automatic(buyer)
    assert failed.status is TopUpStatus.FAILED and "confirm each payment" in failed.failure_message
    assert not db.session.get(AutoTopUp, buyer.id).enabled
    time.sleep(1.5)  # whatever localstripe sends afterwards credits nothing
    assert ledger.balance_for(buyer).available == 4_000


def test_saving_needs_a_succeeded_setup_of_the_buyers_own_customer(api_buyer):
    buyer, _ = api_buyer
    other = make_user(Role.BUYER)
    secret = autotopup.start_card_setup(other)
    with pytest.raises(Exception) as refused:
        autotopup.save(buyer, setup_intent_id=secret.split("_secret_")[0], threshold=100,
                       amount=1_000)
    assert getattr(refused.value, "code", "") == "invalid_setup"
    with pytest.raises(Exception) as bad_terms:
        autotopup.save(buyer, setup_intent_id="seti_nope", threshold=-1, amount=1_000)
    assert getattr(bad_terms.value, "code", "") == "invalid_threshold"
    assert db.session.get(AutoTopUp, buyer.id) is None


def test_the_setup_endpoint_answers_a_client_secret(app, api_buyer):
    buyer, _ = api_buyer
    browser = app.test_client()
    log_in(browser, buyer)
    page = browser.get("/buyer/balance").get_data(as_text=True)
    assert 'id="auto-topup-form"' in page
    token = CSRF_RE.search(page).group(1)
    answer = browser.post("/buyer/balance/auto-topup/setup", headers={"X-CSRFToken": token},
                          data={"threshold": "50.00", "amount": "100.00"})
    assert answer.status_code == 200 and answer.get_json()["client_secret"].startswith("seti_")
    refused = browser.post("/buyer/balance/auto-topup/setup", headers={"X-CSRFToken": token},
                           data={"threshold": "50.00", "amount": "1.00"})
    assert refused.status_code == 422


def _left_half_started(buyer, settings, *, with_intent: bool) -> TopUp:
    """What a job that died inside `check` leaves: the top-up claimed and committed,
    then either no PaymentIntent (died before asking Stripe) or one never confirmed."""
    if with_intent:
        def claim(topup):
            settings.pending_topup_id = topup.id
        topup = payments.start_topup(buyer, settings.amount, None, automatic=True,
                                     claim=claim).topup
        assert topup.payment_intent_id and topup.status is TopUpStatus.REQUIRES_PAYMENT_METHOD
    else:
        topup = TopUp(buyer_id=buyer.id, amount=settings.amount, currency=ledger.currency(),
                      automatic=True)
        db.session.add(topup)
        db.session.flush()
        settings.pending_topup_id = topup.id
    db.session.commit()
    return topup


@pytest.mark.parametrize("with_intent", [False, True], ids=["no intent", "intent unconfirmed"])
def test_a_top_up_left_half_started_by_a_crash_is_finished_by_the_periodic_job(
        api_buyer, client, with_intent):
    buyer, headers = api_buyer
    _fund_by_card(client, headers, buyer, 6_000)
    settings = _save_card(buyer, "4242424242424242")
    topup = _left_half_started(buyer, settings, with_intent=with_intent)
    # The claim blocks every later automatic top-up: the buyer would run dry.
    ledger.manual_debit(buyer, 2_000, reason="fee", actor=None)
    db.session.commit()
    assert _automatic(buyer) == [topup] and topup.status is not TopUpStatus.SUCCEEDED

    # A top-up still being started by a live job is left to it.
    assert autotopup.resume_stuck(older_than_seconds=300) == 0
    assert autotopup.resume_stuck(older_than_seconds=0) == 1
    assert wait_until(lambda: db.session.get(TopUp, topup.id).status is TopUpStatus.SUCCEEDED)
    assert ledger.balance_for(buyer).available == 6_000 - 2_000 + 10_000
    assert wait_until(lambda: db.session.get(AutoTopUp, buyer.id).pending_topup_id is None)
    assert [t.id for t in _automatic(buyer)] == [topup.id]  # finished, not started twice
    assert autotopup.resume_stuck(older_than_seconds=0) == 0
    assert ledger.reconcile().ok


def test_a_half_started_top_up_with_a_card_now_refused_frees_the_claim_and_says_why(api_buyer, client):
    buyer, headers = api_buyer
    _fund_by_card(client, headers, buyer, 6_000)
    settings = _save_card(buyer, "4000000000000341")  # saved fine, declined when charged
    topup = _left_half_started(buyer, settings, with_intent=False)
    assert autotopup.resume_stuck(older_than_seconds=0) == 1
    db.session.expire_all()
    assert db.session.get(TopUp, topup.id).status is TopUpStatus.FAILED
    settings = db.session.get(AutoTopUp, buyer.id)
    assert settings.pending_topup_id is None and not settings.enabled
    assert "declined" in settings.last_error
    assert ledger.balance_for(buyer).available == 6_000
