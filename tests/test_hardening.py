"""Defects found by attacking the running product (issue 13): numbers without bounds,
fractions truncated, contacts left on disk, terms changed past the database's checks,
error responses that break, and requests that hold SQLite's write lock while they do
something else."""
import io
import os
import sqlite3
import stat

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import ApiKey, Batch, BatchStatus, Order, Role
from app.services.ingest import pipeline, storing
from tests.conftest import csrf_token, make_user, on_postgres
from tests.ingest_helpers import HEADER, csv_bytes, ingest, person
from tests.market_helpers import funded_buyer, live_leads, place, verified_seller

TOO_BIG = 2**63


def _upload_form(client, data: bytes, **fields):
    form = {"default_country": "US", "floor_price": "0", "cap": "1",
            "csrf_token": csrf_token(client, "/seller/batches/new"),
            "file": (io.BytesIO(data), "export.csv"), **fields}
    return client.post("/seller/batches/new", data=form, content_type="multipart/form-data")


def _staged_token(page: str) -> str:
    return page.split('name="token" type="hidden" value="')[1].split('"')[0]


def _files_holding(folder, needles: list[bytes]) -> list[str]:
    """Every file under `folder` that holds one of the needles in clear."""
    found = []
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                data = f.read()
            if any(n in data for n in needles):
                found.append(path)
    return found


PHONES = [f"+1 415 555 {i:04d}" for i in range(7000, 7003)]


def _people_with_unmapped_column():
    header = HEADER + ["Work mail"]
    rows = [person(i, phone=PHONES[i]) | {"Work mail": "w@mail.example.com"} for i in range(3)]
    return csv_bytes(rows, header=header), header


def _needles() -> list[bytes]:
    return [p.encode() for p in PHONES] + [p.replace(" ", "").encode() for p in PHONES]


# 1. A form number that loops as long as the sender asks -------------------------------

@pytest.mark.parametrize("columns", ["12000000", "abc", "-1", "1e9", str(TOO_BIG)])
def test_the_mapping_form_refuses_a_column_count_out_of_bounds(seller_client, columns):
    data, header = _people_with_unmapped_column()
    page = _upload_form(seller_client, data).get_data(as_text=True)
    token = _staged_token(page)
    form = {"token": token, "filename": "export.csv", "default_country": "US",
            "floor_price": "0", "cap": "1", "columns": columns,
            "csrf_token": csrf_token(seller_client, "/seller/batches/new")}
    response = seller_client.post("/seller/batches/confirm", data=form)
    assert response.status_code == 200  # the mapping page again, saying what was wrong
    page = response.get_data(as_text=True)
    assert "Columns must be" in page and "Check how we read your file" in page
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Batch)) == 0


@pytest.mark.parametrize("change", [{"floor_price": "abc"}, {"cap": "0"},
                                    {"column_8": "email", "columns": "9"},
                                    {"column_8": "no_such_field", "columns": "9"}])
def test_a_mistake_on_the_mapping_page_keeps_the_file_and_says_what(seller_client, change):
    data, header = _people_with_unmapped_column()
    token = _staged_token(_upload_form(seller_client, data).get_data(as_text=True))
    form = {"token": token, "filename": "export.csv", "default_country": "US",
            "floor_price": "0", "cap": "1", "columns": str(len(header)),
            "csrf_token": csrf_token(seller_client, "/seller/batches/new"),
            **{f"header_{i}": name for i, name in enumerate(header)},
            **{f"column_{i}": name for i, name in enumerate(header[:-1])}, **change}
    response = seller_client.post("/seller/batches/confirm", data=form)
    assert response.status_code == 200
    assert "Check how we read your file" in response.get_data(as_text=True)
    assert list(pipeline.upload_dir().glob(f"*{token}*"))  # still there to try again
    form.update({"floor_price": "0", "cap": "1", "column_8": "", "column_1": "email"})
    response = seller_client.post("/seller/batches/confirm", data=form)
    assert response.status_code == 302
    assert db.session.scalar(sa.select(Batch.accepted)) == 3


@pytest.mark.skipif(on_postgres(), reason="SQLite's database-wide write lock")
def test_a_page_that_only_reads_takes_no_write_lock(app, seller_client):
    """A writer holding SQLite's lock (an upload committing, a matcher) must not make
    pages that only read wait, or fail with "database is locked"."""
    path = app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")
    writer = sqlite3.connect(path, isolation_level=None, timeout=0)
    writer.execute("BEGIN IMMEDIATE")
    try:  # before the fix the page waited out the 30 s busy timeout, then failed
        response = seller_client.get("/seller/batches")
        assert response.status_code == 200
    finally:
        writer.rollback()
        writer.close()


@pytest.mark.skipif(on_postgres(), reason="SQLite's database-wide write lock")
def test_the_posted_live_estimate_takes_no_write_lock(app, buyer_client):
    """The builder posts its estimate on every change of the filters; it only reads,
    so it must not queue behind a writer (nor make the next writer queue behind it)."""
    token = csrf_token(buyer_client, "/buyer/orders/new")
    path = app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")
    writer = sqlite3.connect(path, isolation_level=None, timeout=0)
    writer.execute("BEGIN IMMEDIATE")
    try:
        response = buyer_client.post("/buyer/orders/estimate",
                                     data={"genders": "f", "price": "5.00", "csrf_token": token})
        assert response.status_code == 200
        assert 'id="estimate-count">0<' in response.get_data(as_text=True)
    finally:
        writer.rollback()
        writer.close()


@pytest.mark.skipif(on_postgres(), reason="SQLite's database-wide write lock")
def test_posts_that_change_things_still_take_the_write_lock_first(app, buyer_client):
    """Only views marked as reading read in a snapshot: any other POST begins with the
    write lock, so that writers queue instead of failing when their snapshot is stale."""
    token = csrf_token(buyer_client, "/buyer/orders/new")
    begins = []

    def seen(conn, cursor, statement, *args):
        if statement.startswith("BEGIN"):
            begins.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", seen)
    try:
        buyer_client.post("/buyer/orders/estimate", data={"price": "5.00", "csrf_token": token})
        read = list(begins)
        begins.clear()
        buyer_client.post("/buyer/orders/new", data={"price": "5.00", "csrf_token": token})
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", seen)
    assert read and set(read) == {"BEGIN"}
    assert begins and set(begins) == {"BEGIN IMMEDIATE"}


@pytest.mark.skipif(on_postgres(), reason="SQLite's database-wide write lock")
def test_an_api_read_records_its_keys_use_even_if_another_process_wrote_meanwhile(
        app, client, api_key_for, monkeypatch):
    """A GET reads in a snapshot; another process writing between the key's lookup and
    the note of its use made the request fail at once with "database is locked"."""
    from app.services import accounts

    headers = api_key_for(make_user(Role.BUYER))
    path = app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")
    real_api_key_for = accounts.api_key_for

    def looked_up_then_another_writes(secret):
        key = real_api_key_for(secret)
        other = sqlite3.connect(path, isolation_level=None, timeout=5)
        other.execute("UPDATE users SET display_name = 'elsewhere' WHERE id = 1")
        other.close()
        return key

    monkeypatch.setattr("app.api.auth.api_key_for", looked_up_then_another_writes)
    response = client.get("/api/v1/orders", headers=headers)
    assert response.status_code == 200, response.json
    assert db.session.scalar(sa.select(ApiKey.last_used_at)) is not None


@pytest.mark.skipif(on_postgres(), reason="SQLite's database-wide write lock")
def test_an_upload_holds_no_lock_while_its_file_is_read(app, seller_client, monkeypatch):
    """Reading a 200 MB upload takes seconds: another writer must get the lock then."""
    path = app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")
    taken = []
    real_open_upload = pipeline.open_upload

    def open_upload_while_another_writes(*args, **kwargs):
        other = sqlite3.connect(path, isolation_level=None, timeout=0)
        try:
            other.execute("BEGIN IMMEDIATE")  # "database is locked" if the request holds it
            other.execute("ROLLBACK")
            taken.append(True)
        finally:
            other.close()
        return real_open_upload(*args, **kwargs)

    monkeypatch.setattr(pipeline, "open_upload", open_upload_while_another_writes)
    response = _upload_form(seller_client, csv_bytes([person(1)]))
    assert response.status_code == 302
    assert taken and db.session.scalar(sa.select(Batch.accepted)) == 1


# 3. No contact left in clear on disk ---------------------------------------------------

def test_staged_uploads_are_readable_by_the_app_alone(seller):
    token = pipeline.stage_upload(seller, io.BytesIO(csv_bytes([person(1)])))
    path = next(pipeline.upload_dir().glob(f"*{token}*"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    pipeline.discard_upload(seller.id, token)


def test_no_phone_number_stays_on_disk_after_any_upload_path(app, seller, seller_client,
                                                             api_key_for, monkeypatch):
    folder = pipeline.upload_dir()
    for leftover in folder.iterdir():  # earlier tests' files: only this test's count
        leftover.unlink()
    data, header = _people_with_unmapped_column()
    headers = api_key_for(seller)

    # a web upload abandoned at the confirm step: the periodic job removes it
    page = _upload_form(seller_client, data).get_data(as_text=True)
    token = _staged_token(page)
    staged = next(folder.glob(f"*{token}*"))
    assert pipeline.remove_stale_uploads(86400) == 0  # the seller may still come back
    os.utime(staged, (staged.stat().st_atime - 90000, staged.stat().st_mtime - 90000))
    assert pipeline.remove_stale_uploads(86400) == 1

    # create_batch fails (a mapping naming no field), through the API and the web
    response = seller_client.post("/api/v1/batches", headers=headers, data={
        "default_country": "US", "mapping": '{"Work mail": "no_such_field"}',
        "file": (io.BytesIO(data), "leads.csv")}, content_type="multipart/form-data")
    assert response.status_code == 422, response.json
    response = seller_client.post("/api/v1/batches", headers=headers, data={
        "default_country": "US", "floor_price": str(TOO_BIG),
        "file": (io.BytesIO(data), "leads.csv")}, content_type="multipart/form-data")
    assert response.status_code == 422 and response.json["error"]["details"]["field"] == (
        "floor_price")

    # processing stops on an unexpected error
    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(storing, "store", broken)
    with pytest.raises(RuntimeError):
        ingest(seller, csv_bytes([person(i, phone=PHONES[i]) for i in range(3)]))
    assert db.session.scalar(sa.select(Batch.status).order_by(Batch.id.desc())) is (
        BatchStatus.FAILED)
    monkeypatch.undo()

    # a finished upload, and a batch file a dead run left behind
    ingest(seller, csv_bytes([person(i, phone=PHONES[i]) for i in range(3)]),
           allow_same_file=True)
    failed = db.session.scalar(sa.select(Batch).where(Batch.status == BatchStatus.FAILED))
    pipeline.upload_path(failed).write_bytes(data)
    assert pipeline.remove_stale_uploads(86400) == 1

    assert _files_holding(folder, _needles()) == []
    assert list(folder.iterdir()) == []


# 4, 5. Integers: bounded everywhere, never truncated -----------------------------------

@pytest.fixture
def market(api_key_for):
    seller = verified_seller()
    buyer = funded_buyer(1_000_000)
    live_leads(seller, [person(1)])
    order = place(buyer, 500, 1)
    return {"seller": api_key_for(seller), "buyer": api_key_for(buyer), "order": order}


@pytest.mark.parametrize("method,url,body", [
    ("post", "/api/v1/returns", {"sale_id": TOO_BIG, "reason": "fake"}),
    ("get", f"/api/v1/orders/1/leads?offset={TOO_BIG}", None),
    ("get", f"/api/v1/orders/1/leads?limit={TOO_BIG}", None),
    ("get", f"/api/v1/kpis?order_id={TOO_BIG}", None),
    ("get", f"/api/v1/kpis?order_id={2**31}", None),  # past PostgreSQL's INTEGER keys
    ("get", f"/api/v1/estimate?price={TOO_BIG}", None),
    ("get", f"/api/v1/estimate?age_min={TOO_BIG}", None),
    ("post", "/api/v1/orders", {"price": TOO_BIG, "quantity": 1}),
    ("post", "/api/v1/orders", {"price": 500, "quantity": TOO_BIG}),
    ("post", "/api/v1/orders", {"price": 500, "quantity": 1, "budget": -TOO_BIG}),
    ("post", "/api/v1/withdrawals", {"amount": TOO_BIG}),
    ("post", "/api/v1/topups", {"amount": TOO_BIG}),
    ("post", "/api/v1/sales/1/outcome", {"status": "converted", "revenue": TOO_BIG}),
    ("patch", "/api/v1/orders/1", {"caps": {"day": TOO_BIG}}),
])
def test_integers_out_of_range_are_422_naming_the_field(client, market, method, url, body):
    response = getattr(client, method)(url, headers=market["buyer"], json=body)
    assert response.status_code == 422, response.json
    field = response.json["error"]["details"]["field"]
    assert field and field in response.json["error"]["message"]


@pytest.mark.parametrize("url", [f"/api/v1/orders/{2**31}", f"/api/v1/batches/{2**31}",
                                 f"/api/v1/returns/{2**31}", f"/api/v1/orders/{TOO_BIG}/leads"])
def test_ids_past_their_column_in_addresses_are_404(client, market, url):
    response = client.get(url, headers=market["buyer"])
    assert response.status_code == 404 and response.json["error"]["code"] == "not_found"


def test_a_sale_id_fits_a_bigint_key(client, market):
    response = client.post(f"/api/v1/sales/{2**62}/outcome", headers=market["buyer"],
                           json={"status": "contacted"})
    assert response.status_code == 404


def test_a_lead_with_a_huge_floor_price_is_refused(client, market):
    response = client.post("/api/v1/leads", headers=market["seller"], json={
        **person(2), "default_country": "US", "floor_price": TOO_BIG})
    assert response.status_code == 422
    assert response.json["error"]["details"]["field"] == "floor_price"


@pytest.mark.parametrize("body,field", [
    ({"amount": 1.5}, "amount"),
    ({"amount": "100"}, "amount"),
    ({"amount": True}, "amount"),
])
def test_a_withdrawal_of_a_fraction_refunds_nothing(client, market, body, field):
    response = client.post("/api/v1/withdrawals", headers=market["buyer"], json=body)
    assert response.status_code == 422
    assert response.json["error"]["details"]["field"] == field
    assert "integer" in response.json["error"]["message"]


@pytest.mark.parametrize("change, field", [
    ({"quantity": 1.5}, "quantity"), ({"caps": {"day": 1.5}}, "caps.day"),
    ({"price": "600"}, "price"), ({"quantity": 2.0}, "quantity"),
    ({"spend_caps": {"hour": "900"}}, "spend_caps.hour"),
    ({"schedule": [{"days": ["mon"], "start": "09:00", "end": "17:00", "price": 7.5}]},
     "schedule.0.price")])
def test_order_terms_must_be_json_integers(client, market, change, field):
    order = market["order"]
    response = client.patch(f"/api/v1/orders/{order.id}", headers=market["buyer"], json=change)
    assert response.status_code == 422
    assert response.json["error"]["details"]["field"] == field
    db.session.expire_all()
    assert (order.quantity, order.cap_day, order.spend_cap_hour, order.schedule, order.price
            ) == (1, None, None, None, 500)


def test_the_openapi_document_states_the_ranges_it_enforces(app, client):
    spec = client.get("/api/v1/openapi.json").json
    schemas = spec["components"]["schemas"]
    age_min = schemas["Filters"]["properties"]["age_min"]
    assert (age_min["minimum"], age_min["maximum"]) == (18, 100)
    price = schemas["OrderCreate"]["properties"]["price"]
    assert price["minimum"] == app.config["MIN_PRICE"] and price["type"] == "integer"
    amount = schemas["TopUpCreate"]["properties"]["amount"]
    assert (amount["minimum"], amount["maximum"]) == (app.config["TOPUP_MINIMUM"],
                                                      app.config["TOPUP_MAXIMUM"])
    cap = schemas["LeadInput"]["properties"]["cap"]
    assert (cap["minimum"], cap["maximum"]) == (1, pipeline.MAX_CAP)
    assert schemas["ReturnCreate"]["properties"]["sale_id"]["maximum"] == 2**63 - 1


# 6. A change of terms is checked like a new order ---------------------------------------

def test_the_daily_cap_cannot_go_below_what_arrived_today(client, api_key_for):
    seller = verified_seller()
    buyer = funded_buyer(1_000_000)
    order = place(buyer, 500, 10, caps={"day": 5})
    live_leads(seller, [person(i) for i in range(3)])
    from app.market import jobs

    jobs.fill_order(order.id)
    db.session.commit()
    db.session.refresh(order)
    assert order.day_leads == 3
    headers = api_key_for(buyer)
    response = client.patch(f"/api/v1/orders/{order.id}", headers=headers,
                            json={"caps": {"day": 2}})
    assert response.status_code == 422
    assert response.json["error"]["details"]["field"] == "caps.day"
    assert "3 leads this day" in response.json["error"]["message"]
    response = client.patch(f"/api/v1/orders/{order.id}", headers=headers,
                            json={"caps": {"day": 3}})
    assert response.status_code == 200 and response.json["caps"] == {"day": 3}

    db.session.execute(sa.update(Order).where(Order.id == order.id).values(day_key="2000-01-01"))
    db.session.commit()
    response = client.patch(f"/api/v1/orders/{order.id}", headers=headers,
                            json={"caps": {"day": 1}})
    assert response.status_code == 200, response.json  # yesterday's count binds nothing


# 9. Error responses that broke -----------------------------------------------------------

def test_a_405_says_which_methods_are_allowed(client, market):
    response = client.delete("/api/v1/balance", headers=market["buyer"])
    assert response.status_code == 405
    assert set(response.headers["Allow"].split(", ")) >= {"GET"}
    response = client.put("/auth/login")
    assert response.status_code == 405 and "POST" in response.headers["Allow"]


@pytest.mark.parametrize("name", ['file\\', 'fi"le', "\\", "file\\\\"])
def test_odd_multipart_part_names_get_a_4xx(client, market, name):
    body = (b'--XX\r\nContent-Disposition: form-data; name="' + name.encode()
            + b'"; filename="a.csv"\r\nContent-Type: text/csv\r\n\r\nemail\r\na@b.c\r\n--XX--\r\n')
    response = client.post("/api/v1/batches", data=body, headers={
        **market["seller"], "Content-Type": "multipart/form-data; boundary=XX"})
    assert 400 <= response.status_code < 500
    assert response.json["error"]["code"]


def test_a_body_without_files_is_bounded(client, market):
    response = client.post("/api/v1/orders", headers=market["buyer"],
                           data=b'{"price": 500, "quantity": 1, "name": "' + b"x" * (2 << 20)
                           + b'"}', content_type="application/json")
    assert response.status_code == 413
    assert response.json["error"]["code"] == "payload_too_large"


def test_answering_a_return_needs_no_body_and_the_document_says_so(client):
    spec = client.get("/api/v1/openapi.json").json
    answer = spec["paths"]["/api/v1/returns/{return_id}/{answer}"]["post"]
    assert answer["requestBody"].get("required") is not True  # the note is optional


@pytest.mark.parametrize("url", ["/admin/?days=99999999999999999999999",
                                 f"/admin/users?page={TOO_BIG}", f"/admin/audit?page={TOO_BIG}",
                                 "/admin/quality?page=-5", "/admin/users?page=abc"])
def test_page_numbers_in_web_addresses_are_bounded(admin_client, url):
    response = admin_client.get(url)
    assert response.status_code == 422
    assert "must be" in response.get_data(as_text=True)


def test_a_money_field_refuses_more_than_the_ledger_takes(buyer_client):
    from app.formatting import parse_money

    with pytest.raises(ValueError):
        parse_money("9" * 30)
    assert parse_money("100,000,000,000.00") == 10**13


@pytest.mark.parametrize("name", ['file\\', 'csrf_token\\', "\\"])
def test_odd_multipart_part_names_on_the_upload_form(seller_client, name):
    token = csrf_token(seller_client, "/seller/batches/new")
    body = (b'--XX\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n' + token.encode()
            + b'\r\n--XX\r\nContent-Disposition: form-data; name="' + name.encode()
            + b'"; filename="a.csv"\r\nContent-Type: text/csv\r\n\r\nemail\r\na@b.c\r\n--XX--\r\n')
    response = seller_client.post("/seller/batches/new", data=body, headers={
        "Content-Type": "multipart/form-data; boundary=XX"})
    assert response.status_code == 200  # the form again, saying what is missing
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Batch)) == 0


def test_a_web_form_without_files_is_bounded(buyer_client):
    token = csrf_token(buyer_client, "/buyer/orders/new")
    response = buyer_client.post("/buyer/orders/new", data={
        "csrf_token": token, "name": "x" * (2 << 20), "price": "5.00", "quantity": "1"})
    assert response.status_code == 413


@pytest.mark.parametrize("url", ["/certificates/%00", "/api/v1/certificates/ab%00cd", "/f/%00",
                                 "/opt-out/%00", "/auth/verify-email/%00"])
def test_a_nul_byte_in_a_url_is_not_found_on_any_database(client, url):
    """PostgreSQL cannot compare text holding a NUL byte: no such id exists anyway."""
    assert client.get(url).status_code == 404
