"""Funding without cards (issue 16, SPEC §5): bank transfers recorded by an admin
against a buyer's reference, and manual payouts to sellers without Stripe Connect,
each one balanced ledger transaction, audited, counted once."""
from datetime import date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import (
    AccountKind, AuditEvent, BankTransfer, LedgerTransaction, ManualPayout, Role, TrustLevel,
)
from app.services import bank_transfers, earnings, ledger, manual_payouts
from app.services.bank_transfers import DuplicateTransfer, UnknownReference
from app.services.manual_payouts import DuplicatePayout
from app.errors import ValidationFailed
from app.market import jobs
from tests.conftest import CSRF_RE, log_in, make_user
from tests.market_helpers import funded_buyer, live_leads, person, place


# ---------------------------------------------------------------- references

def test_a_reference_is_stable_unique_and_reads_back_despite_typing_slips(buyer):
    reference = bank_transfers.reference_for(buyer)
    assert reference == bank_transfers.reference_for(buyer)
    other = make_user(Role.BUYER)
    assert bank_transfers.reference_for(other) != reference
    assert bank_transfers.parse_reference(reference) == buyer.id
    # Lower case, spaces instead of dashes, O for 0: still the same buyer.
    sloppy = reference.lower().replace("-", " ").replace("0", "o")
    assert bank_transfers.parse_reference(sloppy) == buyer.id
    assert bank_transfers.buyer_for_reference(f"  {reference}\n").id == buyer.id


def test_every_single_typo_and_neighbour_swap_is_caught():
    class Someone:
        id = 4711

    compact = bank_transfers.reference_for(Someone()).replace("-", "")
    slips = {compact[:i] + d + compact[i + 1:] for i in range(2, len(compact))
             for d in "0123456789"} | {
        compact[:i] + compact[i + 1] + compact[i] + compact[i + 2:] for i in range(2, len(compact) - 1)}
    slips.discard(compact)
    assert len(slips) > 70
    for slip in slips:
        with pytest.raises(UnknownReference):
            bank_transfers.parse_reference(slip)


@pytest.mark.parametrize("text", ["", "hello", "LX-12-34", "XX-000001-00", "=cmd|' /C calc'!A0"])
def test_a_reference_of_the_wrong_shape_is_refused(text):
    with pytest.raises(UnknownReference) as refused:
        bank_transfers.parse_reference(text)
    assert "not a buyer reference" in refused.value.message


def test_a_well_formed_reference_of_no_buyer_is_refused(seller):
    with pytest.raises(UnknownReference) as refused:
        bank_transfers.buyer_for_reference(bank_transfers.reference_for(seller))
    assert "No buyer has the reference" in refused.value.message


# ---------------------------------------------------------------- recording transfers

def _record(buyer, admin, amount=125_000, bank_id="BANK-2026-0001", **fields):
    return bank_transfers.record_transfer(
        reference=fields.pop("reference", bank_transfers.reference_for(buyer)), amount=amount,
        received_on=fields.pop("received_on", date.today()), bank_transaction_id=bank_id,
        actor=admin, **fields)


def test_a_transfer_credits_the_buyer_once_in_one_balanced_transaction(buyer, admin):
    transfer = _record(buyer, admin, note="first wire")
    db.session.commit()
    assert ledger.balance_for(buyer).available == 125_000
    txn = db.session.get(LedgerTransaction, transfer.ledger_transaction_id)
    assert txn.kind == "bank_transfer" and txn.actor_id == admin.id
    amounts = {entry.account.kind: entry.amount for entry in txn.entries}
    assert amounts == {AccountKind.MANUAL_CLEARING: -125_000, AccountKind.BUYER_AVAILABLE: 125_000}
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "ledger.bank_transfer"))
    assert event.actor_id == admin.id and event.subject_id == buyer.id
    assert event.details["bank_transaction_id"] == "BANK-2026-0001"

    # The same bank line again (a double submit, a second admin): refused, nothing moves.
    with pytest.raises(DuplicateTransfer) as duplicate:
        _record(buyer, admin, amount=999)
    assert "already recorded" in duplicate.value.message
    db.session.rollback()
    assert ledger.balance_for(buyer).available == 125_000
    assert db.session.scalar(sa.select(sa.func.count()).select_from(BankTransfer)) == 1
    assert ledger.reconcile().ok


def test_a_wrong_reference_or_a_bad_amount_moves_nothing(buyer, admin):
    good = bank_transfers.reference_for(buyer).replace("-", "")
    typo = good[:-1] + str((int(good[-1]) + 1) % 10)
    with pytest.raises(UnknownReference):
        _record(buyer, admin, reference=typo)
    with pytest.raises(ValidationFailed):
        _record(buyer, admin, amount=0)
    with pytest.raises(ValidationFailed):
        _record(buyer, admin, received_on=date.today() + timedelta(days=5))
    with pytest.raises(ValidationFailed):
        _record(buyer, admin, bank_id="   ")
    db.session.rollback()
    assert ledger.balance_for(buyer).available == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(BankTransfer)) == 0


def test_the_buyer_sees_the_bank_details_and_their_reference(buyer_client, buyer, admin):
    page = buyer_client.get("/buyer/balance").get_data(as_text=True)
    assert bank_transfers.reference_for(buyer) in page
    assert "GB33BUKB20201555555555" in page and "LeadX Demo Exchange Ltd" in page
    _record(buyer, admin, amount=5_000, bank_id="STMT-77")
    db.session.commit()
    page = buyer_client.get("/buyer/balance").get_data(as_text=True)
    assert "STMT-77" in page and "$50.00" in page


def test_without_bank_settings_the_page_offers_no_transfer(app, buyer_client):
    saved = {k: app.config[k] for k in ("BANK_IBAN", "BANK_ACCOUNT_NUMBER")}
    app.config.update(BANK_IBAN=None, BANK_ACCOUNT_NUMBER=None)
    try:
        page = buyer_client.get("/buyer/balance").get_data(as_text=True)
    finally:
        app.config.update(saved)
    assert 'id="bank-transfer"' not in page


def _form(client, url):
    page = client.get(url).get_data(as_text=True)
    return CSRF_RE.search(page).group(1)


def test_an_admin_records_a_transfer_in_the_browser_form(admin_client, admin, buyer):
    token = _form(admin_client, "/admin/money/bank-transfers")
    data = {"csrf_token": token, "reference": bank_transfers.reference_for(buyer).lower(),
            "amount": "1,250.00", "received_on": date.today().isoformat(),
            "bank_transaction_id": "DE-991", "note": ""}
    response = admin_client.post("/admin/money/bank-transfers", data=data)
    assert response.status_code == 302
    page = admin_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Credited $1,250.00" in page and "DE-991" in page
    recorded = page.split('id="bank-transfers"')[1]
    assert f'>{admin.display_name or admin.email}</a></td></tr>' in recorded  # "By": a name
    assert ledger.balance_for(buyer).available == 125_000

    again = admin_client.post("/admin/money/bank-transfers", data=data)
    assert again.status_code == 422 and "already recorded" in again.get_data(as_text=True)
    wrong = admin_client.post("/admin/money/bank-transfers",
                              data={**data, "bank_transaction_id": "DE-992", "reference": "LX-000001-00"})
    assert wrong.status_code == 422 and "check digits" in wrong.get_data(as_text=True)
    negative = admin_client.post("/admin/money/bank-transfers",
                                 data={**data, "bank_transaction_id": "DE-993", "amount": "-100"})
    # Said once, under the field -- not flashed above the form as well
    assert negative.get_data(as_text=True).count("“-100” is below zero") == 1
    assert ledger.balance_for(buyer).available == 125_000


def test_only_admins_record_transfers(buyer_client, buyer):
    assert buyer_client.get("/admin/money/bank-transfers").status_code in (302, 403, 404)
    assert buyer_client.post("/admin/money/bank-transfers", data={}).status_code in (302, 400, 403, 404)
    assert ledger.balance_for(buyer).available == 0


# ---------------------------------------------------------------- manual payouts

def _seller_with_cleared_earnings(seller, count=3, price=1000):
    seller.trust_level = TrustLevel.VERIFIED
    db.session.commit()
    buyer = funded_buyer()
    leads = live_leads(seller, [person(i) for i in range(count)])
    place(buyer, price, count)
    jobs.match_leads([lead.id for lead in leads])
    db.session.commit()
    earnings.release_cleared(datetime.now(timezone.utc) + timedelta(days=8))
    db.session.commit()
    return ledger.balance_for(seller).available


def test_a_manual_payout_moves_cleared_earnings_once_with_a_receipt(app, seller, admin):
    available = _seller_with_cleared_earnings(seller)
    assert available == 2400
    payout = manual_payouts.record_payout(seller, amount=2000, paid_on=date.today(),
                                          bank_transaction_id="OUT-1", actor=admin,
                                          destination="IBAN ending 1234")
    db.session.commit()
    assert ledger.balance_for(seller).available == 400
    txn = db.session.get(LedgerTransaction, payout.ledger_transaction_id)
    assert {e.account.kind: e.amount for e in txn.entries} == {
        AccountKind.SELLER_AVAILABLE: -2000, AccountKind.MANUAL_CLEARING: 2000}
    assert db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "payouts.manual")
                             ).details["manual_payout_id"] == payout.id

    with pytest.raises(DuplicatePayout):
        manual_payouts.record_payout(seller, amount=100, paid_on=date.today(),
                                     bank_transaction_id="OUT-1", actor=admin)
    db.session.rollback()
    with pytest.raises(ValidationFailed) as too_much:
        manual_payouts.record_payout(seller, amount=401, paid_on=date.today(),
                                     bank_transaction_id="OUT-2", actor=admin)
    assert too_much.value.code == "exceeds_available"
    db.session.rollback()
    assert ledger.balance_for(seller).available == 400 and ledger.reconcile().ok

    seller_client = app.test_client()
    log_in(seller_client, seller)
    page = seller_client.get("/seller/payouts").get_data(as_text=True)
    assert payout.receipt_number in page
    # The old address leads to the one receipt page every payout has.
    receipt = seller_client.get(f"/seller/payouts/manual/{payout.id}", follow_redirects=True)
    text = receipt.get_data(as_text=True)
    assert receipt.status_code == 200
    assert payout.receipt_number in text and "$20.00" in text and "OUT-1" in text
    assert "IBAN ending 1234" in text

    # Another seller cannot read it.
    other = make_user(Role.SELLER)
    other_client = app.test_client()
    log_in(other_client, other)
    assert other_client.get(f"/seller/payouts/manual/{payout.id}").status_code == 404


def test_an_admin_records_a_payout_from_the_sellers_page(admin_client, seller):
    _seller_with_cleared_earnings(seller)
    token = _form(admin_client, f"/admin/users/{seller.id}")
    response = admin_client.post(f"/admin/users/{seller.id}/manual-payout", data={
        "csrf_token": token, "amount": "24.00", "paid_on": date.today().isoformat(),
        "bank_transaction_id": "OUT-9", "destination": "", "note": "weekly"})
    assert response.status_code == 302
    page = admin_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Recorded payout MP-" in page
    assert ledger.balance_for(seller).available == 0
    again = admin_client.post(f"/admin/users/{seller.id}/manual-payout", data={
        "csrf_token": token, "amount": "24.00", "paid_on": date.today().isoformat(),
        "bank_transaction_id": "OUT-9"})
    assert "already recorded" in admin_client.get(again.headers["Location"]).get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ManualPayout)) == 1


def test_a_buyer_is_not_paid_out(buyer, admin):
    with pytest.raises(ValidationFailed):
        manual_payouts.record_payout(buyer, amount=100, paid_on=date.today(),
                                     bank_transaction_id="X", actor=admin)
