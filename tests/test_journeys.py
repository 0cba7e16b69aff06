"""A lead's journey (SPEC §12, app/aftersale/journeys.py): each party sees its part --
the seller how it came in and its sales without buyers or deliveries, each of two
buyers of one lead only their own sale, delivery and outcome, admins every step --
through the API and the pages, 404 for anyone else (another company's member too), in
a fixed number of statements however many steps."""
import pytest
import sqlalchemy as sa

from app.aftersale import journeys
from app.extensions import db
from app.formatting import format_money
from app.models import DeliveryAttempt, Role, TrustLevel, Verdict, WebhookDelivery
from app.services import ledger, spotchecks
from app.services.crypto import current_vault
from tests.conftest import log_in, make_user
from tests.market_helpers import funded_buyer, live_leads, person, verified_seller
from tests.query_count import counted
from tests.receiver import Receiver
from tests.test_companies import client_of, company, member_of

LEAD = {"email": "journey.person@mail.example.com", "phone": "+1 415 555 0177",
        "first_name": "Jon", "last_name": "Ney", "consent_at": "2026-11-01T09:30:00Z",
        "source_url": "https://landing.example.com/offer", "default_country": "US",
        "floor_price": 100, "cap": 2, "sub_id": "spring-campaign"}


@pytest.fixture
def crm():
    server = Receiver(body=b'{"ok": true}')
    yield server
    server.close()


@pytest.fixture
def world(client, api_key_for, crm):
    """One lead of cap 2 sold to buyer A (delivered to A's CRM, converted) and to
    buyer B (returned by B, no delivery URL)."""
    seller, buyer_a = verified_seller(), company(Role.BUYER, "A Buyers")
    buyer_b = funded_buyer()
    ledger.manual_credit(buyer_a, 100_000, reason="test funds", actor=None)
    db.session.commit()
    keys = {who: api_key_for(user) for who, user in
            (("seller", seller), ("a", buyer_a), ("b", buyer_b))}
    order_a = client.post("/api/v1/orders", headers=keys["a"], json={
        "price": 800, "quantity": 1, "webhook_url": crm.url}).json["id"]
    order_b = client.post("/api/v1/orders", headers=keys["b"], json={
        "price": 700, "quantity": 1}).json["id"]
    response = client.post("/api/v1/leads", headers=keys["seller"], json=LEAD)
    assert response.status_code == 201, response.json
    # Sold to both buyers its cap allows: the seller reads "sold out", not "live".
    assert {k: response.json[k] for k in ("status", "sold", "cap")} == {
        "status": "sold_out", "sold": 2, "cap": 2}
    lead_id = response.json["id"]
    sales = {s["order_id"]: s["sale_id"] for s in
             client.get(f"/api/v1/orders/{order_a}/leads", headers=keys["a"]).json +
             client.get(f"/api/v1/orders/{order_b}/leads", headers=keys["b"]).json}
    assert len(sales) == 2 and len(crm.requests) == 1
    assert client.post(f"/api/v1/sales/{sales[order_a]}/outcome", headers=keys["a"], json={
        "status": "converted", "revenue": 5_000}).status_code == 200
    assert client.post("/api/v1/returns", headers=keys["b"], json={
        "sale_id": sales[order_b], "reason": "wrong_number",
        "note": "nobody answers"}).status_code == 201
    return {"lead_id": lead_id, "keys": keys, "sale_a": sales[order_a],
            "sale_b": sales[order_b], "order_a": order_a, "seller": seller,
            "buyer_a": buyer_a, "buyer_b": buyer_b}


def test_the_openapi_document_describes_the_journey(client):
    spec = client.get("/api/v1/openapi.json").json
    get = spec["paths"]["/api/v1/leads/{lead_id}/journey"]["get"]
    assert {"200", "404"} <= get["responses"].keys()
    step = spec["components"]["schemas"]["JourneyStep"]["properties"]
    assert {"at", "kind", "request", "milliseconds", "earnings"} <= step.keys()


def _journey(client, world, who) -> list[dict]:
    response = client.get(f"/api/v1/leads/{world['lead_id']}/journey",
                          headers=world["keys"][who])
    assert response.status_code == 200, response.json
    return response.json


def _kinds(steps) -> list[str]:
    return [s["kind"] for s in steps]


def test_the_seller_sees_how_it_came_in_and_its_sales_but_no_buyer_or_delivery(client, world):
    steps = _journey(client, world, "seller")
    assert _kinds(steps) == ["received", "verdict", "sale", "sale", "return_opened"]
    received, verdict = steps[0], steps[1]
    assert received["how"] == "api" and received["sub_id"] == "spring-campaign"
    assert "file" not in received  # real time: no file
    assert verdict["accepted"] and not verdict["held"]
    assert (verdict["status"], verdict["sold"], verdict["cap"]) == ("sold_out", 2, 2)
    sales = [s for s in steps if s["kind"] == "sale"]
    assert {s["sale_id"] for s in sales} == {world["sale_a"], world["sale_b"]}
    for sale in sales:
        assert sale["earnings"] > 0
        assert not {"price", "buyer", "order_id", "order_name"} & sale.keys()
    assert steps[-1]["reason"] == "wrong_number" and steps[-1]["note"] == "nobody answers"
    assert [s["at"] for s in steps] == sorted(s["at"] for s in steps)


def test_each_buyer_sees_only_their_own_sale_and_what_followed(client, world, crm):
    a = _journey(client, world, "a")
    assert _kinds(a) == ["received", "sale", "delivery_attempt", "outcome"]
    assert a[0]["sub_id"] == "spring-campaign" and "how" not in a[0] and "file" not in a[0]
    assert a[1]["sale_id"] == world["sale_a"] and a[1]["price"] == 800
    attempt = a[2]
    assert attempt["delivered"] and attempt["method"] == "webhook"
    assert attempt["status_code"] == 200 and attempt["milliseconds"] >= 0
    assert attempt["request"].startswith(f"POST {crm.url}\n")
    assert "journey.person@mail.example.com" in attempt["request"]  # A's own lead, as sent
    assert attempt["reply"] == '{"ok": true}' and attempt["error"] is None
    assert a[3]["status"] == "converted" and a[3]["revenue"] == 5_000
    assert {s.get("sale_id") for s in a[1:]} == {world["sale_a"]}

    b = _journey(client, world, "b")
    assert _kinds(b) == ["received", "sale", "return_opened"]
    assert {s.get("sale_id") for s in b[1:]} == {world["sale_b"]}
    assert b[1]["price"] == 700
    # Nothing of A's: not its price (anywhere a number is), deliveries or outcome. (Times
    # and ids may hold the digits 800, so the check is on values, not on the text.)
    assert 800 not in [value for step in b for value in step.values()]
    text = str(b)
    assert crm.url not in text and "converted" not in text


def test_admins_see_every_step_without_the_contacts_a_delivery_carried(client, world, crm,
                                                                       api_key_for):
    world["keys"]["admin"] = api_key_for(make_user(Role.ADMIN))  # enrolled in 2FA
    steps = _journey(client, world, "admin")
    assert sorted(_kinds(steps)) == sorted(["received", "verdict", "sale", "sale",
                                            "delivery_attempt", "outcome", "return_opened"])
    sales = {s["sale_id"]: s for s in steps if s["kind"] == "sale"}
    assert sales[world["sale_a"]]["buyer"] == world["buyer_a"].email
    assert sales[world["sale_b"]]["price"] == 700
    attempt = next(s for s in steps if s["kind"] == "delivery_attempt")
    assert attempt["request"] == f"POST {crm.url}" and "reply" not in attempt
    assert "journey.person@mail.example.com" not in str(steps)


def test_anyone_else_gets_404_another_companys_member_too(app, client, world, api_key_for):
    lead_id = world["lead_id"]
    outsiders = [funded_buyer(), verified_seller(),
                 member_of(company(Role.BUYER, "Other Buyers"), "ob@other.example")]
    for user in outsiders:
        response = client.get(f"/api/v1/leads/{lead_id}/journey", headers=api_key_for(user))
        assert response.status_code == 404
        assert response.json["error"]["code"] == "not_found"
    assert client.get(f"/api/v1/leads/{lead_id + 1000}/journey",
                      headers=world["keys"]["a"]).status_code == 404
    # A member of buyer A's company acts for it and sees A's part.
    member = member_of(world["buyer_a"], "mia@a-buyers.example")
    steps = client.get(f"/api/v1/leads/{lead_id}/journey", headers=api_key_for(member)).json
    assert _kinds(steps) == ["received", "sale", "delivery_attempt", "outcome"]
    page = client_of(app, member).get(f"/buyer/leads/{lead_id}/journey")
    assert page.status_code == 200
    for user, area in ((outsiders[0], "buyer"), (outsiders[1], "seller")):
        other = app.test_client()
        log_in(other, user)
        assert other.get(f"/{area}/leads/{lead_id}/journey").status_code == 404


def test_the_pages_show_each_party_its_part_and_are_linked(app, world, crm, admin_client):
    lead_id = world["lead_id"]
    a, b, seller = (app.test_client() for _ in range(3))
    log_in(b, world["buyer_b"])
    log_in(seller, world["seller"])
    a = client_of(app, world["buyer_a"])
    page = a.get(f"/buyer/leads/{lead_id}/journey").get_data(as_text=True)
    assert 'data-kind="delivery_attempt"' in page and "Delivered" in page
    assert f"POST {crm.url}" in page and "Converted" in page and format_money(800) in page
    # The delivery's request and reply under their headings; back to the order by a link.
    request, reply = page.index(">Request</h2>"), page.index(">Reply</h2>")
    assert request < page.index(f"POST {crm.url}") < reply < page.index('{&#34;ok&#34;: true}')
    order_href = f'href="/buyer/orders/{world["order_a"]}"'
    assert f'class="order-back" {order_href}>← Back to order #{world["order_a"]}' in page
    assert f'class="order-link" {order_href}>Order #{world["order_a"]}' in page
    page = b.get(f"/buyer/leads/{lead_id}/journey").get_data(as_text=True)
    assert 'data-kind="delivery_attempt"' not in page and format_money(800) not in page
    assert "Returned by the buyer" in page and format_money(700) in page
    page = seller.get(f"/seller/leads/{lead_id}/journey").get_data(as_text=True)
    assert "Received in real time" in page and "source tag (sub_id) spring-campaign" in page
    assert ('Status now: <span class="lead-status" data-status="sold_out">Sold out</span> · '
            'sold to 2 of at most 2 buyers') in page
    assert 'data-kind="delivery_attempt"' not in page and "Converted" not in page
    assert "/buyer/orders/" not in page
    admin_page = admin_client.get(f"/admin/leads/{lead_id}/journey")
    assert admin_page.status_code == 200
    assert "/buyer/orders/" not in admin_page.get_data(as_text=True)  # no page of theirs
    # Linked from the buyer's work list and the seller's returns.
    href = f"/buyer/leads/{lead_id}/journey"
    assert href in a.get(f"/buyer/orders/{world['order_a']}").get_data(as_text=True)
    assert f"/seller/leads/{lead_id}/journey" in seller.get("/seller/returns").get_data(
        as_text=True)


def test_a_lead_with_room_left_is_live_with_its_sales_counted(client, api_key_for, app):
    """One buyer of a lead of cap 2: live, sold 1 of 2, in the answer and the journey."""
    seller, buyer = verified_seller(), funded_buyer()
    keys = {"seller": api_key_for(seller), "buyer": api_key_for(buyer)}
    assert client.post("/api/v1/orders", headers=keys["buyer"], json={
        "price": 800, "quantity": 1}).status_code == 201
    response = client.post("/api/v1/leads", headers=keys["seller"], json=LEAD)
    assert response.status_code == 201, response.json
    assert {k: response.json[k] for k in ("status", "sold", "cap")} == {
        "status": "live", "sold": 1, "cap": 2}
    steps = client.get(f"/api/v1/leads/{response.json['id']}/journey",
                       headers=keys["seller"]).json
    [verdict] = [s for s in steps if s["kind"] == "verdict"]
    assert (verdict["status"], verdict["sold"], verdict["cap"]) == ("live", 1, 2)
    page = client_of(app, seller).get(f"/seller/leads/{response.json['id']}/journey")
    assert ('data-status="live">Live</span> · sold to 1 of at most 2 buyers'
            in page.get_data(as_text=True))


def test_a_lead_without_a_sub_id_says_so_not_that_its_source_is_unknown(app):
    seller = make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED)
    lead = live_leads(seller, [person(0)])[0]
    assert not lead.sub_id
    page = client_of(app, seller).get(f"/seller/leads/{lead.id}/journey").get_data(as_text=True)
    assert "no source tag (sub_id) given" in page and "source not given" not in page


def test_a_spot_check_shows_on_the_sellers_journey_and_never_the_buyers(app):
    admin = make_user(Role.ADMIN)
    seller = make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED)
    leads = live_leads(seller, [person(i) for i in range(30)])
    batch = leads[0].batch
    check = spotchecks.start_check(batch, admin)
    db.session.commit()
    for item in check.items:
        spotchecks.record_verdict(check, item.id, Verdict.GENUINE.value, admin, note="called")
    db.session.refresh(check)
    spotchecks.decide(check, admin)
    db.session.commit()
    sampled = check.items[0].lead_id
    steps = journeys.journey(seller, sampled)
    assert _kinds(steps) == ["received", "verdict", "spot_check_sampled", "spot_check"]
    assert steps[0]["how"] == "upload" and steps[0]["file"] == batch.filename
    assert steps[0]["row"] == db.session.get(type(leads[0]), sampled).row_number
    assert steps[2]["verdict"] == "genuine" and steps[3]["result"] == "passed"


def test_the_journey_runs_the_same_statements_however_many_steps(world, api_key_for):
    admin = make_user(Role.ADMIN)

    def statements(viewer) -> int:
        journeys.journey(viewer, world["lead_id"])  # warm: the viewer's own row is loaded
        with counted() as run:
            journeys.journey(viewer, world["lead_id"])
        return len(run)

    before = {"admin": statements(admin), "a": statements(world["buyer_a"]),
              "seller": statements(world["seller"])}
    delivery = db.session.scalar(sa.select(WebhookDelivery).where(
        WebhookDelivery.sale_id == world["sale_a"]))
    vault = current_vault()
    for i in range(5):  # five more tries logged for A's sale
        db.session.add(DeliveryAttempt(delivery_id=delivery.id, milliseconds=i,
                                       request_enc=vault.encrypt("POST x"), status_code=500,
                                       reply_enc=vault.encrypt("no"), error="it failed"))
    db.session.commit()
    assert len([s for s in journeys.journey(admin, world["lead_id"])
                if s["kind"] == "delivery_attempt"]) == 6
    assert {"admin": statements(admin), "a": statements(world["buyer_a"]),
            "seller": statements(world["seller"])} == before == {"admin": 5, "a": 4, "seller": 4}
