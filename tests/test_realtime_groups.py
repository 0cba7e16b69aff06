"""Real-time leads stored and matched in groups (app.market.realtime): each request
gets its own lead's verdict; duplicates within a group are refused like duplicates of
stored leads; money, quantities and the one-person-once rule hold when groups of
several seller threads (several web processes) sell at once."""
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.market import realtime
from app.models import Batch, DeliveryAttempt, DeliveryStatus, Lead, Sale, User, WebhookDelivery
from app.services.crypto import current_vault
from app.services.ingest import pipeline
from app.services.ingest.realtime import LeadRejected, validate_lead
from tests.market_helpers import funded_buyer, place, verified_seller
from tests.market_invariants import assert_market_invariants
from tests.receiver import Receiver

TERMS = dict(default_country="US", floor_price=100, cap=1)


def visitor(i: int, **fields) -> dict:
    return {"email": f"visitor{i}@mail.example.com", "first_name": "Vera", "age": 30 + i % 40,
            "region": "CA", "consent_at": "2026-12-01T10:00:00Z", "sub_id": f"v{i}",
            "source_url": "https://landing.example.com/offer", **fields}


def arrival(seller: User, i: int, cap: int = 1, **fields) -> realtime.Arrival:
    terms = pipeline.check_terms(**{**TERMS, "cap": cap})
    return realtime.Arrival(seller.id, validate_lead(seller, visitor(i, **fields), terms), terms)


def answer(a: realtime.Arrival):
    try:
        return a.answer.result(timeout=30)
    except LeadRejected as verdict:
        return verdict


def test_a_group_answers_each_lead_and_refuses_a_copy_within_it():
    seller, buyer = verified_seller(), funded_buyer()
    order = place(buyer, 700, quantity=2)
    group = [arrival(seller, 1), arrival(seller, 2), arrival(seller, 1, first_name="Copy"),
             arrival(seller, 3)]
    realtime.sell_group(group)
    first, second, copy, third = (answer(a) for a in group)
    assert isinstance(copy, LeadRejected) and copy.code == "duplicate_own"
    stored = [first, second, third]
    assert len({r["id"] for r in stored}) == 3
    for i, reply in zip((1, 2, 3), stored):  # each answer is its own lead's
        assert db.session.get(Lead, reply["id"]).sub_id == f"v{i}"
        sales = db.session.scalars(sa.select(Sale).where(Sale.lead_id == reply["id"])).all()
        assert [s["sale_id"] for s in reply["sales"]] == [s.id for s in sales]
    assert sum(len(r["sales"]) for r in stored) == 2  # the order's quantity
    assert all(s.order_id == order.id and s.price == 700 for s in db.session.scalars(sa.select(Sale)))
    batch = db.session.scalar(sa.select(Batch).where(Batch.seller_id == seller.id))
    assert (batch.rows_total, batch.accepted) == (3, 3)
    assert sorted(db.session.scalars(sa.select(Lead.row_number))) == [1, 2, 3]
    assert_market_invariants(expected_sales=2)


def test_one_leads_failure_is_its_own_not_its_groups():
    seller, buyer = verified_seller(), funded_buyer()
    place(buyer, 700, quantity=10)
    good = arrival(seller, 1)
    gone = realtime.Arrival(10**9, good.row, good.terms)  # a seller that does not exist
    later = arrival(seller, 2)
    realtime.sell_group([good, gone, later])
    assert isinstance(gone.answer.exception(timeout=5), Exception)
    assert len(answer(good)["sales"]) == 1 and len(answer(later)["sales"]) == 1
    assert_market_invariants(expected_sales=2)


def test_leads_arriving_while_a_group_is_sold_are_sold_together(app, monkeypatch):
    seller, buyer = verified_seller(), funded_buyer()
    place(buyer, 700, quantity=100)
    sizes, busy = [], threading.Event()
    sell_group = realtime.sell_group

    def recorded(group):
        sizes.append(len(group))
        if len(sizes) == 1:
            busy.wait(10)  # the first group takes a while: the others queue meanwhile
        sell_group(group)
    monkeypatch.setattr(realtime, "sell_group", recorded)
    thread = realtime.SellerThread(app)
    arrivals = [arrival(seller, i) for i in range(6)]
    db.session.commit()
    thread.put(arrivals[0])
    while not sizes:
        threading.Event().wait(0.01)
    for a in arrivals[1:]:
        thread.put(a)
    busy.set()
    assert all(len(answer(a)["sales"]) == 1 for a in arrivals)
    assert sizes == [1, 5]
    assert_market_invariants(expected_sales=6)


def test_a_groups_webhooks_go_together_and_each_is_logged_as_its_own():
    """The sales of one group are delivered in one run (engine.deliver_sales): each
    delivery still gets its own request, attempt log and state, so one buyer's failing
    endpoint leaves the other's deliveries delivered."""
    crm, down = Receiver(), Receiver(status=503)
    try:
        seller = verified_seller()
        good = place(funded_buyer(), 700, quantity=10, webhook_url=crm.url)
        bad = place(funded_buyer(), 600, quantity=10, webhook_url=down.url)
        group = [arrival(seller, i, cap=2) for i in range(4)]  # each lead to both orders
        realtime.sell_group(group)
        assert all(len(answer(a)["sales"]) == 2 for a in group)
        db.session.expire_all()
        deliveries = db.session.scalars(sa.select(WebhookDelivery)).all()
        assert len(deliveries) == 8
        for delivery in deliveries:
            ok = delivery.order_id == good.id
            assert delivery.attempts == 1
            assert delivery.status is (DeliveryStatus.DELIVERED if ok else DeliveryStatus.PENDING)
            assert delivery.last_error == (None if ok else "127.0.0.1 answered HTTP 503")
            assert delivery.last_status_code == (200 if ok else 503)
            assert (delivery.delivered_at is not None) is ok
            assert (delivery.next_attempt_at > delivery.created_at) is not ok  # a retry set
        attempts = db.session.scalars(sa.select(DeliveryAttempt)).all()
        assert len(attempts) == 8
        for attempt in attempts:  # the request as sent, and the reply, encrypted
            assert attempt.method == "webhook" and attempt.milliseconds >= 0
            assert attempt.status_code in (200, 503)
            assert (attempt.error is None) is (attempt.status_code == 200)
            assert current_vault().decrypt(attempt.request_enc).startswith("POST http://")
            assert b"POST" not in attempt.request_enc
        sent = sorted(json.loads(r["body"])["sale_id"] for r in crm.requests)
        assert sent == sorted(s.id for s in db.session.scalars(
            sa.select(Sale).where(Sale.order_id == good.id)))
        assert len(down.requests) == 4 and bad.id != good.id
    finally:
        crm.close()
        down.close()


def test_concurrent_posts_never_overspend_and_each_gets_its_own_verdict(app, api_key_for):
    seller, buyer = verified_seller(), funded_buyer(amount=7 * 700)  # money for 7 leads
    place(buyer, 700, quantity=7)
    headers = api_key_for(seller)
    start = threading.Barrier(12)

    def post(i: int):
        # Visitors 0-9, and visitors 0 and 1 again (their copies, posted at once).
        body = {**visitor(i % 10), **TERMS}
        with app.app_context():
            client = app.test_client()
            start.wait()
            return i, client.post("/api/v1/leads", headers=headers, json=body)
    with ThreadPoolExecutor(max_workers=12) as pool:
        replies = list(pool.map(post, range(12)))
    created = [(i, r.json) for i, r in replies if r.status_code == 201]
    refused = [r.json for _, r in replies if r.status_code != 201]
    assert len(created) == 10 and len(refused) == 2, [r.json for _, r in replies]
    assert all(r["error"]["code"] == "duplicate_own" for r in refused)
    for i, reply in created:
        assert db.session.get(Lead, reply["id"]).sub_id == f"v{i % 10}"
    assert sum(len(reply["sales"]) for _, reply in created) == 7
    assert_market_invariants(expected_sales=7)


@pytest.mark.skipif(not __import__("tests.conftest").conftest.on_postgres(),
                    reason="several connections at once")
def test_seller_threads_of_several_processes_sell_at_once(app):
    """Two seller threads (as two web processes have) get the same seller's leads at
    once, copies of the same people among them: each person is stored once, the
    buyer's money buys exactly what it can, and the ledger balances."""
    seller = verified_seller()
    buyers = [funded_buyer(amount=20 * 700), funded_buyer(amount=15 * 800)]
    place(buyers[0], 700, quantity=20)
    place(buyers[1], 800, quantity=15)
    threads = [realtime.SellerThread(app), realtime.SellerThread(app)]
    arrivals = [(threads[i % 2], arrival(seller, i % 60)) for i in range(120)]
    db.session.commit()
    for thread, a in arrivals:
        thread.put(a)
    results = [answer(a) for _, a in arrivals]
    accepted = [r for r in results if not isinstance(r, LeadRejected)]
    assert len(accepted) == 60 and len({r["id"] for r in accepted}) == 60
    assert all(r.code == "duplicate_own" for r in results if isinstance(r, LeadRejected))
    assert sum(len(r["sales"]) for r in accepted) == 35  # 20 + 15: all the money held, no more
    assert_market_invariants(expected_sales=35)


@pytest.mark.skipif(not __import__("tests.conftest").conftest.on_postgres(),
                    reason="several connections at once")
def test_the_days_first_leads_from_two_processes_share_one_batch(app):
    """Two processes' first leads of the day: one creates the day's batch while the
    other waits on the unique key, then stores into that batch (it once answered 500)."""
    from app.services.ingest import realtime as ingest

    seller = verified_seller()
    terms = pipeline.check_terms(**TERMS)
    rows = [validate_lead(seller, visitor(i), terms) for i in (1, 2)]
    db.session.commit()
    created, stored = threading.Event(), []

    def first():
        with app.app_context():
            stored.append(ingest.store_leads(db.session.get(User, seller.id),
                                             [(rows[0], terms)])[0].id)
            created.set()
            threading.Event().wait(0.5)  # the other process's insert waits on the key
            db.session.commit()

    def second():
        with app.app_context():
            created.wait(10)
            stored.append(ingest.store_leads(db.session.get(User, seller.id),
                                             [(rows[1], terms)])[0].id)
            db.session.commit()

    with ThreadPoolExecutor(2) as pool:
        for done in [pool.submit(first), pool.submit(second)]:
            done.result(timeout=30)
    db.session.expire_all()
    batches = db.session.scalars(sa.select(Batch).where(Batch.seller_id == seller.id)).all()
    assert len(batches) == 1 and batches[0].accepted == 2
    assert {db.session.get(Lead, i).batch_id for i in stored} == {batches[0].id}
