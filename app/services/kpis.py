"""Buyers' KPIs (SPEC §9), per order and over a date range.

    leads            sales delivered and kept: a sale whose return was accepted is
                     refunded, so it is neither a lead bought nor money spent
    spend            what those leads cost (the prices of the sales kept), minor units
    CPL              spend ÷ leads
    conversions      delivered leads the buyer marked converted
    CR               conversions ÷ leads
    CPA              spend ÷ conversions
    revenue          the revenue the buyer recorded on converted leads: this is the
                     "gross margin from conversions" of SPEC §9 (the buyer enters
                     the margin a customer brought, not the exchange)
    ROI              (revenue − spend) ÷ spend

A range selects leads by the day they were delivered, and their conversions with them
(a cohort), so CR and CPA always relate the same leads. Days are the reader's: the
buyer's pages count them on the buyer's clock (a lead bought at 23:30 in Los Angeles
belongs to that evening, not to the next UTC day); the API keeps UTC days, as it
documents.

The counting and summing happen in the database (GROUP BY over covering indexes of
sales and sale_outcomes, less the few accepted returns, in the same statement); Python only divides the few totals, in Decimal: CPL and CPA
are minor units to two decimals (an average can fall between cents), CR and ROI
fractions to four. A ratio with nothing to divide by is None (shown as "—").
"""
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Iterable, Optional

import sqlalchemy as sa

from app.core import figures
from app.errors import ValidationFailed
from app.extensions import db
from app.models import Order, OutcomeStatus, Return, Sale, SaleOutcome, User, refund_of, refunded

CENTS = Decimal("0.01")
RATIO = Decimal("0.0001")
MAX_RANGE_DAYS = 3 * 366


def _not_refunded():
    """SQL: the outcome's sale was not refunded by an accepted return (a refunded lead
    is no lead of the buyer's, so its conversion is not theirs to count either)."""
    return ~refunded(SaleOutcome.sale_id)


def _ratio(numerator: int, denominator: int, step: Decimal) -> Optional[Decimal]:
    if not denominator:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(step, ROUND_HALF_UP)


@dataclass(frozen=True)
class Kpis:
    leads: int = 0
    spend: int = 0
    conversions: int = 0
    revenue: int = 0
    rated: int = 0  # leads with any outcome recorded (of those, `conversions` converted)

    @property
    def cpl(self) -> Optional[Decimal]:
        return _ratio(self.spend, self.leads, CENTS)

    @property
    def conversion_rate(self) -> Optional[Decimal]:
        return _ratio(self.conversions, self.leads, RATIO)

    @property
    def cpa(self) -> Optional[Decimal]:
        return _ratio(self.spend, self.conversions, CENTS)

    @property
    def roi(self) -> Optional[Decimal]:
        """None until the buyer has told what became of some lead: without outcomes
        the revenue is unknown, not zero (which would read as -100%)."""
        if not (self.rated or self.conversions):
            return None
        return _ratio(self.revenue - self.spend, self.spend, RATIO)

    def __add__(self, other: "Kpis") -> "Kpis":
        return Kpis(self.leads + other.leads, self.spend + other.spend,
                    self.conversions + other.conversions, self.revenue + other.revenue,
                    self.rated + other.rated)

    def as_dict(self) -> dict:
        """The API shape: integers in minor units, ratios as numbers (or null)."""
        def number(value: Optional[Decimal]):
            return None if value is None else float(value)

        return {"leads": self.leads, "spend": self.spend, "cpl": number(self.cpl),
                "conversions": self.conversions, "conversion_rate": number(self.conversion_rate),
                "cpa": number(self.cpa), "revenue": self.revenue, "roi": number(self.roi)}


@dataclass(frozen=True)
class DateRange:
    """Whole days on `zone`'s clock, both ends included; either end may be open."""

    start: Optional[date] = None
    end: Optional[date] = None
    zone: tzinfo = timezone.utc

    @classmethod
    def parse(cls, start: Optional[str], end: Optional[str],
              zone: tzinfo = timezone.utc) -> "DateRange":
        def day(text: Optional[str], name: str) -> Optional[date]:
            if not text:
                return None
            try:
                return date.fromisoformat(str(text).strip()[:10])
            except ValueError:
                raise ValidationFailed(f"“{text}” is not a date like 2026-01-31.",
                                       code="invalid_range", details={"field": name})

        found = cls(day(start, "from"), day(end, "to"), zone)
        if found.start and found.end:
            if found.start > found.end:
                raise ValidationFailed("The range starts after it ends.", code="invalid_range",
                                       details={"field": "from"})
            if (found.end - found.start).days > MAX_RANGE_DAYS:
                raise ValidationFailed(f"A range spans at most {MAX_RANGE_DAYS} days.",
                                       code="invalid_range", details={"field": "from"})
        return found

    @classmethod
    def last_days(cls, days: int, today: Optional[date] = None,
                  zone: tzinfo = timezone.utc) -> "DateRange":
        today = today or datetime.now(zone).date()
        return cls(today - timedelta(days=days - 1), today, zone)

    @property
    def start_at(self) -> Optional[datetime]:
        return None if self.start is None else self._midnight(self.start)

    @property
    def end_before(self) -> Optional[datetime]:
        return None if self.end is None else self._midnight(self.end + timedelta(days=1))

    def _midnight(self, day: date) -> datetime:
        return datetime.combine(day, time(), self.zone).astimezone(timezone.utc)

    def conditions(self, column) -> list:
        found = []
        if self.start_at is not None:
            found.append(column >= self.start_at)
        if self.end_before is not None:
            found.append(column < self.end_before)
        return found

    def days(self, first: Optional[date] = None) -> list[date]:
        """Every day of the range (an open start begins at `first`)."""
        start = self.start or first
        end = self.end or datetime.now(self.zone).date()
        if start is None or start > end:
            return []
        return [start + timedelta(days=i) for i in range(min((end - start).days + 1,
                                                             MAX_RANGE_DAYS))]


def day_of(column, period: DateRange = DateRange()):
    """The day of a stored (UTC) timestamp on the period's clock, in SQL: a date on
    PostgreSQL, "YYYY-MM-DD" text on SQLite; `str(day)[:10]` reads either.

    SQLite knows no time zones: the stored UTC text is shifted by the zone's offset,
    which is a CASE over the offset changes (daylight saving) within the period, or,
    for an open start, the MAX_RANGE_DAYS before its end; older moments take the
    earliest offset."""
    zone_name = str(period.zone) if period.zone is not timezone.utc else "UTC"
    if db.session.get_bind().dialect.name == "postgresql":
        return sa.cast(sa.func.timezone(zone_name, column), sa.Date)
    end = period.end or datetime.now(period.zone).date()
    first, changes = _offsets(period.zone, period.start or end - timedelta(days=MAX_RANGE_DAYS),
                              end)
    if not changes and not first:  # UTC's clock
        return sa.func.substr(column, 1, 10)
    shift = sa.case(*((column >= moment, f"{minutes:+d} minutes")
                      for moment, minutes in reversed(changes)),
                    else_=f"{first:+d} minutes") if changes else f"{first:+d} minutes"
    return sa.func.date(column, shift)


@lru_cache(maxsize=256)
def _offsets(zone: tzinfo, first: date, last: date) -> tuple[int, tuple]:
    """`zone`'s UTC offset in minutes at the start of `first`, and each change of it
    until the end of `last` as (UTC moment, new offset), in order."""
    def offset(moment: datetime) -> int:
        return int(moment.astimezone(zone).utcoffset().total_seconds() // 60)

    moment = datetime.combine(first - timedelta(days=1), time(), timezone.utc)
    initial = current = offset(moment)
    changes = []
    while moment.date() <= last + timedelta(days=1):
        following = moment + timedelta(days=1)
        if offset(following) != current:
            before, after = moment, following  # the change falls in (before, after]
            while after - before > timedelta(seconds=1):
                middle = before + (after - before) / 2
                if offset(middle) == current:
                    before = middle
                else:
                    after = middle
            current = offset(after)
            changes.append((after.replace(microsecond=0), current))
        moment = following
    return initial, tuple(changes)


def kept_sales(buyer: User, period: DateRange, *keys, order_ids: Optional[list[int]] = None):
    """The buyer's sales of the period grouped by `keys` as (*keys, leads, spend) rows,
    UNION ALL the sales refunded by an accepted return, grouped alike and negated:
    adding up the rows of a group gives what the buyer kept. The sales side scans the
    covering index; the returns side reaches the few accepted returns by buyer."""
    sold = (sa.select(*keys, sa.func.count(), sa.func.sum(Sale.price))
            .where(Sale.buyer_id == buyer.id, *period.conditions(Sale.created_at)))
    refunded = (sa.select(*keys, -sa.func.count(), -sa.func.sum(Sale.price))
                .select_from(Return).join(Sale, refund_of(Sale.id))
                .where(Return.buyer_id == buyer.id, *period.conditions(Sale.created_at)))
    if order_ids is not None:
        sold = sold.where(Sale.order_id.in_(order_ids))
        refunded = refunded.where(Sale.order_id.in_(order_ids))
    return sa.union_all(sold.group_by(*keys), refunded.group_by(*keys))


def by_order(buyer: User, period: DateRange = DateRange(),
             order_ids: Optional[Iterable[int]] = None) -> dict[int, Kpis]:
    """order id → its KPIs over the period, for the buyer's orders that have sales
    (an order whose every sale was refunded shows 0 leads)."""
    order_ids = None if order_ids is None else list(order_ids)
    converted = _outcomes(buyer, period, SaleOutcome.order_id)
    if order_ids is not None:
        converted = converted.where(SaleOutcome.order_id.in_(order_ids))
    kept: dict[int, list[int]] = {}
    for order_id, leads, spend in db.session.execute(
            kept_sales(buyer, period, Sale.order_id, order_ids=order_ids)):
        totals = kept.setdefault(order_id, [0, 0])
        totals[0] += leads
        totals[1] += int(spend)  # PostgreSQL sums bigints as numeric
    found = {order_id: Kpis(leads=leads, spend=spend) for order_id, (leads, spend) in kept.items()}
    for order_id, conversions, rated, revenue in db.session.execute(converted):
        base = found.get(order_id, Kpis())
        found[order_id] = Kpis(base.leads, base.spend, int(conversions), int(revenue), rated)
    return found


def _outcomes(buyer: User, period: DateRange, *keys):
    """(*keys, conversions, outcomes recorded, revenue of the conversions) of the
    buyer's delivered leads in the period that were not refunded."""
    converted = SaleOutcome.status == OutcomeStatus.CONVERTED
    return (sa.select(*keys, sa.func.coalesce(sa.func.sum(sa.case((converted, 1), else_=0)), 0),
                      sa.func.count(),
                      sa.func.coalesce(sa.func.sum(sa.case((converted, SaleOutcome.revenue),
                                                           else_=0)), 0))
            .where(SaleOutcome.buyer_id == buyer.id, *period.conditions(SaleOutcome.sold_at),
                   _not_refunded())
            .group_by(*keys))


def total(per_order: dict[int, Kpis]) -> Kpis:
    return sum(per_order.values(), Kpis())


def for_buyer(buyer: User, period: DateRange = DateRange(),
              order_id: Optional[int] = None) -> Kpis:
    """The KPIs of one order, or of all the buyer's orders, over the period (kept per
    revision of the buyer's figures)."""
    return figures.kept(buyer, "kpis", (period, order_id), lambda: total(
        by_order(buyer, period, None if order_id is None else [order_id])))


@dataclass(frozen=True)
class PageData:
    """What the KPI page shows, from one grouped scan of the buyer's sales in the
    period (by order, day and region, less accepted returns) and one of its
    conversions (by order and day)."""

    per_order: dict[int, Kpis]
    days: list[dict]  # {"day", "leads", "spend", "conversions"} for every day of the period
    regions: list[dict]  # {"region", "leads", "your_average", "market_average", ...}


def page_data(buyer: User, period: DateRange, region_limit: int = 12,
              market_days: int = 30) -> PageData:
    per_order, days, top = figures.kept(buyer, "kpi_page", (period, region_limit),
                                        lambda: _own_page_data(buyer, period, region_limit))
    market = market_prices(period, market_days) if top else {}
    regions = []
    for region, (leads, spend) in top:
        market_leads, market_total = market.get(region, (0, 0))
        regions.append({"region": region or "unknown", "leads": leads,
                        "your_average": _ratio(int(spend), leads, CENTS),
                        "market_average": _ratio(market_total, market_leads, CENTS),
                        "market_leads": market_leads})
    return PageData(per_order, days, regions)


def _own_page_data(buyer: User, period: DateRange, region_limit: int) -> tuple:
    """The buyer's own figures of the page (kept per revision of their figures):
    KPIs per order, the days, the regions they bought most in."""
    day = day_of(Sale.created_at, period)
    orders: dict[int, list[int]] = {}  # order → [leads, spend, conversions, revenue, rated]
    by_day: dict[str, list[int]] = {}  # day → [leads, spend, conversions]
    by_region: dict[Optional[str], list[int]] = {}  # region → [leads, spend]
    # Plain lists, not Kpis, per row: a big buyer's period groups into thousands of rows.
    # Refunded sales come as negated rows of the same groups: the sums below take them off.
    for order_id, sold_on, region, leads, spend in db.session.execute(
            kept_sales(buyer, period, Sale.order_id, day, Sale.region)):
        spend = int(spend)  # PostgreSQL sums bigints as numeric
        totals = orders.get(order_id) or orders.setdefault(order_id, [0, 0, 0, 0, 0])
        totals[0] += leads
        totals[1] += spend
        daily = by_day.get(sold_on) or by_day.setdefault(sold_on, [0, 0, 0])
        daily[0] += leads
        daily[1] += spend
        mine = by_region.get(region) or by_region.setdefault(region, [0, 0])
        mine[0] += leads
        mine[1] += spend
    by_day = {str(d)[:10]: totals for d, totals in by_day.items()}
    out_day = day_of(SaleOutcome.sold_at, period)
    for order_id, sold_on, conversions, rated, revenue in db.session.execute(
            _outcomes(buyer, period, SaleOutcome.order_id, out_day)):
        totals = orders.setdefault(order_id, [0, 0, 0, 0, 0])
        totals[2] += int(conversions)
        totals[3] += int(revenue)
        totals[4] += rated
        by_day.setdefault(str(sold_on)[:10], [0, 0, 0])[2] += int(conversions)
    per_order = {order_id: Kpis(leads, int(spend), conversions, revenue, rated)
                 for order_id, (leads, spend, conversions, revenue, rated) in orders.items()}
    first = min((date.fromisoformat(d) for d in by_day), default=None)
    days = [{"day": d.isoformat(), "leads": by_day.get(d.isoformat(), [0])[0],
             "spend": by_day.get(d.isoformat(), [0, 0])[1],
             "conversions": by_day.get(d.isoformat(), [0, 0, 0])[2]}
            for d in period.days(first)]
    top = sorted(((region, totals) for region, totals in by_region.items() if totals[0]),
                 key=lambda item: (-item[1][0], item[0] or ""))[:region_limit]
    return per_order, days, top


def market_prices(period: DateRange, market_days: int = 30) -> dict[Optional[str], tuple[int, int]]:
    """region → (sales, sum of prices) over the whole market (all buyers, anonymous),
    over the period's last `market_days` days at most: recent prices are the
    reference, and the scan stays bounded however long the period."""
    from app.services import memo

    end = period.end or datetime.now(timezone.utc).date()
    start = end - timedelta(days=market_days - 1)
    recent = DateRange(max(start, period.start) if period.start else start, end)
    return memo.cached(("market_prices", recent), lambda: {
        region: (count, int(total_)) for region, count, total_ in db.session.execute(
            sa.select(Sale.region, sa.func.count(), sa.func.sum(Sale.price))
            .where(*recent.conditions(Sale.created_at)).group_by(Sale.region))})


def orders_for_page(buyer: User, per_order: dict[int, Kpis], limit: int = 50) -> list[Order]:
    """The orders to compare: those with sales in the period, and the open ones."""
    from app.models import ACTIVE_ORDER_STATUSES

    return db.session.scalars(
        sa.select(Order).where(Order.buyer_id == buyer.id, sa.or_(
            Order.id.in_(list(per_order)), Order.status.in_(ACTIVE_ORDER_STATUSES)))
        .order_by(Order.id.desc()).limit(limit)).all()


def chart_data(orders: list[Order], per_order: dict[int, Kpis], days: list[dict],
               regions: list[dict], language: str = "en") -> dict:
    """What static/js/kpi-charts.js draws (money in minor units, rates as fractions,
    regions by name in the reader's language)."""
    from app.services.regions import region_name

    def label(order: Order) -> str:
        return f"#{order.id} {order.name}".strip()

    def place(region: str) -> str:
        return "Region not given" if region == "unknown" else region_name(region, language)

    def number(value):
        return None if value is None else float(value)

    shown = [o for o in orders if o.id in per_order]
    return {
        "days": [d["day"] for d in days],
        "leads": [d["leads"] for d in days],
        "spend": [d["spend"] for d in days],
        "orders": [label(o) for o in shown],
        "cpl": [number(per_order[o.id].cpl) for o in shown],
        "conversion_rate": [number(per_order[o.id].conversion_rate) for o in shown],
        "regions": [place(r["region"]) for r in regions],
        "your_price": [number(r["your_average"]) for r in regions],
        "market_price": [number(r["market_average"]) for r in regions],
    }


def kpi_table_csv(orders: list[Order], per_order: dict[int, Kpis], currency: str):
    """The comparison table as CSV (SPEC §5): money in major units with the currency
    in its own column, rates as fractions."""
    from app.services.exports import NUMBER, csv_lines, major_units, major_units_of_average

    def row(order_id, name, k: Kpis):
        return [order_id, name, k.leads, major_units(k.spend, currency),
                major_units_of_average(k.cpl, currency), k.conversions, k.conversion_rate,
                major_units_of_average(k.cpa, currency), major_units(k.revenue, currency), k.roi,
                currency]

    header = ["order_id", "order", "leads", "spend", "cpl", "conversions", "conversion_rate",
              "cpa", "revenue", "roi", "currency"]
    rows = [row(o.id, o.name, per_order.get(o.id, Kpis())) for o in orders]
    rows.append(["", "All orders", *row("", "", total(per_order))[2:]])
    # Every column but the order's name and the currency is a number we computed: a
    # negative ROI must stay a number, not be quoted like a formula.
    kinds = {name: NUMBER for name in header if name not in ("order", "currency")}
    return csv_lines(header, rows, kinds)

