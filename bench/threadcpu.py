"""Bench-only: where a gunicorn worker's CPU goes, thread by thread (bench/realtime.py
--thread-cpu DIR).

`install` (run when the worker loads the app, before its threads start) names every
thread the moment it first runs Python; on each SIGUSR2 it writes each thread's CPU seconds
so far (user + system, from /proc) with its name to DIR/threads-<pid>-<n>.json. With
`profile`, each thread also runs under a cProfile of its own (cProfile follows one
thread) timed by the thread's CPU clock (so waits for the database, the GIL or the
seller thread do not count), and the profiles are written per role (request, seller, send, webhook,
other) to DIR/prof-<pid>-<role>-<n>.pstats. `PostgresCpu` sums the CPU of a PostgreSQL
cluster's processes, including backends that ended meanwhile. `Meter` takes all of
them at a moment, so a rate's CPU is the difference of two readings.
"""
import cProfile
import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

CLOCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(stat_path: str) -> float:
    """utime + stime of a process or thread from its /proc stat file."""
    with open(stat_path) as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK


def role(name: str) -> str:
    for prefix, label in (("ThreadPoolExecutor", "request"), ("leadx-realtime", "seller"),
                          ("leadx-send", "send"), ("leadx-webhook", "webhook"),
                          ("MainThread", "gunicorn main")):
        if name.startswith(prefix):
            return label
    return "other"


def install(out_dir: str, profile: bool) -> None:
    names = {threading.main_thread().native_id: "MainThread"}
    profilers: dict[int, tuple[str, cProfile.Profile]] = {}

    def first_call(frame, event, arg):
        thread = threading.current_thread()
        names[thread.native_id] = thread.name
        if profile:
            profiler = cProfile.Profile(time.thread_time)  # CPU, not waits
            profilers[thread.native_id] = (thread.name, profiler)
            profiler.enable()  # replaces this hook in this thread
        else:
            sys.setprofile(None)

    written = [0]

    def write() -> None:
        pid, n = os.getpid(), written[0]
        written[0] += 1
        threads = []
        for tid in os.listdir(f"/proc/{pid}/task"):
            # The main thread (its tid is the pid) may have run no Python since the fork.
            name = names.get(int(tid)) or ("MainThread" if int(tid) == pid else "?")
            threads.append({"tid": int(tid), "name": name, "role": role(name),
                            "cpu_s": cpu_seconds(f"/proc/{pid}/task/{tid}/stat")})
        if profile:
            import pstats

            by_role: dict[str, pstats.Stats] = {}
            for name, profiler in list(profilers.values()):
                profiler.snapshot_stats()  # the thread runs on: no disable() from here
                label = role(name)
                if label in by_role:
                    by_role[label].add(Snapshot(profiler.stats))
                else:
                    by_role[label] = pstats.Stats(Snapshot(profiler.stats))
            for label, stats in by_role.items():
                stats.dump_stats(str(Path(out_dir, f"prof-{pid}-{label.replace(' ', '_')}-{n}.pstats")))
        # Last: the bench reads the profiles once this file is there.
        Path(out_dir, f"threads-{pid}-{n}.json").write_text(json.dumps(
            {"pid": pid, "process_cpu_s": cpu_seconds(f"/proc/{pid}/stat"), "threads": threads}))

    def on_signal(signum, frame) -> None:
        try:
            write()
        except Exception:  # shown beside the figures (the worker's stderr is not kept)
            Path(out_dir, f"error-{os.getpid()}.txt").write_text(traceback.format_exc())

    threading.setprofile(first_call)
    signal.signal(signal.SIGUSR2, on_signal)


class Snapshot:
    """What pstats.Stats reads from a profiler, taken without stopping it."""

    def __init__(self, stats: dict):
        self.stats = stats

    def create_stats(self) -> None:
        pass


class PostgresCpu:
    """The CPU seconds a cluster's processes spend from `start` to `stop`, sampled every
    0.2 s (a backend's CPU is counted up to its last sample)."""

    def __init__(self, pg_dir: str):
        self.postmaster = int(Path(pg_dir, "postmaster.pid").read_text().split()[0])
        self.base: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.running = False

    def _sample(self) -> None:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            try:
                with open(f"/proc/{pid}/stat") as f:
                    ppid = int(f.read().rpartition(")")[2].split()[1])
                if pid != self.postmaster and ppid != self.postmaster:
                    continue
                self.last[pid] = cpu_seconds(f"/proc/{pid}/stat")
            except (OSError, ValueError):
                continue

    def start(self) -> None:
        self._sample()
        self.running = True

        def loop():
            while self.running:
                time.sleep(0.2)
                self._sample()
        self.thread = threading.Thread(target=loop, daemon=True)
        self.thread.start()

    def total(self) -> float:
        self._sample()
        return sum(self.last.values())

    def stop(self) -> None:
        self.running = False
        self.thread.join()


class Meter:
    """Readings of CPU seconds: each gunicorn worker's threads by role (SIGUSR2 to the
    workers of `server_pid`, files in `out_dir`), PostgreSQL, and this process."""

    def __init__(self, server_pid: int, out_dir: Path, postgres: PostgresCpu | None):
        self.server_pid, self.out_dir, self.postgres = server_pid, out_dir, postgres
        self.readings = 0

    def read(self) -> dict[str, float]:
        workers = Path(f"/proc/{self.server_pid}/task/{self.server_pid}/children").read_text().split()
        for pid in workers:
            os.kill(int(pid), signal.SIGUSR2)
        n = self.readings
        self.readings += 1
        files = [Path(self.out_dir, f"threads-{pid}-{n}.json") for pid in workers]
        deadline = time.time() + 120
        while not all(f.exists() for f in files) and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(0.2)  # written whole
        totals: dict[str, float] = {}
        for f in files:
            for thread in json.loads(f.read_text())["threads"]:
                key = f"gunicorn: {role(thread['name'])}"
                totals[key] = totals.get(key, 0.0) + thread["cpu_s"]
        for pid in workers:  # REALTIME_SELLER=process: each worker's seller process, whole
            for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
                totals["seller processes"] = (totals.get("seller processes", 0.0)
                                              + cpu_seconds(f"/proc/{child}/stat"))
        if self.postgres is not None:
            totals["postgresql"] = self.postgres.total()
        totals["generator and receiver (bench process)"] = sum(os.times()[:2])
        return totals


def per_lead(before: dict[str, float], after: dict[str, float], leads: int) -> dict:
    """ms of CPU per lead between two readings, largest first, with the total."""
    ms = {k: (after[k] - before.get(k, 0.0)) * 1000 / leads for k in after}
    res = {k: round(v, 2) for k, v in sorted(ms.items(), key=lambda kv: -kv[1])}
    res["total"] = round(sum(ms.values()), 2)
    return res
