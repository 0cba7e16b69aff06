"""Queries (read only): an order's delivered leads as a work list (SPEC §8, §10) — a
page of at most PAGE_SIZE plain rows (columns, not ORM objects), filtered by outcome,
return state, sale date and temperature, searched through the keyed contact hashes;
`shape` opens a row's contacts (app/buyer/lead_rows.py, for the rows shown only).

Search: a lead's contacts are stored only encrypted, with keyed hashes of the
normalised email and phone (app/services/crypto.py). A search is therefore an exact
email, an exact phone number (normalised as ingest does, in the order's countries) or
a sale number; names have no hash and cannot be searched without decrypting every lead."""
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from types import SimpleNamespace
from typing import Mapping, Optional

import sqlalchemy as sa

from app.core import bounds
from app.core.dialect import postgres
from app.errors import NotFound
from app.extensions import db
from app.formatting import format_when, money_input, user_zone
from app.models import (
    OPEN_RETURN_STATUSES, ConsentCertificate, Lead, Order, OutcomeStatus, Return, ReturnStatus,
    Sale, SaleOutcome,
)
from app.services import scoring
from app.services.crypto import current_vault
from app.services.ingest.validate import normalise_email, normalise_phone
from app.services.regions_tz import consent_zone

PAGE_SIZE = 50
OUTCOMES = {"none": "No outcome yet", "contacted": "Contacted", "converted": "Converted",
            "bad": "Bad"}
RETURN_STATES = {"none": "Not returned", "open": "Return open", "accepted": "Refunded",
                 "rejected": "Return refused"}
TEMPERATURES = {"hot": "Hot", "warm": "Warm", "cold": "Cold"}
SEARCH_HELP = ("An exact email, phone number or sale number. Names are stored encrypted "
               "and cannot be searched.")
_SALE_NUMBER = re.compile(r"#?\d{1,18}")


@dataclass(frozen=True)
class View:
    """What the buyer asked the list to show. Unknown or malformed values are dropped
    (a filter form is not worth an error page), except the page number."""

    q: str = ""
    outcome: str = ""
    returned: str = ""
    temperature: str = ""
    sold_from: Optional[date] = None
    sold_to: Optional[date] = None
    page: int = 1

    @classmethod
    def parse(cls, values: Mapping[str, str], *, search: bool = True) -> "View":
        def choice(name, allowed):
            value = (values.get(name) or "").strip()
            return value if value in allowed else ""

        def day(name):
            try:
                return date.fromisoformat((values.get(name) or "").strip())
            except ValueError:
                return None

        return cls(q=(values.get("q") or "").strip()[:254] if search else "",
                   outcome=choice("outcome", OUTCOMES), returned=choice("returned", RETURN_STATES),
                   temperature=choice("temperature", TEMPERATURES),
                   sold_from=day("sold_from"), sold_to=day("sold_to"),
                   page=bounds.PAGE.take(values.get("page") or "1", "page"))

    @property
    def filtered(self) -> bool:
        return any((self.q, self.outcome, self.returned, self.temperature, self.sold_from,
                    self.sold_to))

    def link_args(self) -> dict:
        """The filters that may go in a URL: everything but the search, which may be a
        person's email or phone (never in clear in a URL or an access log)."""
        return {name: value for name, value in (
            ("outcome", self.outcome), ("returned", self.returned),
            ("temperature", self.temperature), ("sold_from", self.sold_from),
            ("sold_to", self.sold_to)) if value}


@dataclass
class Page:
    rows: list[sa.Row]  # ROW_COLUMNS, as read: `shape` makes one a row the page shows
    total: int  # rows matching the view, on every page
    view: View
    pages: int = field(init=False)

    def __post_init__(self):
        self.pages = max(1, -(-self.total // PAGE_SIZE))


def _days_from_consent_to_sale():
    if postgres():
        return sa.extract("epoch", Sale.created_at - Lead.consent_at) / 86400.0
    return sa.func.julianday(Sale.created_at) - sa.func.julianday(Lead.consent_at)


def score_at_sale_sql():
    """The lead's score when it was sold, as SQL: what `scoring.score_at(..., sold at)`
    gives in Python (the stored parts top out at 70 and freshness at 30, so the
    score's cap of 100 never bites)."""
    days = _days_from_consent_to_sale()
    fresh = sa.case(*[(days <= steps, points) for steps, points in scoring.FRESHNESS_STEPS],
                    else_=0)
    return Lead.score_base + Lead.seller_points + fresh


def _temperature_condition(temperature: str):
    score = score_at_sale_sql()
    if temperature == "hot":
        return score >= scoring.HOT
    if temperature == "warm":
        return sa.and_(score >= scoring.WARM, score < scoring.HOT)
    return score < scoring.WARM


def _order_countries(order: Order) -> list[str]:
    """Where the order's leads' phone numbers may be from, for a number typed without
    its +country prefix: the countries its leads have."""
    return [country for country in db.session.scalars(
        sa.select(Lead.country).join(Sale, Sale.lead_id == Lead.id)
        .where(Sale.order_id == order.id, Lead.country.is_not(None))
        .distinct().limit(20)) if country]


def _search_condition(order: Order, text: str):
    """The leads a search names: by keyed hash of the email or phone, or a sale number.
    A text that is none of these matches nothing."""
    vault = current_vault()
    terms = []
    if "@" in text:
        email = normalise_email(text)
        if email:
            terms.append(Lead.email_hash == vault.dedupe_hash("email", email))
    else:
        if _SALE_NUMBER.fullmatch(text):
            number = int(text.lstrip("#"))
            if number <= bounds.BIG_ID.maximum:
                terms.append(Sale.id == number)
        regions = [None] if text.startswith("+") else _order_countries(order) or [None]
        phones = {parsed[0] for region in regions
                  if (parsed := normalise_phone(text, region)) is not None}
        if phones:
            terms.append(Lead.phone_hash.in_([vault.dedupe_hash("phone", p) for p in phones]))
    return sa.or_(*terms) if terms else sa.false()


def _day_start(day: date) -> datetime:
    """The reader's midnight of `day` (the page shows sale times on their clock), in UTC."""
    return datetime.combine(day, time(), tzinfo=user_zone()).astimezone(timezone.utc)


def _conditions(order: Order, view: View) -> list:
    return [Sale.order_id == order.id, *_filters(order, view)]


def _filters(order: Order, view: View) -> list:
    conditions = []
    if view.q:
        conditions.append(_search_condition(order, view.q))
    if view.outcome == "none":
        conditions.append(SaleOutcome.sale_id.is_(None))
    elif view.outcome:
        conditions.append(SaleOutcome.status == OutcomeStatus(view.outcome))
    if view.returned == "none":
        conditions.append(Return.id.is_(None))
    elif view.returned == "open":
        conditions.append(Return.status.in_(OPEN_RETURN_STATUSES))
    elif view.returned == "accepted":
        conditions.append(Return.refunds)
    elif view.returned:
        conditions.append(Return.status == ReturnStatus(view.returned))
    if view.temperature:
        conditions.append(_temperature_condition(view.temperature))
    if view.sold_from:
        conditions.append(Sale.created_at >= _day_start(view.sold_from))
    if view.sold_to:
        conditions.append(Sale.created_at < _day_start(view.sold_to + timedelta(days=1)))
    return conditions


def _joined(query):
    return (query.select_from(Sale).join(Lead, Sale.lead_id == Lead.id)
            .outerjoin(SaleOutcome, SaleOutcome.sale_id == Sale.id)
            .outerjoin(Return, Return.sale_id == Sale.id)
            .outerjoin(ConsentCertificate, ConsentCertificate.lead_id == Lead.id))


ROW_COLUMNS = (Sale.id.label("sale_id"), Sale.created_at.label("sold_at"), Sale.price,
               Lead.id.label("lead_id"), Lead.contact_enc, Lead.age, Lead.gender, Lead.region,
               Lead.country, Lead.do_not_call,
               Lead.city, Lead.postal_code, Lead.consent_at, Lead.source_url,
               Lead.trustedform_cert_url, Lead.jornaya_leadid, Lead.erased_at,
               Lead.score_base, Lead.seller_points,
               SaleOutcome.status.label("outcome"), SaleOutcome.revenue,
               Return.status.label("return_status"), Return.refund,
               ConsentCertificate.public_id.label("certificate_id"))
# Built once: composing a select of 24 columns over five tables cost about as much as
# running it. A view's filters are added to _PAGE.
_ROWS = _joined(sa.select(*ROW_COLUMNS))
_PAGE = (_ROWS.where(Sale.order_id == sa.bindparam("order_id")).order_by(Sale.id.desc())
         .limit(PAGE_SIZE).offset(sa.bindparam("skip", type_=sa.Integer)))


def shape(found) -> SimpleNamespace:
    """One list row as the page shows it: the contacts opened (erased leads have none),
    the score as of the sale, the times as the page shows them except the person's
    clock now (`person_zone`: where to read it), which changes every minute."""
    row = found._asdict()
    score = scoring.score_at(row.pop("score_base") + row.pop("seller_points"),
                             row["consent_at"], row["sold_at"])
    revenue = row["revenue"]
    zone = consent_zone(row["region"], row["country"])  # §14: the person's clock, now
    contact = current_vault().open_contact(row.pop("contact_enc"))
    if row["do_not_call"]:  # §14: on its country's do-not-call list, never for calls
        contact["phone"] = None
    row.update(contact, score=score,
               person_zone=zone,
               temperature=scoring.temperature(score),
               outcome=row["outcome"].value if row["outcome"] is not None else None,
               return_status=row["return_status"].value if row["return_status"] else None,
               sold=format_when(row["sold_at"]), consent_day=f"{row['consent_at']:%Y-%m-%d}",
               revenue_input="" if revenue is None else money_input(revenue))
    return SimpleNamespace(**row)


def total(order: Order, view: View) -> int:
    """How many of the order's delivered leads the view matches (on every page)."""
    return db.session.scalar(_joined(sa.select(sa.func.count())).where(*_conditions(order, view)))


def page(order: Order, view: View, matching: int) -> Page:
    """The view's page of the order's delivered leads, newest first; `matching`: what
    `total` says of the view."""
    # Through the session's connection: plain rows need none of the ORM's steps.
    filters = _filters(order, view)
    found = db.session.connection().execute(
        _PAGE.where(*filters) if filters else _PAGE,
        {"order_id": order.id, "skip": (view.page - 1) * PAGE_SIZE}).all()
    return Page(found, matching, view)


def row(order: Order, sale_id: int):
    """One of the order's rows (after its outcome changed), as `page` gives them."""
    found = db.session.execute(_ROWS.where(Sale.order_id == order.id, Sale.id == sale_id)).first()
    if found is None:
        raise NotFound(f"No sale {sale_id} in order {order.id}.")
    return found


def selection(order: Order, sale_ids: list[int]) -> list[int]:
    """The chosen sales, all of them the order's (so its buyer's: the order was looked
    up for them), or NotFound naming those that are not, and nothing is done."""
    wanted = sorted(set(sale_ids))
    if not wanted:
        return []
    found = set(db.session.scalars(sa.select(Sale.id).where(Sale.order_id == order.id,
                                                             Sale.id.in_(wanted))))
    missing = [sale_id for sale_id in wanted if sale_id not in found]
    if missing:
        raise NotFound(f"{len(missing)} of the chosen leads are not in order {order.id}.",
                       details={"sale_ids": missing[:50]})
    return wanted
