import io
import re

import sqlalchemy as sa

from app.extensions import db
from app.models import Batch, BatchStatus
from app.services.regions_tz import consent_zone
from tests.conftest import csrf_token
from tests.ingest_helpers import HEADER, csv_bytes, person


def _upload(client, data: bytes, **fields):
    form = {"default_country": "US", "floor_price": "1.50", "cap": "1",
            "csrf_token": csrf_token(client, "/seller/batches/new"),
            "file": (io.BytesIO(data), "export.csv"), **fields}
    return client.post("/seller/batches/new", data=form, content_type="multipart/form-data")


def test_a_clean_file_starts_at_once_and_shows_its_report(seller_client):
    response = _upload(seller_client, csv_bytes([person(1), person(2, email="bad@")]))
    assert response.status_code == 302
    page = seller_client.get(response.headers["Location"]).get_data(as_text=True)
    assert 'id="accepted">1<' in page and 'id="rejected">1<' in page
    assert "invalid_email" in page and "Download rejected rows" in page
    batch = db.session.scalar(sa.select(Batch))
    assert batch.floor_price == 150
    csv_text = seller_client.get(f"/seller/batches/{batch.id}/rejections").get_data(as_text=True)
    assert "bad@" in csv_text


def test_unknown_columns_are_mapped_before_processing(seller_client):
    header = HEADER + ["Work mail"]
    data = csv_bytes([person(1, email="") | {"Work mail": "w@mail.example.com"}], header=header)
    page = _upload(seller_client, data).get_data(as_text=True)
    assert "Check how we read your file" in page and "Work mail" in page
    assert "Read as <strong>UTF-8</strong>" in page  # as sellers know it, not "utf-8"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Batch)) == 0
    token = page.split('name="token" type="hidden" value="')[1].split('"')[0]
    form = {"token": token, "filename": "export.csv", "default_country": "US",
            "floor_price": "0", "cap": "1", "columns": str(len(header)),
            "csrf_token": csrf_token(seller_client, "/seller/batches/new")}
    for i, name in enumerate(header):
        form[f"header_{i}"] = name
        form[f"column_{i}"] = "" if name == "email" else ("email" if name == "Work mail" else name)
    response = seller_client.post("/seller/batches/confirm", data=form)
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    batch = db.session.scalar(sa.select(Batch))
    assert batch.accepted == 1 and batch.status is BatchStatus.HELD


def test_the_next_upload_remembers_how_the_seller_mapped_a_column(seller_client):
    header = HEADER + ["Work mail"]
    first = [person(1, email="") | {"Work mail": "w1@mail.example.com"}]
    page = _upload(seller_client, csv_bytes(first, header=header)).get_data(as_text=True)
    form = _confirm_form(seller_client, page, header)
    form.update({f"column_{header.index('email')}": "", f"column_{len(header) - 1}": "email"})
    assert seller_client.post("/seller/batches/confirm", data=form).status_code == 302

    # The same export a week later: no mapping screen, the mail read from "Work mail".
    later = [person(2, email="") | {"Work mail": "w2@mail.example.com"}]
    response = _upload(seller_client, csv_bytes(later, header=header))
    assert response.status_code == 302
    newest = db.session.scalar(sa.select(Batch).order_by(Batch.id.desc()))
    assert newest.accepted == 1 and newest.mapping["columns"]["Work mail"] == "email"

    # A new unknown column still asks, with the remembered choice already selected.
    wider = header + ["Notes"]
    page = _upload(seller_client, csv_bytes([person(3, email="") | {
        "Work mail": "w3@mail.example.com", "Notes": "called"}], header=wider)).get_data(as_text=True)
    assert "Check how we read your file" in page
    work_mail = page.split('aria-label="Field for Work mail">')[1].split("</select>")[0]
    assert re.search(r'<option value="email"\s+selected>', work_mail)


def _confirm_form(client, page: str, header: list[str], **fields) -> dict:
    token = page.split('name="token" type="hidden" value="')[1].split('"')[0]
    form = {"token": token, "filename": "export.csv", "default_country": "US",
            "floor_price": "0", "cap": "1", "columns": str(len(header)),
            "csrf_token": csrf_token(client, "/seller/batches/new"), **fields}
    for i, name in enumerate(header):
        form[f"header_{i}"], form[f"column_{i}"] = name, name
    return form


def test_a_file_without_a_required_column_asks_before_every_row_is_rejected(seller_client):
    header = [name for name in HEADER if name != "source_url"]  # every name is known
    data = csv_bytes([person(1), person(2)], header=header)
    page = _upload(seller_client, data).get_data(as_text=True)  # it does not start at once
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Batch)) == 0
    assert "Every row of this file would be rejected" in page
    assert "<strong>Source page (URL)</strong>" in page
    assert "<strong>Consent date and time</strong>" not in page
    assert "Process it anyway" in page

    form = _confirm_form(seller_client, page, header)
    again = seller_client.post("/seller/batches/confirm", data=form)
    assert again.status_code == 200 and "map them, or confirm" in again.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Batch)) == 0

    form["csrf_token"] = csrf_token(seller_client, "/seller/batches/new")
    response = seller_client.post("/seller/batches/confirm", data={**form, "allow_missing": "y"})
    assert response.status_code == 302
    batch = db.session.scalar(sa.select(Batch))
    assert (batch.accepted, batch.rejected) == (0, 2)

    # Without contacts, both email and phone are named; a mapped column clears it.
    header = [name for name in HEADER if name not in ("email", "phone")] + ["Reach me"]
    rows = [person(3, email="", phone="") | {"Reach me": "p3@mail.example.com"}]
    page = _upload(seller_client, csv_bytes(rows, header=header)).get_data(as_text=True)
    assert "<strong>Email</strong> or <strong>Phone</strong>" in page
    form = _confirm_form(seller_client, page, header)
    form[f"column_{len(header) - 1}"] = "email"
    assert seller_client.post("/seller/batches/confirm", data=form).status_code == 302
    assert db.session.scalar(sa.select(Batch).order_by(Batch.id.desc())).accepted == 1


def test_the_fixed_rejections_file_uploads_without_questions(seller_client):
    first = _upload(seller_client, csv_bytes([person(1), person(2, email="bad@")]))
    batch = db.session.scalar(sa.select(Batch))
    assert first.status_code == 302 and batch.rejected == 1
    fixed = seller_client.get(f"/seller/batches/{batch.id}/rejections").get_data(
        as_text=True).replace("bad@", "person2-fixed@mail.example.com")
    assert fixed.splitlines()[0].lstrip("\ufeff").startswith("row,code,message,")
    again = _upload(seller_client, fixed.encode("utf-8-sig"))
    assert again.status_code == 302, again.get_data(as_text=True)  # nothing to ask
    second = db.session.scalar(sa.select(Batch).order_by(Batch.id.desc()))
    assert (second.accepted, second.rejected) == (1, 0)
    assert second.mapping["headers"][:3] == ["row", "code", "message"]


def test_a_second_upload_of_the_same_file_asks_first(seller_client):
    data = csv_bytes([person(1)])
    _upload(seller_client, data)
    page = _upload(seller_client, data).get_data(as_text=True)
    assert "You uploaded this same file before" in page
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Batch)) == 1


def _floor_asked(page: str) -> dict:
    """The floor the page asks to confirm, as the browser sends it back."""
    return {"floor_asked": re.search(r'name="floor_asked" value="(\d+)"', page)[1]}


def test_an_upload_floor_far_above_recent_prices_asks_first(seller_client, seller):
    from tests.market_helpers import recent_sales_at

    recent_sales_at(300)

    def uploaded() -> list[int]:
        return db.session.scalars(sa.select(Batch.floor_price)
                                  .where(Batch.seller_id == seller.id)).all()

    response = _upload(seller_client, csv_bytes([person(1)]), floor_price="99999")
    page = response.get_data(as_text=True)
    assert response.status_code == 409 and uploaded() == []
    assert "more than 3 times what leads sold for lately" in page
    assert 'name="confirm_floor"' in page and "Tick this" not in page
    form = _confirm_form(seller_client, page, HEADER, floor_price="99999", **_floor_asked(page))
    assert form["floor_asked"] == "9999900"
    again = seller_client.post("/seller/batches/confirm", data=form)
    assert again.status_code == 409 and uploaded() == []  # the file is still there to confirm
    assert "Tick this to keep the floor, or lower it." in again.get_data(as_text=True)
    # A tick confirms the floor that was asked about, not one typed over it since.
    higher = seller_client.post("/seller/batches/confirm",
                                data={**form, "floor_price": "199999", "confirm_floor": "y"})
    assert higher.status_code == 409 and uploaded() == []
    assert "$199,999.00" in higher.get_data(as_text=True)
    assert "Tick this" not in higher.get_data(as_text=True)
    form["confirm_floor"] = "y"
    assert seller_client.post("/seller/batches/confirm", data=form).status_code == 302
    assert uploaded() == [9_999_900]

    # The same file again at that floor: both questions on one page, one round.
    page = _upload(seller_client, csv_bytes([person(1)]), floor_price="99999").get_data(
        as_text=True)
    assert "You uploaded this same file before" in page and 'id="floor-warning"' in page
    form = _confirm_form(seller_client, page, HEADER, floor_price="99999",
                         allow_same_file="y", confirm_floor="y", **_floor_asked(page))
    assert seller_client.post("/seller/batches/confirm", data=form).status_code == 302
    assert uploaded() == [9_999_900, 9_999_900]


def test_the_floor_question_stays_while_another_is_answered(seller_client, seller):
    from tests.market_helpers import recent_sales_at

    recent_sales_at(300)
    header = [name for name in HEADER if name != "source_url"]  # every row would fail
    page = _upload(seller_client, csv_bytes([person(1)], header=header),
                   floor_price="99999").get_data(as_text=True)
    assert "Every row of this file would be rejected" in page and 'id="floor-warning"' in page
    form = _confirm_form(seller_client, page, header, floor_price="99999", confirm_floor="y",
                         **_floor_asked(page))
    again = seller_client.post("/seller/batches/confirm", data=form).get_data(as_text=True)
    assert "map them, or confirm" in again and 'id="floor-warning"' in again
    box = re.search(r'<input[^>]*name="confirm_floor"[^>]*>', again)[0]
    assert " checked" in box  # the answer kept
    form["allow_missing"] = "y"
    assert seller_client.post("/seller/batches/confirm", data=form).status_code == 302
    assert db.session.scalar(sa.select(Batch.floor_price).where(Batch.seller_id == seller.id)) \
        == 9_999_900


def test_a_file_that_is_not_csv_is_refused_on_the_form(seller_client):
    page = _upload(seller_client, b"").get_data(as_text=True)
    assert "The file is empty." in page
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Batch)) == 0


def test_progress_fragment_polls_until_finished(seller_client, seller):
    batch = Batch(seller_id=seller.id, default_country="US", filename="big.csv", file_size=1000,
                  bytes_processed=400, rows_total=4000, mapping={})
    db.session.add(batch)
    db.session.commit()
    fragment = seller_client.get(f"/seller/batches/{batch.id}/progress").get_data(as_text=True)
    assert 'hx-trigger="every 1s"' in fragment and 'value="40"' in fragment
    batch.status = BatchStatus.LIVE
    db.session.commit()
    fragment = seller_client.get(f"/seller/batches/{batch.id}/progress").get_data(as_text=True)
    assert "hx-trigger" not in fragment


def test_sellers_see_only_their_own_batches(app, seller_client):
    from app.models import Role
    from tests.conftest import log_in, make_user

    _upload(seller_client, csv_bytes([person(1)]))
    batch = db.session.scalar(sa.select(Batch))
    other = app.test_client()
    log_in(other, make_user(Role.SELLER))
    assert other.get(f"/seller/batches/{batch.id}").status_code == 404
    assert other.get(f"/seller/batches/{batch.id}/rejections").status_code == 404


def test_batches_show_what_they_sold_and_earned(seller_client, seller):
    from app.models import TrustLevel
    from app.market import jobs
    from tests.market_helpers import funded_buyer, place

    seller.trust_level = TrustLevel.VERIFIED
    db.session.commit()
    _upload(seller_client, csv_bytes([person(1), person(2)]))
    order = place(funded_buyer(), 500, 5)
    jobs.fill_order(order.id)
    db.session.commit()
    batch = db.session.scalar(sa.select(Batch))
    page = seller_client.get(f"/seller/batches/{batch.id}").get_data(as_text=True)
    assert "Sold <strong>2</strong> times, none refunded, earning you <strong>$8.00</strong>" in page
    assert "Buyers paid $5.00 each time." in page  # not "$5.00–$5.00"
    listing = seller_client.get("/seller/batches").get_data(as_text=True)
    assert "$8.00" in listing


def test_a_first_upload_defaults_to_the_country_of_the_sellers_browser_language(seller_client):
    page = seller_client.get("/seller/batches/new", headers={"Accept-Language": "ru-RU,ru;q=0.9"})
    assert re.search(r'<option selected value="RU">', page.get_data(as_text=True))
    page = seller_client.get("/seller/batches/new", headers={"Accept-Language": "es"})
    assert re.search(r'<option selected value="US">', page.get_data(as_text=True))  # no country


def test_the_upload_form_starts_from_the_last_uploaded_file_not_a_real_time_lead(
        app, seller_client, seller, api_key_for):
    """A seller's single leads posted by API (terms per request, e.g. floor 0 and one
    buyer) land in a day's real-time batch; the next file's form must not offer those."""
    assert _upload(seller_client, csv_bytes([person(1)]), default_country="ES",
                   floor_price="2.00", cap="3").status_code == 302
    response = app.test_client().post(
        "/api/v1/leads", headers=api_key_for(seller),
        json=person(2) | {"default_country": "PT", "floor_price": 0, "cap": 1})
    assert response.status_code == 201, response.json
    page = seller_client.get("/seller/batches/new").get_data(as_text=True)
    assert re.search(r'<option selected value="ES">', page), re.findall(r"<option selected[^>]*>", page)
    assert re.search(r'<input[^>]* name="floor_price" [^>]*value="2.00"', page)
    assert re.search(r'<input[^>]* name="cap" [^>]*value="3"', page)


def test_the_upload_page_says_which_clock_a_time_without_a_zone_is_read_on(seller_client):
    """A US seller's "2026-12-06 05:30" is read on Chicago time and may be in the future
    by UTC: the page says so before the rows come back rejected."""
    page = seller_client.get("/seller/batches/new").get_data(as_text=True)
    assert "A consent time written without a time zone" in page
    assert "read on the lead's own clock" in page
    assert str(consent_zone(None, "US")) == "America/Chicago" and "Chicago time" in page
