"""What a buyer receives for each sale: the lead with its contacts, as JSON (API and
webhook) or CSV. Contacts are decrypted only here, for the buyer who bought them."""
from datetime import datetime, timezone, tzinfo
from functools import partial
from typing import Iterator

import sqlalchemy as sa
from flask import current_app

from app.consent import certificates
from app.core.mail import public_url
from app.extensions import db
from app.models import Lead, Order, Sale, SaleOutcome
from app.people.opt_out import code as opt_out_code
from app.services import scoring
from app.services.exports import (
    NUMBER, PHONE, Formatted, csv_lines, major_units, money_cell, xlsx_chunks,
)
from app.services.crypto import current_vault
from app.services.regions_tz import consent_zone as person_zone

CSV_COLUMNS = ["sale_id", "sold_at", "price", "first_name", "last_name", "email", "phone",
               "age", "gender", "region", "country", "marital_status", "employed", "interests",
               "budget", "authority", "need", "timeframe", "consent_at", "source_url",
               "consent_text", "ip", "lead_id",
               # Added later, so at the end: imports written for the columns above still work.
               "score", "temperature", "outcome", "revenue",
               "sub_id", "city", "postal_code", "trustedform_cert_url", "jornaya_leadid",
               # SPEC §14: the person's clock, and the code for opting out by phone.
               "timezone", "local_time", "opt_out_code",
               # ... and the exchange's own certificate of a hosted form's consent.
               "consent_certificate_url",
               # SPEC §5: `price` and `revenue` are in major units of this currency.
               "currency"]
LATER_LEAD_COLUMNS = CSV_COLUMNS[CSV_COLUMNS.index("sub_id"):-1]
# Cells that are not free text (app/services/exports.py): numbers we wrote, and the
# validated E.164 phone, kept text in spreadsheets.
CSV_KINDS = {**dict.fromkeys(("sale_id", "price", "age", "lead_id", "score", "revenue"), NUMBER),
             "phone": PHONE}


def sale_record(sale: Sale, lead: Lead, outcome: SaleOutcome | None = None,
                certificate: str | None = None) -> dict:
    """The sale as its buyer receives it. The score is the lead's as of the sale (what
    the order's min_score was checked against), not today's faded one. `certificate`:
    the public id of the lead's consent certificate, if a hosted form recorded one
    (certificates.by_lead)."""
    contact = current_vault().open_contact(lead.contact_enc)
    score = scoring.score_at(lead.score_base + lead.seller_points, lead.consent_at,
                             sale.created_at)
    zone = person_zone(lead.region, lead.country)
    return {
        "sale_id": sale.id, "order_id": sale.order_id, "price": sale.price,
        "currency": current_app.config["CURRENCY"], "sold_at": sale.created_at.isoformat(),
        "lead": {
            "id": lead.id, "first_name": contact["first_name"],
            "last_name": contact["last_name"], "email": contact["email"],
            # On its country's do-not-call list: never given for phone contact (§14).
            "phone": None if lead.do_not_call else contact["phone"],
            "do_not_call": lead.do_not_call, "age": lead.age, "gender": lead.gender,
            "region": lead.region, "country": lead.country,
            "marital_status": lead.marital_status, "employed": lead.employed,
            "interests": list(lead.interests or []), "budget": lead.budget,
            "authority": lead.authority, "need": lead.need, "timeframe": lead.timeframe,
            "consent_at": lead.consent_at.isoformat(), "source_url": lead.source_url,
            "consent_text": lead.consent_text, "ip": contact["ip"],
            "trustedform_cert_url": lead.trustedform_cert_url,
            "jornaya_leadid": lead.jornaya_leadid, "sub_id": lead.sub_id, "city": lead.city,
            "postal_code": lead.postal_code,
            "score": score, "temperature": scoring.temperature(score),
            # Erased at the person's request: the contacts above are gone (null).
            "erased_at": lead.erased_at.isoformat() if lead.erased_at else None,
            # SPEC §14: the person's time zone and their local time at the sale, to
            # call them at a decent hour ...
            "timezone": str(zone), "local_time": sale.created_at.astimezone(zone).isoformat(),
            # ... and what to put in the messages sent to them: with it they can opt out
            # by phone (app.people.opt_out).
            "opt_out_code": opt_out_code(sale.id), "opt_out_url": public_url("/opt-out"),
            # What the person saw and agreed to, as the exchange recorded it (SPEC §14).
            "consent_certificate_url":
                certificate and public_url(f"/certificates/{certificate}"),
        },
        "outcome": None if outcome is None else {
            "status": outcome.status.value, "revenue": outcome.revenue,
            "updated_at": outcome.updated_at.isoformat()},
    }


def people_of(sale_ids: list[int]) -> dict[int, dict]:
    """The lead each of these sales delivered, as its buyer received it (whom an opt-out
    notice is about)."""
    if not sale_ids:
        return {}
    rows = db.session.execute(sa.select(Sale, Lead).join(Lead, Sale.lead_id == Lead.id)
                              .where(Sale.id.in_(sale_ids))).all()
    certified = certificates.by_lead([lead.id for _, lead in rows])
    return {sale.id: sale_record(sale, lead, certificate=certified.get(lead.id))["lead"]
            for sale, lead in rows}


def delivered(order: Order, *, limit: int | None = None, offset: int = 0,
              sale_ids: list[int] | None = None) -> Iterator[dict]:
    """The order's sales with their leads (or those of them in `sale_ids`), oldest
    first."""
    query = (sa.select(Sale, Lead, SaleOutcome).join(Lead, Sale.lead_id == Lead.id)
             .outerjoin(SaleOutcome, SaleOutcome.sale_id == Sale.id)
             .where(Sale.order_id == order.id).order_by(Sale.id).offset(offset))
    if sale_ids is not None:
        query = query.where(Sale.id.in_(sale_ids))
    if limit is not None:
        query = query.limit(limit)
    for rows in db.session.execute(query.execution_options(yield_per=1000)).partitions():
        certified = certificates.by_lead([lead.id for _, lead, _ in rows])
        for sale, lead, outcome in rows:
            yield sale_record(sale, lead, outcome, certified.get(lead.id))


def _export_rows(order: Order, sale_ids: list[int] | None,
                 clock: tzinfo | None = None) -> Iterator[list]:
    """The rows of CSV_COLUMNS: amounts in major units, moments in ISO 8601 text; or,
    given `clock` (a workbook's), typed cells: amounts numbers in the currency's format,
    sold_at and consent_at on `clock`'s wall clock, local_time on the person's."""
    money = major_units if clock is None else money_cell
    moment = (lambda text: text) if clock is None else partial(_on_clock, zone=clock)
    local = moment if clock is None else _local_clock
    for record in delivered(order, sale_ids=sale_ids):
        lead, outcome = record["lead"], record["outcome"] or {}
        currency = record["currency"]
        yield [record["sale_id"], moment(record["sold_at"]), money(record["price"], currency),
               *[";".join(lead[c]) if c == "interests"
                 else moment(lead[c]) if c == "consent_at" else lead[c]
                 for c in CSV_COLUMNS[3:CSV_COLUMNS.index("lead_id")]],
               lead["id"], lead["score"], lead["temperature"], outcome.get("status"),
               money(outcome.get("revenue"), currency),
               *[local(lead[c]) if c == "local_time" else lead[c]
                 for c in LATER_LEAD_COLUMNS], currency]


def _on_clock(text: str, zone: tzinfo) -> Formatted:
    """An ISO 8601 moment as a workbook's date on `zone`'s clock; its format names the
    zone, since a workbook's dates carry none."""
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:  # stored UTC
        when = when.replace(tzinfo=timezone.utc)
    name = getattr(zone, "key", None) or str(zone)
    return Formatted(when.astimezone(zone).replace(tzinfo=None),
                     f'yyyy-mm-dd hh:mm:ss "{name}"')


def _local_clock(text: str) -> Formatted:
    """The person's local time (its zone is the `timezone` column) as a workbook's date."""
    return Formatted(datetime.fromisoformat(text).replace(tzinfo=None), "yyyy-mm-dd hh:mm")


def delivered_csv(order: Order, sale_ids: list[int] | None = None) -> Iterator[str]:
    """The order's leads (or those of them in `sale_ids`) as CSV: money in major units
    with a `currency` column, the phone as text spreadsheets keep, free text defused
    (app/services/exports.py)."""
    return csv_lines(CSV_COLUMNS, _export_rows(order, sale_ids), CSV_KINDS)


def delivered_xlsx(order: Order, zone: tzinfo) -> Iterator[bytes]:
    """The same columns as an Excel workbook of typed cells: phones text (a CSV's
    "+15551234567" opens as a number), ids and scores numbers, price and revenue numbers
    in major units in the currency's number format, sold_at and consent_at dates on
    `zone`'s clock (the reader's, as the pages show moments), local_time on the
    person's."""
    return xlsx_chunks("Leads", CSV_COLUMNS, _export_rows(order, None, zone))
