"""The numbers sellers and admins decide by (SPEC §7, §8): per batch for a seller,
the whole marketplace for an admin. Aggregates in the database over indexed columns;
buyers' feedback reaches sellers only as counts, never with the buyer's identity.

It also holds the one rule that reads the market for a seller's terms: a floor far
above recent prices needs the seller's confirmation (`check_floor`, which reads and
raises, never writes).

A refunded sale (an accepted return, a buyer's or a failed spot-check's: models.refund_of)
was undone on the ledger: every figure of sales counts it as sold and says how much of
it was refunded (`Net`), so what a page calls earned or paid is what stands, and
agrees with the ledger."""
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Collection, Optional

import sqlalchemy as sa

from app.errors import Conflict
from app.extensions import db
from app.formatting import format_money
from app.models import (
    LISTED_STATUSES, Batch, Lead, LedgerTransaction, Order, OrderStatus, OutcomeStatus, Return, Sale,
    SaleOutcome, User, refund_of, refunded,
)
from app.models.types import utcnow
from app.market import rules
from app.services import kpis, scoring


PERIODS = (1, 7, 30, 90)  # days the admin page looks back over


@dataclass
class Feedback:
    """Buyers' outcomes on a set of delivered leads, aggregated."""

    contacted: int = 0
    converted: int = 0
    bad: int = 0

    @property
    def rated(self) -> int:
        return self.contacted + self.converted + self.bad

    @property
    def conversion_rate(self) -> Optional[Decimal]:
        """Converted among the leads buyers rated (not among all sold: most go unrated)."""
        return kpis._ratio(self.converted, self.rated, kpis.RATIO)

    @property
    def bad_rate(self) -> Optional[Decimal]:
        return kpis._ratio(self.bad, self.rated, kpis.RATIO)

    def add(self, status: OutcomeStatus, count: int) -> None:
        setattr(self, status.value, getattr(self, status.value) + count)


@dataclass(frozen=True)
class Net:
    """A count or an amount of sales and how much of it was refunded: `net` is what
    stands. Pages show `net` with the refunded part beside it (templates/_net.html)."""

    gross: int = 0
    refunded: int = 0

    @property
    def net(self) -> int:
        return self.gross - self.refunded

    def __add__(self, other: "Net") -> "Net":
        return Net(self.gross + other.gross, self.refunded + other.refunded)


def _net(gross, taken_back) -> Net:
    return Net(int(gross or 0), int(taken_back or 0))  # PostgreSQL sums bigints as numeric


@dataclass
class BatchSales:
    sold: Net = Net()  # sales of the batch's leads, and how many were refunded
    revenue: int = 0  # what buyers paid, refunds included (the prices they bought at)
    earned: Net = Net()  # the seller's share of those sales, and what refunds took back
    min_price: Optional[int] = None
    max_price: Optional[int] = None
    feedback: Feedback = field(default_factory=Feedback)

    @property
    def returned(self) -> int:
        """Sales of the batch refunded: by an accepted return or a failed spot-check."""
        return self.sold.refunded

    @property
    def average_price(self) -> Optional[Decimal]:
        return kpis._ratio(self.revenue, self.sold.gross, kpis.CENTS)


def batch_sales(batch_ids: list[int]) -> dict[int, BatchSales]:
    """batch id → what its leads sold for, and buyers' feedback on them: one pass over
    the batches' sales (their index), probing each one's accepted return and outcome
    (at most one of each per sale), not every return or outcome of the marketplace."""
    found = {batch_id: BatchSales() for batch_id in batch_ids}
    if not batch_ids:
        return found
    rated = [sa.func.count(sa.case((SaleOutcome.status == status, 1))) for status in OutcomeStatus]
    for batch_id, sold, returned, revenue, earned, taken_back, low, high, *feedback in \
            db.session.execute(_with_return_and_outcome(
                sa.select(Sale.batch_id, sa.func.count(), sa.func.count(Return.id),
                          sa.func.sum(Sale.price), sa.func.sum(Sale.seller_share),
                          sa.func.sum(sa.case((Return.id.is_not(None), Sale.seller_share))),
                          sa.func.min(Sale.price), sa.func.max(Sale.price), *rated))
            .where(Sale.batch_id.in_(batch_ids)).group_by(Sale.batch_id)):
        found[batch_id] = BatchSales(Net(sold, returned), int(revenue or 0),
                                     _net(earned, taken_back), low, high,
                                     Feedback(**{status.value: count for status, count
                                                 in zip(OutcomeStatus, feedback)}))
    return found


def _with_return_and_outcome(query: sa.Select) -> sa.Select:
    """Sales with the return that refunded them (`refund_of`) and their buyer's
    outcome, each None when there is none."""
    return (query.select_from(Sale)
            .outerjoin(Return, refund_of(Sale.id))
            .outerjoin(SaleOutcome, SaleOutcome.sale_id == Sale.id))


@dataclass
class SourceFigures:
    """One sub_id's leads in some batches (SPEC §3 "every figure broken down by it")."""

    sub_id: Optional[str]  # None: rows that named no source
    accepted: int = 0
    sold: int = 0
    revenue: int = 0
    min_price: Optional[int] = None
    max_price: Optional[int] = None
    returned: int = 0
    converted: int = 0

    @property
    def average_price(self) -> Optional[Decimal]:
        return kpis._ratio(self.revenue, self.sold, kpis.CENTS)


MAX_SOURCES = 50  # pages show at most 50 rows


def sub_id_figures(batch_ids: list[int], limit: int = MAX_SOURCES) -> list[SourceFigures]:
    """Per sub_id of these batches: leads accepted, sales and their prices, accepted
    returns and buyers' conversions; the sources with most leads first."""
    if not batch_ids:
        return []
    found: dict[Optional[str], SourceFigures] = {}
    for sub_id, accepted in db.session.execute(
            sa.select(Lead.sub_id, sa.func.count()).where(Lead.batch_id.in_(batch_ids))
            .group_by(Lead.sub_id)):
        found[sub_id] = SourceFigures(sub_id, accepted)
    for sub_id, count, revenue, low, high, returned, converted in db.session.execute(
            _with_return_and_outcome(
                sa.select(Lead.sub_id, sa.func.count(), sa.func.sum(Sale.price),
                          sa.func.min(Sale.price), sa.func.max(Sale.price),
                          sa.func.count(Return.id),
                          sa.func.count(sa.case((SaleOutcome.status == OutcomeStatus.CONVERTED,
                                                 1)))))
            .join(Lead, Sale.lead_id == Lead.id)
            .where(Sale.batch_id.in_(batch_ids)).group_by(Lead.sub_id)):
        figures = found.setdefault(sub_id, SourceFigures(sub_id))
        figures.sold, figures.revenue = count, int(revenue or 0)
        figures.min_price, figures.max_price = low, high
        figures.returned, figures.converted = returned, converted
    ranked = sorted(found.values(), key=lambda f: (-f.accepted, f.sub_id is None, f.sub_id or ""))
    return ranked[:limit]


def batch_temperatures(batch: Batch, now: Optional[datetime] = None) -> dict[str, int]:
    """How many of the batch's unsold, listed leads are hot, warm and cold right now."""
    now = now or utcnow()
    temperature = scoring.temperature_sql(now)
    counts = dict(db.session.execute(
        sa.select(temperature, sa.func.count()).where(
            Lead.batch_id == batch.id, Lead.status.in_(LISTED_STATUSES),
            rules.LEAD_CAP.test(Lead, rules.Ctx()))
        .group_by(temperature)).all())
    return {name: counts.get(name, 0) for name in scoring.TEMPERATURES}


@dataclass(frozen=True)
class PriceLevel:
    """What recent sales paid (minor units): how many, their median and their 90th
    percentile (None without sales)."""

    sales: int
    median: Optional[int] = None
    high: Optional[int] = None
    regional: bool = False  # sales of the regions asked about, not the whole market's


RECENT_SALES = 1000  # the newest sales a price level is read from
# A floor above this many times the recent 90th percentile of what such leads sold
# for is most likely a typo: saving it needs the seller's confirmation.
FAR_ABOVE_MARKET = 3


class FloorNeedsConfirmation(Conflict):
    code = "floor_needs_confirmation"


def recent_price_level(regions: Collection[Optional[str]], days: int = 30,
                       now: Optional[datetime] = None) -> PriceLevel:
    """What leads of these regions sold for over the last `days`; the whole market's
    level when none of them sold. Refunded sales (an accepted return) were undone:
    not a price paid."""
    since = (now or utcnow()) - timedelta(days=days)
    recent = sa.select(Sale.price).where(Sale.created_at >= since, ~refunded(Sale.id))
    known = [region for region in regions if region is not None]
    prices = []
    if known:
        prices = list(db.session.scalars(recent.where(Sale.region.in_(known))
                                         .order_by(Sale.id.desc()).limit(RECENT_SALES)))
    regional = bool(prices)
    if not prices:
        prices = list(db.session.scalars(recent.order_by(Sale.id.desc()).limit(RECENT_SALES)))
    if not prices:
        return PriceLevel(0)
    prices.sort()
    return PriceLevel(len(prices), prices[len(prices) // 2], prices[-(len(prices) // 10) - 1],
                      regional)


def check_floor(floor_price: int, regions: Collection[Optional[str]], confirm: bool) -> bool:
    """Raise FloorNeedsConfirmation, saying why, for a floor far above what leads of
    these regions sold for lately (no regions: leads of any), unless `confirm`.
    Returns whether the floor was that far above (and confirmed)."""
    if not floor_price:
        return False
    level = recent_price_level(regions)
    if level.high is None or floor_price <= FAR_ABOVE_MARKET * level.high:
        return False
    if confirm:
        return True
    paid = f"90% of {level.sales} recent sales paid at most {format_money(level.high)}"
    if level.median != level.high:
        paid += f", half at most {format_money(level.median)}"
    raise FloorNeedsConfirmation(
        f"A floor of {format_money(floor_price)} is more than {FAR_ABOVE_MARKET} times what "
        f"{'such leads' if level.regional else 'leads'} sold for lately ({paid}): few orders, "
        "if any, will buy at it. Confirm it to keep it anyway.",
        details={"field": "floor_price", "floor_price": floor_price})


def seller_feedback(seller: User) -> Feedback:
    feedback = Feedback()
    for status, count in db.session.execute(
            sa.select(SaleOutcome.status, sa.func.count())
            .where(SaleOutcome.seller_id == seller.id).group_by(SaleOutcome.status)):
        feedback.add(status, count)
    return feedback


@dataclass
class Marketplace:
    days: int
    computed_at: datetime
    leads_listed: int
    batches: int
    sales: Net  # the period's sales, and how many of them were refunded
    paid: Net  # what buyers paid for them, and what refunds gave back
    commission: Net  # the exchange's cut of them, and what refunds gave back
    orders_open: int
    orders_quantity: int
    orders_filled: int
    orders_completed: int
    orders_ended: int
    regions: list[dict]
    top_sellers: list[dict]
    feedback: Feedback

    @property
    def returns(self) -> int:
        return self.sales.refunded

    @property
    def fill_rate(self) -> Optional[Decimal]:
        """Leads delivered ÷ leads ordered, over orders placed in the period."""
        return kpis._ratio(self.orders_filled, self.orders_quantity, kpis.RATIO)

    @property
    def completion_rate(self) -> Optional[Decimal]:
        """Orders of the period that ended filled, among those that ended."""
        return kpis._ratio(self.orders_completed, self.orders_ended, kpis.RATIO)

    @property
    def return_rate(self) -> Optional[Decimal]:
        return kpis._ratio(self.sales.refunded, self.sales.gross, kpis.RATIO)


def marketplace_version() -> tuple:
    """What the marketplace figures are computed from, fingerprinted in one indexed
    read: every sale, return and order moves money on the ledger, every upload adds
    leads and every sign-up a user. A cached marketplace of another fingerprint is stale
    (memo.cached)."""
    return tuple(db.session.execute(sa.select(
        sa.select(sa.func.max(LedgerTransaction.id)).scalar_subquery(),
        sa.select(sa.func.max(Lead.id)).scalar_subquery(),
        sa.select(sa.func.max(User.id)).scalar_subquery())).one())


def marketplace(days: int = 30, now: Optional[datetime] = None, top: int = 10) -> Marketplace:
    """The marketplace over the last `days`: one grouped scan of the period's sales
    (by region and seller, over a covering index) and one of its outcomes (by seller
    and status) give volume, prices by region, top sellers and feedback. Refunds are
    those of the period's sales (the same cohort, so the return rate is the share of
    them refunded); commission net of them, like the ledger's all-time figure."""
    now = now or utcnow()
    since = now - timedelta(days=days)
    listed, batch_count = db.session.execute(
        sa.select(sa.func.coalesce(sa.func.sum(Batch.accepted), 0), sa.func.count())
        .where(Batch.created_at >= since)).one()
    ended = (OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.EXPIRED)
    quantity, filled, completed, ended_count = db.session.execute(
        sa.select(sa.func.coalesce(sa.func.sum(Order.quantity), 0),
                  sa.func.coalesce(sa.func.sum(Order.filled), 0),
                  sa.func.count().filter(Order.status == OrderStatus.FILLED),
                  sa.func.count().filter(Order.status.in_(ended)))
        .where(Order.created_at >= since)).one()
    open_orders = db.session.scalar(sa.select(sa.func.count()).select_from(Order)
                                    .where(Order.status == OrderStatus.OPEN))
    regions: dict[Optional[str], list] = {}
    # seller → [sales, paid, commission, and each of them refunded]
    sellers: dict[int, list[int]] = {}
    for region, seller_id, count, total, cut, low, high in db.session.execute(
            sa.select(Sale.region, Sale.seller_id, sa.func.count(), sa.func.sum(Sale.price),
                      sa.func.sum(Sale.commission), sa.func.min(Sale.price),
                      sa.func.max(Sale.price))
            .where(Sale.created_at >= since).group_by(Sale.region, Sale.seller_id)):
        r = regions.setdefault(region, [0, 0, low, high])
        r[0] += count
        r[1] += int(total)
        r[2], r[3] = min(r[2], low), max(r[3], high)
        s = sellers.setdefault(seller_id, [0] * 6)
        s[0] += count
        s[1] += int(total)
        s[2] += int(cut)
    # The few refunded sales of the period (the same cohort), taken off what they added.
    for seller_id, count, total, cut in db.session.execute(
            sa.select(Sale.seller_id, sa.func.count(), sa.func.sum(Sale.price),
                      sa.func.sum(Sale.commission))
            .select_from(Return).join(Sale, refund_of(Sale.id))
            .where(Sale.created_at >= since).group_by(Sale.seller_id)):
        s = sellers.setdefault(seller_id, [0] * 6)
        s[3] += count
        s[4] += int(total)
        s[5] += int(cut)
    feedback_by_seller: dict[int, Feedback] = {}
    overall = Feedback()
    for seller_id, status, count in db.session.execute(
            sa.select(SaleOutcome.seller_id, SaleOutcome.status, sa.func.count())
            .where(SaleOutcome.sold_at >= since)
            .group_by(SaleOutcome.seller_id, SaleOutcome.status)):
        feedback_by_seller.setdefault(seller_id, Feedback()).add(status, count)
        overall.add(status, count)
    figures = {seller_id: (Net(s[0], s[3]), Net(s[1], s[4]), Net(s[2], s[5]))
               for seller_id, s in sellers.items()}
    best = sorted(figures.items(), key=lambda item: (-item[1][1].net, item[0]))[:top]
    names = dict(db.session.execute(sa.select(User.id, User.display_name).where(
        User.id.in_([seller_id for seller_id, _ in best]))).all()) if best else {}
    top_sellers = [{"id": seller_id, "name": names.get(seller_id) or f"Seller {seller_id}",
                    "sales": count, "paid": paid, "commission": cut,
                    "feedback": feedback_by_seller.get(seller_id, Feedback())}
                   for seller_id, (count, paid, cut) in best]
    by_volume = sorted(regions.items(), key=lambda item: (-item[1][0], item[0] or ""))[:20]
    return Marketplace(
        days=days, computed_at=now, leads_listed=int(listed), batches=batch_count,
        sales=sum((f[0] for f in figures.values()), Net()),
        paid=sum((f[1] for f in figures.values()), Net()),
        commission=sum((f[2] for f in figures.values()), Net()),
        orders_open=open_orders, orders_quantity=int(quantity), orders_filled=int(filled),
        orders_completed=completed, orders_ended=ended_count,
        regions=[{"region": region or "unknown", "sales": count,
                  "average": kpis._ratio(total, count, kpis.CENTS), "min": low, "max": high}
                 for region, (count, total, low, high) in by_volume],
        top_sellers=top_sellers, feedback=overall)


@dataclass(frozen=True)
class CommissionDay:
    day: str  # the sales' UTC day, "YYYY-MM-DD"
    sales: Net
    commission: Net


def commission_by_day(days: int = 30, now: Optional[datetime] = None) -> list[CommissionDay]:
    """The exchange's commission on each day's sales over the last `days`, newest
    first, net of the refunds of those sales (refunded later or not): what the ledger's
    commission account kept of them. One scan of the period's sales (a covering index),
    and one of the few refunded among them, taken off the same days."""
    since = (now or utcnow()) - timedelta(days=days)
    day = sa.func.date(Sale.created_at)
    found: dict[str, list[int]] = {}  # day → [sales, refunded, commission, refunded]
    for d, count, cut in db.session.execute(
            sa.select(day, sa.func.count(), sa.func.sum(Sale.commission))
            .where(Sale.created_at >= since).group_by(day)):
        found[str(d)[:10]] = [count, 0, int(cut), 0]
    for d, count, cut in db.session.execute(
            sa.select(day, sa.func.count(), sa.func.sum(Sale.commission))
            .select_from(Return).join(Sale, refund_of(Sale.id))
            .where(Sale.created_at >= since).group_by(day)):
        found.setdefault(str(d)[:10], [0] * 4)[1:4:2] = count, int(cut)
    return [CommissionDay(d, Net(sales, returned), Net(cut, cut_back))
            for d, (sales, returned, cut, cut_back) in sorted(found.items(), reverse=True)]
