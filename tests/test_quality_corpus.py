"""Ranking quality on a generated corpus (issue 6): every batch with planted fakes of
any one kind must rank above every clean batch of the same size. And the sampling
plans meet their stated confidence in a seeded simulation of thousands of draws."""
import math
import random
from datetime import datetime, timezone
from fractions import Fraction

import pytest

from app.models import TrustLevel
from app.services import spotchecks
from tests import quality_corpus as corpus

SIZES = (50, 200, 1000)


def test_every_planted_fake_batch_ranks_above_every_clean_batch_of_its_size(app):
    now = datetime.now(timezone.utc)
    market = corpus.market_rows(1, 3000, now)
    scored = corpus.score_corpus(corpus.corpus(SIZES, clean_per_size=8, fake_share=0.2, seed=1,
                                               now=now, market=market), market)
    for size in SIZES:
        clean = [s.risk for s in scored if s.size == size and s.label == "clean"]
        planted = {s.label: s for s in scored if s.size == size and s.label != "clean"}
        assert len(clean) == 8 and set(planted) == set(corpus.KINDS)
        for kind, batch in planted.items():
            assert batch.risk > max(clean), (size, kind, batch.risk, clean, batch.points)
            # ... and for the reason planted: its own signal scores.
            assert batch.points.get(kind, 0) > 0, (size, kind, batch.points)
        print(f"size {size}: clean max {max(clean)}, planted min "
              f"{min(b.risk for b in planted.values())} "
              f"({', '.join(f'{k} {b.risk}' for k, b in planted.items())})")


def simulate(lot: int, plan: spotchecks.Plan, draws: int, seed: int) -> tuple[int, Fraction]:
    """Passes among `draws` seeded samples of a lot right at the plan's defect rate."""
    defects = spotchecks.lot_defects(lot, plan.defect_rate_bp)
    rng = random.Random(seed)
    passes = 0
    for _ in range(draws):
        bad = set(rng.sample(range(lot), defects))  # where the defects sit this time
        sample = [p for _, p in zip(range(plan.sample_size),
                                    spotchecks.draw_positions(rng.getrandbits(62), lot))]
        passes += sum(p in bad for p in sample) <= plan.acceptance_number
    return passes, plan.pass_probability


@pytest.mark.parametrize("lot, trust, risk", [
    (60, TrustLevel.VERIFIED, 0), (400, TrustLevel.VERIFIED, 0), (5000, TrustLevel.VERIFIED, 0),
    (400, TrustLevel.NEW, 0), (5000, TrustLevel.VERIFIED, 40), (2000, TrustLevel.NEW, 70),
])
def test_the_sampling_plan_meets_its_confidence_in_simulation(lot, trust, risk):
    plan = spotchecks.plan_for(lot, risk, trust)
    draws = 4000
    passes, exact = simulate(lot, plan, draws, seed=lot + risk)
    beta = 1 - plan.confidence_bp / 10_000
    assert exact <= Fraction(10_000 - plan.confidence_bp, 10_000)
    # The simulated pass rate agrees with the exact figure (within 4 standard errors) and
    # so stays at or under the plan's 1 − confidence, allowing for that noise.
    sigma = math.sqrt(float(exact) * (1 - float(exact)) / draws)
    assert abs(passes / draws - float(exact)) <= 4 * sigma + 1 / draws
    assert passes / draws <= beta + 4 * sigma
    # A sample one smaller would not have been enough: n is the smallest that works.
    smaller = spotchecks.accept_probability(lot, plan.sample_size - 1, 0,
                                            spotchecks.lot_defects(lot, plan.defect_rate_bp))
    assert smaller > Fraction(10_000 - plan.confidence_bp, 10_000)
    print(f"lot {lot} plan {plan.name}: n={plan.sample_size}, simulated pass rate "
          f"{passes / draws:.4f}, exact {float(exact):.4f}, allowed {beta:.2f}")
