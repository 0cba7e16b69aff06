"""A lead's references (its batch with that batch's seller, its consent form version)
hold whatever writes the lead: SQLite's foreign keys, and on PostgreSQL the triggers
that check a statement's rows at once (migration b7e4d2a9c1f0), with the foreign key's
locks and its NO ACTION on the batches and form versions referred to."""
import threading

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError

from app.extensions import db
from app.models import Batch, Lead, LeadFormVersion, Role
from tests.conftest import make_user, on_postgres
from tests.ingest_helpers import csv_bytes, ingest, leads, person
from tests.test_lead_forms import make_form

on_postgres_only = pytest.mark.skipif(not on_postgres(), reason="PostgreSQL's triggers and locks")


def _copy_of(lead: Lead, **changes) -> dict:
    """A lead's columns as a new lead's, with `changes`."""
    values = {c.key: getattr(lead, c.key) for c in sa.inspect(Lead).column_attrs
              if c.key != "id"}
    return {**values, **changes}


def _refused(statement, rows=None, *, constraint: str = "fk_leads_batch_id_batches") -> None:
    with pytest.raises(IntegrityError) as caught:
        db.session.execute(statement, rows) if rows else db.session.execute(statement)
        db.session.flush()
    db.session.rollback()
    if on_postgres():
        assert caught.value.orig.diag.constraint_name == constraint


def test_every_lead_of_a_statement_must_name_an_existing_batch_and_its_seller(seller):
    batch = ingest(seller, csv_bytes([person(1)]))
    lead = leads(batch)[0]
    other = make_user(Role.SELLER)
    good = _copy_of(lead)
    for bad in ({"seller_id": other.id}, {"batch_id": batch.id + 1000}):
        _refused(sa.insert(Lead), [{**good, **bad}])
        _refused(sa.insert(Lead), [good, {**good, **bad}, good])  # one bad row among good
        _refused(sa.update(Lead).where(Lead.id == lead.id).values(**bad))
    second = ingest(other, csv_bytes([person(2)]))
    db.session.execute(sa.insert(Lead), [good, good, {**good, "batch_id": second.id,
                                                      "seller_id": other.id}])
    db.session.commit()
    assert (len(leads(batch)), len(leads(second))) == (3, 2)


def test_a_lead_names_an_existing_consent_form_version_or_none(seller):
    batch = ingest(seller, csv_bytes([person(1)]))
    lead = leads(batch)[0]
    version = db.session.scalars(sa.select(LeadFormVersion).where(
        LeadFormVersion.form_id == make_form(seller).id)).one()
    missing = version.id + 1000
    scope_key = "fk_leads_consent_scope_id_lead_form_versions"
    for scopes in ([None, missing], [version.id, missing, version.id]):
        _refused(sa.insert(Lead), [_copy_of(lead, consent_scope_id=s) for s in scopes],
                 constraint=scope_key)
    _refused(sa.update(Lead).where(Lead.id == lead.id).values(consent_scope_id=missing),
             constraint=scope_key)
    db.session.execute(sa.insert(Lead), [_copy_of(lead, consent_scope_id=version.id)])
    db.session.execute(sa.update(Lead).where(Lead.id == lead.id).values(
        consent_scope_id=version.id))
    db.session.commit()
    # NO ACTION: a version a lead names stays, and keeps its id.
    _refused(sa.delete(LeadFormVersion).where(LeadFormVersion.id == version.id),
             constraint=scope_key)
    _refused(sa.update(LeadFormVersion).where(LeadFormVersion.id == version.id)
             .values(id=missing), constraint=scope_key)


def test_a_batch_its_leads_name_is_neither_deleted_nor_given_another_key(seller):
    batch = ingest(seller, csv_bytes([person(1)]))
    other = make_user(Role.SELLER)
    _refused(sa.delete(Batch).where(Batch.id == batch.id))
    _refused(sa.update(Batch).where(Batch.id == batch.id).values(seller_id=other.id))
    _refused(sa.update(Batch).where(Batch.id == batch.id).values(id=batch.id + 1000))
    db.session.execute(sa.update(Batch).where(Batch.id == batch.id).values(cap=2))  # not a key
    # Without leads it may go, and a statement that deletes the leads first may too.
    db.session.execute(sa.delete(Lead).where(Lead.batch_id == batch.id))
    db.session.execute(sa.update(Batch).where(Batch.id == batch.id).values(seller_id=other.id))
    db.session.execute(sa.delete(Batch).where(Batch.id == batch.id))
    db.session.commit()
    assert db.session.get(Batch, batch.id) is None


@on_postgres_only
def test_the_ingest_copy_is_checked_too(seller):
    """COPY, the ingest's way of storing leads, fires the statement's check."""
    batch = ingest(seller, csv_bytes([person(1)]))
    lead = leads(batch)[0]
    columns = ("id", "batch_id", "seller_id", "status", "row_number", "contact_enc",
               "has_email", "has_phone", "gender", "marital_status", "employed", "interests",
               "consent_at", "source_url", "cross_seller_duplicate", "floor_price", "cap",
               "sold_count", "created_at")
    values = {**_copy_of(lead), "id": lead.id + 1, "batch_id": batch.id + 1000,
              "status": lead.status.value, "interests": "[]"}
    driver = db.session.connection().connection.driver_connection
    with pytest.raises(IntegrityError):
        try:
            with driver.cursor().copy(f"COPY leads ({', '.join(columns)}) FROM STDIN") as copy:
                copy.write_row([values[name] for name in columns])
        except Exception as error:  # the driver's error, as SQLAlchemy would wrap it
            raise IntegrityError("COPY", None, error) from error
    db.session.rollback()


def _own_connection(lock_timeout: str = "300ms"):
    connection = db.engine.connect()
    connection.detach()  # closed for good afterwards: the setting must not reach the pool
    connection.exec_driver_sql(f"SET lock_timeout = '{lock_timeout}'")
    return connection


def _empty_batch(seller) -> Batch:
    batch = Batch(seller_id=seller.id, default_country="US", floor_price=0, cap=1)
    db.session.add(batch)
    db.session.commit()
    return batch


@on_postgres_only
def test_a_batch_being_filled_cannot_be_deleted_until_the_filling_commits(seller):
    """The check locks the batch as a foreign key does: its delete waits for the
    transaction storing its leads, then finds them."""
    row = _copy_of(leads(ingest(seller, csv_bytes([person(1)])))[0])
    batch = _empty_batch(seller)
    filling, deleting = _own_connection(), _own_connection()
    try:
        filling.execute(sa.insert(Lead), [{**row, "batch_id": batch.id}])
        with pytest.raises(OperationalError, match="lock timeout"):
            deleting.execute(sa.delete(Batch).where(Batch.id == batch.id))
        deleting.rollback()
        filling.commit()
        with pytest.raises(IntegrityError):
            deleting.execute(sa.delete(Batch).where(Batch.id == batch.id))
        deleting.rollback()
    finally:
        filling.close()
        deleting.close()


@on_postgres_only
def test_a_lead_for_a_batch_being_deleted_waits_and_is_refused_once_it_is_gone(seller):
    row = _copy_of(leads(ingest(seller, csv_bytes([person(1)])))[0])
    batch = _empty_batch(seller)
    deleting, filling = _own_connection(), _own_connection(lock_timeout="10s")
    outcome = []
    try:
        deleting.execute(sa.delete(Batch).where(Batch.id == batch.id))

        def fill():
            try:
                filling.execute(sa.insert(Lead), [{**row, "batch_id": batch.id}])
                outcome.append("stored")
            except Exception as error:
                outcome.append(error)

        worker = threading.Thread(target=fill)
        worker.start()
        worker.join(0.5)
        assert worker.is_alive()  # waits for the delete's transaction
        deleting.commit()
        worker.join(10)
        assert len(outcome) == 1 and isinstance(outcome[0], IntegrityError), outcome
    finally:
        filling.close()
        deleting.close()


@on_postgres_only
def test_truncate_and_repeatable_read_leave_no_lead_without_its_batch(seller):
    ingest(seller, csv_bytes([person(1)]))
    db.session.commit()  # its reads hold locks TRUNCATE waits for
    with pytest.raises(sa.exc.NotSupportedError) as caught:
        with db.engine.begin() as connection:  # every table referring to batches but leads
            connection.exec_driver_sql("TRUNCATE batches CASCADE")
    assert caught.value.orig.diag.message_detail == 'Table "leads" references "batches".'
    # REPEATABLE READ does not see a lead stored after its snapshot: there a batch's key
    # does not change, even a batch without leads.
    batch = _empty_batch(seller)
    with pytest.raises(OperationalError, match="READ COMMITTED or SERIALIZABLE"):
        with db.engine.connect().execution_options(
                isolation_level="REPEATABLE READ") as connection, connection.begin():
            connection.execute(sa.delete(Batch).where(Batch.id == batch.id))
    with db.engine.begin() as connection:
        connection.execute(sa.delete(Batch).where(Batch.id == batch.id))
