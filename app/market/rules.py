"""Pure logic: every fill rule of SPEC §4, each defined once.

A rule is written once, in a small vocabulary (`when`, `within`, `equals`, `all_of`)
that computes a Python answer on Python values and builds SQL on columns. So the
same definition decides in the order book (planning), guards a single fill (its
conditional UPDATEs), a stored group of fills (set-based UPDATEs on PostgreSQL and
SQLite) and the queries that find inventory (an order filling, the supply estimate).
docs/market.md lists each rule of §4 with the definition here that states it.

Rules see an order, a lead and a `Ctx`: the time, the order's day, how many fills
at once (`n`) and the price they are made at. Orders and leads are ORM objects,
rows, tables' columns or anything with the same attribute names.
"""
import bisect
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, NamedTuple, Optional
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.sql.elements import ClauseElement


_PLAIN = (int, str, datetime, type(None))


def _sql(*values) -> bool:
    """Any of these is SQL (a column, an expression): then the rule builds SQL. Plain
    values answer at once -- planning asks rules millions of times."""
    for v in values:
        if not isinstance(v, _PLAIN) and (isinstance(v, ClauseElement)
                                         or hasattr(v, "__clause_element__")):
            return True
    return False


def _inline(value):
    """A number of ours written into the SQL, not sent as a parameter."""
    return sa.literal_column(str(value)) if type(value) is int else value


def when(condition, then, otherwise):
    if _sql(condition, then, otherwise):
        return sa.case((condition, _inline(then)), else_=_inline(otherwise))
    return then if condition else otherwise


def within(amount, limit, *, optional: bool = False):
    """amount <= limit; with `optional`, a limit of None (NULL) means no limit."""
    if _sql(amount, limit):
        return sa.or_(limit.is_(None), amount <= limit) if optional else amount <= limit
    return (optional and limit is None) or amount <= limit


def equals(value, constant: str):
    """A column against one of our own constants (an enum's value), inlined in SQL so
    compiled statements need no bind processing."""
    if _sql(value):
        return value == sa.literal_column(f"'{constant}'")
    return value == constant


def all_of(*conditions):
    return sa.and_(*conditions) if _sql(*conditions) else all(conditions)


def any_of(*conditions):
    return sa.or_(*conditions) if _sql(*conditions) else any(conditions)


@dataclass(frozen=True)
class Ctx:
    """What a check is made against (Python values, or SQL columns and parameters)."""

    now: Any = None
    today: Any = None  # the order's day for the daily cap, "YYYY-MM-DD"
    n: Any = 1  # fills made at once
    price: Any = None  # the price the fills are made at


@dataclass(frozen=True)
class Rule:
    name: str
    spec: str  # where SPEC §4 states it
    test: Callable  # (order, lead, ctx) -> bool or a SQL condition

    def holds(self, order, lead, ctx: Ctx) -> bool:
        return bool(self.test(order, lead, ctx))

    def sql(self, order, lead, ctx: Ctx):
        return self.test(order, lead, ctx)


@dataclass(frozen=True)
class Limit:
    """A count that may not pass a limit: `used + n * per <= limit`."""

    name: str
    spec: str
    used: Optional[Callable]  # (row, ctx); None: the limit is on each step alone
    limit: Callable  # (row, ctx); None: unlimited when `optional`
    per: Optional[Callable] = None  # (row, ctx): what one fill uses; None: 1
    optional: bool = False

    def test(self, row, ctx: Ctx):
        step = ctx.n if self.per is None else ctx.n * self.per(row, ctx)
        amount = step if self.used is None else self.used(row, ctx) + step
        return within(amount, self.limit(row, ctx), optional=self.optional)

    def room(self, row, ctx: Ctx) -> Optional[int]:
        """How many more fills the limit lets through (None: no limit). Python only."""
        limit = self.limit(row, ctx)
        if limit is None:
            return None
        per = 1 if self.per is None else self.per(row, ctx)
        used = 0 if self.used is None else self.used(row, ctx)
        return max((limit - used) // per, 0) if per else None


# --- the lead -------------------------------------------------------------------------

LEAD_LIVE = Rule("lead_live", "§2 trust, §7 spot-checks: only live leads are sold",
                 lambda o, lead, c: equals(lead.status, "live"))
LEAD_CAP = Limit("lead_cap", "§4 rule 2: a lead goes to at most `cap` buyers",
                 used=lambda lead, c: lead.sold_count, limit=lambda lead, c: lead.cap)
FLOOR = Rule("floor", "§4 rule 2: never below the batch's floor price",
             lambda o, lead, c: lead.floor_price <= c.price)
NOT_OWN_SELLER = Rule("not_own_seller", "§4 rule 2: never to its own seller",
                      lambda o, lead, c: o.buyer_id != lead.seller_id)


def paying(minus_prices: list[int], floor: int) -> int:
    """FLOOR over orders sorted by price, highest first (`minus_prices` ascending):
    how many of the first orders pay at least `floor`."""
    return bisect.bisect_right(minus_prices, -floor)


# --- the order ------------------------------------------------------------------------

ORDER_OPEN = Rule("order_open", "§4: paused, cancelled, filled and expired orders take nothing",
                  lambda o, lead, c: equals(o.status, "open"))
NOT_EXPIRED = Rule("not_expired", "§4: an order's optional expiry",
                   lambda o, lead, c: sa.or_(o.expires_at.is_(None), o.expires_at > c.now)
                   if _sql(o.expires_at) else o.expires_at is None or o.expires_at > c.now)
PRICE_AS_PLANNED = Rule("price_as_planned", "§4 rule 1: a fill is at the price it was "
                        "planned at (a re-priced order is planned again)",
                        lambda o, lead, c: o.price == c.price)
QUANTITY = Limit("quantity", "§4 rule 3: never more leads than the quantity",
                 used=lambda o, c: o.filled, limit=lambda o, c: o.quantity)
HOLD = Limit("hold", "§4 rule 3, §5: never spends more than it holds (budget, balance)",
             used=None, limit=lambda o, c: o.held, per=lambda o, c: o.price)
DAILY_CAP = Limit("daily_cap", "§4: at most `daily_cap` leads a day",
                  used=lambda o, c: when(o.fill_day == c.today, o.day_filled, 0),
                  limit=lambda o, c: o.daily_cap, optional=True)
ORDER_LIMITS = (QUANTITY, HOLD, DAILY_CAP)


def order_takes(order, ctx: Ctx):
    """The order may take `ctx.n` more leads now (before the rules about the lead)."""
    return all_of(ORDER_OPEN.test(order, None, ctx), NOT_EXPIRED.test(order, None, ctx),
                  *(limit.test(order, ctx) for limit in ORDER_LIMITS))


def order_room(order, ctx: Ctx) -> int:
    """How many more leads the order may take now, by its limits (Python)."""
    rooms = [room for limit in ORDER_LIMITS if (room := limit.room(order, ctx)) is not None]
    return min(rooms)


def after_fills(order, ctx: Ctx) -> dict:
    """The order's counters after `ctx.n` fills at `ctx.price` (SET clauses, or values)."""
    spent = ctx.n * ctx.price
    return {"filled": order.filled + ctx.n, "spent": order.spent + spent,
            "held": order.held - spent, "fill_day": ctx.today,
            "day_filled": DAILY_CAP.used(order, ctx) + ctx.n}


def order_finished(order, ctx: Ctx):
    """After `ctx.n` fills at `ctx.price` the order is done: full, or unable to pay for
    one more lead."""
    return any_of(order.filled + ctx.n >= order.quantity,
                  order.held - ctx.n * ctx.price < order.price)


def in_delivery_hours(order, now: datetime) -> bool:
    """§4: an order with delivery hours takes leads only inside them (its time zone)."""
    if order.delivery_start_hour is None:
        return True
    hour = now.astimezone(ZoneInfo(order.timezone)).hour
    start, end = order.delivery_start_hour, order.delivery_end_hour
    return start <= hour < end if start < end else (hour >= start or hour < end)


def day_of(now: datetime) -> str:
    """The day the daily cap counts in."""
    return now.strftime("%Y-%m-%d")


# --- the pair: this buyer and this person ---------------------------------------------

def buyer_may_take(buyer_id: int, lead) -> bool:
    """§4 rule 2 in planning: never twice to the same buyer, never to its own seller
    (`lead.buyers`: who already has it)."""
    return buyer_id not in lead.buyers and buyer_id != lead.seller_id


def not_bought_by(buyer_id, lead_id, sale_table) -> sa.ColumnElement:
    """§4 rule 2 in SQL: the buyer does not have this lead yet."""
    return ~sa.exists().where(sale_table.lead_id == lead_id, sale_table.buyer_id == buyer_id)


# The window in which caps and exclusivity hold for a person: the default lookback.
PERSON_WINDOW = timedelta(days=30)


class Listing(NamedTuple):
    """How a person is being sold: `sold` buyers since `first_sold_at`, at most `cap`."""

    cap: int
    sold: int
    first_sold_at: datetime


def person_after_sale(listing: Optional[Listing], copy_cap: int, now: datetime,
                      n: int = 1) -> Optional[Listing]:
    """§4 rule 2, about the person: their listing after `n` more buyers receive a copy
    with `copy_cap`, or None if that would break a promise. Within PERSON_WINDOW of
    the first sale a person goes to at most as many buyers as the first copy's cap
    allowed, and a copy sold as exclusive (cap 1) is the person's only sale --
    whichever sellers hold the copies. `listing`: the state so far (None: unsold)."""
    if listing is None or listing.first_sold_at <= now - PERSON_WINDOW:
        return Listing(copy_cap, n, now) if n <= copy_cap else None
    if listing.sold + n <= listing.cap and copy_cap > 1:
        return Listing(listing.cap, listing.sold + n, listing.first_sold_at)
    return None


def person_room(listing: Optional[Listing], copy_cap: int, now: datetime) -> int:
    """How many more buyers may receive the person through a copy with `copy_cap`:
    person_after_sale applied until it refuses, in closed form (the planner asks for
    every lead; tests/test_market_rules.py checks the two agree)."""
    if listing is None or listing.first_sold_at <= now - PERSON_WINDOW:
        return copy_cap
    return max(listing.cap - listing.sold, 0) if copy_cap > 1 else 0


def lookback_start(now: datetime, lookback: timedelta) -> datetime:
    return now - lookback


def claim_expired(claimed_at, since):
    """§4 lookback: a buyer may receive a person again when their last delivery of that
    person is no later than `since` (`lookback_start(now, lookback)`)."""
    return claimed_at <= since
