"""The winner of a real-time lead (SPEC §4 rule 9, app/market/bidding.py), for random
fixed prices, bids, replies and arrival times: the highest of the fixed prices and the
valid bids received by the deadline that the order can pay, at or above the floor --
ties to the oldest order -- exactly as a straightforward scan finds it."""
import json
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from app.market import bidding, rules
from app.market.book import Candidate, Claims, Slot
from app.market.filters import Filters
from app.models.orders import PERIODS

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)
KEYS = rules.period_keys(NOW, "UTC")
DEADLINE, MINIMUM = 300, 50

fixed_orders = st.lists(st.tuples(st.integers(50, 2000), st.integers(0, 5)), max_size=4)
replies = st.one_of(
    st.tuples(st.just("bid"), st.integers(0, 2500)),
    st.tuples(st.just("status"), st.sampled_from([204, 404, 500])),
    st.tuples(st.just("body"), st.sampled_from([b"", b"nope", b"[1]", b'{"bid": "9"}',
                                                b'{"bid": 3.5}', b'{"bid": null}'])),
    st.tuples(st.just("error"), st.just("connection refused by 127.0.0.1")))
bidding_orders = st.lists(st.tuples(
    st.integers(50, 2000),  # max_bid
    replies, st.integers(0, 600),  # arrival, ms
    st.integers(0, 3000),  # what it holds: can it pay its bid?
    st.integers(0, 5)), max_size=6)  # age: older orders win ties


def _order(held: int) -> SimpleNamespace:
    return SimpleNamespace(
        status="open", expires_at=None, filled=0, quantity=10, held=held,
        **{f"cap_{p}": None for p in PERIODS}, **{f"spend_cap_{p}": None for p in PERIODS},
        **{f"{p}_key": KEYS[p] for p in PERIODS}, **{f"{p}_leads": 0 for p in PERIODS},
        **{f"{p}_spend": 0 for p in PERIODS})


def _slot(order_id: int, price: int, age: int) -> Slot:
    return Slot(order_id, 100 + order_id, price, NOW - timedelta(days=age), 1,
                timedelta(days=30), Filters.parse({}), False, keys=KEYS, least=price)


@settings(max_examples=300, deadline=None)
@given(fixed=fixed_orders, bidders=bidding_orders, floor=st.integers(0, 1500))
def test_the_winner_is_the_best_timely_offer_the_order_can_pay(fixed, bidders, floor):
    lead = Candidate(1, 1, 40, "f", "US-CA", "US", True, True, "unknown", "unknown", (),
                     NOW - timedelta(days=1), 1, 0, floor, 40, (b"e1",))
    slots, orders, answers, offers = [], {}, {}, []
    for i, (price, age) in enumerate(fixed, start=1):
        slots.append(_slot(i, price, age))
        answers[i] = bidding.Answer(i, "fixed", price)
        if price >= floor:
            offers.append((price, age, i))
    for i, (max_bid, (kind, value), ms, held, age) in enumerate(bidders, start=100):
        slots.append(_slot(i, 50, age))
        orders[i] = _order(held)
        status, body, error = 200, None, None
        if kind == "bid":
            body = json.dumps({"bid": value}).encode()
        elif kind == "status":
            status = value
        elif kind == "body":
            body = value
        else:
            error = value
        answers[i] = bidding.read_reply(i, status, body, error, ms, max_bid, MINIMUM,
                                        DEADLINE)
        if (kind == "bid" and ms <= DEADLINE and MINIMUM <= value <= max_bid
                and value <= held and value >= floor):
            offers.append((value, age, i))
    plan = bidding.winners(lead, slots, orders, answers, Claims(), NOW)
    if not offers:
        assert plan == []
        return
    best = max(offers, key=lambda o: (o[0], o[1], -o[2]))  # price, older, smaller id
    assert [(slot.id, slot.price) for _, slot in plan] == [(best[2], best[0])]
    for i, (max_bid, (kind, value), ms, held, _) in enumerate(bidders, start=100):
        outcome = answers[i].outcome
        assert (outcome == "bid") == (kind == "bid" and ms <= DEADLINE
                                      and MINIMUM <= value <= max_bid and value <= held)
        if ms > DEADLINE and kind != "error":
            assert outcome == "late"


def test_a_reply_is_read_as_the_spec_says():
    read = lambda body, ms=10, status=200: bidding.read_reply(  # noqa: E731
        7, status, body, None, ms, 1000, MINIMUM, DEADLINE)
    assert (read(b'{"bid": 900}').outcome, read(b'{"bid": 900}').amount) == ("bid", 900)
    assert read(b'{"bid": 1001}').outcome == "over_max"
    assert read(b'{"bid": 10}').outcome == "below_minimum"
    assert read(b'{"bid": 0}').outcome == read(b"{}").outcome == "no_bid"
    assert read(b'{"bid": true}').outcome == read(b"bid=9").outcome == "malformed"
    assert read(b'{"bid": 900}', ms=301).outcome == "late"
    assert read(b'{"bid": 900}', status=503).detail == "HTTP 503"
