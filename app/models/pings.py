"""Live bids (SPEC §4 rule 9, §12): a ping -- a real-time lead's attributes offered to
the orders with a bid URL -- and the bids it received, kept for the lead's journey.

A ping from `POST /pings` waits for its post (`lead_id` set then) until `expires_at`;
a single-step `POST /leads` records its ping with the lead at once. Each `PingBid`
is one order's answer (a bid, or why none, and its milliseconds) or a fixed-price
offer; `won` marks the orders the lead is offered to."""
from datetime import datetime
from typing import Any, Optional

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.orders import BIGINT_ID
from app.models.types import UTCDateTime, utcnow


class Ping(db.Model):
    __tablename__ = "pings"

    id: Mapped[int] = mapped_column(BIGINT_ID, primary_key=True)
    public_id: Mapped[str] = mapped_column(sa.String(32), unique=True)
    seller_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    lead_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("leads.id"), index=True)
    # The lead's attributes as pinged (no contact data) and their hash, which a post
    # must match; the seller's terms for the lead.
    attributes: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    attributes_hash: Mapped[str] = mapped_column(sa.String(64))
    default_country: Mapped[Optional[str]] = mapped_column(sa.String(2))  # None: POST /leads
    floor_price: Mapped[int] = mapped_column(sa.BigInteger)
    cap: Mapped[int] = mapped_column(sa.Integer)
    price: Mapped[Optional[int]] = mapped_column(sa.BigInteger)  # offered, minor units
    order_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("orders.id"))  # the best
    deadline_ms: Mapped[int] = mapped_column(sa.Integer)
    answered_ms: Mapped[int] = mapped_column(sa.Integer)  # from ping to the last bid in
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    posted_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())

    bids: Mapped[list["PingBid"]] = relationship(back_populates="ping",
                                                 order_by="PingBid.id")


class PingBid(db.Model):
    __tablename__ = "ping_bids"

    id: Mapped[int] = mapped_column(BIGINT_ID, primary_key=True)
    ping_id: Mapped[int] = mapped_column(sa.ForeignKey("pings.id"), index=True)
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("orders.id"))
    buyer_id: Mapped[int] = mapped_column()
    # app.market.bidding.OUTCOMES: bid, fixed (a fixed price), or why there is no bid.
    outcome: Mapped[str] = mapped_column(sa.String(16))
    amount: Mapped[Optional[int]] = mapped_column(sa.BigInteger)
    detail: Mapped[Optional[str]] = mapped_column(sa.String(200))
    milliseconds: Mapped[Optional[int]] = mapped_column(sa.Integer)
    won: Mapped[bool] = mapped_column(sa.Boolean, default=False)

    ping: Mapped[Ping] = relationship(back_populates="bids")
