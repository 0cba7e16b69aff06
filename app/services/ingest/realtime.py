"""Single leads posted by a seller's site the moment a visitor fills a form (SPEC §4.5).

The same validation, encryption and duplicate rules as a CSV row; the lead joins the
seller's real-time batch of the day and is listed at once (or held for a `new`
seller). A refused lead is answered with its verdict and stored nowhere."""
from typing import Any, Mapping

import sqlalchemy as sa

from app.errors import ValidationFailed
from app.extensions import db
from app.models import Batch, BatchSource, BatchStatus, Lead, User
from app.models.types import utcnow
from app.services.ingest.fields import FIELDS
from app.services.ingest.pipeline import (
    BatchTerms, DedupeIndex, _lead_values, check_can_sell, listing_status_for, vault,
)
from app.services.ingest.validate import RowContext, verdict_message
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
                      cap=terms.cap, mapping={}, started_at=utcnow(), finished_at=utcnow())
        db.session.add(batch)
        db.session.flush()
    return batch


def ingest_lead(seller: User, payload: Mapping[str, Any], terms: BatchTerms) -> Lead:
    """Validate and store one lead, or raise LeadRejected with its verdict."""
    check_can_sell(seller)
    values = {name: _as_cell(payload.get(name)) for name in FIELDS if payload.get(name) is not None}
    ctx = RowContext(default_country=terms.default_country, now=utcnow())
    row = validate_chunk([(1, values, list(values.values()))], ctx, vault())[0]
    if not row.accepted:
        raise LeadRejected(row.message, code=row.code)
    batch = _todays_batch(seller, terms)
    row.row_number = batch.rows_total + 1
    code, message, is_cross = DedupeIndex.for_rows([row], batch.id, seller.id).verdict(row)
    if code == "duplicate_in_batch":  # today's earlier post: no "file" to point into
        code, message = "duplicate_own", verdict_message("duplicate_own")
    if code is not None:
        raise LeadRejected(message, code=code)
    _, lead_status = listing_status_for(seller)
    lead_terms = BatchTerms(terms.default_country, terms.floor_price, terms.cap, {})
    values = _lead_values(batch, row, is_cross) | {
        "status": lead_status, "floor_price": lead_terms.floor_price, "cap": lead_terms.cap}
    lead = Lead(**values)
    db.session.add(lead)
    batch.rows_total += 1
    batch.rows_processed += 1
    batch.accepted += 1
    batch.cross_seller_duplicates += int(is_cross)
    if batch.status is BatchStatus.REJECTED:  # an empty day's batch that now has a lead
        batch.status = listing_status_for(seller)[0]
    db.session.flush()
    return lead
