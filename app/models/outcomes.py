"""What happened to a delivered lead, as its buyer records it (SPEC §8, §9).

One row per sale, changed as the buyer learns more (contacted, then converted). The
sale's order, buyer, seller, batch and delivery time are copied in (a sale never
changes), so KPI and feedback aggregates read this table and its indexes alone,
without joining the sales and leads tables row by row."""
import enum
from datetime import datetime
from typing import Optional

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.types import UTCDateTime, enum_column, utcnow


class OutcomeStatus(str, enum.Enum):
    CONTACTED = "contacted"
    CONVERTED = "converted"  # became a customer; revenue is what the buyer earned
    BAD = "bad"  # unreachable, fake, not interested at all


class SaleOutcome(db.Model):
    __tablename__ = "sale_outcomes"
    __table_args__ = (
        sa.CheckConstraint("revenue IS NULL OR revenue >= 0", name="revenue_not_negative"),
        sa.CheckConstraint("status = 'converted' OR revenue IS NULL",
                           name="revenue_only_when_converted"),
        sa.Index("ix_sale_outcomes_buyer_id_sold_at", "buyer_id", "sold_at", "order_id",
                 "status", "revenue"),
        sa.Index("ix_sale_outcomes_order_id_status", "order_id", "status", "revenue"),
        sa.Index("ix_sale_outcomes_seller_id_status", "seller_id", "status"),
        sa.Index("ix_sale_outcomes_batch_id_status", "batch_id", "status"),
        sa.Index("ix_sale_outcomes_sold_at", "sold_at", "seller_id", "status"),
    )

    sale_id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), sa.ForeignKey("sales.id"),
        primary_key=True, autoincrement=False)
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("orders.id"))
    buyer_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    seller_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    batch_id: Mapped[int] = mapped_column(sa.ForeignKey("batches.id"))
    sold_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[OutcomeStatus] = mapped_column(enum_column(OutcomeStatus, "outcome_status"))
    revenue: Mapped[Optional[int]] = mapped_column(sa.BigInteger)  # minor units
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
