"""SPEC §4 caps per period and weekly schedules (§11 additions): caps in leads and spend
count in the order's time zone and start over with each period; a lead arriving outside
every window waits (or goes to other orders) and one inside it is bought at the
window's price, which is also the price that ranks the order."""
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from app.core import events
from app.errors import ValidationFailed
from app.extensions import db
from app.market import jobs, operations, queries, rules, schedule
from app.market.filters import Filters
from app.market.settle import Settlement
from app.models import Order, OrderStatus
from app.services import ledger
from tests.conftest import csrf_token, log_in
from tests.market_helpers import funded_buyer, live_leads, person, place, sales_of, verified_seller

EVERY_DAY = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS = EVERY_DAY[:5]


def _next_monday(hour: int) -> datetime:
    """A Monday at `hour` UTC after today: fills in the tests happen then."""
    today = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    return (today + timedelta(days=7 - today.weekday())).replace(hour=hour)


MONDAY_10 = _next_monday(10)


def _fill(order, now):
    jobs.fill_order(order.id, now=now)
    db.session.commit()
    return len(sales_of(order))


def test_an_hourly_cap_counts_in_its_hour_and_starts_over(app):
    live_leads(verified_seller(), [person(i) for i in range(6)])
    order = place(funded_buyer(), 300, 6, caps={"hour": 2})
    assert _fill(order, MONDAY_10) == 2
    assert _fill(order, MONDAY_10 + timedelta(minutes=59)) == 2
    assert _fill(order, MONDAY_10 + timedelta(hours=1)) == 4
    db.session.refresh(order)
    assert (order.hour_leads, order.day_leads, order.status) == (2, 4, OrderStatus.OPEN)


def test_a_spend_cap_per_day_stops_before_it_would_be_passed(app):
    live_leads(verified_seller(), [person(i) for i in range(6)])
    order = place(funded_buyer(), 300, 6, spend_caps={"day": 700})
    assert _fill(order, MONDAY_10) == 2  # a third lead would make 900
    assert _fill(order, MONDAY_10 + timedelta(hours=13)) == 2  # still Monday
    assert _fill(order, MONDAY_10 + timedelta(hours=14)) == 4  # Tuesday 00:00
    db.session.refresh(order)
    assert order.day_spend == 600 and order.spent == 1_200


def test_weekly_and_monthly_caps_roll_over(app):
    live_leads(verified_seller(), [person(i) for i in range(8)])
    order = place(funded_buyer(), 300, 8, caps={"week": 3, "month": 5})
    assert _fill(order, MONDAY_10) == 3
    assert _fill(order, MONDAY_10 + timedelta(days=6, hours=13)) == 3  # Sunday 23:00
    sunday_night_next_week = MONDAY_10 + timedelta(days=13, hours=13)
    assert _fill(order, sunday_night_next_week) in (5, 6)  # 3 more, unless the month said 5
    month = rules.period_keys(MONDAY_10, "UTC")["month"]
    per_month = {}
    for sale in sales_of(order):
        key = rules.period_keys(sale.created_at, "UTC")["month"]
        per_month[key] = per_month.get(key, 0) + 1
    assert all(count <= 5 for count in per_month.values()) and per_month[month] >= 3


def test_caps_count_in_the_orders_time_zone(app):
    live_leads(verified_seller(), [person(i) for i in range(4)])
    tokyo = place(funded_buyer(), 300, 4, caps={"day": 1}, timezone="Asia/Tokyo")
    late_monday_in_tokyo = MONDAY_10 + timedelta(hours=4, minutes=30)  # 23:30 there
    assert _fill(tokyo, late_monday_in_tokyo) == 1
    # An hour later it is Tuesday in Tokyo (still Monday in UTC): a new day there.
    assert _fill(tokyo, late_monday_in_tokyo + timedelta(hours=1)) == 2


def test_a_window_price_is_paid_and_ranks_the_order(app):
    seller = verified_seller()
    open_all_day = [{"days": EVERY_DAY, "start": "00:00", "end": "24:00", "price": 600}]
    windowed = place(funded_buyer(), 300, 2, schedule=open_all_day)
    plain = place(funded_buyer(), 500, 2)
    assert windowed.held == 1_200  # the hold is sized for the highest price it may pay
    leads = live_leads(seller, [person(1)])
    jobs.match_leads([lead.id for lead in leads], now=MONDAY_10)
    db.session.commit()
    assert [(s.price, s.order_id) for s in sales_of(windowed)] == [(600, windowed.id)]
    assert sales_of(plain) == []


def test_outside_every_window_a_lead_waits_then_fills_when_one_opens(app):
    seller = verified_seller()
    business_hours = [{"days": WEEKDAYS, "start": "09:00", "end": "17:00", "price": 800},
                      {"days": ["sat"], "start": "10:00", "end": "12:00"}]
    order = place(funded_buyer(), 400, 3, schedule=business_hours)
    night = MONDAY_10 - timedelta(hours=5)  # Monday 05:00
    leads = live_leads(seller, [person(i) for i in range(3)])
    jobs.match_leads([lead.id for lead in leads], now=night)
    db.session.commit()
    assert sales_of(order) == []
    jobs.match_open_orders(now=MONDAY_10)  # the periodic job, once the window is open
    db.session.commit()
    assert [s.price for s in sales_of(order)] == [800, 800, 800]
    db.session.refresh(order)
    assert order.status is OrderStatus.FILLED and order.spent == 2_400


def test_outside_its_window_a_lead_goes_to_other_orders(app):
    seller = verified_seller()
    closed = place(funded_buyer(), 900, 1, schedule=[
        {"days": ["sun"], "start": "01:00", "end": "02:00"}])
    always = place(funded_buyer(), 300, 1)
    leads = live_leads(seller, [person(1)])
    jobs.match_leads([lead.id for lead in leads], now=MONDAY_10)
    db.session.commit()
    assert sales_of(closed) == [] and len(sales_of(always)) == 1


def test_an_order_whose_hold_cannot_pay_its_cheapest_window_closes(app):
    buyer = funded_buyer(10_000)
    order = place(buyer, 300, 3, budget=1_000, schedule=[
        {"days": EVERY_DAY, "start": "00:00", "end": "12:00", "price": 450},
        {"days": EVERY_DAY, "start": "12:00", "end": "24:00"}])
    assert order.held == 1_000
    live_leads(verified_seller(), [person(i) for i in range(3)])
    assert _fill(order, MONDAY_10) == 2  # 900 spent; 100 left pays for nothing
    db.session.refresh(order)
    assert (order.status, order.held) == (OrderStatus.FILLED, 0)
    assert ledger.balance_for(buyer).available == 10_000 - 900


@pytest.mark.parametrize("path", ["grouped", "single"])
def test_a_lead_bought_below_the_highest_price_gives_the_difference_back(app, path):
    buyer = funded_buyer(10_000)
    order = place(buyer, 300, 3, schedule=[
        {"days": WEEKDAYS, "start": "09:00", "end": "17:00", "price": 800},
        {"days": EVERY_DAY, "start": "17:00", "end": "09:00"}])  # nights at the order's 300
    assert order.held == 2_400
    night = MONDAY_10 - timedelta(hours=5)
    lead_ids = [lead.id for lead in live_leads(verified_seller(), [person(1)])]
    if path == "grouped":
        jobs.match_leads(lead_ids, now=night)
    else:
        from app.market import snapshot

        slot = snapshot.load_book(night).slots[order.id]
        assert Settlement(night).fill(snapshot.load_leads(lead_ids)[0], slot)
    db.session.commit()
    db.session.refresh(order)
    # Two leads to go may cost 800 each: 1,600 stays held, 500 goes back at once.
    assert (order.spent, order.held) == (300, 1_600)
    assert ledger.balance_for(buyer).available == 10_000 - 300 - 1_600
    assert ledger.reconcile().ok


def test_a_fill_planned_under_older_terms_is_lost(app):
    buyer = funded_buyer()
    order = place(buyer, 300, 2)
    lead_ids = [lead.id for lead in live_leads(verified_seller(), [person(1)])]
    from app.market import snapshot

    book = snapshot.load_book(MONDAY_10)
    slot = book.slots[order.id]
    lead = snapshot.load_leads(lead_ids)[0]
    db.session.commit()
    with events.muted():  # no refill after the change: only the stale fill is tried
        operations.change_terms(buyer, order.id, schedule=[
            {"days": EVERY_DAY, "start": "00:00", "end": "24:00", "price": 500}])
        db.session.commit()
    assert not Settlement(MONDAY_10).fill(lead, slot)  # planned at 300: the price changed
    db.session.rollback()
    assert sales_of(order) == []


@pytest.mark.parametrize("windows, says", [
    ([{"days": ["mon"], "start": "09:00", "end": "17:00"},
      {"days": ["mon", "tue"], "start": "16:00", "end": "18:00"}], "Windows 1 and 2 overlap"),
    ([{"days": ["sun"], "start": "22:00", "end": "06:00"},
      {"days": ["mon"], "start": "05:00", "end": "07:00"}], "overlap"),
    ([{"days": ["funday"], "start": "09:00", "end": "17:00"}], "days are some of"),
    ([{"days": ["mon"], "start": "9am", "end": "17:00"}], "start must be a time"),
    ([{"days": ["mon"], "start": "09:00", "end": "09:00"}], "end at another time"),
    ([{"days": ["mon"], "start": "09:00", "end": "17:00", "price": 1}], "at least"),
    ([{"days": ["mon", "mon"], "start": "09:00", "end": "17:00"}], "each once"),
])
def test_a_schedule_that_cannot_be_kept_is_refused_saying_why(app, windows, says):
    with pytest.raises(ValidationFailed, match=says) as refused:
        operations.check_terms(300, 1, schedule=windows)
    assert refused.value.details == {"field": "schedule"}


def test_windows_cover_their_minutes_overnight_and_across_the_week(app):
    (window,) = schedule.parse([{"days": ["sun"], "start": "22:00", "end": "06:00"}],
                               min_price=0, max_price=10)
    monday = datetime(2026, 11, 30)
    at = lambda day, clock: schedule.minute_of_week(  # noqa: E731
        monday + timedelta(days=day, hours=clock[0], minutes=clock[1]))
    assert window.covers(at(6, (23, 0))) and window.covers(at(0, (5, 59)))
    assert not window.covers(at(0, (6, 0))) and not window.covers(at(6, (21, 59)))
    assert schedule.next_opening((window,), datetime(2026, 12, 2, 12, 0)) == datetime(
        2026, 12, 6, 22, 0)


def test_a_cap_cannot_go_below_what_its_period_used(app):
    buyer = funded_buyer()
    order = place(buyer, 300, 5, caps={"hour": 3}, spend_caps={"week": 5_000})
    live_leads(verified_seller(), [person(i) for i in range(2)])
    jobs.fill_order(order.id)
    db.session.commit()
    with pytest.raises(ValidationFailed, match="2 leads this hour") as refused:
        operations.change_terms(buyer, order.id, caps={"hour": 1})
    assert refused.value.details == {"field": "caps.hour"}
    db.session.rollback()
    with pytest.raises(ValidationFailed, match="spent \\$6.00 this week"):
        operations.change_terms(buyer, order.id, spend_caps={"week": 500})
    db.session.rollback()
    changed = operations.change_terms(buyer, order.id, caps={"day": 4})  # hour stays 3
    assert (changed.cap_hour, changed.cap_day, changed.spend_cap_week) == (3, 4, 5_000)


def test_the_api_takes_caps_schedule_and_zone_and_shows_each_caps_use(client, api_key_for):
    buyer = funded_buyer(timezone="Europe/Madrid")
    headers = api_key_for(buyer)
    live_leads(verified_seller(), [person(i) for i in range(3)])
    response = client.post("/api/v1/orders", headers=headers, json={
        "price": 300, "quantity": 5, "caps": {"hour": 2, "day": 10},
        "spend_caps": {"week": 9_000},
        "schedule": [{"days": EVERY_DAY, "start": "00:00", "end": "24:00", "price": 450}]})
    assert response.status_code == 201, response.json
    body = response.json
    assert body["timezone"] == "Europe/Madrid"  # the buyer's
    assert body["caps"] == {"hour": 2, "day": 10} and body["spend_caps"] == {"week": 9_000}
    assert body["schedule"][0]["price"] == 450 and body["price_now"] == 450
    assert body["held"] + body["spent"] == 5 * 450 and body["filled"] == 2
    use = {(c["period"], c["kind"]): (c["used"], c["cap"], c["room"]) for c in body["cap_use"]}
    assert use == {("hour", "leads"): (2, 2, 0), ("day", "leads"): (2, 10, 8),
                   ("week", "spend"): (900, 9_000, 18)}

    order_id = body["id"]
    response = client.patch(f"/api/v1/orders/{order_id}", headers=headers,
                            json={"caps": {"hour": None}, "schedule": None})
    assert response.status_code == 200, response.json
    assert response.json["caps"] == {"day": 10} and response.json["schedule"] is None
    assert response.json["filled"] == 3  # the hourly cap went: the third lead came
    assert response.json["held"] == 2 * 300  # and the hold follows the order's own price

    response = client.patch(f"/api/v1/orders/{order_id}", headers=headers, json={
        "schedule": [{"days": ["mon"], "start": "09:00", "end": "12:00"},
                     {"days": ["mon"], "start": "11:00", "end": "13:00"}]})
    assert response.status_code == 422
    assert response.json["error"]["details"]["field"] == "schedule"
    response = client.patch(f"/api/v1/orders/{order_id}", headers=headers,
                            json={"spend_caps": {"day": 100}})
    assert response.status_code == 422
    assert response.json["error"]["details"]["field"] == "spend_caps.day"
    assert client.get(f"/api/v1/orders/{order_id}", headers=headers).json["caps"] == {"day": 10}


def test_the_estimate_accounts_for_the_schedule(app):
    seller = verified_seller()
    live_leads(seller, [person(i) for i in range(3)])
    now = datetime.now(timezone.utc)
    here = now.strftime("%a").lower()
    open_now = [{"days": [here], "start": f"{now.hour:02d}:00",
                 "end": f"{now.hour + 1:02d}:00", "price": 700}]
    result = queries.estimate(Filters.parse({}), 300, schedule=open_now)
    assert result.scheduled and result.price_now == 700
    assert result.arrived_week == 3 and result.arrived_in_windows == 3
    elsewhere = EVERY_DAY[(now.weekday() + 3) % 7]
    closed = [{"days": [elsewhere], "start": "10:00", "end": "11:00"}]
    result = queries.estimate(Filters.parse({}), 300, schedule=closed)
    assert result.price_now is None and result.arrived_in_windows == 0
    assert result.next_opening.strftime("%a %H:%M") == f"{elsewhere.capitalize()} 10:00"


def test_the_order_page_shows_each_caps_use_and_the_builder_takes_a_schedule(client):
    buyer = funded_buyer()
    live_leads(verified_seller(), [person(i) for i in range(4)])
    log_in(client, buyer)
    page = client.get("/buyer/orders/new")
    assert page.status_code == 200 and b'name="schedule-0-start"' in page.data
    response = client.post("/buyer/orders/new", data={
        "csrf_token": csrf_token(client, "/buyer/orders/new"), "price": "3.00", "quantity": "4",
        "timezone": "UTC", "cap_hour": "1", "spend_cap_day": "50.00",
        "schedule-0-days": EVERY_DAY, "schedule-0-start": "00:00", "schedule-0-end": "00:00",
        "schedule-0-price": "4.00", "lookback_days": "30"}, follow_redirects=True)
    assert response.status_code == 200, response.data
    order = db.session.scalars(sa.select(Order).where(Order.buyer_id == buyer.id)).one()
    assert order.schedule == [{"days": EVERY_DAY, "start": "00:00", "end": "24:00",
                               "price": 400}]
    assert (order.cap_hour, order.spend_cap_day, order.filled) == (1, 5_000, 1)
    text = response.get_data(as_text=True)
    assert 'id="cap-use"' in text and "1 of 1" in text and "$4.00 of $50.00" in text
    assert "the lead cap for this hour is reached" in text


def test_a_refused_window_on_the_builder_keeps_the_form_and_says_why(client):
    buyer = funded_buyer()
    log_in(client, buyer)
    response = client.post("/buyer/orders/new", data={
        "csrf_token": csrf_token(client, "/buyer/orders/new"), "price": "3.00", "quantity": "4",
        "timezone": "UTC", "schedule-0-days": ["mon"], "schedule-0-start": "09:00",
        "schedule-0-end": "17:00", "schedule-1-days": ["mon"], "schedule-1-start": "10:00",
        "schedule-1-end": "11:00", "lookback_days": "30"})
    assert response.status_code == 200
    assert b"Windows 1 and 2 overlap" in response.data
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Order)) == 0


def test_price_range_is_what_the_schedule_may_charge(app):
    windows = [{"days": ["mon"], "start": "09:00", "end": "10:00", "price": 900},
               {"days": ["tue"], "start": "09:00", "end": "10:00"}]
    assert rules.price_range(SimpleNamespace(price=300, schedule=windows)) == (300, 900)
    assert rules.price_range(SimpleNamespace(price=300, schedule=None)) == (300, 300)
