"""Storing an upload's validated chunks (SPEC §3): each chunk's duplicate and
suppression checks, its claim on the batch, its leads, rejections and contact keys,
in one transaction of its own, in file order.

Jobs: every chunk commits its own transaction. A chunk is stored by the ingest worker
that validated it, on the worker's own database connection, once the chunk before it
has committed (workers.py passes the turn), so a later chunk's duplicate check sees
every earlier lead of the file, and the other worker validates meanwhile. The turns
are the one serial step of an upload, so what needs no turn is done before it
(`prepare`): the chunk's contacts are looked up among the leads and suppressions
stored when it is ready; in its turn it looks only among the leads of this run's
chunks that had not committed by then (`RecentLeads`, in memory). The turn ends once
the chunk has decided its rows, so the next chunk decides while this one writes;
each commits after the chunk before it (`Turns`). On PostgreSQL the writes of two
chunks overlap; SQLite has one writer, so a chunk writes once the one before has
committed, and a worker binds its chunk's leads into a temporary table of its own
connection before that (it takes no lock), then copies them into leads in its turn
with one INSERT ... SELECT, at half the cost of inserting them there. So a lead
another upload stores while this chunk waits for its turn is that upload's to flag,
as it is when that upload stores it a moment later. With one worker (or none: tests,
Celery's daemonic children) the calling process runs the same code on its session's
connection. Talks to the database driver itself (sqlite3 or
psycopg) and imports no Flask or SQLAlchemy: the pipeline builds the statements that
need the schema (`Plan`).
"""
import json
import sqlite3
import struct
from array import array
from dataclasses import dataclass
from itertools import compress, repeat
from operator import is_not, itemgetter
from datetime import datetime, timezone
from typing import Optional, Protocol

from app.core import pgcopy
from app.services.crypto import HASH_BYTES, ContactVault
from app.services.ingest import copy_ready
from app.services.ingest.reader import Block
from app.services.ingest.validate import verdict_message

# What app/extensions.py sets on every SQLite connection of the app.
SQLITE_PRAGMAS = ("foreign_keys=ON", "busy_timeout=30000", "journal_mode=WAL",
                  "synchronous=NORMAL", "cache_size=-8192")
# A worker's commits run the WAL's checkpoints less often than the app's (every 1,000
# pages): each chunk's transaction rewrites pages the next one rewrites again, and a
# checkpoint copies each page once however often it was written since the last. A
# checkpoint also waits for the database file to reach the disk, in the chunk's turn,
# and the other worker waits for that turn: every 65,536 pages (a WAL of up to 256 MB)
# an upload of a million rows checkpoints six times, a quarter as often as every
# 16,384 (measured: 2-3% of its time).
# Its temporary database (STAGED_LEADS) keeps no rollback journal: emptying the staged
# leads journaled every page of them first (2.5 ms a chunk of 5,000). Nothing there is
# ever rolled back (ROLLBACK is undefined without a journal): the table is emptied
# whole after every chunk, whatever became of it.
WORKER_PRAGMAS = ("wal_autocheckpoint=65536", "temp.journal_mode=OFF")
CODES_SEPARATOR = ";"  # between a rejected row's reasons (Rejection.codes)
KIND_BITS = {"email": 0, "phone": 1}  # models.contact_keys
# A hash's first 8 bytes as a big-endian signed integer, the rest skipped.
_PREFIXES = struct.Struct(f">q{HASH_BYTES - 8}x")
_KEY_ROW = struct.Struct(">hiqiq")  # a contact_keys row in binary COPY: two int8 fields
IN_LIST_SIZE = 4096  # values per IN (...) on SQLite
# sqlite3 binds an int, float or str as it is, but looks any other value up among its
# adapters and, finding none, asks the protocol and the value for __adapt__ and
# __conform__: 0.2-0.3 µs for each None, bytes or bool, of which a lead has about 16
# (a third of the cost of staging it). An adapter that returns what sqlite3 binds for
# the value anyway makes that lookup a hit. Registered for the whole process.
_SQLITE_ADAPTERS = ((type(None), {}.get), (bytes, bytes), (bool, int))  # {}.get(None) is None


def keys(kind: str, hashes: list[bytes]) -> list[int]:
    """models.contact_keys.key of each hash, for many at once."""
    bit = KIND_BITS[kind]
    return [(prefix & ~1) | bit for prefix, in _PREFIXES.iter_unpack(b"".join(hashes))]


class BatchTaken(Exception):
    """Another run stored this chunk's rows first (its claim won)."""


class RunCancelled(Exception):
    """The run this chunk belongs to stopped (an earlier chunk failed)."""


class Connection(Protocol):
    """A database connection storing runs on: its driver's connection, and how a
    transaction starts and ends on it."""

    dialect: str
    driver: object

    def begin(self) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...


class OwnConnection:
    """A worker's own connection: autocommit at the driver, transactions opened here
    (on SQLite with the write lock taken up front, as the app's jobs take it)."""

    def __init__(self, dialect: str, database: str):
        self.dialect, self.database = dialect, database
        if dialect == "sqlite":
            for kind, adapter in _SQLITE_ADAPTERS:
                sqlite3.register_adapter(kind, adapter)
            self.driver = sqlite3.connect(database, isolation_level=None,
                                          check_same_thread=False)
            for pragma in SQLITE_PRAGMAS + WORKER_PRAGMAS:
                self.driver.execute(f"PRAGMA {pragma}")
            self._begin = "BEGIN IMMEDIATE"
        elif dialect == "postgresql":
            import psycopg

            self.driver = psycopg.connect(database, autocommit=True, client_encoding="utf8")
            self._begin = "BEGIN"
        else:
            raise ValueError(f"No storing on {dialect}")

    def begin(self) -> None:
        self.driver.execute(self._begin)

    def commit(self) -> None:
        self.driver.execute("COMMIT")

    def rollback(self) -> None:
        self.driver.execute("ROLLBACK")

    def usable(self) -> bool:
        if self.dialect == "postgresql":
            return not self.driver.closed
        return True

    def close(self) -> None:
        self.driver.close()


@dataclass(frozen=True)
class Plan:
    """How one run stores its chunks: the batch, and the statements the pipeline built
    from the schema. Picklable: sent along with every chunk to the workers."""

    dialect: str  # sqlite or postgresql
    database: Optional[str]  # for a worker's own connection: the file or the conninfo
    run: int  # the run's number in its worker pool: its turns
    batch_id: int
    seller_id: int
    check_suppression: bool
    leads_sql: str  # SQLite: INSERT of the accepted row, its flag and id; PG: binary COPY
    # Likewise, of (row_number, code, codes, message_enc, raw_enc, batch_id).
    rejections_sql: str
    lead_fields: int = 0  # PostgreSQL: fields of a lead's COPY row
    lead_tail: bytes = b""  # PostgreSQL: the batch's own fields, after every lead's
    rejection_kinds: tuple[str, ...] = ()  # PostgreSQL: each field's binary kind
    lead_sequence: str = ""  # PostgreSQL: the sequence of leads.id
    hashes: tuple[int, int] = (0, 0)  # where an accepted row holds its email and phone hash
    defer_keys: bool = False  # contact keys wait in UnwrittenKeys (SQLite)
    # SQLite, on a worker's own connection: the columns of the leads staged in
    # STAGED_LEADS (the accepted row's; STAGED_CROSS follows), and the INSERT that
    # copies them into leads, each with the id rowid + the one value it binds.
    staged_columns: tuple[str, ...] = ()
    copy_staged_sql: str = ""


@dataclass(frozen=True)
class Chunk:
    """A block's place in its run: its turn (0, 1, ...) and the batch's progress
    before it (the claim) and after it."""

    turn: int
    previous: int  # rows_processed before this chunk
    last: int  # the chunk's last row number
    rows: int
    bytes_read: int


def _sql(dialect: str, statement: str) -> str:
    """A statement written with ? placeholders, in the driver's own style."""
    return statement if dialect == "sqlite" else statement.replace("?", "%s")


def _matching(connection: Connection, select: str, column: str, values: set) -> list[tuple]:
    """Rows of `select` (which ends in a WHERE clause) whose `column` is one of `values`."""
    if not values:
        return []
    driver = connection.driver
    if connection.dialect == "postgresql":
        # %b: the array goes in binary; as text, psycopg escapes every bytea element
        # through a regex (7.9 ms of CPU per 4,000 hashes instead of 1.4 ms). Planned
        # for each call, never prepared: contact_keys grows fast during an upload.
        return driver.execute(f"{select} {column} = ANY(%b)", (list(values),),
                              prepare=False).fetchall()
    values, rows = list(values), []
    for start in range(0, len(values), IN_LIST_SIZE):
        part = values[start:start + IN_LIST_SIZE]
        # A few statement shapes only (NULL matches nothing): the driver keeps the
        # statements it prepared, and one per list length made memory grow with the file.
        size = 64
        while size < len(part):
            size *= 2
        part += [None] * (size - len(part))
        rows += driver.execute(f"{select} {column} IN ({', '.join('?' * size)})", part).fetchall()
    return rows


_HOLDER_COLUMNS = "l.email_hash, l.phone_hash, l.batch_id, l.seller_id, l.row_number"
# PostgreSQL: each key looked up on its own and each lead by its id (fenced LATERAL
# subqueries), so that no estimate turns the lookup into a scan of either table. With
# `key = ANY(...)` and no statistics on contact_keys (it grows from nothing during a
# first upload) both tables were read whole for every chunk: 100 s for the 1M-row
# bench. ensure_statistics makes the estimates right as well.
_HOLDERS_BY_KEY = (
    f"SELECT {_HOLDER_COLUMNS} FROM unnest(%b::bigint[]) AS q(key) "
    "CROSS JOIN LATERAL (SELECT k.lead_id FROM contact_keys k WHERE k.key = q.key "
    "OFFSET 0) AS k CROSS JOIN LATERAL (SELECT * FROM leads WHERE id = k.lead_id "
    "OFFSET 0) AS l")


def holders_by_key(connection: Connection, wanted: set[int]) -> list[tuple]:
    """(email_hash, phone_hash, batch_id, seller_id, row_number) of the leads behind
    these contact keys."""
    if not wanted:
        return []
    if connection.dialect == "postgresql":
        # In key order, each key's index descent finds the pages the one before read:
        # a quarter less of the server's CPU.
        return connection.driver.execute(_HOLDERS_BY_KEY, (sorted(wanted),),
                                         prepare=False).fetchall()
    return _matching(connection, f"SELECT {_HOLDER_COLUMNS} FROM contact_keys k "
                                 "JOIN leads l ON l.id = k.lead_id WHERE", "k.key", wanted)


def _suppressed(connection: Connection, kind: str, hashes: set[bytes]) -> set[bytes]:
    if kind not in KIND_BITS:
        raise ValueError(kind)
    return {bytes(value) for value, in _matching(
        connection, f"SELECT value_hash FROM suppression_entries WHERE kind = '{kind}' AND",
        "value_hash", hashes)}


class DedupeIndex:
    """What rows' contacts collide with: stored leads and the suppression list. A
    holder is (batch_id, seller_id, row_number) of a lead with the same contact."""

    def __init__(self, batch_id: int, seller_id: int, by_email: dict, by_phone: dict,
                 suppressed_emails: set, suppressed_phones: set):
        self.batch_id, self.seller_id = batch_id, seller_id
        self.by_email, self.by_phone = by_email, by_phone
        self.suppressed_emails, self.suppressed_phones = suppressed_emails, suppressed_phones

    @classmethod
    def load(cls, connection: Connection, batch_id: int, seller_id: int,
             emails: set[bytes], phones: set[bytes], check_suppression: bool = True
             ) -> "DedupeIndex":
        """Found by key, then their full hashes compared (two hashes may share a key)."""
        found = holders_by_key(connection, set(keys("email", list(emails))
                                               + keys("phone", list(phones))))
        by_email: dict[bytes, tuple] = {}
        by_phone: dict[bytes, tuple] = {}
        for email, phone, holder_batch, holder_seller, row_number in found:
            holder = (holder_batch, holder_seller, row_number)
            for value, wanted, by_hash in ((email, emails, by_email), (phone, phones, by_phone)):
                if value is None or (value := bytes(value)) not in wanted:
                    continue
                # The seller's own copy decides the verdict, so it wins over other sellers'.
                if value not in by_hash or holder_seller == seller_id:
                    by_hash[value] = holder
        return cls(batch_id, seller_id, by_email, by_phone,
                   _suppressed(connection, "email", emails) if check_suppression else set(),
                   _suppressed(connection, "phone", phones) if check_suppression else set())

    def add_own(self, emails: set[bytes], phones: set[bytes], by_email: dict, by_phone: dict
                ) -> None:
        """This batch's leads the database did not show (hash -> row number) among
        `emails` and `phones`: they decide the verdict."""
        for wanted, by_hash, rows in ((emails, self.by_email, by_email),
                                      (phones, self.by_phone, by_phone)):
            for value in wanted & rows.keys():
                by_hash[value] = (self.batch_id, self.seller_id, rows[value])

    def verdict(self, email_hash, phone_hash) -> tuple[Optional[str], Optional[str], bool]:
        """(rejection code, its message, is a cross-seller duplicate)."""
        if email_hash in self.suppressed_emails or phone_hash in self.suppressed_phones:
            return "suppressed", verdict_message("suppressed"), False
        holders = [h for h in (self.by_email.get(email_hash), self.by_phone.get(phone_hash)) if h]
        for batch_id, _, row_number in holders:
            if batch_id == self.batch_id:
                return ("duplicate_in_batch",
                        verdict_message("duplicate_in_batch", first_row=row_number), False)
        if (own := self._own_message(holders)) is not None:
            return "duplicate_own", own, False
        return None, None, bool(holders)

    def own_message(self, email_hash, phone_hash) -> Optional[str]:
        """duplicate_own's sentence for a contact this seller holds, in this batch too
        (a real-time lead repeating the day's earlier one), or None."""
        return self._own_message(
            [h for h in (self.by_email.get(email_hash), self.by_phone.get(phone_hash)) if h],
            other_batches=False)

    def _own_message(self, holders: list[tuple], other_batches: bool = True) -> Optional[str]:
        """duplicate_own's sentence naming the first of `holders` that is this seller's
        (in another batch than this one, unless not `other_batches`), or None."""
        for batch_id, seller_id, row_number in holders:
            if seller_id == self.seller_id and not (other_batches and batch_id == self.batch_id):
                return verdict_message("duplicate_own", row=row_number, batch=batch_id)
        return None

    def reasons_of_rejected(self, email_hash, phone_hash, row_number: int
                            ) -> list[tuple[str, str]]:
        """A rejected row's suppression or duplicate reason, if it has one: only rows
        before it count, as a rejected row is no lead for later rows to repeat."""
        if email_hash in self.suppressed_emails or phone_hash in self.suppressed_phones:
            return [("suppressed", verdict_message("suppressed"))]
        holders = [h for h in (self.by_email.get(email_hash), self.by_phone.get(phone_hash)) if h]
        for batch_id, _, first_row in holders:
            if batch_id == self.batch_id and first_row < row_number:
                return [("duplicate_in_batch",
                         verdict_message("duplicate_in_batch", first_row=first_row))]
        own = self._own_message(holders)
        return [] if own is None else [("duplicate_own", own)]

    def remember(self, email_hash, phone_hash, row_number: int) -> None:
        """A lead accepted with these contacts: it decides the verdict of later rows
        that repeat them, over any other seller's lead that holds them too (the only
        holders an accepted lead can have)."""
        holder = (self.batch_id, self.seller_id, row_number)
        if email_hash:
            self.by_email[email_hash] = holder
        if phone_hash:
            self.by_phone[phone_hash] = holder


class UnwrittenKeys:
    """SQLite: the contacts of a run's stored leads whose contact keys are not written
    yet. Keys land at random in contact_keys and SQLite rewrites every page a
    transaction touched, so writing them rewrites most of the table however few they
    are (15 µs a row at 2,000 rows a chunk); they are written in bulk, in nearly key
    order, by the chunk that brings this table to its capacity, and until then later
    chunks find those leads here.

    An open-addressing hash table in memory the run's workers share (`header`: how
    often it was emptied and how many entries it holds; `data`: the slots), so that
    how many keys may wait costs each worker nothing of its own. A slot is four
    integers: the contact's key, the rest of its hash, its info (the lead's row number,
    the bit of the hash the key leaves out, and that the slot is taken) and the lead's
    id. A key's slot is its top bits, so the slots hold the keys in nearly their order
    (`take` reads them out without sorting). One chunk writes at a time (in its turn);
    the others look up meanwhile: a slot's info is written last, so a reader sees whole
    entries only. The table is emptied once its keys have committed; a lookup that saw
    it emptied meanwhile (`emptied`) looks in the database again. A run that stops
    leaves keys unwritten: a resumed run writes its batch's again (pipeline), and a
    failed run's leads go without them."""

    def __init__(self, header, data, capacity: int):
        self.header, self.data, self.capacity = header, memoryview(data).cast("B"), capacity
        self._slots = self.data.cast("q")
        count = len(self._slots) // 4
        # A slot is known by where its four numbers start (4 * its number), and a key's
        # is its top bits (the hash's: the key differs in its lowest bit only), counted
        # from the middle as they are signed.
        self._mask, self._room = (count - 1) << 2, count // 2
        self._shift, self._middle = 65 - count.bit_length(), count * 2

    @staticmethod
    def data_bytes(entries: int) -> int:
        """The size of `data` for a table that holds up to `entries` entries (its
        capacity and the keys of the chunk that reaches it): at most half full, so that
        probes stay short."""
        slots = 1
        while slots < 2 * entries:
            slots *= 2
        return slots * _SLOT_BYTES

    @classmethod
    def local(cls, capacity: int, chunk_keys: int) -> "UnwrittenKeys":
        """A table of this process alone."""
        return cls(array("q", [0, 0]), bytearray(cls.data_bytes(capacity + chunk_keys)),
                   capacity)

    @property
    def emptied(self) -> int:
        return self.header[0]

    def clear(self) -> None:
        self.header[0] += 1  # first: a reader probing now will not trust what it found
        # Zeroed a piece at a time: zeros for the whole table at once would be another
        # table's worth of memory, however briefly.
        zeros = bytes(min(len(self.data), 1 << 16))  # both powers of two
        for at in range(0, len(self.data), len(zeros)):
            self.data[at:at + len(zeros)] = zeros
        self.header[1] = 0

    def rows_of(self, kind: str, hashes: set[bytes]) -> dict[bytes, int]:
        """The row number of each of these contacts that waits here."""
        found: dict[bytes, int] = {}
        if not self.header[1] or not hashes:
            return found
        bit, mask, shift, middle, slots = (KIND_BITS[kind], self._mask, self._shift,
                                           self._middle, self._slots)
        hashes = list(hashes)
        for digest, (high, low) in zip(hashes, _HALVES.iter_unpack(b"".join(hashes))):
            key = high & ~1 | bit
            at = (high >> shift << 2) + middle
            while info := slots[at + 2]:
                if slots[at] == key and slots[at + 1] == low and info >> 1 & 1 == high & 1:
                    found[digest] = info >> 2
                    break
                at = (at + 4) & mask
        return found

    def add(self, leads: list[tuple], e_at: int, p_at: int, ids) -> bool:
        """Add these leads' contacts (`ids`: the leads' ids), and say whether the table
        holds as many as its capacity now: then they are to be written."""
        numbers = list(map(itemgetter(0), leads))
        columns = {KIND_BITS["email"]: list(map(itemgetter(e_at), leads)),
                   KIND_BITS["phone"]: list(map(itemgetter(p_at), leads))}
        count = self.header[1] + len(leads) * 2 - sum(c.count(None) for c in columns.values())
        if count > self._room:
            raise ValueError(f"{count} keys in a table for {self._room}")
        mask, shift, middle, slots = self._mask, self._shift, self._middle, self._slots
        for bit, column in columns.items():
            digests = b"".join(compress(column, column))
            for (high, low), number, lead_id in zip(_HALVES.iter_unpack(digests),
                                                    compress(numbers, column),
                                                    compress(ids, column)):
                key = high & ~1 | bit
                at = (high >> shift << 2) + middle
                while slots[at + 2]:
                    at = (at + 4) & mask
                slots[at], slots[at + 1], slots[at + 3] = key, low, lead_id
                slots[at + 2] = number << 2 | (high & 1) << 1 | _TAKEN
        self.header[1] = count
        return count >= self.capacity

    def take(self):
        """Every entry's (key, lead id), in nearly key order (a few entries sit a slot
        or so past their place, or wrapped round to the first slots): SQLite inserts
        them on each page in one go all the same. Read as they are inserted, not held
        in a list: the table holds the keys of tens of thousands of leads. The table
        is emptied (`clear`) once they have committed."""
        slots = self._slots
        return zip(compress(slots[0::4], slots[2::4]), compress(slots[3::4], slots[2::4]))


_HALVES = struct.Struct(">qq")  # a hash as two numbers: the first is its key but a bit
if HASH_BYTES != _HALVES.size:
    raise ImportError(f"UnwrittenKeys keeps hashes of {_HALVES.size} bytes, not {HASH_BYTES}")
_TAKEN = 1  # the lowest bit of a slot's info: the slot holds an entry
_SLOT_BYTES = 32  # key, rest of the hash, info, lead id


def write_unwritten(connection: Connection, unwritten: UnwrittenKeys) -> None:
    """At a run's end: the keys still waiting, in a transaction of their own."""
    connection.begin()
    try:
        write_waiting_keys(connection, unwritten)
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    unwritten.clear()


def write_waiting_keys(connection: Connection, unwritten: UnwrittenKeys) -> None:
    """SQLite: the waiting keys."""
    connection.driver.executemany(_INSERT_KEYS, unwritten.take())


_INSERT_KEYS = "INSERT OR IGNORE INTO contact_keys (key, lead_id) VALUES (?, ?)"


def write_keys(connection: Connection, rows: list[tuple[int, int]]) -> None:
    """Write (key, lead_id) rows into contact_keys, in key order: each touched page is
    written once. A row there already stays (a resumed run wrote its batch's keys again)."""
    if not rows:
        return
    rows.sort()
    if connection.dialect == "postgresql":
        # Packed here in one go: psycopg's write_row cost ~4 µs a row, two rows per lead.
        pack = _KEY_ROW.pack
        copy(connection, "COPY contact_keys (key, lead_id) FROM STDIN (FORMAT BINARY)",
             b"".join([pgcopy.SIGNATURE, *[pack(2, 8, k, 8, i) for k, i in rows],
                       pgcopy.TRAILER]))
    else:
        connection.driver.executemany(_INSERT_KEYS, rows)


def copy(connection: Connection, statement: str, data: bytes) -> None:
    """PostgreSQL: a whole binary COPY stream (app.core.pgcopy)."""
    driver = connection.driver
    if driver.info.encoding != "utf-8":  # text fields are packed as UTF-8
        raise RuntimeError(f"binary COPY needs a UTF-8 connection, not {driver.info.encoding}")
    with driver.cursor().copy(statement) as stream:
        stream.write(data)


_HAVE_STATISTICS = ("SELECT 1 FROM pg_stats WHERE tablename = 'contact_keys' "
                    "AND attname = 'key' AND schemaname = current_schema()")


def ensure_statistics(connection: Connection) -> bool:
    """PostgreSQL: give contact_keys statistics if it has none yet (ANALYZE), and say
    whether it has them. Without any, the planner takes every `key = ...` to match
    thousands of rows and plans scans and JIT compilation for a lookup of a few keys; a
    table that grows from nothing within one upload gets none from autovacuum in time.
    Once it has them, they scale with the table (its keys are nearly all distinct). A
    user who may not ANALYZE the table gets a warning from PostgreSQL, not an error."""
    if connection.dialect != "postgresql":
        return True
    driver = connection.driver
    if driver.execute(_HAVE_STATISTICS).fetchone():
        return True
    driver.execute("ANALYZE contact_keys")
    return driver.execute(_HAVE_STATISTICS).fetchone() is not None


_CLAIM = (
    "UPDATE batches SET rows_processed = ?, bytes_processed = ?, heartbeat_at = ?, "
    "rows_total = rows_total + ?, accepted = accepted + ?, rejected = rejected + ?, "
    "cross_seller_duplicates = cross_seller_duplicates + ? "
    "WHERE id = ? AND rows_processed = ? AND status = 'processing'")


def _now(dialect: str):
    now = datetime.now(timezone.utc)
    # SQLite: the text SQLAlchemy's UTCDateTime stores (models.types).
    return now.strftime("%Y-%m-%d %H:%M:%S.%f") if dialect == "sqlite" else now


def _lead_ids(connection: Connection, plan: Plan, count: int) -> range | list[int]:
    """`count` fresh lead ids: SQLite's in this transaction, PostgreSQL's from its
    sequence (taken for good, in a transaction or not)."""
    if count == 0:
        return []
    if connection.dialect == "postgresql":
        # The sequence named by a parameter: PostgreSQL resolves it once, where a lookup
        # inside the statement ran for every id (eight times slower).
        text = connection.driver.execute(
            "SELECT string_agg(nextval(%s::regclass)::text, ',') FROM generate_series(1, %s)",
            (plan.lead_sequence, count)).fetchone()[0]
        return list(map(int, text.split(",")))
    # SQLite: this transaction holds the write lock, so nobody takes these ids meanwhile.
    top, = connection.driver.execute("SELECT coalesce(max(id), 0) FROM leads").fetchone()
    return range(top + 1, top + 1 + count)


class RecentLeads:
    """The contacts of the leads of a run's last chunks, by turn: a chunk looks up
    the stored leads before its turn (`prepare`), and in its turn here those of the
    chunks that had not committed by then. Shared by the run's workers: a ring of
    chunks, each slot's (run, turn, email count, phone count) in `header`, its
    contacts' hashes and row numbers in `data`. Each process keeps the slots it read
    as dicts."""

    _HEADER = 4

    def __init__(self, header, data, capacity: int):
        self.header, self.data = header, memoryview(data).cast("B")
        self.slots, self.capacity = len(header) // self._HEADER, capacity
        self._read: dict[tuple[int, int], tuple[dict, dict]] = {}  # (run, turn) -> dicts

    @classmethod
    def sizes(cls, slots: int, capacity: int) -> tuple[int, int]:
        """The lengths of `header` (int64s) and `data` (bytes) of `slots` chunks of at
        most `capacity` contacts."""
        return slots * cls._HEADER, slots * capacity * (HASH_BYTES + 4)

    @classmethod
    def local(cls, slots: int, capacity: int) -> "RecentLeads":
        """A ring of this process alone."""
        header, data = cls.sizes(slots, capacity)
        return cls([0] * header, bytearray(data), capacity)

    def _area(self, turn: int, contacts: int) -> tuple[memoryview, memoryview]:
        """Where a slot's hashes and row numbers are."""
        at = (turn % self.slots) * self.capacity * (HASH_BYTES + 4)
        rows = at + self.capacity * HASH_BYTES
        return self.data[at:at + contacts * HASH_BYTES], self.data[rows:rows + contacts * 4]

    def put(self, run: int, turn: int, leads: list[tuple], e_at: int, p_at: int) -> None:
        """A chunk's leads (row number first), in its turn."""
        by_email = {lead[e_at]: lead[0] for lead in leads if lead[e_at]}
        by_phone = {lead[p_at]: lead[0] for lead in leads if lead[p_at]}
        # The chunks a later chunk may still need are those after the last committed:
        # kept are this chunk's and the two before it (others are read again if needed).
        self._read = {key: read for key, read in self._read.items()
                      if key[0] == run and key[1] >= turn - 2}
        self._read[(run, turn)] = (by_email, by_phone)
        at = (turn % self.slots) * self._HEADER
        self.header[at + 1] = -1  # unreadable while it is written
        contacts = len(by_email) + len(by_phone)
        if contacts > self.capacity:
            return
        hashes, rows = self._area(turn, contacts)
        hashes[:] = b"".join([*by_email, *by_phone])
        rows[:] = array("i", [*by_email.values(), *by_phone.values()]).tobytes()
        self.header[at], self.header[at + 2], self.header[at + 3] = run, len(by_email), len(
            by_phone)
        self.header[at + 1] = turn

    def get(self, run: int, turn: int) -> Optional[tuple[dict, dict]]:
        """(email hash -> row number, phone hash -> row number) of a chunk stored in
        its turn, or None if its slot holds another chunk now (or it had too many)."""
        read = self._read.get((run, turn))
        if read is not None:
            return read
        at = (turn % self.slots) * self._HEADER
        if self.header[at + 1] != turn or self.header[at] != run:
            return None
        emails, phones = self.header[at + 2], self.header[at + 3]
        data, numbers = self._area(turn, emails + phones)
        data, numbers = bytes(data), array("i", numbers.tobytes())
        hashes = [data[i:i + HASH_BYTES] for i in range(0, len(data), HASH_BYTES)]
        read = self._read[(run, turn)] = (dict(zip(hashes[:emails], numbers[:emails])),
                                          dict(zip(hashes[emails:], numbers[emails:])))
        return read


class Turns(Protocol):
    """A chunk's place among the chunks stored at once (workers.py): the next chunk
    decides its rows once this one has (`decided`), and each commits in file order
    (`commit` waits for the chunk before to have committed; `committed` lets the next
    one go)."""

    def decided(self) -> None: ...
    def commit(self) -> None: ...
    def committed(self) -> None: ...


class OneAtATime:
    """Turns of chunks stored one after the other."""

    def decided(self) -> None:
        pass

    def commit(self) -> None:
        pass

    def committed(self) -> None:
        pass


@dataclass
class Prepared:
    """What a chunk's storing found before its turn."""

    emails: set[bytes]
    phones: set[bytes]
    index: DedupeIndex
    since: int  # the first turn whose leads the index may lack


def prepare(connection: Connection, plan: Plan, result, since: int,
            unwritten: Optional[UnwrittenKeys] = None) -> Prepared:
    """Before a chunk's turn: its contacts looked up among the leads and
    suppressions stored (a worker's own connection reads outside any transaction),
    and among the run's leads whose keys wait (`unwritten`); `since`: the first of the
    run's chunks that had not committed when the lookup began."""
    e_at, p_at = plan.hashes
    emails = {row[e_at] for row in result.accepted if row[e_at]} | {
        c[1] for c in result.rejected_contacts if c[1]}
    phones = {row[p_at] for row in result.accepted if row[p_at]} | {
        c[2] for c in result.rejected_contacts if c[2]}
    return Prepared(emails, phones, _looked_up(connection, plan, emails, phones, unwritten),
                    since)


def _looked_up(connection: Connection, plan: Plan, emails: set[bytes], phones: set[bytes],
               unwritten: Optional[UnwrittenKeys]) -> DedupeIndex:
    """The contacts among the stored leads and suppressions, and among the run's
    leads whose keys wait. Keys written and their table emptied while this looked (a
    chunk's turn meanwhile) may have been in neither: then it looks again."""
    while True:
        emptied = unwritten.emptied if unwritten is not None else None
        index = DedupeIndex.load(_reading(connection), plan.batch_id, plan.seller_id, emails,
                                 phones, plan.check_suppression)
        if unwritten is None:
            return index
        by_email, by_phone = unwritten.rows_of("email", emails), unwritten.rows_of("phone", phones)
        if unwritten.emptied == emptied:
            index.add_own(emails, phones, by_email, by_phone)
            return index


def store(connection: Connection, plan: Plan, chunk: Chunk, block: Block, result,
          vault: ContactVault, ready: Prepared, recent: RecentLeads,
          unwritten: Optional[UnwrittenKeys] = None, turns: Turns = OneAtATime()) -> None:
    """In the chunk's turn: decide its rows (`result`: workers.ChunkResult, in the
    plan's storage form; `ready`: what `prepare` found), then store them and the
    batch's progress, and commit. Raises BatchTaken if another run stored these rows
    first. `recent`: the run's chunks' contacts; `unwritten`: where the run's contact
    keys wait (SQLite); without it they are written with their leads."""
    leads, crossing, rejections = _decide(connection, plan, chunk, block, result, vault, ready,
                                          recent, unwritten, turns)
    # PostgreSQL: drawn in file order, before the next chunk draws its own.
    ids = (_lead_ids(_reading(connection), plan, len(leads)) if plan.dialect == "postgresql"
           else None)
    turns.decided()
    staged = _stages(connection, plan)
    try:
        if staged:
            _stage(connection.driver, plan, leads, crossing)
        if plan.dialect == "sqlite":
            turns.commit()  # one writer at a time: after the chunk before has committed
        connection.begin()
        try:
            flushed = _write(connection, plan, chunk, leads, crossing, ids, rejections,
                             unwritten, turns, staged)
            connection.commit()
        except BaseException:
            connection.rollback()
            raise
        if flushed:  # before the next chunk adds its own keys
            unwritten.clear()
        turns.committed()  # the staged leads are this connection's alone: emptied after
    finally:
        if staged:  # emptied whole (SQLite's truncate optimisation), for the next chunk
            connection.driver.execute(f"DELETE FROM temp.{STAGED_LEADS}")


# A worker's temporary table (SQLite), in the connection's temporary database: its
# pages in a cache of their own (2 MB; a chunk of 5,000 leads takes 1.4), spilled to a
# temporary file beyond that rather than growing the worker's memory. Its columns: the
# plan's staged_columns, then the cross-seller flag.
STAGED_LEADS = "staged_leads"
STAGED_CROSS = "cross_seller_duplicate"


def _stages(connection: Connection, plan: Plan) -> bool:
    """Whether the chunk's leads are staged before its turn: on SQLite, on a worker's
    own connection. The session's transaction holds the write lock from the lookup on
    (`_reading`), and nothing else of the run writes meanwhile: staging would only add
    a step there."""
    return plan.dialect == "sqlite" and isinstance(connection, OwnConnection)


def stage_leads(driver: sqlite3.Connection, plan: Plan, leads: list[tuple],
                crossing: list[int] = ()) -> None:
    """The leads (accepted rows) into STAGED_LEADS, which is empty: their rowids are 1,
    2, ... in order. `crossing`: the positions of the cross-seller duplicates among
    them, whose flag is set here (it is off in the others)."""
    driver.execute(f"CREATE TEMP TABLE IF NOT EXISTS {STAGED_LEADS} "
                   f"({', '.join(plan.staged_columns)}, {STAGED_CROSS} DEFAULT 0)")
    if not leads:
        return
    # A column that is None in every lead (a field the file lacks) is left to its
    # default, NULL: binding a None costs about what binding a number does, and a
    # file often lacks half a dozen fields.
    bound = [at for at, value in enumerate(leads[0]) if value is not None
             or any(map(is_not, map(itemgetter(at), leads), repeat(None)))]
    driver.executemany(f"INSERT INTO temp.{STAGED_LEADS} "
                       f"({', '.join([plan.staged_columns[at] for at in bound])}) "
                       f"VALUES ({', '.join('?' * len(bound))})", map(itemgetter(*bound), leads))
    if crossing:
        driver.executemany(f"UPDATE temp.{STAGED_LEADS} SET {STAGED_CROSS} = 1 "
                           "WHERE rowid = ?", [(at + 1,) for at in crossing])


def _stage(driver: sqlite3.Connection, plan: Plan, leads: list[tuple], crossing: list[int]
           ) -> None:
    """Before the chunk's turn, in a transaction of the connection's temporary database
    alone (it takes no lock on the shared one): binding the leads' values is half the
    cost of inserting them, and this way it is no part of the turn."""
    driver.execute("BEGIN")
    try:
        stage_leads(driver, plan, leads, crossing)
    finally:  # committed even if staging failed: what it staged is emptied all the same
        if driver.in_transaction:
            driver.execute("COMMIT")


def _decide(connection: Connection, plan: Plan, chunk: Chunk, block: Block, result,
            vault: ContactVault, ready: Prepared, recent: RecentLeads,
            unwritten: Optional[UnwrittenKeys], turns: Turns
            ) -> tuple[list[tuple], list[int], list[tuple]]:
    """The chunk's leads (its accepted rows that are no duplicates, as they are), the
    positions among them of the cross-seller duplicates, and its rejections, in memory:
    the chunks before it have decided."""
    index, e_at, p_at = ready.index, *plan.hashes
    earlier = [recent.get(plan.run, turn) for turn in range(ready.since, chunk.turn)]
    if None in earlier:  # a chunk gone from the ring: all looked up again once committed
        turns.commit()
        index = _looked_up(connection, plan, ready.emails, ready.phones, unwritten)
    else:
        for by_email, by_phone in earlier:
            index.add_own(ready.emails, ready.phones, by_email, by_phone)
    accepted, batch_id = result.accepted, plan.batch_id
    emails, phones = list(map(itemgetter(e_at), accepted)), list(map(itemgetter(p_at), accepted))
    # Most rows collide with nothing (no lead found, no suppression, no other row of the
    # chunk with the same contact, rejected or not): they are leads as they are, and
    # only the others are decided one by one, in file order.
    rejected_emails = {c[1] for c in result.rejected_contacts if c[1]}
    rejected_phones = {c[2] for c in result.rejected_contacts if c[2]}
    colliding_emails = (_repeated(emails) | index.by_email.keys() | index.suppressed_emails
                        | rejected_emails)
    colliding_phones = (_repeated(phones) | index.by_phone.keys() | index.suppressed_phones
                        | rejected_phones)
    leads, crossing, rejections = accepted, [], []
    if colliding_emails or colliding_phones:
        leads = []
        append = leads.append
        for row, email_hash, phone_hash in zip(accepted, emails, phones):
            if email_hash not in colliding_emails and phone_hash not in colliding_phones:
                append(row)
                continue
            code, message, is_cross = index.verdict(email_hash, phone_hash)
            if code is None:
                index.remember(email_hash, phone_hash, row[0])
                if is_cross:
                    crossing.append(len(leads))
                append(row)
            else:
                raw = json.dumps(block.record(row[0]), ensure_ascii=False)
                rejections.append((row[0], code, code, vault.encrypt(message),
                                   vault.encrypt(raw), batch_id))
    rejected = result.rejected
    if result.rejected_contacts:
        rejected = list(rejected)
        for position, email_hash, phone_hash in result.rejected_contacts:
            number, code, codes, message_enc, raw_enc = rejected[position]
            for extra, sentence in index.reasons_of_rejected(email_hash, phone_hash, number):
                rejected[position] = (
                    number, code, f"{codes}{CODES_SEPARATOR}{extra}",
                    vault.encrypt(f"{vault.decrypt(message_enc)} {sentence}"), raw_enc)
    rejections += [row + (batch_id,) for row in rejected]
    recent.put(plan.run, chunk.turn, leads, e_at, p_at)
    return leads, crossing, rejections


def _repeated(values: list) -> set:
    """The values (hashes; None aside) that occur more than once."""
    distinct = set(values)
    if len(distinct) + max(values.count(None) - 1, 0) == len(values):
        return set()
    seen: set = set()
    repeated = {value for value in values if value in seen or seen.add(value)}
    repeated.discard(None)
    return repeated


def _reading(connection: Connection) -> Connection:
    """The connection to look up on outside the chunk's transaction: a worker's own
    reads in autocommit; the session's, in its transaction."""
    return connection if isinstance(connection, OwnConnection) else connection.begin()


def _write(connection: Connection, plan: Plan, chunk: Chunk, leads: list[tuple],
           crossing: list[int], ids: Optional[list[int]], rejections: list[tuple],
           unwritten: Optional[UnwrittenKeys], turns: Turns, staged: bool) -> bool:
    """Write the decided chunk, in its transaction (`staged`: its leads are in
    STAGED_LEADS); say whether the waiting keys were written with it."""
    e_at, p_at = plan.hashes
    claim = (chunk.last, chunk.bytes_read, _now(connection.dialect), chunk.rows, len(leads),
             len(rejections), len(crossing), plan.batch_id, chunk.previous)
    if connection.dialect == "postgresql":
        # Written while the next chunk decides and writes too; committed in file order,
        # claim last (its lock on the batch's row lasts until the commit).
        write_leads(connection, plan, _flagged(leads, crossing, ids))
        if rejections:
            copy(connection, plan.rejections_sql, pgcopy.rows(plan.rejection_kinds, rejections))
        write_keys(connection, key_rows(leads, e_at, p_at, ids))
        turns.commit()
        _claim(connection, claim)
        global _statistics_for
        if leads and _statistics_for != (plan.database, plan.run):
            if ensure_statistics(connection):  # sees this transaction's keys too
                _statistics_for = (plan.database, plan.run)
        return False
    # SQLite: the claim first, so that a losing run writes nothing. The ids are the
    # next ones: this transaction holds the write lock.
    _claim(connection, claim)
    ids = _lead_ids(connection, plan, len(leads))
    if staged:
        if leads:
            connection.driver.execute(plan.copy_staged_sql, (ids[0] - 1,))
    else:
        write_leads(connection, plan, _flagged(leads, crossing, ids))
    connection.driver.executemany(plan.rejections_sql, rejections)
    if unwritten is None:
        write_keys(connection, key_rows(leads, e_at, p_at, ids))
        return False
    if not unwritten.add(leads, e_at, p_at, ids):
        return False
    write_waiting_keys(connection, unwritten)  # the table is full: all of them now
    return True


def _flagged(leads: list[tuple], crossing: list[int], ids) -> list[tuple]:
    """Each lead with its cross-seller flag and id."""
    flags = [False] * len(leads)
    for at in crossing:
        flags[at] = True
    return list(map(tuple.__add__, leads, zip(flags, ids)))


def _claim(connection: Connection, values: tuple) -> None:
    """The chunk's progress, as the run's claim on the batch: the update holds only if
    the batch is where the chunk starts, so a second run resumed from the same
    checkpoint loses here and stops instead of storing rows twice."""
    claimed = connection.driver.execute(_sql(connection.dialect, _CLAIM), values).rowcount
    if claimed != 1:
        raise BatchTaken(values[-2])


# The run whose chunks found contact_keys with statistics (ensure_statistics): the
# others ask once more (a table can lose them, tests delete them).
_statistics_for: Optional[tuple] = None


def write_leads(connection: Connection, plan: Plan, leads: list[tuple]) -> None:
    """Accepted rows in the plan's storage form, each followed by its cross-seller flag
    and id, with the batch's own columns."""
    if not leads:
        return
    if connection.dialect == "postgresql":
        copy(connection, plan.leads_sql,
             copy_ready.leads_stream(leads, plan.lead_fields, plan.lead_tail))
    else:
        connection.driver.executemany(plan.leads_sql, leads)


def key_rows(leads: list[tuple], e_at: int, p_at: int, ids) -> list[tuple[int, int]]:
    """The (key, lead_id) rows of leads with these ids."""
    rows: list[tuple[int, int]] = []
    for kind, at in (("email", e_at), ("phone", p_at)):
        column = list(map(itemgetter(at), leads))
        rows += zip(keys(kind, list(compress(column, column))), compress(ids, column))
    return rows
