"""Queries (read only): a buyer's order, and the supply estimate an order builder shows."""
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from types import SimpleNamespace
from typing import Optional
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from app.errors import NotFound
from app.extensions import db
from app.core import bounds
from app.market import rules
from app.market import schedule as order_schedule
from app.market.filters import Filters
from app.models import (
    BuyerSuppression, Lead, NamedBuyer, Order, Return, ReturnStatus, Sale, User,
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
    conditions = [Lead.offered(), rules.LEAD_CAP.test(Lead, rules.Ctx()),
                  *filters.sql_conditions(now)]
    if buyer is not None:
        conditions.append(rules.not_bought_by(buyer.id, Lead.id, Sale))
        conditions.append(~rules.listed_by(buyer.id, Lead.email_hash, Lead.phone_hash,
                                           BuyerSuppression))
        conditions.append(rules.consent_covers(buyer.id, Lead.consent_scope_id, NamedBuyer))
    if price is not None:
        conditions.append(rules.FLOOR.sql(None, Lead, rules.Ctx(price=price)))
    count = _count(filters, conditions)
    since = now - timedelta(days=30)
    # A refunded sale (an accepted return, a pulled batch) was undone: not a price paid.
    refunded = sa.exists().where(Return.sale_id == Sale.id,
                                 Return.status == ReturnStatus.ACCEPTED)
    prices = sorted(db.session.scalars(
        sa.select(Sale.price).join(Lead, Sale.lead_id == Lead.id)
        .where(Sale.created_at >= since, ~refunded, *filters.sql_conditions(now))
        .order_by(Sale.id.desc()).limit(1000)))
    clearing = {"count": len(prices)}
    if prices:
        clearing |= {"min": prices[0], "median": prices[len(prices) // 2], "max": prices[-1]}
    windows = order_schedule.parse(schedule, min_price=0, max_price=bounds.AMOUNT.maximum)
    if not windows:
        return Estimate(count, clearing)
    zone = order_schedule.zone(timezone)
    order = SimpleNamespace(price=price or 0, schedule=order_schedule.to_json(windows),
                            timezone=timezone)
    arrived = [at.astimezone(zone) for at, interests in db.session.execute(
        sa.select(Lead.created_at, Lead.interests)
        .where(Lead.created_at >= now - ARRIVALS_WINDOW, *filters.sql_conditions(now))
        .limit(_COUNT_LIMIT)) if _interested(filters, interests)]
    inside = sum(1 for at in arrived
                 if any(w.covers(order_schedule.minute_of_week(at)) for w in windows))
    return Estimate(count, clearing, scheduled=True, price_now=rules.price_in_effect(order, now),
                    next_opening=order_schedule.next_opening(windows, now.astimezone(zone)),
                    arrived_week=len(arrived), arrived_in_windows=inside)


def _interested(filters: Filters, interests) -> bool:
    return not filters.interests or bool(set(filters.interests).intersection(interests or ()))


def _count(filters: Filters, conditions: list) -> int:
    if filters.interests:
        return sum(1 for interests in db.session.scalars(
            sa.select(Lead.interests).where(*conditions).limit(_COUNT_LIMIT))
            if _interested(filters, interests))
    return db.session.scalar(sa.select(sa.func.count()).select_from(Lead).where(*conditions))
