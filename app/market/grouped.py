"""Operations: storing a matcher's plan many fills at a time (the fast path of SPEC
§4/§5). They flush inside a savepoint; the caller commits.

One transaction per group of fills, with the same rules as a single fill and its
row locks taken in the same global order (leads by id, then person claims, then
person listings, orders and ledger accounts, each by key), so it cannot deadlock
with other groups or single fills. The rows groups share -- listings (copies of a
person from several sellers), orders and ledger accounts -- are locked last, after
the group's own rows are written: groups stored at once on several connections
(jobs.store_plan) wait for each other only there. What a group writes is worked
out from its fills alone first (`prepare`: rows, counters, money; pure Python, so
jobs.store_plan plans and prepares the next group on a helper thread while groups
are written). The group is checked against the database at once -- its leads
locked, the listings it shares as the run last read or stored them (the plan read
them: Settlement.listed) -- and if that refuses something (a lead sold
out meanwhile, a person sold elsewhere), fill by fill: the fills the database no
longer allows are dropped and reported as lost, for the caller to plan again. The
shared rows are checked when they are locked: a person sold meanwhile has the
group's copies sold after that; an order that can no longer take all its fills
(paused, short of hold) rolls the group back to its savepoint, and what it can no
longer take is reported as lost while the rest is stored again. If
anything unexpected collides (a person claimed by a concurrent worker, a sale
already there), the whole group is rolled back to its savepoint and the caller
stores those fills in smaller groups instead; nothing is ever half-applied.

Every table is written by one set-based statement per group: conditional
`UPDATE ... FROM unnest(...)` for leads and orders (the conditions of a single
fill, compiled from the same app.market.rules, checked again by the database's
CHECK constraints), upserts for person listings and claims, COPY for sales and
webhook deliveries (ids handed out in advance), and the money through the ledger's
set-based posting (`write_transactions` with the group's rows, `move_balances`
last): one ledger transaction per order in the group, its entries summed per
account (one per sale would write four ledger rows per sale, the most expensive
part of a group). Orders the group fills up close in it too, their leftover hold
released as operations.close_order would (closing them one transaction each
afterwards cost more than storing their sales); an order buying below its highest
price gives the difference back in the same way.
On SQLite (one writer at a time, no network) the same statements run as executemany.
"""
from collections import Counter, defaultdict
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Optional

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError

from app.core import events, figures
from app.core.dialect import (
    csv, ids_in, locked, postgres, retryable, run, sqlite_connection, stamp,
    update_many,
)
from app.errors import InsufficientFunds
from app.extensions import db
from app.market import rules, snapshot
from app.market.settle import Settlement, group_key
from app.models import (
    AccountKind, DeliveryStatus, Lead, Order, Sale, WebhookDelivery,
)
from app.services import ledger
from app.services.ledger import Posting
from app.core.bulk import allocate_ids, bulk_insert, driver_errors


class _Collision(Exception):
    """Something a concurrent worker did that the group cannot absorb."""


@dataclass
class Fills:
    """What a group of fills writes, worked out from the fills alone: no database, so
    that store_plan can prepare the next group on a helper thread while others are
    in the database. Sales are grouped by order; a sale's id and ledger transaction
    are filled in when it is stored."""

    per_lead: dict  # lead id -> fills, in plan order
    lowest: dict  # lead id -> the lowest price it is sold at
    orders: dict  # order id -> (slot, fills, postings); postings: [((kind, user), amount)]
    copies: dict  # person -> [(copy cap, buyers)], one per lead, in plan order
    claims: dict  # lookback -> sorted (buyer id, person)
    sales: list  # one row per fill, as _write copies them


def prepare(pairs: list[tuple], settlement: Settlement, load: bool = True) -> Fills:
    """The rows, counters and money of these fills. `load=False` (off the session's
    thread): no query, settle.NotLoaded if a commission rate is not loaded yet."""
    now = settlement.now

    def commission_of(seller_id, price):
        return settlement.commission(seller_id, price, load)
    platform = (AccountKind.PLATFORM_COMMISSION, None)
    per_lead, lowest, leads, claims = {}, {}, {}, defaultdict(set)
    by_order = defaultdict(list)
    for lead, slot in pairs:
        by_order[slot.id].append((lead, slot))
        lead_id, price = lead.id, slot.price
        if lead_id in per_lead:
            per_lead[lead_id] += 1
            if price < lowest[lead_id]:
                lowest[lead_id] = price
        else:
            per_lead[lead_id], lowest[lead_id], leads[lead_id] = 1, price, lead
        keys = claims[slot.lookback]
        for person in lead.person_hashes:
            keys.add((slot.buyer_id, person))
    copies = defaultdict(list)
    for lead_id, lead in leads.items():
        for person in lead.person_hashes:
            copies[person].append((lead.cap, per_lead[lead_id]))
    sales, orders = [], {}
    for order_id, fills in by_order.items():
        slot = fills[0][1]
        buyer, price = slot.buyer_id, slot.price
        shares: Counter = Counter()
        commissions = 0
        for lead, _ in fills:
            seller = lead.seller_id
            commission = commission_of(seller, price)
            shares[seller] += price - commission
            commissions += commission
            sales.append([None, order_id, lead.id, buyer, seller, price, commission,
                          price - commission, None, now, lead.region, lead.batch_id])
        postings = [((AccountKind.BUYER_HELD, buyer), -price * len(fills)),
                    *(((AccountKind.SELLER_PENDING, seller), share)
                      for seller, share in shares.items()),
                    (platform, commissions)]
        orders[order_id] = (slot, len(fills), [p for p in postings if p[1]])
    return Fills(per_lead, lowest, orders, dict(copies),
                 {lookback: sorted(keys) for lookback, keys in claims.items()}, sales)


def store_group(pairs: list[tuple], settlement: Settlement, prepared: Optional[Fills] = None
                ) -> tuple[list[tuple], list[tuple]]:
    """Store these fills in one transaction. Returns (lost, fallback): fills the
    database refused under its locks, and fills to store in smaller groups instead.
    `prepared`: prepare(pairs), if done already."""
    prepared = prepared or prepare(pairs, settlement)
    # Outside the savepoint: an account created here must outlive a collision.
    settlement.load_accounts({key for _, _, postings in prepared.orders.values()
                              for key, _ in postings}
                             | {(AccountKind.BUYER_AVAILABLE, slot.buyer_id)
                                for slot, _, _ in prepared.orders.values()})
    try:
        with db.session.begin_nested():
            lost, people = _store(pairs, settlement, prepared)
    except _OrdersRefused as refused:
        # What such an order can no longer take is planned again; the rest is stored
        # again at once (fewer fills each time: this ends).
        kept, lost, taken = [], [], Counter()
        for pair in pairs:
            room = refused.room.get(pair[1].id)
            if room is not None and taken[pair[1].id] >= room:
                lost.append(pair)
            else:
                taken[pair[1].id] += 1
                kept.append(pair)
        if not kept:
            return lost, []
        more_lost, fallback = store_group(kept, settlement)
        return lost + more_lost, fallback
    except (_Collision, IntegrityError, InsufficientFunds):
        _forget(settlement, prepared)
        return [], pairs
    except OperationalError as exc:
        if retryable(exc):
            _forget(settlement, prepared)
            return [], pairs
        raise
    if settlement.listed is not None:  # what the next groups start from
        settlement.listed.update(people)
    return lost, []


_UNKNOWN = object()


def _listed(settlement: Settlement, persons) -> dict:
    """These people's listings (those listed), read without locks (they are checked
    when locked: _list_people): as this run last read or stored them
    (Settlement.listed), those it does not know read now."""
    known = settlement.listed
    if known is None:
        return snapshot.listings(persons)
    listed, unknown = {}, []
    for person in persons:
        listing = known.get(person, _UNKNOWN)
        if listing is _UNKNOWN:
            unknown.append(person)
        elif listing is not None:
            listed[person] = listing
    if unknown:
        listed.update(snapshot.listings(unknown))
    return listed


def _forget(settlement: Settlement, fills: Fills) -> None:
    """A group collided: what the run knew of its people may be out of date (another
    worker sold them), so they are read again."""
    if settlement.listed is not None:
        for person in fills.copies:
            settlement.listed.pop(person, None)


class _OrdersRefused(Exception):
    """Orders that can no longer take all their fills of the group (paused,
    re-priced, short of hold, or filled by another worker): order id -> how many
    they still take."""

    def __init__(self, room: dict[int, int]):
        self.room = room


def _store(pairs, settlement, prepared) -> tuple[list[tuple], dict]:
    """(fills lost, the people's listings after the group)."""
    now = settlement.now
    ctx = rules.Ctx(now=now)
    fills = prepared
    leads = locked("leads", "status, sold_count, cap, floor_price", sorted(fills.per_lead))
    room = {lead_id: rules.LEAD_CAP.room(lead, ctx) if rules.LEAD_LIVE.holds(None, lead, ctx)
            else 0 for lead_id, lead in leads.items()}
    # People are shared between groups (copies of a person from several sellers):
    # their listings are read now and locked last, with the orders and the ledger
    # accounts, and checked again then.
    listed = _listed(settlement, fills.copies.keys())  # locked when written: _list_people
    lost = []
    # §14: a buyer who listed a person since the plan was made does not receive them,
    # nor does an order a phone lead reaches outside the person's calling hours.
    listing = settlement.listing_buyers({slot.buyer_id for slot, _, _ in fills.orders.values()})
    suppressed = snapshot.listed_by_buyers(fills.copies.keys(), listing) if listing else set()
    kept = []
    if suppressed or any(slot.calling_from is not None for slot, _, _ in fills.orders.values()):
        for lead, slot in pairs:
            if (rules.buyer_listed(slot.buyer_id, lead, suppressed)
                    or not rules.in_calling_hours(slot, lead, now)):
                lost.append((lead, slot))
            else:
                kept.append((lead, slot))
    if lost:
        pairs = kept
        if not pairs:
            return lost, {}
        fills = prepare(pairs, settlement)
    people = _whole_group(fills, leads, room, listed, now)
    if people is None:  # some fill is refused: find which, fill by fill
        accepted, refused, people = _one_by_one(pairs, leads, room, listed, now)
        lost += refused
        if not accepted:
            return lost, {}
        fills = prepare(accepted, settlement)
    _claim_people(fills.claims, now)
    _write(fills, settlement, people, listed)
    return lost, people


def _orders(fills: Fills, now) -> tuple[dict, dict]:
    """The group's orders, locked in id order: each one's state, and how many more
    leads it may take under the terms it was planned with (none if they changed
    since: the group's price or caps would be the old ones)."""
    slots = {order_id: slot for order_id, (slot, _, _) in fills.orders.items()}
    orders, capacity = {}, {}
    for order_id, unexpired, *state in locked("orders", _ORDER_STATE, sorted(slots),
                                              now=stamp(now)).values():
        order = orders[order_id] = SimpleNamespace(expires_at=None if unexpired else now,
                                                   **dict(zip(_ORDER_COLUMNS, state)))
        slot = slots[order_id]
        planned = rules.Ctx(now=now, keys=slot.keys, n=0, price=slot.price,
                            revision=slot.revision)
        capacity[order_id] = (rules.order_room(order, planned)
                              if rules.order_takes(order, planned)
                              and rules.TERMS_AS_PLANNED.holds(order, None, planned) else 0)
    return orders, capacity


def _whole_group(fills: Fills, leads, room, listed, now):
    """The people's listings after the group if the database allows every fill of it
    (the rules applied per lead and per person at once), else None."""
    for lead_id, n in fills.per_lead.items():
        if room.get(lead_id, 0) < n or not rules.FLOOR.holds(
                None, leads[lead_id], rules.Ctx(price=fills.lowest[lead_id])):
            return None
    people = {}
    # A lead's fills at once: person_after_sale(n) is n sales in a row.
    for person, copies in fills.copies.items():
        listing = listed.get(person)
        for cap, n in copies:
            listing = rules.person_after_sale(listing, cap, now, n)
            if listing is None:
                return None
        people[person] = listing
    return people


def _one_by_one(pairs, leads, room, listed, now):
    """(accepted, lost, listings after): each fill checked in plan order against the
    rows read (leads locked) and the fills accepted before it."""
    people = dict(listed)
    accepted, lost = [], []
    for lead, slot in pairs:
        after = [rules.person_after_sale(people.get(person), lead.cap, now)
                 for person in lead.person_hashes]
        if (room.get(lead.id, 0) > 0
                and rules.FLOOR.holds(None, leads[lead.id], rules.Ctx(price=slot.price))
                and all(after)):
            room[lead.id] -= 1
            people.update(zip(lead.person_hashes, after))
            accepted.append((lead, slot))
        else:
            lost.append((lead, slot))
    return accepted, lost, people


# Every person the group sells, created or locked in one statement, in hash order
# (the update changes nothing: it only takes the row's lock), with what is there.
_LOCK_LISTINGS_PG = """
INSERT INTO person_listings (person_hash, cap, sold, first_sold_at)
SELECT decode(h, 'hex'), c, s, :now
FROM unnest(string_to_array(:hashes, ','), CAST(string_to_array(:caps, ',') AS int[]),
            CAST(string_to_array(:solds, ',') AS int[])) AS v(h, c, s)
ORDER BY 1
ON CONFLICT (person_hash) DO UPDATE SET cap = person_listings.cap
RETURNING encode(person_hash, 'hex'), cap, sold, first_sold_at, xmax = 0"""
_NEW_LISTINGS_SQLITE = """
INSERT INTO person_listings (person_hash, cap, sold, first_sold_at) VALUES (:h, :c, :s, :now)
ON CONFLICT (person_hash) DO NOTHING"""
_LISTINGS_PG = """
UPDATE person_listings AS p SET cap = v.c, sold = v.s, first_sold_at = v.f
FROM (SELECT decode(h, 'hex') AS h, c, s, f
      FROM unnest(string_to_array(:hashes, ','), CAST(string_to_array(:caps, ',') AS int[]),
                  CAST(string_to_array(:solds, ',') AS int[]),
                  CAST(string_to_array(:firsts, ',') AS timestamptz[])) AS u(h, c, s, f)) AS v
WHERE p.person_hash = v.h"""
_LISTINGS_SQLITE = """
UPDATE person_listings SET cap = :c, sold = :s, first_sold_at = :f WHERE person_hash = :h"""


def _list_people(people: dict[bytes, rules.Listing], listed: dict, copies: dict, now) -> None:
    """Write the people's listings after this group (`people`, worked out from
    `listed`). On PostgreSQL `listed` was read without locks: each person is created
    or locked now, in hash order, and one another connection listed or sold
    meanwhile has the group's copies sold after what is there -- a collision only if
    that no longer allows them (`people` is updated with what is written)."""
    changed = {p: v for p, v in people.items() if listed.get(p) != v}
    if not postgres():  # the transaction holds the database's write lock: nothing moved
        new = sorted(p for p in changed if p not in listed)
        old = sorted(p for p in changed if p in listed)
        connection = sqlite_connection()
        with driver_errors(_NEW_LISTINGS_SQLITE):
            inserted = connection.executemany(_NEW_LISTINGS_SQLITE, [
                {"h": p, "c": changed[p].cap, "s": changed[p].sold, "now": stamp(now)}
                for p in new]).rowcount if new else 0
        with driver_errors(_LISTINGS_SQLITE):
            connection.executemany(_LISTINGS_SQLITE, [
                {"h": p, "c": changed[p].cap, "s": changed[p].sold,
                 "f": stamp(changed[p].first_sold_at)} for p in old])
        if inserted != len(new):
            raise _Collision
        return
    if not changed:
        return
    persons = sorted(changed)
    update = []
    for hex_hash, cap, sold, first_sold_at, inserted in run(_LOCK_LISTINGS_PG, {
            "hashes": ",".join(p.hex() for p in persons),
            "caps": csv(changed[p].cap for p in persons),
            "solds": csv(changed[p].sold for p in persons), "now": now}):
        if inserted:
            continue
        person = bytes.fromhex(hex_hash)
        update.append(person)
        current = rules.Listing(cap, sold, first_sold_at)
        if current != listed.get(person):  # moved since it was read
            listing = current
            for copy_cap, n in copies[person]:
                listing = rules.person_after_sale(listing, copy_cap, now, n)
                if listing is None:
                    raise _Collision
            changed[person] = people[person] = listing
    if update:
        update.sort()
        run(_LISTINGS_PG, {"hashes": ",".join(p.hex() for p in update),
                           "caps": csv(changed[p].cap for p in update),
                           "solds": csv(changed[p].sold for p in update),
                           "firsts": ",".join(changed[p].first_sold_at.isoformat()
                                              for p in update)})


# One statement for the whole group, its keys in one sorted order (the table's, person
# then buyer): two workers
# claiming overlapping people lock them in the same order (one statement per lookback
# could take them in two). Each key is checked against its own order's lookback.
_CLAIMS_PG = """
WITH v AS (
  SELECT b, decode(h, 'hex') AS h, s
  FROM unnest(CAST(string_to_array(:buyers, ',') AS int[]), string_to_array(:hashes, ','),
              CAST(string_to_array(:sinces, ',') AS timestamptz[])) AS v(b, h, s)),
claimed AS (
  INSERT INTO person_claims (buyer_id, person_hash, claimed_at)
  SELECT b, h, :now FROM v ORDER BY 2, 1
  ON CONFLICT (buyer_id, person_hash) DO UPDATE SET claimed_at = EXCLUDED.claimed_at
  WHERE person_claims.claimed_at <= (
    SELECT s FROM v WHERE v.b = person_claims.buyer_id AND v.h = person_claims.person_hash)
  RETURNING 1)
SELECT count(*) FROM claimed"""
_CLAIMS_SQLITE = """
INSERT INTO person_claims (buyer_id, person_hash, claimed_at) VALUES (:b, :h, :now)
ON CONFLICT (buyer_id, person_hash) DO UPDATE SET claimed_at = excluded.claimed_at
WHERE person_claims.claimed_at <= :since"""


def _claim_people(by_lookback: dict, now) -> None:
    """Record each (buyer, person) delivery; any claim inside its lookback is a
    collision with a concurrent worker (planning saw no such claim)."""
    keys = sorted((bytes(person), buyer, rules.lookback_start(now, lookback))
                  for lookback, pairs in by_lookback.items() for buyer, person in pairs)
    if not keys:
        return
    if len({key[:2] for key in keys}) != len(keys):
        raise _Collision  # one buyer twice for one person: not a plan the rules allow
    if postgres():
        claimed = run(_CLAIMS_PG, {"buyers": csv(b for _, b, _ in keys),
                                    "hashes": ",".join(h.hex() for h, _, _ in keys),
                                    "sinces": ",".join(s.isoformat() for _, _, s in keys),
                                    "now": now}).scalar()
    else:
        at = stamp(now)
        with driver_errors(_CLAIMS_SQLITE):
            claimed = sqlite_connection().executemany(
                _CLAIMS_SQLITE, [{"b": b, "h": h, "now": at, "since": stamp(s)}
                                 for h, b, s in keys]).rowcount
    if claimed != len(keys):
        raise _Collision


def _arrays(*columns) -> sa.TableValuedAlias:
    """`unnest(...) AS v(...)`: one row per (id, n, ...) from one string parameter per
    column (PostgreSQL)."""
    arrays = [sa.cast(sa.func.string_to_array(sa.bindparam(name), sa.literal_column("','")),
                      postgresql.ARRAY(kind))
              for name, kind in columns]
    return (sa.func.unnest(*arrays).table_valued(*(name for name, _ in columns))
            .render_derived(name="v"))


def _lead_update(row_id, n, low):
    ctx = rules.Ctx(n=n, price=low)
    leads = Lead.__table__.c
    return (sa.update(Lead.__table__)
            .where(leads.id == row_id, rules.LEAD_LIVE.sql(None, leads, ctx),
                   rules.LEAD_CAP.test(leads, ctx), rules.FLOOR.sql(None, leads, ctx))
            .values(sold_count=leads.sold_count + n))


def _order_update(row_id, n, revision, price, release, *keys):
    ctx = rules.Ctx(now=sa.bindparam("now"), keys=dict(zip(rules.PERIODS, keys)), n=n,
                    price=price, revision=revision, release=release)
    orders = Order.__table__.c
    return (sa.update(Order.__table__)
            .where(orders.id == row_id, rules.order_takes(orders, ctx),
                   rules.TERMS_AS_PLANNED.sql(orders, None, ctx))
            .values(**rules.after_fills(orders, ctx), updated_at=sa.bindparam("now")))


@dataclass(frozen=True)
class _Statement:
    """A statement compiled once, and the constants the compiler made parameters of."""

    sql: str
    constants: dict


def _compiled(statement, dialect) -> _Statement:
    compiled = statement.compile(dialect=dialect)
    return _Statement(str(compiled),
                      {k: v for k, v in compiled.params.items() if v is not None})


def _update(pg, lite: _Statement, names: tuple[str, ...], rows: list[tuple],
            shared: dict) -> int:
    """PostgreSQL runs the statement itself (each of `names` one array parameter),
    SQLite its compiled text through the driver's executemany."""
    if postgres():
        arrays = {name: csv(row[i] for row in rows) for i, name in enumerate(names)}
        return db.session.execute(pg, {**arrays, **shared}).rowcount
    return update_many(lite.sql, names, rows, {**lite.constants, **shared})


_SQLITE = sqlite.dialect(paramstyle="named")
_LEAD_VALUES = _arrays(("lead_id", sa.BigInteger), ("n", sa.Integer), ("low", sa.BigInteger))
# Parameters are not named like the columns they update (SQLAlchemy reserves those).
_ORDER_PARAMS = (("order_id", sa.Integer), ("n", sa.Integer), ("planned", sa.Integer),
                 ("at_price", sa.BigInteger), ("release", sa.BigInteger),
                 *((f"k_{p}", sa.String) for p in rules.PERIODS))
_ORDER_NAMES = tuple(name for name, _ in _ORDER_PARAMS)
_ORDER_VALUES = _arrays(*_ORDER_PARAMS)
# The statements of a group, compiled once from the rules (bench/match.py reads them).
LEADS_PG = _lead_update(*_LEAD_VALUES.c)
LEADS_SQLITE = _compiled(_lead_update(*(sa.bindparam(k) for k in ("lead_id", "n", "low"))),
                         _SQLITE)
ORDERS_PG = _order_update(*_ORDER_VALUES.c)
ORDERS_SQLITE = _compiled(_order_update(*(sa.bindparam(k) for k in _ORDER_NAMES)), _SQLITE)
# What the group re-checks of each order under its lock: whatever the order limits read.
_CAPS = tuple(f"{cap}_{p}" for cap in ("cap", "spend_cap") for p in rules.PERIODS)
_ORDER_COLUMNS = ("status", "price", "filled", "quantity", "held", "revision", "budget",
                  "spent", *_CAPS,
                  *(f"{p}_{what}" for p in rules.PERIODS for what in ("key", "leads", "spend")))
_ORDER_STATE = (_compiled(rules.NOT_EXPIRED.sql(Order.__table__.c, None,
                                                rules.Ctx(now=sa.bindparam("now"))), _SQLITE).sql
                + ", " + ", ".join(_ORDER_COLUMNS))


def _write(fills: Fills, settlement, people: dict, listed: dict) -> None:
    """The group's rows, then the rows groups share -- the people's listings, its
    orders, then the ledger accounts -- locked last, so that groups stored at once on
    other connections wait for each other only there."""
    now = settlement.now
    account = settlement.account
    lead_ids = sorted(fills.per_lead)
    if _update(LEADS_PG, LEADS_SQLITE, ("lead_id", "n", "low"),
               [(i, fills.per_lead[i], fills.lowest[i]) for i in lead_ids], {}
               ) != len(lead_ids):
        raise _Collision
    # One ledger transaction per order in the group, its entries summed per account:
    # the sales are as balanced as one transaction per sale, and the ledger grows by
    # a few rows per order instead of four per sale. Each sale names its transaction.
    sales = fills.sales
    sale_ids = allocate_ids(Sale.__table__, len(sales))
    movements, hooks, delivered, first = [], [], [], 0
    for order_id, (slot, n, postings) in fills.orders.items():
        movements.append(ledger.Movement(
            "sale", [Posting(account(*key), amount) for key, amount in postings],
            group_key(order_id, sale_ids[first]), f"Order #{order_id}: {n} lead(s)"))
        for channel, wanted in (("url", slot.has_webhook), ("email", slot.has_email)):
            if wanted:
                hooks.extend((sale_id, order_id, DeliveryStatus.PENDING.value, 0, now, now,
                              channel) for sale_id in sale_ids[first:first + n])
        if slot.has_webhook or slot.has_email:
            delivered.extend(sale_ids[first:first + n])
        if slot.has_email:
            settlement.emailed.update(sale_ids[first:first + n])
        first += n
    transaction_ids, deltas = ledger.write_transactions(movements, now)
    first = 0
    for (_, n, _), transaction_id in zip(fills.orders.values(), transaction_ids):
        for sale, sale_id in zip(sales[first:first + n], sale_ids[first:first + n]):
            sale[0], sale[8] = sale_id, transaction_id
        first += n
    bulk_insert(Sale.__table__, ("id", "order_id", "lead_id", "buyer_id", "seller_id", "price",
                                 "commission", "seller_share", "ledger_transaction_id",
                                 "created_at", "region", "batch_id"), sales)
    figures.changed(*{sale[3] for sale in sales}, *{sale[4] for sale in sales})
    bulk_insert(WebhookDelivery.__table__, ("sale_id", "order_id", "status", "attempts",
                                            "next_attempt_at", "created_at", "channel"), hooks)

    _list_people(people, listed, fills.copies, now)
    orders, capacity = _orders(fills, now)
    refused = {order_id: capacity.get(order_id, 0)
               for order_id, (_, n, _) in fills.orders.items() if capacity.get(order_id, 0) < n}
    if refused:
        raise _OrdersRefused(refused)
    # Orders this group fills up, or leaves unable to pay for one more lead, close in
    # the same transaction (rows already locked) and release the rest of their hold;
    # the others give back what they hold beyond what they may still spend.
    closing, release, releases = [], {}, []
    for order_id, (slot, n, _) in fills.orders.items():
        order = orders[order_id]
        if rules.order_finished(order, n, slot.price, slot.least):
            closing.append(order_id)
            left = order.held - n * slot.price
        else:
            after = rules.after_fills(order, rules.Ctx(keys=slot.keys, n=n, price=slot.price))
            left = rules.excess_hold(SimpleNamespace(**{**vars(order), **after}), slot.highest)
        release[order_id] = left
        if left:  # as operations.close_order would: the hold goes back
            releases.append(ledger.Movement("order_release", [
                Posting(account(AccountKind.BUYER_HELD, slot.buyer_id), -left),
                Posting(account(AccountKind.BUYER_AVAILABLE, slot.buyer_id), left)],
                memo=f"Order #{order_id}"))
    order_ids = sorted(fills.orders)
    order_rows = [(i, n, slot.revision, slot.price, release[i],
                   *(slot.keys[p] for p in rules.PERIODS))
                  for i in order_ids for slot, n, _ in [fills.orders[i]]]
    if _update(ORDERS_PG, ORDERS_SQLITE, _ORDER_NAMES, order_rows, {"now": now}) != len(order_ids):
        raise _Collision
    if closing:
        where, params = ids_in("id", sorted(closing))
        if run(f"UPDATE orders SET status = 'filled', closed_at = :now, "
               f"updated_at = :now WHERE {where}", {**params, "now": stamp(now)}
               ).rowcount != len(closing):
            raise _Collision
        events.record(events.OrdersFilled(tuple(closing)))
    if releases:
        for account_id, amount in ledger.write_transactions(releases, now)[1].items():
            deltas[account_id] = deltas.get(account_id, 0) + amount
    ledger.move_balances(deltas)
    settlement.webhook_sale_ids.extend(delivered)
    settlement.sold.extend(zip(sale_ids, (sale[2] for sale in sales),
                               (sale[5] for sale in sales), (sale[7] for sale in sales)))
    # The orders left open were checked under their locks just now (order_finished):
    # jobs.close_filled_orders need not read them again. Those with caps may have used
    # one up until its next period.
    capped = [order_id for order_id in order_ids if order_id not in closing
              and any(getattr(orders[order_id], column) is not None for column in _CAPS)]
    if capped:
        events.record(events.OrdersCapped(tuple(capped)))
