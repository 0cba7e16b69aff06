"""Single leads posted by a seller's site the moment a visitor fills a form (SPEC §4.5).

The same validation, encryption and duplicate rules as a CSV row; the lead joins the
seller's real-time batch of the day and is listed at once (or held for a `new`
seller). A refused lead is answered with its verdict and stored nowhere."""
from dataclasses import dataclass
from typing import Any, Mapping

import phonenumbers
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from app.core.bulk import SessionConnection, allocate_ids, bulk_insert
from app.errors import ValidationFailed
from app.extensions import db
from app.models import Batch, BatchSource, Lead, LeadStatus, User
from app.models.contact_keys import keys_of
from app.models.types import utcnow
from app.services import contact_keys, do_not_call, scoring
from app.services.ingest.fields import FIELDS
from app.services.crypto import current_vault
from app.services.ingest import workers
from app.services.ingest.pipeline import (
    LEAD_INSERT_COLUMNS, BatchRun, BatchTerms, check_can_sell, check_terms, lead_row,
    listing_status_for,
)
from app.services.ingest.storing import DedupeIndex
from app.services.ingest.validate import SENT_DEFAULT, RowContext, read_place
from app.services.ingest.workers import validate_chunk


class LeadRejected(ValidationFailed):
    """The row verdict of a real-time lead; `code` is the verdict's machine code."""


def _as_cell(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ";".join(str(v) for v in value)
    return "" if value is None else str(value)


def _todays_batch(seller: User, terms: BatchTerms) -> Batch:
    day = utcnow().strftime("%Y-%m-%d")
    query = sa.select(Batch).where(Batch.seller_id == seller.id, Batch.api_day == day,
                                   Batch.source == BatchSource.API)
    # Locking the day's batch serialises one seller's real-time posts, so two copies
    # of the same person posted at once cannot both pass the duplicate check.
    batch = db.session.scalar(query.with_for_update())
    if batch is None:
        batch_status, _ = listing_status_for(seller)
        batch = Batch(seller_id=seller.id, source=BatchSource.API, status=batch_status,
                      filename=f"Real-time leads {day}", api_day=day,
                      default_country=terms.default_country, floor_price=terms.floor_price,
                      cap=terms.cap, mapping={}, started_at=utcnow(), finished_at=utcnow(),
                      seller_points=scoring.seller_points_for(seller.id))
        try:
            with db.session.begin_nested():
                db.session.add(batch)
                db.session.flush()
        except IntegrityError:  # another process made the day's batch meanwhile: use it
            batch = db.session.scalar(query.with_for_update())
    return batch


def default_country_of(payload: dict) -> str:
    """The lead's default_country, taken out of `payload`. Left out, it is the country
    the lead's place names (its country, else its region or city, read as a CSV row's
    are: validate.read_place), else the one its phone's +prefix dials (a number written
    with its prefix is read the same in any country); ValidationFailed when none tells."""
    given = payload.pop("default_country", None)
    if given:
        return given
    cells = [payload.get(name) for name in ("country", "region", "city")]
    country_raw, region_raw, city = (cell.strip() if isinstance(cell, str) else ""
                                     for cell in cells)
    country, region, unknown = read_place(country_raw, region_raw, city or None, None)
    if country or region:
        return country or region[:2]
    phone = payload.get("phone")
    if isinstance(phone, str) and phone.strip().startswith("+"):
        try:
            code = phonenumbers.region_code_for_country_code(
                phonenumbers.parse(phone, None).country_code)
        except phonenumbers.NumberParseException:
            code = phonenumbers.UNKNOWN_REGION
        if code != phonenumbers.UNKNOWN_REGION:
            return code
    unknown_text = f"“{unknown[1]}” is not a {unknown[0]} we know. " if unknown else ""
    raise ValidationFailed(
        f"{unknown_text}Give default_country (a two-letter country code such as RU, ES or "
        "US), the lead's country or region, or its phone with its +country prefix: the "
        "lead's phone number and region are read in that country.",
        code="invalid_default_country", details={"field": "default_country"})


def terms_of(payload: dict) -> BatchTerms:
    """A real-time post's terms (default_country, floor_price, cap), taken out of
    `payload`; ValidationFailed naming every field that is wrong."""
    return check_terms(default_country_of(payload), payload.pop("floor_price"),
                       payload.pop("cap"), default_from=SENT_DEFAULT)


def validate_lead(seller: User, payload: Mapping[str, Any], terms: BatchTerms) -> tuple:
    """The lead as an accepted row (no database), or LeadRejected with its verdict."""
    check_can_sell(seller)
    values = {name: _as_cell(payload.get(name)) for name in FIELDS if payload.get(name) is not None}
    ctx = RowContext(default_country=terms.default_country, now=utcnow(),
                     default_from=terms.default_from)
    result = validate_chunk([(1, list(values.values()))], tuple(values), ctx, current_vault())
    if result.rejected:
        _, code, codes, message_enc, _ = result.rejected[0]
        raise LeadRejected(current_vault().decrypt(message_enc), code=code,
                           details={"codes": codes.split(workers.CODES_SEPARATOR)})
    return result.accepted[0]


@dataclass(frozen=True)
class StoredLead:
    id: int
    cross_seller_duplicate: bool
    status: LeadStatus  # as stored: matching sells copies, it does not change the status


_COLUMNS = ("id",) + LEAD_INSERT_COLUMNS
_CROSS, _PHONE = LEAD_INSERT_COLUMNS.index("cross_seller_duplicate"), workers.PHONE_HASH


def store_leads(seller: User, rows: list[tuple[tuple, BatchTerms]]
                ) -> list[StoredLead | LeadRejected]:
    """Store validated rows of one seller in this transaction, in order; each becomes
    its StoredLead or the LeadRejected of a duplicate (of a stored lead or of an earlier
    row). Operation: writes, the caller commits. The day's batch is locked once for
    all of them, and the leads go in one COPY with ids taken beforehand (an ORM insert
    built a Lead per row and a multi-row INSERT whose text psycopg parsed again every
    time: two fifths of a real-time group's storing, docs/scaling.md)."""
    # SPEC §14: the do-not-call lists are probed for the rows' phones (one lookup, none
    # without phones) before the day's batch is locked, which serialises the seller's
    # posts; only leads whose phone is listed go through do_not_call.flag.
    listed = do_not_call.listed(row[workers.PHONE_HASH] for row, _ in rows)
    batch = _todays_batch(seller, rows[0][1])
    emails = {row[workers.EMAIL_HASH] for row, _ in rows} - {None}
    phones = {row[workers.PHONE_HASH] for row, _ in rows} - {None}
    index = DedupeIndex.load(SessionConnection().begin(), batch.id, seller.id, emails, phones)
    _, lead_status = listing_status_for(seller)
    results: list[StoredLead | LeadRejected | None] = []
    kept = []  # (position in results, row to insert without its id)
    contacts = []  # (email hash, phone hash) of each kept row: its contact keys
    for row, terms in rows:
        email_hash, phone_hash = row[workers.EMAIL_HASH], row[workers.PHONE_HASH]
        code, message, is_cross = index.verdict(email_hash, phone_hash)
        if code == "duplicate_in_batch":  # today's earlier post: no "file" to point into
            code, message = "duplicate_own", index.own_message(email_hash, phone_hash)
        if code is not None:
            results.append(LeadRejected(message, code=code))
            continue
        # The lead carries its own terms: each real-time post may set floor and cap.
        terms_of_lead = BatchRun(batch.id, seller.id, terms.floor_price, terms.cap, 0,
                                 seller_points=batch.seller_points)
        batch.rows_total += 1
        index.remember(email_hash, phone_hash, batch.rows_total)
        contacts.append((email_hash, phone_hash))
        kept.append((len(results), (batch.rows_total,) + lead_row(
            terms_of_lead, row, is_cross, lead_status)[1:]))
        results.append(None)
        batch.rows_processed += 1
        batch.accepted += 1
        batch.cross_seller_duplicates += int(is_cross)
    ids = allocate_ids(Lead.__table__, len(kept))
    bulk_insert(Lead.__table__, _COLUMNS, [(lead_id,) + row for lead_id, (_, row) in zip(ids, kept)])
    # Written past the ORM, so past its contact-key events: the next post finds them.
    contact_keys.store([pair for lead_id, (email_hash, phone_hash) in zip(ids, contacts)
                        for pair in keys_of(lead_id, email_hash, phone_hash)])
    flagged = [lead_id for lead_id, (_, row) in zip(ids, kept) if row[_PHONE] in listed]
    statuses = {}
    if flagged:
        do_not_call.flag(Lead.id.in_(flagged))
        # A lead with only a listed phone is delisted by the flag.
        statuses = dict(db.session.execute(sa.select(Lead.id, Lead.status)
                                           .where(Lead.id.in_(flagged))).all())
    for lead_id, (position, row) in zip(ids, kept):
        results[position] = StoredLead(lead_id, row[_CROSS], statuses.get(lead_id, lead_status))
    return results  # type: ignore[return-value]


def ingest_lead(seller: User, payload: Mapping[str, Any], terms: BatchTerms) -> Lead:
    """Validate and store one lead, or raise LeadRejected with its verdict."""
    [stored] = store_leads(seller, [(validate_lead(seller, payload, terms), terms)])
    if isinstance(stored, LeadRejected):
        raise stored
    return db.session.get(Lead, stored.id)
