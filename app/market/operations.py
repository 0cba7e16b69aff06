"""Operations on buyers' orders (SPEC §4, §5): place, change, pause, cancel, close.
They change state and flush; the caller commits. Placing, changing and resuming an
order record an event, so it is filled once the caller's transaction commits; what
the buyer's people do to an order is in the audit log (app.services.audit).

Placing an order moves what it may spend (quantity × its highest price -- a schedule's
window may charge more than the order's own price -- capped by the budget)
from the buyer's available balance to held; every fill spends from that hold; pausing
keeps it; cancelling, expiring or filling up releases the rest. The hold and the
order row change in the same database transaction, so `order.held` always equals the
order's share of the buyer's held account."""
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import Any, Optional

from flask import current_app

from app.core import events
from app.errors import Conflict, InsufficientFunds, Refusals, ValidationFailed
from app.extensions import db
from app.formatting import format_money
from app.market import rules
from app.market import schedule as order_schedule
from app.market.filters import MAX_DAYS, MAX_QUANTITY, Filters, refuse, whole_or_none
from app.market.queries import order_for
from app.models import AccountKind, Order, OrderStatus, User
from app.models.types import utcnow
from app.services import accounts, audit, ledger
from app.services.ledger import Posting


@dataclass(frozen=True)
class OrderTerms:
    price: int
    quantity: int
    budget: Optional[int] = None
    expires_at: Optional[datetime] = None
    caps: dict = field(default_factory=dict)  # period -> leads
    spend_caps: dict = field(default_factory=dict)  # period -> minor units
    schedule: Optional[list] = None  # as stored: app.market.schedule.to_json
    timezone: str = "UTC"
    lookback_days: int = 30
    name: str = ""
    webhook_url: Optional[str] = None
    calling_hours: Optional[tuple[int, int]] = None  # §14 quiet hours (minutes), or None
    bid_url: Optional[str] = None  # live bids (SPEC §4 rule 9), up to max_bid
    max_bid: Optional[int] = None


_PER = {"hour": "hourly", "day": "daily", "week": "weekly", "month": "monthly"}


def _caps(raw: Any, name: str, high: int) -> dict:
    """`{hour?, day?, week?, month?}` as {period: cap}; a null cap is no cap."""
    if raw is None:
        return {}
    if not isinstance(raw, dict) or set(raw) - set(rules.PERIODS):
        refuse(name, f"{name} is an object with some of {', '.join(rules.PERIODS)}.")
    caps = {}
    for period in rules.PERIODS:
        cap = whole_or_none(raw, period, 1, high) if raw.get(period) is not None else None
        if cap is not None:
            caps[period] = cap
    return caps


def check_terms(price, quantity, *, budget=None, expires_at=None, caps=None, spend_caps=None,
                schedule=None, timezone="UTC", lookback_days=30, name="",
                webhook_url=None, calling_hours=None, bid_url=None, max_bid=None) -> OrderTerms:
    """The order's terms checked; a refusal lists every problem found, not only the first."""
    found = Refusals("invalid_filter")
    minimum = current_app.config["MIN_PRICE"]
    price = found.check(whole_or_none, {"price": price}, "price", 0, ledger.MAX_AMOUNT)
    if (price is None or price < minimum) and not found.found_for("price"):
        found.add("price", f"The price per lead must be at least {format_money(minimum)}.")
    if found.found_for("price"):
        price = None
    quantity = found.check(whole_or_none, {"quantity": quantity}, "quantity", 1, MAX_QUANTITY)
    if quantity is None and not found.found_for("quantity"):
        found.add("quantity", "The quantity must be at least 1.")
    windows = found.check(order_schedule.parse, schedule, min_price=minimum,
                          max_price=ledger.MAX_AMOUNT)
    stored = order_schedule.to_json(windows or ())
    # The cheapest lead this order may buy, for the budget and caps to be measured by.
    least = None if price is None else rules.price_range(
        SimpleNamespace(price=price, schedule=stored))[0]
    budget = found.check(whole_or_none, {"budget": budget}, "budget", 1, ledger.MAX_AMOUNT)
    if budget is not None and least is not None and budget < least:
        found.add("budget", "The budget is below the price of one lead.")
    if expires_at is not None:
        if expires_at.tzinfo is None:
            found.add("expires_at", "The expiry needs a time zone, e.g. 2026-12-31T23:00:00Z.")
        elif expires_at <= utcnow():
            found.add("expires_at", "The expiry is in the past.")
    lead_caps = found.check(_caps, caps, "caps", MAX_QUANTITY) or {}
    money_caps = found.check(_caps, spend_caps, "spend_caps", ledger.MAX_AMOUNT) or {}
    for period, cap in money_caps.items():
        if least is not None and cap < least:
            found.add(f"spend_caps.{period}", f"The {_PER[period]} spend cap is below the "
                                              "price of one lead.")
    found.check(order_schedule.zone, timezone)
    lookback = found.check(whole_or_none, {"lookback_days": lookback_days}, "lookback_days", 0,
                           MAX_DAYS)
    if webhook_url:
        webhook_url = webhook_url.strip()
        if not webhook_url.startswith(("https://", "http://")) or len(webhook_url) > 2000:
            found.add("webhook_url", "The webhook URL must be an http(s) address.")
    calling = found.check(order_schedule.calling_hours, calling_hours,
                          rules.DEFAULT_CALLING_HOURS)
    bid_url = (bid_url or "").strip() or None
    if bid_url is None:
        max_bid = None
    else:
        if not bid_url.startswith(("https://", "http://")) or len(bid_url) > 2000:
            found.add("bid_url", "The bid URL must be an http(s) address.")
        max_bid = found.check(whole_or_none, {"max_bid": max_bid}, "max_bid", 0,
                              ledger.MAX_AMOUNT)
        if (max_bid is None or max_bid < minimum) and not found.found_for("max_bid"):
            found.add("max_bid", "An order with a bid URL needs the most it bids, at least "
                                 f"{format_money(minimum)}.")
    found.raise_any()
    return OrderTerms(price, quantity, budget, expires_at, lead_caps, money_caps, stored,
                      timezone or "UTC", 30 if lookback is None else lookback,
                      (name or "").strip()[:120], webhook_url or None, calling, bid_url, max_bid)


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
        shortfall = amount - balance.available
        # A new order holds nothing yet: what it needs is the whole of it, not "more".
        needs = (f"this change needs {format_money(amount)} more set aside (on top of the "
                 f"{format_money(order.held)} the order holds)" if order.held else
                 f"this order needs {format_money(amount)} set aside")
        raise InsufficientFunds(
            f"Not enough money in your balance: {needs} to cover the leads it may buy, and "
            f"you have "
            f"{format_money(balance.available)} available. Top up at least "
            f"{format_money(shortfall)} on the Balance page, or lower the price, quantity "
            "or budget.",
            details={"needed": amount, "available": balance.available, "shortfall": shortfall})
    order.held += amount


def place_order(buyer: User, filters: Filters, terms: OrderTerms) -> tuple[Order, Optional[str]]:
    """Create an order and hold what it may spend; returns it and, if it has a webhook,
    the webhook secret (shown to the buyer once)."""
    if not buyer.is_buyer:
        raise ValidationFailed("Only buyers place orders.", code="not_a_buyer")
    accounts.require_verified_email(buyer)
    order = Order(
        buyer_id=buyer.id, buyer=buyer, name=terms.name, status=OrderStatus.OPEN,
        price=terms.price, quantity=terms.quantity, budget=terms.budget, filled=0, spent=0,
        held=0, filters=filters.to_dict(), expires_at=terms.expires_at,
        schedule=terms.schedule, timezone=terms.timezone, revision=0,
        lookback_days=terms.lookback_days, webhook_url=terms.webhook_url,
        bid_url=terms.bid_url, max_bid=terms.max_bid, **_calling_columns(terms), **_cap_columns(terms), **_counters(rules.period_keys(utcnow(), terms.timezone)))
    db.session.add(order)
    db.session.flush()
    secret = _point_webhook(order, terms.webhook_url) if terms.webhook_url \
        else _bid_secret(order)
    _move_hold(order, rules.max_spend(rules.price_range(terms)[1], terms.quantity,
                                      terms.budget), "order_hold")
    db.session.flush()
    audit.record("order.placed", actor=buyer, subject_type="order", subject_id=order.id,
                 details={name: value for name, value in (
                     ("price", order.price), ("quantity", order.quantity),
                     ("budget", order.budget), ("held", order.held),
                     ("webhook_host", audit.host_of(order.webhook_url)),
                     ("bid_host", audit.host_of(order.bid_url))) if value is not None})
    events.record(events.OrderOpened(order.id))
    return order, secret


def set_webhook(order: Order, url: Optional[str]) -> Optional[str]:
    """Point the order's deliveries at `url` with a new secret (returned once), or
    nowhere (None)."""
    old_host = audit.host_of(order.webhook_url)
    secret = _point_webhook(order, url)
    audit.record("order.webhook_changed", actor=order.buyer, subject_type="order",
                 subject_id=order.id,
                 details={"from_host": old_host, "to_host": audit.host_of(order.webhook_url),
                          "new_secret": secret is not None})
    return secret


def _point_webhook(order: Order, url: Optional[str]) -> Optional[str]:
    from app.services.crypto import current_vault

    if not url:
        order.webhook_url = None
        if not order.bid_url:  # bid requests are signed with it too
            order.webhook_secret_enc = None
        return None
    secret = "whsec_" + secrets.token_urlsafe(24)
    order.webhook_url = check_terms(order.price, order.quantity, webhook_url=url).webhook_url
    order.webhook_secret_enc = current_vault().encrypt(secret)
    return secret


def _bid_secret(order: Order) -> Optional[str]:
    """An order that bids and has no secret yet gets one (returned once): its bid
    requests are signed like its webhooks (SPEC §11)."""
    from app.services.crypto import current_vault

    if not order.bid_url or order.webhook_secret_enc is not None:
        return None
    secret = "whsec_" + secrets.token_urlsafe(24)
    order.webhook_secret_enc = current_vault().encrypt(secret)
    return secret


def close_order(order: Order, status: OrderStatus) -> None:
    """End an order (cancelled, expired or filled) and release what it still holds."""
    order.status = status
    order.closed_at = utcnow()
    _move_hold(order, -order.held, "order_release")
    if status is OrderStatus.FILLED:
        events.record(events.OrdersFilled((order.id,)))


def cancel_order(user: User, order_id: int) -> Order:
    order = order_for(user, order_id, lock=True)
    if not order.is_active:
        raise Conflict(f"The order is already {order.status.value}.", code="order_closed")
    released = order.held
    close_order(order, OrderStatus.CANCELLED)
    audit.record("order.cancelled", actor=user, subject_type="order", subject_id=order.id,
                 details={"released": released})
    db.session.flush()
    return order


def set_paused(user: User, order_id: int, paused: bool) -> Order:
    order = order_for(user, order_id, lock=True)
    if not order.is_active:
        raise Conflict(f"The order is already {order.status.value}.", code="order_closed")
    order.status = OrderStatus.PAUSED if paused else OrderStatus.OPEN
    audit.record("order.paused" if paused else "order.resumed", actor=user,
                 subject_type="order", subject_id=order.id)
    db.session.flush()
    if not paused:
        events.record(events.OrderResumed(order.id))
    return order


def _calling_columns(terms: OrderTerms) -> dict:
    start, end = terms.calling_hours or (None, None)
    return {"calling_from": start, "calling_until": end}


def _cap_columns(terms: OrderTerms) -> dict:
    return {**{f"cap_{p}": terms.caps.get(p) for p in rules.PERIODS},
            **{f"spend_cap_{p}": terms.spend_caps.get(p) for p in rules.PERIODS}}


def _counters(keys: dict, leads: Optional[dict] = None, spend: Optional[dict] = None) -> dict:
    """The period counters of an order: the current periods, with what they used."""
    out = {}
    for p in rules.PERIODS:
        out |= {f"{p}_key": keys[p], f"{p}_leads": (leads or {}).get(p, 0),
                f"{p}_spend": (spend or {}).get(p, 0)}
    return out


_UNCHANGED: Any = object()


def change_terms(user: User, order_id: int, *, price: Optional[int] = None,
                 quantity: Optional[int] = None, caps: Any = _UNCHANGED,
                 spend_caps: Any = _UNCHANGED, schedule: Any = _UNCHANGED,
                 timezone: Optional[str] = None, calling_hours: Any = _UNCHANGED,
                 bid_url: Any = _UNCHANGED, max_bid: Any = _UNCHANGED) -> Order:
    """Edit price, quantity, caps (each period given replaces that period's; null removes
    it), schedule, time zone, calling hours (§14), bid URL or max bid (a new secret for
    signing bids is left on the order as `webhook_secret`, to show once). The hold follows what the order may now spend; fills
    planned under the old terms are planned again (the order's revision changes)."""
    order = order_for(user, order_id, lock=True)
    if not order.is_active:
        raise Conflict(f"The order is already {order.status.value}.", code="order_closed")
    old_caps = {p: getattr(order, f"cap_{p}") for p in rules.PERIODS}
    old_spend = {p: getattr(order, f"spend_cap_{p}") for p in rules.PERIODS}
    before = _audited_terms(order)
    terms = check_terms(
        order.price if price is None else price, order.quantity if quantity is None else quantity,
        budget=order.budget, timezone=timezone or order.timezone,
        caps=old_caps if caps is _UNCHANGED else {**old_caps, **_object(caps, "caps")},
        spend_caps=old_spend if spend_caps is _UNCHANGED
        else {**old_spend, **_object(spend_caps, "spend_caps")},
        schedule=order.schedule if schedule is _UNCHANGED else schedule,
        calling_hours=(_stored_calling(order) if calling_hours is _UNCHANGED
                       else calling_hours),
        bid_url=order.bid_url if bid_url is _UNCHANGED else bid_url,
        max_bid=order.max_bid if max_bid is _UNCHANGED else max_bid)
    # The new terms are checked against what the order already received, by the same
    # limits that guard a fill (no more leads now: n=0), in its current periods.
    now = utcnow()
    ctx = rules.Ctx(now=now, keys=rules.period_keys(now, terms.timezone), n=0, price=0)
    used = {p: rules.LEAD_CAPS[p].used(order, ctx) for p in rules.PERIODS}
    spent = {p: rules.SPEND_CAPS[p].used(order, ctx) for p in rules.PERIODS}
    changed = SimpleNamespace(filled=order.filled, quantity=terms.quantity,
                              **_cap_columns(terms), **_counters(ctx.keys, used, spent))
    found = Refusals("invalid_filter")
    if not rules.QUANTITY.test(changed, ctx):
        found.add("quantity", f"The order already has {order.filled} leads; the quantity "
                              "cannot go below that.")
    for p in rules.PERIODS:
        if not rules.LEAD_CAPS[p].test(changed, ctx):
            found.add(f"caps.{p}", f"The order has received {used[p]} leads this {p}; the "
                                   f"{_PER[p]} cap cannot go below that now (pause the order "
                                   "to stop deliveries).")
        if not rules.SPEND_CAPS[p].test(changed, ctx):
            found.add(f"spend_caps.{p}", f"The order has spent {format_money(spent[p])} this "
                                         f"{p}; the {_PER[p]} spend cap cannot go below that "
                                         "now.")
    found.raise_any()
    # Counters start over in the current periods (a past period's count binds nothing).
    for column, value in {**_cap_columns(terms), **_counters(ctx.keys, used, spent)}.items():
        setattr(order, column, value)
    order.price, order.quantity = terms.price, terms.quantity
    order.schedule, order.timezone = terms.schedule, terms.timezone
    for column, value in _calling_columns(terms).items():
        setattr(order, column, value)
    order.bid_url, order.max_bid = terms.bid_url, terms.max_bid
    secret = _bid_secret(order)
    if secret:
        order.webhook_secret = secret
    _audit_change(user, order, before, new_secret=secret is not None)
    order.revision += 1
    remaining_budget = None if order.budget is None else order.budget - order.spent
    wanted = rules.max_spend(rules.price_range(order)[1], order.remaining, remaining_budget)
    _move_hold(order, wanted - order.held, "order_hold_change")
    if order.remaining == 0:
        close_order(order, OrderStatus.FILLED)
    db.session.flush()
    if order.status is OrderStatus.OPEN:
        events.record(events.OrderChanged(order.id))
    return order


def _audited_terms(order: Order) -> dict:
    """The terms an audit entry compares, by the names the buyer knows them."""
    return {"price": order.price, "quantity": order.quantity,
            "caps": [getattr(order, f"cap_{p}") for p in rules.PERIODS],
            "spend_caps": [getattr(order, f"spend_cap_{p}") for p in rules.PERIODS],
            "schedule": order.schedule, "timezone": order.timezone,
            "calling_hours": (order.calling_from, order.calling_until),
            "bid_url": order.bid_url, "max_bid": order.max_bid}


def _audit_change(user: User, order: Order, before: dict, *, new_secret: bool) -> None:
    """One entry: which terms changed, with the price, quantity, max bid and time zone
    before and after, and the bid URL's host (never its path or a secret); none when
    nothing did (a form saved as it was)."""
    after = _audited_terms(order)
    changed = [name for name in after if after[name] != before[name]]
    if not changed and not new_secret:
        return
    details: dict[str, Any] = {"changed": changed}
    for name in ("price", "quantity", "max_bid", "timezone"):
        if name in changed:
            details[name], details[f"{name}_before"] = after[name], before[name]
    if "bid_url" in changed:
        details["bid_host"] = audit.host_of(order.bid_url)
    if new_secret:
        details["new_secret"] = True
    audit.record("order.changed", actor=user, subject_type="order", subject_id=order.id,
                 details=details)


def _stored_calling(order: Order) -> Optional[dict]:
    if order.calling_from is None:
        return None
    return {"start": order_schedule.clock(order.calling_from),
            "end": order_schedule.clock(order.calling_until)}


def _object(value: Any, name: str) -> dict:
    if value is None:
        return {p: None for p in rules.PERIODS}  # null: no caps of this kind at all
    if not isinstance(value, dict):
        refuse(name, f"{name} is an object with some of {', '.join(rules.PERIODS)}.")
    return value
