"""Outcomes of delivered leads (UI, API, CSV) and the KPIs, seller feedback and
marketplace figures they feed (SPEC §7–§9, §11)."""
import csv
import io
import json
import re
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo
from decimal import Decimal

import sqlalchemy as sa

from app.extensions import db
from app.models import AccountKind, Lead, Role, Sale, SaleOutcome, User
from app.services import kpis, ledger, market_stats, outcomes, returns, scoring
from app.market import jobs, settle, snapshot
from tests.conftest import csrf_token, log_in, make_user
from tests.query_count import counted as count_selects, queries_for
from tests.market_helpers import (
    funded_buyer, live_leads, person, place, sales_of, verified_seller,
)


def _market(count: int, price: int, buyer=None, seller=None, name: str = "", **person_fields):
    """`count` leads sold to one new order of `buyer` at `price`; returns (order, sale ids)."""
    seller = seller or verified_seller()
    if buyer is not None and ledger.balance_for(buyer).available < count * price:
        ledger.manual_credit(buyer, count * price, reason="test funds", actor=None)
    start = db.session.scalar(sa.select(sa.func.count()).select_from(Sale)) * 10 + 1000
    live_leads(seller, [person(start + i, **person_fields) for i in range(count)])
    order = place(buyer or funded_buyer(), price, count, name=name)
    jobs.fill_order(order.id)
    db.session.commit()
    sales = db.session.scalars(sa.select(Sale.id).where(Sale.order_id == order.id)
                               .order_by(Sale.id)).all()
    assert len(sales) == count
    return order, sales


def test_spec_worked_case_through_the_api(client, api_key_for):
    buyer = funded_buyer(100_000)
    order, sales = _market(50, 600, buyer)
    headers = api_key_for(buyer)
    for sale_id in sales[:11]:
        response = client.post(f"/api/v1/sales/{sale_id}/outcome", headers=headers,
                               json={"status": "converted"})
        assert response.status_code == 200, response.json
    for sale_id in sales[11:16]:
        client.post(f"/api/v1/sales/{sale_id}/outcome", headers=headers, json={"status": "bad"})
    body = client.get(f"/api/v1/kpis?order_id={order.id}", headers=headers).json
    assert body == {"leads": 50, "spend": 30_000, "cpl": 600.0, "conversions": 11,
                    "conversion_rate": 0.22, "cpa": 2727.27, "revenue": 0, "roi": -1.0}
    for sale_id in sales[:11]:  # the buyer learns what each customer brought
        client.post(f"/api/v1/sales/{sale_id}/outcome", headers=headers,
                    json={"status": "converted", "revenue": 5_000})
    body = client.get("/api/v1/kpis", headers=headers).json
    assert (body["revenue"], body["roi"], body["conversions"]) == (55_000, 0.8333, 11)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(SaleOutcome)) == 16


def test_outcome_validation_and_ownership(client, api_key_for):
    buyer, other = funded_buyer(), funded_buyer()
    _, sales = _market(2, 100, buyer)
    headers = api_key_for(buyer)
    post = lambda sale_id, body, h=headers: client.post(  # noqa: E731
        f"/api/v1/sales/{sale_id}/outcome", headers=h, json=body)
    wrong = post(sales[0], {"status": "bad", "revenue": 100})
    assert wrong.status_code == 422 and wrong.json["error"]["details"]["field"] == "revenue"
    assert post(sales[0], {"status": "sold"}).json["error"]["details"]["field"] == "status"
    assert post(sales[0], {"status": "converted", "revenue": -5}).status_code == 422
    assert post(sales[0], {"status": "converted", "revenue": "12"}).status_code == 422
    assert post(sales[0], {"status": "contacted"}, api_key_for(other)).status_code == 404
    assert post(999_999, {"status": "contacted"}).status_code == 404
    seller_headers = api_key_for(make_user(Role.SELLER))
    assert post(sales[0], {"status": "bad"}, seller_headers).status_code == 403
    assert client.get("/api/v1/kpis", headers=seller_headers).status_code == 403
    assert db.session.scalar(sa.select(sa.func.count()).select_from(SaleOutcome)) == 0
    first = post(sales[0], {"status": "contacted"}).json
    second = post(sales[0], {"status": "converted", "revenue": 2_500}).json
    assert (first["status"], second["status"], second["revenue"]) == ("contacted", "converted", 2_500)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(SaleOutcome)) == 1


def test_kpis_per_order_range_and_ownership(client, api_key_for):
    buyer = funded_buyer()
    one, _ = _market(4, 250, buyer)
    two, _ = _market(6, 100, buyer)
    headers = api_key_for(buyer)
    everything = client.get("/api/v1/kpis", headers=headers).json
    assert (everything["leads"], everything["spend"], everything["cpl"]) == (10, 1_600, 160.0)
    assert everything["conversion_rate"] == 0.0 and everything["cpa"] is None
    day = datetime.now(timezone.utc).date()
    today = client.get(f"/api/v1/kpis?order_id={two.id}&from={day - timedelta(days=7)}&to={day}",
                       headers=headers).json
    assert (today["leads"], today["spend"]) == (6, 600)
    past = client.get("/api/v1/kpis?from=2020-01-01&to=2020-01-31", headers=headers).json
    assert past == {"leads": 0, "spend": 0, "cpl": None, "conversions": 0,
                    "conversion_rate": None, "cpa": None, "revenue": 0, "roi": None}
    bad_range = client.get("/api/v1/kpis?from=2020-02-01&to=2020-01-01", headers=headers)
    assert bad_range.status_code == 422 and bad_range.json["error"]["code"] == "invalid_range"
    stranger = api_key_for(funded_buyer())
    assert client.get(f"/api/v1/kpis?order_id={one.id}", headers=stranger).status_code == 404


def test_kpis_are_aggregated_in_the_database(app):
    """Two grouped statements however many sales: no row is loaded into Python."""
    buyer = funded_buyer()
    _market(3, 100, buyer)
    _market(40, 100, buyer)
    buyer.id  # loaded now, not counted below
    statements = []

    def count(_conn, _cursor, statement, *_args):
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", count)
    try:
        per_order = kpis.by_order(buyer)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", count)
    assert len(statements) == 2 and sorted(k.leads for k in per_order.values()) == [3, 40]


def _outcomes_csv(rows, header=("sale_id", "status", "revenue"), delimiter=",") -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8-sig")


def _upload(client, data: bytes):
    return client.post("/buyer/outcomes/upload", content_type="multipart/form-data", data={
        "csrf_token": csrf_token(client, "/buyer/outcomes/upload"),
        "file": (io.BytesIO(data), "outcomes.csv")})


def test_csv_upload_is_all_or_nothing_with_row_errors(app, buyer_client, buyer):
    funded = funded_buyer()  # another buyer's sale must be refused
    _, mine = _market(4, 100, buyer)
    _, theirs = _market(1, 100, funded)
    bad = _outcomes_csv([(mine[0], "converted", "12.50"), (mine[1], "maybe", ""),
                         (mine[2], "bad", "3.00"), (theirs[0], "contacted", ""),
                         ("abc", "bad", ""), (mine[0], "bad", ""), (mine[3], "converted", "12,5x")])
    page = _upload(buyer_client, bad).get_data(as_text=True)
    rows = re.findall(r'<tr><td class="num">(\d+)</td><td><code>(\w+)</code>', page)
    assert rows == [("3", "status"), ("4", "revenue"), ("5", "sale_id"), ("6", "sale_id"),
                    ("7", "sale_id"), ("8", "revenue")]
    assert "nothing was recorded" in page
    assert db.session.scalar(sa.select(sa.func.count()).select_from(SaleOutcome)) == 0

    good = _outcomes_csv([(mine[0], "Converted", "1,250.50"), (mine[1], "bad", ""), ("", "", ""),
                          (mine[2], "contacted", "")], delimiter=";")
    response = _upload(buyer_client, good)
    assert response.status_code == 302
    stored = {o.sale_id: (o.status.value, o.revenue) for o in db.session.scalars(sa.select(SaleOutcome))}
    assert stored == {mine[0]: ("converted", 125_050), mine[1]: ("bad", None),
                      mine[2]: ("contacted", None)}


def test_the_lead_export_round_trips_as_an_outcomes_upload(app, buyer_client, buyer):
    order, sales = _market(3, 100, buyer)
    exported = buyer_client.get(f"/buyer/orders/{order.id}/leads.csv").get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(exported.lstrip("\ufeff"))))
    assert [r["temperature"] for r in rows] and all(r["score"].isdigit() for r in rows)
    rows[0]["outcome"], rows[0]["revenue"] = "converted", "99.00"
    rows[2]["outcome"] = "bad"
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    assert _upload(buyer_client, out.getvalue().encode()).status_code == 302
    again = buyer_client.get(f"/buyer/orders/{order.id}/leads.csv").get_data(as_text=True)
    back = list(csv.DictReader(io.StringIO(again.lstrip("\ufeff"))))
    assert [(r["outcome"], r["revenue"]) for r in back] == [("converted", "99.00"), ("", ""),
                                                           ("bad", "")]


def test_marking_one_lead_on_the_order_page(app, buyer_client, buyer):
    order, sales = _market(2, 100, buyer)
    page = buyer_client.get(f"/buyer/orders/{order.id}").get_data(as_text=True)
    assert f'id="sale-{sales[0]}"' in page and "badge temp-" in page
    token = csrf_token(buyer_client, f"/buyer/orders/{order.id}")
    # htmx posts the row's choice with the id in the body and swaps the row it gets back.
    row = buyer_client.post(f"/buyer/orders/{order.id}/outcome", headers={"HX-Request": "true"},
                            data={"csrf_token": token, "sale_id": sales[0], "status": "converted",
                                  "revenue": "40.00"}).get_data(as_text=True)
    assert row.lstrip().startswith(f'<tr id="sale-{sales[0]}"')
    assert "Saved: converted · $40.00" in row and '<option value="converted" selected>' in row
    assert db.session.get(SaleOutcome, sales[0]).revenue == 4_000
    wrong = buyer_client.post(f"/buyer/orders/{order.id}/outcome", headers={"HX-Request": "true"},
                              data={"csrf_token": token, "sale_id": sales[1], "status": "bad",
                                    "revenue": "5.00"}).get_data(as_text=True)
    assert "Revenue is recorded only for converted leads." in wrong
    assert db.session.get(SaleOutcome, sales[1]) is None
    # Without htmx: the page again, with the verdict.
    page = buyer_client.post(f"/buyer/orders/{order.id}/outcome", follow_redirects=True, data={
        "csrf_token": token, "sale_id": sales[1], "status": "bad"}).get_data(as_text=True)
    assert f"Sale {sales[1]}: outcome saved." in page


def test_kpi_page_compares_orders_and_exports_safely(app, buyer_client, buyer, api_key_for):
    one, one_sales = _market(5, 300, buyer, name="Search ads")
    two, two_sales = _market(4, 100, buyer, name="=HYPERLINK(\"http://x\")")
    headers = api_key_for(buyer)
    buyer_client.post(f"/api/v1/sales/{one_sales[0]}/outcome", headers=headers,
                      json={"status": "converted", "revenue": 2_000})
    page = buyer_client.get("/buyer/kpis").get_data(as_text=True)
    row = re.search(rf'<tr data-order-id="{one.id}">(.*?)</tr>', page, re.S).group(1)
    cells = re.findall(r'<td class="num">([^<]*)</td>', row)
    assert cells == ["5", "$15.00", "$3.00", "1", "20.0%", "$15.00", "$20.00", "33.3%"]
    total = re.search(r'id="kpi-total">(.*?)</tr>', page, re.S).group(1)
    assert re.findall(r'<td class="num">([^<]*)</td>', total)[:3] == ["9", "$19.00", "$2.11"]
    charts = json.loads(re.search(r"data-charts='([^']*)'", page).group(1))
    assert charts["leads"][-1] == 9 and charts["spend"][-1] == 1_900
    assert charts["cpl"] == [100.0, 300.0] and charts["conversion_rate"] == [0.0, 0.2]
    assert charts["regions"] == ["California"] and charts["your_price"] == [211.11]
    assert "gross margin from conversions" in page
    exported = buyer_client.get("/buyer/kpis.csv").get_data(as_text=True)
    lines = list(csv.reader(io.StringIO(exported.lstrip("\ufeff"))))
    assert lines[0] == ["order_id", "order", "leads", "spend", "cpl", "conversions",
                        "conversion_rate", "cpa", "revenue", "roi", "currency"]
    by_id = {line[0]: line for line in lines[1:]}
    assert by_id[str(two.id)][1].startswith("'=HYPERLINK")  # never a formula in Excel
    assert by_id[str(one.id)][2:] == ["5", "15.00", "3.00", "1", "0.2000", "15.00", "20.00", "0.3333",
                                      "USD"]
    assert lines[-1][1:4] == ["All orders", "9", "19.00"]
    empty = buyer_client.get("/buyer/kpis?from=2020-01-01&to=2020-01-02").get_data(as_text=True)
    assert "No leads delivered in this period." in empty and "data-order-id" not in empty


def test_seller_sees_prices_and_anonymous_feedback_per_batch(app, client, api_key_for):
    seller = verified_seller(display_name="Blog")
    buyer = funded_buyer(email="secret-buyer@example.com")
    order, sales = _market(4, 250, buyer, seller)
    headers = api_key_for(buyer)
    client.post(f"/api/v1/sales/{sales[0]}/outcome", headers=headers, json={"status": "converted"})
    client.post(f"/api/v1/sales/{sales[1]}/outcome", headers=headers, json={"status": "bad"})
    seller_client = app.test_client()
    log_in(seller_client, seller)
    dashboard = seller_client.get("/seller/").get_data(as_text=True)
    assert "<strong>1</strong> converted (50.0%)" in dashboard
    assert "50.0% converted, 50.0% bad, of 2 rated" in dashboard  # the batch's details
    assert "<dt>Prices</dt><dd>$2.50</dd>" in dashboard  # every sale paid the same
    assert "secret-buyer" not in dashboard
    batch_id = db.session.scalar(sa.select(sa.func.max(SaleOutcome.batch_id)))
    report = seller_client.get(f"/seller/batches/{batch_id}").get_data(as_text=True)
    assert "Buyers rated 2 of these leads: 1 converted, 0 contacted, 1 bad" in report
    assert "none refunded" in report and 'id="batch-temperatures"' in report
    assert "secret-buyer" not in report


def test_admin_sees_the_marketplace(app, admin_client):
    seller = verified_seller(display_name="Top Seller Ltd")
    _market(5, 200, seller=seller)
    _market(2, 100, seller=seller, region="ES-M")
    page = admin_client.get("/admin/").get_data(as_text=True)
    assert 'id="sales-count">7<' in page and 'id="leads-listed">7<' in page
    assert 'id="commission-period">$2.40<' in page  # 20% of $12.00
    assert 'id="fill-rate">100.0%<' in page and 'id="return-rate">0.0%<' in page
    regions = re.findall(r"<tr><td>([^<]+)</td><td class=\"num\">(\d+)</td><td class=\"num\">([^<]+)<",
                         page)
    assert regions == [("California", "5", "$2.00"), ("Madrid", "2", "$1.00")]
    assert "Top Seller Ltd" in page
    assert admin_client.get("/admin/?days=7").status_code == 200


def test_sales_carry_their_leads_region_and_batch(app):
    """Both settlement paths (a group of fills, and one fill on its own) copy them."""
    seller = verified_seller()
    _market(3, 100, seller=seller, region="ES-M")
    lead = live_leads(seller, [person(99, region="RU-MOW")])[0]
    order = place(funded_buyer(), 100, 1)
    settlement = settle.Settlement(datetime.now(timezone.utc))
    candidate = snapshot.load_leads([lead.id])[0]
    slot = snapshot.load_book(datetime.now(timezone.utc), [order.id]).slots[order.id]
    assert settlement.fill(candidate, slot)
    db.session.commit()
    rows = db.session.execute(sa.select(Sale.region, Sale.batch_id, Lead.region, Lead.batch_id)
                              .join(Lead, Sale.lead_id == Lead.id)).all()
    assert len(rows) == 4 and all(r[0] == r[2] and r[1] == r[3] for r in rows)
    assert {r[0] for r in rows} == {"ES-M", "RU-MOW"}


def test_market_figures_are_cached_only_when_configured(app):
    from app.services import memo

    calls = []

    def compute():
        calls.append(1)
        return len(calls)

    assert app.config["MARKET_STATS_CACHE_SECONDS"] == 0
    assert (memo.cached("k", compute), memo.cached("k", compute)) == (1, 2)
    app.config["MARKET_STATS_CACHE_SECONDS"] = 300
    try:
        assert (memo.cached("k2", compute), memo.cached("k2", compute)) == (3, 3)
        assert memo.cached("k3", compute) == 4  # another key computes its own
    finally:
        app.config["MARKET_STATS_CACHE_SECONDS"] = 0


def test_the_overviews_commission_figures_agree_and_a_change_shows_at_once(app, admin_client):
    """With the cache on, a sale or return made after the page was cached (in any
    process) changes the figures at once: the cache is keyed on the data's version."""
    seller = verified_seller()
    order, sales = _market(5, 200, seller=seller)

    def figures():
        page = admin_client.get("/admin/").get_data(as_text=True)
        return [re.sub(r"<[^>]+>", "", re.search(rf'id="{name}">(.*?)</(div|span)>', page)
                       .group(1)) for name in ("commission-total", "commission-all-time",
                                               "commission-period", "sales-count")]

    app.config["MARKET_STATS_CACHE_SECONDS"] = 300
    try:
        assert figures() == ["$2.00", "$2.00 all time", "$2.00", "5"]
        _market(2, 100, seller=seller)
        assert figures() == ["$2.40", "$2.40 all time", "$2.40", "7"]
        buyer = db.session.get(User, db.session.get(Sale, sales[0]).buyer_id)
        item = returns.open_return(buyer, sales[0], "wrong_number")
        returns.seller_respond(seller, item.id, accept=True)
        db.session.commit()
        assert figures() == ["$2.00", "$2.00 all time", "$2.00", "7 · 1 refunded"]
        with count_selects() as statements:
            figures()
        cached = len(statements)
        app.config["MARKET_STATS_CACHE_SECONDS"] = 0
        with count_selects() as statements:
            figures()
        assert cached < len(statements)  # unchanged data: the marketplace came from the cache
    finally:
        app.config["MARKET_STATS_CACHE_SECONDS"] = 0


def test_the_admin_overview_runs_the_same_queries_however_large_the_market(app, admin_client):
    _market(2, 100)
    few = queries_for(admin_client, "/admin/")
    for _ in range(4):
        _market(6, 100, region="ES-M")
    assert queries_for(admin_client, "/admin/") == few


def _returns_of_each_kind(buyer, seller, sales):
    """One accepted (refunded), one rejected by an admin, one still awaiting the seller."""
    accepted = returns.open_return(buyer, sales[0], "wrong_number")
    returns.seller_respond(seller, accepted.id, accept=True)
    rejected = returns.open_return(buyer, sales[1], "fake")
    returns.seller_respond(seller, rejected.id, accept=False, note="She filled the form herself")
    returns.admin_decide(make_user(Role.ADMIN), rejected.id, False, note="Consent recorded")
    returns.open_return(buyer, sales[2], "wrong_number")
    db.session.commit()
    return accepted


def test_kpis_leave_out_sales_refunded_by_an_accepted_return(app, buyer_client, buyer,
                                                            api_key_for):
    seller = verified_seller()
    order, sales = _market(10, 300, buyer, seller)
    headers = api_key_for(buyer)
    buyer_client.post(f"/api/v1/sales/{sales[3]}/outcome", headers=headers,
                      json={"status": "converted", "revenue": 1_000})
    whole = {"leads": 10, "spend": 3_000, "cpl": 300.0}
    accepted = returns.open_return(buyer, sales[0], "wrong_number")
    rejected = returns.open_return(buyer, sales[1], "fake")
    returns.seller_respond(seller, rejected.id, accept=False, note="She filled the form herself")
    returns.admin_decide(make_user(Role.ADMIN), rejected.id, False, note="Consent recorded")
    db.session.commit()

    def api(query=""):
        body = buyer_client.get(f"/api/v1/kpis{query}", headers=headers).json
        return {key: body[key] for key in ("leads", "spend", "cpl", "conversions")}

    # A pending and a rejected return change nothing.
    assert accepted.status.value == "awaiting_seller"
    assert api() == whole | {"conversions": 1}
    returns.seller_respond(seller, accepted.id, accept=True)
    db.session.commit()
    kept = {"leads": 9, "spend": 2_700, "cpl": 300.0, "conversions": 1}
    assert api() == kept and api(f"?order_id={order.id}") == kept
    assert kpis.by_order(buyer)[order.id] == kpis.Kpis(9, 2_700, 1, 1_000, 1)
    period = kpis.DateRange.last_days(7)
    data = kpis.page_data(buyer, period)
    assert data.per_order == {order.id: kpis.Kpis(9, 2_700, 1, 1_000, 1)}
    assert (data.days[-1]["leads"], data.days[-1]["spend"]) == (9, 2_700)
    assert [(r["region"], r["leads"], r["your_average"]) for r in data.regions] == [
        ("US-CA", 9, Decimal("300.00"))]
    page = buyer_client.get("/buyer/kpis").get_data(as_text=True)
    row = re.search(rf'<tr data-order-id="{order.id}">(.*?)</tr>', page, re.S).group(1)
    assert re.findall(r'<td class="num">([^<]*)</td>', row)[:3] == ["9", "$27.00", "$3.00"]
    assert "counts neither as a lead nor in spend" in page


def test_an_order_refunded_whole_shows_no_leads_and_no_region(app, buyer):
    seller = verified_seller()
    order, sales = _market(1, 500, buyer, seller)
    item = returns.open_return(buyer, sales[0], "wrong_number")
    returns.seller_respond(seller, item.id, accept=True)
    db.session.commit()
    assert kpis.for_buyer(buyer) == kpis.Kpis(0, 0, 0, 0)
    data = kpis.page_data(buyer, kpis.DateRange.last_days(7))
    assert data.per_order == {order.id: kpis.Kpis()} and data.regions == []


def test_sellers_admins_and_the_score_count_accepted_returns(app):
    seller = verified_seller()
    order, sales = _market(10, 300, funded_buyer(), seller)
    buyer = db.session.get(User, order.buyer_id)
    batch_id = db.session.get(Sale, sales[0]).batch_id
    assert scoring.seller_records([seller.id])[seller.id]["returned"] == 0
    _returns_of_each_kind(buyer, seller, sales)
    assert market_stats.batch_sales([batch_id])[batch_id].returned == 1
    market = market_stats.marketplace()
    assert (market.sales, market.returns, market.return_rate) == (
        market_stats.Net(10, 1), 1, Decimal("0.1000"))
    # The period's commission is net of the reversed sale, as the ledger's total is.
    assert market.commission == market_stats.Net(10 * 60, 60)
    assert ledger.balance_of(ledger.account(AccountKind.PLATFORM_COMMISSION)) == 9 * 60
    assert [s["sales"].refunded for s in market.top_sellers if s["id"] == seller.id] == [1]
    record = scoring.seller_records([seller.id])[seller.id]
    assert (record["sold"], record["returned"]) == (10, 1)
    assert scoring.seller_records()[seller.id]["returned"] == 1


def test_a_refunded_lead_takes_its_conversion_out_of_the_kpis(app):
    seller = verified_seller()
    buyer = funded_buyer(100_000)
    live_leads(seller, [person(i) for i in range(4)])
    order = place(buyer, 500, 4)
    jobs.fill_order(order.id)
    db.session.commit()
    sales = sales_of(order)
    outcomes.record(buyer, sales[1].id, "converted", 1000)
    item = returns.open_return(buyer, sales[0].id, "fake")
    returns.seller_respond(seller, item.id, accept=True)
    # Marked converted after its refund (or refunded by a failed spot-check after the
    # conversion): either way it is no longer the buyer's lead.
    outcomes.record(buyer, sales[0].id, "converted", 9000)
    db.session.commit()
    got = kpis.by_order(buyer, kpis.DateRange.last_days(30))[order.id]
    assert (got.leads, got.spend, got.conversions, got.revenue) == (3, 1500, 1, 1000)


def test_roi_waits_for_an_outcome_instead_of_reading_minus_100_percent(
        app, buyer_client, buyer, api_key_for):
    order, sales = _market(4, 300, buyer, verified_seller())
    headers = api_key_for(buyer)
    # Leads bought, nothing recorded yet: what they earned is unknown, not zero.
    assert kpis.for_buyer(buyer).roi is None
    assert buyer_client.get("/api/v1/kpis", headers=headers).json["roi"] is None
    buyer_client.post(f"/api/v1/sales/{sales[0]}/outcome", headers=headers,
                      json={"status": "bad"})
    # One outcome told, no conversion: now the spend really brought nothing back.
    assert kpis.for_buyer(buyer) == kpis.Kpis(4, 1_200, 0, 0, 1)
    assert buyer_client.get("/api/v1/kpis", headers=headers).json["roi"] == -1.0
    assert kpis.page_data(buyer, kpis.DateRange.last_days(7)).per_order[order.id].roi == -1


def test_kpi_days_are_the_buyers_own_days_across_daylight_saving(
        app, buyer_client, buyer, api_key_for):
    los_angeles = ZoneInfo("America/Los_Angeles")
    buyer.timezone = "America/Los_Angeles"
    order, sales = _market(3, 400, buyer)
    # Clocks in Los Angeles went forward at 10:00 UTC on 8 March 2026.
    moments = [datetime(2026, 3, 8, 7, 30, tzinfo=timezone.utc),  # 23:30 PST on the 7th
               datetime(2026, 3, 9, 6, 30, tzinfo=timezone.utc),  # 23:30 PDT on the 8th
               datetime(2026, 3, 9, 7, 30, tzinfo=timezone.utc)]  # 00:30 PDT on the 9th
    for sale_id, moment in zip(sales, moments):
        db.session.execute(sa.update(Sale).where(Sale.id == sale_id).values(created_at=moment))
    outcomes.record(buyer, sales[1], "converted", 0)
    db.session.commit()

    def by_day(zone=timezone.utc):
        data = kpis.page_data(buyer, kpis.DateRange(date(2026, 3, 7), date(2026, 3, 9), zone))
        return [(d["day"], d["leads"], d["conversions"]) for d in data.days]

    assert by_day(los_angeles) == [("2026-03-07", 1, 0), ("2026-03-08", 1, 1),
                                   ("2026-03-09", 1, 0)]
    assert by_day() == [("2026-03-07", 0, 0), ("2026-03-08", 1, 0), ("2026-03-09", 2, 1)]
    # An open start reads the same days (the offsets reach back from the end).
    open_start = kpis.page_data(buyer, kpis.DateRange(None, date(2026, 3, 9), los_angeles))
    assert [(d["day"], d["leads"]) for d in open_start.days] == [
        ("2026-03-07", 1), ("2026-03-08", 1), ("2026-03-09", 1)]

    # The page counts the buyer's days; the API keeps the UTC days it documents.
    page = buyer_client.get("/buyer/kpis?from=2026-03-09&to=2026-03-09").get_data(as_text=True)
    row = re.search(rf'<tr data-order-id="{order.id}">(.*?)</tr>', page, re.S).group(1)
    assert re.findall(r'<td class="num">([^<]*)</td>', row)[0] == "1"
    assert "days on your clock, America/Los_Angeles" in page
    csv_rows = list(csv.reader(io.StringIO(buyer_client.get(
        "/buyer/kpis.csv?from=2026-03-09&to=2026-03-09").get_data(as_text=True))))
    assert csv_rows[1][csv_rows[0].index("leads")] == "1"
    api = buyer_client.get("/api/v1/kpis?from=2026-03-09&to=2026-03-09",
                           headers=api_key_for(buyer)).json
    assert (api["leads"], api["conversions"]) == (2, 1)
