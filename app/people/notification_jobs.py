"""Notifications, jobs (own their commits): the notices the matcher leaves to after
its commit (events.OrdersFilled, events.OrdersCapped), so that storing sales pays
nothing for them. A notice about the same order (and cap period) is not repeated
while unread, so a job run twice tells once."""
from datetime import datetime
from typing import Iterable, Optional

import sqlalchemy as sa

from app.extensions import db
from app.market import rules
from app.models import ACTIVE_ORDER_STATUSES, Order, OrderStatus
from app.models.types import utcnow
from app.people import notifications


def orders_filled(order_ids: Iterable[int]) -> int:
    """Tell the buyers of these orders, closed full or out of budget."""
    told = 0
    for order_id in order_ids:
        status = db.session.scalar(sa.select(Order.status).where(Order.id == order_id))
        if status is OrderStatus.FILLED:
            notifications.order_filled(order_id)
            told += 1
    db.session.commit()
    return told


def caps_used(order_ids: Iterable[int], now: Optional[datetime] = None) -> None:
    """Tell the buyers of these open orders which caps of the current period they used up."""
    now = now or utcnow()
    for order in db.session.scalars(sa.select(Order).where(
            Order.id.in_(list(order_ids)), Order.status.in_(ACTIVE_ORDER_STATUSES))):
        if order.has_caps:
            notifications.caps_reached(order, rules.cap_use(order, now))
    db.session.commit()
