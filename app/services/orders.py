"""Buyers' orders (SPEC §4): filters, validation, and the money each order holds.

Placing an order moves what it may spend (price × quantity, capped by the budget)
from the buyer's available balance to held; every fill spends from that hold; pausing
keeps it; cancelling, expiring or filling up releases the rest. The hold and the
order row change in the same database transaction, so `order.held` always equals the
order's share of the buyer's held account."""
import secrets
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping, Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pycountry
import sqlalchemy as sa
from flask import current_app

from app.core import bounds
from app.errors import Conflict, InsufficientFunds, NotFound, ValidationFailed
from app.extensions import db
from app.formatting import format_money
from app.models import AccountKind, Lead, Order, OrderStatus, Return, ReturnStatus, Sale, User
from app.models.types import utcnow
from app.services import ledger, scoring
from app.services.ingest.validate import MAX_AGE, MIN_AGE
from app.services.ledger import Posting

GENDERS = ("f", "m", "other", "unknown")
MARITAL_STATUSES = ("single", "partnered", "married", "divorced", "widowed", "unknown")
EMPLOYED = ("yes", "no", "unknown")
REQUIRE = ("phone", "email", "both")
MAX_QUANTITY = bounds.COUNT.maximum
MAX_DAYS = 3650  # freshness and lookback windows: ten years


def _fail(field_name: str, message: str):
    raise ValidationFailed(message, code="invalid_filter", details={"field": field_name})


def _choices(data: Mapping, name: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    values = data.get(name) or []
    if isinstance(values, str):
        values = [v for v in values.split(",") if v.strip()]
    cleaned = tuple(sorted({str(v).strip().lower() for v in values}))
    unknown = [v for v in cleaned if v not in allowed]
    if unknown:
        _fail(name, f"Unknown {name.replace('_', ' ')}: {', '.join(unknown)}; "
                    f"use {', '.join(allowed)}.")
    return cleaned


def _int_or_none(data: Mapping, name: str, low: int, high: int) -> Optional[int]:
    return bounds.IntRange(low, high).optional(data.get(name), name)


@dataclass(frozen=True)
class Filters:
    """Which leads an order wants. Empty means "any"."""

    age_min: Optional[int] = None
    age_max: Optional[int] = None
    genders: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    require: Optional[str] = None
    marital_statuses: tuple[str, ...] = ()
    employed: Optional[str] = None
    interests: tuple[str, ...] = ()
    max_age_days: Optional[int] = None
    exclusive_only: bool = False
    min_score: Optional[int] = None  # SPEC §6: 0–100 at the time of the sale
    min_temperature: Optional[str] = None  # hot, warm or cold (cold = any)

    def __post_init__(self):
        # The lowest lead score the order takes (0: any); the matcher asks per lead.
        object.__setattr__(self, "score_threshold",
                           scoring.threshold(self.min_score, self.min_temperature))

    @classmethod
    def parse(cls, data: Optional[Mapping[str, Any]]) -> "Filters":
        """Validated filters, or ValidationFailed naming the field and what is wrong."""
        data = data or {}
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            _fail(unknown[0], f"Unknown filter {unknown[0]!r}; filters are {', '.join(sorted(known))}.")
        age_min = _int_or_none(data, "age_min", MIN_AGE, MAX_AGE)
        age_max = _int_or_none(data, "age_max", MIN_AGE, MAX_AGE)
        if age_min is not None and age_max is not None and age_min > age_max:
            _fail("age_min", f"The minimum age ({age_min}) is above the maximum ({age_max}).")
        regions = data.get("regions") or []
        if isinstance(regions, str):
            regions = [r for r in regions.split(",") if r.strip()]
        regions = tuple(sorted({str(r).strip().upper() for r in regions}))
        for code in regions:
            if pycountry.subdivisions.get(code=code) is None:
                _fail("regions", f"“{code}” is not an ISO 3166-2 region code such as RU-MOW, "
                                 "ES-M or US-CA.")
        countries = data.get("countries") or []
        if isinstance(countries, str):
            countries = [c for c in countries.split(",") if c.strip()]
        countries = tuple(sorted({str(c).strip().upper() for c in countries}))
        for code in countries:
            if len(code) != 2 or pycountry.countries.get(alpha_2=code) is None:
                _fail("countries", f"“{code}” is not a two-letter country code.")
        require = (data.get("require") or None)
        if require is not None and require not in REQUIRE:
            _fail("require", f"require must be one of {', '.join(REQUIRE)}.")
        employed = data.get("employed")
        if isinstance(employed, bool):
            employed = "yes" if employed else "no"
        employed = (str(employed).strip().lower() or None) if employed not in (None, "") else None
        if employed is not None and employed not in EMPLOYED:
            _fail("employed", "employed must be yes, no or unknown.")
        interests = data.get("interests") or []
        if isinstance(interests, str):
            interests = interests.replace(";", ",").split(",")
        interests = tuple(sorted({str(i).strip().lower() for i in interests if str(i).strip()}))
        min_temperature = data.get("min_temperature")
        min_temperature = str(min_temperature).strip().lower() if min_temperature else None
        if min_temperature is not None and min_temperature not in scoring.TEMPERATURES:
            _fail("min_temperature", "min_temperature must be hot, warm or cold.")
        exclusive = data.get("exclusive_only", False)
        if isinstance(exclusive, str):
            exclusive = exclusive.strip().lower() in ("1", "true", "yes", "on", "y")
        return cls(
            age_min=age_min, age_max=age_max,
            genders=_choices(data, "genders", GENDERS), regions=regions, countries=countries,
            require=require, marital_statuses=_choices(data, "marital_statuses", MARITAL_STATUSES),
            employed=employed, interests=interests,
            max_age_days=_int_or_none(data, "max_age_days", 1, MAX_DAYS),
            exclusive_only=bool(exclusive),
            min_score=_int_or_none(data, "min_score", 0, scoring.MAX_SCORE) or None,
            min_temperature=None if min_temperature == "cold" else min_temperature,
        )

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def matches(self, lead, now: datetime) -> bool:
        """The in-memory test; `sql_conditions` states the same rules for the database."""
        if self.age_min is not None and (lead.age is None or lead.age < self.age_min):
            return False
        if self.age_max is not None and (lead.age is None or lead.age > self.age_max):
            return False
        if self.genders and lead.gender not in self.genders:
            return False
        if self.regions and lead.region not in self.regions:
            return False
        if self.countries and lead.country not in self.countries:
            return False
        if self.require in ("phone", "both") and not lead.has_phone:
            return False
        if self.require in ("email", "both") and not lead.has_email:
            return False
        if self.marital_statuses and lead.marital_status not in self.marital_statuses:
            return False
        if self.employed is not None and lead.employed != self.employed:
            return False
        if self.interests and not set(self.interests).intersection(lead.interests or ()):
            return False
        if self.max_age_days is not None and lead.consent_at < now - timedelta(days=self.max_age_days):
            return False
        if self.exclusive_only and lead.cap != 1:
            return False
        if self.score_threshold and (
                scoring.score_at(lead.score_points, lead.consent_at, now) < self.score_threshold):
            return False
        return True

    def sql_conditions(self, now: datetime) -> list:
        """Everything but interests (a JSON list), as SQL on the leads table."""
        conditions = []
        if self.age_min is not None:
            conditions.append(Lead.age >= self.age_min)
        if self.age_max is not None:
            conditions.append(Lead.age <= self.age_max)
        if self.genders:
            conditions.append(Lead.gender.in_(self.genders))
        if self.regions:
            conditions.append(Lead.region.in_(self.regions))
        if self.countries:
            conditions.append(Lead.country.in_(self.countries))
        if self.require in ("phone", "both"):
            conditions.append(Lead.has_phone.is_(True))
        if self.require in ("email", "both"):
            conditions.append(Lead.has_email.is_(True))
        if self.marital_statuses:
            conditions.append(Lead.marital_status.in_(self.marital_statuses))
        if self.employed is not None:
            conditions.append(Lead.employed == self.employed)
        if self.max_age_days is not None:
            conditions.append(Lead.consent_at >= now - timedelta(days=self.max_age_days))
        if self.exclusive_only:
            conditions.append(Lead.cap == 1)
        if self.score_threshold:
            conditions.append(scoring.min_score_condition(self.score_threshold, now))
        return conditions


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
    price = _int_or_none({"price": price}, "price", 0, ledger.MAX_AMOUNT)
    if price is None or price < minimum:
        _fail("price", f"The price per lead must be at least {format_money(minimum)} "
                       f"({minimum} minor units).")
    quantity = _int_or_none({"quantity": quantity}, "quantity", 1, MAX_QUANTITY)
    if quantity is None:
        _fail("quantity", "The quantity must be at least 1.")
    budget = _int_or_none({"budget": budget}, "budget", 1, ledger.MAX_AMOUNT)
    if budget is not None and budget < price:
        _fail("budget", "The budget is below the price of one lead.")
    if expires_at is not None:
        if expires_at.tzinfo is None:
            _fail("expires_at", "The expiry needs a time zone, e.g. 2026-12-31T23:00:00Z.")
        if expires_at <= utcnow():
            _fail("expires_at", "The expiry is in the past.")
    daily_cap = _int_or_none({"daily_cap": daily_cap}, "daily_cap", 1, MAX_QUANTITY)
    start = _int_or_none({"delivery_start_hour": delivery_start_hour}, "delivery_start_hour", 0, 23)
    end = _int_or_none({"delivery_end_hour": delivery_end_hour}, "delivery_end_hour", 1, 24)
    if (start is None) != (end is None):
        _fail("delivery_start_hour", "Give both delivery hours (start and end) or neither.")
    try:
        ZoneInfo(timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        _fail("timezone", f"Unknown time zone {timezone!r}; use a name like Europe/Madrid.")
    lookback = _int_or_none({"lookback_days": lookback_days}, "lookback_days", 0, MAX_DAYS)
    if webhook_url:
        webhook_url = webhook_url.strip()
        if not webhook_url.startswith(("https://", "http://")) or len(webhook_url) > 2000:
            _fail("webhook_url", "The webhook URL must be an http(s) address.")
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


def order_for(user: User, order_id: int, *, lock: bool = False) -> Order:
    query = sa.select(Order).where(Order.id == order_id)
    if lock:
        query = query.with_for_update()
    order = db.session.scalar(query)
    if order is None or not (user.is_admin or order.buyer_id == user.id):
        raise NotFound(f"No order {order_id} among yours.")
    return order


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
    if terms.quantity < order.filled:
        _fail("quantity", f"The order already has {order.filled} leads; the quantity cannot "
                          "go below that.")
    if order.fill_day != utcnow().strftime("%Y-%m-%d"):
        order.day_filled = 0  # yesterday's count binds no new cap
    if terms.daily_cap is not None and terms.daily_cap < order.day_filled:
        _fail("daily_cap", f"The order has received {order.day_filled} leads today; the daily "
                           "cap cannot go below that today (pause the order to stop deliveries).")
    order.price, order.quantity, order.daily_cap = terms.price, terms.quantity, terms.daily_cap
    remaining_budget = None if order.budget is None else order.budget - order.spent
    wanted = max_spend(order.price, order.remaining, remaining_budget)
    _move_hold(order, wanted - order.held, "order_hold_change")
    if order.remaining == 0:
        close_order(order, OrderStatus.FILLED)
    db.session.flush()
    return order


def in_delivery_hours(order: Order, now: datetime) -> bool:
    if order.delivery_start_hour is None:
        return True
    hour = now.astimezone(ZoneInfo(order.timezone)).hour
    start, end = order.delivery_start_hour, order.delivery_end_hour
    return start <= hour < end if start < end else (hour >= start or hour < end)


def expire_due_orders(now: Optional[datetime] = None) -> int:
    """Close orders past their expiry (a periodic job: it commits each one)."""
    now = now or utcnow()
    due = db.session.scalars(sa.select(Order.id).where(
        Order.status.in_((OrderStatus.OPEN, OrderStatus.PAUSED)), Order.expires_at.is_not(None),
        Order.expires_at <= now)).all()
    for order_id in due:  # one at a time: an order, then its buyer's accounts
        order = db.session.scalar(sa.select(Order).where(
            Order.id == order_id, Order.status.in_((OrderStatus.OPEN, OrderStatus.PAUSED)))
            .with_for_update())
        if order is not None:
            close_order(order, OrderStatus.EXPIRED)
        db.session.commit()
    return len(due)


@dataclass(frozen=True)
class Estimate:
    matching: int
    clearing_prices: dict  # {"count", "min", "median", "max"} of recent similar sales


def estimate(filters: Filters, price: Optional[int] = None,
             buyer: Optional[User] = None) -> Estimate:
    """What an order with these filters would find now, and what similar orders paid.
    For a buyer, leads they already bought do not count: no order sells them twice."""
    now = utcnow()
    conditions = [Lead.offered(), Lead.sold_count < Lead.cap,
                  *filters.sql_conditions(now)]
    if buyer is not None:
        conditions.append(~sa.exists().where(Sale.lead_id == Lead.id, Sale.buyer_id == buyer.id))
    if price is not None:
        conditions.append(Lead.floor_price <= price)
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
