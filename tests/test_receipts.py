"""Receipts (issue 16 item 5, SPEC §5): every top-up (card, automatic, bank transfer,
admin credit), withdrawal and payout (Stripe Connect, manual) has one, as an HTML page
and a PDF drawn from the same data; only its holder opens it, admins too (audited);
anyone else gets 404. Card payments run against localstripe."""
import io
from datetime import date

import pytest
import sqlalchemy as sa
from pypdf import PdfReader

from app.extensions import db
from app.models import AccountKind, AuditEvent, Role, TopUp, TopUpStatus
from app.money import receipts
from app.services import bank_transfers, ledger, manual_payouts, payments
from tests.conftest import log_in, make_user, wait_until
from tests.test_autotopup import _save_card


def pdf_text(data: bytes) -> str:
    assert data.startswith(b"%PDF-")
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def _client(app, user):
    client = app.test_client()
    log_in(client, user)
    return client


def _check(app, owner, number: str, amount_text: str, title: str) -> None:
    """The holder sees the receipt as a page and a PDF, linked from their money page;
    another holder of the same role gets 404 for both; an admin opens it, audited."""
    area = "buyer" if owner.is_buyer else "seller"
    mine = _client(app, owner)
    listing = mine.get("/buyer/balance" if owner.is_buyer else "/seller/payouts").get_data(
        as_text=True)
    assert f"/{area}/receipts/{number}" in listing and f"/{area}/receipts/{number}.pdf" in listing
    page = mine.get(f"/{area}/receipts/{number}")
    assert page.status_code == 200, number
    html = page.get_data(as_text=True)
    assert number in html and amount_text in html and title in html
    assert "#" + str(receipts.by_number(number).ledger_transaction_id) in html
    document = mine.get(f"/{area}/receipts/{number}.pdf")
    assert document.status_code == 200 and document.mimetype == "application/pdf"
    text = pdf_text(document.data)
    assert number in text and amount_text in text and title in text

    other = _client(app, make_user(owner.role))
    assert other.get(f"/{area}/receipts/{number}").status_code == 404
    assert other.get(f"/{area}/receipts/{number}.pdf").status_code == 404
    prefix, year, row_id = number.split("-")
    assert mine.get(f"/{area}/receipts/{prefix}-{int(year) + 1}-{row_id}").status_code == 404

    admin = make_user(Role.ADMIN)
    as_admin = _client(app, admin)
    assert as_admin.get(f"/admin/receipts/{number}").status_code == 200
    assert pdf_text(as_admin.get(f"/admin/receipts/{number}.pdf").data).count(number) >= 1
    seen = db.session.scalars(sa.select(AuditEvent).where(
        AuditEvent.action == "receipts.view", AuditEvent.actor_id == admin.id)).all()
    assert len(seen) == 2 and {e.subject_id for e in seen} == {owner.id}
    assert {e.details["number"] for e in seen} == {number}


def _only(owner, title: str) -> receipts.Receipt:
    [found] = [r for r in receipts.receipts_for(owner) if r.title == title]
    return found


def test_card_automatic_and_withdrawal_receipts(app, stripe_app, api_key_for, client):
    buyer = make_user(Role.BUYER)
    headers = api_key_for(buyer)
    paid = client.post("/api/v1/topups", json={"amount": 6_000, "payment_method": "pm_card_visa"},
                       headers=headers).get_json()
    assert wait_until(lambda: db.session.get(TopUp, paid["id"]).status is TopUpStatus.SUCCEEDED)
    db.session.expire_all()
    card = _only(buyer, "Card top-up")
    assert card.amount == 6_000 and card.number.startswith("TU-") and card.method == "Card"
    assert card.ledger_transaction_id == db.session.get(TopUp, paid["id"]).ledger_transaction_id

    _save_card(buyer, "4242424242424242", threshold=5_000, amount=10_000)
    assert client.post("/api/v1/orders", headers=headers,
                       json={"price": 500, "quantity": 4}).status_code == 201
    assert wait_until(lambda: any(r.title == "Automatic top-up"
                                  for r in receipts.receipts_for(buyer)))
    automatic = _only(buyer, "Automatic top-up")
    assert automatic.amount == 10_000 and "automatic" in automatic.method

    withdrawn = client.post("/api/v1/withdrawals", json={"amount": 1_500}, headers=headers)
    assert withdrawn.status_code == 201, withdrawn.get_json()
    withdrawal = _only(buyer, "Withdrawal (refund to card)")
    assert withdrawal.amount == 1_500 and withdrawal.number.startswith("WD-")
    assert any("succeeded" in value for _, value in withdrawal.details)

    _check(app, buyer, card.number, "$60.00", "Card top-up")
    _check(app, buyer, automatic.number, "$100.00", "Automatic top-up")
    _check(app, buyer, withdrawal.number, "$15.00", "Withdrawal")


def test_a_declined_top_up_has_no_receipt(stripe_app, api_key_for, client):
    buyer = make_user(Role.BUYER)
    headers = api_key_for(buyer)
    declined = client.post("/api/v1/topups", headers=headers,
                           json={"amount": 5_000, "payment_method": "pm_card_chargeCustomerFail"})
    assert declined.status_code == 402
    topup = db.session.scalar(sa.select(TopUp).where(TopUp.buyer_id == buyer.id))
    assert topup.status is TopUpStatus.FAILED
    with pytest.raises(receipts.NotFound):
        receipts.by_number(receipts.number_for("TU", topup.created_at, topup.id))
    assert receipts.receipts_for(buyer) == []


def test_stripe_payout_receipt(app, stripe_app, seller):
    seller.stripe_account_id, seller.payouts_enabled = "acct_sim_receipts", True
    db.session.commit()
    buyer = make_user(Role.BUYER)
    ledger.manual_credit(buyer, 7_000, reason="funds", actor=None)
    ledger.post("test_sale", [
        ledger.Posting(ledger.account(AccountKind.BUYER_AVAILABLE, buyer), -7_000),
        ledger.Posting(ledger.account(AccountKind.SELLER_AVAILABLE, seller), 7_000)])
    db.session.commit()
    [payout] = payments.run_payouts(date.today())
    found = _only(seller, "Payout")
    assert found.number.startswith("PO-") and found.amount == 7_000
    assert found.ledger_transaction_id == payout.ledger_transaction_id
    assert ("Stripe transfer", payout.transfer_id) in found.details
    _check(app, seller, found.number, "$70.00", "Payout")


def test_bank_transfer_admin_credit_and_manual_payout_receipts(app, admin):
    buyer = make_user(Role.BUYER)
    transfer = bank_transfers.record_transfer(
        reference=bank_transfers.reference_for(buyer), amount=125_000, received_on=date.today(),
        bank_transaction_id="BANK-R-1", actor=admin)
    credit = ledger.manual_credit(buyer, 2_500, reason="goodwill for a late delivery",
                                  actor=admin)
    seller = make_user(Role.SELLER)
    ledger.post("test_sale", [
        ledger.Posting(ledger.account(AccountKind.BUYER_AVAILABLE, buyer), -3_000),
        ledger.Posting(ledger.account(AccountKind.SELLER_AVAILABLE, seller), 3_000)])
    payout = manual_payouts.record_payout(seller, amount=2_000, paid_on=date.today(),
                                          bank_transaction_id="OUT-R-1", actor=admin,
                                          destination="DE89 3704 0044 0532 0130 00")
    db.session.commit()

    wire = _only(buyer, "Top-up by bank transfer")
    assert wire.ledger_transaction_id == transfer.ledger_transaction_id
    assert ("Bank's transaction id", "BANK-R-1") in wire.details and wire.incoming
    granted = _only(buyer, "Credit by the exchange")
    assert granted.ledger_transaction_id == credit.id and granted.amount == 2_500
    assert ("Reason", "goodwill for a late delivery") in granted.details
    paid = _only(seller, "Payout by bank transfer")
    assert paid.number == payout.receipt_number and paid.amount == 2_000

    _check(app, buyer, wire.number, "$1,250.00", "Top-up by bank transfer")
    _check(app, buyer, granted.number, "$25.00", "Credit by the exchange")
    _check(app, seller, paid.number, "$20.00", "Payout by bank transfer")
    # A seller cannot open a buyer's receipt through their own area either.
    assert _client(app, seller).get(f"/seller/receipts/{wire.number}").status_code == 404


def test_receipts_name_the_exchange_from_config_and_print_any_alphabet(app, admin):
    app.config.update(EXCHANGE_NAME="Лидикс Exchange GmbH",
                      EXCHANGE_ADDRESS="Müllerstraße 5; 10115 Berlin")
    try:
        buyer = make_user(Role.BUYER, display_name="Олег Ñúñez")
        ledger.manual_credit(buyer, 1_234_56, reason="перевод", actor=admin)
        db.session.commit()
        found = _only(buyer, "Credit by the exchange")
        text = pdf_text(_client(app, buyer).get(f"/buyer/receipts/{found.number}.pdf").data)
        for words in ("Лидикс Exchange GmbH", "Müllerstraße 5", "10115 Berlin", "Олег Ñúñez",
                      "$1,234.56", "перевод"):
            assert words in text
    finally:
        app.config.update(EXCHANGE_NAME="LeadX", EXCHANGE_ADDRESS="")


@pytest.mark.parametrize("number", ["", "XX-2026-000001", "TU-2026-1", "tu-2026-000001x",
                                    "TU-2026-000001.pdf", "../etc/passwd"])
def test_numbers_that_name_nothing_are_not_found(buyer_client, number):
    assert buyer_client.get(f"/buyer/receipts/{number}").status_code == 404
