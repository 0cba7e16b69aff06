"""Leads found by contact through contact_keys (app/models/contact_keys.py): every
stored lead has the keys of its hashes, every removed lead or erased hash loses them,
and a key shared by two different hashes never makes one person of them."""
import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import ContactKey, Lead, Role, TrustLevel
from app.models.contact_keys import holding, key
from app.services import privacy
from app.services.crypto import current_vault
from app.core.bulk import SessionConnection
from app.services.ingest import storing
from tests.conftest import make_user, on_postgres
from tests.ingest_helpers import (
    csv_bytes, ingest, keys_of_leads, leads, person, rejections, store_fails_at, stored_keys,
)


def test_duplicates_are_found_across_batches_and_sellers(seller):
    first = ingest(seller, csv_bytes([person(i) for i in range(120)]))
    assert stored_keys() == keys_of_leads() and len(stored_keys()) == 240

    again = ingest(seller, csv_bytes([person(7), person(500, phone="+1 415 555 0042"),
                                      person(501)]))
    assert rejections(again) == {2: "duplicate_own", 3: "duplicate_own"}
    other = ingest(make_user(Role.SELLER), csv_bytes([person(8), person(502)]))
    assert (other.accepted, other.cross_seller_duplicates) == (2, 1)
    assert [lead.cross_seller_duplicate for lead in leads(other)] == [True, False]
    assert first.accepted == 120 and stored_keys() == keys_of_leads()


def test_a_duplicate_is_found_across_chunks_stored_by_other_workers(app, seller, monkeypatch):
    chunk = app.config["INGEST_CHUNK_ROWS"]
    monkeypatch.setitem(app.config, "INGEST_WORKERS", 2)  # chunks stored by turns
    rows = [person(i) for i in range(chunk * 3)]
    rows += [person(5), person(9000, phone=rows[chunk + 3]["phone"])]
    batch = ingest(seller, csv_bytes(rows))
    # Each chunk sees the leads the chunks before it committed, whichever worker it was.
    assert rejections(batch) == {len(rows): "duplicate_in_batch", len(rows) + 1: "duplicate_in_batch"}
    assert batch.accepted == chunk * 3
    assert stored_keys() == keys_of_leads() and len(stored_keys()) == chunk * 6


def test_a_failed_batch_leaves_no_keys(app, seller, monkeypatch):
    kept = ingest(seller, csv_bytes([person(i, email=f"kept{i}@mail.example.com",
                                            phone=f"+1 212 555 {i:04d}") for i in range(3)]))
    before = stored_keys()
    chunk = app.config["INGEST_CHUNK_ROWS"]
    calls = store_fails_at(monkeypatch, 3, RuntimeError("disk on fire"))
    with pytest.raises(RuntimeError):
        ingest(seller, csv_bytes([person(i) for i in range(chunk * 4)]))
    db.session.expire_all()
    assert len(calls) == 3 and kept.accepted == 3
    assert stored_keys() == before == keys_of_leads() and len(before) == 6


def test_erasure_removes_the_keys_of_the_persons_leads(seller):
    ingest(seller, csv_bytes([person(i) for i in range(5)]))
    person_hash = current_vault().dedupe_hash("email", "person2@mail.example.com")
    [lead_id] = db.session.scalars(sa.select(Lead.id).where(holding([("email", person_hash)])))
    privacy.erase(privacy.identify(email="person2@mail.example.com"), reason="request", actor=None)
    db.session.commit()
    assert lead_id not in {i for _, i in stored_keys()}
    assert stored_keys() == keys_of_leads() and len(stored_keys()) == 8


def test_two_hashes_sharing_a_key_are_not_one_person(app):
    """Keys are 8-byte prefixes, so two hashes may share one: a key written for another
    lead (as if its hash began like this one) finds that lead, whose full hash differs."""
    seller = make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED)
    [other] = leads(ingest(seller, csv_bytes([person(1)])))
    vault = current_vault()
    email_hash = vault.dedupe_hash("email", "person2@mail.example.com")
    phone_hash = vault.dedupe_hash("phone", "+14155550002")
    assert email_hash not in (other.email_hash, other.phone_hash)
    db.session.add_all([ContactKey(key=key("email", email_hash), lead_id=other.id),
                        ContactKey(key=key("phone", phone_hash), lead_id=other.id)])
    db.session.commit()

    assert db.session.scalars(sa.select(Lead.id).where(
        holding([("email", email_hash), ("phone", phone_hash)]))).all() == []
    batch = ingest(seller, csv_bytes([person(2)]), allow_same_file=True)
    assert (batch.accepted, batch.rejected) == (1, 0)
    # ... while the real duplicate behind the same key is still found.
    assert rejections(ingest(seller, csv_bytes([person(2), person(1)]))) == {
        2: "duplicate_own", 3: "duplicate_own"}


def test_leads_written_through_the_orm_keep_their_keys(seller):
    ingest(seller, csv_bytes([person(i) for i in range(3)]))
    lead = db.session.scalars(sa.select(Lead).order_by(Lead.id)).first()
    lead.phone_hash = current_vault().dedupe_hash("phone", "+14155559999")
    db.session.commit()
    assert stored_keys() == keys_of_leads()
    db.session.delete(lead)
    db.session.commit()
    assert stored_keys() == keys_of_leads() and len(stored_keys()) == 4


@pytest.mark.skipif(not on_postgres(), reason="PostgreSQL's planner and statistics")
def test_an_upload_gives_contact_keys_statistics(app, seller):
    """A first upload into a table without statistics: the planner took `key = ANY(...)`
    to match nearly every row and read both tables whole for every chunk."""
    db.session.execute(sa.text(
        "DELETE FROM pg_statistic WHERE starelid = 'contact_keys'::regclass"))
    db.session.commit()
    chunk = app.config["INGEST_CHUNK_ROWS"]
    batch = ingest(seller, csv_bytes([person(i) for i in range(chunk * 3)]))
    assert batch.accepted == chunk * 3
    assert db.session.execute(sa.text(
        "SELECT count(*) FROM pg_stats WHERE tablename = 'contact_keys' AND attname = 'key'"
    )).scalar() == 1
    lead = leads(batch)[5]
    found = storing.holders_by_key(SessionConnection().begin(),
                                   {key("email", lead.email_hash), key("phone", bytes(16))})
    assert [row[-1] for row in found] == [lead.row_number]
