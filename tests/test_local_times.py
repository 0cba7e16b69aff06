"""Pages show moments in the reader's own time zone (their account's), and say which."""
from datetime import datetime, timezone

from app.extensions import db
from app.models import Role
from tests.conftest import log_in, make_user
from tests.ingest_helpers import csv_bytes, ingest, person


def _seller_batch_page(client, zone: str) -> str:
    seller = make_user(Role.SELLER, timezone=zone)
    batch = ingest(seller, csv_bytes([person(i) for i in range(3)]))
    batch.created_at = datetime(2026, 7, 1, 22, 30, tzinfo=timezone.utc)
    db.session.commit()
    log_in(client, seller)
    return client.get(f"/seller/batches/{batch.id}").get_data(as_text=True)


def test_a_seller_in_tokyo_sees_the_upload_time_in_tokyo(client):
    assert "Uploaded 2026-07-02 07:30 JST" in _seller_batch_page(client, "Asia/Tokyo")


def test_a_seller_in_utc_sees_utc(client):
    assert "Uploaded 2026-07-01 22:30 UTC" in _seller_batch_page(client, "UTC")


def test_summer_time_is_the_one_in_force_on_that_day(client):
    page = _seller_batch_page(client, "Europe/Berlin")  # CEST in July, not CET
    assert "Uploaded 2026-07-02 00:30 CEST" in page
