"""Queries (read only): the receipt for every top-up, withdrawal and payout (SPEC §5,
issue 16), as one data model that the HTML page and the PDF are both rendered from.

A receipt is not stored: it is read from the row that records the movement (a card
top-up, a bank transfer, an admin's credit, a withdrawal, a Stripe or a manual
payout) and the ledger transaction that moved the money, so it always says what the
books say. Its number is stable because it is made of the row's kind, year and id:
`TU-2026-000042` is card top-up 42, recorded in 2026. Receipts name the account
holder and the exchange, never a lead or anything about one.
"""
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Optional

from flask import current_app
from sqlalchemy import select

from app.errors import NotFound
from app.extensions import db
from app.formatting import format_money
from app.models import (
    AccountKind, BankTransfer, LedgerAccount, LedgerEntry, LedgerTransaction, ManualPayout,
    Payout, PayoutStatus, RefundStatus, TopUp, TopUpStatus, User, Withdrawal,
)


@dataclass(frozen=True)
class Party:
    name: str
    lines: tuple[str, ...] = ()


@dataclass(frozen=True)
class Receipt:
    number: str
    title: str  # what happened, e.g. "Card top-up"
    at: datetime  # when the ledger moved the money (UTC)
    payer: Party
    payee: Party
    amount: int  # minor units
    currency: str
    method: str
    ledger_transaction_id: int
    owner_id: int
    # Further facts, label -> text (the bank's id, each card refund and its state).
    details: tuple[tuple[str, str], ...] = field(default=())
    incoming: bool = False  # money the holder paid in (a top-up), not money paid out

    @property
    def issuer(self) -> Party:
        """The exchange, which issues every receipt: the payee of a top-up, the payer
        of a withdrawal, credit or payout."""
        return self.payee if self.incoming else self.payer

    @property
    def filename(self) -> str:
        return f"receipt-{self.number}.pdf"


# Prefix -> (model, builder); the builder returns None for a row with no receipt
# (a top-up that was never paid, a payout Stripe refused).
_NUMBER = re.compile(r"(TU|BT|CR|WD|PO|MP)-([0-9]{4})-([0-9]{6,12})")


def number_for(prefix: str, at: datetime, row_id: int) -> str:
    return f"{prefix}-{at:%Y}-{row_id:06d}"


def exchange() -> Party:
    """The exchange as it names itself on receipts (EXCHANGE_NAME, EXCHANGE_ADDRESS with
    lines separated by ";")."""
    config = current_app.config
    address = tuple(line.strip() for line in (config.get("EXCHANGE_ADDRESS") or "").split(";")
                    if line.strip())
    return Party(config.get("EXCHANGE_NAME") or "LeadX", address)


def holder(user: User) -> Party:
    lines = (user.email,) if user.display_name else ()
    return Party(user.display_name or user.email, lines + (f"Account {user.id}",))


def _txn(transaction_id: int) -> LedgerTransaction:
    return db.session.get(LedgerTransaction, transaction_id)


def _topup(row: TopUp) -> Optional[Receipt]:
    if row.status is not TopUpStatus.SUCCEEDED or row.ledger_transaction_id is None:
        return None
    txn = _txn(row.ledger_transaction_id)
    buyer = db.session.get(User, row.buyer_id)
    method = "Saved card, automatic top-up" if row.automatic else "Card"
    return Receipt(number_for("TU", row.created_at, row.id),
                   "Automatic top-up" if row.automatic else "Card top-up", txn.created_at,
                   holder(buyer), exchange(), row.amount, row.currency, method, txn.id,
                   buyer.id, (("Stripe payment", row.payment_intent_id or ""),), incoming=True)


def _bank_transfer(row: BankTransfer) -> Receipt:
    txn = _txn(row.ledger_transaction_id)
    buyer = db.session.get(User, row.buyer_id)
    return Receipt(number_for("BT", row.created_at, row.id), "Top-up by bank transfer",
                   txn.created_at, holder(buyer), exchange(), row.amount, row.currency,
                   "Bank transfer", txn.id, buyer.id,
                   (("Your reference", row.reference), ("Received by the bank on",
                                                        row.received_on.isoformat()),
                    ("Bank's transaction id", row.bank_transaction_id)), incoming=True)


def _manual_credit(txn: LedgerTransaction) -> Optional[Receipt]:
    if txn.kind != "manual_credit":
        return None
    target = db.session.scalar(
        select(LedgerAccount).join(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id)
        .where(LedgerEntry.transaction_id == txn.id,
               LedgerAccount.kind == AccountKind.BUYER_AVAILABLE))
    entry = db.session.scalar(select(LedgerEntry).where(
        LedgerEntry.transaction_id == txn.id, LedgerEntry.account_id == target.id))
    buyer = db.session.get(User, target.user_id)
    return Receipt(number_for("CR", txn.created_at, txn.id), "Credit by the exchange",
                   txn.created_at, exchange(), holder(buyer), entry.amount, target.currency,
                   "Credited by an administrator (money received outside card payments)",
                   txn.id, buyer.id, (("Reason", txn.memo),))


def _withdrawal(row: Withdrawal) -> Optional[Receipt]:
    # What Stripe refused went back to the balance (its own ledger transaction), so
    # the receipt is for the rest; a withdrawal refused entirely has none.
    sent = [r for r in row.refunds if r.status is not RefundStatus.FAILED]
    if not sent or row.ledger_transaction_id is None:
        return None
    txn = _txn(row.ledger_transaction_id)
    buyer = db.session.get(User, row.buyer_id)
    currency = txn.entries[0].account.currency
    details = [("Requested", format_money(row.amount, currency))]
    for refund in row.refunds:
        topup = db.session.get(TopUp, refund.topup_id)
        details.append((f"Refund to the card of {number_for('TU', topup.created_at, topup.id)}",
                        f"{format_money(refund.amount, currency)}, {refund.status.value}"))
    return Receipt(number_for("WD", row.created_at, row.id), "Withdrawal (refund to card)",
                   txn.created_at, exchange(), holder(buyer), sum(r.amount for r in sent),
                   currency, "Refund to the card paid with", txn.id, buyer.id, tuple(details))


def _payout(row: Payout) -> Optional[Receipt]:
    if row.status is not PayoutStatus.PAID or row.ledger_transaction_id is None:
        return None
    txn = _txn(row.ledger_transaction_id)
    seller = db.session.get(User, row.seller_id)
    return Receipt(number_for("PO", row.created_at, row.id), "Payout", txn.created_at,
                   exchange(), holder(seller), row.amount, row.currency,
                   "Stripe Connect transfer", txn.id, seller.id,
                   (("Connected account", row.destination), ("Stripe transfer", row.transfer_id or ""),
                    ("Payout day", row.period.isoformat())))


def _manual_payout(row: ManualPayout) -> Receipt:
    txn = _txn(row.ledger_transaction_id)
    seller = db.session.get(User, row.seller_id)
    details = [("Sent on", row.paid_on.isoformat()),
               ("Bank's transaction id", row.bank_transaction_id)]
    if row.destination:
        details.append(("Paid to", row.destination))
    if row.note:
        details.append(("Note", row.note))
    return Receipt(row.receipt_number, "Payout by bank transfer", txn.created_at, exchange(),
                   holder(seller), row.amount, row.currency, "Bank transfer", txn.id,
                   seller.id, tuple(details))


_SOURCES: dict[str, tuple[type, Callable]] = {
    "TU": (TopUp, _topup), "BT": (BankTransfer, _bank_transfer),
    "CR": (LedgerTransaction, _manual_credit), "WD": (Withdrawal, _withdrawal),
    "PO": (Payout, _payout), "MP": (ManualPayout, _manual_payout),
}


def by_number(number: str) -> Receipt:
    """The receipt with this number, whoever owns it (admins), or NotFound."""
    match = _NUMBER.fullmatch((number or "").strip().upper())
    if match is None:
        raise NotFound("No such receipt.")
    prefix, year, row_id = match.groups()
    model, build = _SOURCES[prefix]
    row = db.session.get(model, int(row_id))
    receipt = build(row) if row is not None else None
    # The year is part of the number: a number with another year names nothing.
    if receipt is None or receipt.number != number.strip().upper():
        raise NotFound("No such receipt.")
    return receipt


def receipt_for(user: User, number: str) -> Receipt:
    """One of the user's own receipts; anyone else's is not found (never forbidden,
    which would say that it exists)."""
    receipt = by_number(number)
    if receipt.owner_id != user.id:
        raise NotFound("No such receipt.")
    return receipt


def receipts_for(user: User, limit: int = 20) -> list[Receipt]:
    """The user's latest receipts, newest first."""
    rows: list = []
    if user.is_buyer:
        rows += db.session.scalars(select(TopUp).where(
            TopUp.buyer_id == user.id, TopUp.status == TopUpStatus.SUCCEEDED)
            .order_by(TopUp.id.desc()).limit(limit))
        rows += db.session.scalars(select(BankTransfer).where(BankTransfer.buyer_id == user.id)
                                   .order_by(BankTransfer.id.desc()).limit(limit))
        rows += db.session.scalars(select(Withdrawal).where(Withdrawal.buyer_id == user.id)
                                   .order_by(Withdrawal.id.desc()).limit(limit))
        rows += db.session.scalars(
            select(LedgerTransaction)
            .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
            .join(LedgerAccount, LedgerEntry.account_id == LedgerAccount.id)
            .where(LedgerTransaction.kind == "manual_credit", LedgerAccount.user_id == user.id)
            .order_by(LedgerTransaction.id.desc()).limit(limit))
    if user.is_seller:
        rows += db.session.scalars(select(Payout).where(
            Payout.seller_id == user.id, Payout.status == PayoutStatus.PAID)
            .order_by(Payout.id.desc()).limit(limit))
        rows += db.session.scalars(select(ManualPayout).where(ManualPayout.seller_id == user.id)
                                   .order_by(ManualPayout.id.desc()).limit(limit))
    builders = {model: build for model, build in _SOURCES.values()}
    # Newest rows first, built only until there are enough (each reads its ledger
    # transaction); a row without a receipt is skipped.
    found = []
    for row in sorted(rows, key=lambda row: row.created_at, reverse=True):
        receipt = builders[type(row)](row)
        if receipt is not None:
            found.append(receipt)
        if len(found) == limit:
            break
    return sorted(found, key=lambda r: (r.at, r.number), reverse=True)
