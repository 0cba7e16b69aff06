"""Returns (SPEC §7): a buyer's claim that a delivered lead is bad, its decision, and
the reversal of the sale on the ledger when it is accepted. A failed spot-check
returns every sale of its batch the same way, decided by the system."""
import enum
from datetime import datetime
from typing import Optional

import sqlalchemy as sa
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.orders import Sale
from app.models.types import UTCDateTime, enum_column, utcnow


class ReturnReason(str, enum.Enum):
    WRONG_NUMBER = "wrong_number"
    FAKE = "fake"
    NO_CONSENT = "no_consent"
    NOT_MATCHING = "not_matching"  # does not match the order's filters
    DUPLICATE = "duplicate"
    FAILED_SPOT_CHECK = "failed_spot_check"  # the system's: the batch failed its check


class ReturnStatus(str, enum.Enum):
    AWAITING_SELLER = "awaiting_seller"  # the seller may accept or contest
    CONTESTED = "contested"  # an admin decides
    ACCEPTED = "accepted"  # the sale is reversed
    REJECTED = "rejected"  # the sale stands


OPEN_RETURN_STATUSES = (ReturnStatus.AWAITING_SELLER, ReturnStatus.CONTESTED)


class Return(db.Model):
    __tablename__ = "returns"

    id: Mapped[int] = mapped_column(primary_key=True)
    # One return per sale: a rejected return is final, an accepted one already refunded.
    sale_id: Mapped[int] = mapped_column(sa.ForeignKey("sales.id"), unique=True)
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("orders.id"), index=True)
    buyer_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    seller_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    reason: Mapped[ReturnReason] = mapped_column(enum_column(ReturnReason, "return_reason"))
    note: Mapped[str] = mapped_column(sa.Text, default="")
    status: Mapped[ReturnStatus] = mapped_column(
        enum_column(ReturnStatus, "return_status"), index=True)
    # "system", "seller", "admin" or "timeout" (the seller did not answer in time).
    decided_by: Mapped[Optional[str]] = mapped_column(sa.String(16))
    decision_note: Mapped[str] = mapped_column(sa.Text, default="")
    seller_note: Mapped[str] = mapped_column(sa.Text, default="")
    seller_deadline: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    decided_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    refund: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    ledger_transaction_id: Mapped[Optional[int]] = mapped_column(
        sa.ForeignKey("ledger_transactions.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)

    sale: Mapped[Sale] = relationship()

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_RETURN_STATUSES

    @hybrid_property
    def filed_by_buyer(self) -> bool:
        """A buyer's claim, not one of the returns a failed spot-check makes of each sale
        of its batch (the exchange's doing: no seller is asked to answer them). In SQL too."""
        return self.reason != ReturnReason.FAILED_SPOT_CHECK

    @hybrid_property
    def refunds(self) -> bool:
        """The return refunded its sale: ACCEPTED, a buyer's or a failed spot-check's
        alike (an open or rejected return leaves the sale standing). In SQL too."""
        return self.status == ReturnStatus.ACCEPTED


def refund_of(sale_id) -> sa.ColumnElement[bool]:
    """SQL: the return that refunded the sale `sale_id` names (`Return.refunds`). The
    one rule every figure net of refunds uses (a join on it, or `refunded`): a refunded
    sale was undone on the ledger, so it is no lead bought, no money spent, earned or
    taken in commission."""
    return sa.and_(Return.sale_id == sale_id, Return.refunds)


def refunded(sale_id) -> sa.Exists:
    """SQL: the sale `sale_id` names was refunded (`refund_of`)."""
    return sa.exists().where(refund_of(sale_id))
