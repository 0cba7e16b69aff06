"""The fraud-signal rules one by one, and the sampling plan's arithmetic."""
import math
import random
from datetime import datetime, timezone
from fractions import Fraction

import pytest

from app.models import TrustLevel
from app.services import quality, spotchecks
from app.services.regions_tz import zones_for


@pytest.mark.parametrize("name", [
    "Anna", "Anne-Marie", "O'Brien", "McDonald", "Ng", "Liberty", "Werther", "Hirschsprung",
    "Rothschild", "Schwartz", "José", "Núñez", "Iñigo", "de la Fuente", "Мкртчян", "Пётр",
    "Иванова", "J.", "Van der Berg", "Lulu", "Jayden", "Xavier", "Smith-Jones",
])
def test_real_names_pass(name):
    assert quality.name_problem(name) is None


@pytest.mark.parametrize("name, reason", [
    ("John1", "digits"), ("User123", "digits"), ("An@na", "symbols"), ("Test", "placeholder"),
    ("asdf", "placeholder"), ("Qwerty", "placeholder"), ("Aaaa", "repeated_letters"),
    ("Lalala", "repeated_letters"), ("Jjj", "repeated_letters"), ("Xkcd", "no_vowels"),
    ("Bdfghk", "no_vowels"), ("Asdfg", "keyboard_mash"), ("Poiuy", "keyboard_mash"),
    ("Фывап", "keyboard_mash"), ("Аnna", "mixed_scripts"),  # Cyrillic А, Latin nna
    ("Имя", "placeholder"),
])
def test_non_names_are_caught_with_their_reason(name, reason):
    assert quality.name_problem(name) == reason


@pytest.mark.parametrize("age, status, problem", [
    (19, "widowed", "young_widowed"), (22, "widowed", "young_widowed"),
    (23, "widowed", None), (19, "divorced", "young_divorced"), (20, "divorced", None),
    (18, "married", None), (96, "married", "very_old"), (94, "widowed", None),
    (None, "widowed", None), (40, "unknown", None),
])
def test_implausible_demographics(age, status, problem):
    assert quality.demographic_problem(age, status) == problem


@pytest.mark.parametrize("phone, patterned", [
    ("+79997777777", True), ("+79991212121", True), ("+12125551234", False),
    ("+79991234567", True), ("+79997654321", True), ("+79990987654", True),
    ("+14155550123", False), ("+34612345670", False),
])
def test_repeated_digit_phone_patterns(phone, patterned):
    assert quality.phone_pattern(phone) is patterned


def test_sequential_runs_count_only_runs_of_five_or_more():
    assert quality.sequential_share([100, 101, 102, 103]) == 0
    assert quality.sequential_share([100, 101, 102, 103, 104, 200, 300, 301]) == 5
    assert quality.sequential_share(list(range(50)) + [1000, 2000]) == 50
    rng = random.Random(5)
    scattered = [rng.randrange(10**9) for _ in range(20_000)]
    assert quality.sequential_share(scattered) == 0


def test_evidence_is_the_lower_confidence_bound_so_small_batches_need_more():
    assert quality.lower_bound(0, 50) == 0.0
    assert quality.lower_bound(2, 40) < 0.02 < quality.lower_bound(40, 800)
    assert quality.points_for("disposable_email", 0.02) == 0
    assert quality.points_for("disposable_email", 0.20) == quality.RULES["disposable_email"].weight
    assert 0 < quality.points_for("disposable_email", 0.11) < quality.RULES["disposable_email"].weight


def test_poisson_upper_tail():
    for mean in (0.05, 1.0, 7.5, 40.0):
        k = quality.poisson_upper(mean, 1e-4)
        tail = 1 - sum(math.exp(-mean) * mean ** i / math.factorial(i) for i in range(k + 1))
        assert tail <= 1e-4
        tail_before = 1 - sum(math.exp(-mean) * mean ** i / math.factorial(i) for i in range(k))
        assert tail_before > 1e-4


def test_consent_clock_by_region_country_or_every_zone():
    assert [z.key for z in zones_for("US-CA", "US")] == ["America/Los_Angeles"]
    assert [z.key for z in zones_for("RU-NVS", None)] == ["Asia/Novosibirsk"]
    assert [z.key for z in zones_for("RU-MOW", "RU")] == ["Europe/Moscow"]
    assert [z.key for z in zones_for("ES-M", None)] == ["Europe/Madrid"]
    assert [z.key for z in zones_for("ES-TF", "ES")] == ["Atlantic/Canary"]
    assert [z.key for z in zones_for(None, "FR")] == ["Europe/Paris"]
    assert len(zones_for(None, "US")) > 5  # no state: night only if night in every zone
    moment = datetime(2026, 7, 1, 10, 30, tzinfo=timezone.utc)  # 03:30 in California
    assert moment.astimezone(zones_for("US-CA", "US")[0]).hour == 3
    assert not all(moment.astimezone(z).hour in quality.NIGHT_HOURS for z in zones_for(None, "US"))


def _brute_sample_size(lot, rate_bp, confidence_bp):
    defects = spotchecks.lot_defects(lot, rate_bp)
    beta = Fraction(10_000 - confidence_bp, 10_000)
    return next(n for n in range(1, lot + 1)
                if spotchecks.accept_probability(lot, n, 0, defects) <= beta)


@pytest.mark.parametrize("lot", [1, 7, 20, 59, 100, 137, 400, 1000])
def test_sample_size_is_the_smallest_that_meets_the_confidence(lot):
    for rate, confidence in spotchecks.PLANS.values():
        assert spotchecks.sample_size(lot, rate, confidence) == _brute_sample_size(lot, rate, confidence)


def test_known_sample_sizes_for_large_lots():
    # The classic zero-acceptance figures: ln(0.05)/ln(0.95) ≈ 59, ln(0.05)/ln(0.97) ≈ 99,
    # ln(0.01)/ln(0.97) ≈ 152 (the hypergeometric needs no more for a lot of a million).
    assert spotchecks.sample_size(1_000_000, 500, 9500) == 59
    assert spotchecks.sample_size(1_000_000, 300, 9500) == 99
    assert spotchecks.sample_size(1_000_000, 300, 9900) == 152
    assert spotchecks.sample_size(400, 500, 9500) == 55  # the finite lot needs fewer


def test_accept_probability_is_exact():
    # Lot 10 with 2 defects, sample 3, c = 0: C(8,3)/C(10,3) = 56/120.
    assert spotchecks.accept_probability(10, 3, 0, 2) == Fraction(56, 120)
    assert spotchecks.accept_probability(10, 3, 1, 2) == Fraction(56 + 2 * 28, 120)


def test_plan_tiers_follow_risk_and_trust():
    assert spotchecks.plan_for(5000, 10, TrustLevel.VERIFIED).name == "standard"
    assert spotchecks.plan_for(5000, 10, TrustLevel.NEW).name == "tightened"
    assert spotchecks.plan_for(5000, 45, TrustLevel.VERIFIED).name == "tightened"
    assert spotchecks.plan_for(5000, 45, TrustLevel.NEW).name == "strict"
    assert spotchecks.plan_for(5000, 80, TrustLevel.VERIFIED).name == "strict"
    standard = spotchecks.plan_for(5000, None, TrustLevel.VERIFIED)
    assert standard.pass_probability <= Fraction(5, 100) and standard.achieved_confidence >= 0.95


def test_the_draw_is_reproducible_and_extends_without_changing_its_prefix():
    first = list(zip(range(30), spotchecks.draw_positions(42, 1000)))
    again = list(zip(range(60), spotchecks.draw_positions(42, 1000)))
    assert again[:30] == first
    positions = [p for _, p in again]
    assert len(set(positions)) == 60 and all(0 <= p < 1000 for p in positions)
    assert sorted(spotchecks.draw_positions(7, 25)) == list(range(25))
    assert list(zip(range(30), spotchecks.draw_positions(43, 1000))) != first
