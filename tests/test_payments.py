"""Stripe payments against a real peer: localstripe on 127.0.0.1 sends signed webhooks
to the app served by a real WSGI server (issue #5, SPEC §5, §11)."""
import hashlib
import hmac
import json
import time
from datetime import date, datetime, timedelta, timezone

import pytest
import requests
import sqlalchemy as sa

from app.extensions import db
from app.models import (
    AccountKind, AuditEvent, CardRefund, Payout, PayoutStatus, RefundStatus, Role, StripeEvent,
    TopUp, TopUpStatus, TrustLevel, Withdrawal,
)
from app.services import earnings, ledger, payments
from app.market import jobs
from tests.conftest import CSRF_RE, STRIPE_TEST_CONFIG, csrf_token, make_user, wait_until
from tests.market_helpers import funded_buyer, live_leads, person, place


def _topup_status(topup_id: int) -> TopUpStatus:
    return db.session.get(TopUp, topup_id).status


def _available(user) -> int:
    return ledger.balance_for(user).available


def _client():
    return payments.client()


def _signed(payload: bytes, secret: str = STRIPE_TEST_CONFIG["STRIPE_WEBHOOK_SECRET"]) -> str:
    stamp = int(time.time())
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={mac}"


def _event(kind: str, obj, event_id: str) -> bytes:
    return json.dumps({"id": event_id, "object": "event", "type": kind, "created": int(time.time()),
                       "data": {"object": obj}}).encode()


@pytest.fixture
def api_buyer(stripe_app, api_key_for):
    buyer = make_user(Role.BUYER)
    return buyer, api_key_for(buyer)


def test_visa_top_up_is_credited_once_by_the_signed_webhook(api_buyer, client):
    buyer, headers = api_buyer
    response = client.post("/api/v1/topups", json={"amount": 5000, "payment_method": "pm_card_visa"},
                           headers=headers)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["status"] == "processing" and body["payment_intent_id"].startswith("pi_")
    # Stripe took the money, but only its webhook may credit the balance.
    assert _available(buyer) == 0

    assert wait_until(lambda: _topup_status(body["id"]) is TopUpStatus.SUCCEEDED)
    assert _available(buyer) == 5000
    event = db.session.scalar(sa.select(StripeEvent).where(StripeEvent.object_id == body["payment_intent_id"],
                                                           StripeEvent.type == "payment_intent.succeeded"))
    assert event is not None

    # The same event delivered again (Stripe retries) changes nothing.
    stored = _client().v1.events.retrieve(event.id)
    payload = json.dumps(stored.to_dict()).encode()
    for _ in range(2):
        again = client.post("/stripe/webhook", data=payload,
                            headers={"Stripe-Signature": _signed(payload),
                                     "Content-Type": "application/json"})
        assert again.status_code == 200 and again.get_json()["outcome"] == "duplicate"
    assert _available(buyer) == 5000
    assert ledger.reconcile().ok
    assert client.get("/api/v1/balance", headers=headers).get_json()["available"] == 5000


def test_declined_card_credits_nothing_and_says_why(api_buyer, client):
    buyer, headers = api_buyer
    response = client.post("/api/v1/topups",
                           json={"amount": 5000, "payment_method": "pm_card_chargeCustomerFail"},
                           headers=headers)
    assert response.status_code == 402
    error = response.get_json()["error"]
    assert error["code"] == "card_declined" and "declined" in error["message"]
    topup = db.session.scalar(sa.select(TopUp).where(TopUp.buyer_id == buyer.id))
    assert topup.status is TopUpStatus.FAILED and "declined" in topup.failure_message
    # localstripe also sends payment_intent.payment_failed; it must not credit anything.
    assert wait_until(lambda: db.session.scalar(sa.select(sa.func.count()).select_from(StripeEvent).where(
        StripeEvent.type == "payment_intent.payment_failed")) == 1)
    assert _topup_status(topup.id) is TopUpStatus.FAILED
    assert _available(buyer) == 0 and ledger.reconcile().ok


def test_three_d_secure_card_waits_for_the_buyer_then_credits(api_buyer, client, stripe_server):
    buyer, headers = api_buyer
    card = _client().v1.payment_methods.create(params={
        "type": "card", "card": {"number": "4000000000003220", "exp_month": 12,
                                 "exp_year": 2030, "cvc": "123"}})
    response = client.post("/api/v1/topups", json={"amount": 2500, "payment_method": card.id},
                           headers=headers)
    body = response.get_json()
    assert response.status_code == 201 and body["status"] == "requires_action"
    assert body["client_secret"].startswith(body["payment_intent_id"])
    time.sleep(1.5)
    assert _topup_status(body["id"]) is TopUpStatus.REQUIRES_ACTION and _available(buyer) == 0

    # What Stripe.js does in the browser when the buyer completes the challenge.
    done = requests.post(f"{stripe_server}/v1/payment_intents/{body['payment_intent_id']}"
                         "/_authenticate?success=true",
                         json={"key": "pk_test_leadx", "client_secret": body["client_secret"]})
    assert done.status_code == 200
    assert wait_until(lambda: _topup_status(body["id"]) is TopUpStatus.SUCCEEDED)
    assert _available(buyer) == 2500


def test_webhook_without_a_valid_signature_is_refused_and_changes_nothing(api_buyer, client):
    buyer, _ = api_buyer
    topup = TopUp(buyer_id=buyer.id, amount=900, currency="USD", payment_intent_id="pi_forged",
                  status=TopUpStatus.PROCESSING)
    db.session.add(topup)
    db.session.commit()
    payload = _event("payment_intent.succeeded",
                     {"id": "pi_forged", "object": "payment_intent", "amount": 900,
                      "amount_received": 900, "currency": "usd", "metadata": {}}, "evt_forged")
    for headers in ({}, {"Stripe-Signature": "t=1,v1=00"},
                    {"Stripe-Signature": _signed(payload, secret="whsec_someone_else")}):
        response = client.post("/stripe/webhook", data=payload, headers=headers)
        assert response.status_code == 400
        assert response.get_json()["error"]["code"] == "invalid_signature"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(StripeEvent)) == 0
    assert _topup_status(topup.id) is TopUpStatus.PROCESSING and _available(buyer) == 0
    # Correctly signed, the same payload credits the balance, once.
    response = client.post("/stripe/webhook", data=payload, headers={"Stripe-Signature": _signed(payload)})
    assert response.get_json()["outcome"].startswith("credited 900")
    assert _available(buyer) == 900


def _paid_topup(client, headers, amount: int) -> int:
    response = client.post("/api/v1/topups", json={"amount": amount, "payment_method": "pm_card_visa"},
                           headers=headers)
    topup_id = response.get_json()["id"]
    assert wait_until(lambda: _topup_status(topup_id) is TopUpStatus.SUCCEEDED)
    return topup_id


def test_withdrawal_refunds_the_newest_top_ups_first_and_only_card_money(api_buyer, client):
    buyer, headers = api_buyer
    older = _paid_topup(client, headers, 5000)
    newer = _paid_topup(client, headers, 3000)
    ledger.manual_credit(buyer, 10_000, reason="wire", actor=None)
    db.session.commit()
    assert payments.refundable(buyer) == 8000  # a wire cannot go back to a card

    too_much = client.post("/api/v1/withdrawals", json={"amount": 8001}, headers=headers)
    assert too_much.status_code == 422 and too_much.get_json()["error"]["code"] == "exceeds_refundable"

    response = client.post("/api/v1/withdrawals", json={"amount": 4500}, headers=headers)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["status"] == "succeeded" and body["refunded"] == 4500
    assert [(r["topup_id"], r["amount"]) for r in body["refunds"]] == [(newer, 3000), (older, 1500)]
    stripe_refunds = {r.payment_intent: r.amount for r in _client().v1.refunds.list(
        params={"limit": 100}).data if r.id in {x["stripe_refund_id"] for x in body["refunds"]}}
    assert sorted(stripe_refunds.values()) == [1500, 3000]
    assert _available(buyer) == 18_000 - 4500
    assert payments.refundable(buyer) == 3500
    assert ledger.reconcile().ok and payments.reconciliation().difference == 0


def test_a_refund_stripe_refuses_puts_the_money_back(api_buyer, client):
    buyer, headers = api_buyer
    topup_id = _paid_topup(client, headers, 4000)
    topup = db.session.get(TopUp, topup_id)
    topup.payment_intent_id = "pi_unknown_to_stripe"  # Stripe answers 404 to the refund
    db.session.commit()
    response = client.post("/api/v1/withdrawals", json={"amount": 1000}, headers=headers)
    body = response.get_json()
    assert body["status"] == "failed" and body["refunds"][0]["failure_message"]
    assert _available(buyer) == 4000
    assert db.session.get(TopUp, topup_id).refunded == 0
    assert ledger.reconcile().ok and payments.reconciliation().difference == 0


def test_top_up_amount_limits_and_role(api_buyer, client, api_key_for):
    _, headers = api_buyer
    low = client.post("/api/v1/topups", json={"amount": 10}, headers=headers)
    assert low.status_code == 422 and low.get_json()["error"]["code"] == "invalid_amount"
    seller = make_user(Role.SELLER)
    forbidden = client.post("/api/v1/topups", json={"amount": 5000}, headers=api_key_for(seller))
    assert forbidden.status_code == 403
    # Without a payment method the buyer's own Stripe.js confirms with client_secret.
    bare = client.post("/api/v1/topups", json={"amount": 5000}, headers=headers).get_json()
    assert bare["status"] == "requires_payment_method" and bare["client_secret"]


def test_without_stripe_keys_the_balance_page_says_so(buyer_client, api_key_for, buyer, client):
    page = buyer_client.get("/buyer/balance").get_data(as_text=True)
    assert 'id="payments-not-configured"' in page and "js.stripe.com" not in page
    response = client.post("/api/v1/topups", json={"amount": 5000}, headers=api_key_for(buyer))
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "payments_not_configured"


def _cleared_sales(seller, amount_each: int = 1000, count: int = 3):
    buyer = funded_buyer()
    leads = live_leads(seller, [person(i) for i in range(count)])
    place(buyer, amount_each, count)
    jobs.match_leads([lead.id for lead in leads])
    db.session.commit()
    return buyer


def test_earnings_clear_after_the_return_window_then_are_paid_out_once(stripe_app, seller_client, seller):
    seller.trust_level = TrustLevel.VERIFIED
    db.session.commit()
    _cleared_sales(seller)
    assert ledger.balance_for(seller).pending == 2400  # 3 x 1000 minus 20% commission
    assert earnings.release_cleared() == 0  # inside the return window
    now = datetime.now(timezone.utc) + timedelta(days=8)
    assert earnings.release_cleared(now) == 2400
    assert earnings.release_cleared(now) == 0  # a second run finds nothing left
    assert ledger.balance_for(seller).available == 2400 and ledger.balance_for(seller).pending == 0

    # Connect (simulated: localstripe has no Connect) through the seller's page.
    page = seller_client.get("/seller/payouts").get_data(as_text=True)
    assert "Connect with Stripe" in page
    token = CSRF_RE.search(page).group(1)
    response = seller_client.post("/seller/payouts/connect", data={"csrf_token": token})
    assert response.status_code == 302
    assert seller_client.get(response.headers["Location"]).status_code == 302
    db.session.refresh(seller)
    assert seller.payouts_enabled and seller.stripe_account_id

    today = date.today()
    first = payments.run_payouts(today)
    again = payments.run_payouts(today)  # the same job run twice
    assert len(first) == 1 and again == []
    connect = payments.connect()
    assert len(connect.transfers) == 1 and connect.calls == 1
    payout = db.session.scalar(sa.select(Payout))
    assert payout.status is PayoutStatus.PAID and payout.amount == 2400
    assert list(connect.transfers) == [f"payout:{seller.id}:{today.isoformat()}"]
    assert ledger.balance_for(seller).available == 0
    assert "tr_sim_1" in seller_client.get("/seller/payouts").get_data(as_text=True)
    assert ledger.reconcile().ok and payments.reconciliation().difference == 0


def test_a_refused_transfer_puts_the_earnings_back(stripe_app, seller):
    seller.stripe_account_id, seller.payouts_enabled = "acct_sim_x", True
    db.session.commit()
    buyer = funded_buyer()
    ledger.post("test_sale", [
        ledger.Posting(ledger.account(AccountKind.BUYER_AVAILABLE, buyer), -5000),
        ledger.Posting(ledger.account(AccountKind.SELLER_AVAILABLE, seller), 5000)])
    db.session.commit()
    payments.connect().refuse_next = "No such destination"
    [payout] = payments.run_payouts(date.today())
    assert payout.status is PayoutStatus.FAILED and "No such destination" in payout.failure_message
    assert ledger.balance_for(seller).available == 5000
    assert ledger.reconcile().ok and payments.reconciliation().difference == 0


def test_payouts_skip_small_balances_and_suspended_sellers(stripe_app):
    small = make_user(Role.SELLER, stripe_account_id="acct_a", payouts_enabled=True)
    suspended = make_user(Role.SELLER, stripe_account_id="acct_b", payouts_enabled=True,
                          trust_level=TrustLevel.SUSPENDED)
    buyer = funded_buyer()
    for seller, amount in ((small, 999), (suspended, 50_000)):
        ledger.post("test_sale", [
            ledger.Posting(ledger.account(AccountKind.BUYER_AVAILABLE, buyer), -amount),
            ledger.Posting(ledger.account(AccountKind.SELLER_AVAILABLE, seller), amount)])
    db.session.commit()
    assert payments.run_payouts(date.today()) == []


def test_admin_money_page_reconciles_and_runs_payouts(stripe_app, admin_client, api_buyer, client):
    buyer, headers = api_buyer
    _paid_topup(client, headers, 7000)
    page = admin_client.get("/admin/money").get_data(as_text=True)
    assert 'id="recon-difference">$0.00<' in page and "$70.00" in page
    # Recent top-ups name their buyer, not a bare id.
    assert f'/admin/users/{buyer.id}">{buyer.display_name or buyer.email}</a>' in page
    compared = admin_client.get("/admin/money?compare=stripe").get_data(as_text=True)
    assert 'id="stripe-totals"' in compared and "charge" in compared


def test_the_admin_pages_read_system_balances_without_creating_accounts(admin_client):
    """A page that reads a balance writes nothing: creating a missing system account in
    a GET made it fail at once on SQLite when a webhook had committed meanwhile."""
    writes = []

    def seen(conn, cursor, statement, *args) -> None:
        if statement.lstrip().split(None, 1)[0].upper() in {"INSERT", "UPDATE", "DELETE"}:
            writes.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", seen)
    try:
        for url in ("/admin/", "/admin/money"):
            page = admin_client.get(url)
            assert page.status_code == 200 and "$0.00" in page.get_data(as_text=True)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", seen)
    assert not [w for w in writes if "ledger_accounts" in w], writes
    ledger.post("test", [ledger.Posting(ledger.account(AccountKind.PLATFORM_COMMISSION), 250),
                         ledger.Posting(ledger.account(AccountKind.PROCESSOR_CLEARING), -250)])
    db.session.commit()
    assert ledger.system_balance(AccountKind.PLATFORM_COMMISSION) == 250
    assert payments.reconciliation().clearing_balance == -250


def test_admin_manual_debit_is_audited_and_never_goes_below_zero(admin_client, admin):
    buyer = funded_buyer(amount=1000)
    url = f"/admin/users/{buyer.id}"
    token = csrf_token(admin_client, url)
    admin_client.post(f"{url}/debit", data={"amount": "4.00", "reason": "chargeback", "csrf_token": token})
    assert _available(buyer) == 600
    refused = admin_client.post(f"{url}/debit", data={"amount": "7.00", "reason": "too much",
                                                      "csrf_token": token}, follow_redirects=True)
    assert "Not enough money" in refused.get_data(as_text=True) and _available(buyer) == 600
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "ledger.manual_debit"))
    assert event.details["amount"] == 400 and event.actor_id == admin.id


def test_statement_shows_running_balances(api_buyer, client):
    buyer, headers = api_buyer
    ledger.manual_credit(buyer, 1000, reason="wire", actor=None)
    ledger.manual_credit(buyer, 500, reason="wire 2", actor=None)
    db.session.commit()
    rows = client.get("/api/v1/statement", headers=headers).get_json()
    assert [(r["amount"], r["balance_after"]) for r in rows] == [(500, 1500), (1000, 1000)]


def test_refund_state_follows_stripe_refund_events(stripe_app, client):
    buyer = make_user(Role.BUYER)
    topup = TopUp(buyer_id=buyer.id, amount=3000, currency="USD", payment_intent_id="pi_x",
                  status=TopUpStatus.SUCCEEDED, refunded=1000)
    db.session.add(topup)
    db.session.flush()
    ledger.post("topup", [ledger.Posting(ledger.account(AccountKind.PROCESSOR_CLEARING), -2000),
                          ledger.Posting(ledger.account(AccountKind.BUYER_AVAILABLE, buyer), 2000)])
    withdrawal = Withdrawal(buyer_id=buyer.id, amount=1000)
    refund = CardRefund(withdrawal=withdrawal, topup_id=topup.id, amount=1000,
                        stripe_refund_id="re_late")
    db.session.add_all([withdrawal, refund])
    ledger.post("withdrawal", [ledger.Posting(ledger.account(AccountKind.BUYER_AVAILABLE, buyer), -1000),
                               ledger.Posting(ledger.account(AccountKind.PROCESSOR_CLEARING), 1000)])
    db.session.commit()
    payload = _event("refund.updated", {"id": "re_late", "object": "refund", "status": "failed",
                                        "failure_reason": "expired_or_canceled_card"}, "evt_ref")
    response = client.post("/stripe/webhook", data=payload, headers={"Stripe-Signature": _signed(payload)})
    assert response.get_json()["outcome"] == "refund failed"
    assert db.session.get(CardRefund, refund.id).status is RefundStatus.FAILED
    assert _available(buyer) == 2000 and db.session.get(TopUp, topup.id).refunded == 0
    assert ledger.reconcile().ok


def test_a_payout_job_that_died_before_the_transfer_is_finished_by_the_retry(stripe_app, seller):
    seller.stripe_account_id, seller.payouts_enabled = "acct_sim_crash", True
    db.session.commit()
    buyer = funded_buyer()
    ledger.post("test_sale", [
        ledger.Posting(ledger.account(AccountKind.BUYER_AVAILABLE, buyer), -3000),
        ledger.Posting(ledger.account(AccountKind.SELLER_AVAILABLE, seller), 3000)])
    db.session.commit()
    connect = payments.connect()
    real_transfer, connect.transfer = connect.transfer, None  # the job dies here
    with pytest.raises(TypeError):
        payments.run_payouts(date.today())
    db.session.rollback()
    payout = db.session.scalar(sa.select(Payout))
    assert payout.status is PayoutStatus.PENDING and ledger.balance_for(seller).available == 0

    connect.transfer = real_transfer
    assert payments.retry_unfinished(older_than_seconds=0) == 1
    assert payments.run_payouts(date.today()) == []  # and the daily job adds nothing
    assert db.session.get(Payout, payout.id).status is PayoutStatus.PAID
    assert len(connect.transfers) == 1
    assert ledger.reconcile().ok and payments.reconciliation().difference == 0


def test_statement_pages_and_csv_keep_amounts_as_numbers(buyer_client, buyer):
    for n in range(60):
        ledger.manual_credit(buyer, 100 + n, reason="=HYPERLINK(\"x\")" if n == 0 else "wire",
                             actor=None)
    ledger.manual_debit(buyer, 50, reason="fee", actor=None)
    db.session.commit()
    first = buyer_client.get("/buyer/balance").get_data(as_text=True)
    second = buyer_client.get("/buyer/balance?page=2").get_data(as_text=True)
    assert "Older" in first and "Newer" in second and "-$0.50" in first
    lines = buyer_client.get("/buyer/balance/statement.csv").get_data(as_text=True).splitlines()
    assert len(lines) == 62 and lines[0].lstrip("\ufeff").startswith("transaction_id,")
    # Major units with the currency in its own column (SPEC §5); negative stays a number.
    assert lines[1].endswith(",manual_debit,buyer_available,-0.50,77.20,fee,USD")
    assert "'=HYPERLINK" in lines[-1]  # a memo cannot be a formula
