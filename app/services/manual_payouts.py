"""Operations (they flush; callers commit): paying a seller by the exchange's own bank
transfer when they have no Stripe Connect account (SPEC §5, issue 16).

The admin sends the money from the bank, then records it here: the seller's cleared
(available) earnings move to manual clearing, which mirrors the exchange's bank
account, in one balanced ledger transaction keyed by the bank's transaction id. The
same bank line recorded twice, or an amount above what the seller has cleared, is
refused; the seller sees each payout with a receipt.
"""
from datetime import date
from typing import Optional

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.errors import Conflict, NotFound, ValidationFailed
from app.formatting import format_money
from app.extensions import db
from app.models import AccountKind, ManualPayout, User
from app.services import audit, ledger
from app.services.bank_transfers import bank_line
from app.services.earnings import recover_debt
from app.services.ledger import Posting


class DuplicatePayout(Conflict):
    code = "duplicate_payout"


def _existing(bank_transaction_id: str) -> Optional[ManualPayout]:
    return db.session.scalar(select(ManualPayout).where(
        ManualPayout.bank_transaction_id == bank_transaction_id))


def _duplicate(found: ManualPayout) -> DuplicatePayout:
    return DuplicatePayout(
        f"Bank transaction {found.bank_transaction_id} was already recorded as payout "
        f"{found.receipt_number}; nothing was paid out again.",
        details={"manual_payout_id": found.id, "field": "bank_transaction_id"})


def record_payout(seller: User, *, amount: int, paid_on: date, bank_transaction_id: str,
                  actor: User, destination: str = "", note: str = "") -> ManualPayout:
    """Record money the exchange's bank sent to a seller: available -> paid out,
    audited. What the seller owes for returned sales is recovered first."""
    if not seller.is_seller:
        raise ValidationFailed("Only sellers are paid out.", code="not_a_seller")
    bank_id = bank_line(bank_transaction_id, amount, paid_on, field="paid_on",
                        future="A payout cannot have been sent in the future.")
    found = _existing(bank_id)
    if found is not None:
        raise _duplicate(found)
    recover_debt(seller)
    available = ledger.balance_for(seller).available
    if amount > available:
        raise ValidationFailed(
            f"The seller has {format_money(available)} of cleared earnings; a payout "
            "cannot be larger.", code="exceeds_available",
            details={"field": "amount", "available": available})
    try:
        with db.session.begin_nested():
            transaction = ledger.post(
                "manual_payout",
                [Posting(ledger.account(AccountKind.SELLER_AVAILABLE, seller), -amount),
                 Posting(ledger.account(AccountKind.MANUAL_CLEARING), amount)],
                idempotency_key=f"manual-payout:{bank_id}",
                memo=f"Payout by bank transfer {bank_id}",
                actor=actor)
            payout = ManualPayout(
                seller_id=seller.id, amount=amount, currency=ledger.currency(),
                paid_on=paid_on, bank_transaction_id=bank_id,
                destination=(destination or "").strip()[:255],
                note=(note or "").strip()[:2000], recorded_by_id=actor.id,
                ledger_transaction_id=transaction.id)
            db.session.add(payout)
            db.session.flush()
    except IntegrityError:
        found = _existing(bank_id)
        if found is None:
            raise
        raise _duplicate(found) from None
    audit.record("payouts.manual", actor=actor, subject_type="user", subject_id=seller.id,
                 details={"amount": amount, "bank_transaction_id": bank_id,
                          "paid_on": paid_on.isoformat(), "transaction_id": transaction.id,
                          "manual_payout_id": payout.id})
    return payout


def payouts_for(seller: User, limit: int = 50) -> list[ManualPayout]:
    return db.session.scalars(select(ManualPayout).where(ManualPayout.seller_id == seller.id)
                              .order_by(ManualPayout.id.desc()).limit(limit)).all()


def payout_of(seller: User, payout_id: int) -> ManualPayout:
    """One of the seller's own payouts (another seller's is not found)."""
    payout = db.session.get(ManualPayout, payout_id)
    if payout is None or payout.seller_id != seller.id:
        raise NotFound("No such payout.")
    return payout


def recent_payouts(limit: int = 50) -> list[ManualPayout]:
    return db.session.scalars(select(ManualPayout).order_by(ManualPayout.id.desc())
                              .limit(limit)).all()
