"""The lead score formula (SPEC §6): every part, its edges and the temperatures."""
from datetime import datetime, timedelta, timezone

import pytest

from app.services import scoring

NOW = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)
FULL = dict(has_phone=True, has_email=True, age=30, gender="f", region="US-CA",
            interests=["cars"], marital_status="married", employed="yes")
EMPTY = dict(has_phone=False, has_email=False, age=None, gender="unknown", region=None,
             interests=[], marital_status="unknown", employed="unknown")


def test_parts_add_up_to_100():
    assert scoring.BASE_MAX == 55 and scoring.MAX_SCORE == 100
    best = scoring.lead_points(**FULL, budget="10k", authority="owner", need="yes, soon",
                               timeframe="this month")
    assert best == 55
    assert scoring.score_at(best + scoring.SELLER_MAX, NOW, NOW) == 100


def test_completeness_points_each_field():
    assert scoring.lead_points(**EMPTY) == 0
    assert scoring.lead_points(**{**EMPTY, "has_phone": True}) == 10
    assert scoring.lead_points(**{**EMPTY, "has_email": True}) == 8
    assert scoring.lead_points(**FULL) == 35
    assert scoring.lead_points(**{**FULL, "gender": "unknown", "interests": []}) == 29


@pytest.mark.parametrize("value, points", [
    ("10k-50k", 5), ("  CEO ", 5), ("", 0), (None, 0), ("unknown", 0), ("N/A", 0), ("no", 0),
    ("-", 0), ("none", 0),
])
def test_intent_counts_only_real_answers(value, points):
    assert scoring.lead_points(**EMPTY, budget=value) == points
    assert scoring.lead_points(**EMPTY, budget=value, authority=value, need=value,
                               timeframe=value) == 4 * points


@pytest.mark.parametrize("age, points", [
    (timedelta(0), 30), (timedelta(days=1), 30), (timedelta(days=1, seconds=1), 26),
    (timedelta(days=3), 26), (timedelta(days=5), 22), (timedelta(days=7), 22),
    (timedelta(days=10), 17), (timedelta(days=14), 17), (timedelta(days=20), 12),
    (timedelta(days=30), 12), (timedelta(days=45), 7), (timedelta(days=60), 7),
    (timedelta(days=61), 3), (timedelta(days=90), 3), (timedelta(days=90, seconds=1), 0),
    (timedelta(days=900), 0),
])
def test_freshness_decays_in_steps(age, points):
    assert scoring.freshness_points(NOW - age, NOW) == points


def test_freshness_never_increases_with_age():
    values = [scoring.freshness_points(NOW - timedelta(hours=h), NOW) for h in range(0, 24 * 100, 7)]
    assert values == sorted(values, reverse=True)


@pytest.mark.parametrize("score, name", [(100, "hot"), (70, "hot"), (69, "warm"), (40, "warm"),
                                         (39, "cold"), (0, "cold")])
def test_temperature_bands(score, name):
    assert scoring.temperature(score) == name


def test_threshold_combines_min_score_and_temperature():
    assert scoring.threshold(None, None) == 0
    assert scoring.threshold(55, None) == 55
    assert scoring.threshold(None, "warm") == 40
    assert scoring.threshold(None, "hot") == 70
    assert scoring.threshold(50, "hot") == 70
    assert scoring.threshold(80, "warm") == 80
    assert scoring.threshold(None, "cold") == 0


def record(**overrides):
    base = dict(rows=0, accepted=0, sold=0, returned=0, converted=0, contacted=0, bad=0)
    return {**base, **overrides}


def test_seller_without_a_record_is_neutral():
    assert scoring.seller_points_from(**record()) == 8


def test_seller_record_moves_with_evidence():
    excellent = scoring.seller_points_from(**record(rows=100_000, accepted=99_000, sold=50_000,
                                                    converted=5_000))
    poor = scoring.seller_points_from(**record(rows=100_000, accepted=30_000, sold=1_000,
                                               returned=0, bad=900))
    assert excellent == 15 and poor < 8
    # A little evidence barely moves a neutral seller: the prior outweighs it.
    assert scoring.seller_points_from(**record(rows=10, accepted=2, bad=1)) in (7, 8)


def test_seller_feedback_values_outcomes():
    base = record(rows=1000, accepted=900, sold=500)
    converted = scoring.seller_points_from(**{**base, "converted": 200})
    contacted = scoring.seller_points_from(**{**base, "contacted": 200})
    bad = scoring.seller_points_from(**{**base, "bad": 200})
    assert converted > contacted > bad


def test_score_is_capped_and_stored_parts_plus_freshness():
    assert scoring.score_at(40, NOW - timedelta(days=2), NOW) == 66
    assert scoring.score_at(40, NOW - timedelta(days=200), NOW) == 40
