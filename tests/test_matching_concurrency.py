"""Several processes match the same leads and orders at once (SPEC §4 rule 6).

Runs on the suite's database: a SQLite file in the SQLite run, PostgreSQL (READ
COMMITTED, row locks) in the PostgreSQL run. Afterwards every invariant is checked
from the database alone: no lead past its cap, no order past its quantity, budget or
hold, no person twice to one buyer within the lookback, money where it should be."""
import multiprocessing
import random

import sqlalchemy as sa

from app.errors import InsufficientFunds
from app.extensions import db
from app.models import Lead, Order
from tests.market_helpers import funded_buyer, live_leads, person, place, verified_seller
from tests.market_invariants import assert_market_invariants

PROCESSES = 4
SELLERS = 3
PEOPLE_PER_SELLER = 500  # the sellers' lists overlap: the same person from two sellers
BUYERS = 12
ORDERS_PER_BUYER = 8


def _compete(database_url: str, lead_ids: list[int], order_ids: list[int], seed: int,
             start, results) -> None:
    from app import create_app
    from app.market import jobs

    app = create_app("testing", SQLALCHEMY_DATABASE_URI=database_url)
    rng = random.Random(seed)
    sold = 0
    with app.app_context():
        start.wait()
        leads = lead_ids[:]
        rng.shuffle(leads)
        for begin in range(0, len(leads), 250):
            sold += len(jobs.match_leads(leads[begin:begin + 250]).sale_ids)
            if rng.random() < 0.3:
                sold += len(jobs.fill_order(rng.choice(order_ids)).sale_ids)
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
                # Some orders cap their hour and day, in leads or spend: the workers
                # race on those counters as on the quantity.
                place(buyer, rng.randrange(100, 900), rng.randrange(5, 60), filters=filters,
                      budget=rng.choice([None, 5_000]), lookback_days=rng.choice([0, 30]),
                      caps=rng.choice([{}, {}, {"hour": 4}, {"day": 7, "week": 9}]),
                      spend_caps=rng.choice([{}, {}, {"hour": 2_500}]),
                      timezone=rng.choice(["UTC", "Asia/Tokyo"]))
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

    assert_market_invariants(expected_sales=reported)
    assert reported > 100
