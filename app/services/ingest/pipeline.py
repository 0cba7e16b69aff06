"""From an uploaded file to leads and rejections (SPEC §3).

`create_batch` checks the file and the terms and refuses a bad file before anything
is stored; `process_batch` (a background job) streams the file in chunks, which worker
processes (both cores) validate, normalise, encrypt and store, each chunk in a
transaction of its own with the batch's progress, in file order (workers.py,
storing.py); this process only reads the file and hands the chunks out. Leads are
stored with their final status but are offered to nobody while their batch is
`processing` (`Lead.offered`), so a batch is either complete or not there: a failure
removes what the run stored, and a crashed run resumes from its last commit.
"""
import dataclasses
import itertools
import json
import logging
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Iterator, Optional

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
from app.models.types import utcnow
from app.people import notifications
from app.services import accounts, contact_keys, do_not_call, market_stats, scoring
from app.core import pgcopy
from app.core.bulk import SessionConnection, kind_of, sqlite_insert, sqlite_insert_select
from app.services.ingest import copy_ready, storing, workers
from app.services.ingest.reader import UnreadableFile
from app.services.ingest.sources import CsvSource, open_upload
from app.services.ingest.validate import BATCH_DEFAULT, RowContext

log = logging.getLogger(__name__)

MAX_CAP = 20


@dataclass(frozen=True)
class BatchTerms:
    default_country: str
    floor_price: int
    cap: int
    mapping: dict[str, str]
    # Where default_country came from, as a rejected lead's phone verdict names it.
    default_from: str = BATCH_DEFAULT


def check_terms(default_country: str, floor_price, cap, mapping=None,
                default_from: str = BATCH_DEFAULT) -> BatchTerms:
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
    return BatchTerms(country, floor_price, cap,
                      {str(k): str(v or "") for k, v in (mapping or {}).items()}, default_from)


def check_can_sell(seller: User) -> None:
    refusal = upload_refusal(seller)
    if refusal is not None:
        raise refusal


def upload_refusal(seller: User) -> Optional[Forbidden]:
    """Why this account may not upload leads now, or None: the operations raise it, and
    the seller's pages show it in place of the Upload button and form."""
    if not seller.is_seller:
        return Forbidden("Only sellers can upload leads.", code="not_a_seller")
    try:
        accounts.require_verified_email(seller)
    except Forbidden as exc:
        return exc
    if seller.trust_level is TrustLevel.SUSPENDED:
        return Forbidden("Your account is suspended, so uploads are paused. Contact us to "
                         "review it.", code="seller_suspended")
    return None


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
    """The seller's latest batch of this same file that holds leads, or may yet (still
    processing): one whose rows were all rejected (a wrong mapping, say) has none for
    the file's rows to repeat, and uploading it again is how it is fixed."""
    return db.session.scalar(
        sa.select(Batch).where(Batch.seller_id == seller_id,
                               Batch.content_hash == preview.content_hash,
                               Batch.status != BatchStatus.FAILED,
                               sa.or_(Batch.accepted > 0,
                                      Batch.status == BatchStatus.PROCESSING))
        .order_by(Batch.id.desc()))


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
                 *, allow_same_file: bool = False, confirm_floor: bool = False) -> Batch:
    """Turn a staged upload into a queued batch, or raise and create nothing.

    The file is checked first (encoding, delimiter, a usable header, the mapping), so a
    file that is not a CSV never becomes a batch. The same file uploaded twice raises
    Conflict("duplicate_file") unless the seller confirmed it (`allow_same_file`), and
    a floor far above recent prices raises FloorNeedsConfirmation unless `confirm_floor`.
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
    check_upload_floor(terms.floor_price, confirm_floor)
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


def check_upload_floor(floor_price: int, confirm: bool) -> None:
    """An upload's floor against recent prices (market_stats.check_floor): the whole
    market's, as the file's regions are not read yet."""
    market_stats.check_floor(floor_price, (), confirm)


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
    except storing.BatchTaken:
        # Another run of this batch (a resumption of a run that was not dead after all)
        # stored a chunk first: it carries on, this one leaves it the batch and file.
        db.session.rollback()
        log.warning("batch %s: another run is processing it; this one stops", batch_id)
        return
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
    # The file was checked when the batch was created: its encoding and delimiter
    # stand, and the run skips the pass over the whole file that found them.
    shape = (batch.encoding, batch.delimiter) if batch.encoding and batch.delimiter else None
    plan = storing_plan(run)
    if run.checkpoint and plan.defer_keys:  # the keys a stopped run left unwritten
        contact_keys.restore(Lead.batch_id == run.id)
    # Nothing held while the workers store: on SQLite this would hold the write lock.
    db.session.commit()
    config = current_app.config
    with open_upload(path, mapping=mapping, shape=shape) as source:
        workers.pool_for(config).store_chunks(
            _chunks(source, config["INGEST_CHUNK_ROWS"], run.checkpoint),
            source.header_map.fields, ctx, plan, SessionConnection())
    _finish(db.session.get(Batch, run.id), run)


def _chunks(source: CsvSource, rows: int, after: int) -> Iterator[tuple]:
    """The file's blocks after row `after`, each with its place in the run."""
    previous = after
    for turn, block in enumerate(source.blocks(rows, after=after)):
        yield block, storing.Chunk(turn, previous, block.last, block.rows, source.bytes_read)
        previous = block.last


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


def storing_plan(run: BatchRun, leads: sa.Table = Lead.__table__) -> storing.Plan:
    """How the run's chunks are stored (storing.Plan) into `leads` (the leads table,
    or a copy of it: the benchmark's), on the session's database."""
    bind = db.session.get_bind()
    dialect, url = bind.dialect.name, bind.url
    constants = {
        "batch_id": run.id, "seller_id": run.seller_id, "status": run.lead_status.value,
        "floor_price": run.floor_price, "cap": run.cap, "sold_count": 0,
        "created_at": run.created_at or utcnow(), "seller_points": run.seller_points}
    rejections = Rejection.__table__
    common = dict(run=0, batch_id=run.id, seller_id=run.seller_id,
                  check_suppression=run.check_suppression)
    if dialect == "postgresql":
        columns = copy_ready.leads_columns(workers.ACCEPTED_COLUMNS, tuple(constants))
        sequence = db.session.execute(sa.text("SELECT pg_get_serial_sequence(:table, 'id')"),
                                      {"table": Lead.__tablename__}).scalar()
        return storing.Plan(
            dialect, url.set(drivername="postgresql").render_as_string(hide_password=False),
            leads_sql=_copy_statement(leads, columns),
            rejections_sql=_copy_statement(rejections, REJECTION_INSERT_COLUMNS),
            lead_fields=len(columns),
            lead_tail=b"".join(pgcopy.field(kind_of(leads.c[name].type), value)
                               for name, value in constants.items()),
            rejection_kinds=tuple(kind_of(rejections.c[name].type)
                                  for name in REJECTION_INSERT_COLUMNS),
            lead_sequence=sequence, hashes=(copy_ready.EMAIL_HASH, copy_ready.PHONE_HASH),
            **common)
    if dialect != "sqlite":
        raise NotImplementedError(dialect)
    constants["created_at"] = _stored_time(constants["created_at"])
    in_memory = url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"
    staged = workers.ACCEPTED_COLUMNS + (storing.STAGED_CROSS,)
    return storing.Plan(
        dialect, None if in_memory else os.path.abspath(url.database),
        leads_sql=sqlite_insert(leads, staged + ("id",), constants),
        staged_columns=workers.ACCEPTED_COLUMNS,
        copy_staged_sql=sqlite_insert_select(
            leads, {**dict(zip(staged, staged)), "id": "rowid + ?"}, constants,
            f"temp.{storing.STAGED_LEADS}"),
        rejections_sql=sqlite_insert(rejections, REJECTION_INSERT_COLUMNS, {}),
        hashes=(workers.EMAIL_HASH, workers.PHONE_HASH),
        defer_keys=bool(current_app.config["INGEST_KEYS_ROWS"]), **common)


def _copy_statement(table: sa.Table, columns: tuple[str, ...]) -> str:
    return f"COPY {table.name} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"


def _stored_time(when: datetime) -> str:
    """A datetime as SQLite's text, for the constant columns of sqlite_insert."""
    return when.astimezone(timezone.utc).isoformat(" ", "microseconds")[:26]


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
        do_not_call.flag_batch(batch.id)  # SPEC §14, before any is offered
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
