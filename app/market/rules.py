"""Pure logic: every fill rule of SPEC §4, each defined once.

A rule is written once, in a small vocabulary (`when`, `within`, `equals`, `all_of`)
that computes a Python answer on Python values and builds SQL on columns. So the
same definition decides in the order book (planning), guards a single fill (its
conditional UPDATEs), a stored group of fills (set-based UPDATEs on PostgreSQL and
SQLite) and the queries that find inventory (an order filling, the supply estimate).
docs/market.md lists each rule of §4 with the definition here that states it.

Rules see an order, a lead and a `Ctx`: the time, the order's current periods
(the keys of its hour, day, week and month in its time zone), how many fills at
once (`n`), the price they are made at and the order's terms revision they were
planned with. Orders and leads are ORM objects, rows, tables' columns or anything
with the same attribute names.
"""
import bisect
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any, Callable, NamedTuple, Optional
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.sql.elements import ClauseElement

from app.market import schedule
from app.models.orders import PERIODS
from app.services import regions_tz


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
    keys: Any = None  # period -> the key of the order's current one (period_keys)
    n: Any = 1  # fills made at once
    price: Any = None  # the price the fills are made at
    revision: Any = None  # the order's terms as planned (Order.revision)
    release: Any = 0  # hold given back with the fills (excess_hold)


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
SOLD_OUT = "sold_out"


def offer_status(status: str, sold: int, cap: int) -> str:
    """A lead's status as its seller is told it (POST /leads, /posts, its journey):
    "sold_out" once it has every buyer its cap allows (LEAD_CAP leaves no room; a
    batch's `listing` counts it so too), else its stored status, which a sale never
    changes."""
    full = LEAD_CAP.room(SimpleNamespace(sold_count=sold, cap=cap), Ctx()) == 0
    return SOLD_OUT if full else status
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
TERMS_AS_PLANNED = Rule("terms_as_planned", "§4 rule 1: a fill is at the price it was "
                        "planned at (a re-priced or re-scheduled order is planned again)",
                        lambda o, lead, c: o.revision == c.revision)
QUANTITY = Limit("quantity", "§4 rule 3: never more leads than the quantity",
                 used=lambda o, c: o.filled, limit=lambda o, c: o.quantity)
HOLD = Limit("hold", "§4 rule 3, §5: never spends more than it holds (budget, balance)",
             used=None, limit=lambda o, c: o.held, per=lambda o, c: c.price)

# Caps per period (PERIODS: hour, day, week, month) count in the order's time zone:
# an order's counters name the period they count (`{period}_key`); once it is over,
# they count nothing.


def period_keys(now: datetime, timezone: str) -> dict[str, str]:
    """The order's current hour, day, ISO week and month, as the keys its counters keep
    (the hour with its UTC offset: the hour repeated when clocks go back is another)."""
    local = now.astimezone(ZoneInfo(timezone))
    year, week, _ = local.isocalendar()
    return {"hour": local.strftime("%Y-%m-%dT%H%z"), "day": local.strftime("%Y-%m-%d"),
            "week": f"{year}-W{week:02d}", "month": local.strftime("%Y-%m")}


def _in_period(period: str, counter: str):
    key, count = f"{period}_key", f"{period}_{counter}"
    return lambda o, c: when(getattr(o, key) == c.keys[period], getattr(o, count), 0)


LEAD_CAPS = {p: Limit(f"cap_{p}", f"§4: at most `caps.{p}` leads per {p} (order's time zone)",
                      used=_in_period(p, "leads"), limit=lambda o, c, p=p: getattr(o, f"cap_{p}"),
                      optional=True) for p in PERIODS}
SPEND_CAPS = {p: Limit(f"spend_cap_{p}", f"§4: at most `spend_caps.{p}` spent per {p}",
                       used=_in_period(p, "spend"),
                       limit=lambda o, c, p=p: getattr(o, f"spend_cap_{p}"),
                       per=lambda o, c: c.price, optional=True) for p in PERIODS}
ORDER_LIMITS = (QUANTITY, HOLD, *LEAD_CAPS.values(), *SPEND_CAPS.values())


def order_takes(order, ctx: Ctx):
    """The order may take `ctx.n` more leads at `ctx.price` now (before the rules about
    the lead)."""
    return all_of(ORDER_OPEN.test(order, None, ctx), NOT_EXPIRED.test(order, None, ctx),
                  *(limit.test(order, ctx) for limit in ORDER_LIMITS))


def order_room(order, ctx: Ctx) -> int:
    """How many more leads the order may take now at `ctx.price`, by its limits (Python)."""
    rooms = [room for limit in ORDER_LIMITS if (room := limit.room(order, ctx)) is not None]
    return min(rooms)


def after_fills(order, ctx: Ctx) -> dict:
    """The order's counters after `ctx.n` fills at `ctx.price` (SET clauses, or values)."""
    spent = ctx.n * ctx.price
    values = {"filled": order.filled + ctx.n, "spent": order.spent + spent,
              "held": order.held - spent - ctx.release}
    for p in PERIODS:
        values |= {f"{p}_key": ctx.keys[p],
                   f"{p}_leads": LEAD_CAPS[p].used(order, ctx) + ctx.n,
                   f"{p}_spend": SPEND_CAPS[p].used(order, ctx) + spent}
    return values


def cap_use(order, now: datetime) -> list[dict]:
    """Each cap the order has: its use in the current period and the leads it still
    lets through at the price in effect (§11: shown on the order page and in the API)."""
    price = price_in_effect(order, now)
    ctx = Ctx(now=now, keys=period_keys(now, order.timezone),
              price=order.price if price is None else price)
    out = []
    for kind, limits in (("leads", LEAD_CAPS), ("spend", SPEND_CAPS)):
        for period, limit in limits.items():
            cap = limit.limit(order, ctx)
            if cap is not None:
                out.append({"period": period, "kind": kind, "cap": cap,
                            "used": limit.used(order, ctx), "room": limit.room(order, ctx),
                            "period_key": ctx.keys[period]})
    return out


def price_in_effect(order, now: datetime) -> Optional[int]:
    """§4 schedule: the price the order pays for a lead arriving now -- the open
    window's price, or the order's own -- or None when a schedule has no window open
    (the lead waits or goes to other orders). Price priority ranks by this price."""
    windows = schedule.stored(order.schedule)
    if not windows:
        return order.price
    minute = schedule.minute_of_week(now.astimezone(ZoneInfo(order.timezone)))
    for window in windows:
        if window.covers(minute):
            return order.price if window.price is None else window.price
    return None


def price_range(order) -> tuple[int, int]:
    """The lowest and highest price the order may pay (its schedule's prices, its
    max_bid): what it may still buy with what it holds, and what its hold is sized for."""
    prices = [order.price if w.price is None else w.price
              for w in schedule.stored(order.schedule)] or [order.price]
    # A live bid (rule 9) may reach max_bid: the hold is sized for it too.
    highest = max(max(prices), getattr(order, "max_bid", None) or 0)
    return min(prices), highest


def max_spend(highest: int, quantity: int, budget_left: Optional[int]) -> int:
    """§5: what an order may still spend on `quantity` more leads -- at its highest
    price (price_range), capped by what is left of its budget. It holds exactly this."""
    total = highest * quantity
    return total if budget_left is None else min(total, budget_left)


def excess_hold(order, highest: int) -> int:
    """What the order holds beyond max_spend: a lead bought below its highest price
    (a cheaper window of its schedule) frees the difference, given back with the fill."""
    budget_left = None if order.budget is None else order.budget - order.spent
    return max(order.held - max_spend(highest, order.quantity - order.filled, budget_left), 0)


def order_finished(order, n: int, price: int, least: int) -> bool:
    """After `n` fills at `price` the order is done: full, or unable to pay `least`
    (price_range) for one more lead."""
    return order.filled + n >= order.quantity or order.held - n * price < least


# --- the pair: this buyer and this person ---------------------------------------------

def buyer_may_take(buyer_id: int, lead) -> bool:
    """§4 rule 2 in planning: never twice to the same buyer, never to its own seller
    (`lead.buyers`: who already has it); and §14: a lead whose form named its buyers
    goes to those alone (`lead.consent_scope`)."""
    return (buyer_id not in lead.buyers and buyer_id != lead.seller_id
            and (lead.consent_scope is None or buyer_id in lead.consent_scope))


def consent_covers(buyer_id, scope_id, table) -> sa.ColumnElement:
    """§14 in SQL: the lead's form named no buyers (`scope_id` NULL), or named this one
    (`table`: the forms' named buyers)."""
    return sa.or_(scope_id.is_(None), sa.exists().where(table.version_id == scope_id,
                                                        table.buyer_id == buyer_id))


def not_bought_by(buyer_id, lead_id, sale_table) -> sa.ColumnElement:
    """§4 rule 2 in SQL: the buyer does not have this lead yet."""
    return ~sa.exists().where(sale_table.lead_id == lead_id, sale_table.buyer_id == buyer_id)


def buyer_listed(buyer_id: int, lead, listed) -> bool:
    """§14 in planning: the buyer put the lead's person on their suppression list
    (`listed`: the (buyer, person hash) pairs of the lists), so never to them."""
    return any((buyer_id, person) in listed for person in lead.person_hashes)


def listed_by(buyer_id, email_hash, phone_hash, table) -> sa.ColumnElement:
    """§14 in SQL: the buyer listed this email or phone hash (`table`: the buyers'
    suppression lists, person hash = kind + value hash); fills take `~listed_by`."""
    return sa.exists().where(table.buyer_id == buyer_id, sa.or_(
        sa.and_(table.kind == "e", table.value_hash == email_hash),
        sa.and_(table.kind == "p", table.value_hash == phone_hash)))


def contact_hashes(person_hashes) -> tuple[Optional[bytes], Optional[bytes]]:
    """(email hash, phone hash) of a lead's person hashes (app.market.book)."""
    found = {bytes(person[:1]): bytes(person[1:]) for person in person_hashes}
    return found.get(b"e"), found.get(b"p")


# §14 quiet hours: the person's calling hours when an order holds phone leads for them.
DEFAULT_CALLING_HOURS = (8 * 60, 21 * 60)  # 08:00-21:00 on the person's clock


def in_calling_hours(order, lead, now: datetime) -> bool:
    """§14 quiet hours: an order with calling hours (`calling_from`, `calling_until`,
    minutes after midnight) takes a lead with a phone only while the person's local
    time is inside them -- on every clock the person may be on (regions_tz.zones_for:
    a country of several zones without a known region must be inside on all of them;
    an unknown country is read on UTC). Outside, the lead waits for the hours to open
    (the periodic fill) or goes to other orders. Python only: the order book, the
    single and the grouped fills ask it."""
    start = order.calling_from
    if start is None or not lead.has_phone:
        return True
    zones = regions_tz.zones_for(lead.region, lead.country) or (ZoneInfo("UTC"),)
    for zone in zones:
        local = now.astimezone(zone)
        if not start <= local.hour * 60 + local.minute < order.calling_until:
            return False
    return True


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
