"""Every rule of SPEC §4 and §5, checked from the database alone after any history."""
from collections import Counter, defaultdict
from datetime import timedelta
from typing import Optional
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from app.extensions import db
from app.models import (
    AccountKind, Lead, LedgerAccount, LedgerEntry, LedgerTransaction, Order, OrderStatus, Sale,
    User,
)
from app.services import ledger
from app.market import rules, schedule
from app.market.filters import Filters
from app.market.book import person_hashes


def assert_market_invariants(expected_sales: Optional[int] = None) -> None:
    db.session.expire_all()
    sales = db.session.scalars(sa.select(Sale)).all()
    if expected_sales is not None:
        assert len(sales) == expected_sales  # every fill reported is in the database
    leads = {lead.id: lead for lead in db.session.scalars(sa.select(Lead))}
    all_orders = {o.id: o for o in db.session.scalars(sa.select(Order))}

    per_lead = Counter(s.lead_id for s in sales)
    for lead_id, count in per_lead.items():
        assert leads[lead_id].sold_count == count <= leads[lead_id].cap
    assert all(lead.sold_count == per_lead.get(lead.id, 0) for lead in leads.values())
    assert len({(s.buyer_id, s.lead_id) for s in sales}) == len(sales)

    seen = defaultdict(list)  # (buyer, person) -> sale times
    for sale in sorted(sales, key=lambda s: s.created_at):
        lead, order = leads[sale.lead_id], all_orders[sale.order_id]
        assert sale.price >= lead.floor_price  # at the order's price then: it may change since
        assert sale.commission + sale.seller_share == sale.price
        assert not order.filters.get("exclusive_only") or lead.cap == 1
        filters = Filters.parse(order.filters)
        assert filters.matches(lead, sale.created_at)
        for identity in person_hashes(lead.email_hash, lead.phone_hash):
            for earlier in seen[(sale.buyer_id, identity)]:
                assert sale.created_at - earlier >= timedelta(days=order.lookback_days)
            seen[(sale.buyer_id, identity)].append(sale.created_at)

    # Caps and exclusivity are about the person (§4 rule 2): within the window after a
    # person's first sale, at most the first copy's cap of buyers, and an exclusive copy
    # (cap 1) sold only as the person's one sale. In the order the sales were stored
    # (their ids): concurrent workers stamp their sales with their own start time.
    window = timedelta(days=30)
    for identity in {i for lead in leads.values()
                     for i in person_hashes(lead.email_hash, lead.phone_hash)}:
        sold = sorted((s for s in sales if identity in person_hashes(
            leads[s.lead_id].email_hash, leads[s.lead_id].phone_hash)), key=lambda s: s.id)
        while sold:
            first = sold[0]
            inside = [s for s in sold if s.created_at - first.created_at < window]
            assert len({s.buyer_id for s in inside}) <= leads[first.lead_id].cap
            assert len(inside) == 1 or all(leads[s.lead_id].cap > 1 for s in inside)
            sold = sold[len(inside):]

    # Caps per period and schedules (§4): each period of the order's time zone holds at
    # most its caps, and every sale was made inside a window, at its price if it has
    # one (as the order's terms are now: these histories never lower a cap or change a
    # schedule once the order took leads).
    per_period = defaultdict(list)
    for sale in sales:
        order = all_orders[sale.order_id]
        for period, key in rules.period_keys(sale.created_at, order.timezone).items():
            per_period[(order.id, period, key)].append(sale.price)
        windows = schedule.stored(order.schedule)
        if windows:
            minute = schedule.minute_of_week(sale.created_at.astimezone(ZoneInfo(order.timezone)))
            (window,) = [w for w in windows if w.covers(minute)]
            assert window.price is None or sale.price == window.price
    for (order_id, period, _), prices in per_period.items():
        order = all_orders[order_id]
        cap, spend_cap = getattr(order, f"cap_{period}"), getattr(order, f"spend_cap_{period}")
        assert cap is None or len(prices) <= cap
        assert spend_cap is None or sum(prices) <= spend_cap

    per_order = defaultdict(list)
    for sale in sales:
        per_order[sale.order_id].append(sale.price)
    held_by_buyer = Counter()
    for order in all_orders.values():
        prices = per_order[order.id]
        assert order.filled == len(prices) <= order.quantity
        assert order.spent == sum(prices)
        assert order.budget is None or order.spent <= order.budget
        if order.status in (OrderStatus.OPEN, OrderStatus.PAUSED):
            budget_left = None if order.budget is None else order.budget - order.spent
            # Exactly what it may still spend: a lead bought below the highest price
            # gave the difference back with the fill.
            assert order.held == rules.max_spend(rules.price_range(order)[1],
                                                 order.remaining, budget_left)
        else:
            assert order.held == 0
        held_by_buyer[order.buyer_id] += order.held

    for account in db.session.scalars(sa.select(LedgerAccount)):
        if account.kind is AccountKind.BUYER_HELD:
            assert account.balance == held_by_buyer[account.user_id]
        if not account.allow_negative:
            assert account.balance >= 0
    seller_share = Counter()
    for sale in sales:
        seller_share[sale.seller_id] += sale.seller_share
    for seller_id, share in seller_share.items():
        assert ledger.balance_for(db.session.get(User, seller_id)).pending == share
    assert_sales_on_ledger(sales)
    assert ledger.reconcile().ok


def assert_sales_on_ledger(sales: list[Sale]) -> None:
    """Each sale names a sale transaction, and each sale transaction holds exactly
    what its sales moved: the price out of the buyer's hold, the share into the
    seller's pending balance, the commission to the platform."""
    accounts = {a.id: a for a in db.session.scalars(sa.select(LedgerAccount))}
    expected: dict[int, Counter] = defaultdict(Counter)
    for sale in sales:
        assert sale.ledger_transaction_id is not None
        moved = expected[sale.ledger_transaction_id]
        moved[(AccountKind.BUYER_HELD, sale.buyer_id)] -= sale.price
        moved[(AccountKind.SELLER_PENDING, sale.seller_id)] += sale.seller_share
        moved[(AccountKind.PLATFORM_COMMISSION, None)] += sale.commission
    sale_transactions = set(db.session.scalars(
        sa.select(LedgerTransaction.id).where(LedgerTransaction.kind == "sale")))
    assert sale_transactions == set(expected)
    actual: dict[int, Counter] = defaultdict(Counter)
    for transaction_id, account_id, amount in db.session.execute(
            sa.select(LedgerEntry.transaction_id, LedgerEntry.account_id, LedgerEntry.amount)
            .where(LedgerEntry.transaction_id.in_(sale_transactions))):
        account = accounts[account_id]
        actual[transaction_id][(account.kind, account.user_id)] += amount
    for transaction_id, moved in expected.items():
        # Counters compare missing keys as 0: a zero commission has no entry.
        assert actual[transaction_id] == moved, transaction_id
