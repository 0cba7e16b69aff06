"""Quiet hours (SPEC §14, issue 19 item 5): an order may hold phone leads until the
person's local calling hours -- one market rule (rules.in_calling_hours) that the order
book, a single fill and a group of fills all ask -- across time zones and the days
clocks change; and every delivered lead carries the person's time zone and local time."""
import re
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.market import grouped, jobs, rules, snapshot
from app.market.settle import Settlement
from app.models import Sale
from app.services.delivery import sale_record
from tests.market_helpers import funded_buyer, live_leads, person, place, sales_of, verified_seller


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


HOLDING = SimpleNamespace(calling_from=8 * 60, calling_until=21 * 60)


def _lead(region=None, country=None, phone=True):
    return SimpleNamespace(region=region, country=country, has_phone=phone)


@pytest.mark.parametrize("region, country, utc, inside", [
    # Los Angeles, the Sunday US clocks go back (2026-11-01, 02:00 local): the same UTC
    # time is 08:30 the day before (PDT) and 07:30 that day (PST).
    ("US-CA", "US", "2026-10-31T15:30", True),
    ("US-CA", "US", "2026-11-01T15:30", False),
    # ... and the Sunday they go forward (2026-03-08): 07:30 PST, then 08:30 PDT.
    ("US-CA", "US", "2026-03-07T15:30", False),
    ("US-CA", "US", "2026-03-08T15:30", True),
    # Madrid, the Sunday Europe's clocks go back (2026-10-25): 21:30 CEST, then 20:30 CET.
    ("ES-M", "ES", "2026-10-24T19:30", False),
    ("ES-M", "ES", "2026-10-25T19:30", True),
    # The end of the window is not in it: 21:00 local is too late.
    ("ES-M", "ES", "2026-12-01T20:00", False),
    ("ES-M", "ES", "2026-12-01T19:59", True),
    # Moscow has no summer time: 08:00 MSK all year.
    ("RU-MOW", "RU", "2026-07-01T05:00", True),
    ("RU-MOW", "RU", "2026-07-01T04:59", False),
    # The United States without a state: inside on every US clock (Honolulu's 08:00 is
    # New York's 13:00), not on the middle one alone.
    (None, "US", "2026-12-01T18:00", True),
    (None, "US", "2026-12-01T17:30", False),
    # An unknown country is read on UTC.
    (None, None, "2026-12-01T08:00", True),
    (None, None, "2026-12-01T07:59", False),
])
def test_calling_hours_on_the_persons_clock(region, country, utc, inside):
    assert rules.in_calling_hours(HOLDING, _lead(region, country), _at(utc)) is inside


def test_only_phone_leads_and_only_holding_orders_wait():
    night = _at("2026-12-01T03:00")  # 04:00 in Madrid
    assert rules.in_calling_hours(HOLDING, _lead("ES-M", "ES", phone=False), night)
    assert rules.in_calling_hours(SimpleNamespace(calling_from=None, calling_until=None),
                                  _lead("ES-M", "ES"), night)


def _two_people():
    return live_leads(verified_seller(), [
        person(1, region="US-CA", phone="+1 415 555 0001"),
        person(2, region="US-NY", phone="+1 212 555 0102")])


def test_a_held_lead_waits_for_its_hours_or_goes_to_another_order(app):
    california, new_york = _two_people()
    order = place(funded_buyer(), 800, 5, calling_hours=True)
    other = place(funded_buyer(), 300, 5)

    # Sunday 2026-11-01 15:30 UTC: 10:30 in New York, 07:30 in California (PST since 02:00).
    sunday = _at("2026-11-01T15:30")
    jobs.match_leads([california.id, new_york.id], now=sunday)
    assert {s.lead_id for s in sales_of(order)} == {new_york.id}
    assert {s.lead_id for s in sales_of(other)} == {california.id}  # went elsewhere


def test_a_held_lead_is_sold_once_its_hours_open(app):
    california, new_york = _two_people()
    order = place(funded_buyer(), 800, 5, calling_hours={"start": "09:00", "end": "20:00"})
    early = _at("2026-11-02T16:30")  # 08:30 in California, 11:30 in New York
    jobs.fill_order(order.id, now=early)
    assert {s.lead_id for s in sales_of(order)} == {new_york.id}
    jobs.match_open_orders(now=_at("2026-11-02T17:00"))  # 09:00 in California
    assert {s.lead_id for s in sales_of(order)} == {new_york.id, california.id}


def _planned(lead_ids, order, now):
    leads = snapshot.load_leads(lead_ids)
    slot = snapshot.load_book(now, [order.id]).slots[order.id]
    return [(lead, slot) for lead in leads]


def test_a_single_fill_asks_the_rule_too(app):
    california, new_york = _two_people()
    order = place(funded_buyer(), 800, 5, calling_hours=True)
    sunday = _at("2026-11-01T15:30")  # 07:30 in California
    settlement = Settlement(sunday)
    stored = {lead.id: settlement.fill(lead, slot)
              for lead, slot in _planned([california.id, new_york.id], order, sunday)}
    db.session.commit()
    assert stored == {california.id: False, new_york.id: True}


def test_a_group_of_fills_asks_the_rule_too(app):
    california, new_york = _two_people()
    order = place(funded_buyer(), 800, 5, calling_hours=True)
    saturday = _at("2026-10-31T15:30")  # 08:30 in California (PDT), the day before
    pairs = _planned([california.id, new_york.id], order, saturday)
    lost, fallback = grouped.store_group(pairs, Settlement(saturday))
    db.session.commit()
    assert (lost, fallback) == ([], [])
    assert len(sales_of(order)) == 2

    later = place(funded_buyer(), 800, 5, calling_hours=True)
    more = live_leads(verified_seller(), [person(3, region="US-CA", phone="+1 415 555 0003"),
                                          person(4, region="US-NY", phone="+1 212 555 0104")])
    sunday = _at("2026-11-01T15:30")
    pairs = _planned([lead.id for lead in more], later, sunday)
    lost, fallback = grouped.store_group(pairs, Settlement(sunday))
    db.session.commit()
    assert [lead.id for lead, _ in lost] == [more[0].id] and fallback == []
    assert {s.lead_id for s in sales_of(later)} == {more[1].id}


def test_delivered_leads_carry_the_persons_zone_and_local_time(app, buyer_client, buyer):
    from app.services import ledger

    california, _ = _two_people()
    ledger.manual_credit(buyer, 10_000, reason="test", actor=None)
    order = place(buyer, 800, 5)
    jobs.fill_order(order.id, now=_at("2026-11-01T15:30"))
    sale = db.session.scalar(sa.select(Sale).where(Sale.lead_id == california.id))
    record = sale_record(sale, db.session.get(type(california), california.id))["lead"]
    assert record["timezone"] == "America/Los_Angeles"
    assert record["local_time"] == "2026-11-01T07:30:00-08:00"
    page = buyer_client.get(f"/buyer/orders/{order.id}").get_data(as_text=True)
    assert "their time" in page and "America/Los_Angeles" in page and "America/New_York" in page


def test_calling_hours_are_checked(app, client, api_key_for):
    headers = api_key_for(funded_buyer())
    for bad in ({"start": "21:00", "end": "08:00"}, {"start": "8am"}, "always"):
        answer = client.post("/api/v1/orders", headers=headers, json={
            "price": 800, "quantity": 1, "calling_hours": bad})
        assert answer.status_code == 422, bad
    answer = client.post("/api/v1/orders", headers=headers, json={
        "price": 800, "quantity": 1, "calling_hours": True})
    assert answer.status_code == 201, answer.get_json()
    assert answer.get_json()["calling_hours"] == {"start": "08:00", "end": "21:00"}
    answer = client.post("/api/v1/orders", headers=headers, json={"price": 800, "quantity": 1})
    order_id = answer.get_json()["id"]
    assert answer.get_json()["calling_hours"] is None
    changed = client.patch(f"/api/v1/orders/{order_id}", headers=headers,
                           json={"calling_hours": {"start": "09:30"}})
    assert changed.get_json()["calling_hours"] == {"start": "09:30", "end": "21:00"}


def test_the_plan_passes_a_held_order_by(app):
    from app.market import book as order_book

    california, new_york = _two_people()
    holding = place(funded_buyer(), 800, 5, calling_hours=True)
    other = place(funded_buyer(), 300, 5)
    sunday = _at("2026-11-01T15:30")  # 07:30 in California, 10:30 in New York
    leads = snapshot.load_leads([california.id, new_york.id])
    book = snapshot.load_book(sunday, [holding.id, other.id])
    claims = snapshot.load_claims([h for lead in leads for h in lead.person_hashes],
                                  book.buyer_ids)
    plan = {lead.id: slot.id for lead, slot in order_book.plan_batch(leads, book, claims, sunday)}
    assert plan == {california.id: other.id, new_york.id: holding.id}


def test_the_builder_says_why_it_refuses_calling_hours(buyer_client, buyer):
    from app.services import ledger
    from tests.conftest import csrf_token

    ledger.manual_credit(buyer, 10_000, reason="test", actor=None)
    db.session.commit()
    form = {"price": "5.00", "quantity": "3", "lookback_days": "30", "timezone": "UTC",
            "calling_hours": "y", "calling_start": "21:00", "calling_end": "08:00",
            "csrf_token": csrf_token(buyer_client, "/buyer/orders/new")}
    page = buyer_client.post("/buyer/orders/new", data=form).get_data(as_text=True)
    # The refusal is shown at the checkbox, not only kept out of sight.
    assert "The calling hours must start before they end" in page
    checkbox = re.search(r'<input[^>]*id="calling_hours"[^>]*>', page).group(0)
    assert "is-invalid" in checkbox


def test_the_order_page_shows_its_calling_hours(buyer_client, buyer):
    from app.services import ledger

    ledger.manual_credit(buyer, 10_000, reason="test", actor=None)
    holding = place(buyer, 800, 1, calling_hours={"start": "09:00", "end": "20:00"})
    other = place(buyer, 800, 1)
    page = buyer_client.get(f"/buyer/orders/{holding.id}").get_data(as_text=True)
    assert "calling hours, 09:00–20:00 their time" in page
    assert 'id="order-calling-hours"' not in buyer_client.get(
        f"/buyer/orders/{other.id}").get_data(as_text=True)
