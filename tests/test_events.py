"""After-commit events (app/core/events.py): what a transaction records runs once it
commits, never if it (or the savepoint it was recorded in) rolls back; events that
ask for the same work merge; the buyer's resume and resend start their jobs only
after their commit."""
import threading
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from flask import has_request_context, request

from app.core import events
from app.extensions import db
from app.market import jobs, operations
from app.market.filters import Filters
from app.models import DeliveryStatus, OrderStatus, User, WebhookDelivery
from app.aftersale.delivery import engine
from app.services import ledger
from tests.conftest import csrf_token
from tests.market_helpers import funded_buyer, live_leads, person, place, sales_of, verified_seller
from tests.receiver import Receiver


@dataclass(frozen=True)
class Probe(events.Event):
    n: int


@pytest.fixture
def ran():
    """The Probe events whose handler ran, in order."""
    seen = []

    def handler(event):
        seen.append(event.n)

    events.on(Probe, handler)
    yield seen
    events.off(Probe, handler)


def _write():
    """Some change, so that the transaction has something to commit or roll back."""
    db.session.execute(sa.update(User).values(display_name=User.display_name))


def test_events_run_after_the_commit_and_only_then(app, ran):
    events.record(Probe(1))
    _write()
    events.record(Probe(2))
    db.session.flush()
    assert ran == []
    db.session.commit()
    assert ran == [1, 2]
    db.session.commit()
    assert ran == [1, 2]  # once


def test_an_event_of_a_rolled_back_transaction_never_runs(app, ran):
    events.record(Probe(1))  # before any statement: the transaction begins here
    _write()
    events.record(Probe(2))
    db.session.rollback()
    db.session.commit()
    assert ran == []
    events.record(Probe(3))
    db.session.close()  # neither committed nor rolled back: dropped too
    db.session.commit()
    assert ran == []


def test_an_event_of_a_rolled_back_savepoint_never_runs(app, ran):
    events.record(Probe(1))
    with pytest.raises(RuntimeError):
        with db.session.begin_nested():
            _write()
            events.record(Probe(2))
            raise RuntimeError("this fill lost a race")
    with db.session.begin_nested():
        events.record(Probe(3))
        inner = db.session.begin_nested()
        events.record(Probe(4))
        inner.rollback()
    assert ran == []  # a savepoint released is no commit
    db.session.commit()
    assert ran == [1, 3]


def test_a_released_savepoint_falls_with_its_transaction(app, ran):
    with db.session.begin_nested():
        _write()
        events.record(Probe(1))
    db.session.rollback()
    db.session.commit()
    assert ran == []


def test_muted_events_are_dropped(app, ran):
    with events.muted():
        events.record(Probe(1))
    events.record(Probe(2))
    db.session.commit()
    assert ran == [2]


def test_one_commit_fills_each_order_once(app, monkeypatch):
    filled = []
    monkeypatch.setattr(jobs, "fill_order", filled.append)
    buyer = funded_buyer(100_000)
    first, _ = operations.place_order(buyer, Filters.parse({}), operations.check_terms(300, 5))
    operations.change_terms(buyer, first.id, price=400)
    operations.set_paused(buyer, first.id, False)
    second, _ = operations.place_order(buyer, Filters.parse({}), operations.check_terms(300, 5))
    operations.change_terms(buyer, second.id, quantity=4)
    assert filled == []
    db.session.commit()
    assert filled == [first.id, second.id]


def test_one_commit_sends_its_webhooks_in_one_run(app, monkeypatch):
    runs = []
    monkeypatch.setattr(engine, "deliver_sales", runs.append)
    events.record(events.SalesMade((1, 2)))
    events.record(events.SalesMade((2, 3)))
    events.record(events.DeliveryRequested((4,)))
    db.session.commit()
    assert runs == [[1, 2, 3, 4]]


def test_email_deliveries_are_looked_for_only_after_sales_that_have_some(app, monkeypatch):
    """A commit whose sales go only to URLs does not look for email deliveries (a
    statement and a transaction per real-time group); one with a sale to an order
    delivered by email does, and so does a resend, merged or not."""
    from app.aftersale.delivery import emailing, settings

    looked = []
    monkeypatch.setattr(emailing, "deliver_sales", lambda ids: looked.append(sorted(ids)))
    monkeypatch.setattr(engine, "deliver_sales", lambda ids: None)
    buyer = funded_buyer()
    place(buyer, 700, 2, webhook_url="http://127.0.0.1:9/hook")
    sold = jobs.match_leads([lead.id for lead in live_leads(verified_seller(), [person(1)])])
    assert len(sold.webhook_sale_ids) == 1 and looked == []
    by_email = place(buyer, 800, 2)
    settings.use_email(by_email, addresses="crm@buyer.example", mode="lead", digest="daily")
    db.session.commit()
    sold = jobs.match_leads([lead.id for lead in live_leads(verified_seller(), [person(2)])])
    assert looked == [sold.webhook_sale_ids]
    events.record(events.SalesMade((5,), by_email=False))
    events.record(events.DeliveryRequested((6,)))
    db.session.commit()
    assert looked[-1] == [5, 6]


@contextmanager
def thread_mode(app):
    """Jobs go to the web process's thread pool, as in the embedded deployment."""
    app.config["TASK_MODE"] = "thread"
    try:
        yield
    finally:
        app.config["TASK_MODE"] = "eager"


class Watch:
    """Wraps a job's service function: what the job finds committed when it starts,
    read without waiting for any lock (a transaction still open is not seen).

    The request's commit waits up to a second for the job to start: a job launched
    before that commit (the bug this guards against) then reads the state it found,
    every time rather than when the threads happen to interleave so."""

    def __init__(self, monkeypatch, module, name, query, request_path):
        real = getattr(module, name)
        self.seen, self.started, self.done = [], threading.Event(), threading.Event()

        def watched(*args):
            try:
                self.seen.append(_committed(query(*args)))
                self.started.set()
                return real(*args)
            finally:
                self.done.set()

        def before_commit(session):
            if has_request_context() and request.path == request_path:
                self.started.wait(1)

        monkeypatch.setattr(module, name, watched)
        sa.event.listen(db.session, "before_commit", before_commit)
        self.stop = lambda: sa.event.remove(db.session, "before_commit", before_commit)

    def wait(self) -> list:
        try:
            assert self.done.wait(30), "the job never ran"
        finally:
            self.stop()
        return self.seen


def _committed(statement: str):
    connection = db.engine.raw_connection()
    try:
        cursor = connection.cursor()
        cursor.execute(statement)
        return cursor.fetchone()[0]
    finally:
        connection.rollback()
        connection.close()


def test_resume_starts_filling_only_after_its_commit(app, buyer_client, buyer, monkeypatch):
    ledger.manual_credit(buyer, 10_000, reason="wire", actor=None)
    db.session.commit()
    order = place(buyer, 300, 5)
    operations.set_paused(buyer, order.id, True)
    db.session.commit()
    live_leads(verified_seller(), [person(1)])
    order_id = order.id  # the job's thread must not load through this session
    watch = Watch(monkeypatch, jobs, "fill_order",
                  lambda order_id: f"SELECT status FROM orders WHERE id = {int(order_id)}",
                  f"/buyer/orders/{order_id}/resume")
    token = csrf_token(buyer_client, f"/buyer/orders/{order_id}")
    with thread_mode(app):
        buyer_client.post(f"/buyer/orders/{order_id}/resume", data={"csrf_token": token})
        assert watch.wait() == [OrderStatus.OPEN.value]
    db.session.expire_all()
    assert len(sales_of(order)) == 1


def test_resend_delivers_only_after_its_commit(app, buyer_client, buyer, monkeypatch):
    receiver = Receiver()
    try:
        ledger.manual_credit(buyer, 10_000, reason="wire", actor=None)
        db.session.commit()
        order = place(buyer, 300, 5, webhook_url=receiver.url)
        live_leads(verified_seller(), [person(1)])
        jobs.fill_order(order.id)
        db.session.commit()
        delivery = db.session.scalar(sa.select(WebhookDelivery))
        delivery.status = DeliveryStatus.FAILED  # the retries gave up; the buyer asks again
        delivery_id = delivery.id
        db.session.commit()
        sent = len(receiver.requests)
        assert sent == 1  # the sale's webhook went as the sale committed (SalesMade)
        resend = f"/buyer/orders/{order.id}/deliveries/{delivery_id}/resend"
        watch = Watch(monkeypatch, engine, "deliver_sales",
                      lambda sale_ids: "SELECT status FROM webhook_deliveries "
                                       f"WHERE id = {delivery_id}", resend)
        token = csrf_token(buyer_client, f"/buyer/orders/{order.id}")
        with thread_mode(app):
            buyer_client.post(resend, data={"csrf_token": token})
            assert watch.wait() == [DeliveryStatus.PENDING.value]
        db.session.expire_all()
        assert db.session.get(WebhookDelivery, delivery_id).status is DeliveryStatus.DELIVERED
        assert len(receiver.requests) == sent + 1
    finally:
        receiver.close()
