"""Property test: after any random sequence of batches, real-time leads, orders,
edits, pauses and cancels, every rule of SPEC §4 and §5 still holds."""
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.errors import DomainError
from app.extensions import db
from app.models import Order
from app.services import matching, orders
from tests.market_helpers import funded_buyer, live_leads, person, place, verified_seller
from tests.market_invariants import assert_market_invariants

REGIONS = ["US-CA", "US-NY"]

people = st.builds(
    lambda i, region, gender, age: person(i, region=region, gender=gender, age=str(age)),
    st.integers(0, 40), st.sampled_from(REGIONS), st.sampled_from("fm"), st.integers(18, 90))
filters = st.fixed_dictionaries({}, optional={
    "genders": st.lists(st.sampled_from("fm"), max_size=1),
    "regions": st.lists(st.sampled_from(REGIONS), max_size=2),
    "age_min": st.integers(18, 40), "exclusive_only": st.booleans()})
events = st.lists(st.one_of(
    st.tuples(st.just("batch"), st.integers(0, 2), st.lists(people, min_size=1, max_size=8),
              st.integers(1, 3), st.sampled_from([0, 300, 600])),
    st.tuples(st.just("order"), st.integers(0, 2), filters, st.integers(100, 900),
              st.integers(1, 6), st.sampled_from([None, 700]), st.sampled_from([0, 30])),
    st.tuples(st.just("cancel"), st.integers(0, 20)),
    st.tuples(st.just("pause"), st.integers(0, 20), st.booleans()),
    st.tuples(st.just("reprice"), st.integers(0, 20), st.integers(100, 900)),
), min_size=1, max_size=12)


def _clean():
    db.session.rollback()
    tables = [t.name for t in reversed(db.metadata.sorted_tables)]
    for table in tables:
        db.session.execute(sa.text(f"DELETE FROM {table}"))
    db.session.commit()


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(history=events)
def test_rules_hold_after_any_history(app, history):
    _clean()
    sellers = [verified_seller() for _ in range(3)]
    buyers = [funded_buyer(4_000) for _ in range(3)]
    for event in history:
        kind = event[0]
        try:
            if kind == "batch":
                _, s, rows, cap, floor = event
                leads = live_leads(sellers[s], rows, cap=cap, floor_price=floor)
                matching.match_leads([lead.id for lead in leads])
            elif kind == "order":
                _, b, wanted, price, quantity, budget, lookback = event
                order = place(buyers[b], price, quantity, filters=wanted,
                              budget=budget if budget and budget >= price else None,
                              lookback_days=lookback)
                matching.fill_order(order.id)
            else:
                order_ids = list(db.session.scalars(sa.select(Order.id).order_by(Order.id)))
                if not order_ids:
                    continue
                order = db.session.get(Order, order_ids[event[1] % len(order_ids)])
                if kind == "cancel":
                    orders.cancel_order(order.buyer, order.id)
                elif kind == "pause":
                    orders.set_paused(order.buyer, order.id, event[2])
                    if not event[2]:
                        matching.fill_order(order.id)
                else:
                    orders.change_terms(order.buyer, order.id, price=event[2])
                    matching.fill_order(order.id)
            db.session.commit()
        except DomainError:  # refused moves (no money, closed order) change nothing
            db.session.rollback()
    assert_market_invariants()
