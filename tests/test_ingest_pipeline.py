import io

import pytest
import sqlalchemy as sa

from app.core import events
from app.errors import Conflict, Forbidden
from app.extensions import db
from app.models import (
    Batch, BatchStatus, LeadStatus, Rejection, Role, SuppressionEntry, TrustLevel,
)
from app.services.crypto import current_vault
from app.services.ingest import pipeline, storing
from app.services.ingest.reader import UnreadableFile
from tests.conftest import make_user, on_postgres
from tests.ingest_helpers import (
    csv_bytes, ingest, keys_of_leads, leads, person, rejections, store_fails_at, stored_keys,
)


@pytest.fixture
def verified_seller(app):
    return make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED)


def test_a_clean_file_goes_live_for_a_verified_seller(verified_seller):
    batch = ingest(verified_seller, csv_bytes([person(i) for i in range(120)]), cap=3,
                   floor_price=250)
    assert batch.status is BatchStatus.LIVE
    assert (batch.rows_total, batch.accepted, batch.rejected) == (120, 120, 0)
    stored = leads(batch)
    assert {lead.status for lead in stored} == {LeadStatus.LIVE}
    first = stored[0]
    assert (first.row_number, first.region, first.age, first.gender) == (2, "US-CA", 20, "f")
    assert (first.cap, first.floor_price, first.has_email, first.has_phone) == (3, 250, True, True)
    assert current_vault().open_contact(first.contact_enc) == {
        "first_name": "Person0", "last_name": None, "email": "person0@mail.example.com",
        "phone": "+14155550000", "ip": None}


def test_a_new_sellers_batch_is_held(seller):
    batch = ingest(seller, csv_bytes([person(1)]))
    assert batch.status is BatchStatus.HELD
    assert leads(batch)[0].status is LeadStatus.HELD


def test_suspended_sellers_cannot_upload(app):
    seller = make_user(Role.SELLER, trust_level=TrustLevel.SUSPENDED)
    with pytest.raises(Forbidden):
        pipeline.stage_upload(seller, io.BytesIO(csv_bytes([person(1)])))


def test_every_row_gets_a_verdict_and_bad_rows_are_kept_for_the_report(seller):
    rows = [
        person(1),
        person(2, email="not-an-email"),
        person(3, phone="12", email=""),
        person(4, email="", phone=""),
        person(5, consent_at=""),
        person(6, consent_at="2099-01-01T00:00:00Z"),
        person(7, age="15"),
        person(8, region="Atlantis"),
        person(1),  # the same person as row 2
    ]
    batch = ingest(seller, csv_bytes(rows))
    assert rejections(batch) == {
        3: "invalid_email", 4: "invalid_phone", 5: "no_contact", 6: "no_consent",
        7: "consent_in_future", 8: "implausible_age", 9: "unknown_region",
        10: "duplicate_in_batch",
    }
    assert (batch.rows_total, batch.accepted, batch.rejected) == (9, 1, 8)
    message = db.session.scalar(sa.select(Rejection.message_enc).where(Rejection.row_number == 10))
    assert current_vault().decrypt(message) == "This lead repeats row 2 of the same file."


@pytest.mark.parametrize("processes", [1, 2])
def test_duplicates_across_chunks_and_batches(app, seller, monkeypatch, processes):
    """In the calling process and on the workers (SQLite: staged, the flag set on the
    staged rows of the cross-seller duplicates)."""
    monkeypatch.setitem(app.config, "INGEST_WORKERS", processes)
    other = make_user(Role.SELLER)
    chunk = app.config["INGEST_CHUNK_ROWS"]
    rows = [person(i) for i in range(chunk + 5)] + [person(3, email="new@mail.example.com")]
    first = ingest(seller, csv_bytes(rows))
    assert rejections(first) == {chunk + 7: "duplicate_in_batch"}  # phone repeats row 5

    again = ingest(seller, csv_bytes([person(1), person(9999)]))
    assert rejections(again) == {2: "duplicate_own"}

    theirs = ingest(other, csv_bytes([person(1), person(8888), person(7), person(7777),
                                      person(chunk + 2)]))
    assert rejections(theirs) == {}
    assert [lead.cross_seller_duplicate for lead in leads(theirs)] == [
        True, False, True, False, True]
    assert theirs.cross_seller_duplicates == 3


def test_suppressed_people_are_refused(seller):
    vault = current_vault()
    db.session.add(SuppressionEntry(kind="email", reason="asked to be forgotten",
                                    value_hash=vault.dedupe_hash("email", "person2@mail.example.com")))
    db.session.commit()
    batch = ingest(seller, csv_bytes([person(1), person(2)]))
    assert rejections(batch) == {3: "suppressed"}


def test_contacts_are_never_stored_in_clear(app, seller):
    rows = [person(1, first_name="Zebediah"), person(2, email="bad@@x", first_name="Quixote")]
    ingest(seller, csv_bytes(rows))
    secrets = ["Zebediah", "person1@mail.example.com", "4155550001", "Quixote", "bad@@x"]
    for table in ("leads", "rejections", "batches"):
        for row in db.session.execute(sa.text(f"SELECT * FROM {table}")):
            blob = repr(tuple(bytes(v) if isinstance(v, memoryview) else v for v in row))
            assert not [s for s in secrets if s in blob], table


def test_a_file_that_fails_midway_leaves_no_half_batch(app, seller):
    chunk = app.config["INGEST_CHUNK_ROWS"]
    data = csv_bytes([person(i) for i in range(chunk * 2)])
    data += b'"' + b"x" * (2 << 20) + b'"\r\n'  # a monstrous cell after two full chunks
    batch = ingest(seller, data)
    assert batch.status is BatchStatus.FAILED
    assert batch.error_message
    assert leads(batch) == [] and rejections(batch) == {}


def test_a_crashed_run_resumes_from_its_last_chunk(app, seller, monkeypatch):
    chunk = app.config["INGEST_CHUNK_ROWS"]
    rows = [person(i) for i in range(chunk * 3 + 7)] + [person(0)]
    batch = _queued(seller, rows)
    store_fails_at(monkeypatch, 3, KeyboardInterrupt("worker killed"))
    with pytest.raises(KeyboardInterrupt):
        pipeline.process_batch(batch.id)
    db.session.rollback()
    halfway = db.session.get(Batch, batch.id)
    assert halfway.status is BatchStatus.PROCESSING and halfway.rows_processed == chunk * 2 + 1
    assert len(leads(halfway)) == chunk * 2

    monkeypatch.undo()  # the real store again
    pipeline.process_batch(batch.id)
    db.session.expire_all()
    done = db.session.get(Batch, batch.id)
    assert done.status is BatchStatus.HELD
    assert (done.rows_total, done.accepted, done.rejected) == (len(rows), len(rows) - 1, 1)
    assert rejections(done) == {len(rows) + 1: "duplicate_in_batch"}
    assert sorted(lead.row_number for lead in leads(done)) == list(range(2, len(rows) + 1))
    assert stored_keys() == keys_of_leads()  # the keys the dead run left unwritten too


def _queued(seller, rows) -> Batch:
    token = pipeline.stage_upload(seller, io.BytesIO(csv_bytes(rows)))
    with events.muted():  # the test runs the job itself
        batch = pipeline.create_batch(seller, token, "t.csv", pipeline.check_terms("US", 0, 1))
        db.session.commit()
    return batch


def test_a_run_resumed_by_the_worker_processes_stores_the_rest_once(app, seller, monkeypatch):
    chunk = app.config["INGEST_CHUNK_ROWS"]
    rows = [person(i) for i in range(chunk * 6 + 3)] + [person(7)]
    batch = _queued(seller, rows)
    store_fails_at(monkeypatch, 4, KeyboardInterrupt("worker killed"))
    with pytest.raises(KeyboardInterrupt):
        pipeline.process_batch(batch.id)
    db.session.rollback()
    monkeypatch.undo()  # the real store again
    monkeypatch.setitem(app.config, "INGEST_WORKERS", 2)
    pipeline.process_batch(batch.id)
    db.session.expire_all()
    done = db.session.get(Batch, batch.id)
    assert (done.rows_total, done.accepted, done.rejected) == (len(rows), len(rows) - 1, 1)
    assert rejections(done) == {len(rows) + 1: "duplicate_in_batch"}
    assert sorted(lead.row_number for lead in leads(done)) == list(range(2, len(rows) + 1))
    assert stored_keys() == keys_of_leads()


def test_a_file_that_fails_in_the_worker_processes_leaves_nothing(app, seller, monkeypatch):
    monkeypatch.setitem(app.config, "INGEST_WORKERS", 2)
    chunk = app.config["INGEST_CHUNK_ROWS"]
    data = csv_bytes([person(i) for i in range(chunk * 5)])
    data += b'"' + b"x" * (2 << 20) + b'"\r\n'  # a monstrous cell after five full chunks
    batch = ingest(seller, data)
    assert batch.status is BatchStatus.FAILED
    assert leads(batch) == [] and rejections(batch) == {} and stored_keys() == set()


def test_two_runs_of_one_batch_store_each_row_once(app, verified_seller, monkeypatch):
    """A batch resumed while its first run still works (its heartbeat looked stale): one
    run's claim wins each chunk, the loser stops and leaves the batch to the winner."""
    import threading

    monkeypatch.setitem(app.config, "INGEST_WORKERS", 2)  # one run on the pool, one not
    chunk = app.config["INGEST_CHUNK_ROWS"]
    rows = [person(i) for i in range(chunk * 12)] + [person(3)]
    batch_id = _queued(verified_seller, rows).id
    db.session.commit()  # the id read above: this thread holds no lock meanwhile
    errors = []

    def run():
        with app.app_context():
            try:
                pipeline.process_batch(batch_id)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    db.session.expire_all()
    done = db.session.get(Batch, batch_id)
    assert done.status is BatchStatus.LIVE
    assert (done.rows_total, done.accepted, done.rejected) == (len(rows), len(rows) - 1, 1)
    assert sorted(lead.row_number for lead in leads(done)) == list(range(2, len(rows) + 1))
    assert rejections(done) == {len(rows) + 1: "duplicate_in_batch"}
    assert stored_keys() == keys_of_leads()


def test_an_unfinished_batch_is_offered_to_nobody_and_resumes_from_its_last_commit(
        app, verified_seller, monkeypatch):
    from app.market.filters import Filters
    from app.market.queries import estimate

    chunk = app.config["INGEST_CHUNK_ROWS"]
    rows = [person(i) for i in range(chunk * 7)]
    batch = _queued(verified_seller, rows)
    store_fails_at(monkeypatch, 5, KeyboardInterrupt("worker killed"))
    with pytest.raises(KeyboardInterrupt):
        pipeline.process_batch(batch.id)
    db.session.rollback()
    halfway = db.session.get(Batch, batch.id)
    # Chunks 1-4 were committed, each on its own; the 5th never was.
    assert halfway.rows_processed == chunk * 4 + 1 and len(leads(halfway)) == chunk * 4
    assert {lead.status for lead in leads(halfway)} == {LeadStatus.LIVE}
    assert estimate(Filters()).matching == 0  # stored live, yet offered to nobody

    monkeypatch.undo()  # the real store again
    pipeline.process_batch(batch.id)
    db.session.expire_all()
    done = db.session.get(Batch, batch.id)
    assert done.status is BatchStatus.LIVE
    assert (done.rows_total, done.accepted, done.rejected) == (len(rows), len(rows), 0)
    assert sorted(lead.row_number for lead in leads(done)) == list(range(2, len(rows) + 2))
    assert estimate(Filters()).matching == len(rows)


def test_a_seller_whose_trust_changes_mid_run_gets_the_status_of_the_end(
        app, verified_seller, monkeypatch):
    chunk = app.config["INGEST_CHUNK_ROWS"]
    real_store, calls = storing.store, []

    def store_then_demote(*args):
        calls.append(1)
        real_store(*args)
        if len(calls) == 1:
            verified_seller.trust_level = TrustLevel.NEW  # an admin demotes the seller

    monkeypatch.setattr(storing, "store", store_then_demote)
    batch = ingest(verified_seller, csv_bytes([person(i) for i in range(chunk * 2)]))
    assert batch.status is BatchStatus.HELD
    assert {lead.status for lead in leads(batch)} == {LeadStatus.HELD}


def test_stalled_batches_are_found_for_resumption(app, seller):
    from datetime import timedelta

    from app.models.types import utcnow

    token = pipeline.stage_upload(seller, io.BytesIO(csv_bytes([person(1)])))
    with events.muted():  # its job never started (or died)
        batch = pipeline.create_batch(seller, token, "t.csv", pipeline.check_terms("US", 0, 1))
        batch.heartbeat_at = utcnow() - timedelta(minutes=30)
        db.session.commit()
    assert pipeline.stalled_batches(600) == [batch.id]
    from app import tasks

    assert tasks.resume_stalled_batches.run() == [batch.id]  # eager: processed at once
    db.session.expire_all()
    assert db.session.get(Batch, batch.id).status is BatchStatus.HELD


def test_nothing_acceptable_means_a_rejected_batch(seller):
    batch = ingest(seller, csv_bytes([person(1, email="", phone="")]))
    assert batch.status is BatchStatus.REJECTED
    assert "No row" in batch.error_message


@pytest.mark.parametrize("data,code", [
    (b"", "empty_file"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4, "binary_file"),
    (b"colour,size\r\nred,10\r\n", "no_header"),
])
def test_files_that_are_not_csv_create_nothing(app, seller, data, code):
    token = pipeline.stage_upload(seller, io.BytesIO(data))
    with pytest.raises(UnreadableFile) as exc:
        pipeline.create_batch(seller, token, "x.csv", pipeline.check_terms("US", 0, 1))
    assert exc.value.code == code
    db.session.rollback()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Batch)) == 0
    assert list(pipeline.upload_dir().glob(f"*{token}*")) == []


def test_the_same_file_twice_needs_confirmation(seller):
    data = csv_bytes([person(1)])
    ingest(seller, data)
    with pytest.raises(Conflict) as exc:
        ingest(seller, data)
    assert exc.value.code == "duplicate_file"
    db.session.rollback()
    second = ingest(seller, data, allow_same_file=True)
    assert rejections(second) == {2: "duplicate_own"}


def test_a_floor_far_above_recent_prices_needs_confirmation_at_upload(seller):
    from app.services import market_stats
    from tests.market_helpers import recent_sales_at

    assert ingest(seller, csv_bytes([person(1)]), floor_price=10**6).floor_price == 10**6  # no sales
    recent_sales_at(300)  # the file's regions are not known yet: the whole market's level
    with pytest.raises(market_stats.FloorNeedsConfirmation) as refused:
        ingest(seller, csv_bytes([person(2)]), floor_price=901)
    assert "3 times what leads sold for lately" in refused.value.message
    assert refused.value.details["field"] == "floor_price"
    db.session.rollback()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Batch)
                             .where(Batch.seller_id == seller.id)) == 1
    assert ingest(seller, csv_bytes([person(2)]), floor_price=900).accepted == 1
    confirmed = ingest(seller, csv_bytes([person(3)]), floor_price=901, confirm_floor=True)
    assert (confirmed.floor_price, confirmed.accepted) == (901, 1)


def test_a_file_whose_rows_were_all_rejected_is_uploaded_again_without_asking(seller):
    data = csv_bytes([person(1)])
    first = ingest(seller, data, mapping={"source_url": "sub_id"})  # no page: rejected
    assert (first.accepted, rejections(first)) == (0, {2: "no_consent"})
    again = ingest(seller, data)  # the mapping fixed: no duplicate_file
    assert again.accepted == 1


def test_mapping_places_unknown_columns(seller):
    header = ["Contact mail", "Mobile", "consent_at", "source_url", "Notes"]
    data = csv_bytes([{"Contact mail": "m@mail.example.com", "Mobile": "+14155550123",
                       "consent_at": "2026-10-01", "source_url": "https://x.example.com",
                       "Notes": "=cmd|' /C calc'!A0"}], header=header, delimiter=";")
    batch = ingest(seller, data, mapping={"Contact mail": "email", "Notes": ""})
    lead = leads(batch)[0]
    assert current_vault().open_contact(lead.contact_enc)["email"] == "m@mail.example.com"
    assert lead.has_phone


def test_parallel_workers_give_the_same_result(app, seller):
    rows = [person(i, email="broken@" if i % 7 == 0 else f"p{i}@mail.example.com")
            for i in range(400)] + [person(5)]
    app.config["INGEST_WORKERS"] = 2
    try:
        parallel = ingest(seller, csv_bytes(rows))
    finally:
        app.config["INGEST_WORKERS"] = 1
    other = make_user(Role.SELLER)
    serial = ingest(other, csv_bytes(rows))
    assert rejections(parallel) == rejections(serial)
    assert (parallel.accepted, parallel.rejected) == (serial.accepted, serial.rejected)
    assert parallel.rejected == len(range(0, 400, 7)) + 1


def test_a_lead_belongs_to_its_batchs_seller(verified_seller):
    """The database itself refuses a lead whose seller is not its batch's seller (one
    composite key: a foreign key on SQLite, a check of each statement's rows on PostgreSQL)."""
    other = make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED)
    batch = ingest(verified_seller, csv_bytes([person(1)]))
    lead = leads(batch)[0]
    with pytest.raises(sa.exc.IntegrityError):
        db.session.execute(sa.update(type(lead)).where(type(lead).id == lead.id)
                           .values(seller_id=other.id))
        db.session.flush()
    db.session.rollback()


def test_a_row_repeating_the_chunk_stored_just_before_is_a_duplicate_on_the_worker_pool(
        app, seller, monkeypatch):
    """Every chunk repeats contacts of the chunk before it. The first chunk's claim
    waits for a lock held here, so the second chunk looks its contacts up before the
    first has committed: its turn finds them among the run's recent chunks
    (storing.RecentLeads)."""
    import threading
    import time

    monkeypatch.setitem(app.config, "INGEST_WORKERS", 2)
    chunk = app.config["INGEST_CHUNK_ROWS"]
    rows, repeats = [], set()
    for i in range(chunk * 6):
        if i >= chunk and i % 5 == 0:  # the email of a row of the chunk before
            rows.append(person(i, email=f"person{i - chunk + 1}@mail.example.com"))
        elif i >= chunk and i % 5 == 3:  # the phone of one
            rows.append(person(i, phone=f"+1 415 555 {i - chunk + 1:04d}"))
        else:
            rows.append(person(i))
            continue
        repeats.add(i + 2)  # its row number: the header is row 1
    ingest(seller, csv_bytes([person(9000)]))  # the workers started
    batch_id = _queued(seller, rows).id
    db.session.commit()

    def run():
        with app.app_context():
            pipeline.process_batch(batch_id)

    thread = threading.Thread(target=run)
    holder = db.engine.connect()
    holder.begin()
    if on_postgres():  # leads written by nobody else; their lookups go on
        holder.execute(sa.text("LOCK TABLE leads IN SHARE MODE"))
        thread.start()
    else:  # the write lock, once the run has started (it writes the batch first)
        thread.start()
        started = sa.select(Batch.started_at).where(Batch.id == batch_id)
        while holder.execute(started).scalar() is None:
            holder.rollback()
            time.sleep(0.001)
        holder.execute(sa.update(Batch).where(Batch.id == 0).values(error_code=None))
    thread.join(2)  # the first chunk waits for the lock, the second for its turn
    holder.rollback()
    holder.close()
    thread.join(60)
    db.session.expire_all()
    batch = db.session.get(Batch, batch_id)
    assert rejections(batch) == {row: "duplicate_in_batch" for row in repeats}
    assert (batch.accepted, batch.rejected) == (len(rows) - len(repeats), len(repeats))
    assert stored_keys() == keys_of_leads()
    messages = db.session.scalars(sa.select(Rejection.message_enc).where(
        Rejection.batch_id == batch.id, Rejection.row_number == chunk + 2)).all()
    assert [current_vault().decrypt(m) for m in messages] == [
        storing.verdict_message("duplicate_in_batch", first_row=3)]


def test_a_chunk_failing_in_its_writes_while_the_next_has_decided_leaves_nothing(
        app, seller, monkeypatch):
    """The database refuses one row of the fourth chunk (a constraint added here); the
    chunks after it, decided and maybe written meanwhile, never commit."""
    monkeypatch.setitem(app.config, "INGEST_WORKERS", 2)
    chunk = app.config["INGEST_CHUNK_ROWS"]
    refused = chunk * 3 + 10
    if on_postgres():
        guard = (f"ALTER TABLE leads ADD CONSTRAINT test_refused CHECK (row_number <> {refused})",
                 "ALTER TABLE leads DROP CONSTRAINT test_refused")
    else:
        guard = (f"CREATE TRIGGER test_refused BEFORE INSERT ON leads WHEN NEW.row_number = "
                 f"{refused} BEGIN SELECT RAISE(ABORT, 'refused'); END",
                 "DROP TRIGGER test_refused")
    db.session.execute(sa.text(guard[0]))
    db.session.commit()
    try:
        with pytest.raises(Exception):
            ingest(seller, csv_bytes([person(i) for i in range(chunk * 8)]))
    finally:
        db.session.rollback()
        db.session.execute(sa.text(guard[1]))
        db.session.commit()
    batch = db.session.scalars(sa.select(Batch).where(Batch.seller_id == seller.id)).one()
    assert batch.status is BatchStatus.FAILED
    assert leads(batch) == [] and rejections(batch) == {} and stored_keys() == set()
