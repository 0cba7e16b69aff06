"""Groups of fills stored while other connections write (PostgreSQL, SPEC §4 rules 2
and 6): a group reads the people's listings without locks and locks them last, with
the other rows groups share; a person another connection listed meanwhile is checked
again against that listing rather than refused outright."""
import threading
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.market import grouped, jobs, snapshot
from app.market.settle import group_key
from app.models import LedgerTransaction, PersonListing, Sale
from app.aftersale.delivery import engine
from tests.conftest import on_postgres
from tests.market_invariants import assert_market_invariants
from tests.market_helpers import funded_buyer, live_leads, person, place, sales_of, verified_seller

pytestmark = pytest.mark.skipif(not on_postgres(), reason="several connections at once")


def _listed_meanwhile(monkeypatch, person_hash: bytes, cap: int, sold: int) -> None:
    """Once, after the group has read the listings and before it writes them, another
    connection sells the person (another seller's copy) and commits."""
    claim_people = grouped._claim_people
    done = []

    def and_meanwhile(*args):
        claim_people(*args)
        if not done:
            done.append(True)
            with db.engine.connect() as other:
                other.execute(sa.insert(PersonListing).values(
                    person_hash=person_hash, cap=cap, sold=sold,
                    first_sold_at=datetime.now(timezone.utc)))
                other.commit()
    monkeypatch.setattr(grouped, "_claim_people", and_meanwhile)


def _listing(person_hash: bytes) -> tuple[int, int]:
    db.session.expire_all()
    row = db.session.get(PersonListing, person_hash)
    return row.cap, row.sold


def test_a_person_shared_meanwhile_is_sold_once_more_within_its_cap(app, monkeypatch):
    leads = live_leads(verified_seller(), [person(1)], cap=3)
    order = place(funded_buyer(), 300, 1)
    first_hash = snapshot.load_leads([leads[0].id])[0].person_hashes[0]
    _listed_meanwhile(monkeypatch, first_hash, cap=3, sold=1)
    jobs.match_leads([leads[0].id])
    [sale] = sales_of(order)
    assert _listing(first_hash) == (3, 2)  # the other buyer, then this one
    # Stored by its group, not by the one-by-one fallback a collision would cause.
    key = db.session.get(LedgerTransaction, sale.ledger_transaction_id).idempotency_key
    assert key == group_key(order.id, sale.id)


def test_a_person_sold_exclusively_meanwhile_is_not_sold_again(app, monkeypatch):
    leads = live_leads(verified_seller(), [person(1)], cap=3)
    order = place(funded_buyer(), 300, 1)
    first_hash = snapshot.load_leads([leads[0].id])[0].person_hashes[0]
    _listed_meanwhile(monkeypatch, first_hash, cap=1, sold=1)
    jobs.match_leads([leads[0].id])
    assert sales_of(order) == []
    assert _listing(first_hash) == (1, 1)


def test_groups_stored_by_either_connection_send_their_webhooks_after_their_commit(
        app, monkeypatch):
    monkeypatch.setattr(jobs, "FIRST_GROUP", 2)
    monkeypatch.setattr(jobs, "GROUP_SIZE", 2)
    sent = []  # (thread, sale ids, committed sales then)

    def deliver_sales(sale_ids):
        with db.engine.connect() as other:
            visible = other.execute(sa.select(sa.func.count()).select_from(Sale).where(
                Sale.id.in_(sale_ids))).scalar()
        sent.append((threading.current_thread().name, tuple(sale_ids), visible))
    monkeypatch.setattr(engine, "deliver_sales", deliver_sales)
    leads = live_leads(verified_seller(), [person(i) for i in range(12)])
    order = place(funded_buyer(), 300, 12, webhook_url="https://crm.example.com/leads")
    jobs.match_leads([lead.id for lead in leads])
    sales = {sale.id for sale in sales_of(order)}
    assert len(sales) == 12
    assert sorted(i for _, ids, _ in sent for i in ids) == sorted(sales)
    assert all(visible == len(ids) for _, ids, visible in sent)  # committed before sent
    assert len({thread for thread, _, _ in sent}) == jobs.WRITERS  # both connections wrote


def test_when_one_connection_fails_the_others_stop_and_the_error_is_raised(app, monkeypatch):
    monkeypatch.setattr(jobs, "FIRST_GROUP", 2)
    monkeypatch.setattr(jobs, "GROUP_SIZE", 2)
    store_group, calls = jobs.store_group, []

    def failing_second(group, *args):
        calls.append(len(group))
        if len(calls) == 2:
            raise RuntimeError("the database went away")
        return store_group(group, *args)
    monkeypatch.setattr(jobs, "store_group", failing_second)
    leads = live_leads(verified_seller(), [person(i) for i in range(40)])
    order = place(funded_buyer(), 300, 40)
    with pytest.raises(RuntimeError, match="went away"):
        jobs.match_leads([lead.id for lead in leads])
    db.session.rollback()
    # The writers stopped taking groups: far fewer than the plan's 20 were tried, and
    # what was stored is whole.
    assert len(calls) < 20
    assert len(sales_of(order)) % 2 == 0 and len(sales_of(order)) < 40
    assert_market_invariants()


def test_a_group_that_collides_reads_its_people_again(app, monkeypatch):
    """Groups start from the listings the plan read: when another connection sold a
    person meanwhile and the group collides, its halves read their people again, and
    the half with that person drops its fill rather than colliding again."""
    leads = live_leads(verified_seller(), [person(i) for i in range(20)], cap=3)
    order = place(funded_buyer(), 300, 20)
    first_hash = snapshot.load_leads([leads[0].id])[0].person_hashes[0]
    _listed_meanwhile(monkeypatch, first_hash, cap=1, sold=1)  # exclusively
    jobs.match_leads([lead.id for lead in leads])
    sales = sales_of(order)
    assert leads[0].id not in {sale.lead_id for sale in sales} and len(sales) == 19
    # Both halves stored as groups (halves of 10), none fill by fill.
    keys = {db.session.get(LedgerTransaction, sale.ledger_transaction_id).idempotency_key
            for sale in sales}
    assert all(key.startswith("sales:") for key in keys) and len(keys) == 2
    assert_market_invariants()


def test_the_end_of_a_plan_is_shared_out_between_the_writers(app, monkeypatch):
    monkeypatch.setattr(jobs, "FIRST_GROUP", 2)
    monkeypatch.setattr(jobs, "GROUP_SIZE", 8)
    monkeypatch.setattr(jobs, "TAIL_GROUP", 2)
    prepare, sizes = jobs.prepare, []

    def recorded(group, settlement, load=True):
        if not load:  # on the planner thread, as each group is cut
            sizes.append(len(group))
        return prepare(group, settlement, load)
    monkeypatch.setattr(jobs, "prepare", recorded)
    leads = live_leads(verified_seller(), [person(i) for i in range(40)])
    order = place(funded_buyer(), 300, 40)
    jobs.match_leads([lead.id for lead in leads])
    assert len(sales_of(order)) == 40
    # Full groups while more than two are planned ahead; then what is left, half each
    # time (a share per writer), the last one taking what would make a group too small.
    assert sizes == [2, 8, 8, 8, 7, 4, 3]
    assert_market_invariants()


def test_a_batch_shares_out_only_the_end_of_its_last_chunk(app, monkeypatch):
    """Each chunk of a batch is its own plan; sharing out every chunk's end would give
    the batch many small groups, each with its fixed cost."""
    monkeypatch.setattr(jobs, "FIRST_GROUP", 2)
    monkeypatch.setattr(jobs, "GROUP_SIZE", 8)
    monkeypatch.setattr(jobs, "TAIL_GROUP", 2)
    prepare, sizes = jobs.prepare, []

    def recorded(group, settlement, load=True):
        if not load:
            sizes.append(len(group))
        return prepare(group, settlement, load)
    monkeypatch.setattr(jobs, "prepare", recorded)
    leads = live_leads(verified_seller(), [person(i) for i in range(40)])
    order = place(funded_buyer(), 300, 40)
    jobs.match_batch(leads[0].batch_id, chunk=20)
    assert len(sales_of(order)) == 40
    # The first chunk in full groups (its last what was left); the second's end shared out.
    assert sizes == [2, 8, 8, 2, 2, 8, 5, 3, 2]
    assert_market_invariants()
