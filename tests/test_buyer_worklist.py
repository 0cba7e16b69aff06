"""The buyer's order page as a work list (issue 17): paging, search through the keyed
hashes, filters, bulk outcome and export of a selection, another buyer's ids refused,
live reload of the rows, and a page whose query count does not grow with its rows."""
import csv
import io
import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from app.core import figures
from app.extensions import db
from app.market import jobs
from app.models import (
    DeliveryStatus, ErasureNotice, OptOutNotice, OutcomeStatus, Role, Sale, SaleOutcome, User,
    WebhookDelivery,
)
from app.services import privacy, returns
from tests.conftest import csrf_token, log_in, make_user
from tests.ingest_helpers import HEADER
from tests.query_count import queries_for
from tests.market_helpers import consented, funded_buyer, live_leads, person, place, verified_seller

ROW = re.compile(r'<tr id="sale-(\d+)"')


def _order_with(buyer, people: list[dict], header=HEADER):
    live_leads(verified_seller(), people, header=header)
    order = place(buyer, 100, len(people))
    jobs.fill_order(order.id)
    db.session.commit()
    sales = db.session.scalars(sa.select(Sale.id).where(Sale.order_id == order.id)
                               .order_by(Sale.id)).all()
    assert len(sales) == len(people)
    return order, sales


def _buyer_client(app):
    buyer = funded_buyer()
    client = app.test_client()
    log_in(client, buyer)
    return buyer, client


def _list(client, order, **fields) -> str:
    """The work list as htmx asks for it (posted: the search may be an email)."""
    response = client.post(f"/buyer/orders/{order.id}/leads", headers={"HX-Request": "true"},
                           data={"csrf_token": csrf_token(client, f"/buyer/orders/{order.id}"),
                                 **fields})
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return response.get_data(as_text=True)


def _rows(html: str) -> list[int]:
    return [int(sale_id) for sale_id in ROW.findall(html)]


def test_pages_of_fifty_newest_first(app):
    buyer, client = _buyer_client(app)
    order, sales = _order_with(buyer, [person(i) for i in range(120)])
    page = client.get(f"/buyer/orders/{order.id}").get_data(as_text=True)
    assert _rows(page) == sales[::-1][:50]
    assert "120 leads · page 1 of 3" in page
    assert _rows(_list(client, order, page="2")) == sales[::-1][50:100]
    last = _list(client, order, page="3")
    assert _rows(last) == sales[::-1][100:] and ">Next<" not in last and ">Previous<" in last
    assert _rows(_list(client, order, page="9")) == []


def test_search_by_email_phone_or_sale_number_through_the_hashes(app):
    buyer, client = _buyer_client(app)
    order, sales = _order_with(buyer, [person(i) for i in range(1, 6)])
    found = _list(client, order, q="  Person3@Mail.Example.COM ")
    assert len(_rows(found)) == 1 and "person3@mail.example.com" in found
    # A national number: normalised in the country of the order's leads, as at ingest.
    found = _list(client, order, q="(415) 555-0004")
    assert len(_rows(found)) == 1 and "+14155550004" in found
    assert _rows(_list(client, order, q="+1 415 555 0002")) != []
    assert _rows(_list(client, order, q=f"#{sales[1]}")) == [sales[1]]
    # Names have no keyed hash: they are not searched, and the page says so.
    nothing = _list(client, order, q="Person3")
    assert _rows(nothing) == [] and "No delivered lead matches these filters and search" in nothing
    page = client.get(f"/buyer/orders/{order.id}").get_data(as_text=True)
    assert "Names are stored encrypted and cannot be searched" in page
    # Without scripts the filter form posts to the same place and gets the whole page.
    whole = client.post(f"/buyer/orders/{order.id}/leads", data={
        "csrf_token": csrf_token(client, f"/buyer/orders/{order.id}"),
        "q": "person3@mail.example.com"}).get_data(as_text=True)
    assert "<html" in whole and len(_rows(whole)) == 1
    # A search in the URL is ignored: it would put an email in access logs.
    assert len(_rows(client.get(f"/buyer/orders/{order.id}?q=person3@mail.example.com")
                     .get_data(as_text=True))) == 5


def test_filters_by_outcome_return_date_and_temperature(app):
    buyer, client = _buyer_client(app)
    people = ([person(i, consent_at=consented(0.2), budget="10k", need="now") for i in range(3)]
              + [person(i, consent_at=consented(0.2)) for i in range(3, 6)]
              + [person(i, consent_at=consented(80)) for i in range(6, 9)])
    order, sales = _order_with(buyer, people, header=HEADER + ["budget", "need"])
    by_temperature = {t: set(_rows(_list(client, order, temperature=t)))
                      for t in ("hot", "warm", "cold")}
    assert [len(by_temperature[t]) for t in ("hot", "warm", "cold")] == [3, 3, 3]
    for temperature, ids in by_temperature.items():
        listed = _list(client, order, temperature=temperature)
        assert listed.count(f"badge temp-{temperature}") == 3  # the rows say the same

    client.post(f"/buyer/orders/{order.id}/outcomes", data={
        "csrf_token": csrf_token(client, f"/buyer/orders/{order.id}"),
        "sale_id": sales[:2], "status": "converted"})
    returns.open_return(buyer, sales[2], "fake", "no such person")
    db.session.commit()
    assert set(_rows(_list(client, order, outcome="converted"))) == set(sales[:2])
    assert set(_rows(_list(client, order, outcome="none"))) == set(sales[2:])
    assert set(_rows(_list(client, order, returned="open"))) == {sales[2]}
    assert set(_rows(_list(client, order, returned="none"))) == set(sales) - {sales[2]}
    assert _rows(_list(client, order, returned="accepted")) == []
    assert _rows(_list(client, order, outcome="converted", returned="open")) == []

    long_ago = datetime(2026, 1, 15, 12, tzinfo=timezone.utc)
    db.session.execute(sa.update(Sale).where(Sale.id.in_(sales[-2:])).values(created_at=long_ago))
    figures.changed(buyer.id)  # sales made older here
    db.session.commit()
    assert set(_rows(_list(client, order, sold_from="2026-01-15", sold_to="2026-01-15"))) == \
        set(sales[-2:])
    assert set(_rows(_list(client, order, sold_to="2026-01-14"))) == set()
    today = datetime.now(timezone.utc).date()
    assert len(_rows(_list(client, order, sold_from=str(today - timedelta(days=1))))) == 7


def test_sale_times_and_the_date_filter_are_on_the_buyers_clock(app):
    buyer, client = _buyer_client(app)
    order, sales = _order_with(buyer, [person(i) for i in range(2)])
    # 20:00 UTC on the 15th is 05:00 on the 16th in Tokyo; 14:00 UTC is 23:00 on the 15th.
    for sale_id, hour in zip(sales, (20, 14)):
        db.session.execute(sa.update(Sale).where(Sale.id == sale_id).values(
            created_at=datetime(2026, 1, 15, hour, tzinfo=timezone.utc)))
    figures.changed(buyer.id)
    db.session.commit()
    assert "2026-01-15 20:00" in _list(client, order)  # UTC until the buyer says otherwise

    buyer.timezone = "Asia/Tokyo"
    db.session.commit()
    listed = _list(client, order)
    assert "2026-01-16 05:00" in listed and "2026-01-15 23:00" in listed
    assert _rows(_list(client, order, sold_from="2026-01-16")) == [sales[0]]
    assert _rows(_list(client, order, sold_to="2026-01-15")) == [sales[1]]


def test_untouched_leads_have_no_outcome_yet(app):
    buyer, client = _buyer_client(app)
    order, _ = _order_with(buyer, [person(1)])
    page = client.get(f"/buyer/orders/{order.id}").get_data(as_text=True)
    assert '<option value="" disabled selected>no outcome yet</option>' in page
    assert not re.search(r'<option value="\w+" selected>', page.split('id="leads"')[1])


def test_bulk_outcome_and_export_of_the_chosen(app):
    buyer, client = _buyer_client(app)
    order, sales = _order_with(buyer, [person(i) for i in range(1, 7)])
    token = csrf_token(client, f"/buyer/orders/{order.id}")
    listed = client.post(f"/buyer/orders/{order.id}/outcomes", headers={"HX-Request": "true"},
                         data={"csrf_token": token, "sale_id": sales[:3], "status": "bad",
                               "outcome": "none"}).get_data(as_text=True)
    assert "3 lead(s) marked bad." in listed
    assert set(_rows(listed)) == set(sales[3:])  # the list as filtered: no outcome yet
    stored = db.session.scalars(sa.select(SaleOutcome)).all()
    assert sorted((o.sale_id, o.status) for o in stored) == [(s, OutcomeStatus.BAD) for s in sales[:3]]
    nothing = client.post(f"/buyer/orders/{order.id}/outcomes",
                          data={"csrf_token": token, "status": "bad"}).get_data(as_text=True)
    assert "Choose the leads first" in nothing
    nothing = client.post(f"/buyer/orders/{order.id}/leads-chosen.csv", data={"csrf_token": token},
                          follow_redirects=True).get_data(as_text=True)
    assert "Choose the leads to export first" in nothing

    exported = client.post(f"/buyer/orders/{order.id}/leads-chosen.csv",
                           data={"csrf_token": token, "sale_id": [sales[4], sales[1]]})
    assert exported.status_code == 200 and exported.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True).lstrip("\ufeff"))))
    assert [int(r["sale_id"]) for r in rows] == [sales[1], sales[4]]
    assert rows[0]["price"] == "1.00" and rows[0]["currency"] == "USD"  # major units
    assert rows[0]["outcome"] == "bad"
    # The export's phone convention (app/services/exports.py): text a spreadsheet keeps.
    assert re.fullmatch(r"\t\+1415555\d{4}", rows[0]["phone"])


def test_another_buyers_leads_are_refused_in_every_action(app):
    buyer, client = _buyer_client(app)
    mine, my_sales = _order_with(buyer, [person(i) for i in range(1, 3)])
    other = funded_buyer()
    theirs, their_sales = _order_with(other, [person(i) for i in range(10, 12)])
    token = csrf_token(client, f"/buyer/orders/{mine.id}")
    url = f"/buyer/orders/{mine.id}"
    mixed = [my_sales[0], their_sales[0]]
    assert client.post(f"{url}/outcomes", data={"csrf_token": token, "sale_id": mixed,
                                                "status": "converted"}).status_code == 404
    assert client.post(f"{url}/leads-chosen.csv",
                       data={"csrf_token": token, "sale_id": mixed}).status_code == 404
    assert client.post(f"{url}/outcome", data={"csrf_token": token, "sale_id": their_sales[0],
                                               "status": "bad"}).status_code == 404
    assert db.session.scalar(sa.select(sa.func.count()).select_from(SaleOutcome)) == 0
    # Their order's own list and actions, through its URL, are not found either.
    for path in ("/leads", "/outcomes", "/leads-chosen.csv", "/outcome"):
        response = client.post(f"/buyer/orders/{theirs.id}{path}",
                               data={"csrf_token": token, "sale_id": their_sales[0],
                                     "status": "bad"})
        assert response.status_code == 404, path
    assert client.get(f"/buyer/orders/{theirs.id}/deliveries").status_code == 404
    seller = app.test_client()
    log_in(seller, make_user(Role.SELLER))
    assert seller.get(url).status_code in (403, 404)


def test_the_rows_reload_when_the_counter_moves(app):
    buyer, client = _buyer_client(app)
    live_leads(verified_seller(), [person(1)])
    order = place(buyer, 100, 3)
    page = client.get(f"/buyer/orders/{order.id}").get_data(as_text=True)
    assert "No leads delivered yet" in page and "/status?seen=0" in page
    assert 'hx-trigger="leads-delivered from:body"' in page
    assert "HX-Trigger" not in client.get(f"/buyer/orders/{order.id}/status?seen=0").headers
    jobs.fill_order(order.id)
    db.session.commit()
    status = client.get(f"/buyer/orders/{order.id}/status?seen=0")
    assert status.headers["HX-Trigger"] == "leads-delivered"
    assert "/status?seen=1" in status.get_data(as_text=True)  # the next poll is quiet
    assert len(_rows(_list(client, order))) == 1


def test_what_the_page_keeps_follows_every_change(app):
    """Rows, the count and the refunds are kept between requests (app/buyer/lead_rows.py,
    app/core/figures.py): an outcome, a refund, an erasure and a new sale each show on
    the very next view, and the person's clock is read at each view."""
    buyer, client = _buyer_client(app)
    order, sales = _order_with(buyer, [person(i) for i in range(1, 4)])
    url = f"/buyer/orders/{order.id}"

    def row(page: str, sale_id: int) -> str:
        return page.split(f'<tr id="sale-{sale_id}">')[1].split("</tr>")[0]

    page = client.get(url).get_data(as_text=True)
    assert "3 leads" in page and "returned" not in page.split('id="leads-heading"')[1][:200]
    assert '<option value="converted" selected>' not in row(page, sales[0])
    erased = next(sale for sale in sales if "person3@" in row(page, sale))
    sales.remove(erased)
    client.post(f"{url}/outcome", data={"csrf_token": csrf_token(client, url),
                                        "sale_id": sales[0], "status": "converted"})
    item = returns.open_return(buyer, sales[1], "fake")
    returns.seller_respond(db.session.get(User, item.seller_id), item.id, True)
    privacy.erase(privacy.identify(email="person3@mail.example.com"), reason="GDPR",
                  actor=None)
    db.session.commit()
    page = client.get(url).get_data(as_text=True)
    assert '<option value="converted" selected>' in row(page, sales[0])
    assert 'data-status="accepted"' in row(page, sales[1]) and "1 returned" in page
    assert "erased" in row(page, erased) and "person3@" not in page
    assert re.search(r">(\d\d:\d\d) their time<", row(page, sales[0])).group(1) in {
        f"{datetime.now(ZoneInfo('America/Los_Angeles')) - timedelta(minutes=m):%H:%M}"
        for m in (0, 1)}
    live_leads(verified_seller(), [person(4)])
    extra = place(buyer, 100, 1)
    jobs.fill_order(extra.id)
    db.session.commit()
    assert "3 leads" in client.get(url).get_data(as_text=True)  # another order's sale
    db.session.execute(sa.update(Sale).where(Sale.order_id == extra.id)
                       .values(order_id=order.id))
    figures.changed(buyer.id)
    db.session.commit()
    assert "4 leads" in client.get(url).get_data(as_text=True)


def _failed_deliveries(order, sales: list[int]) -> None:
    db.session.execute(sa.insert(WebhookDelivery), [
        {"sale_id": sale_id, "order_id": order.id, "status": DeliveryStatus.FAILED,
         "attempts": 5, "last_error": f"connection refused ({sale_id})"} for sale_id in sales])
    db.session.commit()


def test_webhook_deliveries_are_paged_and_loaded_when_scrolled_to(app):
    buyer, client = _buyer_client(app)
    order, sales = _order_with(buyer, [person(i) for i in range(1, 26)])
    untouched, _ = _order_with(buyer, [person(i) for i in range(30, 32)])
    _failed_deliveries(order, sales)
    page = client.get(f"/buyer/orders/{order.id}").get_data(as_text=True)
    assert "connection refused" not in page  # the work list's page does not read them
    loader = re.search(r'<div id="deliveries" hx-get="([^"]+)" hx-trigger="revealed"', page)
    deliveries = client.get(loader.group(1)).get_data(as_text=True)
    assert deliveries.count("connection refused") == 10 and ">Older<" in deliveries
    assert deliveries.count('formaction="/buyer/orders/') == 10  # Resend, one form for all
    last = client.get(f"/buyer/orders/{order.id}/deliveries?page=3").get_data(as_text=True)
    assert last.count("connection refused") == 5 and ">Newer<" in last and ">Older<" not in last
    assert f"connection refused ({sales[0]})" in last  # newest first: the oldest last
    none = client.get(f"/buyer/orders/{untouched.id}/deliveries").get_data(as_text=True)
    assert "No lead of this order has been sent" in none and "<table" not in none


def _selects_for_page(client, url: str) -> int:
    statements = []

    def count(_conn, _cursor, statement, *_args):
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", count)
    try:
        assert client.get(url).status_code == 200
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", count)
    return len(statements)


def test_the_order_page_queries_do_not_grow_with_its_rows(app):
    """A fixed number of statements whether the page shows 2 leads or 50 with outcomes,
    returns and webhook deliveries: an N+1 makes the second count larger."""
    buyer, client = _buyer_client(app)
    small, _ = _order_with(buyer, [person(i) for i in range(1, 3)])
    big, sales = _order_with(buyer, [person(i) for i in range(10, 70)])
    client.post(f"/buyer/orders/{big.id}/outcomes", data={
        "csrf_token": csrf_token(client, f"/buyer/orders/{big.id}"),
        "sale_id": sales[-20:], "status": "contacted"})
    for sale_id in sales[-5:]:
        returns.open_return(buyer, sale_id, "fake")
    db.session.execute(sa.insert(WebhookDelivery), [
        {"sale_id": sale_id, "order_id": big.id, "status": DeliveryStatus.FAILED}
        for sale_id in sales])
    db.session.commit()
    for order in (small, big):  # warm: the session's user, what is kept per revision
        _selects_for_page(client, f"/buyer/orders/{order.id}")
    few = _selects_for_page(client, f"/buyer/orders/{small.id}")
    many = _selects_for_page(client, f"/buyer/orders/{big.id}")
    assert many == few, (few, many)
    assert many <= 12


def test_the_buyer_dashboard_queries_do_not_grow_with_orders_or_notices(app):
    """The dashboard's notices are counted in one query, kept per revision with its money:
    the same statements with no order and no notice as with twelve sales and six
    notices, one acknowledged."""
    buyer, client = _buyer_client(app)
    empty = queries_for(client, "/buyer/")
    order, sales = _order_with(buyer, [person(i) for i in range(1, 13)])
    now = datetime.now(timezone.utc)
    db.session.execute(sa.insert(ErasureNotice), [
        {"buyer_id": buyer.id, "sale_id": sale_id, "order_id": order.id,
         "acknowledged_at": now if sale_id == sales[0] else None} for sale_id in sales[:3]])
    db.session.execute(sa.insert(OptOutNotice), [
        {"buyer_id": buyer.id, "sale_id": sale_id, "order_id": order.id, "due_at": now}
        for sale_id in sales[3:6]])
    figures.changed(buyer.id)  # as the privacy operations say: the dashboard counts them
    db.session.commit()
    page = client.get("/buyer/").get_data(as_text=True)
    assert "3 person(s) you bought opted out" in page
    assert "2 person(s) you bought asked to be erased" in page
    assert queries_for(client, "/buyer/") == empty <= 5


def test_the_delivery_page_reaches_every_delivery_not_only_the_latest_fifty(app):
    """Its log stopped at the latest 50 with no way on: a failure older than that could
    not be seen or sent again from the page that promises both."""
    buyer, client = _buyer_client(app)
    order, sales = _order_with(buyer, [person(i) for i in range(1, 56)])
    _failed_deliveries(order, sales)
    page = client.get(f"/buyer/orders/{order.id}/delivery").get_data(as_text=True)
    deliveries = page.split('id="deliveries"')[1]
    assert ">Older<" in deliveries
    older = deliveries.split(">Older<")[0].rsplit('hx-get="', 1)[1].split('"')[0]
    pages, url = [deliveries], older.replace("&amp;", "&")
    while url:
        html = client.get(url).get_data(as_text=True)
        pages.append(html)
        url = html.split(">Older<")[0].rsplit('hx-get="', 1)[1].split('"')[0] \
            if ">Older<" in html else None
    assert f"connection refused ({sales[0]})</td>" in pages[-1]  # the oldest, with Resend
    assert 'formaction="/buyer/orders/' in pages[-1]


def test_a_delivery_the_buyers_system_refused_reads_as_its_refusal(app):
    buyer, client = _buyer_client(app)
    order, sales = _order_with(buyer, [person(i) for i in range(40, 42)])
    db.session.execute(sa.insert(WebhookDelivery), [
        {"sale_id": sales[0], "order_id": order.id, "status": DeliveryStatus.REJECTED,
         "attempts": 1, "last_status_code": 200, "last_error": "missing field"},
        {"sale_id": sales[1], "order_id": order.id, "status": DeliveryStatus.FAILED,
         "attempts": 5, "last_status_code": 503, "last_error": "HTTP 503 from the server"}])
    db.session.commit()
    table = client.get(f"/buyer/orders/{order.id}/deliveries").get_data(as_text=True)
    assert "<td>Rejected by your system</td>" in table  # answered 200, said no
    assert "Your system's reason: missing field" in table
    assert "reason: HTTP 503" not in table and "HTTP 503 from the server" in table
    assert "<td>Failed</td>" in table


def test_a_revenue_too_large_says_so_with_the_limit(app):
    buyer, client = _buyer_client(app)
    order, sales = _order_with(buyer, [person(1)])
    page = client.post(f"/buyer/orders/{order.id}/outcome", data={
        "csrf_token": csrf_token(client, f"/buyer/orders/{order.id}"), "sale_id": sales[0],
        "status": "converted", "revenue": "99999999999999"},
        follow_redirects=True).get_data(as_text=True)
    assert "The revenue “99999999999999” is too large: the most is $100,000,000,000.00." in page
    assert "not an amount" not in page
    assert db.session.scalar(sa.select(sa.func.count()).select_from(SaleOutcome)) == 0
