"""From an uploaded file to leads and rejections (SPEC §3).

`create_batch` checks the file and the terms and refuses a bad file before anything
is stored; `process_batch` (a background job) streams the file in chunks: rows are
validated, normalised, encrypted and put in the database driver's own form in worker
processes (both cores), while this process, the one serial step, only checks
duplicates and the suppression list in bulk and stores the rows with their progress.
Leads are stored with their final status but are offered to nobody while their
batch is `processing` (`Lead.offered`), so a batch is either complete or not there: a
failure removes what the run stored, and a crashed run resumes from its last commit.
"""
import dataclasses
import itertools
import json
import logging
import os
import secrets
import shutil
import struct
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, NamedTuple, Optional

import sqlalchemy as sa
from flask import current_app

from app.core import bounds, events
from app.errors import Conflict, DomainError, Forbidden, Refusals, ValidationFailed
from app.extensions import db
from app.models import (
    Batch,
    BatchSource,
    BatchStatus,
    Lead,
    LeadStatus,
    Rejection,
    SuppressionEntry,
    TrustLevel,
    User,
)
from app.models.contact_keys import KIND_BITS
from app.models.types import utcnow
from app.people import notifications
from app.services import accounts, contact_keys, do_not_call, scoring
from app.core import pgcopy
from app.core.bulk import allocate_ids, copy_binary, insert_ready, kind_of
from app.services.crypto import HASH_BYTES, current_vault
from app.services.ingest import copy_ready, workers
from app.services.ingest.reader import Block, UnreadableFile
from app.services.ingest.sources import open_upload
from app.services.ingest.validate import RowContext, verdict_message

log = logging.getLogger(__name__)

MAX_CAP = 20


@dataclass(frozen=True)
class BatchTerms:
    default_country: str
    floor_price: int
    cap: int
    mapping: dict[str, str]


def check_terms(default_country: str, floor_price, cap, mapping=None) -> BatchTerms:
    """The batch's terms, or ValidationFailed naming every field that is wrong."""
    import pycountry

    found = Refusals()
    country = (default_country or "").strip().upper()
    if len(country) != 2 or pycountry.countries.get(alpha_2=country) is None:
        found.note(ValidationFailed(
            f"“{default_country}” is not a two-letter country code such as RU, ES or US.",
            code="invalid_default_country", details={"field": "default_country"}))
    floor_price = found.check(bounds.AMOUNT.take, floor_price, "floor_price")
    cap = found.check(bounds.COUNT.narrowed(1, MAX_CAP).take, cap, "cap")
    if isinstance(mapping, str):
        try:
            mapping = json.loads(mapping) if mapping.strip() else {}
        except ValueError:
            mapping = False
    if mapping is not None and not isinstance(mapping, dict):
        found.note(ValidationFailed(
            "The mapping must be a JSON object of header → field.",
            code="invalid_mapping", details={"field": "mapping"}))
    found.raise_any()
    return BatchTerms(country, floor_price, cap, {str(k): str(v or "") for k, v in (mapping or {}).items()})


def check_can_sell(seller: User) -> None:
    if not seller.is_seller:
        raise Forbidden("Only sellers can upload leads.", code="not_a_seller")
    accounts.require_verified_email(seller)
    if seller.trust_level is TrustLevel.SUSPENDED:
        raise Forbidden("Your account is suspended, so uploads are paused. Contact us to "
                        "review it.", code="seller_suspended")


def upload_dir() -> Path:
    """Where uploads wait in clear until processed: readable by this user alone."""
    path = Path(current_app.config["UPLOAD_DIR"])
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def upload_path(batch: Batch) -> Path:
    return upload_dir() / f"batch-{batch.id}.csv"


def _staged_path(seller_id: int, token: str) -> Path:
    if not (token.isascii() and token.isalnum()):
        raise ValidationFailed("Unknown upload.", code="unknown_upload")
    return upload_dir() / f"staged-{seller_id}-{token}.csv"


@dataclass(frozen=True)
class UploadPreview:
    """What the seller sees before a batch starts: how we read the file."""

    token: str
    file_format: str  # csv or xlsx
    encoding: Optional[str]  # a CSV's
    delimiter: Optional[str]  # a CSV's
    headers: list[str]
    fields: list[Optional[str]]
    unknown: list[str]
    missing: list[tuple[tuple[str, ...], str]]  # required fields no column feeds
    sample: list[list[str]]
    content_hash: str
    size: int
    duplicate_of: Optional[Batch]


def stage_upload(seller: User, stream: BinaryIO) -> str:
    """Keep the uploaded bytes on disk under a token until the seller confirms."""
    check_can_sell(seller)
    token = secrets.token_hex(16)
    path = _staged_path(seller.id, token)
    try:
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
            shutil.copyfileobj(stream, out, 1 << 20)
    except BaseException:  # a client that hangs up mid-upload leaves no part of its file
        path.unlink(missing_ok=True)
        raise
    return token


def inspect_upload(seller: User, token: str, mapping: Optional[dict] = None) -> UploadPreview:
    """Read the staged file's shape, or raise UnreadableFile and forget it. The file is
    read before the first query, so a caller with no transaction open holds no lock
    while it is."""
    preview = _read_shape(seller.id, token, mapping)
    return dataclasses.replace(preview, duplicate_of=_earlier_upload(seller.id, preview))


def _read_shape(seller_id: int, token: str, mapping: Optional[dict]) -> UploadPreview:
    path = _staged_path(seller_id, token)
    if not path.exists():
        raise ValidationFailed("This upload has expired; please choose the file again.",
                               code="unknown_upload")
    try:
        with open_upload(path, mapping=mapping or {}) as source:
            sample = [values for _, values in itertools.islice(source.rows(), 5)]
            return UploadPreview(
                token, source.file_format, source.encoding, source.delimiter,
                list(source.headers),
                list(source.header_map.fields), list(source.header_map.unknown),
                source.header_map.missing, sample,
                source.content_hash, source.size, None)
    except UnreadableFile:
        path.unlink(missing_ok=True)
        raise


def _earlier_upload(seller_id: int, preview: UploadPreview) -> Optional[Batch]:
    return db.session.scalar(
        sa.select(Batch).where(Batch.seller_id == seller_id,
                               Batch.content_hash == preview.content_hash,
                               Batch.status != BatchStatus.FAILED).order_by(Batch.id.desc()))


def discard_upload(seller_id: int, token: str) -> None:
    """Forget a staged upload (a no-op once it became a batch). Takes the seller's id,
    not the user: it runs after failures, when the session may not load anything."""
    _staged_path(seller_id, token).unlink(missing_ok=True)


def remove_stale_uploads(max_age_seconds: int) -> int:
    """A periodic job: delete staged uploads older than the limit (abandoned before
    the seller confirmed) and the files of batches that are no longer processing (a
    run that died before it could delete its file), or that were never committed.
    Returns how many files went."""
    cutoff = time.time() - max_age_seconds
    files = {}
    for path in upload_dir().iterdir():
        number = path.name.removeprefix("batch-").removesuffix(".csv")
        if path.name.startswith("staged-"):
            files[path] = None
        elif path.name.startswith("batch-") and number.isdigit():
            files[path] = int(number)
    status = dict(db.session.execute(sa.select(Batch.id, Batch.status).where(
        Batch.id.in_([n for n in files.values() if n is not None]))).all())
    db.session.rollback()  # read only: hold nothing while the disk is walked
    removed = 0
    for path, batch_id in files.items():
        if batch_id in status:
            stale = status[batch_id] is not BatchStatus.PROCESSING
        else:  # staged, or its batch not committed (yet, or ever)
            stale = path.stat().st_mtime < cutoff
        if stale:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def create_batch(seller: User, token: str, filename: str, terms: BatchTerms,
                 *, allow_same_file: bool = False) -> Batch:
    """Turn a staged upload into a queued batch, or raise and create nothing.

    The file is checked first (encoding, delimiter, a usable header, the mapping), so a
    file that is not a CSV never becomes a batch. The same file uploaded twice raises
    Conflict("duplicate_file") unless the seller confirmed it (`allow_same_file`).
    Once the caller commits, the batch is processed (BatchUploaded).
    """
    preview = _read_shape(seller.id, token, terms.mapping)  # before the first query
    check_can_sell(seller)
    earlier = _earlier_upload(seller.id, preview)
    if earlier is not None and not allow_same_file:
        raise Conflict(
            f"You uploaded this same file before (batch #{earlier.id}, "
            f"{earlier.created_at:%Y-%m-%d %H:%M} UTC). Upload it again only if you mean "
            "to create a second batch.", code="duplicate_file",
            details={"batch_id": earlier.id})
    batch = Batch(
        seller_id=seller.id, source=BatchSource.UPLOAD, status=BatchStatus.PROCESSING,
        filename=(filename or "upload.csv")[:255], content_hash=preview.content_hash,
        file_size=preview.size, file_format=preview.file_format, encoding=preview.encoding,
        delimiter=preview.delimiter,
        default_country=terms.default_country, floor_price=terms.floor_price, cap=terms.cap,
        mapping={"columns": terms.mapping, "headers": preview.headers,
                 "unmapped": preview.unknown},
    )
    db.session.add(batch)
    db.session.flush()
    _staged_path(seller.id, token).rename(upload_path(batch))
    events.record(events.BatchUploaded(batch.id))
    return batch


def process_batch(batch_id: int) -> None:
    """Run (or resume) a batch to its end; a failure leaves no half batch."""
    batch = db.session.get(Batch, batch_id)
    if batch is None or batch.status is not BatchStatus.PROCESSING:
        return  # finished already: a redelivered job changes nothing
    path = upload_path(batch)
    try:
        if not path.exists():
            raise DomainError("The uploaded file is no longer on the server; upload it again.",
                              code="file_missing")
        _run(batch, path)
    except Exception as exc:
        db.session.rollback()
        try:
            _fail(batch_id, exc)
        finally:
            path.unlink(missing_ok=True)
        if not isinstance(exc, DomainError):
            raise
    path.unlink(missing_ok=True)


@dataclass
class BatchRun:
    """What a run needs of its batch, copied out so that no database transaction is
    held open while rows are validated (on SQLite it would hold the write lock, and the
    seller's progress page would wait)."""

    id: int
    seller_id: int
    floor_price: int
    cap: int
    checkpoint: int  # rows_processed as last stored
    check_suppression: bool = True
    lead_status: LeadStatus = LeadStatus.HELD  # what the leads become (listing_status_for)
    created_at: Optional[datetime] = None  # the leads' created_at
    seller_points: int = 8  # the seller's record as a score part (services.scoring)
    storage: Optional[str] = None  # the rows' form (workers.STORAGE_FORMATS)
    # Contacts of the leads stored since the last commit, whose keys it writes.
    unwritten: "UnwrittenKeys" = field(default_factory=lambda: UnwrittenKeys())


def _run(batch: Batch, path: Path) -> None:
    batch.started_at = batch.started_at or utcnow()
    batch.heartbeat_at = utcnow()
    if not batch.rows_processed:  # a resumed run keeps the record it started with
        batch.seller_points = scoring.seller_points_for(batch.seller_id)
    run = BatchRun(batch.id, batch.seller_id, batch.floor_price, batch.cap, batch.rows_processed,
                   check_suppression=db.session.query(SuppressionEntry.id).first() is not None,
                   lead_status=listing_status_for(batch.seller)[1], created_at=utcnow(),
                   seller_points=batch.seller_points)
    ctx = RowContext(default_country=batch.default_country, now=batch.created_at)
    mapping = batch.mapping.get("columns") or {}
    run.storage = _STORAGE.get(db.session.get_bind().dialect.name)
    db.session.commit()
    config = current_app.config
    chunk_rows = config["INGEST_CHUNK_ROWS"]
    # Several chunks per transaction: each commit rewrites every index page it touched,
    # and the hash indexes are touched at random. Bounded in rows and in seconds, since
    # on SQLite the open transaction holds the write lock.
    commit_rows, commit_seconds = config["INGEST_COMMIT_ROWS"], config["INGEST_COMMIT_SECONDS"]
    pool = workers.pool_for(config)
    with open_upload(path, mapping=mapping) as source:
        uncommitted, opened = 0, time.monotonic()
        for block, result in pool.map_chunks(source.blocks(chunk_rows, after=run.checkpoint),
                                             source.header_map.fields, ctx, run.storage):
            if uncommitted == 0:
                opened = time.monotonic()
            _store_chunk(run, block, result, source.bytes_read)
            uncommitted += block.rows
            if uncommitted >= commit_rows or time.monotonic() - opened >= commit_seconds:
                run.unwritten.write()
                db.session.commit()
                uncommitted = 0
        run.unwritten.write()
        db.session.commit()
    _finish(db.session.get(Batch, run.id), run)


# What each database takes: on PostgreSQL the workers pack the rows for binary COPY.
_STORAGE = {"sqlite": "sqlite", "postgresql": "pgcopy"}


class Holder(NamedTuple):
    """An existing lead with the same contact (a tuple: one is made for nearly every
    row the storing process keeps, and a frozen dataclass costs twice as much)."""

    batch_id: int
    seller_id: int
    row_number: int
    lead_id: int = 0


# A hash's first 8 bytes as a big-endian signed integer, the rest skipped.
_PREFIXES = struct.Struct(f">q{HASH_BYTES - 8}x")


def _keys(kind: str, hashes: list[bytes]) -> list[int]:
    """contact_keys.key of each hash, for many at once (models.contact_keys)."""
    bit = KIND_BITS[kind]
    return [(prefix & ~1) | bit for prefix, in _PREFIXES.iter_unpack(b"".join(hashes))]


@dataclass
class UnwrittenKeys:
    """The contact keys of the leads this transaction stored, written all at once, in
    key order, just before it commits: keys are random, and a commit rewrites every
    page it touched. Until then later chunks find those leads here (by key, then by
    their full hashes like any other)."""

    lead_ids: dict[int, int] = field(default_factory=dict)  # key -> lead id
    shared: list[tuple[int, int]] = field(default_factory=list)  # a key taken already
    have_statistics: bool = False  # contact_keys.ensure_statistics said so

    def add(self, keys: list[int], lead_ids: list[int]) -> None:
        taken = self.lead_ids
        if len(set(keys)) == len(keys) and not taken.keys() & keys:
            taken.update(zip(keys, lead_ids))
            return
        for key, lead_id in zip(keys, lead_ids):  # two hashes with one prefix
            if taken.setdefault(key, lead_id) != lead_id:
                self.shared.append((key, lead_id))

    def lead_ids_of(self, keys: list[int]) -> list[int]:
        taken = self.lead_ids
        found = [taken[key] for key in keys if key in taken]
        if self.shared:
            wanted = set(keys)
            found += [lead_id for key, lead_id in self.shared if key in wanted]
        return found

    def write(self) -> None:
        taken, keys = self.lead_ids, sorted(self.lead_ids)
        for start in range(0, len(keys), WRITE_ROWS):  # no list of every (key, id) at once
            contact_keys.store([(key, taken[key]) for key in keys[start:start + WRITE_ROWS]])
        contact_keys.store(self.shared)
        if keys and not self.have_statistics:
            self.have_statistics = contact_keys.ensure_statistics()
        self.lead_ids, self.shared = {}, []


WRITE_ROWS = 4096


IN_LIST_SIZE = 4096  # values per IN (...) on SQLite


def _matching(select: str, column: str, values: set[bytes]) -> list[tuple]:
    """Rows of `select` (which ends in a WHERE clause) whose `column` is one of
    `values`, through the driver: SQLAlchemy's processing of every bound value would
    cost more than the index lookups themselves."""
    if not values:
        return []
    connection = db.session.connection()
    driver = connection.connection.driver_connection
    if connection.dialect.name == "postgresql":
        # %b: the array goes in binary; as text, psycopg escapes every bytea element
        # through a regex (measured: 7.9 ms of CPU per 4,000 hashes instead of 1.4 ms).
        # Planned for each call, never prepared: contact_keys grows fast during an upload.
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


_HOLDER_COLUMNS = "l.email_hash, l.phone_hash, l.batch_id, l.seller_id, l.row_number, l.id"


def _holders_by_key(keys: set[int]) -> list[tuple]:
    """PostgreSQL: the leads behind these contact keys, by index probes: each key
    looked up on its own and each lead by its id (fenced LATERAL subqueries), so that
    no estimate turns the lookup into a scan of either table. With `key = ANY(...)`
    and no statistics on contact_keys (it grows from nothing during a first upload)
    both tables were read whole for every chunk: 100 s for the 1M-row bench.
    contact_keys.ensure_statistics() makes the estimates right as well."""
    if not keys:
        return []
    driver = db.session.connection().connection.driver_connection
    return driver.execute(_HOLDERS_BY_KEY, (list(keys),), prepare=False).fetchall()


_HOLDERS_BY_KEY = (
    f"SELECT {_HOLDER_COLUMNS} FROM unnest(%b::bigint[]) AS q(key) "
    "CROSS JOIN LATERAL (SELECT k.lead_id FROM contact_keys k WHERE k.key = q.key "
    "OFFSET 0) AS k CROSS JOIN LATERAL (SELECT * FROM leads WHERE id = k.lead_id "
    "OFFSET 0) AS l")


def _existing_by_hash(emails: set[bytes], phones: set[bytes], seller_id: int,
                      unwritten: Optional[UnwrittenKeys] = None
                      ) -> tuple[dict[bytes, Holder], dict[bytes, Holder]]:
    """Stored leads holding these email and phone hashes, by hash: found by key, then
    their full hashes compared (two hashes may share a key)."""
    keys = _keys("email", list(emails)) + _keys("phone", list(phones))
    if db.session.get_bind().dialect.name == "postgresql":
        found = _holders_by_key(set(keys))
    else:
        found = _matching(f"SELECT {_HOLDER_COLUMNS} FROM contact_keys k "
                          "JOIN leads l ON l.id = k.lead_id WHERE", "k.key", set(keys))
    if unwritten is not None:  # this batch's own leads come last: they decide the verdict
        found += _matching(f"SELECT {_HOLDER_COLUMNS} FROM leads l WHERE", "l.id",
                           set(unwritten.lead_ids_of(keys)))
    by_email: dict[bytes, Holder] = {}
    by_phone: dict[bytes, Holder] = {}
    for email, phone, batch_id, holder_seller, row_number, lead_id in found:
        holder = Holder(batch_id, holder_seller, row_number, lead_id)
        for value, wanted, by_hash in ((email, emails, by_email), (phone, phones, by_phone)):
            if value is None or (value := bytes(value)) not in wanted:
                continue
            # The seller's own copy decides the verdict, so it wins over other sellers'.
            if value not in by_hash or holder_seller == seller_id:
                by_hash[value] = holder
    return by_email, by_phone


def _suppressed(kind: str, hashes: set[bytes]) -> set[bytes]:
    if kind not in ("email", "phone"):
        raise ValueError(kind)
    return {bytes(value) for value, in _matching(
        f"SELECT value_hash FROM suppression_entries WHERE kind = '{kind}' AND", "value_hash",
        hashes)}


@dataclass
class DedupeIndex:
    """What a chunk's contacts collide with: existing leads and the suppression list."""

    batch_id: int
    seller_id: int
    by_email: dict[bytes, Holder]
    by_phone: dict[bytes, Holder]
    suppressed_emails: set[bytes]
    suppressed_phones: set[bytes]

    @classmethod
    def load(cls, batch_id: int, seller_id: int, emails: set[bytes], phones: set[bytes],
             check_suppression: bool = True, unwritten: Optional[UnwrittenKeys] = None
             ) -> "DedupeIndex":
        by_email, by_phone = _existing_by_hash(emails, phones, seller_id, unwritten)
        return cls(batch_id, seller_id, by_email, by_phone,
                   _suppressed("email", emails) if check_suppression else set(),
                   _suppressed("phone", phones) if check_suppression else set())

    def verdict(self, email_hash, phone_hash) -> tuple[Optional[str], Optional[str], bool]:
        """(rejection code, its message, is a cross-seller duplicate)."""
        if email_hash in self.suppressed_emails or phone_hash in self.suppressed_phones:
            return "suppressed", verdict_message("suppressed"), False
        holders = [h for h in (self.by_email.get(email_hash), self.by_phone.get(phone_hash)) if h]
        for holder in holders:
            if holder.batch_id == self.batch_id:
                return ("duplicate_in_batch",
                        verdict_message("duplicate_in_batch", first_row=holder.row_number), False)
        if any(h.seller_id == self.seller_id for h in holders):
            return "duplicate_own", verdict_message("duplicate_own"), False
        return None, None, bool(holders)

    def reasons_of_rejected(self, email_hash, phone_hash, row_number: int
                            ) -> list[tuple[str, str]]:
        """A rejected row's suppression or duplicate reason, if it has one: only rows
        before it count, as a rejected row is no lead for later rows to repeat."""
        if email_hash in self.suppressed_emails or phone_hash in self.suppressed_phones:
            return [("suppressed", verdict_message("suppressed"))]
        holders = [h for h in (self.by_email.get(email_hash), self.by_phone.get(phone_hash)) if h]
        for holder in holders:
            if holder.batch_id == self.batch_id and holder.row_number < row_number:
                return [("duplicate_in_batch",
                         verdict_message("duplicate_in_batch", first_row=holder.row_number))]
        if any(h.seller_id == self.seller_id and h.batch_id != self.batch_id for h in holders):
            return [("duplicate_own", verdict_message("duplicate_own"))]
        return []

    def remember(self, email_hash, phone_hash, row_number: int, lead_id: int = 0) -> None:
        """A lead accepted with these contacts: it decides the verdict of later rows
        that repeat them, over any other seller's lead that holds them too (the only
        holders an accepted lead can have)."""
        holder = Holder(self.batch_id, self.seller_id, row_number, lead_id)
        if email_hash:
            self.by_email[email_hash] = holder
        if phone_hash:
            self.by_phone[phone_hash] = holder


LEAD_INSERT_COLUMNS = workers.ACCEPTED_COLUMNS + (
    "batch_id", "seller_id", "status", "cross_seller_duplicate", "floor_price", "cap",
    "sold_count", "created_at", "seller_points")
REJECTION_INSERT_COLUMNS = ("row_number", "code", "codes", "message_enc", "raw_enc", "batch_id")


def lead_row(batch: Batch | BatchRun, accepted: tuple, is_cross: bool,
             status: LeadStatus) -> tuple:
    """A worker's accepted row (Python objects) plus the batch's own columns
    (LEAD_INSERT_COLUMNS)."""
    return accepted + (batch.id, batch.seller_id, status.value, is_cross, batch.floor_price,
                       batch.cap, 0, utcnow(), batch.seller_points)


def _stored_time(when: datetime) -> str:
    """A datetime as the database's text, for the constant columns of insert_ready."""
    if db.session.get_bind().dialect.name == "sqlite":
        return when.astimezone(timezone.utc).isoformat(" ", "microseconds")[:26]
    return when.isoformat(" ", "microseconds")


def _store_chunk(batch: BatchRun, block: Block, result: "workers.ChunkResult",
                 bytes_read: int) -> None:
    """Store one validated block and its progress (the caller commits)."""
    accepted, rejected_contacts = result.accepted, result.rejected_contacts
    packed = batch.storage == "pgcopy"
    e_at, p_at = ((copy_ready.EMAIL_HASH, copy_ready.PHONE_HASH) if packed
                  else (workers.EMAIL_HASH, workers.PHONE_HASH))
    index = DedupeIndex.load(
        batch.id, batch.seller_id,
        {row[e_at] for row in accepted if row[e_at]} | {c[1] for c in rejected_contacts if c[1]},
        {row[p_at] for row in accepted if row[p_at]} | {c[2] for c in rejected_contacts if c[2]},
        batch.check_suppression, batch.unwritten)
    by_email, by_phone = index.by_email, index.by_phone
    suppressed = index.suppressed_emails or index.suppressed_phones
    leads, rejections, cross = [], [], 0
    append, batch_id, seller_id = leads.append, batch.id, batch.seller_id
    # Ids given here, so that the contact keys can name their leads.
    lead_ids = iter(allocate_ids(Lead.__table__, len(accepted)))
    for row in accepted:
        email_hash, phone_hash = row[e_at], row[p_at]
        # Most rows collide with nothing: two dict probes decide them.
        if not suppressed and by_email.get(email_hash) is None and by_phone.get(phone_hash) is None:
            lead_id = next(lead_ids)
            holder = Holder(batch_id, seller_id, row[0], lead_id)
            if email_hash:
                by_email[email_hash] = holder
            if phone_hash:
                by_phone[phone_hash] = holder
            append(row + (False, lead_id))
            continue
        code, message, is_cross = index.verdict(email_hash, phone_hash)
        if code is None:
            lead_id = next(lead_ids)
            index.remember(email_hash, phone_hash, row[0], lead_id)
            cross += is_cross
            append(row + (is_cross, lead_id))
        else:
            vault = current_vault()
            rejections.append((row[0], code, code, vault.encrypt(message),
                               vault.encrypt(json.dumps(block.record(row[0]), ensure_ascii=False)),
                               batch_id))
    rejected = result.rejected
    if rejected_contacts:
        rejected = list(rejected)
        vault = current_vault()
        for position, email_hash, phone_hash in rejected_contacts:
            number, code, codes, message_enc, raw_enc = rejected[position]
            for extra, sentence in index.reasons_of_rejected(email_hash, phone_hash, number):
                rejected[position] = (
                    number, code, f"{codes}{workers.CODES_SEPARATOR}{extra}",
                    vault.encrypt(f"{vault.decrypt(message_enc)} {sentence}"), raw_enc)
    rejections.extend(row + (batch.id,) for row in rejected)
    previous, last_row = batch.checkpoint, block.last
    # The conditional update is the run's claim on the batch: a second worker resumed
    # from the same checkpoint loses here and stops instead of storing rows twice.
    claimed = db.session.execute(
        sa.update(Batch).where(Batch.id == batch.id, Batch.rows_processed == previous,
                               Batch.status == BatchStatus.PROCESSING)
        .values(rows_processed=last_row, bytes_processed=bytes_read, heartbeat_at=utcnow(),
                rows_total=Batch.rows_total + block.rows, accepted=Batch.accepted + len(leads),
                rejected=Batch.rejected + len(rejections),
                cross_seller_duplicates=Batch.cross_seller_duplicates + cross)
        .execution_options(synchronize_session=False)).rowcount
    if claimed != 1:
        db.session.rollback()
        raise Conflict("Another worker is processing this batch.", code="batch_taken")
    with_email, with_phone = [r for r in leads if r[e_at]], [r for r in leads if r[p_at]]
    batch.unwritten.add(  # a lead's id is the last of its values
        _keys("email", [r[e_at] for r in with_email]) + _keys("phone", [r[p_at] for r in with_phone]),
        [r[-1] for r in with_email] + [r[-1] for r in with_phone])
    constants = {
        "batch_id": batch.id, "seller_id": batch.seller_id, "status": batch.lead_status.value,
        "floor_price": batch.floor_price, "cap": batch.cap, "sold_count": 0,
        "created_at": batch.created_at or utcnow(), "seller_points": batch.seller_points}
    if packed:
        copy_leads(leads, constants)
    else:
        constants["created_at"] = _stored_time(constants["created_at"])
        insert_ready(Lead.__table__, workers.ACCEPTED_COLUMNS + ("cross_seller_duplicate", "id"),
                     leads, constants)
    insert_ready(Rejection.__table__, REJECTION_INSERT_COLUMNS, rejections, {})
    batch.checkpoint = last_row


def copy_leads(leads: list[tuple], constants: dict[str, object],
               table: sa.Table = Lead.__table__) -> None:
    """PostgreSQL: write packed rows (copy_ready), each followed by its cross-seller
    flag and id, with the batch's own columns (`constants`), into `table` (leads, or
    a copy of it: the benchmark's)."""
    if not leads:
        return
    columns = copy_ready.leads_columns(workers.ACCEPTED_COLUMNS, tuple(constants))
    tail = b"".join(pgcopy.field(kind_of(table.c[name].type), value)
                    for name, value in constants.items())
    copy_binary(table, columns, copy_ready.leads_stream(leads, len(columns), tail))


def listing_status_for(seller: User) -> tuple[BatchStatus, LeadStatus]:
    if seller.trust_level is TrustLevel.VERIFIED:
        return BatchStatus.LIVE, LeadStatus.LIVE
    return BatchStatus.HELD, LeadStatus.HELD


def _finish(batch: Batch, run: BatchRun) -> None:
    """The batch's status change that makes its leads visible, all at once."""
    if batch.accepted == 0:
        batch_status = BatchStatus.REJECTED
        batch.error_code = "nothing_accepted"
        batch.error_message = ("No row of this file was accepted; download the rejected rows "
                               "to see why." if batch.rows_total else "The file has no data rows.")
    else:
        batch_status, lead_status = listing_status_for(batch.seller)
        if lead_status is not run.lead_status:  # the seller's trust changed during the run
            db.session.execute(sa.update(Lead).where(Lead.batch_id == batch.id)
                               .values(status=lead_status)
                               .execution_options(synchronize_session=False))
        do_not_call.flag(Lead.batch_id == batch.id)  # SPEC §14, before any is offered
    batch.status = batch_status
    batch.finished_at = utcnow()
    notifications.batch_processed(batch)
    db.session.commit()


def _fail(batch_id: int, exc: Exception) -> None:
    """Remove whatever the run stored and say why, in the seller's words where we can."""
    contact_keys.forget(Lead.batch_id == batch_id)
    db.session.execute(sa.delete(Lead).where(Lead.batch_id == batch_id))
    db.session.execute(sa.delete(Rejection).where(Rejection.batch_id == batch_id))
    batch = db.session.get(Batch, batch_id)
    batch.status = BatchStatus.FAILED
    batch.finished_at = utcnow()
    if isinstance(exc, DomainError):
        batch.error_code, batch.error_message = exc.code, exc.message
    else:
        log.exception("batch %s failed", batch_id)
        batch.error_code = "internal_error"
        batch.error_message = "Processing stopped on an error on our side; nothing of the file was kept. Please upload it again."
    notifications.batch_processed(batch)
    db.session.commit()


def stalled_batches(older_than_seconds: int) -> list[int]:
    """Batches still `processing` whose last progress is older than the limit."""
    from datetime import timedelta

    limit = utcnow() - timedelta(seconds=older_than_seconds)
    return list(db.session.scalars(
        sa.select(Batch.id).where(Batch.status == BatchStatus.PROCESSING,
                                  sa.func.coalesce(Batch.heartbeat_at, Batch.created_at) < limit)))
