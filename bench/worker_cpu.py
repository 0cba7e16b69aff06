#!/usr/bin/env python
"""Ingest workers' CPU per row: what workers._validate_in_worker costs on a file's
first rows, one process, for this tree and for others in the same run.

Not a unit test: it prints µs of CPU per row. Each tree runs in a child process of
its own (its own imports), the trees taking turns. A child reads the file's blocks
first, then times only the worker's call on each block (parse, validate, normalise,
seal, hash, score, pack; the cyclic collector paused as in a worker). The first
block is timed apart: it also builds what a worker builds once (the region indexes)
before its first chunk. The others are timed over --passes passes through the sample
and each block's fastest pass counts: on a shared machine a pass is slowed by
whatever else runs, never sped up.

    python bench/worker_cpu.py                       # this tree, bench/out's 1M file
    python bench/worker_cpu.py --vs /work/main       # and main's, taking turns
    python bench/worker_cpu.py --profile             # cProfile of this tree's run
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CSV = ROOT / "bench" / "out" / "leads-1000000-seed20261122-v1.csv"


def child(spec: dict) -> None:
    """In a tree's own interpreter: time the worker's call on the first rows."""
    import base64
    import cProfile
    import datetime as dt
    import pstats

    sys.path.insert(0, spec["tree"])
    from app.services.ingest import workers
    from app.services.ingest.reader import open_csv
    from app.services.ingest.validate import RowContext

    workers._init_worker(base64.urlsafe_b64encode(os.urandom(32)).decode())
    ctx = RowContext("US", dt.datetime(2026, 11, 22, 12, tzinfo=dt.timezone.utc))
    blocks, rows = [], 0
    with open_csv(spec["csv"], mapping={}) as source:
        fields = source.header_map.fields
        for block in source.blocks(spec["chunk"]):
            blocks.append(block)
            rows += block.rows
            if rows >= spec["rows"]:
                break

    def validate(block) -> tuple[float, int]:
        cpu = time.process_time()
        accepted = len(workers._validate_in_worker(block, fields, ctx,
                                                   spec["storage"]).accepted)
        return time.process_time() - cpu, accepted

    first, accepted = validate(blocks[0])
    profiler = cProfile.Profile() if spec["profile"] else None
    if profiler:
        profiler.enable()
    fastest = [float("inf")] * len(blocks)
    for _ in range(spec["passes"]):
        for i, block in enumerate(blocks[1:], 1):
            cpu, taken = validate(block)
            fastest[i] = min(fastest[i], cpu)
    if profiler:
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats(spec["profile"]).print_stats(45)
    print(json.dumps({"rows": rows - blocks[0].rows, "cpu": sum(fastest[1:]), "first": first,
                      "accepted": accepted + sum(
                          validate(block)[1] for block in blocks[1:])}))


def run(tree: str, args) -> dict:
    spec = {"tree": tree, "csv": str(args.csv), "rows": args.rows, "chunk": args.chunk,
            "storage": args.storage, "profile": args.profile, "passes": args.passes}
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], cwd=tree,
                         check=True, text=True, stdout=subprocess.PIPE)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--chunk", type=int, default=2000, help="rows per block")
    parser.add_argument("--storage", default="pgcopy",
                        help="the workers' storage format (sqlite, pgcopy)")
    parser.add_argument("--vs", action="append", default=[], help="another tree to time")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each tree")
    parser.add_argument("--passes", type=int, default=3, help="passes through the sample")
    parser.add_argument("--profile", nargs="?", const="tottime",
                        help="cProfile this tree's passes instead, sorted by (tottime)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return 0
    trees = [str(ROOT)] + args.vs
    if args.profile:
        run(trees[0], args)
        return 0
    results: dict[str, list[dict]] = {tree: [] for tree in trees}
    for _ in range(args.repeat):
        for tree in trees:
            results[tree].append(run(tree, args))
    print(f"load {os.getloadavg()[0]:.2f}; {args.csv.name}, first {args.rows:,} rows, "
          f"blocks of {args.chunk}, storage {args.storage}, fastest of {args.passes} passes")
    for tree in trees:
        per_row = [r["cpu"] / r["rows"] * 1e6 for r in results[tree]]
        last = results[tree][-1]
        print(f"  {tree:<24} {min(per_row):6.2f} µs/row (runs: "
              f"{', '.join(f'{v:.2f}' for v in per_row)}); first block "
              f"{statistics.median(r['first'] for r in results[tree]) * 1e3:.0f} ms; "
              f"{last['accepted']:,} accepted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
