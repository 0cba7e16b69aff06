"""Buyers' orders, the sales that fill them, and webhook deliveries (SPEC §4, §5, §8).

Invariants live in the database as well as in the matcher, so that several worker
processes matching at once cannot break them: an order never fills past its quantity
or spends past its hold (CHECKs, and conditional UPDATEs in the matcher), a lead is
never sold twice to one buyer (UNIQUE), and one person reaches a buyer at most once
within the lookback (a claim row per buyer and contact hash)."""
import enum
from datetime import datetime
from typing import Any, Optional

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.leads import Lead
from app.models.types import UTCDateTime, enum_column, utcnow
from app.models.users import User

# The periods of the caps (app.market.rules.PERIODS; a model cannot import the market).
PERIODS = ("hour", "day", "week", "month")
BIGINT_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


class OrderStatus(str, enum.Enum):
    OPEN = "open"
    PAUSED = "paused"
    FILLED = "filled"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


ACTIVE_ORDER_STATUSES = (OrderStatus.OPEN, OrderStatus.PAUSED)


class Order(db.Model):
    __tablename__ = "orders"
    __table_args__ = (
        sa.CheckConstraint("quantity >= 1", name="quantity_positive"),
        sa.CheckConstraint("price >= 0", name="price_not_negative"),
        sa.CheckConstraint("filled >= 0 AND filled <= quantity", name="filled_within_quantity"),
        sa.CheckConstraint("held >= 0", name="held_not_negative"),
        sa.CheckConstraint("spent >= 0", name="spent_not_negative"),
        sa.CheckConstraint("budget IS NULL OR spent <= budget", name="spent_within_budget"),
        *(sa.CheckConstraint(f"{cap}_{p} IS NULL OR {p}_{used} <= {cap}_{p}",
                             name=f"within_{cap}_{p}")
          for p in PERIODS for cap, used in (("cap", "leads"), ("spend_cap", "spend"))),
        sa.Index("ix_orders_status_price", "status", "price"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    buyer_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(120), default="")
    status: Mapped[OrderStatus] = mapped_column(
        enum_column(OrderStatus, "order_status"), default=OrderStatus.OPEN)
    price: Mapped[int] = mapped_column(sa.BigInteger)
    quantity: Mapped[int] = mapped_column(sa.Integer)
    budget: Mapped[Optional[int]] = mapped_column(sa.BigInteger)
    filled: Mapped[int] = mapped_column(sa.Integer, default=0)
    spent: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    # Money still held on the buyer's ledger for this order: what it may yet spend.
    held: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    # SPEC §4 filters, as submitted (validated); see app.market.filters.Filters.
    filters: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    expires_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    # Caps per period (leads, spend) and what the current period used, in the order's
    # time zone: `{period}_key` names the period the counters count (rules.period_keys).
    # Counters start at 0 however a row is written (server defaults: bulk loads too).
    cap_hour: Mapped[Optional[int]] = mapped_column(sa.Integer)
    cap_day: Mapped[Optional[int]] = mapped_column(sa.Integer)
    cap_week: Mapped[Optional[int]] = mapped_column(sa.Integer)
    cap_month: Mapped[Optional[int]] = mapped_column(sa.Integer)
    spend_cap_hour: Mapped[Optional[int]] = mapped_column(sa.BigInteger)
    spend_cap_day: Mapped[Optional[int]] = mapped_column(sa.BigInteger)
    spend_cap_week: Mapped[Optional[int]] = mapped_column(sa.BigInteger)
    spend_cap_month: Mapped[Optional[int]] = mapped_column(sa.BigInteger)
    hour_key: Mapped[Optional[str]] = mapped_column(sa.String(24))
    day_key: Mapped[Optional[str]] = mapped_column(sa.String(10))
    week_key: Mapped[Optional[str]] = mapped_column(sa.String(8))
    month_key: Mapped[Optional[str]] = mapped_column(sa.String(7))
    hour_leads: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    day_leads: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    week_leads: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    month_leads: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    hour_spend: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    day_spend: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    week_spend: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    month_spend: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    # Weekly delivery windows, each optionally with its own price (app.market.schedule);
    # None: always open at `price`.
    schedule: Mapped[Optional[list]] = mapped_column(sa.JSON(none_as_null=True))
    timezone: Mapped[str] = mapped_column(sa.String(64), default="UTC")
    # SPEC §14 quiet hours: phone leads only while the person's local time is in
    # [calling_from, calling_until) (minutes after midnight); None: not held.
    calling_from: Mapped[Optional[int]] = mapped_column(sa.SmallInteger)
    calling_until: Mapped[Optional[int]] = mapped_column(sa.SmallInteger)
    # Bumped by every change of terms: a fill planned under older terms is re-planned.
    revision: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    lookback_days: Mapped[int] = mapped_column(sa.Integer, default=30)
    webhook_url: Mapped[Optional[str]] = mapped_column(sa.String(2000))
    webhook_secret_enc: Mapped[Optional[bytes]] = mapped_column(sa.LargeBinary)
    # Live bids (SPEC §4 rule 9): real-time leads are offered to bid_url, which may bid
    # up to max_bid (minor units); the order's hold is sized for max_bid.
    bid_url: Mapped[Optional[str]] = mapped_column(sa.String(2000))
    max_bid: Mapped[Optional[int]] = mapped_column(sa.BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    closed_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())

    buyer: Mapped[User] = relationship()

    @property
    def has_caps(self) -> bool:
        """Some cap per period, of leads or of spend."""
        return any(getattr(self, f"{kind}_{p}") is not None
                   for kind in ("cap", "spend_cap") for p in PERIODS)

    @property
    def remaining(self) -> int:
        return self.quantity - self.filled

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_ORDER_STATUSES


class Sale(db.Model):
    """One lead delivered to one order at the order's price (a fill)."""

    __tablename__ = "sales"
    __table_args__ = (
        sa.UniqueConstraint("buyer_id", "lead_id"),  # never the same lead twice to a buyer
        sa.CheckConstraint("commission >= 0 AND seller_share >= 0 AND "
                           "commission + seller_share = price", name="price_split"),
        sa.Index("ix_sales_order_id_id", "order_id", "id"),
        # The periodic release of cleared earnings reads only the sales not yet released.
        sa.Index("ix_sales_unreleased", "created_at",
                 sqlite_where=sa.text("released_at IS NULL"),
                 postgresql_where=sa.text("released_at IS NULL")),
        # KPI aggregates read these indexes alone (covering): a buyer's sales in a date
        # range by order or region, and the market's recent sales (services.kpis,
        # market_stats), so a page never joins a million leads.
        sa.Index("ix_sales_buyer_id_created_at", "buyer_id", "created_at", "order_id", "price",
                 "region"),
        sa.Index("ix_sales_created_at_cover", "created_at", "region", "seller_id", "price",
                 "commission"),
        sa.Index("ix_sales_batch_id_cover", "batch_id", "price", "seller_share"),
    )

    id: Mapped[int] = mapped_column(BIGINT_ID, primary_key=True)
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("orders.id"))
    lead_id: Mapped[int] = mapped_column(sa.ForeignKey("leads.id"), index=True)
    # The order's buyer and the lead's seller (and below, batch), copied at the sale.
    # The database checks the order and the lead it points to, not these copies of
    # theirs: each foreign key costs a lookup per sale, the dearest part of storing
    # a group of sales (bench/match.py). The buyer's own index is the unique one's prefix.
    buyer_id: Mapped[int] = mapped_column()
    seller_id: Mapped[int] = mapped_column(index=True)
    price: Mapped[int] = mapped_column(sa.BigInteger)
    commission: Mapped[int] = mapped_column(sa.BigInteger)
    seller_share: Mapped[int] = mapped_column(sa.BigInteger)
    ledger_transaction_id: Mapped[Optional[int]] = mapped_column(
        sa.ForeignKey("ledger_transactions.id"))
    # Indexed as the first column of ix_sales_created_at_cover.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # When the seller's share moved from pending to available (the return window closed).
    released_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    # The lead's region and batch, copied at the sale: prices by region and a seller's
    # per-batch figures without joining the leads.
    region: Mapped[Optional[str]] = mapped_column(sa.String(8))
    batch_id: Mapped[Optional[int]] = mapped_column()

    order: Mapped[Order] = relationship()
    lead: Mapped[Lead] = relationship()


class PersonClaim(db.Model):
    """The last time a buyer received a person (by email or phone hash), so that no
    two concurrent fills can deliver the same person twice within the lookback.
    A lock table written with every sale: its buyer is the sale's, not checked again."""

    __tablename__ = "person_claims"
    # Person first: the matcher looks up a chunk's people for every buyer of the book;
    # with the buyer first, PostgreSQL probed the index once per (buyer, person) pair.
    __table_args__ = (sa.PrimaryKeyConstraint("person_hash", "buyer_id"),)

    buyer_id: Mapped[int] = mapped_column()
    person_hash: Mapped[bytes] = mapped_column(sa.LargeBinary(17))
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PersonListing(db.Model):
    """How one person is being sold (SPEC §4 rule 2: caps and exclusivity are promises
    about the person, not the copy): since `first_sold_at`, `sold` buyers received
    them, and at most `cap` may -- the cap of the copy that sold first, whichever
    seller's copy it was. Written with every sale, under a row lock."""

    __tablename__ = "person_listings"
    __table_args__ = (
        sa.CheckConstraint("sold >= 1 AND sold <= cap", name="sold_within_cap"),
    )

    person_hash: Mapped[bytes] = mapped_column(sa.LargeBinary(17), primary_key=True)
    cap: Mapped[int] = mapped_column(sa.Integer)
    sold: Mapped[int] = mapped_column(sa.Integer)
    first_sold_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DeliveryStatus(str, enum.Enum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # gave up after the last retry; the buyer can resend
    # The buyer's system answered and refused the lead (refused_by_buyer): not retried,
    # as the same request would be refused again; the buyer can resend after a fix.
    REJECTED = "rejected"


def refused_by_buyer(status_code: Optional[int], error: Optional[str]) -> bool:
    """Whether a delivery attempt's answer was a refusal by the buyer's system: it
    answered (2xx) and its reply rule said no. The request itself was refused, not
    its transport: no failure of ours."""
    return error is not None and status_code is not None and 200 <= status_code < 300


class WebhookDelivery(db.Model):
    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(BIGINT_ID, primary_key=True)
    sale_id: Mapped[int] = mapped_column(sa.ForeignKey("sales.id"), index=True)
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("orders.id"), index=True)
    # "lead.delivered", or "lead.erased" (GDPR Art. 19: tell every recipient).
    event: Mapped[str] = mapped_column(sa.String(32), default="lead.delivered",
                                       server_default="lead.delivered")
    # "url": to the order's webhook URL (signed JSON or the buyer's format); "email":
    # to the order's email addresses (EmailDelivery). A sale has one of each at most.
    channel: Mapped[str] = mapped_column(sa.String(8), default="url", server_default="url")
    status: Mapped[DeliveryStatus] = mapped_column(
        enum_column(DeliveryStatus, "delivery_status"), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    last_status_code: Mapped[Optional[int]] = mapped_column(sa.Integer)
    last_error: Mapped[Optional[str]] = mapped_column(sa.String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    delivered_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())

    @property
    def last_refused(self) -> bool:
        """The last attempt's answer was a refusal by the buyer's system."""
        return refused_by_buyer(self.last_status_code, self.last_error)


class HttpDelivery(db.Model):
    """An order's leads POSTed to its webhook_url in the buyer's own format (SPEC §12,
    app.aftersale.delivery.http) instead of our signed JSON."""

    __tablename__ = "http_deliveries"

    order_id: Mapped[int] = mapped_column(sa.ForeignKey("orders.id"), primary_key=True)
    body_format: Mapped[str] = mapped_column(sa.String(8), default="json")
    mapping: Mapped[str] = mapped_column(sa.Text)
    # {name: value} as JSON, encrypted: headers carry the buyer's API tokens.
    headers_enc: Mapped[Optional[bytes]] = mapped_column(sa.LargeBinary)
    reply_kind: Mapped[str] = mapped_column(sa.String(8), default="status")
    reply_path: Mapped[str] = mapped_column(sa.String(500), default="")
    reply_accept: Mapped[str] = mapped_column(sa.String(200), default="")
    reply_reason: Mapped[str] = mapped_column(sa.String(500), default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class EmailDelivery(db.Model):
    """An order's leads also sent by email (SPEC §12, app.aftersale.delivery.emailing):
    one message per lead, or a digest each hour or day of the order's time zone."""

    __tablename__ = "email_deliveries"

    order_id: Mapped[int] = mapped_column(sa.ForeignKey("orders.id"), primary_key=True)
    addresses: Mapped[str] = mapped_column(sa.Text)  # normalised, comma-separated
    mode: Mapped[str] = mapped_column(sa.String(8), default="lead")  # "lead" or "digest"
    digest: Mapped[str] = mapped_column(sa.String(8), default="daily")  # "hourly" or "daily"
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class DeliveryAttempt(db.Model):
    """One try of a delivery: the request as sent (secret header values masked) and the
    reply's first 2 KB, both encrypted (they carry the person's contacts)."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(BIGINT_ID, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(sa.ForeignKey("webhook_deliveries.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    milliseconds: Mapped[int] = mapped_column(sa.Integer)
    # How it was sent: "webhook" (our signed JSON), "http" (the buyer's format) or "email".
    method: Mapped[str] = mapped_column(sa.String(8), default="webhook",
                                        server_default="webhook")
    request_enc: Mapped[bytes] = mapped_column(sa.LargeBinary)
    status_code: Mapped[Optional[int]] = mapped_column(sa.Integer)
    reply_enc: Mapped[Optional[bytes]] = mapped_column(sa.LargeBinary)
    # None when accepted; else why not, as a sentence (app.aftersale.delivery.engine).
    error: Mapped[Optional[str]] = mapped_column(sa.String(500))

    @property
    def refused(self) -> bool:
        """The buyer's system answered and refused the lead (not a failure of ours)."""
        return refused_by_buyer(self.status_code, self.error)


class ErasureNotice(db.Model):
    """A buyer is told that a person they bought asked to be erased, and should delete
    them too (GDPR Art. 19). Shown in the buyer's UI until acknowledged."""

    __tablename__ = "erasure_notices"

    id: Mapped[int] = mapped_column(primary_key=True)
    buyer_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    sale_id: Mapped[int] = mapped_column(sa.ForeignKey("sales.id"), unique=True)
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("orders.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    acknowledged_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
