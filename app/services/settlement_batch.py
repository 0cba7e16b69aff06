"""Storing a matcher's plan many fills at a time (the fast path of SPEC §4/§5).

One transaction per group of fills, with the same rules as a single fill and its
row locks taken in the same global order (leads by id, then orders by id, then
person claims, then ledger accounts by id), so it cannot deadlock with other groups
or single fills. Under the locks the group is re-checked against the database: a
fill the database no longer allows (a lead sold out meanwhile, an order paused or
short of hold) is dropped and reported as lost, for the caller to plan again. If
anything unexpected collides (a person claimed by a concurrent worker, a sale
already there), the whole group is rolled back to its savepoint and the caller
stores those fills one at a time instead; nothing is ever half-applied.
"""
from collections import Counter, defaultdict
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError

from app.extensions import db
from app.models import (
    AccountKind, DeliveryStatus, Lead, LeadStatus, LedgerAccount, LedgerEntry,
    LedgerTransaction, Order, OrderStatus, PersonClaim, Sale, WebhookDelivery,
)
from app.services import ledger
from app.services.bulk import allocate_ids, bulk_insert

if TYPE_CHECKING:
    from app.services.matching import Candidate, Settlement, Slot


class _Collision(Exception):
    """Something a concurrent worker did that the group cannot absorb."""


def sale_key(lead_id: int, order_id: int) -> str:
    """The ledger idempotency key of a sale: a lead reaches an order at most once."""
    return f"sale:{lead_id}:{order_id}"


def store_group(pairs: list[tuple["Candidate", "Slot"]], settlement: "Settlement"
                ) -> tuple[list[tuple], list[tuple]]:
    """Store these fills in one transaction. Returns (lost, fallback): fills the
    database refused under its locks, and fills to store one at a time instead."""
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


def _locked(model, columns, ids: set[int]):
    query = sa.select(model.id, *columns).where(model.id.in_(sorted(ids))).order_by(model.id)
    if db.session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return {row[0]: row for row in db.session.execute(query)}


def _store(pairs, settlement) -> list[tuple]:
    now, today = settlement.now, settlement.today
    leads = _locked(Lead, (Lead.status, Lead.sold_count, Lead.cap, Lead.floor_price),
                    {lead.id for lead, _ in pairs})
    orders = _locked(Order, (Order.status, Order.price, Order.filled, Order.quantity, Order.held,
                             Order.expires_at, Order.daily_cap, Order.day_filled, Order.fill_day),
                     {slot.id for _, slot in pairs})
    room = {lead_id: (cap - sold if status == LeadStatus.LIVE else 0)
            for lead_id, status, sold, cap, _ in leads.values()}
    capacity = {}
    for order_id, status, price, filled, quantity, held, expires_at, cap, day_filled, fill_day in orders.values():
        open_now = status == OrderStatus.OPEN and (expires_at is None or expires_at > now)
        left = min(quantity - filled, held // price if price else quantity - filled) if open_now else 0
        if cap is not None:
            left = min(left, cap - (day_filled if fill_day == today else 0))
        capacity[order_id] = (price, max(left, 0))
    taken_by_order: Counter = Counter()
    accepted, lost = [], []
    for lead, slot in pairs:
        price, left = capacity[slot.id]
        if (room[lead.id] > 0 and price == slot.price and taken_by_order[slot.id] < left
                and leads[lead.id][4] <= price):
            room[lead.id] -= 1
            taken_by_order[slot.id] += 1
            accepted.append((lead, slot))
        else:
            lost.append((lead, slot))
    if not accepted:
        return lost
    _claim_people(accepted, now)
    _write(accepted, settlement)
    return lost


def _claim_people(accepted, now) -> None:
    """Record each (buyer, person) delivery; any claim inside its lookback is a
    collision with a concurrent worker (planning saw no such claim)."""
    by_lookback = defaultdict(dict)
    for lead, slot in accepted:
        for person in lead.person_hashes:
            by_lookback[slot.lookback][(slot.buyer_id, person)] = None
    insert = (postgresql.insert if db.session.get_bind().dialect.name == "postgresql"
              else sqlite.insert)
    table = PersonClaim.__table__
    for lookback, keys in by_lookback.items():
        rows = [{"buyer_id": buyer, "person_hash": person, "claimed_at": now}
                for buyer, person in sorted(keys)]
        statement = insert(table).on_conflict_do_update(
            index_elements=[table.c.buyer_id, table.c.person_hash],
            set_={"claimed_at": now}, where=table.c.claimed_at <= now - lookback
        ).returning(table.c.buyer_id)
        if len(db.session.execute(statement, rows).all()) != len(rows):
            raise _Collision


def _write(accepted, settlement) -> None:
    now = settlement.now
    transaction_ids = allocate_ids(LedgerTransaction.__table__, len(accepted))
    sale_ids = allocate_ids(Sale.__table__, len(accepted))
    sales, transactions, entries, hooks = [], [], [], []
    deltas: Counter = Counter()
    per_lead, per_order, prices = Counter(), Counter(), {}
    platform = settlement.account(AccountKind.PLATFORM_COMMISSION, None).id
    for (lead, slot), txn, sale_id in zip(accepted, transaction_ids, sale_ids):
        price = slot.price
        commission = settlement.commission(lead.seller_id, price)
        legs = [(settlement.account(AccountKind.BUYER_HELD, slot.buyer_id).id, -price),
                (settlement.account(AccountKind.SELLER_PENDING, lead.seller_id).id,
                 price - commission)]
        if commission:
            legs.append((platform, commission))
        for account_id, amount in legs:
            deltas[account_id] += amount
            entries.append((txn, account_id, amount))
        transactions.append((txn, "sale", sale_key(lead.id, slot.id), f"Order #{slot.id}", now))
        sales.append((sale_id, slot.id, lead.id, slot.buyer_id, lead.seller_id, price, commission,
                      price - commission, txn, now, lead.region, lead.batch_id))
        if slot.has_webhook:
            hooks.append((sale_id, slot.id, DeliveryStatus.PENDING.value, 0, now, now))
        per_lead[lead.id] += 1
        per_order[slot.id] += 1
        prices[slot.id] = price
    bulk_insert(LedgerTransaction.__table__,
                ("id", "kind", "idempotency_key", "memo", "created_at"), transactions)
    bulk_insert(LedgerEntry.__table__, ("transaction_id", "account_id", "amount"), entries)
    for account_id in sorted(deltas):  # accounts last and in id order, as single fills do
        delta = deltas[account_id]
        moved = db.session.execute(
            sa.update(LedgerAccount).where(
                LedgerAccount.id == account_id,
                sa.or_(LedgerAccount.allow_negative, LedgerAccount.balance + delta >= 0),
                sa.func.abs(LedgerAccount.balance + delta) <= ledger.MAX_BALANCE)
            .values(balance=LedgerAccount.balance + delta)
            .execution_options(synchronize_session=False)).rowcount
        if moved != 1:
            raise _Collision
    bulk_insert(Sale.__table__, ("id", "order_id", "lead_id", "buyer_id", "seller_id", "price",
                                 "commission", "seller_share", "ledger_transaction_id",
                                 "created_at", "region", "batch_id"), sales)
    leads = Lead.__table__
    db.session.execute(
        sa.update(leads).where(leads.c.id == sa.bindparam("lead_id"))
        .values(sold_count=leads.c.sold_count + sa.bindparam("n")),
        [{"lead_id": lead_id, "n": n} for lead_id, n in sorted(per_lead.items())])
    orders = Order.__table__
    db.session.execute(
        sa.update(orders).where(orders.c.id == sa.bindparam("order_id")).values(
            filled=orders.c.filled + sa.bindparam("n"),
            spent=orders.c.spent + sa.bindparam("amount"),
            held=orders.c.held - sa.bindparam("amount"),
            day_filled=sa.case((orders.c.fill_day == settlement.today,
                                orders.c.day_filled + sa.bindparam("n")), else_=sa.bindparam("n")),
            fill_day=settlement.today),
        [{"order_id": order_id, "n": n, "amount": n * prices[order_id]}
         for order_id, n in sorted(per_order.items())])
    bulk_insert(WebhookDelivery.__table__, ("sale_id", "order_id", "status", "attempts",
                                            "next_attempt_at", "created_at"), hooks)
    settlement.webhook_sale_ids.extend(hook[0] for hook in hooks)
    settlement.sale_ids.extend(sale_ids)
    settlement.touched_orders.update(per_order)
