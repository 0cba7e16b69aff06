"""Double-entry ledger (SPEC §5): accounts, transactions, entries in minor units.

An account's `balance` is a running total kept in the same database transaction as
its entries, so that "never below zero" is one conditional UPDATE guarded by a CHECK
constraint; `services.ledger.reconcile` proves it equals the sum of the entries.
"""
import enum
from datetime import datetime
from typing import Optional

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.types import UTCDateTime, enum_column, utcnow


class AccountKind(str, enum.Enum):
    BUYER_AVAILABLE = "buyer_available"
    BUYER_HELD = "buyer_held"
    SELLER_PENDING = "seller_pending"
    SELLER_AVAILABLE = "seller_available"
    PLATFORM_COMMISSION = "platform_commission"
    PROCESSOR_CLEARING = "processor_clearing"
    # Money that reached us outside Stripe (an admin's manual credit for a wire).
    MANUAL_CLEARING = "manual_clearing"
    # What a seller owes back (a sale reversed after its money was released or paid
    # out): negative while owed, recovered from the seller's next earnings.
    SELLER_RECEIVABLE = "seller_receivable"


USER_ACCOUNT_KINDS = {
    AccountKind.BUYER_AVAILABLE,
    AccountKind.BUYER_HELD,
    AccountKind.SELLER_PENDING,
    AccountKind.SELLER_AVAILABLE,
    AccountKind.SELLER_RECEIVABLE,
}
# Clearing accounts mirror money outside the ledger, so they run negative; so does a
# seller's receivable, which is a debt.
NEGATIVE_ALLOWED_KINDS = {AccountKind.PROCESSOR_CLEARING, AccountKind.MANUAL_CLEARING,
                          AccountKind.SELLER_RECEIVABLE}


class LedgerAccount(db.Model):
    __tablename__ = "ledger_accounts"
    __table_args__ = (
        sa.CheckConstraint("allow_negative OR balance >= 0", name="balance_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # "user:<id>:<kind>" or "system:<kind>": one account per owner and kind.
    key: Mapped[str] = mapped_column(sa.String(64), unique=True)
    kind: Mapped[AccountKind] = mapped_column(enum_column(AccountKind, "account_kind"))
    user_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("users.id"), index=True)
    currency: Mapped[str] = mapped_column(sa.String(3))
    balance: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    allow_negative: Mapped[bool] = mapped_column(default=False)


class LedgerTransaction(db.Model):
    __tablename__ = "ledger_transactions"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(32), index=True)
    # Retries of the same movement carry the same key and change nothing.
    idempotency_key: Mapped[Optional[str]] = mapped_column(sa.String(128), unique=True)
    memo: Mapped[str] = mapped_column(sa.Text, default="")
    actor_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)

    entries: Mapped[list["LedgerEntry"]] = relationship(back_populates="transaction")


class LedgerEntry(db.Model):
    __tablename__ = "ledger_entries"
    __table_args__ = (sa.CheckConstraint("amount <> 0", name="amount_not_zero"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    transaction_id: Mapped[int] = mapped_column(
        sa.ForeignKey("ledger_transactions.id"), index=True
    )
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("ledger_accounts.id"), index=True)
    amount: Mapped[int] = mapped_column(sa.BigInteger)

    transaction: Mapped[LedgerTransaction] = relationship(back_populates="entries")
    account: Mapped[LedgerAccount] = relationship()
