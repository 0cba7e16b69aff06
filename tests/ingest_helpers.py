"""Building CSV uploads for the ingest tests (invented people only)."""
import io

import sqlalchemy as sa

from app.core import events
from app.extensions import db
from app.models import Batch, ContactKey, Lead, Rejection
from app.models.contact_keys import keys_of
from app.services.ingest import pipeline, storing

HEADER = ["first_name", "email", "phone", "age", "gender", "region", "consent_at", "source_url"]


def person(i: int, **overrides) -> dict:
    row = {
        "first_name": f"Person{i}", "email": f"person{i}@mail.example.com",
        "phone": f"+1 415 555 {i % 10000:04d}", "age": str(20 + i % 60), "gender": "f",
        "region": "US-CA", "consent_at": "2026-10-01T12:00:00Z",
        "source_url": "https://blog.example.com/newsletter",
    }
    row.update(overrides)
    return row


def csv_bytes(rows: list[dict], header=HEADER, delimiter=",", encoding="utf-8",
              newline="\r\n") -> bytes:
    import csv

    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator=newline)
    writer.writerow(header)
    for row in rows:
        writer.writerow([row.get(h, "") for h in header])
    return out.getvalue().encode(encoding)


def ingest(seller, data: bytes, *, country="US", floor_price=0, cap=1, mapping=None,
           allow_same_file=False, confirm_floor=False) -> Batch:
    """Upload and process a file the way the web and API paths do (processed here,
    not by the job the commit would start: nothing is matched)."""
    token = pipeline.stage_upload(seller, io.BytesIO(data))
    with events.muted():
        batch = pipeline.create_batch(seller, token, "test.csv",
                                      pipeline.check_terms(country, floor_price, cap, mapping),
                                      allow_same_file=allow_same_file,
                                      confirm_floor=confirm_floor)
        db.session.commit()
    pipeline.process_batch(batch.id)
    db.session.expire_all()
    return db.session.get(Batch, batch.id)


def rejections(batch) -> dict[int, str]:
    return dict(db.session.execute(
        sa.select(Rejection.row_number, Rejection.code).where(Rejection.batch_id == batch.id)).all())


def leads(batch) -> list[Lead]:
    return db.session.scalars(sa.select(Lead).where(Lead.batch_id == batch.id)
                              .order_by(Lead.row_number)).all()


def stored_keys() -> set[tuple[int, int]]:
    return set(db.session.execute(sa.select(ContactKey.key, ContactKey.lead_id)).all())


def keys_of_leads() -> set[tuple[int, int]]:
    """The contact keys every stored lead should have."""
    return {pair for row in db.session.execute(
        sa.select(Lead.id, Lead.email_hash, Lead.phone_hash)).all() for pair in keys_of(*row)}


def store_fails_at(monkeypatch, call: int, error: BaseException) -> list:
    """Make the `call`-th chunk stored in this process raise `error` (a
    KeyboardInterrupt: a killed worker, which nothing cleans up after); the chunks
    before it are stored. Returns the list that counts the calls."""
    real_store, calls = storing.store, []

    def failing_store(*args):
        calls.append(1)
        if len(calls) == call:
            raise error
        real_store(*args)

    monkeypatch.setattr(storing, "store", failing_store)
    return calls
