"""Money that crosses the edge of the exchange outside Stripe (SPEC §5, issue 16):
bank transfers from buyers, recorded by an admin against the buyer's reference, and
manual payouts to sellers without Stripe Connect. The ledger holds the money; these
rows hold what the bank told us (its transaction id makes each one count once). Also
a buyer's automatic top-up settings (a saved card charged below a threshold)."""
from datetime import date, datetime
from typing import Optional

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.types import UTCDateTime, utcnow


class BankTransfer(db.Model):
    """Money a buyer sent to the exchange's bank account, credited to their balance."""

    __tablename__ = "bank_transfers"
    __table_args__ = (sa.CheckConstraint("amount > 0", name="amount_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    buyer_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    # The buyer's reference as the bank statement showed it, normalised.
    reference: Mapped[str] = mapped_column(sa.String(32))
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    received_on: Mapped[date] = mapped_column(sa.Date)
    # The bank's own id for the transfer: recording it twice is refused.
    bank_transaction_id: Mapped[str] = mapped_column(sa.String(100), unique=True)
    note: Mapped[str] = mapped_column(sa.Text, default="")
    recorded_by_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    ledger_transaction_id: Mapped[int] = mapped_column(sa.ForeignKey("ledger_transactions.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ManualPayout(db.Model):
    """A seller's cleared earnings paid by the exchange's own bank transfer (no Stripe
    Connect), recorded by an admin once the bank has sent it."""

    __tablename__ = "manual_payouts"
    __table_args__ = (sa.CheckConstraint("amount > 0", name="amount_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    seller_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    paid_on: Mapped[date] = mapped_column(sa.Date)
    # The bank's id for the outgoing transfer: recording it twice is refused.
    bank_transaction_id: Mapped[str] = mapped_column(sa.String(100), unique=True)
    # Where it went, as the seller's bank details read (shown on the receipt).
    destination: Mapped[str] = mapped_column(sa.String(255), default="")
    note: Mapped[str] = mapped_column(sa.Text, default="")
    recorded_by_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    ledger_transaction_id: Mapped[int] = mapped_column(sa.ForeignKey("ledger_transactions.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    @property
    def receipt_number(self) -> str:
        return f"MP-{self.created_at:%Y}-{self.id:06d}"



class AutoTopUp(db.Model):
    """A buyer's standing instruction: when the available balance falls below
    `threshold`, charge the saved card `amount` (one top-up in flight at a time)."""

    __tablename__ = "auto_topups"
    __table_args__ = (
        sa.CheckConstraint("threshold >= 0", name="threshold_not_negative"),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
    )

    buyer_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), primary_key=True)
    enabled: Mapped[bool] = mapped_column(default=False)
    threshold: Mapped[int] = mapped_column(sa.BigInteger)
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    # The card saved by a SetupIntent (off-session use agreed by the buyer).
    payment_method_id: Mapped[Optional[str]] = mapped_column(sa.String(255))
    card_label: Mapped[str] = mapped_column(sa.String(64), default="")
    setup_intent_id: Mapped[Optional[str]] = mapped_column(sa.String(255), unique=True)
    # The automatic top-up in flight, if any: set by a conditional UPDATE, so two
    # movements that both take the balance below the threshold start one top-up.
    pending_topup_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("topups.id"))
    last_error: Mapped[str] = mapped_column(sa.Text, default="")
    last_error_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
