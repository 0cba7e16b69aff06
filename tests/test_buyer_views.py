import re

import sqlalchemy as sa

from app.extensions import db
from app.models import Order, OrderStatus
from app.services import ledger
from tests.conftest import csrf_token
from tests.market_helpers import live_leads, person, verified_seller


def _fund(buyer, amount=100_000):
    ledger.manual_credit(buyer, amount, reason="wire", actor=None)
    db.session.commit()


def _place(client, **fields):
    form = {"price": "5.00", "quantity": "3", "lookback_days": "30", "timezone": "UTC",
            "csrf_token": csrf_token(client, "/buyer/orders/new")} | fields
    return client.post("/buyer/orders/new", data=form)


def test_compose_place_and_watch_an_order_fill(buyer_client, buyer):
    _fund(buyer)
    live_leads(verified_seller(), [person(1), person(2, gender="m"), person(3)])
    estimate = buyer_client.post("/buyer/orders/estimate", data={
        "genders": "f", "price": "5.00", "csrf_token": csrf_token(buyer_client, "/buyer/orders/new"),
    }).get_data(as_text=True)
    assert 'id="estimate-count">2<' in estimate
    response = _place(buyer_client, genders="f", regions="US-CA", name="Spring campaign")
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    page = buyer_client.get(response.headers["Location"]).get_data(as_text=True)
    assert 'id="filled">2 / 3<' in page and "person1@mail.example.com" in page
    assert "Order placed; $15.00 is held for it" in page  # what placing held, not what is left
    order = db.session.scalar(sa.select(Order))
    assert (order.name, order.filters["genders"], order.filters["regions"]) == \
        ("Spring campaign", ["f"], ["US-CA"])
    csv_text = buyer_client.get(f"/buyer/orders/{order.id}/leads.csv").get_data(as_text=True)
    assert csv_text.count("\r\n") == 3  # header and two leads


def test_builder_shows_every_error_at_once(buyer_client, buyer):
    _fund(buyer)
    body = _place(buyer_client, age_min="60", age_max="30", regions="Nowhereland, Atlantis",
                  price="0.10", budget="1,2,3", quantity="",
                  timezone="Mars/Olympus").get_data(as_text=True)
    for message in ("The minimum age (60) is above the maximum (30).",
                    "“Nowhereland” is not a region we know",
                    "“Atlantis” is not a region we know",
                    "The price per lead must be at least $0.50.",
                    "“1,2,3” is not an amount like 1,234.50",
                    "This field is required.",
                    "Unknown time zone &#39;Mars/Olympus&#39;"):
        assert message in body, message
    assert "minor units" not in body
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Order)) == 0


def test_the_estimate_says_when_sellers_floors_keep_every_lead_out(buyer_client, buyer):
    live_leads(verified_seller(), [person(1), person(2), person(3)], floor_price=300)

    def estimate(price: str) -> str:
        return buyer_client.post("/buyer/orders/estimate", data={
            "price": price, "csrf_token": csrf_token(buyer_client, "/buyer/orders/new"),
        }).get_data(as_text=True)

    low = estimate("1.00")
    assert 'id="estimate-count">0<' in low
    assert "3 live leads match these filters, but their sellers ask more than $1.00" in low
    assert "the least any of them takes is $3.00" in low
    high = estimate("3.00")
    assert 'id="estimate-count">3<' in high and "sellers ask more" not in high


def test_a_quantity_of_zero_says_it_must_be_at_least_one(buyer_client, buyer):
    _fund(buyer)
    body = _place(buyer_client, quantity="0").get_data(as_text=True)
    assert "The quantity is a whole number of leads from 1 to" in body
    assert "This field is required." not in body  # a value was given


def test_builder_takes_region_names_and_money_in_the_readers_locale(buyer_client, buyer):
    _fund(buyer, 1_000_000)
    russian = {"Accept-Language": "ru-RU,ru;q=0.9,en;q=0.5"}
    form = {"price": "1 500,00", "budget": "3 000,50", "quantity": "2", "lookback_days": "30",
            "timezone": "UTC", "regions": "Москва, Kaliningrad, ES-M",
            "countries": "Испания, RU", "csrf_token": csrf_token(buyer_client, "/buyer/orders/new")}
    response = buyer_client.post("/buyer/orders/new", data=form, headers=russian)
    assert response.status_code == 302, response.get_data(as_text=True)[:3000]
    order = db.session.scalar(sa.select(Order))
    assert (order.price, order.budget) == (150_000, 300_050)
    assert order.filters["regions"] == ["ES-M", "RU-KGD", "RU-MOW"]
    assert order.filters["countries"] == ["ES", "RU"]
    page = buyer_client.get(response.headers["Location"], headers=russian).get_data(as_text=True)
    assert "1\u00a0500,00\u00a0$" in page  # the price, as Russian writes dollars
    english = buyer_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "$1,500.00" in english


def test_not_enough_money_says_how_much_to_top_up_and_links_the_form(
        stripe_app, buyer_client, buyer):
    _fund(buyer, 100)
    body = _place(buyer_client).get_data(as_text=True)  # $15.00 to hold, $1.00 there
    assert "you have $1.00 available. Top up at least $14.00" in body
    # A new order needs its whole hold set aside, not "more"
    assert "this order needs $15.00 set aside" in body and "more set aside" not in body
    assert "more than is held" not in body
    link = re.search(r'<a class="alert-link" href="([^"]+)">Top up \$14.00 now</a>', body)
    assert link and link.group(1) == "/buyer/balance?topup=14.00#add-funds"
    page = buyer_client.get(link.group(1)).get_data(as_text=True)
    assert 'id="add-funds"' in page and 'value="14.00"' in page
    # Raising an order's terms beyond the balance says the same, after the redirect.
    _fund(buyer, 1_400)
    order_url = _place(buyer_client).headers["Location"]
    order_id = int(order_url.rstrip("/").split("/")[-1])
    page = buyer_client.post(f"/buyer/orders/{order_id}/change", follow_redirects=True, data={
        "csrf_token": csrf_token(buyer_client, order_url), "price": "9.00", "quantity": "3"},
    ).get_data(as_text=True)
    assert "this change needs $12.00 more set aside (on top of the $15.00 the order " \
        "holds)" in page and "Top up $12.00 now</a>" in page
    assert "/buyer/balance?topup=12.00#add-funds" in page
    page = buyer_client.get("/buyer/balance?topup=x").get_data(as_text=True)
    assert re.search(r'id="topup-amount"[^>]* value=""', page)  # nothing unreadable is kept


def test_pause_resume_change_cancel(buyer_client, buyer):
    _fund(buyer, 10_000)
    order_url = _place(buyer_client).headers["Location"]
    order_id = int(order_url.rstrip("/").split("/")[-1])
    token = csrf_token(buyer_client, order_url)
    buyer_client.post(f"/buyer/orders/{order_id}/pause", data={"csrf_token": token})
    assert db.session.get(Order, order_id).status is OrderStatus.PAUSED
    buyer_client.post(f"/buyer/orders/{order_id}/resume", data={"csrf_token": token})
    buyer_client.post(f"/buyer/orders/{order_id}/change",
                      data={"csrf_token": token, "price": "6.00", "quantity": "4"})
    db.session.expire_all()
    assert (db.session.get(Order, order_id).held, ledger.balance_for(buyer).held) == (2_400, 2_400)
    page = buyer_client.post(f"/buyer/orders/{order_id}/cancel", data={"csrf_token": token},
                             follow_redirects=True).get_data(as_text=True)
    assert "$24.00 released" in page
    assert ledger.balance_for(buyer).available == 10_000


def test_webhook_secret_is_shown_once(buyer_client, buyer):
    _fund(buyer)
    order_url = _place(buyer_client, webhook_url="https://crm.example.com/hook").headers["Location"]
    first = buyer_client.get(order_url).get_data(as_text=True)
    assert "Webhook secret (shown only now): whsec_" in first
    assert "whsec_" not in buyer_client.get(order_url).get_data(as_text=True)


def test_other_buyers_orders_are_404(app, buyer_client, buyer):
    from app.models import Role
    from tests.conftest import log_in, make_user

    _fund(buyer)
    order_url = _place(buyer_client).headers["Location"]
    other = app.test_client()
    log_in(other, make_user(Role.BUYER))
    assert other.get(order_url).status_code == 404
    assert other.get(order_url + "/leads.csv").status_code == 404
