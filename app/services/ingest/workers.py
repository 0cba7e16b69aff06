"""The CPU-bound half of ingest, run on every core: pick, validate, normalise,
encrypt, hash, and store (storing.py).

Validation (phonenumbers, email-validator) and encryption cost tens of microseconds a
row, and storing about as much again, so chunks of raw rows go to worker processes,
each of which validates its chunk while the other stores, then stores it on its own
database connection. Its lookups of stored leads are made before its turn, on the
worker's time (storing.prepare); in its turn the chunk only checks the chunks that
had not committed then and decides its rows; the next chunk's turn comes while this
one writes (on PostgreSQL both write at once; on SQLite the next one stages its
leads meanwhile, storing.py), and the commits keep file order.
The calling process only reads the file and hands the chunks out. With one worker
(or inside a daemonic process, such as a Celery prefork child, which may not start
processes of its own) the same code runs in-process on the caller's connection.
Workers import no Flask or SQLAlchemy: only what validation and storing need.
"""
import csv
import ctypes
import dataclasses
import gc
import heapq
import itertools
import json
import multiprocessing
import os
import threading
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import chain, compress, repeat
from operator import add, itemgetter, methodcaller, sub
from typing import Iterable, Iterator, Mapping, Optional, Sequence

from app.core import collector
from app.services.crypto import ContactVault
from app.services.scoring import lead_points
from app.services.ingest import copy_ready, storing
from app.services.ingest.columns import (
    MEMO_SIZE, Decided, decide_columns, memo, printable_lines,
)
from app.services.regions import load_indexes
from app.services.ingest.reader import FIELD_LIMIT, Block
from app.services.ingest.validate import (
    NormalisedLead, RowContext, storable, validate_row,
)

# What a worker returns for an accepted row, in this order (the pipeline adds the
# batch's own columns). Indexes of the two hashes are used for duplicate checks.
ACCEPTED_COLUMNS = (
    "row_number", "contact_enc", "email_hash", "phone_hash", "has_email", "has_phone", "age",
    "gender", "region", "country", "marital_status", "employed", "interests", "budget",
    "authority", "need", "timeframe", "consent_at", "source_url", "consent_text", "score_base",
    "sub_id", "city", "postal_code", "trustedform_cert_url", "jornaya_leadid",
)
EMAIL_HASH, PHONE_HASH = ACCEPTED_COLUMNS.index("email_hash"), ACCEPTED_COLUMNS.index("phone_hash")
INTENT_LIMIT = 255  # the intent, sub_id and city columns keep their first 255 characters
# How values leave the worker: as Python objects (for the ORM), or already in the form
# the database driver takes without any conversion in the storing process, which is
# the one serial step of an upload; "pgcopy": PostgreSQL's binary COPY, each accepted
# row packed (copy_ready.pack: its number, its two hashes and its fields as bytes).
STORAGE_FORMATS = (None, "sqlite", "pgcopy")
STORAGE_OF = {"sqlite": "sqlite", "postgresql": "pgcopy"}  # what storing.store takes
# json.dumps(..., ensure_ascii=False) without building an encoder for every row.
_JSON_TEXT = json.JSONEncoder(ensure_ascii=False).encode


@dataclass
class ChunkResult:
    accepted: list[tuple] = field(default_factory=list)
    # (row, code, codes, message_enc, raw_enc): `code` the first reason, `codes` all of
    # them joined by CODES_SEPARATOR.
    rejected: list[tuple] = field(default_factory=list)
    # (position in `rejected`, email_hash, phone_hash) of rejected rows with a valid
    # contact: the pipeline adds their duplicates to their reasons.
    rejected_contacts: list[tuple] = field(default_factory=list)


CODES_SEPARATOR = storing.CODES_SEPARATOR


def _short(text: Optional[str]) -> Optional[str]:
    return text[:INTENT_LIMIT] if text else text


_ISO_TEXT = methodcaller("isoformat", " ", "microseconds")
_EPOCH, _EPOCH_UTC = datetime(1970, 1, 1), datetime(1970, 1, 1, tzinfo=timezone.utc)


def _sqlite_times(times: Iterable[datetime]) -> Iterator[str]:
    """consent_at as SQLite's driver takes it: UTCDateTime's SQLite text (SQLAlchemy's
    DATETIME of the time in UTC, always with microseconds). Each time is made the naive
    UTC one by two sums (the aware one's isoformat costs a µs, twice the naive one's).
    For COPY it stays a datetime (copy_ready packs it)."""
    return map(_ISO_TEXT, map(add, repeat(_EPOCH), map(sub, times, repeat(_EPOCH_UTC))))


def validate_chunk(rows: Iterable[tuple[int, list[str]]], fields: tuple[Optional[str], ...],
                   ctx: RowContext, vault: ContactVault, storage: Optional[str] = None,
                   printable: bool = False) -> ChunkResult:
    """Rows as (spreadsheet row number, raw cells); `fields` names each column;
    `printable`: every cell is known printable (columns.printable_lines).

    Rows that pass every check are decided and built a column at a time (columns.py);
    the others with every reason: told there when a row has one, else row by row by
    validate_row (with what the column pass worked out of them, Decided.known)."""
    if storage not in STORAGE_FORMATS:
        raise ValueError(f"Unknown storage format {storage!r}")
    result = ChunkResult()
    rows = list(rows)
    decided = decide_columns([raw for _, raw in rows], fields, ctx, printable)
    accepted = (_assembled(_accepted_columns(rows, decided, vault, storage), storage)
                if any(decided.ok) else [])
    if len(accepted) == len(rows):
        result.accepted = accepted
        return result
    pairs = [(i, name) for i, name in enumerate(fields) if name]
    width = len(fields)
    late = []  # (position, row) of rows validate_row accepts once their text is cleaned
    refused = []  # (row number, verdict, raw cells) of the rejected rows
    for position in sorted(decided.known.keys() | decided.rejected.keys()):
        number, raw = rows[position]
        verdict = decided.rejected.get(position)
        if verdict is None:
            cells = raw if len(raw) >= width else list(raw) + [""] * (width - len(raw))
            verdict = validate_row({name: cells[i] for i, name in pairs}, ctx,
                                   known=decided.known[position])
        if verdict.lead is not None:
            late.append((position, _accepted_row(number, verdict.lead, vault, storage)))
            continue
        if verdict.code == "bad_encoding":  # a real-time post may hold lone surrogates
            raw = [storable(cell) for cell in raw]
        refused.append((number, verdict, raw))
    if refused:  # hashed and encrypted together: one random read for them all
        verdicts = [verdict for _, verdict, _ in refused]
        contacts = zip(vault.dedupe_hashes("email", [verdict.email for verdict in verdicts]),
                       vault.dedupe_hashes("phone", [verdict.phone for verdict in verdicts]))
        result.rejected_contacts = [(position, email_hash, phone_hash)
                                    for position, (email_hash, phone_hash) in enumerate(contacts)
                                    if email_hash or phone_hash]
        sealed = vault.encrypt_many([verdict.message for verdict in verdicts]
                                    + _json_lists([raw for _, _, raw in refused]))
        result.rejected = [
            (number, verdict.code, CODES_SEPARATOR.join(verdict.codes), message, raw)
            for (number, verdict, _), message, raw in zip(refused, sealed,
                                                          sealed[len(refused):])]
    if late:  # accepted rows stay in file order: the first of two duplicates is kept
        if storage == "pgcopy":
            late = list(zip([position for position, _ in late],
                            copy_ready.pack(ACCEPTED_COLUMNS, [row for _, row in late])))
        passed = compress(itertools.count(), decided.ok)
        merged = heapq.merge(zip(passed, accepted), late, key=itemgetter(0))
        accepted = [row for _, row in merged]
    result.accepted = accepted
    return result


def _json_texts(texts: Sequence[str]) -> str:
    """_JSON_TEXT(list(texts)), written directly when no text needs escaping (the
    usual case)."""
    return _JSON_TEXT(texts) if _escaped("".join(texts)) else _plain_json(texts)


def _escaped(text: str) -> bool:
    """Whether JSON escapes anything in the text: a printable text has nothing to
    escape but a quote or a backslash."""
    return '"' in text or "\\" in text or not text.isprintable()


def _plain_json(texts: Sequence[str]) -> str:
    """The JSON array of texts none of which JSON escapes anything in."""
    return '["' + '", "'.join(texts) + '"]' if texts else "[]"


def _json_lists(lists: Sequence[Sequence[str]]) -> list[str]:
    """_json_texts of each list of texts, whether any text needs escaping checked for
    them all at once."""
    escaped = _escaped("".join(chain.from_iterable(lists)))
    return list(map(_json_texts if escaped else _plain_json, lists))


def _interests_json(interests: list[tuple]) -> list[str]:
    """_json_texts of each row's interests, once per tuple: the rows of one distinct
    value share their tuple (columns.interests_of), and its id is quicker to look up
    than the tuple, whose hash is worked out from its words every time."""
    shared = dict(zip(map(id, interests), interests))
    texts = dict(zip(shared, _json_lists(list(shared.values()))))
    return list(map(texts.__getitem__, map(id, interests)))


def _shortened(texts: list) -> list:
    """_short of every value (most columns have no value that long)."""
    if max(map(len, filter(None, texts)), default=0) <= INTENT_LIMIT:
        return texts
    return [_short(text) for text in texts]


def _scores(has_phone: list, has_email: list, ages: list, genders: list, regions: list,
            interests: list, maritals: list, employeds: list, budgets: list,
            authorities: list, needs: list, timeframes: list) -> list[int]:
    """lead_points of each row, called once per distinct combination of what it reads
    (whether each part is given, the vocabulary words and the intent texts) in this
    process (columns.memo: the combinations repeat from chunk to chunk)."""
    known = memo("lead_points")
    if len(known) > MEMO_SIZE:
        known.clear()
    scores = []
    for i, key in enumerate(zip(has_phone, has_email, [age is None for age in ages], genders,
                                map(bool, regions), map(bool, interests), maritals, employeds,
                                budgets, authorities, needs, timeframes)):
        score = known.get(key)
        if score is None:
            score = known[key] = lead_points(
                has_phone=has_phone[i], has_email=has_email[i], age=ages[i], gender=genders[i],
                region=regions[i], interests=interests[i], marital_status=maritals[i],
                employed=employeds[i], budget=budgets[i], authority=authorities[i],
                need=needs[i], timeframe=timeframes[i])
        scores.append(score)
    return scores


def _accepted_columns(rows: list, decided: Decided, vault: ContactVault,
                      storage: Optional[str]) -> list[Iterable]:
    """The accepted rows (ACCEPTED_COLUMNS) of the rows that passed, a column at a
    time: each column's values for the passed rows, as _accepted_row makes them of
    each row's lead. Only what costs a row its own work (sealing, hashing) is worked
    out for the passed rows alone; the other columns are worked out for every row and
    the passed rows' values taken as they are used (`_assembled`)."""
    ok, values = decided.ok, decided.values

    def passed(name: str) -> list:
        return list(compress(values[name], ok))

    emails, phones = passed("email"), passed("phone")
    email_hashes = vault.dedupe_hashes("email", emails)
    phone_hashes = vault.dedupe_hashes("phone", phones)
    sealed = vault.seal_contacts(passed("first_name"), passed("last_name"), emails, phones,
                                 passed("ip"))
    # A contact is hashed where it is given: has_email is whether the row has an email.
    has_email, has_phone = list(map(bool, values["email"])), list(map(bool, values["phone"]))
    ages, genders, regions = values["age"], values["gender"], values["region"]
    maritals, employeds = values["marital_status"], values["employed"]
    interests = values["interests"]
    budgets, authorities = _shortened(values["budget"]), _shortened(values["authority"])
    needs, timeframes = _shortened(values["need"]), _shortened(values["timeframe"])
    scores = _scores(has_phone, has_email, ages, genders, regions, interests, maritals,
                     employeds, budgets, authorities, needs, timeframes)
    consent_times = compress(values["consent_at"], ok)
    if storage is None:
        interests = [list(chosen) for chosen in interests]  # each lead its own list
    else:
        interests = _interests_json(interests)
        if storage == "sqlite":
            consent_times = _sqlite_times(consent_times)

    def taken(*columns: Sequence) -> list:
        return [compress(column, ok) for column in columns]

    return [
        compress(map(itemgetter(0), rows), ok), sealed, email_hashes, phone_hashes,
        *taken(has_email, has_phone, ages, genders, regions, values["country"], maritals,
               employeds, interests, budgets, authorities, needs, timeframes),
        consent_times,
        *taken(values["source_url"], values["consent_text"], scores,
               _shortened(values["sub_id"]), _shortened(values["city"]),
               values["postal_code"], values["trustedform_cert_url"],
               values["jornaya_leadid"])]


def _assembled(columns: list[Iterable], storage: Optional[str]) -> list[tuple]:
    """The accepted rows of _accepted_columns' columns: tuples, or packed for COPY
    straight from the columns (copy_ready.pack_columns)."""
    if storage == "pgcopy":
        return copy_ready.pack_columns(ACCEPTED_COLUMNS, [
            column if isinstance(column, list) else list(column) for column in columns])
    return list(zip(*columns))


def _accepted_row(number: int, lead: NormalisedLead, vault: ContactVault,
                  storage: Optional[str]) -> tuple:
    """One lead as an accepted row (ACCEPTED_COLUMNS)."""
    dedupe_hash = vault.dedupe_hash
    email, phone = lead.email, lead.phone
    email_hash = dedupe_hash("email", email) if email else None
    phone_hash = dedupe_hash("phone", phone) if phone else None
    budget, authority = _short(lead.budget), _short(lead.authority)
    need, timeframe = _short(lead.need), _short(lead.timeframe)
    score_base = lead_points(
        has_phone=phone_hash is not None, has_email=email_hash is not None, age=lead.age,
        gender=lead.gender, region=lead.region, interests=lead.interests,
        marital_status=lead.marital_status, employed=lead.employed, budget=budget,
        authority=authority, need=need, timeframe=timeframe)
    interests, consent_at = lead.interests, lead.consent_at
    if storage is not None:
        interests = _JSON_TEXT(interests) if interests else "[]"
        if storage == "sqlite":
            consent_at, = _sqlite_times([consent_at])
    return (
        number, vault.seal_contact(lead.first_name, lead.last_name, email, phone, lead.ip),
        email_hash, phone_hash, email_hash is not None, phone_hash is not None, lead.age,
        lead.gender, lead.region, lead.country, lead.marital_status, lead.employed,
        interests, budget, authority, need, timeframe, consent_at, lead.source_url,
        lead.consent_text, score_base, _short(lead.sub_id), _short(lead.city),
        lead.postal_code, lead.trustedform_cert_url, lead.jornaya_leadid,
    )


_worker_vault: Optional[ContactVault] = None
PARENT_CHECK_SECONDS = 1.0  # how soon a worker left behind by its process ends
# Whose turn it is to store, shared by the pool's processes: (the run, its next chunk
# to decide, its next chunk to commit).
_turns = None  # multiprocessing Condition
_turn = None  # multiprocessing Array of three int64
_connections: dict[tuple[str, str], storing.OwnConnection] = {}  # this worker's own
_unwritten: Optional[storing.UnwrittenKeys] = None  # the pool's, shared
_recent: Optional[storing.RecentLeads] = None  # likewise


def _init_worker(master_key: str) -> None:
    global _worker_vault
    _worker_vault = ContactVault(master_key)
    load_indexes()  # names resolve from the first chunk on


def _start_worker(master_key: str, parent: int, turns=None, turn=None, unwritten=None,
                  recent=None) -> None:
    global _turns, _turn, _unwritten, _recent
    _init_worker(master_key)
    _turns, _turn = turns, turn
    if unwritten is not None:
        _unwritten = storing.UnwrittenKeys(*unwritten)
    if recent is not None:
        _recent = storing.RecentLeads(*recent)
    threading.Thread(target=_exit_with, args=(parent,), name="leadx-parent-watch",
                     daemon=True).start()
    # What the worker keeps for its life (modules, metadata, the name indexes): the
    # collector's full passes need not scan it again.
    gc.freeze()


def _exit_with(parent: int) -> None:
    """End this worker once the process that started it is gone. A parent killed by a
    signal (a dev server stopped with SIGTERM) runs no clean-up, and a waiting worker
    holds both ends of its task queue, so it would never see the queue close."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(0)


def _validate_in_worker(block: Block, fields: tuple, ctx: RowContext,
                        storage: Optional[str]) -> ChunkResult:
    block.read()
    csv.field_size_limit(FIELD_LIMIT)
    # A chunk makes hundreds of thousands of objects and no reference cycles: the
    # cyclic collector would scan them over and over (a tenth of the chunk's time).
    with collector.paused():
        return _validated(block, fields, ctx, _worker_vault, storage)


def _store_in_worker(block: Block, fields: tuple, ctx: RowContext, plan: storing.Plan,
                     chunk: storing.Chunk) -> None:
    """Validate a chunk, look its contacts up, wait for its turns, store it and pass
    them on (_Turns)."""
    # Paused for the whole chunk: resumed between its steps, the collector's next
    # young pass scanned every object the chunk still held (a millisecond or two).
    with collector.paused():
        result = _validate_in_worker(block, fields, ctx, STORAGE_OF[plan.dialect])
        connection = _connection(plan)
        unwritten = _unwritten if plan.defer_keys else None
        with _turns:  # the chunks before `since` have committed
            if _turn[0] != plan.run:
                raise storing.RunCancelled(plan.run)
            since = _turn[2]
        ready = storing.prepare(connection, plan, result, since, unwritten)
        turns = _Turns(plan.run, chunk.turn)
        turns.wait(1)
        # A chunk that fails keeps its turns: the run stops there.
        storing.store(connection, plan, chunk, block, result, _worker_vault, ready, _recent,
                      unwritten, turns)


@dataclass
class _Turns:
    """A chunk's two turns, each after the chunk before it: to decide
    (storing.Turns.decided passes it on) and to commit (`committed`)."""

    run: int
    turn: int

    def wait(self, which: int) -> None:
        with _turns:
            while _turn[which] != self.turn:
                if _turn[0] != self.run:
                    raise storing.RunCancelled(self.run)
                _turns.wait(PARENT_CHECK_SECONDS)
            if _turn[0] != self.run:
                raise storing.RunCancelled(self.run)

    def decided(self) -> None:
        with _turns:
            if _turn[0] == self.run:
                _turn[1] = self.turn + 1
            _turns.notify_all()

    def commit(self) -> None:
        self.wait(2)

    def committed(self) -> None:
        with _turns:
            if _turn[0] == self.run:
                _turn[2] = self.turn + 1
            _turns.notify_all()


def _connection(plan: storing.Plan) -> storing.OwnConnection:
    """This worker's connection to the plan's database, kept between chunks and runs."""
    key = (plan.dialect, plan.database)
    connection = _connections.get(key)
    if connection is not None and not connection.usable():
        connection.close()
        connection = None
    if connection is None:
        connection = _connections[key] = storing.OwnConnection(plan.dialect, plan.database)
    return connection


def _validated(block: Block, fields: tuple, ctx: RowContext, vault: ContactVault,
               storage: Optional[str]) -> ChunkResult:
    return validate_chunk(block.records(), fields, ctx, vault, storage,
                          printable_lines(block.lines, block.rows))


Chunks = Iterable[tuple[Block, storing.Chunk]]
_runs = itertools.count(1)  # runs of this process: each its own turns


class InProcess:
    """Validating and storing in the calling process, on its own connection."""

    def __init__(self, master_key: str, waiting_keys: int, chunk_rows: int):
        self._vault = ContactVault(master_key)
        self._waiting_keys, self._chunk_rows = waiting_keys, chunk_rows

    def store_chunks(self, chunks: Chunks, fields: tuple, ctx: RowContext, plan: storing.Plan,
                     connection: storing.Connection) -> None:
        plan = dataclasses.replace(plan, run=next(_runs))
        unwritten = (storing.UnwrittenKeys.local(self._waiting_keys, 2 * self._chunk_rows)
                     if plan.defer_keys else None)
        recent = storing.RecentLeads.local(1, 2 * self._chunk_rows)
        for block, chunk in chunks:
            result = _validated(block, fields, ctx, self._vault, STORAGE_OF[plan.dialect])
            ready = storing.prepare(connection, plan, result, chunk.turn, unwritten)
            storing.store(connection, plan, chunk, block, result, self._vault, ready, recent,
                          unwritten)
        if unwritten is not None:
            storing.write_unwritten(connection, unwritten)


class WorkerPool:
    """A process pool kept for the life of the process (workers import slowly), used
    by one run at a time: a run's turns go round its workers (a second run at once
    stores in its own process)."""

    def __init__(self, master_key: str, processes: int, waiting_keys: int, chunk_rows: int):
        self.processes = processes
        context = multiprocessing.get_context("spawn")
        self._turns, self._turn = context.Condition(), context.Array("q", 3, lock=False)
        shared = (context.RawArray("q", 2),
                  context.RawArray(ctypes.c_ubyte, storing.UnwrittenKeys.data_bytes(
                      waiting_keys + 2 * chunk_rows)),
                  waiting_keys)
        self._unwritten = storing.UnwrittenKeys(*shared)
        # The chunks in flight and those whose keys wait: a chunk in its turn finds
        # every chunk since its lookup (more than this only costs a second lookup).
        header, data = storing.RecentLeads.sizes(RECENT_SLOTS * processes, 2 * chunk_rows)
        recent = (context.RawArray("q", header), context.RawArray(ctypes.c_ubyte, data),
                  2 * chunk_rows)
        self._executor = ProcessPoolExecutor(
            max_workers=processes, mp_context=context, initializer=_start_worker,
            initargs=(master_key, os.getpid(), self._turns, self._turn, shared, recent))
        self._in_process = InProcess(master_key, waiting_keys, chunk_rows)
        self._busy = threading.Lock()

    def store_chunks(self, chunks: Chunks, fields: tuple, ctx: RowContext, plan: storing.Plan,
                     connection: storing.Connection) -> None:
        """Validate and store every chunk, in file order; `connection` is the caller's,
        for a database the workers cannot open (in memory) or a run while another
        holds the pool."""
        if plan.database is None or not self._busy.acquire(blocking=False):
            self._in_process.store_chunks(chunks, fields, ctx, plan, connection)
            return
        try:
            self._unwritten.clear()
            self._store_chunks(chunks, fields, ctx, dataclasses.replace(plan, run=next(_runs)))
            if plan.defer_keys:
                storing.write_unwritten(connection, self._unwritten)
        finally:
            self._busy.release()

    def _store_chunks(self, chunks: Chunks, fields: tuple, ctx: RowContext,
                      plan: storing.Plan) -> None:
        with self._turns:
            self._turn[0], self._turn[1], self._turn[2] = plan.run, 0, 0
        # One chunk per worker in flight, plus the next: memory stays flat.
        in_flight: deque = deque()
        try:
            for block, chunk in chunks:
                in_flight.append(self._executor.submit(_store_in_worker, block, fields, ctx,
                                                       plan, chunk))
                if len(in_flight) > self.processes:
                    in_flight.popleft().result()
            while in_flight:
                in_flight[0].result()
                in_flight.popleft()
        finally:
            if in_flight:  # stopped: the run's waiting chunks give up, the storing one ends
                with self._turns:
                    self._turn[0] = 0
                    self._turns.notify_all()
                wait_for(in_flight)


RECENT_SLOTS = 4  # chunks in storing.RecentLeads per worker
_pools: dict[tuple[str, int, int, int], WorkerPool] = {}


def pool_for(config: Mapping) -> InProcess | WorkerPool:
    processes = int(config.get("INGEST_WORKERS") or os.cpu_count() or 1)
    key = config["CONTACT_ENCRYPTION_KEY"]
    # Two contacts a lead: the keys of this many leads wait at most (UnwrittenKeys).
    waiting_keys = 2 * int(config.get("INGEST_KEYS_ROWS") or 0)
    chunk_rows = int(config["INGEST_CHUNK_ROWS"])
    if processes <= 1 or multiprocessing.current_process().daemon:
        return InProcess(key, waiting_keys, chunk_rows)
    settings = (key, processes, waiting_keys, chunk_rows)
    if settings not in _pools:
        _pools[settings] = WorkerPool(*settings)
    return _pools[settings]
