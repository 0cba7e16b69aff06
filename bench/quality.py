#!/usr/bin/env python
"""Authenticity figures (issue 6): how well the risk score ranks batches with planted
fakes above clean ones, and whether the spot-check plans meet their confidence.

    . .venv/bin/activate
    python bench/quality.py                  # sizes 50/200/1000, shares 20/10/5%, 2 seeds
    python bench/quality.py --quick          # one seed, share 20%
    python bench/quality.py --draws 20000    # more simulated spot-checks per plan

Ranking: the corpus of tests/quality_corpus.py (clean batches with real data's small
oddities, and batches where a share of the rows are fakes of one kind) is uploaded
through the real pipeline into a fresh SQLite database built by the migrations, and
assessed by app.services.quality. For each size and share it prints the clean batches'
highest score, each planted kind's score, and the pairwise ranking AUC (the chance a
planted batch outranks a clean one of the same size; ties count half).

Sampling: for each plan and lot size, thousands of seeded lots with exactly the
plan's defect rate (D = ceil(p*N) defective leads at random places) are sampled the
way a check draws (spotchecks.draw_positions); the pass rate is printed next to the
exact hypergeometric figure and the allowed 1 - confidence. Writes bench/out/quality-*.json.
"""
import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "out"


def ranking(sizes, shares, seeds, clean_per_size):
    from flask_migrate import upgrade

    from app import create_app
    from tests import quality_corpus as corpus

    rows = []
    for seed in seeds:
        for share in shares:
            with tempfile.TemporaryDirectory() as tmp:
                app = create_app("testing", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp}/q.sqlite3",
                                 UPLOAD_DIR=f"{tmp}/uploads", INGEST_CHUNK_ROWS=2000)
                with app.app_context():
                    upgrade(directory=str(ROOT / "migrations"))
                    now = datetime.now(timezone.utc)
                    market = corpus.market_rows(seed, 3000, now)
                    started = time.perf_counter()
                    scored = corpus.score_corpus(corpus.corpus(
                        sizes, clean_per_size=clean_per_size, fake_share=share, seed=seed,
                        now=now, market=market), market)
                    elapsed = time.perf_counter() - started
            for size in sizes:
                clean = [s.risk for s in scored if s.size == size and s.label == "clean"]
                planted = {s.label: s.risk for s in scored if s.size == size and s.label != "clean"}
                pairs = [(p > c) + 0.5 * (p == c) for p in planted.values() for c in clean]
                rows.append({"seed": seed, "share": share, "size": size, "clean": clean,
                             "planted": planted, "auc": sum(pairs) / len(pairs),
                             "separated": min(planted.values()) > max(clean),
                             "seconds": round(elapsed, 1)})
    return rows


def sampling(draws: int):
    from app.models import TrustLevel
    from app.services import spotchecks

    out = []
    cases = [(60, TrustLevel.VERIFIED, 0), (400, TrustLevel.VERIFIED, 0),
             (10_000, TrustLevel.VERIFIED, 0), (400, TrustLevel.NEW, 0),
             (10_000, TrustLevel.NEW, 0), (10_000, TrustLevel.VERIFIED, 70),
             (1_000, TrustLevel.NEW, 40)]
    for lot, trust, risk in cases:
        plan = spotchecks.plan_for(lot, risk, trust)
        defects = spotchecks.lot_defects(lot, plan.defect_rate_bp)
        rng = random.Random(lot * 31 + risk)
        passes = 0
        for _ in range(draws):
            bad = set(rng.sample(range(lot), defects))
            sample = [p for _, p in zip(range(plan.sample_size),
                                        spotchecks.draw_positions(rng.getrandbits(62), lot))]
            passes += sum(p in bad for p in sample) <= plan.acceptance_number
        exact = float(plan.pass_probability)
        out.append({"lot": lot, "plan": plan.name, "n": plan.sample_size,
                    "c": plan.acceptance_number, "defect_rate": plan.defect_rate_bp / 10_000,
                    "confidence": plan.confidence_bp / 10_000, "defects_in_lot": defects,
                    "draws": draws, "simulated_pass_rate": passes / draws,
                    "exact_pass_rate": exact,
                    "stderr": math.sqrt(exact * (1 - exact) / draws),
                    "allowed": 1 - plan.confidence_bp / 10_000})
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--draws", type=int, default=10_000)
    parser.add_argument("--clean", type=int, default=8, help="clean batches per size")
    args = parser.parse_args()
    shares = [0.2] if args.quick else [0.2, 0.1, 0.05]
    seeds = [1] if args.quick else [1, 2]
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")

    rank = ranking((50, 200, 1000), shares, seeds, args.clean)
    print("\nRanking: risk of clean batches vs batches with planted fakes (one kind each)")
    print(f"{'seed':>4} {'share':>5} {'size':>5} {'clean max':>9} {'planted min':>11} "
          f"{'AUC':>6} separated  weakest kinds")
    for row in rank:
        weakest = sorted(row["planted"].items(), key=lambda kv: kv[1])[:3]
        print(f"{row['seed']:>4} {row['share']:>5.0%} {row['size']:>5} {max(row['clean']):>9} "
              f"{min(row['planted'].values()):>11} {row['auc']:>6.3f} {str(row['separated']):>9}  "
              + ", ".join(f"{k} {v}" for k, v in weakest))

    sims = sampling(args.draws)
    print(f"\nSampling plans: {args.draws} seeded spot-checks of a lot right at the defect rate")
    print(f"{'lot':>6} {'plan':>9} {'n':>4} {'c':>2} {'catch':>6} {'conf':>5} "
          f"{'sim pass':>9} {'exact':>7} {'allowed':>7}")
    for s in sims:
        print(f"{s['lot']:>6} {s['plan']:>9} {s['n']:>4} {s['c']:>2} {s['defect_rate']:>6.0%} "
              f"{s['confidence']:>5.0%} {s['simulated_pass_rate']:>9.4f} {s['exact_pass_rate']:>7.4f} "
              f"{s['allowed']:>7.2f}")
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"quality-{datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps({"load": load, "ranking": rank, "sampling": sims}, indent=1))
    print(f"\nwrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
