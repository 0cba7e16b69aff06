"""Real-time leads stored and matched by a seller process the web processes share
(REALTIME_SELLER = "process", app.market.seller_process): the same answers as the
seller thread gives (a stored lead with its sales, a duplicate's verdict), the
webhooks sent from that process, the market's rules held, one process for several
web processes, and a process that died started again by the next lead."""
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from psycopg import _queries

from app.extensions import db
from app.market import realtime, rules, seller_main
from app.market.seller_process import SellerProcess
from app.models import Lead, Sale
from tests.conftest import on_postgres
from tests.market_helpers import funded_buyer, place, verified_seller
from tests.market_invariants import assert_market_invariants
from tests.receiver import Receiver
from tests.test_realtime_groups import TERMS, answer, arrival, visitor


@pytest.fixture
def seller_process(app, monkeypatch):
    monkeypatch.setitem(app.config, "REALTIME_SELLER", "process")
    app.extensions.pop(realtime.EXTENSION, None)
    yield
    seller = app.extensions.pop(realtime.EXTENSION, None)
    if isinstance(seller, SellerProcess):
        seller.close()
        if seller.process is not None:  # it ends once no web process is connected
            seller.process.wait(30)


def post_all(app, headers, bodies):
    start = threading.Barrier(len(bodies))

    def post(body):
        with app.app_context():
            client = app.test_client()
            start.wait()
            return client.post("/api/v1/leads", headers=headers, json=body)
    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(post, bodies))


def test_leads_are_stored_sold_and_answered_by_the_seller_process(app, api_key_for, seller_process):
    crm = Receiver()
    try:
        seller, buyer = verified_seller(), funded_buyer(amount=5 * 700)  # money for 5 leads
        place(buyer, 700, quantity=5, webhook_url=crm.url)
        headers = api_key_for(seller)
        # Visitors 0-7, and visitors 0 and 1 again (their copies, posted at once).
        replies = post_all(app, headers, [{**visitor(i % 8), **TERMS} for i in range(10)])
        seller_side = app.extensions[realtime.EXTENSION]
        assert isinstance(seller_side, SellerProcess)
        assert seller_side.process.pid != os.getpid() and seller_side.process.poll() is None
        created = [r.json for r in replies if r.status_code == 201]
        refused = [r.json for r in replies if r.status_code != 201]
        assert len(created) == 8 and len(refused) == 2, [r.json for r in replies]
        assert all(r["error"]["code"] == "duplicate_own" for r in refused)  # the verdict, as is
        db.session.expire_all()
        for reply in created:  # each answer is its own, stored lead's
            lead = db.session.get(Lead, reply["id"])
            assert (reply["sold"], reply["cap"]) == (lead.sold_count, lead.cap)
            assert reply["status"] == rules.offer_status(lead.status.value, lead.sold_count,
                                                         lead.cap)
            sales = db.session.scalars(sa.select(Sale).where(Sale.lead_id == reply["id"])).all()
            assert [s["sale_id"] for s in reply["sales"]] == [s.id for s in sales]
        assert sum(len(r["sales"]) for r in created) == 5  # the money buys 5
        assert_market_invariants(expected_sales=5)
        # TASK_MODE=eager: the seller process sent each sale's webhook before answering.
        sent = sorted(json.loads(r["body"])["sale_id"] for r in crm.requests)
        assert sent == sorted(s["sale_id"] for r in created for s in r["sales"])
    finally:
        crm.close()


def one_lead_sold(app, api_key_for):
    """A lead posted and sold through the seller process: (seller, its API headers, a
    client, the web process's SellerProcess)."""
    seller = verified_seller()
    place(funded_buyer(), 700, quantity=10)
    headers = api_key_for(seller)
    client = app.test_client()
    assert client.post("/api/v1/leads", headers=headers,
                       json={**visitor(1), **TERMS}).status_code == 201
    return seller, headers, client, app.extensions[realtime.EXTENSION]


def test_a_seller_process_that_died_is_started_again(app, api_key_for, seller_process):
    _, headers, client, first = one_lead_sold(app, api_key_for)
    first.process.kill()
    first.process.wait(10)
    deadline = threading.Event()
    for _ in range(100):  # its web process's side sees the socket close
        if not first.alive:
            break
        deadline.wait(0.05)
    assert not first.alive
    reply = client.post("/api/v1/leads", headers=headers, json={**visitor(2), **TERMS})
    assert reply.status_code == 201 and len(reply.json["sales"]) == 1
    second = app.extensions[realtime.EXTENSION]
    assert second is not first and second.process.poll() is None
    assert_market_invariants(expected_sales=2)


def test_web_processes_share_one_seller_process_until_the_last_has_gone(
        app, api_key_for, seller_process):
    """A second web process (here a second SellerProcess of the same app) connects to
    the running seller process rather than starting one; each gets its own leads'
    answers; the process ends once the last web process has gone, and the next lead
    starts a new one."""
    seller, headers, client, first = one_lead_sold(app, api_key_for)
    other = SellerProcess(app)  # as the second web process does
    assert first.process is not None and other.process is None  # connected, not started
    theirs = arrival(seller, 2)
    db.session.commit()  # as realtime.sell does: no transaction held while waiting
    other.put(theirs)
    assert len(answer(theirs)["sales"]) == 1
    first.close()  # the web process that started it goes; the other still uses it
    app.extensions.pop(realtime.EXTENSION)
    assert first.process.poll() is None
    again = arrival(seller, 3)
    db.session.commit()
    other.put(again)
    assert len(answer(again)["sales"]) == 1
    other.close()
    assert first.process.wait(30) == 0
    reply = client.post("/api/v1/leads", headers=headers, json={**visitor(4), **TERMS})
    assert reply.status_code == 201 and len(reply.json["sales"]) == 1
    assert app.extensions[realtime.EXTENSION].process.pid != first.process.pid
    assert_market_invariants(expected_sales=4)


@pytest.mark.skipif(not on_postgres(), reason="psycopg's parsing of placeholders")
def test_a_seller_process_parses_a_long_statement_once():
    seller_main.parse_long_statements_once()  # as the seller process does at start
    # 64 parameters: past what psycopg keeps parsed by default (50), as a group's
    # multi-row statements are.
    statement = sa.text("SELECT " + " + ".join(f"CAST(:p{i} AS int)" for i in range(64)))
    params = {f"p{i}": i for i in range(64)}
    before = _queries._query2pg.cache_info()
    for _ in range(3):
        assert db.session.execute(statement, params).scalar() == sum(range(64))
    after = _queries._query2pg.cache_info()
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 2)


def test_the_socket_lives_in_a_directory_of_this_users_alone(app, monkeypatch, tmp_path):
    import stat
    import tempfile

    from app.market import seller_process

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    address = seller_process.address_of(app)
    private = tmp_path / f"leadx-seller-{os.getuid()}"
    assert os.path.dirname(address) == str(private)
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    with seller_process.start_lock():
        assert (private / "start.lock").exists()
    # Made by someone else first, or opened to others: neither is used.
    private.chmod(0o755)
    with pytest.raises(seller_process.SellerProcessGone, match="alone"):
        seller_process.address_of(app)
    (private / "start.lock").unlink()
    private.rmdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    private.symlink_to(elsewhere)
    with pytest.raises(seller_process.SellerProcessGone, match="alone"):
        seller_process.address_of(app)


def test_a_new_seller_process_is_waited_for_between_its_bind_and_its_listen(tmp_path):
    """A process's socket file exists from its bind(), and connecting is refused until
    its listen(): the web process that started it waits, and leaves the file alone
    (removing it, as for a dead process's file, left the new process unreachable)."""
    import subprocess
    import sys

    from app.market import seller_process

    address = str(tmp_path / "seller.sock")
    # A real peer that binds, is slow to listen (as a busy machine makes a new seller
    # process), then accepts one connection and answers on it.
    peer = subprocess.Popen([sys.executable, "-c", f"""
import socket, time
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind({address!r})
time.sleep(0.5)
server.listen(1)
server.settimeout(5)
connection, _ = server.accept()
connection.sendall(b"listening")
"""])
    try:
        ours = seller_process._wait_listening(address, peer)
        assert ours.recv(16) == b"listening"
        ours.close()
        assert os.path.exists(address)  # the peer's file, still where it bound it
        assert peer.wait(10) == 0
    finally:
        peer.kill()
