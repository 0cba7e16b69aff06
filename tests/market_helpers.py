"""Building a small market for the matching tests: funded buyers, live leads, orders."""
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from app.core import events
from app.extensions import db
from app.models import Lead, Order, Role, Sale, TrustLevel
from app.services import ledger
from app.market import operations
from app.market.filters import Filters
from tests.conftest import make_user
from tests.ingest_helpers import HEADER, csv_bytes, ingest, person


def funded_buyer(amount: int = 1_000_000, **fields):
    buyer = make_user(Role.BUYER, **fields)
    ledger.manual_credit(buyer, amount, reason="test funds", actor=None)
    db.session.commit()
    return buyer


def verified_seller(**fields):
    return make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED, **fields)


def live_leads(seller, people: list[dict], *, cap: int = 1, floor_price: int = 0,
               header=HEADER):
    """Ingest rows as a verified seller's live batch (no matching: no orders exist yet,
    or the test calls the matcher itself)."""
    batch = ingest(seller, csv_bytes(people, header=header), cap=cap, floor_price=floor_price)
    return db.session.scalars(sa.select(Lead).where(Lead.batch_id == batch.id)
                              .order_by(Lead.row_number)).all()


def place(buyer, price: int, quantity: int, **kwargs) -> Order:
    """An open order, not filled yet (the test runs the matcher itself)."""
    filters = Filters.parse(kwargs.pop("filters", {}))
    terms = operations.check_terms(price, quantity, **kwargs)
    with events.muted():
        order, _ = operations.place_order(buyer, filters, terms)
        db.session.commit()
    return order


def sales_of(order) -> list[Sale]:
    return db.session.scalars(sa.select(Sale).where(Sale.order_id == order.id)
                              .order_by(Sale.id)).all()


def consented(days_ago: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = ["funded_buyer", "verified_seller", "live_leads", "place", "sales_of", "consented",
           "person", "recent_sales_at"]


def recent_sales_at(price: int, count: int = 4) -> None:
    """Leads of US-CA that sold at `price` lately, from a seller of their own: the
    market's recent price level (market_stats.recent_price_level)."""
    from app.market import jobs

    order = place(funded_buyer(), price, count)
    leads = live_leads(verified_seller(), [person(100 + i) for i in range(count)])
    jobs.match_batch(leads[0].batch_id)
    db.session.commit()
    assert len(sales_of(order)) == count
