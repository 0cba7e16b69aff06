"""SPEC §4 rule 8: each fill rule is one definition that answers the same in Python
(the order book, the grouped re-check) and in SQL (single and grouped fills, the
inventory queries), on SQLite and on PostgreSQL. Hypothesis draws order and lead
states, the database stores them, and both answers are compared."""
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.extensions import db
from app.market import rules
from app.models import Lead, LeadStatus, Order, OrderStatus
from tests.ingest_helpers import person
from tests.market_helpers import funded_buyer, live_leads, place, verified_seller

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=timezone.utc)
ZONE = "Asia/Tokyo"  # 21:00 there: its day, week and month are not UTC's hour's
KEYS = rules.period_keys(NOW, ZONE)
STALE = rules.period_keys(NOW - timedelta(days=40), ZONE)


@st.composite
def order_states(draw):
    quantity = draw(st.integers(1, 6))
    price = draw(st.sampled_from([100, 250, 400]))
    state = {
        "status": draw(st.sampled_from(list(OrderStatus))),
        "expires_at": draw(st.none() | st.sampled_from([NOW - timedelta(hours=1), NOW,
                                                        NOW + timedelta(hours=1)])),
        "price": price, "quantity": quantity, "filled": draw(st.integers(0, quantity)),
        "held": price * draw(st.integers(0, 5)) + draw(st.sampled_from([0, 1, 99])),
        "spent": draw(st.integers(0, 2000)), "revision": draw(st.integers(0, 1)),
        "timezone": ZONE,
    }
    for period in rules.PERIODS:
        cap = draw(st.none() | st.integers(1, 4))
        spend_cap = draw(st.none() | st.sampled_from([100, 399, 800, 1200]))
        state |= {f"cap_{period}": cap, f"spend_cap_{period}": spend_cap,
                  f"{period}_key": draw(st.sampled_from([KEYS[period], STALE[period], None])),
                  f"{period}_leads": draw(st.integers(0, cap if cap is not None else 3)),
                  f"{period}_spend": draw(st.integers(0, spend_cap if spend_cap else 900))}
    return state


def _sql_holds(model, row_id, condition) -> bool:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(
        model.id == row_id, condition)) == 1


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(state=order_states(), n=st.integers(0, 4), planned=st.sampled_from([100, 250, 400]),
       revision=st.integers(0, 1))
def test_order_rules_answer_the_same_in_python_and_sql(app, state, n, planned, revision):
    order = db.session.scalar(sa.select(Order)) or place(funded_buyer(10_000), 100, 1)
    db.session.execute(sa.update(Order).where(Order.id == order.id).values(**state))
    db.session.commit()
    python = SimpleNamespace(**{k: (v.value if k == "status" else v) for k, v in state.items()})
    ctx = rules.Ctx(now=NOW, keys=KEYS, n=n, price=planned, revision=revision)
    for name, condition in [
            ("takes", lambda o: rules.order_takes(o, ctx)),
            ("terms", lambda o: rules.TERMS_AS_PLANNED.test(o, None, ctx))]:
        assert bool(condition(python)) == _sql_holds(Order, order.id, condition(Order)), name
    room = rules.order_room(python, ctx)
    takes = rules.order_takes  # the room is the most fills the limits let through
    open_now = rules.ORDER_OPEN.holds(python, None, ctx) and rules.NOT_EXPIRED.holds(
        python, None, ctx)
    if open_now:
        assert takes(python, rules.Ctx(NOW, KEYS, room, planned))
        assert not takes(python, rules.Ctx(NOW, KEYS, room + 1, planned))
    if not takes(python, ctx):
        return
    # The counters after fills: the SET clauses compute what Python computes.
    after = rules.after_fills(python, ctx)
    db.session.execute(sa.update(Order).where(Order.id == order.id)
                       .values(**rules.after_fills(Order, ctx)))
    stored = db.session.execute(sa.select(*(getattr(Order, k) for k in after))
                                .where(Order.id == order.id)).one()
    db.session.rollback()
    assert dict(zip(after, stored)) == after


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(status=st.sampled_from(list(LeadStatus)), cap=st.integers(1, 3), sold=st.integers(0, 3),
       floor=st.sampled_from([0, 250, 400]), n=st.integers(1, 3),
       price=st.sampled_from([100, 250, 400]))
def test_lead_rules_answer_the_same_in_python_and_sql(app, status, cap, sold, floor, n, price):
    lead = db.session.scalar(sa.select(Lead)) or live_leads(verified_seller(), [person(1)])[0]
    sold = min(sold, cap)
    db.session.execute(sa.update(Lead).where(Lead.id == lead.id).values(
        status=status, cap=cap, sold_count=sold, floor_price=floor))
    db.session.commit()
    python = SimpleNamespace(status=status.value, cap=cap, sold_count=sold, floor_price=floor)
    ctx = rules.Ctx(n=n, price=price)
    for rule in (rules.LEAD_LIVE, rules.FLOOR):
        assert rule.holds(None, python, ctx) == _sql_holds(Lead, lead.id,
                                                           rule.sql(None, Lead, ctx)), rule.name
    assert bool(rules.LEAD_CAP.test(python, ctx)) == _sql_holds(
        Lead, lead.id, rules.LEAD_CAP.test(Lead, ctx))
    assert rules.LEAD_CAP.room(python, ctx) == cap - sold


@given(listing=st.none() | st.builds(
           lambda cap, sold, days: rules.Listing(cap, min(sold, cap), NOW - timedelta(days=days)),
           st.integers(1, 4), st.integers(1, 4), st.integers(0, 40)),
       copy_cap=st.integers(1, 4))
def test_person_room_is_how_often_a_sale_is_allowed(listing, copy_cap):
    room, state = 0, listing
    while room < 10 and (state := rules.person_after_sale(state, copy_cap, NOW)):
        room += 1
        # n sales at once leave the listing as n sales one by one do
        assert rules.person_after_sale(listing, copy_cap, NOW, room) == state
    assert rules.person_room(listing, copy_cap, NOW) == room
    assert rules.person_after_sale(listing, copy_cap, NOW, room + 1) is None
