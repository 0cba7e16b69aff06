"""Queries (read only): a buyer's order, and the supply estimate an order builder shows."""
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from types import SimpleNamespace
from typing import Optional
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.sql import visitors

from app.errors import NotFound
from app.extensions import db
from app.core import bounds
from app.market import rules
from app.market import schedule as order_schedule
from app.market.filters import Filters
from app.models import (
    BuyerSuppression, Lead, NamedBuyer, Order, Sale, User, refunded,
)
from app.models.types import utcnow


@cache
def _order_by_id() -> sa.Select:
    # Built once: every order page and action reads its order.
    return sa.select(Order).where(Order.id == sa.bindparam("order_id"))


def order_for(user: User, order_id: int, *, lock: bool = False) -> Order:
    query = _order_by_id()
    if lock:
        query = query.with_for_update()
    order = db.session.scalar(query, {"order_id": order_id})
    if order is None or not (user.is_admin or order.buyer_id == user.id):
        raise NotFound(f"No order {order_id} among yours.")
    return order


@dataclass(frozen=True)
class OrderNow:
    """What an order's page and API say about it now (§11: each cap's use)."""

    price_now: Optional[int]  # what a lead arriving now costs; None: no window open
    next_opening: Optional[datetime]  # local time the next window opens, when none is
    cap_use: list[dict]  # rules.cap_use


def order_now(order: Order, now: Optional[datetime] = None) -> OrderNow:
    now = now or utcnow()
    price = rules.price_in_effect(order, now)
    windows = order_schedule.stored(order.schedule)
    opening = (order_schedule.next_opening(windows, now.astimezone(ZoneInfo(order.timezone)))
               if windows and price is None else None)
    return OrderNow(price, opening, rules.cap_use(order, now))


@dataclass(frozen=True)
class Estimate:
    matching: int
    clearing_prices: dict  # {"count", "min", "median", "max"} of recent similar sales
    # With a price that none matches at: (how many match above it, the lowest floor)
    priced_out: tuple[int, Optional[int]] = (0, None)
    # With a schedule: what a lead arriving now would cost (None: outside every window),
    # when the next window opens (local time), and of the matching leads that arrived
    # in the last week, how many arrived inside the windows.
    scheduled: bool = False
    price_now: Optional[int] = None
    next_opening: Optional[datetime] = None
    arrived_week: int = 0
    arrived_in_windows: int = 0


ARRIVALS_WINDOW = timedelta(days=7)
_COUNT_LIMIT = 200_000  # leads counted one by one (interests, arrival times) at most


def estimate(filters: Filters, price: Optional[int] = None, buyer: Optional[User] = None,
             schedule: Optional[list] = None, timezone: str = "UTC") -> Estimate:
    """What an order with these filters would find now, and what similar orders paid.
    For a buyer, leads they already bought, whose person they listed or whose form
    named other buyers (§14) do not count: no order sells them those.
    With a schedule (as the buyer sends it), whether a lead arriving now would be
    bought and at what price, and how much of last week's matching supply arrived
    inside its windows."""
    now = utcnow()
    interests_statement, statement = _statements(filters, now, buyer is not None,
                                                 price is not None)
    params = {"buyer_id": buyer.id if buyer is not None else None, "price": price,
              "since": now - timedelta(days=30)}
    count, prices = 0, []
    if interests_statement is not None:
        count = sum(1 for interests in db.session.scalars(interests_statement, params)
                    if _interested(filters, interests))
    for matching, paid in db.session.execute(statement, params):
        if matching is None:
            prices = sorted(map(int, paid.split(","))) if paid else []
        else:
            count = matching
    clearing = {"count": len(prices)}
    if prices:
        clearing |= {"min": prices[0], "median": prices[len(prices) // 2], "max": prices[-1]}
    # None at this price: whether sellers' floors are why (asked only then).
    priced_out = _priced_out(filters, now, params) if price is not None and not count else (0, None)
    windows = order_schedule.parse(schedule, min_price=0, max_price=bounds.AMOUNT.maximum)
    if not windows:
        return Estimate(count, clearing, priced_out=priced_out)
    zone = order_schedule.zone(timezone)
    order = SimpleNamespace(price=price or 0, schedule=order_schedule.to_json(windows),
                            timezone=timezone)
    arrived = [at.astimezone(zone) for at, interests in db.session.execute(
        sa.select(Lead.created_at, Lead.interests)
        .where(Lead.created_at >= now - ARRIVALS_WINDOW, *filters.sql_conditions(now))
        .limit(_COUNT_LIMIT)) if _interested(filters, interests)]
    inside = sum(1 for at in arrived
                 if any(w.covers(order_schedule.minute_of_week(at)) for w in windows))
    return Estimate(count, clearing, priced_out=priced_out, scheduled=True,
                    price_now=rules.price_in_effect(order, now),
                    next_opening=order_schedule.next_opening(windows, now.astimezone(zone)),
                    arrived_week=len(arrived), arrived_in_windows=inside)


def _interested(filters: Filters, interests) -> bool:
    return not filters.interests or bool(set(filters.interests).intersection(interests or ()))


# The estimate's statements per filter set (the count and the prices in one round
# trip, unless interests are counted one by one), buyer or not, price or not (the buyer,
# the price and the 30-day window are bound when they run): building and keying a
# statement costs several times what running it does on an indexed table, and the
# live panel and API clients ask the same filters again and again. Filters whose SQL
# reads the clock (freshness, score) are built for each estimate.
MAX_STATEMENTS = 512  # per process; the least recently used goes first
_statements_kept: OrderedDict = OrderedDict()
_statements_lock = threading.Lock()


def _values_written(statement):
    """The statement with its fixed values (the filters', the rules' constants) written
    into its SQL; only the buyer, the price and the 30-day window stay parameters.
    PostgreSQL plans it for those values, once per connection (psycopg prepares a
    statement run five times): with the values as parameters, the generic plan it
    kept cost more than twice the CPU, and a plan made for each run more still (the
    demo's estimate of bench/web.py: 0.32 ms of the server's CPU instead of 0.78).
    The filters' values are validated codes and numbers, written by SQLAlchemy's own
    literal rendering."""
    def write(bind):
        if bind.value is not None:
            bind.literal_execute = True
    return visitors.cloned_traverse(statement, {}, {"bindparam": write})


def _offered_to(filters: Filters, now: datetime, for_buyer: bool) -> list:
    """The conditions of a lead an order with these filters may buy, at any price (for
    a buyer: the bindparam buyer_id)."""
    buyer_id = sa.bindparam("buyer_id", type_=sa.Integer)
    conditions = [Lead.offered(), rules.LEAD_CAP.test(Lead, rules.Ctx()),
                  *filters.sql_conditions(now)]
    if for_buyer:
        conditions.append(rules.not_bought_by(buyer_id, Lead.id, Sale))
        conditions.append(~rules.listed_by(buyer_id, Lead.email_hash, Lead.phone_hash,
                                           BuyerSuppression))
        conditions.append(rules.consent_covers(buyer_id, Lead.consent_scope_id, NamedBuyer))
    return conditions


def _priced_out(filters: Filters, now: datetime, params: dict) -> tuple[int, Optional[int]]:
    """Leads that match but whose sellers' floor is above the price: how many, and the
    lowest of those floors (what the buyer would have to pay to reach one)."""
    conditions = [*_offered_to(filters, now, params["buyer_id"] is not None),
                  ~rules.FLOOR.sql(None, Lead, rules.Ctx(price=sa.bindparam("price")))]
    if filters.interests:  # a JSON list: counted one by one
        floors = [floor for interests, floor in db.session.execute(
            sa.select(Lead.interests, Lead.floor_price).where(*conditions).limit(_COUNT_LIMIT),
            params) if _interested(filters, interests)]
        return len(floors), min(floors, default=None)
    count, lowest = db.session.execute(
        sa.select(sa.func.count(), sa.func.min(Lead.floor_price)).where(*conditions),
        params).one()
    return count, lowest


def _statements(filters: Filters, now: datetime, for_buyer: bool, priced: bool) -> tuple:
    key = (filters, for_buyer, priced)
    if filters.timeless:
        with _statements_lock:
            kept = _statements_kept.get(key)
            if kept is not None:
                _statements_kept.move_to_end(key)
                return kept
    since = sa.bindparam("since")
    conditions = _offered_to(filters, now, for_buyer)
    if priced:
        conditions.append(rules.FLOOR.sql(None, Lead, rules.Ctx(price=sa.bindparam("price"))))
    # A refunded sale (an accepted return, a pulled batch) was undone: not a price paid.
    prices = (sa.select(Sale.price).join(Lead, Sale.lead_id == Lead.id)
              .where(Sale.created_at >= since, ~refunded(Sale.id), *filters.sql_conditions(now))
              .order_by(Sale.id.desc()).limit(1000)).subquery()
    # The prices as one comma-separated string: a thousand rows cost far more to read
    # one by one than one string costs to split.
    paid = sa.select(sa.null(), sa.func.aggregate_strings(sa.cast(prices.c.price, sa.String),
                                                          ","))
    if filters.interests:  # a JSON list: counted one by one
        statements = (sa.select(Lead.interests).where(*conditions).limit(_COUNT_LIMIT), paid)
    else:  # (count, NULL) then (NULL, prices) rows
        statements = (None, sa.union_all(
            sa.select(sa.func.count(), sa.null()).select_from(Lead).where(*conditions), paid))
    if filters.timeless:
        statements = tuple(None if s is None else _values_written(s) for s in statements)
        with _statements_lock:
            _statements_kept[key] = statements
            while len(_statements_kept) > MAX_STATEMENTS:
                _statements_kept.popitem(last=False)
    return statements
