"""Money that crosses the edge of the exchange through Stripe (SPEC §5, issue #5).

Buyers top up with PaymentIntents, withdraw unspent money as refunds against them,
and sellers are paid with Connect transfers. Each row here mirrors an object at
Stripe; the ledger holds the money, these rows hold the state of the conversation.
"""
import enum
from datetime import date, datetime
from typing import Optional

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.types import UTCDateTime, enum_column, utcnow


class TopUpStatus(str, enum.Enum):
    CREATED = "created"  # our row exists; the PaymentIntent may not yet
    REQUIRES_PAYMENT_METHOD = "requires_payment_method"
    REQUIRES_ACTION = "requires_action"  # 3-D Secure: the buyer must authenticate
    PROCESSING = "processing"  # Stripe accepted the card; waiting for its webhook
    SUCCEEDED = "succeeded"  # the webhook arrived and the balance was credited
    FAILED = "failed"
    CANCELED = "canceled"


class TopUp(db.Model):
    __tablename__ = "topups"
    __table_args__ = (
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.CheckConstraint("refunded >= 0 AND refunded <= amount", name="refunds_within_amount"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    buyer_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    status: Mapped[TopUpStatus] = mapped_column(
        enum_column(TopUpStatus, "topup_status"), default=TopUpStatus.CREATED)
    payment_intent_id: Mapped[Optional[str]] = mapped_column(sa.String(255), unique=True)
    failure_message: Mapped[str] = mapped_column(sa.Text, default="")
    # Refunded to the card by withdrawals (requested, whether or not Stripe has confirmed).
    refunded: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    ledger_transaction_id: Mapped[Optional[int]] = mapped_column(
        sa.ForeignKey("ledger_transactions.id"))
    # Started by the buyer's automatic top-up (their saved card, off-session).
    automatic: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class StripeEvent(db.Model):
    """Every webhook event applied, stored in the same transaction as its effect: a
    replayed event finds its id here and changes nothing."""

    __tablename__ = "stripe_events"

    id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    type: Mapped[str] = mapped_column(sa.String(100))
    object_id: Mapped[str] = mapped_column(sa.String(255), default="")
    outcome: Mapped[str] = mapped_column(sa.String(255), default="")
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class RefundStatus(str, enum.Enum):
    PENDING = "pending"  # money taken off the balance; Stripe not yet (or not surely) asked
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # Stripe refused; the money went back to the buyer's balance


class Withdrawal(db.Model):
    """A buyer's unspent money sent back to the cards it came from."""

    __tablename__ = "withdrawals"
    __table_args__ = (sa.CheckConstraint("amount > 0", name="amount_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    buyer_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    ledger_transaction_id: Mapped[Optional[int]] = mapped_column(
        sa.ForeignKey("ledger_transactions.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    refunds: Mapped[list["CardRefund"]] = relationship(
        back_populates="withdrawal", order_by="CardRefund.id")

    @property
    def status(self) -> RefundStatus:
        states = {refund.status for refund in self.refunds}
        if RefundStatus.PENDING in states:
            return RefundStatus.PENDING
        return RefundStatus.SUCCEEDED if RefundStatus.SUCCEEDED in states else RefundStatus.FAILED

    @property
    def refunded(self) -> int:
        return sum(r.amount for r in self.refunds if r.status is RefundStatus.SUCCEEDED)


class CardRefund(db.Model):
    """One Stripe refund: the part of a withdrawal taken back from one top-up."""

    __tablename__ = "card_refunds"
    __table_args__ = (sa.CheckConstraint("amount > 0", name="amount_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    withdrawal_id: Mapped[int] = mapped_column(sa.ForeignKey("withdrawals.id"), index=True)
    topup_id: Mapped[int] = mapped_column(sa.ForeignKey("topups.id"), index=True)
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    status: Mapped[RefundStatus] = mapped_column(
        enum_column(RefundStatus, "refund_status"), default=RefundStatus.PENDING)
    stripe_refund_id: Mapped[Optional[str]] = mapped_column(sa.String(255), unique=True)
    failure_message: Mapped[str] = mapped_column(sa.Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    withdrawal: Mapped[Withdrawal] = relationship(back_populates="refunds")
    topup: Mapped[TopUp] = relationship()


class PayoutStatus(str, enum.Enum):
    PENDING = "pending"  # money taken off the seller's balance; transfer not yet confirmed
    PAID = "paid"
    FAILED = "failed"  # the transfer was refused or reversed; money back on the balance


class Payout(db.Model):
    """One transfer of a seller's cleared earnings to their connected Stripe account.
    One per seller and day: running the payout job twice cannot pay twice."""

    __tablename__ = "payouts"
    __table_args__ = (
        sa.UniqueConstraint("seller_id", "period"),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    seller_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    period: Mapped[date] = mapped_column(sa.Date)
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    status: Mapped[PayoutStatus] = mapped_column(
        enum_column(PayoutStatus, "payout_status"), default=PayoutStatus.PENDING)
    destination: Mapped[str] = mapped_column(sa.String(255))
    transfer_id: Mapped[Optional[str]] = mapped_column(sa.String(255), unique=True)
    failure_message: Mapped[str] = mapped_column(sa.Text, default="")
    ledger_transaction_id: Mapped[Optional[int]] = mapped_column(
        sa.ForeignKey("ledger_transactions.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    @property
    def idempotency_key(self) -> str:
        return f"payout:{self.seller_id}:{self.period.isoformat()}"
