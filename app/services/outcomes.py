"""Buyers record what became of each delivered lead (SPEC §8): contacted, converted
(with the revenue it brought), or bad. One outcome per sale, replaced when the buyer
learns more. Outcomes feed the buyer's KPIs (services.kpis) and, aggregated and
without the buyer's identity, the seller's record (services.scoring) and feedback.
Operations (flush; callers commit): each recording is one audit entry, with counts
for many leads at once."""
import csv
import io
from dataclasses import dataclass
from typing import Optional

import sqlalchemy as sa

from app.core import figures
from app.errors import NotFound, ValidationFailed
from app.extensions import db
from app.formatting import parse_money
from app.models import Lead, OutcomeStatus, Sale, SaleOutcome, User
from app.models.types import utcnow
from app.services import audit, ledger

STATUSES = tuple(status.value for status in OutcomeStatus)
MAX_CSV_ROWS = 100_000
SHOWN_ERRORS = 200
IN_CHUNK = 1000
AUDITED_SALE_IDS = 20  # an entry lists the sales when they are this few


def check(status, revenue) -> tuple[OutcomeStatus, Optional[int]]:
    """A valid (status, revenue in minor units), or ValidationFailed naming the field."""
    text = str(status or "").strip().lower()
    if text not in STATUSES:
        raise ValidationFailed(f"The status must be one of {', '.join(STATUSES)}.",
                               code="invalid_outcome", details={"field": "status"})
    if revenue in ("", None):
        return OutcomeStatus(text), None
    if text != OutcomeStatus.CONVERTED.value:
        raise ValidationFailed("Revenue is recorded only for converted leads.",
                               code="invalid_outcome", details={"field": "revenue"})
    if isinstance(revenue, bool) or not isinstance(revenue, int):
        raise ValidationFailed("The revenue must be a whole number of minor units.",
                               code="invalid_outcome", details={"field": "revenue"})
    if not 0 <= revenue <= ledger.MAX_AMOUNT:
        raise ValidationFailed("The revenue cannot be negative or that large.",
                               code="invalid_outcome", details={"field": "revenue"})
    return OutcomeStatus(text), revenue


def _values(sale_id: int, order_id: int, buyer_id: int, seller_id: int, batch_id: int,
            sold_at, status: OutcomeStatus, revenue: Optional[int], now) -> dict:
    return {"sale_id": sale_id, "order_id": order_id, "buyer_id": buyer_id,
            "seller_id": seller_id, "batch_id": batch_id, "sold_at": sold_at,
            "status": status, "revenue": revenue, "recorded_at": now, "updated_at": now}


def _sales_of(buyer: User, sale_ids: list[int]) -> dict[int, tuple]:
    """sale id → (order, buyer, seller, batch, sold at) for the buyer's own sales."""
    found = {}
    for start in range(0, len(sale_ids), IN_CHUNK):
        rows = db.session.execute(
            sa.select(Sale.id, Sale.order_id, Sale.buyer_id, Sale.seller_id, Lead.batch_id,
                      Sale.created_at)
            .join(Lead, Sale.lead_id == Lead.id)
            .where(Sale.id.in_(sale_ids[start:start + IN_CHUNK]), Sale.buyer_id == buyer.id))
        found.update({row[0]: tuple(row[1:]) for row in rows})
    return found


def _store(rows: list[dict]) -> None:
    """Insert new outcomes and replace existing ones, in the caller's transaction."""
    ids = [row["sale_id"] for row in rows]
    figures.changed(*{row["buyer_id"] for row in rows}, *{row["seller_id"] for row in rows})
    existing = set()
    for start in range(0, len(ids), IN_CHUNK):
        existing.update(db.session.scalars(sa.select(SaleOutcome.sale_id).where(
            SaleOutcome.sale_id.in_(ids[start:start + IN_CHUNK]))))
    new = [row for row in rows if row["sale_id"] not in existing]
    changed = [{"sale_id": row["sale_id"], "status": row["status"], "revenue": row["revenue"],
                "updated_at": row["updated_at"]} for row in rows if row["sale_id"] in existing]
    if new:
        db.session.execute(sa.insert(SaleOutcome), new)
    if changed:
        db.session.execute(sa.update(SaleOutcome), changed)  # bulk UPDATE by primary key
    db.session.expire_all()


def record_many(buyer: User, entries: list[tuple[int, OutcomeStatus, Optional[int]]], *,
                source: str = "marked", skipped: Optional[int] = None) -> int:
    """Record checked (sale id, status, revenue) entries of the buyer's own sales, all in
    the caller's transaction; NotFound (and nothing stored) if one is not the buyer's.
    `source` says for the audit log where they came from: "marked" (a page or the
    API) or "csv" (a file, with the rows it `skipped`)."""
    sales = _sales_of(buyer, [sale_id for sale_id, _, _ in entries])
    missing = [sale_id for sale_id, _, _ in entries if sale_id not in sales]
    if missing:
        raise NotFound(f"No sale {missing[0]} among yours.", details={"sale_ids": missing[:50]})
    now = utcnow()
    _store([_values(sale_id, *sales[sale_id], status, revenue, now)
            for sale_id, status, revenue in entries])
    _audit(buyer, entries, source, skipped)
    return len(entries)


def _audit(buyer: User, entries: list[tuple[int, OutcomeStatus, Optional[int]]], source: str,
           skipped: Optional[int]) -> None:
    """One entry however many leads: how many got each outcome (and the sales, if few)."""
    statuses: dict[str, int] = {}
    for _, status, _ in entries:
        statuses[status.value] = statuses.get(status.value, 0) + 1
    details = {"source": source, "leads": len(entries), "outcomes": statuses}
    if skipped is not None:
        details["rows_skipped"] = skipped
    if len(entries) == 1:
        subject = {"subject_type": "sale", "subject_id": entries[0][0]}
    else:
        subject = {}
        if len(entries) <= AUDITED_SALE_IDS:
            details["sales"] = [sale_id for sale_id, _, _ in entries]
    audit.record("outcomes.recorded", actor=buyer, details=details, **subject)


def record(buyer: User, sale_id: int, status, revenue=None) -> SaleOutcome:
    """Record (or replace) the outcome of one of the buyer's sales."""
    status, revenue = check(status, revenue)
    record_many(buyer, [(sale_id, status, revenue)])
    return db.session.get(SaleOutcome, sale_id)


@dataclass(frozen=True)
class ImportResult:
    applied: int
    skipped: int  # rows without a status (an exported file's unmarked leads)


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "cp1251"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def _reader(text: str):
    first = text.split("\n", 1)[0]
    delimiter = max((",", ";", "\t"), key=first.count)
    return csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)


def import_csv(buyer: User, data: bytes) -> ImportResult:
    """Outcomes from a CSV with the columns sale_id, status (or outcome) and revenue (an
    amount such as 1250.00, for converted leads). Every row is checked first; if any
    is wrong, ValidationFailed lists the rows (details["errors"]) and nothing is stored."""
    rows = _reader(_decode(data))
    header = [h.strip().lower().lstrip("\ufeff") for h in next(rows, [])]
    status_column = "status" if "status" in header else "outcome"
    if "sale_id" not in header or status_column not in header:
        raise ValidationFailed(
            "The file needs a header row with the columns sale_id, status and revenue "
            "(revenue only for converted leads).", code="invalid_outcomes_file")
    at = {name: header.index(name) for name in ("sale_id", status_column, "revenue")
          if name in header}
    errors, parsed, seen, skipped = [], [], {}, 0

    def cell(values, name):
        i = at.get(name)
        return values[i].strip().lstrip("'") if i is not None and i < len(values) else ""

    for number, values in enumerate(rows, start=2):
        if not any(v.strip() for v in values):
            continue
        if len(parsed) + len(errors) + skipped >= MAX_CSV_ROWS:
            raise ValidationFailed(f"At most {MAX_CSV_ROWS:,} rows per file; split it.",
                                   code="invalid_outcomes_file")
        raw_id, status, raw_revenue = (cell(values, "sale_id"), cell(values, status_column),
                                       cell(values, "revenue"))
        if not status and not raw_revenue:
            skipped += 1
            continue
        try:
            sale_id = int(raw_id)
        except ValueError:
            errors.append({"row": number, "field": "sale_id",
                           "message": f"“{raw_id}” is not a sale id."})
            continue
        if sale_id in seen:
            errors.append({"row": number, "field": "sale_id",
                           "message": f"Sale {sale_id} is already in row {seen[sale_id]}."})
            continue
        seen[sale_id] = number
        try:
            revenue = parse_money(raw_revenue) if raw_revenue else None
        except ValueError as exc:
            errors.append({"row": number, "field": "revenue", "message": str(exc)})
            continue
        try:
            parsed.append((number, sale_id, *check(status, revenue)))
        except ValidationFailed as exc:
            errors.append({"row": number, "field": exc.details["field"], "message": exc.message})
    sales = _sales_of(buyer, [sale_id for _, sale_id, _, _ in parsed])
    for number, sale_id, _, _ in parsed:
        if sale_id not in sales:
            errors.append({"row": number, "field": "sale_id",
                           "message": f"Sale {sale_id} is not one of your delivered leads."})
    if errors:
        errors.sort(key=lambda e: e["row"])
        raise ValidationFailed(
            f"{len(errors):,} row(s) need fixing; nothing was recorded.",
            code="invalid_outcomes", details={"errors": errors[:SHOWN_ERRORS],
                                              "error_count": len(errors)})
    if not parsed:
        raise ValidationFailed("The file has no outcomes to record.", code="invalid_outcomes_file")
    record_many(buyer, [(sale_id, status, revenue) for _, sale_id, status, revenue in parsed],
                source="csv", skipped=skipped)
    return ImportResult(len(parsed), skipped)
