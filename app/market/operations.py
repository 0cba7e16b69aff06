"""Operations on buyers' orders (SPEC §4, §5): place, change, pause, cancel, close.
They change state and flush; the caller commits. Placing, changing and resuming an
order record an event, so it is filled once the caller's transaction commits.

Placing an order moves what it may spend (price × quantity, capped by the budget)
from the buyer's available balance to held; every fill spends from that hold; pausing
keeps it; cancelling, expiring or filling up releases the rest. The hold and the
order row change in the same database transaction, so `order.held` always equals the
order's share of the buyer's held account."""
import secrets
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any, Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import current_app

from app.core import events
from app.errors import Conflict, InsufficientFunds, ValidationFailed
from app.extensions import db
from app.formatting import format_money
from app.market import rules
from app.market.filters import MAX_DAYS, MAX_QUANTITY, Filters, refuse, whole_or_none
from app.market.queries import order_for
from app.models import AccountKind, Order, OrderStatus, User
from app.models.types import utcnow
from app.services import ledger
from app.services.ledger import Posting


@dataclass(frozen=True)
class OrderTerms:
    price: int
    quantity: int
    budget: Optional[int] = None
    expires_at: Optional[datetime] = None
    daily_cap: Optional[int] = None
    delivery_start_hour: Optional[int] = None
    delivery_end_hour: Optional[int] = None
    timezone: str = "UTC"
    lookback_days: int = 30
    name: str = ""
    webhook_url: Optional[str] = None


def check_terms(price, quantity, *, budget=None, expires_at=None, daily_cap=None,
                delivery_start_hour=None, delivery_end_hour=None, timezone="UTC",
                lookback_days=30, name="", webhook_url=None) -> OrderTerms:
    minimum = current_app.config["MIN_PRICE"]
    price = whole_or_none({"price": price}, "price", 0, ledger.MAX_AMOUNT)
    if price is None or price < minimum:
        refuse("price", f"The price per lead must be at least {format_money(minimum)} "
                       f"({minimum} minor units).")
    quantity = whole_or_none({"quantity": quantity}, "quantity", 1, MAX_QUANTITY)
    if quantity is None:
        refuse("quantity", "The quantity must be at least 1.")
    budget = whole_or_none({"budget": budget}, "budget", 1, ledger.MAX_AMOUNT)
    if budget is not None and budget < price:
        refuse("budget", "The budget is below the price of one lead.")
    if expires_at is not None:
        if expires_at.tzinfo is None:
            refuse("expires_at", "The expiry needs a time zone, e.g. 2026-12-31T23:00:00Z.")
        if expires_at <= utcnow():
            refuse("expires_at", "The expiry is in the past.")
    daily_cap = whole_or_none({"daily_cap": daily_cap}, "daily_cap", 1, MAX_QUANTITY)
    start = whole_or_none({"delivery_start_hour": delivery_start_hour}, "delivery_start_hour", 0, 23)
    end = whole_or_none({"delivery_end_hour": delivery_end_hour}, "delivery_end_hour", 1, 24)
    if (start is None) != (end is None):
        refuse("delivery_start_hour", "Give both delivery hours (start and end) or neither.")
    try:
        ZoneInfo(timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        refuse("timezone", f"Unknown time zone {timezone!r}; use a name like Europe/Madrid.")
    lookback = whole_or_none({"lookback_days": lookback_days}, "lookback_days", 0, MAX_DAYS)
    if webhook_url:
        webhook_url = webhook_url.strip()
        if not webhook_url.startswith(("https://", "http://")) or len(webhook_url) > 2000:
            refuse("webhook_url", "The webhook URL must be an http(s) address.")
    return OrderTerms(price, quantity, budget, expires_at, daily_cap, start, end,
                      timezone or "UTC", 30 if lookback is None else lookback,
                      (name or "").strip()[:120], webhook_url or None)


def max_spend(price: int, quantity: int, budget: Optional[int]) -> int:
    total = price * quantity
    return total if budget is None else min(total, budget)


def _move_hold(order: Order, amount: int, kind: str) -> None:
    """Hold more (amount > 0) or release (amount < 0) for this order."""
    if amount == 0:
        return
    buyer = order.buyer
    available = ledger.account(AccountKind.BUYER_AVAILABLE, buyer)
    held = ledger.account(AccountKind.BUYER_HELD, buyer)
    try:
        ledger.post(kind, [Posting(available, -amount), Posting(held, amount)],
                    memo=f"Order #{order.id}")
    except InsufficientFunds:
        balance = ledger.balance_for(buyer)
        raise InsufficientFunds(
            f"This order may spend {format_money(amount)} more than is held for it, and your "
            f"available balance is {format_money(balance.available)}. Add funds, or lower the "
            "price, quantity or budget.",
            details={"needed": amount, "available": balance.available})
    order.held += amount


def place_order(buyer: User, filters: Filters, terms: OrderTerms) -> tuple[Order, Optional[str]]:
    """Create an order and hold what it may spend; returns it and, if it has a webhook,
    the webhook secret (shown to the buyer once)."""
    if not buyer.is_buyer:
        raise ValidationFailed("Only buyers place orders.", code="not_a_buyer")
    order = Order(
        buyer_id=buyer.id, buyer=buyer, name=terms.name, status=OrderStatus.OPEN,
        price=terms.price, quantity=terms.quantity, budget=terms.budget, filled=0, spent=0,
        held=0, filters=filters.to_dict(), expires_at=terms.expires_at,
        daily_cap=terms.daily_cap, day_filled=0, delivery_start_hour=terms.delivery_start_hour,
        delivery_end_hour=terms.delivery_end_hour, timezone=terms.timezone,
        lookback_days=terms.lookback_days, webhook_url=terms.webhook_url)
    db.session.add(order)
    db.session.flush()
    secret = set_webhook(order, terms.webhook_url) if terms.webhook_url else None
    _move_hold(order, max_spend(terms.price, terms.quantity, terms.budget), "order_hold")
    db.session.flush()
    events.record(events.OrderOpened(order.id))
    return order, secret


def set_webhook(order: Order, url: Optional[str]) -> Optional[str]:
    """Point the order's deliveries at `url` with a new secret (returned once)."""
    from app.services.crypto import current_vault

    if not url:
        order.webhook_url, order.webhook_secret_enc = None, None
        return None
    secret = "whsec_" + secrets.token_urlsafe(24)
    order.webhook_url = check_terms(order.price, order.quantity, webhook_url=url).webhook_url
    order.webhook_secret_enc = current_vault().encrypt(secret)
    return secret


def close_order(order: Order, status: OrderStatus) -> None:
    """End an order (cancelled, expired or filled) and release what it still holds."""
    order.status = status
    order.closed_at = utcnow()
    _move_hold(order, -order.held, "order_release")


def cancel_order(user: User, order_id: int) -> Order:
    order = order_for(user, order_id, lock=True)
    if not order.is_active:
        raise Conflict(f"The order is already {order.status.value}.", code="order_closed")
    close_order(order, OrderStatus.CANCELLED)
    db.session.flush()
    return order


def set_paused(user: User, order_id: int, paused: bool) -> Order:
    order = order_for(user, order_id, lock=True)
    if not order.is_active:
        raise Conflict(f"The order is already {order.status.value}.", code="order_closed")
    order.status = OrderStatus.PAUSED if paused else OrderStatus.OPEN
    db.session.flush()
    if not paused:
        events.record(events.OrderResumed(order.id))
    return order


def change_terms(user: User, order_id: int, *, price: Optional[int] = None,
                 quantity: Optional[int] = None, daily_cap: Any = ...) -> Order:
    """Edit price, quantity or daily cap; the hold follows what the order may now spend."""
    order = order_for(user, order_id, lock=True)
    if not order.is_active:
        raise Conflict(f"The order is already {order.status.value}.", code="order_closed")
    new_price = order.price if price is None else price
    new_quantity = order.quantity if quantity is None else quantity
    new_cap = order.daily_cap if daily_cap is ... else daily_cap
    terms = check_terms(new_price, new_quantity, budget=order.budget, daily_cap=new_cap)
    # The new terms are checked against what the order already received, by the
    # same limits that guard a fill (no more leads now: n=0).
    now = rules.Ctx(today=rules.day_of(utcnow()), n=0)
    changed = SimpleNamespace(filled=order.filled, quantity=terms.quantity,
                              fill_day=order.fill_day, day_filled=order.day_filled,
                              daily_cap=terms.daily_cap)
    if not rules.QUANTITY.test(changed, now):
        refuse("quantity", f"The order already has {order.filled} leads; the quantity cannot "
                           "go below that.")
    today = rules.DAILY_CAP.used(order, now)
    if not rules.DAILY_CAP.test(changed, now):
        refuse("daily_cap", f"The order has received {today} leads today; the daily cap "
                            "cannot go below that today (pause the order to stop deliveries).")
    order.day_filled, order.fill_day = today, now.today  # yesterday's count binds nothing
    order.price, order.quantity, order.daily_cap = terms.price, terms.quantity, terms.daily_cap
    remaining_budget = None if order.budget is None else order.budget - order.spent
    wanted = max_spend(order.price, order.remaining, remaining_budget)
    _move_hold(order, wanted - order.held, "order_hold_change")
    if order.remaining == 0:
        close_order(order, OrderStatus.FILLED)
    db.session.flush()
    if order.status is OrderStatus.OPEN:
        events.record(events.OrderChanged(order.id))
    return order
