#!/usr/bin/env python
"""Real-time benchmark (SPEC §10, issue 18 item 5): the sustained rate of single-step
`POST /api/v1/leads` on one machine, lead -> buyer's webhook latency per rate.

    . .venv/bin/activate
    python bench/realtime.py --quick                    # smoke run, SQLite, ~40 s
    flock /tmp/leadx-bench.lock python bench/realtime.py  # PostgreSQL then SQLite
    python bench/realtime.py --rates 100,200,300 --seconds 20 --no-sqlite
    python bench/realtime.py --profile 400 --no-sqlite  # in-process cProfile of the path
    python bench/realtime.py --celery 8 --no-sqlite     # webhooks by Celery over Redis
    python bench/realtime.py --no-sqlite --rates 100,200 --thread-cpu /tmp/cpu  # CPU per lead

What one run does, per backend (PostgreSQL from scripts/pg-test-cluster.sh at
--pg-dir/--pg-port, default /tmp/leadx-bench-rt-pg:55437, a port no other bench uses,
stopped at the end; SQLite a file in a temporary directory):

  1. Data: a fresh database built by the real migrations; a verified seller with an API
     key; --buyers funded buyers, each with an API key.
  2. Server: the real app under gunicorn (`-w --workers -k gthread --threads
     --threads`, default 2 x 48 as in gunicorn.conf.py) through bench/web_app.py
     (`create_app` from the environment like wsgi.py, Flask-Limiter off),
     TASK_MODE=thread: the webhooks go from the web process's own delivery threads,
     as in the one-command setup. With
     --celery N: TASK_MODE=celery, a private redis-server and `celery -A app.worker
     worker -P threads -c N` deliver them instead.
  3. Buyers: each buyer places one order through `POST /api/v1/orders` (quantity
     10,000,000, a region filter of its own, so leads spread over all of them) whose
     webhook URL is a real local HTTP server (aiohttp) that records each webhook's
     arrival time and checks its HMAC signature with the order's secret.
  4. Load: an open-loop generator (asyncio + aiohttp, one keep-alive connection pool):
     lead i of a rate is sent at t0 + i/rate whatever the answers before it did, so a
     slow server builds a queue and shows it, as real traffic would (a closed loop
     would slow down with the server and hide it). Each lead is new (unique email),
     carries its own `sub_id`, and cap 1. The latency of a lead is the webhook's arrival
     (its body names the sub_id) minus the moment its POST was sent. Per rate: a
     --warmup-seconds stream not kept, then --seconds of leads; then up to 10 s for
     late webhooks (a missing webhook counts as infinitely late in the percentiles).

The generator, the receiver and the server share the machine's cores (SPEC §10: "load
generator included"); the load average after each rate is printed. Per rate: leads
sent, HTTP statuses, webhooks received, lead -> webhook p50/p90/p99/max, POST response
p50/p90/p99, achieved send rate; at the end the highest rate with p99 < 200 ms.
Figures: bench/out/realtime-<timestamp>.json, gunicorn's logs beside it.

--thread-cpu DIR: per rate, the CPU of its kept leads (from the first send to the last
webhook) per lead: the gunicorn workers' threads by role (bench/threadcpu.py, loaded
through bench/realtime_app.py), their seller processes, PostgreSQL and this process;
with --cprofile each worker thread's cProfile (CPU clock) is written to DIR by role.

--profile N: instead of the server, N leads through the app in this process (Flask
test client, TASK_MODE=eager so the webhook is sent inline to the receiver), under
cProfile, with the SQL statements per lead counted by kind.
"""
import argparse
import asyncio
import contextlib
import cProfile
import hashlib
import hmac
import io
import json
import math
import os
import platform
import pstats
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
OUT = ROOT / "bench" / "out"
REGIONS = ["CA", "NY", "TX", "FL", "WA", "IL", "PA", "OH", "GA", "NC"]
TARGET_MS = 200
PASSWORD = "bench password 123"


def percentile(values: list[float], p: float) -> float:
    xs = sorted(values)
    return xs[max(0, math.ceil(p / 100 * len(xs)) - 1)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build(url: str, upload_dir: str, buyers: int) -> dict:
    """Schema by the migrations; the seller and buyers with their keys."""
    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db
    from app.models import Role, TrustLevel
    from app.services import accounts, ledger

    app = create_app("development", SQLALCHEMY_DATABASE_URI=url, UPLOAD_DIR=upload_dir,
                     TASK_MODE="eager")
    with app.app_context():
        if url.startswith("postgresql"):
            with db.engine.begin() as conn:  # a throwaway database: start from nothing
                conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        with contextlib.redirect_stderr(io.StringIO()):  # alembic's INFO lines
            upgrade(directory=str(ROOT / "migrations"))
        seller = accounts.create_user("rt-seller@bench.example.com", PASSWORD, Role.SELLER)
        seller.trust_level = TrustLevel.VERIFIED
        ledger.open_accounts_for(seller)
        _, seller_key = accounts.create_api_key(seller, "bench")
        buyer_keys = []
        for i in range(buyers):
            buyer = accounts.create_user(f"rt-buyer{i}@bench.example.com", PASSWORD, Role.BUYER)
            ledger.open_accounts_for(buyer)
            ledger.manual_credit(buyer, 10**12, reason="bench funds", actor=None)
            buyer_keys.append(accounts.create_api_key(buyer, "bench")[1])
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
    return {"seller_key": seller_key, "buyer_keys": buyer_keys}


def buyer_regions(buyers: int) -> list[list[str]]:
    """Each buyer's share of the regions (every region has a buyer)."""
    return [[f"US-{r}" for j, r in enumerate(REGIONS) if j % buyers == i] for i in range(buyers)]


class Receiver:
    """The buyers' webhook endpoint (aiohttp): when each sub_id's webhook arrived."""

    def __init__(self):
        self.arrivals: dict[str, float] = {}
        self.bad_signatures = 0
        self.secrets: dict[str, bytes] = {}  # path -> the order's webhook secret
        self.runner = None
        self.url = None

    async def start(self) -> None:
        from aiohttp import web

        async def hook(request):
            body = await request.read()
            arrived = time.perf_counter()
            secret = self.secrets.get(request.match_info["buyer"])
            if secret is not None and request.headers.get("X-Signature") != "sha256=" + hmac.new(
                    secret, body, hashlib.sha256).hexdigest():
                self.bad_signatures += 1
            sub_id = json.loads(body)["lead"].get("sub_id")
            self.arrivals.setdefault(sub_id, arrived)
            return web.Response(status=200)

        app = web.Application()
        app.router.add_post("/hooks/{buyer}", hook)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", port, backlog=1024).start()
        self.url = f"http://127.0.0.1:{port}/hooks"

    async def stop(self) -> None:
        await self.runner.cleanup()


def lead_body(sub_id: str, i: int) -> dict:
    return {"email": f"{sub_id}@mail.example.com", "first_name": "Vera", "last_name": "Lead",
            "age": 20 + i % 50, "gender": "f" if i % 2 else "m",
            "region": REGIONS[i % len(REGIONS)], "sub_id": sub_id,
            "consent_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "source_url": "https://landing.example.com/offer",
            "default_country": "US", "floor_price": 100, "cap": 1}


async def stream(session, base: str, key: str, receiver: Receiver, rate: float, seconds: float,
                 tag: str, meter=None) -> dict:
    """Open loop: lead i is sent at t0 + i/rate. Returns what each lead did."""
    n = max(1, round(rate * seconds))
    sent, answered, statuses, no_sale = {}, {}, Counter(), 0
    headers = {"Authorization": f"Bearer {key}"}

    async def post(i: int):
        nonlocal no_sale
        sub_id = f"{tag}-{i}"
        body = lead_body(sub_id, i)
        sent[sub_id] = time.perf_counter()
        try:
            async with session.post(base + "/api/v1/leads", json=body, headers=headers) as r:
                reply = await r.read()
                statuses[r.status] += 1
                if r.status == 201 and not json.loads(reply)["sales"]:
                    no_sale += 1
        except Exception as exc:  # counted and shown: a refused or dropped connection
            statuses[type(exc).__name__] += 1
        answered[sub_id] = time.perf_counter()

    tasks = []
    loop = asyncio.get_running_loop()
    cpu_before = await loop.run_in_executor(None, meter.read) if meter else None
    t0 = time.perf_counter()
    for i in range(n):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(post(i)))
    send_seconds = time.perf_counter() - t0
    await asyncio.gather(*tasks)
    wait_until = time.perf_counter() + 10
    while time.perf_counter() < wait_until and not all(s in receiver.arrivals for s in sent):
        await asyncio.sleep(0.05)
    if meter:
        from threadcpu import per_lead

        cpu_after = await loop.run_in_executor(None, meter.read)
    lat = [(receiver.arrivals[s] - t) * 1000 if s in receiver.arrivals else math.inf
           for s, t in sent.items()]
    api = [(answered[s] - t) * 1000 for s, t in sent.items()]
    res = {"rate": rate, "leads": n, "sent_per_s": round(n / max(send_seconds, 1e-9), 1),
           "statuses": {str(k): v for k, v in statuses.items()}, "201_without_sale": no_sale,
           "webhooks": sum(1 for s in sent if s in receiver.arrivals),
           "loadavg": [round(x, 2) for x in os.getloadavg()]}
    if meter:  # --thread-cpu: the CPU of this rate's kept leads, from send to last webhook
        res["cpu_ms_per_lead"] = per_lead(cpu_before, cpu_after, n)
    for name, xs in (("lead_to_webhook_ms", lat), ("post_response_ms", api)):
        res[name] = {f"p{p}": round(percentile(xs, p), 1) for p in (50, 90, 99)}
        res[name]["max"] = round(max(xs), 1)
    return res


async def run_load(base: str, info: dict, receiver: Receiver, args, label: str,
                   meter=None) -> list[dict]:
    import aiohttp

    results = []
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=timeout) as session:
        for rate in args.rates:
            await stream(session, base, info["seller_key"], receiver, rate, args.warmup_seconds,
                         f"{label}-w{rate}")
            res = await stream(session, base, info["seller_key"], receiver, rate, args.seconds,
                               f"{label}-r{rate}", meter)
            results.append(res)
            lw, api = res["lead_to_webhook_ms"], res["post_response_ms"]
            print(f"  {rate:>5}/s  sent {res['sent_per_s']:>6}/s  {res['leads']:>5} leads  "
                  f"webhooks {res['webhooks']:>5}  lead->webhook p50 {lw['p50']:>7} p90 "
                  f"{lw['p90']:>7} p99 {lw['p99']:>7} ms   POST p50 {api['p50']:>6} p99 "
                  f"{api['p99']:>7} ms   statuses {res['statuses']}"
                  f"{'  no sale ' + str(res['201_without_sale']) if res['201_without_sale'] else ''}"
                  f"  load {res['loadavg'][0]}", flush=True)
            if meter:
                print(f"    CPU ms per lead: {res['cpu_ms_per_lead']}", flush=True)
            if lw["p99"] > 5 * 1000 and rate != args.rates[-1]:
                print("  (p99 above 5 s: higher rates skipped)", flush=True)
                break
    return results


def bench_backend(label: str, url: str, args, stamp: str) -> dict:
    import requests

    tmp = Path(tempfile.mkdtemp(prefix="leadx-bench-rt-"))
    info = build(url, str(tmp / "uploads"), args.buyers)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "APP_ENV": "development", "DATABASE_URL": url, "TASK_MODE": "thread",
           "WEBHOOK_ALLOW_PRIVATE": "1", "UPLOAD_DIR": str(tmp / "uploads")}
    env.pop("CELERY_BROKER_URL", None)
    OUT.mkdir(parents=True, exist_ok=True)
    log_path = OUT / f"realtime-{stamp}-{label}-gunicorn.log"
    helpers = []  # Redis and the Celery worker, with --celery
    if args.celery:
        redis_port = free_port()
        helpers.append(subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        env.update(TASK_MODE="celery", CELERY_BROKER_URL=f"redis://127.0.0.1:{redis_port}/0")
        helpers.append(subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "app.worker", "worker", "--loglevel=warning",
             "-c", str(args.celery), "-P", "threads", "--without-gossip", "--without-mingle",
             f"--logfile={OUT / f'realtime-{stamp}-{label}-celery.log'}"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    app_module, pg_cpu = "bench.web_app:app", None
    if args.thread_cpu:
        cpu_dir = Path(args.thread_cpu, label)
        shutil.rmtree(cpu_dir, ignore_errors=True)
        cpu_dir.mkdir(parents=True)
        env.update(BENCH_THREAD_CPU=str(cpu_dir), BENCH_CPROFILE="1" if args.cprofile else "0")
        app_module = "bench.realtime_app:app"
        if label == "postgresql":
            from threadcpu import PostgresCpu

            pg_cpu = PostgresCpu(args.pg_dir)
            pg_cpu.start()
    cmd = [sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "-w", str(args.workers),
           "-k", "gthread", "--threads", str(args.threads), "--backlog", "2048",
           "--graceful-timeout", "5", "--error-logfile", str(log_path), app_module]
    server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)

    async def main() -> list[dict]:
        receiver = Receiver()
        await receiver.start()
        try:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, wait_up, base, server, log_path)
            for i, key in enumerate(info["buyer_keys"]):
                reply = await loop.run_in_executor(None, lambda: requests.post(
                    base + "/api/v1/orders", headers={"Authorization": f"Bearer {key}"},
                    json={"price": 500 + 10 * i, "quantity": 1_000_000,
                          "filters": {"regions": buyer_regions(args.buyers)[i]},
                          "webhook_url": f"{receiver.url}/b{i}"}, timeout=30))
                reply.raise_for_status()
                receiver.secrets[f"b{i}"] = reply.json()["webhook_secret"].encode()
            meter = None
            if args.thread_cpu:
                from threadcpu import Meter

                meter = Meter(server.pid, cpu_dir, pg_cpu)
            results = await run_load(base, info, receiver, args, label, meter)
            for res in results:
                res["bad_signatures"] = receiver.bad_signatures
            return results
        finally:
            await receiver.stop()

    try:
        results = asyncio.run(main())
    finally:
        for process in [server, *reversed(helpers)]:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    if pg_cpu is not None:
        pg_cpu.stop()
    passing = [r["rate"] for r in results if r["lead_to_webhook_ms"]["p99"] < TARGET_MS
               and r["webhooks"] == r["leads"]]
    best = max(passing, default=None)
    print(f"  {label}: highest rate with every webhook and p99 < {TARGET_MS} ms: "
          f"{best if best is not None else 'none'}/s", flush=True)
    return {"backend": label, "server": f"gunicorn -w {args.workers} -k gthread --threads "
            f"{args.threads}", "tasks": f"celery, {args.celery} threads" if args.celery else "thread", "rates": results, "best_rate_p99_under_200ms": best,
            "gunicorn_log": str(log_path.relative_to(ROOT))}


def wait_up(base: str, server: subprocess.Popen, log_path: Path) -> None:
    import requests

    deadline = time.time() + 60
    while True:
        try:
            if requests.get(base + "/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.time() > deadline or server.poll() is not None:
            raise RuntimeError(f"gunicorn did not come up; see {log_path}")
        time.sleep(0.2)


# --------------------------------------------------------------------- profile
def statement_kind(sql: str) -> str:
    words = sql.split(None, 4)
    kind = words[0].upper() if words else "?"
    if kind == "SELECT":
        match = re.search(r"\bFROM\s+(\w+)", sql, re.I)
        return f"SELECT {match.group(1) if match else ''}".strip()
    if kind in ("INSERT", "UPDATE", "DELETE"):
        match = re.search(r"(?:INTO|UPDATE|FROM)\s+(\w+)", sql, re.I)
        return f"{kind} {match.group(1) if match else ''}"
    return kind


def profile(label: str, url: str, args) -> dict:
    """N leads through the app in this process under cProfile; SQL per lead by kind."""
    import sqlalchemy as sa

    from app import create_app
    from app.extensions import db
    from app.market import realtime

    tmp = Path(tempfile.mkdtemp(prefix="leadx-bench-rt-prof-"))
    info = build(url, str(tmp / "uploads"), args.buyers)
    app = create_app("development", SQLALCHEMY_DATABASE_URI=url, UPLOAD_DIR=str(tmp / "uploads"),
                     TASK_MODE="eager", WEBHOOK_ALLOW_PRIVATE=True, RATELIMIT_ENABLED=False)
    statements, begins = Counter(), Counter()

    async def main():
        receiver = Receiver()
        await receiver.start()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, work, receiver)
        finally:
            await receiver.stop()

    def work(receiver: Receiver) -> dict:
        client = app.test_client()
        for i, key in enumerate(info["buyer_keys"]):
            reply = client.post("/api/v1/orders", headers={"Authorization": f"Bearer {key}"},
                                json={"price": 500 + 10 * i, "quantity": 1_000_000,
                                      "filters": {"regions": buyer_regions(args.buyers)[i]},
                                      "webhook_url": f"{receiver.url}/b{i}"})
            assert reply.status_code == 201, reply.json
            receiver.secrets[f"b{i}"] = reply.json["webhook_secret"].encode()
        headers = {"Authorization": f"Bearer {info['seller_key']}"}
        for i in range(20):  # warm caches, as a running server has them
            assert client.post("/api/v1/leads", json=lead_body(f"warm-{i}", i),
                               headers=headers).status_code == 201
        with app.app_context():
            engine = db.engine

        def count(conn, cursor, statement, *a):
            statements[statement_kind(statement)] += 1

        def count_begin(conn):
            begins["transactions"] += 1
        sa.event.listen(engine, "before_cursor_execute", count)
        sa.event.listen(engine, "begin", count_begin)
        profiler, seller_thread = cProfile.Profile(), cProfile.Profile()
        sell_group = realtime.sell_group
        # cProfile sees one thread: the seller thread's groups get a profiler of their own.
        realtime.sell_group = lambda group: seller_thread.runcall(sell_group, group)
        started = time.perf_counter()
        profiler.enable()
        try:
            for i in range(args.profile):
                reply = client.post("/api/v1/leads", json=lead_body(f"p-{i}", i), headers=headers)
                assert reply.status_code == 201 and reply.json["sales"], reply.json
        finally:
            profiler.disable()
            realtime.sell_group = sell_group
        wall = time.perf_counter() - started
        sa.event.remove(engine, "before_cursor_execute", count)
        sa.event.remove(engine, "begin", count_begin)
        missing = sum(1 for i in range(args.profile) if f"p-{i}" not in receiver.arrivals)
        buf = io.StringIO()
        for title, thread in (("request threads", profiler), ("seller thread", seller_thread)):
            buf.write(f"\n---- {title}\n")
            stats = pstats.Stats(thread, stream=buf)
            stats.sort_stats("cumulative").print_stats(45)
            stats.sort_stats("tottime").print_stats(25)
        return {"leads": args.profile, "wall_ms_per_lead": round(wall * 1000 / args.profile, 2),
                "webhooks_missing": missing, "cprofile": buf.getvalue()}

    try:
        res = asyncio.run(main())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n = args.profile
    res["sql_per_lead"] = round(sum(statements.values()) / n, 1)
    res["transactions_per_lead"] = round(begins["transactions"] / n, 1)
    res["sql_by_kind_per_lead"] = {k: round(v / n, 2) for k, v in statements.most_common()}
    print(f"  {label}: {res['wall_ms_per_lead']} ms per lead in one thread (profiled), "
          f"{res['sql_per_lead']} SQL statements and {res['transactions_per_lead']} "
          f"transactions per lead, webhooks missing {res['webhooks_missing']}")
    for kind, per in res["sql_by_kind_per_lead"].items():
        print(f"    {per:>6}  {kind}")
    print(res["cprofile"])
    return res


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="20,60,100,200,300",
                        type=lambda s: [float(x) if "." in x else int(x) for x in s.split(",")])
    parser.add_argument("--seconds", type=float, default=10, help="kept seconds per rate")
    parser.add_argument("--warmup-seconds", type=float, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=48)
    parser.add_argument("--buyers", type=int, default=5)
    parser.add_argument("--celery", type=int, default=0, metavar="THREADS",
                        help="TASK_MODE=celery: Redis and a Celery worker with this many "
                             "threads deliver the webhooks (default: the web process's threads)")
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--pg-dir", default="/tmp/leadx-bench-rt-pg")
    parser.add_argument("--pg-port", type=int, default=55437)
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="profile N leads in-process instead of the load run")
    parser.add_argument("--thread-cpu", metavar="DIR",
                        help="write each gunicorn thread's CPU to DIR and print the CPU per "
                             "lead by thread role, PostgreSQL and this process")
    parser.add_argument("--cprofile", action="store_true",
                        help="with --thread-cpu: a cProfile per worker thread, per role, in DIR")
    parser.add_argument("--quick", action="store_true", help="SQLite, 20 and 60/s, 4 s each")
    args = parser.parse_args()
    if args.quick:
        args.no_pg, args.rates, args.seconds, args.warmup_seconds = True, [20, 60], 4, 1
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()
    report = {"started": stamp, "commit": head, "machine": {
        "cpus": os.cpu_count(), "python": platform.python_version(),
        "loadavg_before": [round(x, 2) for x in os.getloadavg()]}, "runs": []}
    print(f"bench/realtime.py  commit {head}  {os.cpu_count()} cpus  load average "
          f"{report['machine']['loadavg_before']}", flush=True)
    backends = []
    pg = None
    if not args.no_pg:
        from pgcluster import Postgres

        pg = Postgres(args.pg_dir, args.pg_port)
        pg.start()
        backends.append(("postgresql", lambda: pg.fresh_database("leadx_bench_rt")))
    if not args.no_sqlite:
        sqlite_dir = Path(tempfile.mkdtemp(prefix="leadx-bench-rt-sqlite-"))
        backends.append(("sqlite", lambda: f"sqlite:///{sqlite_dir / 'rt.sqlite3'}"))
    try:
        for label, make_url in backends:
            url = make_url()
            if args.profile:
                print(f"[{label}] profile: {args.profile} leads in-process", flush=True)
                report["runs"].append({"backend": label, "profile": profile(label, url, args)})
            else:
                print(f"[{label}] gunicorn -w {args.workers} --threads {args.threads}, "
                      f"{args.buyers} buyers, {args.seconds:g} s per rate, webhooks by "
                      f"{f'Celery ({args.celery} threads)' if args.celery else 'web threads'}",
                      flush=True)
                report["runs"].append(bench_backend(label, url, args, stamp))
    finally:
        if pg is not None:
            pg.stop()
    report["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    path = OUT / f"realtime-{stamp}.json"
    OUT.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(f"figures: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
