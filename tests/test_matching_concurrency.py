"""Several processes match the same leads and orders at once (SPEC §4 rule 6).

Runs on the suite's database: a SQLite file in the SQLite run, PostgreSQL (READ
COMMITTED, row locks) in the PostgreSQL run. Afterwards every invariant is checked
from the database alone: no lead past its cap, no order past its quantity, budget or
hold, no person twice to one buyer within the lookback, money where it should be."""
import multiprocessing
import random
from collections import Counter, defaultdict
from datetime import timedelta

import sqlalchemy as sa

from app.extensions import db
from app.errors import InsufficientFunds
from app.models import AccountKind, Lead, LedgerAccount, Order, OrderStatus, Sale, User
from app.services import ledger, orders
from app.services.matching import person_hashes
from tests.market_helpers import funded_buyer, live_leads, person, place, verified_seller

PROCESSES = 4
SELLERS = 3
PEOPLE_PER_SELLER = 500  # the sellers' lists overlap: the same person from two sellers
BUYERS = 12
ORDERS_PER_BUYER = 8


def _compete(database_url: str, lead_ids: list[int], order_ids: list[int], seed: int,
             start, results) -> None:
    from app import create_app
    from app.services import matching

    app = create_app("testing", SQLALCHEMY_DATABASE_URI=database_url)
    rng = random.Random(seed)
    sold = 0
    with app.app_context():
        start.wait()
        leads = lead_ids[:]
        rng.shuffle(leads)
        for begin in range(0, len(leads), 250):
            sold += len(matching.match_leads(leads[begin:begin + 250]).sale_ids)
            if rng.random() < 0.3:
                sold += len(matching.fill_order(rng.choice(order_ids)).sale_ids)
            db.session.commit()
    results.put(sold)


def _market():
    rng = random.Random(7)
    regions = ["US-CA", "US-NY", "US-TX"]
    for s in range(SELLERS):
        seller = verified_seller()
        first = s * PEOPLE_PER_SELLER // 2
        people = [person(i, region=rng.choice(regions), gender=rng.choice("fm"),
                         age=str(rng.randrange(18, 80)))
                  for i in range(first, first + PEOPLE_PER_SELLER)]
        live_leads(seller, people, cap=1 + s, floor_price=rng.choice([0, 200, 400]))
    for _ in range(BUYERS):
        buyer = funded_buyer(rng.randrange(20_000, 120_000))
        for _ in range(ORDERS_PER_BUYER):
            filters = rng.choice([{}, {"genders": ["f"]}, {"regions": [rng.choice(regions)]},
                                  {"age_min": 30, "age_max": 60}, {"exclusive_only": True}])
            try:
                place(buyer, rng.randrange(100, 900), rng.randrange(5, 60), filters=filters,
                      budget=rng.choice([None, 5_000]), lookback_days=rng.choice([0, 30]))
            except InsufficientFunds:  # this buyer's money is all held already
                db.session.rollback()
                break


def test_concurrent_matching_keeps_every_invariant(app, database_url):
    _market()
    lead_ids = list(db.session.scalars(sa.select(Lead.id)))
    order_ids = list(db.session.scalars(sa.select(Order.id)))
    db.session.commit()

    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    workers = [ctx.Process(target=_compete, args=(database_url, lead_ids, order_ids, seed,
                                                  start, results)) for seed in range(PROCESSES)]
    for worker in workers:
        worker.start()
    start.set()
    reported = sum(results.get(timeout=300) for _ in workers)
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    db.session.expire_all()

    sales = db.session.scalars(sa.select(Sale)).all()
    assert reported == len(sales) > 100  # every fill a process reported is in the database
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
        assert sale.price == order.price >= lead.floor_price
        assert sale.commission + sale.seller_share == sale.price
        assert not order.filters.get("exclusive_only") or lead.cap == 1
        filters = orders.Filters.parse(order.filters)
        assert filters.matches(lead, sale.created_at)
        for identity in person_hashes(lead.email_hash, lead.phone_hash):
            for earlier in seen[(sale.buyer_id, identity)]:
                assert sale.created_at - earlier >= timedelta(days=order.lookback_days)
            seen[(sale.buyer_id, identity)].append(sale.created_at)

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
            assert order.held == orders.max_spend(order.price, order.remaining, budget_left)
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
    assert ledger.reconcile().ok
