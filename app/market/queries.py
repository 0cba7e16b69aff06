"""Queries (read only): a buyer's order, and the supply estimate an order builder shows."""
from dataclasses import dataclass
from datetime import timedelta
from typing import Optional

import sqlalchemy as sa

from app.errors import NotFound
from app.extensions import db
from app.market import rules
from app.market.filters import Filters
from app.models import Lead, Order, Return, ReturnStatus, Sale, User
from app.models.types import utcnow


def order_for(user: User, order_id: int, *, lock: bool = False) -> Order:
    query = sa.select(Order).where(Order.id == order_id)
    if lock:
        query = query.with_for_update()
    order = db.session.scalar(query)
    if order is None or not (user.is_admin or order.buyer_id == user.id):
        raise NotFound(f"No order {order_id} among yours.")
    return order


@dataclass(frozen=True)
class Estimate:
    matching: int
    clearing_prices: dict  # {"count", "min", "median", "max"} of recent similar sales


def estimate(filters: Filters, price: Optional[int] = None,
             buyer: Optional[User] = None) -> Estimate:
    """What an order with these filters would find now, and what similar orders paid.
    For a buyer, leads they already bought do not count: no order sells them twice."""
    now = utcnow()
    conditions = [Lead.offered(), rules.LEAD_CAP.test(Lead, rules.Ctx()),
                  *filters.sql_conditions(now)]
    if buyer is not None:
        conditions.append(rules.not_bought_by(buyer.id, Lead.id, Sale))
    if price is not None:
        conditions.append(rules.FLOOR.sql(None, Lead, rules.Ctx(price=price)))
    if filters.interests:
        count = sum(1 for interests in db.session.scalars(
            sa.select(Lead.interests).where(*conditions).limit(200_000))
            if set(filters.interests).intersection(interests or ()))
    else:
        count = db.session.scalar(sa.select(sa.func.count()).select_from(Lead).where(*conditions))
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
    return Estimate(count, clearing)
