"""`python -m tests.peak_memory FILE`: read an upload as the pipeline does (blocks of
the app's default 2,000 rows, each parsed again), then through rows(), in a fresh
process, and print as JSON what came out and how far the peak RSS rose meanwhile.

A fresh process, because in a long-lived one memory freed earlier is reused without
raising the RSS, so a large allocation may not show. The peak is Linux's VmHWM, that
of this process's own memory (ru_maxrss may start from its parent's)."""
import json
import sys
import tracemalloc
from pathlib import Path


def traced_peak(action) -> tuple[object, int]:
    """What `action()` returns and the peak of Python allocations while it ran (in
    this process: for what allocates through Python, the size tests use a fresh one)."""
    tracemalloc.start()
    try:
        result = action()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


def _peak_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # given in KiB
    raise LookupError("VmHWM")


def main(path: str) -> None:
    from app.services.ingest.reader import UnreadableFile, open_csv

    before = _peak_bytes()
    try:
        with open_csv(path) as source:
            numbers = [n for block in source.blocks(2000) for n, _ in block.records()]
        with open_csv(path) as source:
            same = [n for n, _ in source.rows()] == numbers
        outcome = {"rows": len(numbers), "last": numbers[-1] if numbers else None,
                   "rows_agree": same}
    except UnreadableFile as error:
        outcome = {"refused": error.code, "row": error.details.get("row")}
    outcome["growth"] = _peak_bytes() - before
    print(json.dumps(outcome))


if __name__ == "__main__":
    main(sys.argv[1])
