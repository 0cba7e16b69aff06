import sqlalchemy as sa

from app.extensions import db
from app.models import Lead, Order, Sale
from app.services import ledger, returns
from tests.market_helpers import funded_buyer, live_leads, person, verified_seller


def _order(client, headers, **body):
    payload = {"price": 500, "quantity": 3} | body
    return client.post("/api/v1/orders", headers=headers, json=payload)


def test_place_order_fills_from_inventory_and_lists_leads(client, api_key_for):
    seller = verified_seller()
    live_leads(seller, [person(1), person(2, gender="m"), person(3)])
    buyer = funded_buyer(10_000)
    headers = api_key_for(buyer)
    response = _order(client, headers, filters={"genders": ["f"], "regions": ["US-CA"]})
    assert response.status_code == 201, response.json
    body = response.json
    assert (body["status"], body["filled"], body["spent"], body["held"]) == ("open", 2, 1_000, 500)
    assert ledger.balance_for(buyer).available == 8_500
    order_id = body["id"]
    assert client.get(f"/api/v1/orders/{order_id}", headers=headers).json["filled"] == 2
    leads = client.get(f"/api/v1/orders/{order_id}/leads", headers=headers).json
    assert sorted(lead["lead"]["email"] for lead in leads) == ["person1@mail.example.com",
                                                               "person3@mail.example.com"]
    assert all(lead["sale_id"] for lead in leads)
    assert {lead["lead"]["phone"] for lead in leads} == {"+14155550001", "+14155550003"}
    csv_text = client.get(f"/api/v1/orders/{order_id}/leads?format=csv",
                          headers=headers).get_data(as_text=True)
    assert csv_text.lstrip("\ufeff").startswith("sale_id,sold_at,price,first_name")
    # Phones stay text in spreadsheets and importable: a tab, then E.164 (no apostrophe).
    assert ",\t+14155550001," in csv_text


def test_csv_export_defuses_formulas_in_free_text(client, api_key_for):
    seller = verified_seller()
    live_leads(seller, [person(1, first_name="=HYPERLINK(\"http://x\")")])
    buyer = funded_buyer()
    order_id = _order(client, api_key_for(buyer), quantity=1).json["id"]
    csv_text = client.get(f"/api/v1/orders/{order_id}/leads?format=csv",
                          headers=api_key_for(buyer)).get_data(as_text=True)
    assert "'=HYPERLINK" in csv_text


def test_order_validation_errors_name_the_field(client, api_key_for):
    headers = api_key_for(funded_buyer())
    cases = [({"filters": {"age_min": 50, "age_max": 20}}, "age_min"),
             ({"filters": {"regions": ["ZZ-TOP"]}}, "regions"),
             ({"price": 1}, "price"), ({"quantity": 0}, "quantity")]
    for body, field in cases:
        response = _order(client, headers, **body)
        assert response.status_code == 422, body
        assert response.json["error"]["details"]["field"] == field


def test_not_enough_balance_is_409_and_nothing_is_held(client, api_key_for):
    buyer = funded_buyer(100)
    response = _order(client, api_key_for(buyer))
    assert response.status_code == 409
    assert response.json["error"]["code"] == "insufficient_funds"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Order)) == 0


def test_cancel_pause_resume_and_change(client, api_key_for):
    buyer = funded_buyer(10_000)
    headers = api_key_for(buyer)
    order_id = _order(client, headers).json["id"]
    assert client.post(f"/api/v1/orders/{order_id}/pause", headers=headers).json["status"] == "paused"
    assert client.post(f"/api/v1/orders/{order_id}/resume", headers=headers).json["status"] == "open"
    changed = client.patch(f"/api/v1/orders/{order_id}", headers=headers, json={"price": 600})
    assert changed.json["held"] == 1_800
    cancelled = client.post(f"/api/v1/orders/{order_id}/cancel", headers=headers)
    assert cancelled.json["status"] == "cancelled" and cancelled.json["held"] == 0
    assert client.post(f"/api/v1/orders/{order_id}/cancel", headers=headers).status_code == 409
    assert ledger.balance_for(buyer).available == 10_000


def test_orders_are_private(client, api_key_for):
    order_id = _order(client, api_key_for(funded_buyer())).json["id"]
    other = api_key_for(funded_buyer())
    assert client.get(f"/api/v1/orders/{order_id}", headers=other).status_code == 404
    assert client.get(f"/api/v1/orders/{order_id}/leads", headers=other).status_code == 404
    assert client.post(f"/api/v1/orders/{order_id}/cancel", headers=other).status_code == 404


def test_sellers_cannot_order(client, api_key_for):
    response = _order(client, api_key_for(verified_seller()))
    assert response.status_code == 403


def test_estimate_counts_matching_inventory(client, api_key_for):
    seller = verified_seller()
    live_leads(seller, [person(1), person(2, gender="m"), person(3, region="US-NY")])
    headers = api_key_for(funded_buyer())
    assert client.get("/api/v1/estimate?genders=f", headers=headers).json["matching"] == 2
    assert client.get("/api/v1/estimate?regions=US-NY", headers=headers).json["matching"] == 1
    _order(client, headers, quantity=1, filters={"regions": ["US-NY"]})
    estimate = client.get("/api/v1/estimate?regions=US-NY", headers=headers).json
    assert estimate["matching"] == 0
    assert estimate["clearing_prices"] == {"count": 1, "min": 500, "median": 500, "max": 500}
    # Once refunded (the batch pulled), that sale is no longer a price anyone paid.
    sale = db.session.scalars(sa.select(Sale)).one()
    returns.return_batch_sales(db.session.get(Lead, sale.lead_id).batch_id, actor=None)
    db.session.commit()
    estimate = client.get("/api/v1/estimate?regions=US-NY", headers=headers).json
    assert estimate["clearing_prices"] == {"count": 0}


def test_a_batch_going_live_fills_open_orders(client, api_key_for):
    import io

    from tests.ingest_helpers import csv_bytes

    buyer = funded_buyer()
    order_id = _order(client, api_key_for(buyer), quantity=10).json["id"]
    seller = verified_seller()
    response = client.post("/api/v1/batches", headers=api_key_for(seller), data={
        "default_country": "US", "file": (io.BytesIO(csv_bytes([person(1), person(2)])), "a.csv")},
        content_type="multipart/form-data")
    assert response.json["status"] == "live"
    assert client.get(f"/api/v1/orders/{order_id}", headers=api_key_for(buyer)).json["filled"] == 2
    assert ledger.balance_for(seller).pending == 800  # 2 × 500 less 20%


def test_estimate_leaves_out_leads_the_buyer_already_has(client, api_key_for):
    from app.market import jobs
    from tests.market_helpers import funded_buyer, live_leads, person, place, verified_seller

    seller = verified_seller()
    live_leads(seller, [person(i) for i in range(4)], cap=3)
    buyer, other = funded_buyer(), funded_buyer()
    order = place(buyer, 500, 2)
    jobs.fill_order(order.id)
    db.session.commit()
    mine = client.get("/api/v1/estimate", headers=api_key_for(buyer)).get_json()
    theirs = client.get("/api/v1/estimate", headers=api_key_for(other)).get_json()
    assert (mine["matching"], theirs["matching"]) == (2, 4)
