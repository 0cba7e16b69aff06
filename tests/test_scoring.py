"""Scores stored at ingest, filtered in SQL and in the matcher alike, and the seller
record refreshed into unsold inventory (SPEC §6)."""
from datetime import datetime, timezone

import sqlalchemy as sa

from app.extensions import db
from app.models import Lead, OutcomeStatus, Sale
from app.services import outcomes, scoring
from app.market import filters, jobs, queries
from app.services.ingest import realtime
from app.services.ingest.pipeline import check_terms
from tests.ingest_helpers import HEADER
from tests.market_helpers import (
    consented, funded_buyer, live_leads, person, place, sales_of, verified_seller,
)

INTENT_HEADER = HEADER + ["budget", "timeframe", "marital_status"]


def _score_now(lead: Lead, now: datetime) -> int:
    return scoring.score_at(lead.score_base + lead.seller_points, lead.consent_at, now)


def test_ingest_stores_the_lead_points_and_the_seller_part(app):
    seller = verified_seller()
    people = [person(1), person(2, email="", phone="+1 415 555 0002", age="", region=""),
              person(3, budget="5k", timeframe="this month", marital_status="married"),
              person(4, budget="none", timeframe="unknown")]
    leads = live_leads(seller, people, header=INTENT_HEADER)
    assert [lead.score_base for lead in leads] == [28, 13, 40, 28]
    assert {lead.seller_points for lead in leads} == {8}  # no record yet: neutral


def test_real_time_leads_are_scored_too(app):
    seller = verified_seller()
    lead = realtime.ingest_lead(seller, {**person(7), "need": "a new car"},
                                check_terms("US", 0, 1))
    db.session.commit()
    assert (lead.score_base, lead.seller_points) == (33, 8)


def test_sql_and_memory_agree_on_every_threshold(app):
    seller = verified_seller()
    ages = [0.2, 0.9, 1.5, 2.9, 3.5, 6.5, 8, 13.9, 15, 29, 31, 59, 61, 89, 91, 300]
    people = [person(i, consent_at=consented(days)) for i, days in enumerate(ages)]
    people += [person(100 + i, consent_at=consented(days), email="", budget="1k",
                      timeframe="now", marital_status="married") for i, days in enumerate(ages)]
    leads = live_leads(seller, people, header=INTENT_HEADER)
    now = datetime.now(timezone.utc)
    for threshold in range(0, 101, 3):
        condition = scoring.min_score_condition(threshold, now)
        query = sa.select(Lead.id).where(Lead.seller_id == seller.id)
        in_sql = set(db.session.scalars(query if condition is None else query.where(condition)))
        in_memory = {lead.id for lead in leads if _score_now(lead, now) >= threshold}
        assert in_sql == in_memory, threshold
    by_sql = dict(db.session.execute(sa.select(Lead.id, scoring.score_sql(now))
                                     .where(Lead.seller_id == seller.id)).all())
    assert by_sql == {lead.id: _score_now(lead, now) for lead in leads}
    scores = sorted({_score_now(lead, now) for lead in leads})
    assert scores[0] < scoring.WARM and scores[-1] >= scoring.HOT  # the test spans the bands


def _hot_and_warm(seller):
    """Leads alike but for the age of their consent: hot (1 day) and warm (50 days)."""
    people = [person(i, budget="10k", timeframe="now", consent_at=consented(0.5 if i % 2 else 50))
              for i in range(8)]
    leads = live_leads(seller, people, header=INTENT_HEADER)
    now = datetime.now(timezone.utc)
    hot = {lead.id for lead in leads if scoring.temperature(_score_now(lead, now)) == "hot"}
    assert len(hot) == 4 and all(_score_now(lead, now) >= 40 for lead in leads)
    return leads, hot


def test_new_leads_reach_only_orders_whose_minimum_they_meet(app):
    seller = verified_seller()
    hot_only = place(funded_buyer(), 500, 10, filters={"min_temperature": "hot"})
    any_lead = place(funded_buyer(), 100, 10)
    leads, hot = _hot_and_warm(seller)
    jobs.match_leads([lead.id for lead in leads])  # the in-memory matcher
    db.session.commit()
    assert {sale.lead_id for sale in sales_of(hot_only)} == hot
    assert len(sales_of(any_lead)) == 4  # the warm ones


def test_a_new_order_fills_only_with_leads_over_its_min_score(app):
    seller = verified_seller()
    leads, hot = _hot_and_warm(seller)
    order = place(funded_buyer(), 300, 10, filters={"min_score": 70})
    jobs.fill_order(order.id)  # inventory selected in SQL
    db.session.commit()
    assert {sale.lead_id for sale in sales_of(order)} == hot
    assert queries.estimate(filters.Filters.parse({"min_temperature": "hot"})).matching == 0
    assert queries.estimate(filters.Filters.parse({"min_temperature": "warm"})).matching == 4
    assert queries.estimate(filters.Filters.parse({"min_score": 100})).matching == 0


def test_order_filters_validate_score_and_temperature(client, api_key_for):
    buyer = funded_buyer()
    headers = api_key_for(buyer)
    bad = client.post("/api/v1/orders", headers=headers,
                      json={"filters": {"min_temperature": "lukewarm"}, "price": 100, "quantity": 1})
    assert bad.status_code == 422 and bad.json["error"]["details"]["field"] == "min_temperature"
    too_high = client.post("/api/v1/orders", headers=headers,
                           json={"filters": {"min_score": 101}, "price": 100, "quantity": 1})
    assert too_high.status_code == 422
    ok = client.post("/api/v1/orders", headers=headers,
                     json={"filters": {"min_score": 55, "min_temperature": "warm"},
                           "price": 100, "quantity": 1})
    assert ok.status_code == 201
    assert ok.json["filters"]["min_score"] == 55 and ok.json["filters"]["min_temperature"] == "warm"


def test_seller_record_refresh_reaches_unsold_leads_only(app):
    seller = verified_seller()
    buyer = funded_buyer()
    leads = live_leads(seller, [person(i) for i in range(20)])
    order = place(buyer, 100, 10)
    jobs.fill_order(order.id)
    db.session.commit()
    sold = db.session.scalars(sa.select(Sale.id).where(Sale.order_id == order.id)).all()
    outcomes.record_many(buyer, [(sale_id, OutcomeStatus.BAD, None) for sale_id in sold])
    db.session.commit()
    expected = scoring.seller_points_for(seller.id)
    assert expected < 8
    assert scoring.refresh_seller_points() == 10
    db.session.expire_all()
    points = {lead.id: db.session.get(Lead, lead.id).seller_points for lead in leads}
    sold_leads = set(db.session.scalars(sa.select(Sale.lead_id).where(Sale.order_id == order.id)))
    assert {points[i] for i in sold_leads} == {8}  # what was delivered keeps its score
    assert {points[i] for i in points if i not in sold_leads} == {expected}
    assert scoring.refresh_seller_points() == 0  # nothing left to change
