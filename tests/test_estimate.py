"""The supply estimate keeps its statements per filter set (app/market/queries.py):
what it binds when they run (the buyer, the price) still decides each answer, and
filters whose SQL reads the clock are never kept."""
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from app.market import queries
from app.market.filters import Filters
from tests.market_helpers import consented, funded_buyer, live_leads, person, verified_seller

SAMPLES = [{}, {"age_min": 30, "regions": "US-CA"}, {"genders": ["f"], "require": "both"},
           {"interests": "cars", "exclusive_only": True}, {"employed": "yes", "countries": "US"},
           {"max_age_days": 7}, {"min_score": 40}, {"min_temperature": "hot"},
           {"marital_statuses": ["single"], "max_age_days": 30, "age_max": 40}]


def _sql(filters: Filters, now: datetime):
    out = []
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        compiled = sa.and_(sa.true(), *filters.sql_conditions(now)).compile(dialect=dialect)
        out.append((str(compiled), compiled.params))
    return out


def test_timeless_filters_state_the_same_sql_at_any_time_and_the_others_do_not():
    now = datetime.now(timezone.utc)
    for data in SAMPLES:
        filters = Filters.parse(data)
        same = _sql(filters, now) == _sql(filters, now + timedelta(days=1, seconds=7))
        assert same == filters.timeless, data
    assert sum(Filters.parse(data).timeless for data in SAMPLES) == 5


def test_one_kept_statement_answers_each_buyer_and_price_with_their_own_numbers(app):
    seller = verified_seller()
    live_leads(seller, [person(1), person(2)], floor_price=400)
    live_leads(seller, [person(3), person(4), person(5)], floor_price=100)
    buyer = funded_buyer()
    filters = Filters.parse({"regions": "US-CA"})
    counts = [queries.estimate(filters, price).matching for price in (50, 100, 399, 400, None)]
    assert counts == [0, 3, 3, 5, 5]
    assert queries.estimate(filters, 100, buyer=buyer).matching == 3
    assert queries.estimate(filters, 1000, buyer=buyer).matching == 5


def test_freshness_is_counted_at_the_time_of_each_estimate(app):
    seller = verified_seller()
    live_leads(seller, [person(1, consent_at=consented(3)), person(2, consent_at=consented(10))])
    filters = Filters.parse({"max_age_days": 5})
    assert not filters.timeless
    assert queries.estimate(filters).matching == 1
    assert queries.estimate(Filters.parse({"max_age_days": 30})).matching == 2


def test_interests_are_counted_one_by_one_and_prices_still_come_with_them(app):
    from tests.ingest_helpers import HEADER
    from tests.market_helpers import place
    from app.market import jobs
    from app.extensions import db

    seller = verified_seller()
    people = [person(1, interests="cars;travel"), person(2, interests="pets"), person(3)]
    live_leads(seller, people, header=[*HEADER, "interests"], cap=2)
    jobs.fill_order(place(funded_buyer(), 700, 1).id)
    db.session.commit()
    result = queries.estimate(Filters.parse({"interests": "travel"}))
    assert result.matching == 1
    assert result.clearing_prices == {"count": 1, "min": 700, "median": 700, "max": 700}
    assert queries.estimate(Filters.parse({"interests": "pets, cars"})).matching == 2


def test_a_kept_statement_has_its_filters_values_written_in_and_binds_the_buyer_and_price(app):
    """What PostgreSQL is sent: the filters' values and the rules' constants in the
    SQL (so it plans for them), the buyer, the price and the window as parameters (so
    one statement serves every buyer and price)."""
    seller = verified_seller()
    live_leads(seller, [person(1, age="35"), person(2, age="40"), person(3)], floor_price=100)
    buyer = funded_buyer()
    sent = []

    def note(_conn, _cursor, statement, parameters, *_args):
        sent.append((statement, parameters))

    from app.extensions import db
    sa.event.listen(db.engine, "before_cursor_execute", note)
    try:
        result = queries.estimate(Filters.parse({"regions": "US-CA", "age_min": 31}), 250,
                                  buyer=buyer)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", note)
    statement, parameters = next((s, p) for s, p in sent if "count(*)" in s)
    values = list(parameters.values() if isinstance(parameters, dict) else parameters)
    assert "'US-CA'" in statement and ">= 31" in statement and "'live'" in statement
    assert "US-CA" not in values and 31 not in values
    assert buyer.id in values and 250 in values
    assert result.matching == 2  # the third is 23
