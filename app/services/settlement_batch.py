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
    AccountKind, Lead, LeadStatus, LedgerAccount, LedgerEntry, LedgerTransaction, Order,
    OrderStatus, PersonClaim, Sale, WebhookDelivery,
)
from app.services import ledger

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
    for lookback, keys in by_lookback.items():
        rows = [{"buyer_id": buyer, "person_hash": person, "claimed_at": now}
                for buyer, person in sorted(keys)]
        statement = insert(PersonClaim).on_conflict_do_update(
            index_elements=[PersonClaim.buyer_id, PersonClaim.person_hash],
            set_={"claimed_at": now}, where=PersonClaim.claimed_at <= now - lookback)
        for start in range(0, len(rows), 1000):
            part = rows[start:start + 1000]
            done = db.session.execute(statement.values(part).returning(PersonClaim.buyer_id)).all()
            if len(done) != len(part):
                raise _Collision


def _write(accepted, settlement) -> None:
    now = settlement.now
    sales, ledger_rows, entries = [], [], []
    deltas: Counter = Counter()
    for lead, slot in accepted:
        commission = (slot.price * settlement.rate(lead.seller_id) + 5_000) // 10_000
        held = settlement.account(AccountKind.BUYER_HELD, slot.buyer_id)
        pending = settlement.account(AccountKind.SELLER_PENDING, lead.seller_id)
        platform = settlement.account(AccountKind.PLATFORM_COMMISSION, None)
        legs = [(held.id, -slot.price), (pending.id, slot.price - commission)]
        if commission:
            legs.append((platform.id, commission))
        for account_id, amount in legs:
            deltas[account_id] += amount
        entries.append(legs)
        ledger_rows.append({"kind": "sale", "idempotency_key": sale_key(lead.id, slot.id),
                            "memo": f"Order #{slot.id}", "actor_id": None, "created_at": now})
        sales.append({"order_id": slot.id, "lead_id": lead.id, "buyer_id": slot.buyer_id,
                      "seller_id": lead.seller_id, "price": slot.price, "commission": commission,
                      "seller_share": slot.price - commission, "created_at": now})
    transaction_ids = db.session.execute(
        sa.insert(LedgerTransaction).returning(LedgerTransaction.id, sort_by_parameter_order=True),
        ledger_rows).scalars().all()
    db.session.execute(sa.insert(LedgerEntry), [
        {"transaction_id": txn, "account_id": account_id, "amount": amount}
        for txn, legs in zip(transaction_ids, entries) for account_id, amount in legs])
    for account_id in sorted(deltas):  # accounts last and in id order, as single fills do
        moved = db.session.execute(
            sa.update(LedgerAccount).where(
                LedgerAccount.id == account_id,
                sa.or_(LedgerAccount.allow_negative,
                       LedgerAccount.balance + deltas[account_id] >= 0),
                sa.func.abs(LedgerAccount.balance + deltas[account_id]) <= ledger.MAX_BALANCE)
            .values(balance=LedgerAccount.balance + deltas[account_id])
            .execution_options(synchronize_session=False)).rowcount
        if moved != 1:
            raise _Collision
    for sale, txn in zip(sales, transaction_ids):
        sale["ledger_transaction_id"] = txn
    sale_ids = db.session.execute(
        sa.insert(Sale).returning(Sale.id, sort_by_parameter_order=True), sales).scalars().all()
    per_lead, per_order = Counter(), Counter()
    for lead, slot in accepted:
        per_lead[lead.id] += 1
        per_order[slot.id] += 1
    if per_lead:
        db.session.execute(
            sa.update(Lead.__table__).where(Lead.__table__.c.id == sa.bindparam("lead_id"))
            .values(sold_count=Lead.__table__.c.sold_count + sa.bindparam("n")),
            [{"lead_id": lead_id, "n": n} for lead_id, n in sorted(per_lead.items())])
    prices = {slot.id: slot.price for _, slot in accepted}
    table = Order.__table__
    db.session.execute(
        sa.update(table).where(table.c.id == sa.bindparam("order_id")).values(
            filled=table.c.filled + sa.bindparam("n"),
            spent=table.c.spent + sa.bindparam("amount"),
            held=table.c.held - sa.bindparam("amount"),
            day_filled=sa.case((table.c.fill_day == settlement.today,
                                table.c.day_filled + sa.bindparam("n")), else_=sa.bindparam("n")),
            fill_day=settlement.today),
        [{"order_id": order_id, "n": n, "amount": n * prices[order_id]}
         for order_id, n in sorted(per_order.items())])
    hooks = [{"sale_id": sale_id, "order_id": slot.id, "next_attempt_at": now, "created_at": now}
             for sale_id, (_, slot) in zip(sale_ids, accepted) if slot.has_webhook]
    if hooks:
        db.session.execute(sa.insert(WebhookDelivery), hooks)
        settlement.webhook_sale_ids.extend(hook["sale_id"] for hook in hooks)
    settlement.sale_ids.extend(sale_ids)
    settlement.touched_orders.update(per_order)
