#!/usr/bin/env python
"""Ingest workers' CPU per row: what workers._validate_in_worker costs on a file's
first rows, one process per tree, for this tree and for others in the same run.

Not a unit test: it prints µs of CPU per row. Each tree runs in a child process of
its own (its own imports), which reads the file's blocks first and then, told to by
this process, runs the worker's call on one block (parse, validate, normalise, seal,
hash, score, pack; the cyclic collector paused as in a worker) and says how much CPU
it took. The trees take turns block by block, so a burst of load elsewhere on the
machine falls on all of them alike. The first block is timed apart: it also builds
what a worker builds once. The others are run --passes times and each block's
fastest run counts: on a shared machine a run is slowed by whatever else runs, never
sped up. The first pass alone is printed too: it is the one whose library answers
are not cached yet, as in an upload (later passes find the rows' rare shapes cached).

    python bench/worker_cpu.py                       # this tree, bench/out's 1M file
    python bench/worker_cpu.py --vs /work/main       # and main's, taking turns
    python bench/worker_cpu.py --profile             # cProfile of this tree's passes
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CSV = ROOT / "bench" / "out" / "leads-1000000-seed20261122-v1.csv"


def child(spec: dict) -> None:
    """In a tree's own interpreter: run the worker's call on the blocks it is told."""
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

    if spec["profile"]:
        validate(blocks[0])
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(spec["passes"]):
            for block in blocks[1:]:
                validate(block)
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats(spec["profile"]).print_stats(45)
        return
    print(json.dumps({"blocks": [block.rows for block in blocks]}), flush=True)
    for line in sys.stdin:
        cpu, accepted = validate(blocks[int(line)])
        print(json.dumps([cpu, accepted]), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--chunk", type=int, default=2000, help="rows per block")
    parser.add_argument("--storage", default="pgcopy",
                        help="the workers' storage format (sqlite, pgcopy)")
    parser.add_argument("--vs", action="append", default=[], help="another tree to time")
    parser.add_argument("--passes", type=int, default=5, help="runs of each block")
    parser.add_argument("--profile", nargs="?", const="tottime",
                        help="cProfile this tree's passes instead, sorted by (tottime)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return 0
    trees = [str(ROOT)] + args.vs

    def start(tree: str) -> subprocess.Popen:
        spec = {"tree": tree, "csv": str(args.csv), "rows": args.rows, "chunk": args.chunk,
                "storage": args.storage, "profile": args.profile, "passes": args.passes}
        return subprocess.Popen([sys.executable, __file__, "--child", json.dumps(spec)],
                                cwd=tree, text=True, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE)

    if args.profile:
        return start(trees[0]).wait()
    children = [start(tree) for tree in trees]
    sizes = [json.loads(c.stdout.readline())["blocks"] for c in children][0]

    def run(turn: int, block: int) -> list:
        """Each tree's (cpu, accepted) on the block, in an order that changes by turn."""
        order = list(range(len(trees)))
        order = order[turn % len(order):] + order[:turn % len(order)]
        answers: list = [None] * len(trees)
        for i in order:
            children[i].stdin.write(f"{block}\n")
            children[i].stdin.flush()
            answers[i] = json.loads(children[i].stdout.readline())
        return answers

    first = run(0, 0)
    fastest = [[float("inf")] * len(sizes) for _ in trees]
    first_pass = [0.0] * len(trees)
    accepted = [0] * len(trees)
    for turn in range(args.passes):
        for block in range(1, len(sizes)):
            for i, (cpu, taken) in enumerate(run(turn + block, block)):
                fastest[i][block] = min(fastest[i][block], cpu)
                if turn == 0:
                    first_pass[i] += cpu
                    accepted[i] += taken
    for c in children:
        c.stdin.close()
        c.wait()
    rows = sum(sizes[1:])
    print(f"load {os.getloadavg()[0]:.2f}; {args.csv.name}, first {sum(sizes):,} rows, "
          f"blocks of {args.chunk}, storage {args.storage}; µs of CPU per row after the "
          f"first block: fastest of {args.passes} runs of each block (first pass alone)")
    for i, tree in enumerate(trees):
        print(f"  {tree:<24} {sum(fastest[i][1:]) / rows * 1e6:6.2f} µs/row "
              f"({first_pass[i] / rows * 1e6:.2f}); first block {first[i][0] * 1e3:.0f} ms; "
              f"{accepted[i] + first[i][1]:,} accepted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
