"""Issue 15 item 5: sub_id, city, postal code and consent certificates, stored, shown to
buyers, and the seller's figures per sub_id."""
import csv
import io

import sqlalchemy as sa

from app.extensions import db
from app.market import jobs
from app.models import Batch, Role, TrustLevel
from app.services import market_stats, outcomes, returns
from tests.conftest import log_in, make_user
from tests.ingest_helpers import csv_bytes, ingest, leads, person, rejections
from tests.market_helpers import funded_buyer, place, sales_of

CERT = "https://cert.trustedform.com/" + "0123456789abcdef" * 2 + "01234567"
LEADID = "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"
HEADER = ["email", "phone", "consent_at", "source_url", "Sub ID", "City", "ZIP", "TrustedForm",
          "Jornaya LeadiD"]


def _rows() -> list[dict]:
    rows = []
    for i in range(1, 7):
        rows.append(person(i, **{"Sub ID": "spring" if i <= 4 else "",
                                 "City": "San Francisco", "ZIP": "94103",
                                 "TrustedForm": CERT, "Jornaya LeadiD": LEADID}))
    rows.append(person(7, **{"Sub ID": "fall", "ZIP": "!", "TrustedForm": "https://x.example.com",
                             "Jornaya LeadiD": ""}))
    return rows


def test_new_fields_are_stored_and_bad_certificates_rejected(seller):
    batch = ingest(seller, csv_bytes(_rows(), header=HEADER))
    assert rejections(batch) == {8: "invalid_postal_code"}
    stored = leads(batch)
    assert [lead.sub_id for lead in stored] == ["spring"] * 4 + [None, None]
    first = stored[0]
    assert (first.city, first.postal_code) == ("San Francisco", "94103")
    assert (first.trustedform_cert_url, first.jornaya_leadid) == (CERT, LEADID.upper())


def test_buyers_receive_the_new_fields(client, seller, api_key_for):
    seller.trust_level = TrustLevel.VERIFIED
    ingest(seller, csv_bytes(_rows()[:1], header=HEADER))
    buyer = funded_buyer()
    order = place(buyer, 500, 1)
    jobs.fill_order(order.id)
    db.session.commit()
    body = client.get(f"/api/v1/orders/{order.id}/leads", headers=api_key_for(buyer)).json
    lead = (body["items"] if isinstance(body, dict) else body)[0]["lead"]
    assert (lead["sub_id"], lead["city"], lead["postal_code"]) == ("spring", "San Francisco",
                                                                   "94103")
    assert (lead["trustedform_cert_url"], lead["jornaya_leadid"]) == (CERT, LEADID.upper())
    text = client.get(f"/api/v1/orders/{order.id}/leads?format=csv",
                      headers=api_key_for(buyer)).get_data(as_text=True)
    table = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    assert table[0]["sub_id"] == "spring" and table[0]["postal_code"] == "94103"
    assert table[0]["trustedform_cert_url"] == CERT


def test_figures_per_sub_id_on_the_batch_page_dashboard_and_api(app, client, seller,
                                                                  api_key_for):
    seller.trust_level = TrustLevel.VERIFIED
    batch = ingest(seller, csv_bytes(_rows(), header=HEADER))
    cheap, dear = funded_buyer(), funded_buyer()
    orders = [place(cheap, 300, 2), place(dear, 700, 3)]
    for order in orders:
        jobs.fill_order(order.id)
    db.session.commit()
    sales = [sale for order in orders for sale in sales_of(order)]
    assert len(sales) == 5
    by_lead = {lead.id: lead.sub_id for lead in leads(batch)}
    spring = [s for s in sales if by_lead[s.lead_id] == "spring"]
    assert len(spring) >= 2
    buyers = {cheap.id: cheap, dear.id: dear}
    converted, returned = spring[0], spring[1]
    outcomes.record(buyers[converted.buyer_id], converted.id, "converted", 10_000)
    item = returns.open_return(buyers[returned.buyer_id], returned.id, "fake")
    returns.seller_respond(seller, item.id, True)
    db.session.commit()

    figures = {f.sub_id: f for f in market_stats.sub_id_figures([batch.id])}
    assert set(figures) == {"spring", None}
    spring_figures = figures["spring"]
    assert (spring_figures.accepted, spring_figures.returned, spring_figures.converted) == (4, 1, 1)
    assert spring_figures.sold == len(spring)
    assert spring_figures.revenue == sum(s.price for s in spring)
    assert (figures[None].accepted, figures[None].sold) == (2, 5 - len(spring))
    stats = market_stats.batch_sales([batch.id])[batch.id]
    assert (stats.sold, stats.revenue, stats.returned) == (
        market_stats.Net(5, 1), sum(s.price for s in sales), 1)
    assert (stats.feedback.rated, stats.feedback.converted) == (1, 1)

    web = app.test_client()
    log_in(web, seller)
    page = web.get(f"/seller/batches/{batch.id}").get_data(as_text=True)
    assert 'id="batch-sources"' in page and "<code>spring</code>" in page
    dashboard = web.get("/seller/").get_data(as_text=True)
    assert 'id="dashboard-sources"' in dashboard and "<code>spring</code>" in dashboard
    assert "Buyers rated 1 of your delivered leads: <strong>1</strong> converted" in dashboard
    admin = app.test_client()
    log_in(admin, make_user(Role.ADMIN))  # SPEC §3: admins see the figures per sub_id too
    reviewed = admin.get(f"/admin/quality/batches/{batch.id}").get_data(as_text=True)
    assert 'id="batch-sources"' in reviewed and "<code>spring</code>" in reviewed
    body = client.get(f"/api/v1/batches/{batch.id}", headers=api_key_for(seller)).json
    api_spring = next(s for s in body["sources"] if s["sub_id"] == "spring")
    assert (api_spring["accepted"], api_spring["returned"], api_spring["converted"]) == (4, 1, 1)


def test_a_batch_without_sub_ids_shows_no_source_table(seller_client, seller):
    ingest(seller, csv_bytes([person(1)]))
    batch = db.session.scalar(sa.select(Batch))
    assert "batch-sources" not in seller_client.get(f"/seller/batches/{batch.id}").get_data(
        as_text=True)


def test_a_real_time_lead_takes_the_new_fields(client, api_key_for):
    seller = make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED)
    body = {"email": "rt@mail.example.com", "consent_at": "2026-11-01T09:30:00Z",
            "source_url": "https://x.example.com", "default_country": "US", "sub_id": "form-7",
            "city": "Austin", "postal_code": "73301", "jornaya_leadid": LEADID}
    response = client.post("/api/v1/leads", headers=api_key_for(seller), json=body)
    assert response.status_code == 201, response.json
    bad = client.post("/api/v1/leads", headers=api_key_for(seller),
                      json=body | {"email": "rt2@mail.example.com", "jornaya_leadid": "x"})
    assert bad.json["error"]["code"] == "invalid_certificate"


def test_a_russian_exports_source_column_of_channels_is_its_sub_id_and_the_page_column_its_page(
        seller):
    """A cp1251 `;` export whose "Источник" holds ad channels and "Страница" the form's
    page: with the columns as read (no mapping given), its rows are leads, not
    `no_consent` for a page named "vk_ads"."""
    header = ["Имя", "Телефон", "Источник", "Страница", "Дата согласия"]
    rows = [{"Имя": "Ирина", "Телефон": f"+7916123456{i}", "Источник": channel,
             "Страница": "https://blog.example.ru/form", "Дата согласия": "2026-11-01 10:00"}
            for i, channel in enumerate(["vk_ads", "yandex_direct", "vk_ads"])]
    batch = ingest(seller, csv_bytes(rows, header=header, delimiter=";", encoding="cp1251"),
                   country="RU")
    assert (batch.accepted, rejections(batch)) == (3, {})
    stored = leads(batch)
    assert [lead.sub_id for lead in stored] == ["vk_ads", "yandex_direct", "vk_ads"]
    assert {lead.source_url for lead in stored} == {"https://blog.example.ru/form"}
