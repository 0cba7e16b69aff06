"""Live bids and ping/post (SPEC §4 rule 9, §11 additions, §12): orders with a bid URL
are asked at once with the lead's attributes, signed like a webhook, within the ping
deadline; the best of the fixed prices and the timely bids wins by the market's rules;
a ping's post must match what was pinged; every answer shows in the lead's journey as
each party may see it. The bidders are real HTTP servers on 127.0.0.1."""
import json
import socket
import time

import pytest
import sqlalchemy as sa

from app.aftersale import journeys
from app.aftersale.delivery import webhook
from app.extensions import db
from app.models import Lead, Order, Ping, PingBid, Role, Sale
from app.services import ledger
from tests.conftest import log_in, make_user
from tests.market_helpers import funded_buyer, verified_seller
from tests.receiver import Receiver

LEAD = {"email": "bid.person@mail.example.com", "phone": "+1 415 555 0199",
        "first_name": "Ana", "last_name": "Bid", "age": 41, "gender": "f",
        "region": "US-CA", "consent_at": "2026-11-20T09:30:00Z",
        "source_url": "https://landing.example.com/offer", "sub_id": "autumn",
        "default_country": "US", "floor_price": 100, "cap": 1}
CONTACTS = ("email", "phone", "first_name", "last_name")


def _ping_of(lead: dict) -> dict:
    ping = {k: v for k, v in lead.items() if k not in CONTACTS}
    return ping | {"has_email": True, "has_phone": True}


def _post_of(lead: dict, ping_id: str) -> dict:
    return {k: v for k, v in lead.items()
            if k not in ("default_country", "floor_price", "cap")} | {"ping_id": ping_id}


@pytest.fixture
def bidders():
    servers = []

    def start(body: bytes, status: int = 200, delay: float = 0) -> Receiver:
        server = Receiver(status=status, body=body, delay=delay)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def market(client, api_key_for):
    seller = verified_seller()
    keys = {"seller": api_key_for(seller)}

    def order(who: str, price: int, **terms) -> dict:
        if who not in keys:
            keys[who] = api_key_for(funded_buyer())
        response = client.post("/api/v1/orders", headers=keys[who],
                               json={"price": price, "quantity": 5, **terms})
        assert response.status_code == 201, response.json
        return response.json

    return {"seller": seller, "keys": keys, "order": order}


def _bids(ping_public_id=None, lead_id=None) -> dict[int, PingBid]:
    db.session.expire_all()
    where = Ping.public_id == ping_public_id if ping_public_id else Ping.lead_id == lead_id
    return {bid.order_id: bid for bid in db.session.scalars(
        sa.select(PingBid).join(Ping).where(where))}


def test_orders_take_a_bid_url_and_a_max_bid_and_hold_for_the_max_bid(client, market):
    placed = market["order"]("a", 100, bid_url="https://crm.example.com/bid", max_bid=900)
    assert placed["bid_url"] == "https://crm.example.com/bid" and placed["max_bid"] == 900
    assert placed["webhook_secret"].startswith("whsec_")  # bids are signed with it
    assert placed["held"] == 5 * 900  # the hold is sized for the highest bid
    keys = market["keys"]["a"]
    for bad, field in (({"bid_url": "ftp://crm.example.com", "max_bid": 900}, "bid_url"),
                       ({"bid_url": "https://crm.example.com/bid"}, "max_bid"),
                       ({"bid_url": "https://crm.example.com/bid", "max_bid": 1}, "max_bid")):
        response = client.post("/api/v1/orders", headers=keys,
                               json={"price": 100, "quantity": 1, **bad})
        assert response.status_code == 422, response.json
        assert field in json.dumps(response.json["error"]["details"])
    changed = client.patch(f"/api/v1/orders/{placed['id']}", headers=keys,
                           json={"max_bid": 400})
    assert changed.status_code == 200, changed.json
    assert changed.json["max_bid"] == 400 and changed.json["held"] == 5 * 400
    off = client.patch(f"/api/v1/orders/{placed['id']}", headers=keys, json={"bid_url": None})
    assert off.json["bid_url"] is None and off.json["max_bid"] is None
    assert off.json["held"] == 5 * 100


def test_a_real_time_lead_goes_to_the_highest_timely_bid(client, market, bidders, app,
                                                         monkeypatch):
    monkeypatch.setitem(app.config, "PING_DEADLINE_MS", 400)
    good = bidders(b'{"bid": 900}')
    greedy = bidders(b'{"bid": 1500}')  # above its max_bid
    slow = bidders(b'{"bid": 5000}', delay=2)
    broken = bidders(b"oops", status=500)
    malformed = bidders(b"<bid>2000</bid>")
    fixed = market["order"]("fixed", 500)
    orders = {name: market["order"](name, 100, bid_url=server.url, max_bid=max_bid)
              for name, server, max_bid in (("good", good, 1000), ("greedy", greedy, 1000),
                                            ("slow", slow, 6000), ("broken", broken, 3000),
                                            ("malformed", malformed, 3000))}
    started = time.monotonic()
    response = client.post("/api/v1/leads", headers=market["keys"]["seller"], json=LEAD)
    took = time.monotonic() - started
    assert response.status_code == 201, response.json
    assert [s["price"] for s in response.json["sales"]] == [900]
    # Its one buyer (cap 1) is all it may have: the seller is told so, not "live".
    assert (response.json["status"], response.json["sold"], response.json["cap"]) == (
        "sold_out", 1, 1)
    assert took < 0.4 + 1.0  # the slow bidder's 2 s were not waited for
    sale = db.session.get(Sale, response.json["sales"][0]["sale_id"])
    assert sale.order_id == orders["good"]["id"]

    request = good.requests[0]
    body = json.loads(request["body"])
    assert request["headers"]["X-Signature"] == webhook.signature(
        orders["good"]["webhook_secret"], request["body"])
    assert body["order_id"] == orders["good"]["id"] and body["ping_id"]
    assert body["lead"]["age"] == 41 and body["lead"]["region"] == "US-CA"
    assert {"score", "temperature", "sub_id"} <= body["lead"].keys()
    # Attributes only (the lead part: the random ping id may spell anything).
    assert not {"first_name", "last_name", "email", "phone", "ip"} & body["lead"].keys()
    attributes = json.dumps(body["lead"])
    for secret in ("bid.person", "4155550199", "Ana", "Bid"):
        assert secret not in attributes
    assert "bid.person" not in request["body"].decode()
    assert "4155550199" not in request["body"].decode()

    bids = _bids(lead_id=response.json["id"])
    outcome = {name: bids[orders[name]["id"]].outcome for name in orders}
    assert outcome == {"good": "bid", "greedy": "over_max", "slow": "late",
                       "broken": "failed", "malformed": "malformed"}
    assert bids[orders["good"]["id"]].won and bids[orders["good"]["id"]].amount == 900
    assert fixed["id"] not in bids  # a fixed price that lost took part in nothing
    assert bids[orders["broken"]["id"]].detail == "HTTP 500"
    assert all(0 <= b.milliseconds < 2000 for b in bids.values())  # none waited for
    assert bids[orders["slow"]["id"]].milliseconds >= 300  # its own timeout (PING_BID_TIMEOUT_MS)


def test_without_a_bid_the_fixed_price_wins_and_a_bid_that_cannot_be_paid_is_ignored(
        client, market, bidders):
    quiet = bidders(b'{"bid": null}')
    rich = bidders(b'{"bid": 900}')
    fixed = market["order"]("fixed", 500)
    market["order"]("quiet", 100, bid_url=quiet.url, max_bid=1000)
    # Bids 900 but may spend only 600 a day: it could not pay its bid.
    capped = market["order"]("capped", 100, bid_url=rich.url, max_bid=1000,
                             spend_caps={"day": 600})
    response = client.post("/api/v1/leads", headers=market["keys"]["seller"], json=LEAD)
    assert response.status_code == 201, response.json
    [sale] = response.json["sales"]
    assert sale["price"] == 500
    assert db.session.get(Sale, sale["sale_id"]).order_id == fixed["id"]
    bids = _bids(lead_id=response.json["id"])
    assert bids[capped["id"]].outcome == "cannot_pay" and bids[capped["id"]].amount == 900
    assert {b.outcome for b in bids.values()} == {"no_bid", "cannot_pay", "fixed"}



def test_a_ping_no_order_bids_on_reads_so_in_the_sellers_journey(app, client, market):
    market["order"]("fixed", 500)
    seller = market["keys"]["seller"]
    pinged = client.post("/api/v1/pings", headers=seller, json=_ping_of(LEAD))
    share = ledger.seller_share(500, market["seller"])
    assert pinged.status_code == 201 and pinged.json["price"] == share, pinged.json
    posted = client.post("/api/v1/posts", headers=seller,
                         json=_post_of(LEAD, pinged.json["ping_id"]))
    assert posted.status_code == 201, posted.json
    page = app.test_client()
    log_in(page, market["seller"])
    html = page.get(f"/seller/leads/{posted.json['id']}/journey").get_data(as_text=True)
    assert f"Pinged: no order bids on such leads · offered ${share / 100:.2f}" in html
    assert "Last bid in" not in html and "Pinged 0" not in html


def test_the_ping_deadline_bounds_the_answer_however_slow_the_bidders(client, market,
                                                                      bidders, app,
                                                                      monkeypatch):
    monkeypatch.setitem(app.config, "PING_DEADLINE_MS", 200)
    for i in range(6):
        market["order"](f"slow{i}", 100, max_bid=1000,
                        bid_url=bidders(b'{"bid": 700}', delay=3).url)
    # A port nobody listens on: refused at once.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    refused = market["order"]("refused", 100, max_bid=1000,
                              bid_url=f"http://127.0.0.1:{port}/bid")
    started = time.monotonic()
    response = client.post("/api/v1/pings", headers=market["keys"]["seller"],
                           json=_ping_of(LEAD))
    took = time.monotonic() - started
    assert response.status_code == 200, response.json
    assert response.json == {"ping_id": None, "reason": "no_bid"}
    assert 0.2 <= took < 0.2 + 1.5  # the bidders' 3 s were not waited for
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Ping)) == 0
    assert refused["id"]


def test_a_ping_then_its_post_sells_at_the_offered_price(client, market, bidders):
    bidder = bidders(b'{"bid": 950}')
    order = market["order"]("bidder", 100, bid_url=bidder.url, max_bid=1000)
    market["order"]("fixed", 600)
    seller = market["keys"]["seller"]
    pinged = client.post("/api/v1/pings", headers=seller, json=_ping_of(LEAD))
    assert pinged.status_code == 201, pinged.json
    assert pinged.json["price"] == 950 - 190 and pinged.json["expires_at"]  # the seller's share
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Lead)) == 0
    posted = client.post("/api/v1/posts", headers=seller,
                         json=_post_of(LEAD, pinged.json["ping_id"]))
    assert posted.status_code == 201, posted.json
    [sale] = posted.json["sales"]
    assert sale["price"] == 950 and sale["seller_share"] == 950 - 190
    stored = db.session.get(Sale, sale["sale_id"])
    assert stored.order_id == order["id"] and stored.ledger_transaction_id
    assert len(bidder.requests) == 1  # asked once, at the ping
    again = client.post("/api/v1/posts", headers=seller,
                        json=_post_of(LEAD, pinged.json["ping_id"]))
    assert again.status_code == 409 and again.json["error"]["code"] == "ping_used"


def test_a_post_that_differs_from_its_ping_is_refused_and_nothing_is_stored(client, market,
                                                                           bidders):
    market["order"]("bidder", 100, bid_url=bidders(b'{"bid": 950}').url, max_bid=1000)
    seller = market["keys"]["seller"]
    ping_id = client.post("/api/v1/pings", headers=seller, json=_ping_of(LEAD)).json["ping_id"]
    older = _post_of(LEAD | {"age": 67}, ping_id)
    response = client.post("/api/v1/posts", headers=seller, json=older)
    assert response.status_code == 409, response.json
    assert response.json["error"]["code"] == "ping_mismatch"
    assert response.json["error"]["details"]["fields"] == ["age"]
    assert response.json["error"]["message"] == "The lead does not match the ping: age differs."
    other_terms = client.post("/api/v1/posts", headers=seller,
                              json=LEAD | {"ping_id": ping_id, "floor_price": 300, "cap": 2})
    assert other_terms.status_code == 409, other_terms.json
    assert other_terms.json["error"]["details"]["fields"] == ["floor_price", "cap"]
    no_phone = {k: v for k, v in _post_of(LEAD, ping_id).items() if k != "phone"}
    assert client.post("/api/v1/posts", headers=seller, json=no_phone).json["error"][
        "details"]["fields"] == ["has_phone"]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Lead)) == 0
    invalid = client.post("/api/v1/posts", headers=seller,
                          json=_post_of(LEAD | {"email": "not-an-email"}, ping_id))
    assert invalid.status_code == 422 and invalid.json["error"]["code"] == "invalid_email"
    # A national number of a lead without a place is read in the ping's default country.
    unplaced = {k: v for k, v in _post_of(LEAD | {"phone": "12345"}, ping_id).items()
                if k != "region"}
    bad_phone = client.post("/api/v1/posts", headers=seller, json=unplaced)
    assert bad_phone.status_code == 422 and bad_phone.json["error"]["message"] == (
        "The phone “12345” is not a valid phone number (numbers without a +country prefix "
        "are read as US, from the ping's default_country).")
    # The ping still stands for the right lead, posted with the ping's own terms too.
    assert client.post("/api/v1/posts", headers=seller,
                       json=LEAD | {"ping_id": ping_id, "default_country": "us"}
                       ).status_code == 201


def test_an_expired_ping_is_refused(client, market, bidders, app, monkeypatch):
    market["order"]("bidder", 100, bid_url=bidders(b'{"bid": 950}').url, max_bid=1000)
    monkeypatch.setitem(app.config, "PING_TTL_SECONDS", 0)
    seller = market["keys"]["seller"]
    ping_id = client.post("/api/v1/pings", headers=seller, json=_ping_of(LEAD)).json["ping_id"]
    response = client.post("/api/v1/posts", headers=seller, json=_post_of(LEAD, ping_id))
    assert response.status_code == 410, response.json
    assert response.json["error"]["code"] == "ping_expired"
    other = client.post("/api/v1/posts", headers=seller, json=_post_of(LEAD, "nope"))
    assert other.status_code == 404
    # No ping has such an id (PostgreSQL cannot even compare a NUL byte): said so.
    for shape in ("\x00", "a" * 33, "ping id"):
        malformed = client.post("/api/v1/posts", headers=seller, json=_post_of(LEAD, shape))
        assert malformed.status_code == 422, malformed.json
        assert "Not a ping id" in str(malformed.json)


def test_a_ping_without_buyers_and_a_ping_with_bad_attributes(client, market):
    seller = market["keys"]["seller"]
    none = client.post("/api/v1/pings", headers=seller, json=_ping_of(LEAD))
    assert none.status_code == 200 and none.json == {"ping_id": None, "reason": "no_buyer"}
    young = client.post("/api/v1/pings", headers=seller, json=_ping_of(LEAD) | {"age": 15})
    assert young.status_code == 422 and young.json["error"]["code"] == "implausible_age"
    blind = client.post("/api/v1/pings", headers=seller,
                        json=_ping_of(LEAD) | {"has_email": False, "has_phone": False})
    assert blind.status_code == 422 and blind.json["error"]["code"] == "no_contact"
    sneaky = client.post("/api/v1/pings", headers=seller,
                         json=_ping_of(LEAD) | {"email": "x@mail.example.com"})
    assert sneaky.status_code == 422  # contacts are not part of a ping
    # A ping has no phone: without default_country, the country it names is the default.
    countryless = {k: v for k, v in _ping_of(LEAD).items() if k != "default_country"}
    named = client.post("/api/v1/pings", headers=seller, json=countryless | {"country": "US"})
    assert named.status_code == 200 and named.json["reason"] == "no_buyer"
    # Its region (US-CA) names it too; with neither, nothing does.
    regional = client.post("/api/v1/pings", headers=seller, json=countryless)
    assert regional.status_code == 200 and regional.json["reason"] == "no_buyer"
    placeless = {k: v for k, v in countryless.items() if k != "region"}
    unknown = client.post("/api/v1/pings", headers=seller, json=placeless)
    assert unknown.status_code == 422
    assert unknown.json["error"]["code"] == "invalid_default_country"


def test_when_the_winner_can_no_longer_pay_the_next_best_bid_buys_at_its_own_price(
        client, market, bidders):
    first = market["order"]("first", 100, bid_url=bidders(b'{"bid": 950}').url, max_bid=1000)
    second = market["order"]("second", 100, bid_url=bidders(b'{"bid": 800}').url,
                             max_bid=1000)
    seller = market["keys"]["seller"]
    ping_id = client.post("/api/v1/pings", headers=seller, json=_ping_of(LEAD)).json["ping_id"]
    assert client.post(f"/api/v1/orders/{first['id']}/pause",
                       headers=market["keys"]["first"]).status_code == 200
    posted = client.post("/api/v1/posts", headers=seller, json=_post_of(LEAD, ping_id))
    assert posted.status_code == 201, posted.json
    [sale] = posted.json["sales"]
    assert sale["price"] == 800
    assert (posted.json["status"], posted.json["sold"], posted.json["cap"]) == ("sold_out", 1, 1)
    assert db.session.get(Sale, sale["sale_id"]).order_id == second["id"]


def test_when_no_offer_of_the_ping_can_pay_the_lead_is_stored_unsold(client, market, bidders):
    only = market["order"]("only", 100, bid_url=bidders(b'{"bid": 950}').url, max_bid=1000)
    seller = market["keys"]["seller"]
    ping_id = client.post("/api/v1/pings", headers=seller, json=_ping_of(LEAD)).json["ping_id"]
    client.post(f"/api/v1/orders/{only['id']}/cancel", headers=market["keys"]["only"])
    posted = client.post("/api/v1/posts", headers=seller, json=_post_of(LEAD, ping_id))
    assert posted.status_code == 201 and posted.json["sales"] == []
    assert (posted.json["status"], posted.json["sold"], posted.json["cap"]) == ("live", 0, 1)
    lead = db.session.get(Lead, posted.json["id"])
    assert lead.status.value == "live" and lead.sold_count == 0


def test_the_journey_shows_pings_and_bids_to_each_party_its_part(client, market, bidders,
                                                                 app):
    a = market["order"]("a", 100, bid_url=bidders(b'{"bid": 900}').url, max_bid=1000)
    b = market["order"]("b", 100, bid_url=bidders(b'{"bid": 800}').url, max_bid=1000)
    late = market["order"]("late", 100, bid_url=bidders(b'{"bid": 990}', delay=2).url,
                           max_bid=1000)
    response = client.post("/api/v1/leads", headers=market["keys"]["seller"],
                           json=LEAD | {"cap": 2})
    assert sorted(s["price"] for s in response.json["sales"]) == [800, 900]
    lead_id = response.json["id"]

    def steps(who):
        got = client.get(f"/api/v1/leads/{lead_id}/journey", headers=market["keys"][who])
        assert got.status_code == 200, got.json
        return got.json

    seller = steps("seller")
    [ping] = [s for s in seller if s["kind"] == "ping"]
    # The seller reads the price as the ping's answer told them: their share of it.
    assert ping["price"] == ledger.seller_share(1700, market["seller"]) < 1700
    assert ping["asked"] == 3 and ping["deadline_ms"] == 300
    assert not [s for s in seller if s["kind"] == "bid"]
    mine = [s for s in steps("a") if s["kind"] == "bid"]
    assert [(s["order_id"], s["amount"], s["won"]) for s in mine] == [(a["id"], 900, True)]
    assert mine[0]["milliseconds"] >= 0
    assert not [s for s in steps("a") if s["kind"] == "ping"]
    kinds = [s["kind"] for s in steps("a")]
    assert kinds.index("bid") < kinds.index("sale")  # sold once the bids were in
    assert 800 not in [v for s in steps("a") for v in s.values()]  # nothing of B's bid
    assert client.get(f"/api/v1/leads/{lead_id}/journey",
                      headers=market["keys"]["late"]).status_code == 404  # bought nothing
    admin = make_user(Role.ADMIN)
    every = {s["order_id"]: s for s in journeys.journey(admin, lead_id) if s["kind"] == "bid"}
    assert [s["price"] for s in journeys.journey(admin, lead_id) if s["kind"] == "ping"] == [1700]
    assert {every[o["id"]]["outcome"] for o in (a, b, late)} == {"bid", "late"}
    page = app.test_client()
    log_in(page, market["seller"])
    html = page.get(f"/seller/leads/{lead_id}/journey").get_data(as_text=True)
    assert "Pinged 3 bidding orders" in html
    buyer_a = db.session.get(Order, a["id"]).buyer
    buyer_page = app.test_client()
    log_in(buyer_page, buyer_a)
    html = buyer_page.get(f"/buyer/leads/{lead_id}/journey").get_data(as_text=True)
    assert f"order #{a['id']}" in html and f"order #{b['id']}" not in html
    assert ledger.balance_for(buyer_a).available >= 0


def test_the_buyer_sets_and_changes_the_bid_url_in_the_order_pages(buyer_client, buyer):
    from tests.conftest import csrf_token
    from tests.test_buyer_views import _fund, _place

    _fund(buyer, 100_000)
    refused = _place(buyer_client, bid_url="crm.example.com/bid", max_bid="9.00")
    assert refused.status_code == 200
    assert "The bid URL must be an http(s) address." in refused.get_data(as_text=True)
    order_url = _place(buyer_client, bid_url="https://crm.example.com/bid",
                       max_bid="9.00").headers["Location"]
    order_id = int(order_url.rstrip("/").split("/")[-1])
    order = db.session.get(Order, order_id)
    assert (order.bid_url, order.max_bid) == ("https://crm.example.com/bid", 900)
    page = buyer_client.get(order_url).get_data(as_text=True)
    assert "Webhook secret (shown only now): whsec_" in page  # bids are signed with it
    assert 'value="https://crm.example.com/bid"' in page and 'value="9.00"' in page
    buyer_client.post(f"/buyer/orders/{order_id}/change", data={
        "csrf_token": csrf_token(buyer_client, order_url), "price": "5.00",
        "quantity": str(order.quantity), "bid_url": "https://crm.example.com/bid",
        "max_bid": "12.50"})
    db.session.expire_all()
    order = db.session.get(Order, order_id)
    assert order.max_bid == 1250 and order.held == order.quantity * 1250


def test_bid_urls_on_private_addresses_are_not_asked_unless_allowed(client, market, bidders,
                                                                    app, monkeypatch):
    bidder = bidders(b'{"bid": 900}')
    order = market["order"]("bidder", 100, bid_url=bidder.url, max_bid=1000)
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_PRIVATE", False)
    response = client.post("/api/v1/leads", headers=market["keys"]["seller"], json=LEAD)
    assert response.status_code == 201 and response.json["sales"] == []
    assert bidder.requests == []
    bid = _bids(lead_id=response.json["id"])[order["id"]]
    assert bid.outcome == "failed" and bid.detail == "refused: 127.0.0.1 is not a public address"
