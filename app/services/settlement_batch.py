"""Storing a matcher's plan many fills at a time (the fast path of SPEC §4/§5).

One transaction per group of fills, with the same rules as a single fill and its
row locks taken in the same global order (leads by id, then orders by id, then
person claims, then ledger accounts by id), so it cannot deadlock with other groups
or single fills. Under the locks the group is re-checked against the database: a
fill the database no longer allows (a lead sold out meanwhile, an order paused or
short of hold) is dropped and reported as lost, for the caller to plan again. If
anything unexpected collides (a person claimed by a concurrent worker, a sale
already there), the whole group is rolled back to its savepoint and the caller
stores those fills in smaller groups instead; nothing is ever half-applied.

Every table is written by one set-based statement per group: conditional
`UPDATE ... FROM unnest(...)` for leads, orders and ledger accounts (the same
conditions as a single fill, checked again by the database's CHECK constraints), one
upsert for person claims, and COPY for ledger transactions, entries, sales and
webhook deliveries, whose ids are handed out in advance. The ledger gets one
transaction per order in the group, its entries summed per account (one transaction
per sale would write four ledger rows per sale, the most expensive part of a group).
Orders the group fills up close in it too, their leftover hold released as
orders.close_order would (closing them one transaction each afterwards cost more
than storing their sales).
On SQLite (one writer at a time, no network) the same statements run as executemany.
"""
import json
from collections import Counter, defaultdict
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError

from app.extensions import db
from app.models import (
    AccountKind, DeliveryStatus, LedgerEntry, LedgerTransaction, Sale, WebhookDelivery,
)
from app.services import ledger
from app.services.bulk import allocate_ids, bulk_insert, driver_errors, sqlite_datetime

if TYPE_CHECKING:
    from app.services.matching import Candidate, Settlement, Slot


class _Collision(Exception):
    """Something a concurrent worker did that the group cannot absorb."""


def sale_key(lead_id: int, order_id: int) -> str:
    """The ledger idempotency key of a sale: a lead reaches an order at most once."""
    return f"sale:{lead_id}:{order_id}"


def group_key(order_id: int, first_sale_id: int) -> str:
    """The ledger idempotency key of an order's sales stored together in one group."""
    return f"sales:{order_id}:{first_sale_id}"


def store_group(pairs: list[tuple["Candidate", "Slot"]], settlement: "Settlement"
                ) -> tuple[list[tuple], list[tuple]]:
    """Store these fills in one transaction. Returns (lost, fallback): fills the
    database refused under its locks, and fills to store in smaller groups instead."""
    try:
        with db.session.begin_nested():
            lost = _store(pairs, settlement)
    except (_Collision, IntegrityError):
        return [], pairs
    except OperationalError as exc:
        from app.services.matching import RETRYABLE_SQLSTATES

        if getattr(exc.orig, "sqlstate", None) in RETRYABLE_SQLSTATES:
            return [], pairs
        raise
    return lost, []


def _postgres() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def _run(sql: str, params: dict):
    return db.session.execute(sa.text(sql), params)


def _ids_in(column: str, ids: list[int]) -> tuple[str, dict]:
    """`column` is one of these ids, as one parameter whatever their number."""
    if _postgres():
        return f"{column} = ANY(CAST(string_to_array(:ids, ',') AS bigint[]))", {"ids": _csv(ids)}
    return f"{column} IN (SELECT value FROM json_each(:ids))", {"ids": json.dumps(ids)}


def _csv(numbers) -> str:
    """Numbers as one parameter, for `string_to_array` (the driver would escape a
    long list item by item)."""
    return ",".join(map(str, numbers))


def _locked(table: str, columns: str, ids: list[int], **params) -> dict:
    """The rows of these ids, locked in id order (SQLite: the transaction already
    holds the database's write lock)."""
    where, more = _ids_in("id", ids)
    params.update(more)
    lock = " FOR NO KEY UPDATE" if _postgres() else ""
    rows = _run(f"SELECT id, {columns} FROM {table} WHERE {where} ORDER BY id{lock}", params)
    return {row[0]: row for row in rows}


def _store(pairs, settlement) -> list[tuple]:
    now, today = settlement.now, settlement.today
    leads = _locked("leads", "status, sold_count, cap, floor_price",
                    sorted({lead.id for lead, _ in pairs}))
    orders = _locked("orders", "status = 'open' AND (expires_at IS NULL OR expires_at > :now), "
                     "price, filled, quantity, held, daily_cap, day_filled, fill_day",
                     sorted({slot.id for _, slot in pairs}),
                     now=now if _postgres() else sqlite_datetime(now))
    room = {lead_id: (cap - sold if status == "live" else 0)
            for lead_id, status, sold, cap, _ in leads.values()}
    capacity = {}
    for order_id, open_now, price, filled, quantity, held, cap, day_filled, fill_day \
            in orders.values():
        left = min(quantity - filled, held // price if price else quantity - filled) if open_now else 0
        if cap is not None:
            left = min(left, cap - (day_filled if fill_day == today else 0))
        capacity[order_id] = (price, max(left, 0))
    taken_by_order: Counter = Counter()
    accepted, lost = [], []
    for lead, slot in pairs:
        price, left = capacity.get(slot.id, (None, 0))
        if (room.get(lead.id, 0) > 0 and price == slot.price and taken_by_order[slot.id] < left
                and leads[lead.id][4] <= price):
            room[lead.id] -= 1
            taken_by_order[slot.id] += 1
            accepted.append((lead, slot))
        else:
            lost.append((lead, slot))
    if not accepted:
        return lost
    # Orders this group fills up, or leaves unable to pay for one more lead, close in
    # the same transaction (rows already locked) and release the rest of their hold.
    closing = {}
    for order_id, n in taken_by_order.items():
        _, _, price, filled, quantity, held, *_ = orders[order_id]
        if filled + n >= quantity or held - n * price < price:
            closing[order_id] = held - n * price
    _claim_people(accepted, now)
    _write(accepted, settlement, closing)
    return lost


_CLAIMS_PG = """
WITH claimed AS (
  INSERT INTO person_claims (buyer_id, person_hash, claimed_at)
  SELECT b, decode(h, 'hex'), :now
  FROM unnest(CAST(string_to_array(:buyers, ',') AS int[]),
              string_to_array(:hashes, ',')) AS v(b, h)
  ORDER BY 1, 2
  ON CONFLICT (buyer_id, person_hash) DO UPDATE SET claimed_at = EXCLUDED.claimed_at
  WHERE person_claims.claimed_at <= :cutoff
  RETURNING 1)
SELECT count(*) FROM claimed"""
_CLAIMS_SQLITE = """
INSERT INTO person_claims (buyer_id, person_hash, claimed_at) VALUES (:b, :h, :now)
ON CONFLICT (buyer_id, person_hash) DO UPDATE SET claimed_at = excluded.claimed_at
WHERE person_claims.claimed_at <= :cutoff"""


def _claim_people(accepted, now) -> None:
    """Record each (buyer, person) delivery; any claim inside its lookback is a
    collision with a concurrent worker (planning saw no such claim)."""
    by_lookback = defaultdict(set)
    for lead, slot in accepted:
        for person in lead.person_hashes:
            by_lookback[slot.lookback].add((slot.buyer_id, person))
    for lookback, keys in by_lookback.items():
        keys = sorted(keys)
        if _postgres():
            claimed = _run(_CLAIMS_PG, {"buyers": _csv(b for b, _ in keys),
                                        "hashes": ",".join(bytes(h).hex() for _, h in keys),
                                        "now": now, "cutoff": now - lookback}).scalar()
        else:
            stamp, cutoff = sqlite_datetime(now), sqlite_datetime(now - lookback)
            with driver_errors(_CLAIMS_SQLITE):
                claimed = _sqlite().executemany(
                    _CLAIMS_SQLITE, [{"b": b, "h": h, "now": stamp, "cutoff": cutoff}
                                     for b, h in keys]).rowcount
        if claimed != len(keys):
            raise _Collision


_LEADS_PG = """
UPDATE leads AS l SET sold_count = l.sold_count + v.n
FROM unnest(CAST(string_to_array(:id, ',') AS bigint[]), CAST(string_to_array(:n, ',') AS int[]),
            CAST(string_to_array(:low, ',') AS bigint[])) AS v(id, n, low)
WHERE l.id = v.id AND l.status = 'live' AND l.sold_count + v.n <= l.cap
  AND l.floor_price <= v.low"""
_LEADS_SQLITE = """
UPDATE leads SET sold_count = sold_count + :n
WHERE id = :id AND status = 'live' AND sold_count + :n <= cap AND floor_price <= :low"""
_ORDERS_PG = """
UPDATE orders AS o SET filled = o.filled + v.n, spent = o.spent + v.n * o.price,
  held = o.held - v.n * o.price, fill_day = :today,
  day_filled = CASE WHEN o.fill_day = :today THEN o.day_filled + v.n ELSE v.n END
FROM unnest(CAST(string_to_array(:id, ',') AS int[]), CAST(string_to_array(:n, ',') AS int[]),
            CAST(string_to_array(:price, ',') AS bigint[])) AS v(id, n, price)
WHERE o.id = v.id AND o.status = 'open' AND o.price = v.price
  AND o.filled + v.n <= o.quantity AND o.held >= v.n * o.price
  AND (o.expires_at IS NULL OR o.expires_at > :now)
  AND (o.daily_cap IS NULL
       OR (CASE WHEN o.fill_day = :today THEN o.day_filled ELSE 0 END) + v.n <= o.daily_cap)"""
_ORDERS_SQLITE = """
UPDATE orders SET filled = filled + :n, spent = spent + :n * price, held = held - :n * price,
  day_filled = CASE WHEN fill_day = :today THEN day_filled + :n ELSE :n END, fill_day = :today
WHERE id = :id AND status = 'open' AND price = :price AND filled + :n <= quantity
  AND held >= :n * price AND (expires_at IS NULL OR expires_at > :now)
  AND (daily_cap IS NULL
       OR (CASE WHEN fill_day = :today THEN day_filled ELSE 0 END) + :n <= daily_cap)"""
_ACCOUNTS_PG = """
UPDATE ledger_accounts AS a SET balance = a.balance + v.d
FROM unnest(CAST(string_to_array(:id, ',') AS int[]),
            CAST(string_to_array(:d, ',') AS bigint[])) AS v(id, d)
WHERE a.id = v.id AND (a.allow_negative OR a.balance + v.d >= 0)
  AND abs(a.balance + v.d) <= :limit"""
_ACCOUNTS_SQLITE = """
UPDATE ledger_accounts SET balance = balance + :d
WHERE id = :id AND (allow_negative OR balance + :d >= 0) AND abs(balance + :d) <= :limit"""


def _update(pg_sql: str, sqlite_sql: str, names: tuple[str, ...], rows: list[tuple],
            shared: dict) -> int:
    """One conditional UPDATE over many rows (PostgreSQL: each column as an array);
    returns how many rows it changed."""
    if _postgres():
        arrays = {name: _csv(row[i] for row in rows) for i, name in enumerate(names)}
        return _run(pg_sql, {**arrays, **shared}).rowcount
    shared = {k: sqlite_datetime(v) if isinstance(v, datetime) else v for k, v in shared.items()}
    with driver_errors(sqlite_sql):
        return _sqlite().executemany(sqlite_sql, [{**dict(zip(names, row)), **shared}
                                                  for row in rows]).rowcount


def _sqlite():
    """The raw sqlite3 connection: SQLAlchemy's per-row processing would cost more
    than the statements."""
    return db.session.connection().connection.driver_connection


def _write(accepted, settlement, closing: dict[int, int]) -> None:
    """`closing`: order id -> what its hold keeps after this group, for the orders
    the group finishes."""
    now, today = settlement.now, settlement.today
    count = len(accepted)
    # One ledger transaction per order in the group, its entries summed per account:
    # the sales are as balanced as one transaction per sale, and the ledger grows by
    # a few rows per order instead of four per sale. Each sale names its transaction.
    by_order: dict[int, list] = defaultdict(list)
    for lead, slot in accepted:
        by_order[slot.id].append((lead, slot))
    releases = {order_id: left for order_id, left in closing.items() if left}
    ids = allocate_ids(LedgerTransaction.__table__, len(by_order) + len(releases))
    transaction_ids = dict(zip(by_order, ids))
    release_ids = dict(zip(releases, ids[len(by_order):]))
    sale_ids = allocate_ids(Sale.__table__, count)
    sales, transactions, entries, hooks = [], [], [], []
    deltas: Counter = Counter()
    per_lead, lowest, per_order, prices = Counter(), {}, Counter(), {}
    platform = settlement.account(AccountKind.PLATFORM_COMMISSION, None).id
    held_of, pending_of = settlement.account_ids(AccountKind.BUYER_HELD), \
        settlement.account_ids(AccountKind.SELLER_PENDING)
    available_of = settlement.account_ids(AccountKind.BUYER_AVAILABLE)
    commission_of = settlement.commission
    taken = 0
    for order_id, fills in by_order.items():
        txn = transaction_ids[order_id]
        order_sale_ids = sale_ids[taken:taken + len(fills)]
        taken += len(fills)
        amounts: Counter = Counter()
        for (lead, slot), sale_id in zip(fills, order_sale_ids):
            price, buyer, seller = slot.price, slot.buyer_id, lead.seller_id
            commission = commission_of(seller, price)
            share = price - commission
            amounts[held_of(buyer)] -= price
            amounts[pending_of(seller)] += share
            amounts[platform] += commission
            sales.append((sale_id, order_id, lead.id, buyer, seller, price, commission, share,
                          txn, now, lead.region, lead.batch_id))
            if slot.has_webhook:
                hooks.append((sale_id, order_id, DeliveryStatus.PENDING.value, 0, now, now))
            per_lead[lead.id] += 1
            lowest[lead.id] = min(price, lowest.get(lead.id, price))
        per_order[order_id] = len(fills)
        prices[order_id] = fills[0][1].price
        transactions.append((txn, "sale", group_key(order_id, order_sale_ids[0]),
                             f"Order #{order_id}: {len(fills)} lead(s)", now))
        for account_id, amount in amounts.items():
            if amount:
                entries.append((txn, account_id, amount))
                deltas[account_id] += amount
        if order_id in releases:  # as orders.close_order would: the hold goes back
            left, buyer, release = releases[order_id], fills[0][1].buyer_id, release_ids[order_id]
            transactions.append((release, "order_release", None, f"Order #{order_id}", now))
            for account_id, amount in ((held_of(buyer), -left), (available_of(buyer), left)):
                entries.append((release, account_id, amount))
                deltas[account_id] += amount
    lead_ids = sorted(per_lead)
    if _update(_LEADS_PG, _LEADS_SQLITE, ("id", "n", "low"),
               [(i, per_lead[i], lowest[i]) for i in lead_ids], {}) != len(lead_ids):
        raise _Collision
    order_ids = sorted(per_order)
    if _update(_ORDERS_PG, _ORDERS_SQLITE, ("id", "n", "price"),
               [(i, per_order[i], prices[i]) for i in order_ids],
               {"today": today, "now": now}) != len(order_ids):
        raise _Collision
    if closing:
        where, params = _ids_in("id", sorted(closing))
        if _run(f"UPDATE orders SET status = 'filled', held = 0, closed_at = :now, "
                f"updated_at = :now WHERE {where}",
                {**params, "now": now if _postgres() else sqlite_datetime(now)}
                ).rowcount != len(closing):
            raise _Collision
    bulk_insert(LedgerTransaction.__table__,
                ("id", "kind", "idempotency_key", "memo", "created_at"), transactions)
    bulk_insert(LedgerEntry.__table__, ("transaction_id", "account_id", "amount"), entries)
    bulk_insert(Sale.__table__, ("id", "order_id", "lead_id", "buyer_id", "seller_id", "price",
                                 "commission", "seller_share", "ledger_transaction_id",
                                 "created_at", "region", "batch_id"), sales)
    bulk_insert(WebhookDelivery.__table__, ("sale_id", "order_id", "status", "attempts",
                                            "next_attempt_at", "created_at"), hooks)
    # Accounts last and in id order, as single fills lock them.
    account_ids = sorted(deltas)
    _locked("ledger_accounts", "balance", account_ids)
    if _update(_ACCOUNTS_PG, _ACCOUNTS_SQLITE, ("id", "d"),
               [(i, deltas[i]) for i in account_ids],
               {"limit": ledger.MAX_BALANCE}) != len(account_ids):
        raise _Collision
    settlement.webhook_sale_ids.extend(hook[0] for hook in hooks)
    settlement.sale_ids.extend(sale_ids)
    settlement.touched_orders.update(set(per_order) - set(closing))
