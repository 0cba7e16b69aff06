"""The exchange's promise (SPEC §4 rules 1–4 and §5 settlement), one test per rule."""
import functools
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from app.errors import InsufficientFunds, ValidationFailed
from app.extensions import db
from app.models import AuditEvent, Lead, LedgerEntry, LedgerTransaction, Order, OrderStatus
from app.services import ledger
from app.market import book, jobs, operations, rules, settle, snapshot
from app.market.book import Claims, allocate
from app.market.filters import Filters
from tests.conftest import on_postgres
from tests.market_invariants import assert_market_invariants
from tests.market_helpers import (
    consented, funded_buyer, live_leads, person, place, sales_of, verified_seller,
)


def _match(leads):
    jobs.match_leads([lead.id for lead in leads])
    db.session.commit()
    db.session.expire_all()


def test_price_priority_then_time_priority(app):
    seller = verified_seller()
    cheap = place(funded_buyer(), 100, 5)
    early = place(funded_buyer(), 300, 5)
    late = place(funded_buyer(), 300, 5)
    leads = live_leads(seller, [person(1)])
    _match(leads)
    assert [len(sales_of(o)) for o in (cheap, early, late)] == [0, 1, 0]


def test_a_lead_goes_to_at_most_cap_buyers_never_twice_to_one(app):
    seller = verified_seller()
    buyer = funded_buyer()
    twice = [place(buyer, 500, 5), place(buyer, 400, 5)]
    others = [place(funded_buyer(), price, 5) for price in (300, 200, 100)]
    lead = live_leads(seller, [person(1)], cap=3)[0]
    _match([lead])
    assert [len(sales_of(o)) for o in twice] == [1, 0]  # the same buyer's second order skipped
    assert [len(sales_of(o)) for o in others] == [1, 1, 0]
    assert db.session.get(Lead, lead.id).sold_count == 3


def test_never_below_the_floor_price(app):
    seller = verified_seller()
    low = place(funded_buyer(), 199, 5)
    leads = live_leads(seller, [person(1)], floor_price=200)
    _match(leads)
    assert sales_of(low) == []
    high = place(funded_buyer(), 200, 5)
    jobs.fill_order(high.id)
    db.session.commit()
    assert len(sales_of(high)) == 1


def test_an_order_never_takes_more_than_its_quantity_or_budget(app):
    seller = verified_seller()
    by_quantity = place(funded_buyer(), 300, 2)
    leads = live_leads(seller, [person(i) for i in range(5)])
    _match(leads)
    assert len(sales_of(by_quantity)) == 2
    assert db.session.get(Order, by_quantity.id).status is OrderStatus.FILLED
    by_budget = place(funded_buyer(), 250, 10, budget=700)
    jobs.fill_order(by_budget.id)
    db.session.commit()
    order = db.session.get(Order, by_budget.id)
    assert (order.filled, order.spent, order.status) == (2, 500, OrderStatus.FILLED)
    balance = ledger.balance_for(order.buyer)
    assert (balance.held, balance.available) == (0, 1_000_000 - 500)  # the unspendable 200 back
    release = db.session.execute(
        sa.select(LedgerTransaction.memo, sa.func.sum(LedgerEntry.amount))
        .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .where(LedgerTransaction.kind == "order_release", LedgerEntry.amount > 0)
        .group_by(LedgerTransaction.id)).all()
    assert release == [(f"Order #{order.id}", 200)]


def test_an_order_cannot_hold_money_the_buyer_does_not_have(app):
    buyer = funded_buyer(999)
    with pytest.raises(InsufficientFunds) as exc:
        place(buyer, 100, 10)
    assert "you have $9.99 available. Top up at least $0.01" in exc.value.message
    db.session.rollback()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Order)) == 0
    assert ledger.balance_for(buyer).available == 999


def test_new_order_fills_from_inventory_freshest_first(app):
    seller = verified_seller()
    live_leads(seller, [person(1, consent_at=consented(9)), person(2, consent_at=consented(1)),
                        person(3, consent_at=consented(5))])
    order = place(funded_buyer(), 300, 2)
    jobs.fill_order(order.id)
    db.session.commit()
    rows = [db.session.get(Lead, s.lead_id).row_number for s in sales_of(order)]
    assert rows == [3, 4]  # consented 1 and 5 days ago; the 9-day-old lead waits


def test_same_person_from_another_seller_is_not_delivered_twice_in_the_lookback(app):
    buyer = funded_buyer()
    order = place(buyer, 300, 5)
    first = live_leads(verified_seller(), [person(1)], cap=2)  # shared: others may buy
    _match(first)
    copy = live_leads(verified_seller(), [person(1, email="other@mail.example.com")], cap=2)
    _match(copy)
    assert len(sales_of(order)) == 1  # same phone: the same person
    fresh_buyer_order = place(funded_buyer(), 100, 5)
    jobs.fill_order(fresh_buyer_order.id)
    db.session.commit()
    assert len(sales_of(fresh_buyer_order)) == 1  # another buyer may have the copy


def test_filters_are_respected(app):
    seller = verified_seller()
    people = [person(1, age="25", gender="f", region="US-CA"),
              person(2, age="45", gender="m", region="US-NY"),
              person(3, age="30", gender="f", region="US-NY", email="")]
    live_leads(seller, people)
    order = place(funded_buyer(), 300, 10, filters={
        "age_min": 20, "age_max": 40, "genders": ["f"], "regions": ["US-NY", "US-CA"],
        "require": "email"})
    jobs.fill_order(order.id)
    db.session.commit()
    assert [db.session.get(Lead, s.lead_id).row_number for s in sales_of(order)] == [2]


def test_exclusive_only_orders_take_only_cap_one_leads(app):
    seller = verified_seller()
    live_leads(seller, [person(1)], cap=2)
    exclusive = place(funded_buyer(), 300, 5, filters={"exclusive_only": True})
    jobs.fill_order(exclusive.id)
    db.session.commit()
    assert sales_of(exclusive) == []


def test_daily_cap_and_delivery_hours(app):
    seller = verified_seller()
    live_leads(seller, [person(i) for i in range(5)])
    capped = place(funded_buyer(), 300, 5, caps={"day": 2})
    jobs.fill_order(capped.id)
    db.session.commit()
    assert len(sales_of(capped)) == 2
    now = datetime.now(timezone.utc)
    every_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    closed_hours = place(funded_buyer(), 400, 5, schedule=[{
        "days": every_day, "start": f"{(now.hour + 2) % 24:02d}:00",
        "end": f"{(now.hour + 3) % 24 or 24:02d}:00"}])
    jobs.fill_order(closed_hours.id)
    db.session.commit()
    assert sales_of(closed_hours) == []
    later = now.replace(minute=30) + timedelta(hours=2)
    jobs.fill_order(closed_hours.id, now=later)
    db.session.commit()
    assert len(sales_of(closed_hours)) == 3


def test_expired_orders_take_nothing_and_release_their_hold(app):
    seller = verified_seller()
    buyer = funded_buyer(10_000)
    order = place(buyer, 300, 5, expires_at=datetime.now(timezone.utc) + timedelta(hours=1))
    assert ledger.balance_for(buyer).held == 1_500
    later = datetime.now(timezone.utc) + timedelta(hours=2)
    live_leads(seller, [person(1)])
    jobs.match_open_orders(now=later)
    db.session.commit()
    db.session.expire_all()
    assert db.session.get(Order, order.id).status is OrderStatus.EXPIRED
    assert (ledger.balance_for(buyer).available, ledger.balance_for(buyer).held) == (10_000, 0)


def test_each_sale_settles_on_the_ledger(app):
    seller = verified_seller()
    seller.commission_rate_bp = 1500
    buyer = funded_buyer(10_000)
    order = place(buyer, 333, 3)
    leads = live_leads(seller, [person(1)])
    _match(leads)
    sale = sales_of(order)[0]
    assert (sale.price, sale.commission, sale.seller_share) == (333, 50, 283)
    assert ledger.balance_for(buyer).held == 666 and ledger.balance_for(buyer).available == 9_001
    assert ledger.balance_for(seller).pending == 283
    assert sale.ledger_transaction_id is not None
    assert ledger.reconcile().ok


def test_cancel_releases_the_rest_and_edits_move_the_hold(app):
    buyer = funded_buyer(10_000)
    order = place(buyer, 300, 10)
    operations.change_terms(buyer, order.id, price=400)
    db.session.commit()
    assert ledger.balance_for(buyer).held == 4_000
    with pytest.raises(InsufficientFunds):
        operations.change_terms(buyer, order.id, quantity=100)
    db.session.rollback()
    operations.change_terms(buyer, order.id, quantity=5)
    operations.cancel_order(buyer, order.id)
    db.session.commit()
    assert (ledger.balance_for(buyer).available, ledger.balance_for(buyer).held) == (10_000, 0)
    assert ledger.reconcile().ok


def test_terms_saved_unchanged_leave_no_audit_entry(app):
    buyer = funded_buyer(10_000)
    order = place(buyer, 300, 10)
    operations.change_terms(buyer, order.id, price=300, quantity=10)
    operations.change_terms(buyer, order.id, price=400)
    db.session.commit()
    assert [e.details for e in db.session.scalars(sa.select(AuditEvent).where(
        AuditEvent.action == "order.changed", AuditEvent.subject_id == order.id))] == [
        {"changed": ["price"], "price": 400, "price_before": 300}]


def test_paused_orders_wait(app):
    seller = verified_seller()
    buyer = funded_buyer()
    order = place(buyer, 300, 5)
    operations.set_paused(buyer, order.id, True)
    db.session.commit()
    _match(live_leads(seller, [person(1)]))
    assert sales_of(order) == []
    operations.set_paused(buyer, order.id, False)
    jobs.fill_order(order.id)
    db.session.commit()
    assert len(sales_of(order)) == 1


@pytest.mark.parametrize("filters,field", [
    ({"age_min": 40, "age_max": 30}, "age_min"),
    ({"regions": ["XX-NOPE"]}, "regions"),
    ({"genders": ["q"]}, "genders"),
    ({"colour": "red"}, "colour"),
])
def test_bad_filters_are_refused_with_the_field(app, filters, field):
    with pytest.raises(ValidationFailed) as exc:
        Filters.parse(filters)
    assert exc.value.details["field"] == field


def test_price_below_minimum_and_zero_quantity_are_refused(app):
    with pytest.raises(ValidationFailed) as exc:
        operations.check_terms(app.config["MIN_PRICE"] - 1, 5)
    assert exc.value.details["field"] == "price"
    with pytest.raises(ValidationFailed) as exc:
        operations.check_terms(500, 0)
    assert exc.value.details["field"] == "quantity"


def test_a_group_that_collides_falls_back_to_single_fills(app):
    """A claim written by another worker after planning: that fill is lost, the rest
    of the group is stored one by one, nothing half-applied."""
    from app.models import PersonClaim
    from app.models.types import utcnow

    seller = verified_seller()
    buyer = funded_buyer()
    order = place(buyer, 300, 5)
    leads = live_leads(seller, [person(1), person(2)])
    now = utcnow()
    candidates = snapshot.load_leads([lead.id for lead in leads])
    book = snapshot.load_book(now)
    plan = allocate(candidates, book, Claims(), now)
    assert len(plan) == 2
    first = next(c for c in candidates if c.id == leads[0].id)
    db.session.add(PersonClaim(buyer_id=buyer.id, person_hash=first.person_hashes[0],
                               claimed_at=now))
    db.session.commit()
    settlement = settle.Settlement(now)
    lost = jobs.store_plan(plan, settlement)
    assert lost == [leads[0].id]
    assert [s.lead_id for s in sales_of(order)] == [leads[1].id]
    assert db.session.get(Lead, leads[0].id).sold_count == 0
    assert ledger.reconcile().ok


def test_a_group_keeps_what_an_order_filled_meanwhile_still_takes(app):
    """Another worker filled part of the order after this group was planned: the
    group stores what the order still takes and reports the rest as lost."""
    from app.models.types import utcnow

    seller = verified_seller()
    order = place(funded_buyer(), 300, 4)
    leads = live_leads(seller, [person(i) for i in range(4)])
    now = utcnow()
    plan = allocate(snapshot.load_leads([lead.id for lead in leads]), snapshot.load_book(now),
                    Claims(), now)
    assert len(plan) == 4
    db.session.commit()
    _match(live_leads(seller, [person(i) for i in range(10, 13)]))  # 3 of its 4, meanwhile
    lost = jobs.store_plan(plan, settle.Settlement(now))
    assert len(lost) == 3
    db.session.refresh(order)
    assert (order.filled, order.status) == (4, OrderStatus.FILLED)
    assert_market_invariants()


def test_a_person_sold_exclusively_has_no_other_buyer_whoever_holds_a_copy(app):
    """SPEC §4 rule 2: exclusivity is a promise about the person, not the copy."""
    first = place(funded_buyer(), 300, 5)
    _match(live_leads(verified_seller(), [person(1)], cap=1))
    assert len(sales_of(first)) == 1
    other = place(funded_buyer(), 900, 5)
    copy = live_leads(verified_seller(), [person(1, email="other@mail.example.com")], cap=3)
    _match(copy)
    jobs.fill_order(other.id)
    db.session.commit()
    assert sales_of(other) == []


def test_a_person_goes_to_at_most_the_first_copys_cap_of_buyers(app):
    orders = [place(funded_buyer(), 300, 5) for _ in range(4)]
    _match(live_leads(verified_seller(), [person(1)], cap=2))
    assert sum(len(sales_of(o)) for o in orders) == 2
    copy = live_leads(verified_seller(), [person(1, email="other@mail.example.com")], cap=3)
    _match(copy)
    assert sum(len(sales_of(o)) for o in orders) == 2  # the first copy said two buyers
    exclusive = place(funded_buyer(), 900, 5, filters={"exclusive_only": True})
    _match(live_leads(verified_seller(), [person(1, email="third@mail.example.com")], cap=1))
    jobs.fill_order(exclusive.id)
    db.session.commit()
    assert sales_of(exclusive) == []  # shared already: no one can have them exclusively


def test_the_promise_about_a_person_ends_with_its_window(app):
    from app.models import PersonListing

    first = place(funded_buyer(), 300, 5)
    _match(live_leads(verified_seller(), [person(1)], cap=1))
    long_ago = datetime.now(timezone.utc) - rules.PERSON_WINDOW - timedelta(minutes=1)
    db.session.execute(sa.update(PersonListing).values(first_sold_at=long_ago))
    db.session.commit()
    later = place(funded_buyer(), 300, 5)
    _match(live_leads(verified_seller(), [person(1, email="other@mail.example.com")], cap=1))
    assert len(sales_of(first)) == 1 and len(sales_of(later)) == 1


def test_a_batch_matched_in_chunks_fills_as_in_one(app):
    """match_batch keeps one order book across its chunks: the fills are those of one
    plan (other people, other buyers each time; the earlier run's orders cancelled)."""
    def run(chunk, people):
        seller = verified_seller()
        orders = [place(funded_buyer(), price, 3) for price in (300, 500, 400)]
        leads = live_leads(seller, [person(people + i, consent_at=consented(i))
                                    for i in range(7)], cap=2)
        jobs.match_batch(db.session.get(Lead, leads[0].id).batch_id, chunk=chunk)
        db.session.commit()
        result = [(o.price, sorted(db.session.get(Lead, s.lead_id).row_number
                                   for s in sales_of(o))) for o in orders]
        for order in orders:
            if db.session.get(Order, order.id).is_active:
                operations.cancel_order(order.buyer, order.id)
        db.session.commit()
        return result

    whole = run(5000, 0)
    assert sum(len(rows) for _, rows in whole) == 9  # three orders of three
    assert run(2, 100) == whole
    assert ledger.reconcile().ok


def test_a_leads_fills_are_stored_in_one_group(app, monkeypatch):
    # Groups of 2 fills, leads of 3: a group that ended inside a lead's fills would
    # leave its last fill to the next group, whose lock on the lead would wait for the
    # whole of the first on the other connection.
    monkeypatch.setattr(jobs, "FIRST_GROUP", 2)
    monkeypatch.setattr(jobs, "GROUP_SIZE", 2)
    store_group, groups = jobs.store_group, []

    def recorded(group, *args):
        groups.append([lead.id for lead, _ in group])
        return store_group(group, *args)
    monkeypatch.setattr(jobs, "store_group", recorded)
    orders = [place(funded_buyer(), 300, 10) for _ in range(3)]
    leads = live_leads(verified_seller(), [person(i) for i in range(5)], cap=3)
    _match(leads)
    assert sum(len(sales_of(order)) for order in orders) == 15
    assert len(groups) > 1
    group_of = {}
    for n, group in enumerate(groups):
        for lead_id in group:
            assert group_of.setdefault(lead_id, n) == n


def test_people_are_read_as_the_plan_reaches_them(app, monkeypatch):
    """A batch's claims are read window by window as planning reaches its leads (on
    PostgreSQL by the planner thread, on a connection of its own; SQLite reads them
    all first): each person once, before any lead of theirs is planned, so a person
    the buyer received within the lookback is not delivered again wherever the copy
    sits in the plan."""
    monkeypatch.setattr(jobs, "SMALL_MATCH", 0)  # the plan streams through store_plan
    monkeypatch.setattr(jobs, "plan_parts", functools.partial(book.plan_parts, size=1,
                                                              window=2))
    claims_into, read = snapshot._claims_into, []

    def recorded(claims, hashes, *args):
        read.append(set(hashes))
        return claims_into(claims, hashes, *args)
    monkeypatch.setattr(snapshot, "_claims_into", recorded)
    order = place(funded_buyer(), 300, 20)
    _match(live_leads(verified_seller(), [person(1)], cap=2))
    assert len(sales_of(order)) == 1
    read.clear()
    leads = live_leads(verified_seller(), [person(i) for i in range(10, 16)]
                       + [person(1, email="other@mail.example.com")], cap=2)
    _match(leads)
    assert len(sales_of(order)) == 7  # the six others; the copy is the same person
    everyone = {h for lead in snapshot.load_leads([lead.id for lead in leads])
                for h in lead.person_hashes}
    assert set().union(*read) == everyone and sum(map(len, read)) == len(everyone)
    assert len(read) == (4 if on_postgres() else 1)  # windows of 2 leads (7 leads)
    assert_market_invariants()


def test_the_accounts_a_plan_moves_exist_before_its_groups_are_stored(app, monkeypatch):
    """Created while groups are stored, a missing account (the platform's commission
    before the first sale) would be created by both connections at once, the second
    waiting for the first's whole group: the job creates them all, and commits, first."""
    store_group, account, late = jobs.store_group, ledger.account, []
    storing = []

    def recorded_group(*args):
        storing.append(True)
        return store_group(*args)

    def recorded_account(kind, user=None):
        if storing:
            late.append(kind)
        return account(kind, user)
    monkeypatch.setattr(jobs, "store_group", recorded_group)
    monkeypatch.setattr(ledger, "account", recorded_account)
    monkeypatch.setattr(jobs, "FIRST_GROUP", 2)
    monkeypatch.setattr(jobs, "GROUP_SIZE", 2)
    orders = [place(funded_buyer(), 300, 5) for _ in range(2)]
    _match(live_leads(verified_seller(), [person(i) for i in range(8)], cap=2))
    assert sum(len(sales_of(order)) for order in orders) == 10
    assert storing and late == []
    assert ledger.reconcile().ok
