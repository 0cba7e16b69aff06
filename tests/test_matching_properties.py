"""Property test: after any random sequence of batches, real-time leads, orders (with
caps per period, schedules and time zones), edits, pauses, cancels and time passing
(periods rolling over, windows opening and closing), every rule of SPEC §4 and §5
still holds."""
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core import events
from app.errors import DomainError
from app.extensions import db
from app.models import Order
from app.market import jobs, operations, rules
from app.market.book import Candidate, OrderBook, Slot
from app.market.filters import Filters
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
caps = st.fixed_dictionaries({}, optional={"hour": st.integers(1, 2), "day": st.integers(1, 3),
                                           "week": st.integers(2, 5)})
spend_caps = st.fixed_dictionaries({}, optional={"hour": st.sampled_from([900, 1_500]),
                                                 "day": st.sampled_from([1_000, 2_500])})
# Windows around the history's start (hours from it), so that some are open when leads
# come and others open or close as time passes.
windows = st.none() | st.lists(st.tuples(
    st.integers(-2, 1), st.integers(1, 5), st.none() | st.sampled_from([650, 950]),
    st.booleans()), min_size=1, max_size=2)


def _schedule(spec, start: datetime):
    """Windows (hours from `start`, length, price, every day?) as an order's schedule;
    overlapping ones are refused like any buyer's."""
    if spec is None:
        return None
    out = []
    for offset, length, price, every_day in spec:
        begin = start + timedelta(hours=offset)
        days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        out.append({"days": days if every_day else [days[begin.weekday()]],
                    "start": f"{begin.hour:02d}:00",
                    "end": f"{(begin.hour + length) % 24 or 24:02d}:00", "price": price})
    return out


terms = st.fixed_dictionaries({"caps": caps, "spend_caps": spend_caps, "schedule": windows,
                               "timezone": st.just("UTC") | st.sampled_from(
                                   ["Asia/Tokyo", "America/New_York"])})
histories = st.lists(st.one_of(
    st.tuples(st.just("batch"), st.integers(0, 2), st.lists(people, min_size=1, max_size=8),
              st.integers(1, 3), st.sampled_from([0, 300, 600])),
    st.tuples(st.just("order"), st.integers(0, 2), filters, st.integers(100, 900),
              st.integers(1, 6), st.sampled_from([None, 700]), st.sampled_from([0, 30]), terms),
    st.tuples(st.just("tick"), st.sampled_from([17, 17, 60, 200, 1_000, 2_900])),
    st.tuples(st.just("cancel"), st.integers(0, 20)),
    st.tuples(st.just("pause"), st.integers(0, 20), st.booleans()),
    st.tuples(st.just("reprice"), st.integers(0, 20), st.integers(100, 900)),
), min_size=1, max_size=14)


def _clean():
    db.session.rollback()
    tables = [t.name for t in reversed(db.metadata.sorted_tables)]
    for table in tables:
        db.session.execute(sa.text(f"DELETE FROM {table}"))
    db.session.commit()


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(history=histories)
def test_rules_hold_after_any_history(app, monkeypatch, history):
    _clean()
    # One clock for the whole history, minutes apart or days: the jobs are told the
    # time, and the operations (placing, changing) read it.
    clock = [datetime.now(timezone.utc).replace(second=0, microsecond=0)]
    monkeypatch.setattr(operations, "utcnow", lambda: clock[0])
    sellers = [verified_seller() for _ in range(3)]
    buyers = [funded_buyer(4_000) for _ in range(3)]
    # The test drives the jobs itself, at its clock: no follow-up at the real time.
    with events.muted():
        for event in history:
            kind = event[0]
            try:
                if kind == "batch":
                    _, s, rows, cap, floor = event
                    leads = live_leads(sellers[s], rows, cap=cap, floor_price=floor)
                    jobs.match_leads([lead.id for lead in leads], now=clock[0])
                elif kind == "order":
                    _, b, wanted, price, quantity, budget, lookback, more = event
                    zone = ZoneInfo(more["timezone"])
                    more = {**more, "schedule": _schedule(more["schedule"],
                                                          clock[0].astimezone(zone))}
                    order = place(buyers[b], price, quantity, filters=wanted,
                                  budget=budget if budget and budget >= price else None,
                                  lookback_days=lookback, **more)
                    jobs.fill_order(order.id, now=clock[0])
                elif kind == "tick":
                    clock[0] += timedelta(minutes=event[1])
                    jobs.match_open_orders(now=clock[0])
                else:
                    order_ids = list(db.session.scalars(sa.select(Order.id).order_by(Order.id)))
                    if not order_ids:
                        continue
                    order = db.session.get(Order, order_ids[event[1] % len(order_ids)])
                    if kind == "cancel":
                        operations.cancel_order(order.buyer, order.id)
                    elif kind == "pause":
                        operations.set_paused(order.buyer, order.id, event[2])
                        if not event[2]:
                            jobs.fill_order(order.id, now=clock[0])
                    else:
                        operations.change_terms(order.buyer, order.id, price=event[2])
                        jobs.fill_order(order.id, now=clock[0])
                db.session.commit()
            except DomainError:  # refused moves (no money, closed order) change nothing
                db.session.rollback()
    assert_market_invariants()


# Caps and schedules over time: any order, any lead, so that most orders take leads and
# the periods and windows decide.
timed_histories = st.lists(st.one_of(
    st.tuples(st.just("batch"), st.integers(0, 1), st.integers(1, 6), st.integers(1, 2)),
    st.tuples(st.just("order"), st.integers(0, 2), st.integers(100, 900), st.integers(1, 8),
              terms),
    st.tuples(st.just("tick"), st.sampled_from([17, 17, 45, 60, 200, 1_000, 2_900])),
), min_size=3, max_size=16)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(history=timed_histories)
def test_caps_and_schedules_hold_as_time_passes(app, monkeypatch, history):
    _clean()
    clock = [datetime.now(timezone.utc).replace(second=0, microsecond=0)]
    monkeypatch.setattr(operations, "utcnow", lambda: clock[0])
    sellers = [verified_seller() for _ in range(2)]
    buyers = [funded_buyer(100_000) for _ in range(3)]
    people_so_far = 0
    with events.muted():
        for event in history:
            try:
                if event[0] == "batch":
                    _, s, count, cap = event
                    rows = [person(people_so_far + i) for i in range(count)]
                    people_so_far += count
                    leads = live_leads(sellers[s], rows, cap=cap)
                    jobs.match_leads([lead.id for lead in leads], now=clock[0])
                elif event[0] == "order":
                    _, b, price, quantity, more = event
                    local = clock[0].astimezone(ZoneInfo(more["timezone"]))
                    order = place(buyers[b], price, quantity,
                                  **{**more, "schedule": _schedule(more["schedule"], local)})
                    jobs.fill_order(order.id, now=clock[0])
                else:
                    clock[0] += timedelta(minutes=event[1])
                    jobs.match_open_orders(now=clock[0])
                db.session.commit()
            except DomainError:  # a refused schedule or cap changes nothing
                db.session.rollback()
    assert_market_invariants()


# The order book answers "which orders accept this lead" with bit sets instead of
# calling Filters.matches; it must give exactly the orders matches() accepts, in
# price-time priority, whatever the filters.
NOW = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)
some = st.sampled_from
FILTER_VALUES = {  # a few filters per order, so that orders overlap and bounds meet
    "age_min": st.integers(18, 60), "age_max": st.integers(18, 80),
    "genders": st.lists(some(["f", "m", "other"]), min_size=1, unique=True).map(tuple),
    "regions": st.lists(some(["US-CA", "US-NY", "ES-M"]), min_size=1, unique=True).map(tuple),
    "countries": st.lists(some(["US", "ES"]), min_size=1, unique=True).map(tuple),
    "require": some(["phone", "email", "both"]),
    "marital_statuses": st.lists(some(["single", "married"]), min_size=1, unique=True).map(tuple),
    "employed": some(["yes", "no"]),
    "interests": st.lists(some(["auto", "solar", "pets"]), min_size=1, unique=True).map(tuple),
    "max_age_days": st.integers(1, 20), "exclusive_only": st.just(True),
    "min_score": st.integers(1, 100)}
book_filters = st.lists(some(sorted(FILTER_VALUES)), max_size=3, unique=True).flatmap(
    lambda names: st.fixed_dictionaries({name: FILTER_VALUES[name] for name in names})
).map(lambda chosen: Filters(**chosen))
book_slots = st.lists(st.tuples(
    book_filters, some([100, 200, 300]), st.integers(0, 5), st.integers(0, 5),
    st.none() | st.integers(0, 2)), min_size=1, max_size=25)
book_leads = st.lists(st.tuples(
    st.none() | st.integers(16, 85), some(["f", "m", "unknown"]),
    st.none() | some(["US-CA", "US-NY", "ES-M", "US-TX"]), st.none() | some(["US", "ES", "RU"]),
    st.booleans(), st.booleans(), some(["single", "married", "widowed"]),
    some(["yes", "no", "unknown"]), st.lists(some(["auto", "solar", "pets", "golf"]), max_size=3),
    st.integers(0, 21).map(lambda days: 24 * days) | st.integers(0, 500),  # hours since consent
    st.integers(1, 3), some([0, 100, 250, 300, 400]), st.integers(0, 70)),
    min_size=1, max_size=20)


@settings(max_examples=300, deadline=None)
@given(slot_specs=book_slots, lead_specs=book_leads)
def test_order_book_accepts_exactly_what_the_filters_accept(slot_specs, lead_specs):
    slots = [Slot(i + 1, i % 4, price, NOW - timedelta(minutes=age),
                  remaining if daily_left is None else min(remaining, daily_left),
                  timedelta(days=30), filters, False)
             for i, (filters, price, age, remaining, daily_left) in enumerate(slot_specs)]
    book = OrderBook(slots)
    by_priority = sorted(slots, key=lambda s: s.rank)
    for i, (age, gender, region, country, email, phone, marital, employed, interests,
            hours, cap, floor, score_points) in enumerate(lead_specs):
        lead = Candidate(i + 1, 99, age, gender, region, country, email, phone,
                         marital, employed, interests, NOW - timedelta(hours=hours),
                         cap, 0, floor, score_points, person_hashes=(b"e%d" % i,))
        mask = book.accepting(lead, NOW)
        got = [s.id for s in by_priority if mask >> book._position[s.id] & 1]
        want = [s.id for s in by_priority if s.can_take_one()
                and rules.FLOOR.holds(s, lead, rules.Ctx(price=s.price))
                and s.filters.matches(lead, NOW)]
        assert got == want
