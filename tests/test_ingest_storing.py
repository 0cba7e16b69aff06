"""How the ingest pipeline stores rows: on PostgreSQL packed by the workers for binary
COPY (app.core.pgcopy, app.services.ingest.copy_ready), the same leads as the
driver's own COPY would store; on SQLite staged by a worker in a temporary table of
its connection before its turn, and copied from there in it."""
import io
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from psycopg.types.bool import BoolBinaryDumper
from psycopg.types.datetime import DatetimeBinaryDumper
from psycopg.types.numeric import Int2BinaryDumper, Int4BinaryDumper, Int8BinaryDumper
from psycopg.types.string import BytesBinaryDumper, StrBinaryDumper

from app.core import pgcopy
from app.core.bulk import kind_of
from app.extensions import db
from app.models import Batch, Lead, Role
from app.services.crypto import current_vault
from app.services.ingest import copy_ready, storing, workers
from tests.conftest import make_user, on_postgres
from tests.ingest_helpers import (
    csv_bytes, ingest, keys_of_leads, leads, person, rejections, stored_keys,
)

DUMPERS = {"int2": Int2BinaryDumper, "int4": Int4BinaryDumper, "int8": Int8BinaryDumper,
           "bool": BoolBinaryDumper, "bytea": BytesBinaryDumper, "text": StrBinaryDumper,
           "timestamptz": DatetimeBinaryDumper}
SAMPLES = {
    "int2": [0, 1, -1, 17, 32767, -32768],
    "int4": [0, 2, -7, 1_000_001, 2**31 - 1, -2**31],
    "int8": [0, 5, -9, 2**40 + 3, 2**63 - 1, -2**63],
    "bool": [True, False],
    "bytea": [b"", b"\x00\xff\\x", bytes(range(256))],
    "text": ["", "plain", "Согласие — да", "tab\there\nnewline \\ backslash", "😀" * 40],
    "timestamptz": [datetime(2000, 1, 1, tzinfo=timezone.utc),
                    datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc),
                    datetime(2026, 12, 5, 21, 3, 4, 123456, tzinfo=timezone.utc),
                    datetime(2026, 6, 1, 9, 0, tzinfo=timezone(timedelta(hours=3))),
                    datetime(1901, 2, 3, 4, 5, 6, 7, tzinfo=timezone.utc)],
}


@pytest.mark.parametrize("kind", pgcopy.KINDS)
def test_fields_are_what_the_driver_sends_in_binary(kind):
    dump = DUMPERS[kind](object).dump
    for value in SAMPLES[kind]:
        data = bytes(dump(value))
        assert pgcopy.field(kind, value) == len(data).to_bytes(4, "big", signed=True) + data
    values = SAMPLES[kind] + [None] + SAMPLES[kind]
    expected = [pgcopy.field(kind, value) for value in values]
    assert pgcopy.column(kind, values) == expected
    assert pgcopy.column(kind, values, distinct=True) == expected
    assert pgcopy.field(kind, None) == b"\xff\xff\xff\xff"


def test_sqlite_times_are_what_sqlalchemy_binds():
    """The workers' consent_at text for SQLite is what the ORM would store: UTCDateTime's
    UTC time, as SQLAlchemy's SQLite DATETIME writes it."""
    from sqlalchemy.dialects import sqlite

    from app.models.types import UTCDateTime

    column = UTCDateTime()
    dialect = sqlite.dialect()
    bind = column.dialect_impl(dialect).impl.bind_processor(dialect)
    times = [datetime(2026, 12, 5, 21, 3, 4, 123456, tzinfo=timezone.utc),
             datetime(2026, 6, 1, 9, 0, tzinfo=timezone(timedelta(hours=3))),
             datetime(1901, 2, 3, 4, 5, 6, 7, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
             datetime(1, 1, 1, 0, 0, tzinfo=timezone.utc),
             datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)]
    assert list(workers._sqlite_times(times)) == [
        bind(column.process_bind_param(when, dialect)) for when in times]


def test_packed_kinds_are_the_leads_tables():
    """A field of another type's size would be refused by the server."""
    table = Lead.__table__
    assert set(copy_ready.KINDS) == set(workers.ACCEPTED_COLUMNS)
    for name in workers.ACCEPTED_COLUMNS:
        assert copy_ready.KINDS[name] == kind_of(table.c[name].type), name
    if on_postgres():  # and the schema the migrations made
        found = dict(db.session.execute(sa.text(
            "SELECT attname, format_type(atttypid, NULL) FROM pg_attribute "
            "WHERE attrelid = 'leads'::regclass AND attnum > 0 AND NOT attisdropped")).all())
        names = {"smallint": "int2", "integer": "int4", "bigint": "int8", "boolean": "bool",
                 "bytea": "bytea", "character varying": "text", "text": "text",
                 "json": "text", "timestamp with time zone": "timestamptz"}
        for column in table.c:
            assert names[found[column.name]] == kind_of(column.type), column.name


def _bench_rows(count: int) -> tuple[list[str], list[list[str]]]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    try:
        from ingest import HEADER, LeadGenerator
    finally:
        sys.path.pop(0)
    generator = LeadGenerator(20261205)
    return HEADER, [generator.row(i) for i in range(2, count + 2)]


def _csv(header, rows) -> bytes:
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header + ["sub_id", "city", "postal_code", "budget", "need"])
    for i, row in enumerate(rows):
        writer.writerow(row + [f"page-{i % 7}" if i % 3 else "", "Springfield" if i % 2 else "",
                               f"{10000 + i}" if i % 5 else "", "ab" * (i % 200), ""])
    return out.getvalue().encode()


@pytest.mark.parametrize("processes", [1, 2])
def test_stored_rows_are_what_validation_gave(app, monkeypatch, processes):
    """A file stored as the workers store it (PostgreSQL: rows packed for binary COPY;
    SQLite: bound for executemany, on the worker processes first into a temporary
    table and copied from there): every accepted column of every lead as validation
    gave it in Python objects (sealed contacts opened), ids in file order, the contact
    keys of those ids."""
    from app.services.ingest.reader import open_csv
    from app.services.ingest.validate import RowContext

    monkeypatch.setitem(app.config, "INGEST_WORKERS", processes)
    header, rows = _bench_rows(700)
    data = _csv(header, rows)
    batch = ingest(make_user(Role.SELLER), data)
    vault = current_vault()
    with open_csv(io.BytesIO(data), mapping={}) as source:
        records = list(source.rows())
        fields = source.header_map.fields
    expected = {row[0]: row for row in workers.validate_chunk(
        records, fields, RowContext("US", batch.created_at), vault, storage=None).accepted}
    contact = workers.ACCEPTED_COLUMNS.index("contact_enc")

    def opened(row):
        return row[:contact] + (vault.open_contact(row[contact]),) + row[contact + 1:]

    stored = [opened(tuple(getattr(lead, name) for name in workers.ACCEPTED_COLUMNS))
              for lead in leads(batch)]
    assert len(stored) == batch.accepted > 550  # the rest: invalid, or repeating a row
    assert stored == [opened(expected[row[0]]) for row in stored]
    assert {lead.seller_id for lead in leads(batch)} == {batch.seller_id}
    ids = [lead.id for lead in leads(batch)]
    assert ids == sorted(ids) and stored_keys() == keys_of_leads()


def test_a_contact_twice_in_a_file_is_a_duplicate_even_when_another_seller_has_it(seller):
    """The batch's own lead decides the second row's verdict, not the other seller's."""
    other = ingest(make_user(Role.SELLER), csv_bytes([person(1), person(2)]))
    assert other.accepted == 2
    batch = ingest(seller, csv_bytes([person(1), person(3), person(1),
                                      person(4, phone=person(2)["phone"]),
                                      person(5, phone=person(2)["phone"])]))
    assert rejections(batch) == {4: "duplicate_in_batch", 6: "duplicate_in_batch"}
    assert (batch.accepted, batch.cross_seller_duplicates) == (3, 2)


def test_the_workers_storing_agrees_with_the_app_on_keys_and_sqlite_settings(app):
    """storing.py imports no SQLAlchemy (it runs in the workers), so it spells out the
    contact keys' kind bits and the app's SQLite pragmas itself: both must stay the
    app's (app.models.contact_keys, app.extensions)."""
    import os
    import sqlite3
    import tempfile

    from app.models import contact_keys
    from app.services.ingest import storing

    assert storing.KIND_BITS == contact_keys.KIND_BITS
    digests = [os.urandom(16) for _ in range(50)]
    for kind in contact_keys.KIND_BITS:
        assert storing.keys(kind, digests) == [contact_keys.key(kind, d) for d in digests]

    with tempfile.TemporaryDirectory() as folder:
        engine = sa.create_engine(f"sqlite:///{folder}/app.db")
        with engine.connect() as connection:
            cursor = connection.connection.driver_connection.cursor()
            app_settings = {name: cursor.execute(f"PRAGMA {name}").fetchone()[0]
                            for name in (p.split("=")[0] for p in storing.SQLITE_PRAGMAS)}
        engine.dispose()
        own = sqlite3.connect(f"{folder}/app.db")
        for pragma in storing.SQLITE_PRAGMAS:
            own.execute(f"PRAGMA {pragma}")
        worker_settings = {name: own.execute(f"PRAGMA {name}").fetchone()[0]
                           for name in app_settings}
        own.close()
    assert worker_settings == app_settings


def test_recent_chunks_are_read_by_the_other_workers_until_their_slot_is_taken():
    from app.services.ingest.storing import RecentLeads

    mine = RecentLeads.local(2, 4)
    other = lambda: RecentLeads(mine.header, mine.data, 4)  # noqa: E731 - another process
    e1, e2, p1 = b"e" * 16, b"f" * 16, b"p" * 16
    mine.put(7, 0, [(2, e1, p1), (3, e2, None), (4, None, None)], 1, 2)
    assert other().get(7, 0) == ({e1: 2, e2: 3}, {p1: 2})
    assert other().get(8, 0) is None and other().get(7, 1) is None  # another run, turn
    mine.put(7, 1, [], 1, 2)
    mine.put(7, 2, [(9, e1, p1), (10, e2, b"q" * 16)], 1, 2)  # 4 contacts: room for them
    assert other().get(7, 0) is None  # its slot holds turn 2 now
    assert other().get(7, 2) == ({e1: 9, e2: 10}, {p1: 9, b"q" * 16: 10})
    mine.put(7, 3, [(11, e1, p1), (12, e2, b"q" * 16), (13, b"g" * 16, None)], 1, 2)
    assert other().get(7, 3) is None  # too many for a slot: the turn looks them up again
    assert mine.get(7, 3) == ({e1: 11, e2: 12, b"g" * 16: 13}, {p1: 11, b"q" * 16: 12})


def test_waiting_keys_are_found_by_another_worker_until_the_table_is_emptied():
    from app.services.ingest.storing import UnwrittenKeys

    storer = UnwrittenKeys.local(6, 4)  # to be written at 6 keys, with room for a chunk's 4 more
    reader = UnwrittenKeys(storer.header, storer.data, 6)  # another worker's view of it
    e1, e2, p1, q1 = b"e" * 16, b"f" * 16, b"p" * 16, b"q" * 16
    # The same first 8 bytes: one key and slot for both, the second probes past it.
    near = b"e" * 8 + b"g" * 8
    twin = b"e" * 7 + b"d" + b"e" * 8  # e1 but for the one bit its key leaves out
    assert not storer.add([(2, e1, p1), (3, near, None)], 1, 2, [101, 102])  # 3 keys wait
    assert reader.rows_of("email", {e1, e2, near, p1, twin}) == {e1: 2, near: 3}
    assert reader.rows_of("phone", {p1, e1}) == {p1: 2}  # a kind never answers for the other
    assert sorted(storer.take()) == sorted(
        zip(storing.keys("email", [e1, near]) + storing.keys("phone", [p1]), [101, 102, 101]))
    assert reader.rows_of("email", {e1}) == {e1: 2}  # taken, not committed yet: still waiting
    assert storer.add([(4, e2, q1), (5, twin, None)], 1, 2, range(103, 105))  # 6: to be written
    assert reader.rows_of("email", {twin, e2}) == {twin: 5, e2: 4}
    assert len(list(storer.take())) == 6
    emptied = reader.emptied
    storer.clear()  # committed
    assert reader.emptied != emptied  # a lookup under way knows to look again
    assert reader.rows_of("email", {e1, near}) == {} and list(storer.take()) == []
    assert not storer.add([(4, e1, None)], 1, 2, [103])
    assert reader.rows_of("email", {e1}) == {e1: 4}
    with pytest.raises(ValueError):  # a chunk of more keys than the table was made for
        storer.add([(5, e2, p1)] * 8, 1, 2, [104] * 8)  # 1 + 16 in 32 slots


def test_waiting_keys_come_out_in_nearly_key_order():
    """A slot is its key's top bits: SQLite gets the keys in (nearly) the order of its
    b-tree without their being sorted."""
    import os

    from app.services.ingest.storing import UnwrittenKeys

    table = UnwrittenKeys.local(2000, 0)
    leads = [(i, os.urandom(16), os.urandom(16)) for i in range(1000)]
    assert table.add(leads, 1, 2, range(1000))
    taken = list(table.take())
    assert sorted(taken) == sorted(storing.key_rows(leads, 1, 2, range(1000)))
    keys = [key for key, _ in taken]
    # Each followed by a smaller one: in a random order, half of them; here those that
    # probed past a slot whose key came after theirs (about one in seven, half full).
    out_of_order = sum(a > b for a, b in zip(keys, keys[1:]))
    assert out_of_order < len(keys) // 4


@pytest.mark.skipif(on_postgres(), reason="keys wait on SQLite")
def test_a_lookup_that_saw_the_waiting_keys_written_meanwhile_looks_again(app, seller,
                                                                          monkeypatch):
    """A chunk looks its contacts up in the database, then among the waiting keys;
    if another chunk's turn wrote those keys and emptied the table in between, they
    were in neither place when looked at: the lookup starts again and finds them."""
    rows = [person(i) for i in range(3)] + [person(0, phone="+1 415 555 7777")]
    batch, plan, [first, second] = _run_by_hand(seller, rows, 3)
    own = storing.OwnConnection("sqlite", plan.database)
    recent, unwritten = storing.RecentLeads.local(4, 100), storing.UnwrittenKeys.local(100, 100)
    vault = current_vault()
    try:
        storing.store(own, plan, *first, vault, storing.prepare(own, plan, first[2], 0, unwritten),
                      recent, unwritten)
        looked_up = storing.DedupeIndex.load

        def load_then_flush(*args, **kwargs):  # the other worker's turn, right after
            index = looked_up(*args, **kwargs)
            if unwritten.header[1]:
                storing.write_unwritten(own, unwritten)
            return index

        monkeypatch.setattr(storing.DedupeIndex, "load", load_then_flush)
        ready = storing.prepare(own, plan, second[2], 1, unwritten)
        monkeypatch.undo()
        storing.store(own, plan, *second, vault, ready, storing.RecentLeads.local(1, 100),
                      unwritten)
    finally:
        own.close()
    assert rejections(batch) == {5: "duplicate_in_batch"}
    assert stored_keys() == keys_of_leads()


def test_a_chunk_whose_earlier_chunk_left_the_ring_looks_its_contacts_up_again(app, seller):
    """The second chunk looked its contacts up before the first was stored, and the
    first is gone from the ring since (its one slot taken by a later chunk): the
    second's turn looks them up again, and finds the first's lead."""
    import dataclasses

    from app.core.bulk import SessionConnection
    from app.services.ingest import pipeline
    from app.services.ingest.reader import open_csv
    from app.services.ingest.validate import RowContext

    rows = [person(i) for i in range(4)] + [person(0, phone="+1 415 555 7777"), person(5)]
    batch = ingest(seller, csv_bytes([]))  # a batch to store into, by hand below
    run = pipeline.BatchRun(batch.id, batch.seller_id, batch.floor_price, batch.cap, 0)
    plan = dataclasses.replace(pipeline.storing_plan(run), run=1)
    db.session.execute(sa.text(f"UPDATE batches SET status = 'processing' WHERE id = {batch.id}"))
    db.session.commit()
    with open_csv(io.BytesIO(csv_bytes(rows)), mapping={}) as source:
        blocks, fields = list(source.blocks(4)), source.header_map.fields
    vault, ctx = current_vault(), RowContext("US", batch.created_at)
    results = [workers._validated(block, fields, ctx, vault, workers.STORAGE_OF[plan.dialect])
               for block in blocks]
    chunks = [storing.Chunk(0, 0, blocks[0].last, blocks[0].rows, 0),
              storing.Chunk(1, blocks[0].last, blocks[1].last, blocks[1].rows, 0)]
    connection, recent = SessionConnection(), storing.RecentLeads.local(1, 100)
    unwritten = storing.UnwrittenKeys.local(100, 100) if plan.defer_keys else None

    def prepared(result):
        return storing.prepare(connection, plan, result, 0, unwritten)

    early = prepared(results[1])  # before the first chunk is stored
    storing.store(connection, plan, chunks[0], blocks[0], results[0], vault,
                  prepared(results[0]), recent, unwritten)
    recent.put(plan.run, 2, [], *plan.hashes)  # a later chunk in the ring's one slot
    elsewhere = storing.RecentLeads(recent.header, recent.data, 100)  # another worker's
    storing.store(connection, plan, chunks[1], blocks[1], results[1], vault, early,
                  elsewhere, unwritten)
    assert rejections(batch) == {6: "duplicate_in_batch"}
    assert [lead.row_number for lead in leads(batch)] == [2, 3, 4, 5, 7]


def _run_by_hand(seller, rows: list[dict], chunk_rows: int):
    """A batch in processing, its plan, and its file's chunks validated as a worker
    validates them: (plan, [(chunk, block, result), ...])."""
    import dataclasses

    from app.services.ingest import pipeline
    from app.services.ingest.reader import open_csv
    from app.services.ingest.validate import RowContext

    batch = ingest(seller, csv_bytes([]))  # a batch to store into, by hand
    run = pipeline.BatchRun(batch.id, batch.seller_id, batch.floor_price, batch.cap, 0)
    plan = dataclasses.replace(pipeline.storing_plan(run), run=1)
    db.session.execute(sa.text(f"UPDATE batches SET status = 'processing' WHERE id = {batch.id}"))
    db.session.commit()
    with open_csv(io.BytesIO(csv_bytes(rows)), mapping={}) as source:
        blocks, fields = list(source.blocks(chunk_rows)), source.header_map.fields
    ctx, previous, chunks = RowContext("US", batch.created_at), 0, []
    for turn, block in enumerate(blocks):
        result = workers._validated(block, fields, ctx, current_vault(),
                                    workers.STORAGE_OF[plan.dialect])
        chunks.append((storing.Chunk(turn, previous, block.last, block.rows, 0), block, result))
        previous = block.last
    db.session.commit()  # nothing held: the chunks are stored on connections of their own
    return batch, plan, chunks


def _staged(connection) -> int:
    return connection.driver.execute(
        f"SELECT count(*) FROM temp.{storing.STAGED_LEADS}").fetchone()[0]


@pytest.mark.skipif(on_postgres(), reason="SQLite's one writer")
def test_a_worker_stages_its_leads_while_another_connection_holds_the_write_lock(app, seller):
    """The staging writes the connection's temporary database alone: it neither takes
    nor waits for the shared database's write lock."""
    import sqlite3

    _, plan, [(_, _, result)] = _run_by_hand(seller, [person(i) for i in range(5)], 10)
    own = storing.OwnConnection("sqlite", plan.database)
    own.driver.execute("PRAGMA busy_timeout=0")  # waiting would fail at once
    holder = sqlite3.connect(plan.database, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        storing._stage(own.driver, plan, result.accepted, [])
        assert _staged(own) == 5
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            own.begin()  # the shared database's lock is the holder's
        holder.execute("ROLLBACK")
    finally:
        holder.close()
        own.close()


@pytest.mark.skipif(on_postgres(), reason="staging is SQLite's")
def test_a_chunk_that_fails_leaves_no_staged_leads_behind(app, seller):
    """A worker's connection serves chunk after chunk: a chunk refused in its turn (its
    claim lost, or a row refused by the database) or before it (a value staging cannot
    bind) leaves nothing in leads nor among the staged rows, and the chunks stored on
    the connection after it get their own rows, with the next ids."""
    import dataclasses
    import sqlite3

    rows = [person(i) for i in range(9)]
    batch, plan, chunks = _run_by_hand(seller, rows, 4)
    own = storing.OwnConnection("sqlite", plan.database)
    recent = storing.RecentLeads.local(4, 100)
    unwritten = storing.UnwrittenKeys.local(100, 100) if plan.defer_keys else None
    vault = current_vault()

    def store(chunk, block, result):
        ready = storing.prepare(own, plan, result, chunk.turn, unwritten)
        storing.store(own, plan, chunk, block, result, vault, ready, recent, unwritten)

    try:
        first, second, third = chunks
        with pytest.raises(storing.BatchTaken):  # resumed from a checkpoint passed since
            store(dataclasses.replace(first[0], previous=1), *first[1:])
        assert _staged(own) == 0
        accepted = first[2].accepted  # its third lead holds a value no database takes
        poisoned = accepted[:2] + [accepted[2][:5] + (object(),) + accepted[2][6:]] + accepted[3:]
        with pytest.raises(sqlite3.ProgrammingError):  # staging fails after two leads
            store(first[0], first[1], dataclasses.replace(first[2], accepted=poisoned))
        assert _staged(own) == 0
        db.session.execute(sa.text("CREATE TRIGGER test_refused BEFORE INSERT ON leads WHEN "
                                   "NEW.row_number = 4 BEGIN SELECT RAISE(ABORT, 'refused'); END"))
        db.session.commit()
        with pytest.raises(Exception, match="refused"):
            store(*first)
        assert _staged(own) == 0
        db.session.execute(sa.text("DROP TRIGGER test_refused"))
        db.session.commit()
        for chunk in chunks:
            store(*chunk)
            assert _staged(own) == 0
        if unwritten is not None:
            storing.write_unwritten(own, unwritten)
    finally:
        own.close()
    db.session.expire_all()
    stored = leads(batch)
    assert [lead.row_number for lead in stored] == list(range(2, len(rows) + 2))
    assert [lead.id for lead in stored] == list(range(stored[0].id, stored[0].id + len(rows)))
    assert db.session.get(Batch, batch.id).accepted == len(rows)
    assert stored_keys() == keys_of_leads()
