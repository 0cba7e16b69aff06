#!/usr/bin/env python
"""Web benchmark (SPEC §10): the pages and the API under concurrent load on gunicorn,
requests/s and latency percentiles, next to a bare Flask route on the same server.

    . .venv/bin/activate
    apt-get install wrk                       # the load generator (Debian package `wrk`)
    python bench/web.py --quick --no-pg       # smoke run, ~1 minute
    python bench/web.py                       # SQLite then PostgreSQL, ~9 minutes
    python bench/web.py --workers 4 --threads 2 --connections 32 --duration 20

What one run does, per backend (SQLite file in a temporary directory; PostgreSQL from
scripts/pg-test-cluster.sh at --pg-dir/--pg-port, default /tmp/leadx-bench-web-pg:55436,
a port neither bench/match.py nor bench/pages.py uses, stopped at the end):

  1. Data: a fresh database built by the real migrations (flask_migrate.upgrade), filled
     by the app's own demo loader (`app.services.demo.load_demo()`, what `flask demo`
     runs): an admin, sellers whose batches went through the real upload pipeline and
     quality checks, buyers whose orders the real matcher filled, outcomes on most
     sales (the counts are printed), then on PostgreSQL an ANALYZE (the planner's
     statistics, as in a database in use). A small, realistic marketplace;
     bench/pages.py measures the same pages with a million leads. Then an API key for the first demo
     buyer and one for the first demo seller (`accounts.create_api_key`), who are also
     the ones logged in.
  2. Server: the real app under gunicorn with the repository's gunicorn.conf.py (a
     listening socket per process, `reuse_port`) and `-w --workers -k gthread --threads
     --threads`, default 2 x 4, on 127.0.0.1 at a free port, through bench/web_app.py: `create_app`
     configured by the environment like wsgi.py (APP_ENV=development: its fixed keys
     and plain-HTTP cookies, otherwise the production settings, including the 300 s
     market-statistics cache; TASK_MODE=thread, no Celery) with Flask-Limiter turned
     off (RATELIMIT_ENABLED=False: the figures are the pages' own cost, not 429s) and
     one extra route, `GET /bench/bare` returning "ok", the baseline.
  3. Sessions: the demo buyer, seller and admin log in through the real login form
     with `requests` (the form fetched, its CSRF token posted back; the admin's
     two-factor code from the demo's published seed); each session
     cookie goes to wrk as `-H "Cookie: ..."`, API keys as `Authorization: Bearer`.
     Every request carries the same User-Agent: Flask-Login's "strong" session
     protection drops a session whose address or User-Agent changes.
  4. Every endpoint is requested once with `requests` (no redirects followed) and must
     answer 200, or the run stops: a redirect to the login page would be measured as a
     fast page. Then per endpoint: a --warmup wrk run (not kept), then
     `wrk --latency -t --wrk-threads -c --connections -d --duration --timeout`;
     requests/s and the 50/90/99th latency percentiles are parsed from wrk's output.
     A small Lua script counts every response's status, because wrk's own "Non-2xx or
     3xx responses" does not count a 302; any status outside 2xx or any socket error
     (connect, read, write, timeout) FAILs the run (exit status 1). The Lua response
     hook makes wrk read every body; what that costs wrk was within the noise.
  5. Before the first measurement, --settle seconds (default 10) of load on the health
     check: each worker starts its embedded scheduler at its first request, and that
     scheduler's first pass runs every periodic job at once (it halved the first bare
     run when nothing waited for it). The bare route is measured first and again last
     (the drift of the machine over the run); every endpoint's requests/s is shown as a
     fraction of the better of the two. --only measures a subset (with both bare runs).

Endpoints: the public landing and login pages and the health check; the buyer's
dashboard, order list, the page of their fullest order, the builder's live estimate
panel (posted with the CSRF header, as htmx does) and the KPI page (30 days); the
seller's dashboard, batch list and a batch page; the admin's marketplace page (30
days); API GET /orders, /estimate with four filters, /kpis and /balance as the buyer,
/batches as the seller.

On the 2-core machine of the recorded runs wrk and gunicorn share the cores, so the
figures are the server's throughput with a load generator beside it, not its ceiling;
the load average before and after every wrk run goes into the JSON. Beside requests/s,
each run records the CPU time per request (ms, user + system, from /proc) of the
server (gunicorn's master, workers and seller process), of PostgreSQL (its server and
backends) and of wrk: requests/s follow whatever else the machine runs, CPU time per
request far less, so two versions of a page compare by it on a busy machine. PASS/FAIL is
"every response 2xx, no socket errors"; the endpoints below issue 17's targets (10% of
the bare route's requests/s, p99 under 300 ms) are listed after the tables.
Figures: bench/out/web-<timestamp>.json (configuration, machine, code, data counts,
every wrk run with its raw output), the gunicorn error logs beside it.
"""
import argparse
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urljoin

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
OUT = ROOT / "bench" / "out"
USER_AGENT = "leadx-bench-web/1"
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
# What every logged-in page gives htmx for its POSTs (templates/base.html).
HTMX_CSRF_RE = re.compile(r'"X-CSRFToken": "([^"]+)"')
ESTIMATE_FILTERS = "regions=US-CA&age_min=25&age_max=65&require=phone"

# Counts each response's status per wrk thread and prints the totals after wrk's summary.
STATUS_LUA = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {} end
function response(status, headers, body) statuses[status] = (statuses[status] or 0) + 1 end
function done(summary, latency, requests)
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      io.write(string.format("STATUS %d %d\\n", status, n))
    end
  end
end
"""


def endpoints(info: dict) -> list[tuple[str, str, str | None]]:
    """(name, path, who): who is a logged-in role, "<role>-key" for the API, or None.
    The paths in POSTED are posted as htmx posts them (a form body, the CSRF header)."""
    return [
        ("bare Flask route", "/bench/bare", None),
        ("health check", "/healthz", None),
        ("landing page", "/", None),
        ("login page", "/auth/login", None),
        ("buyer dashboard", "/buyer/", "buyer"),
        ("buyer orders", "/buyer/orders", "buyer"),
        ("buyer order page", f"/buyer/orders/{info['order_id']}", "buyer"),
        ("buyer estimate panel (POST)", "/buyer/orders/estimate", "buyer"),
        ("buyer KPI page (30 days)", "/buyer/kpis", "buyer"),
        ("seller dashboard", "/seller/", "seller"),
        ("seller batches", "/seller/batches", "seller"),
        ("seller batch page", f"/seller/batches/{info['batch_id']}", "seller"),
        ("admin marketplace (30 days)", "/admin/", "admin"),
        ("API GET /orders", "/api/v1/orders", "buyer-key"),
        ("API GET /estimate (4 filters)", f"/api/v1/estimate?{ESTIMATE_FILTERS}", "buyer-key"),
        ("API GET /kpis", "/api/v1/kpis", "buyer-key"),
        ("API GET /balance", "/api/v1/balance", "buyer-key"),
        ("API GET /batches (seller)", "/api/v1/batches", "seller-key"),
        ("bare Flask route, again", "/bench/bare", None),
    ]


# The builder's live estimate is posted (its form holds the CSRF token and the webhook
# URL with its secret, which must stay out of URLs and logs).
POSTED = {"/buyer/orders/estimate": ESTIMATE_FILTERS}


def build(url: str, upload_dir: str) -> dict:
    """Schema by the migrations, the demo marketplace, API keys; who and what to ask for."""
    import contextlib
    import io

    import sqlalchemy as sa
    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db
    from app.models import Batch, Lead, Order, Sale, SaleOutcome, User
    from app.services import accounts, demo

    # INGEST_WORKERS=1: the demo's four small batches need no process pool.
    app = create_app("development", SQLALCHEMY_DATABASE_URI=url, UPLOAD_DIR=upload_dir,
                     TASK_MODE="eager", INGEST_WORKERS=1)
    started = time.perf_counter()
    with app.app_context():
        with contextlib.redirect_stderr(io.StringIO()):  # alembic's INFO lines
            upgrade(directory=str(ROOT / "migrations"))
        logins = {login.role: login for login in reversed(demo.load_demo())}  # first per role
        db.session.commit()
        if db.engine.dialect.name == "postgresql":
            # Planner statistics, as a database in use has them: autovacuum analyzes
            # new tables only a minute or more later, during the measurements, and
            # until then PostgreSQL plans the pages' queries blind.
            db.session.execute(sa.text("ANALYZE"))
            db.session.commit()
        buyer = accounts.user_by_email(logins["buyer"].email)
        seller = accounts.user_by_email(logins["seller"].email)
        order = db.session.scalars(sa.select(Order).where(Order.buyer_id == buyer.id)
                                   .order_by(Order.filled.desc(), Order.id)).first()
        batch = db.session.scalars(sa.select(Batch).where(Batch.seller_id == seller.id)
                                   .order_by(Batch.accepted.desc(), Batch.id)).first()
        _, buyer_key = accounts.create_api_key(buyer, "bench-web")
        _, seller_key = accounts.create_api_key(seller, "bench-web")
        db.session.commit()

        def count(model):
            return db.session.scalar(sa.select(sa.func.count()).select_from(model))

        info = {
            "logins": {role: [login.email, login.password] for role, login in logins.items()},
            "keys": {"buyer-key": buyer_key, "seller-key": seller_key},
            "order_id": order.id, "order_sales": order.filled,
            "batch_id": batch.id, "batch_leads": batch.accepted,
            "counts": {"users": count(User), "batches": count(Batch), "leads": count(Lead),
                       "orders": count(Order), "sales": count(Sale),
                       "outcomes": count(SaleOutcome)},
            "load_seconds": round(time.perf_counter() - started, 1),
        }
        db.session.remove()
        db.engine.dispose()
    return info


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(url: str, tmp: Path, args, log_path: Path) -> tuple[subprocess.Popen, str]:
    import requests

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "APP_ENV": "development", "DATABASE_URL": url, "TASK_MODE": "thread",
           "UPLOAD_DIR": str(tmp / "uploads")}
    env.pop("CELERY_BROKER_URL", None)
    cmd = [sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "-w", str(args.workers),
           "-k", "gthread", "--threads", str(args.threads), "--graceful-timeout", "5",
           # No control socket: a second gunicorn (bench/match.py's) would share its path.
           "--no-control-socket", "--error-logfile", str(log_path), "bench.web_app:app"]
    # Its own process group, so that the master and its workers can be ended together.
    server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 60
    while True:
        try:
            if requests.get(base + "/healthz", timeout=2).status_code == 200:
                return server, base
        except requests.RequestException:
            pass
        if time.time() > deadline or server.poll() is not None:
            stop_server(server)
            raise RuntimeError(f"gunicorn did not come up; see {log_path}")
        time.sleep(0.2)


def stop_server(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def login(base: str, email: str, password: str) -> tuple[str, str]:
    """A session logged in through the real form: its cookie header for wrk and the
    CSRF token its pages give htmx."""
    import requests

    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    form = session.get(base + "/auth/login", timeout=30)
    token = CSRF_RE.search(form.text)
    if form.status_code != 200 or token is None:
        raise RuntimeError(f"login form: HTTP {form.status_code}, CSRF token found: {bool(token)}")
    response = session.post(base + "/auth/login", timeout=30, allow_redirects=False,
                            data={"email": email, "password": password,
                                  "csrf_token": token.group(1)})
    if response.status_code != 302 or "/auth/login" in response.headers.get("Location", ""):
        raise RuntimeError(f"login as {email} failed: HTTP {response.status_code}")
    if response.headers["Location"].split("?")[0].endswith("/auth/two-factor"):
        response = second_step(session, urljoin(base + "/", response.headers["Location"]))
    landing = session.get(urljoin(base + "/", response.headers["Location"]), timeout=30)
    token = HTMX_CSRF_RE.search(landing.text)
    if token is None:
        raise RuntimeError(f"no CSRF token for htmx on {email}'s first page")
    return "; ".join(f"{c.name}={c.value}" for c in session.cookies), token.group(1)


def second_step(session, url: str):
    """An admin's two-factor step (required for admins): the demo admin's current code,
    from the demo's published seed."""
    from app.services import demo

    token = CSRF_RE.search(session.get(url, timeout=30).text)
    response = session.post(url, timeout=30, allow_redirects=False,
                            data={"code": demo.demo_admin_code(), "csrf_token": token.group(1)})
    if response.status_code != 302 or "/auth/" in response.headers.get("Location", ""):
        raise RuntimeError(f"two-factor step failed: HTTP {response.status_code}")
    return response


def to_ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def parse_wrk(text: str) -> dict:
    def grab(pattern: str):
        match = re.search(pattern, text, re.M)
        return match.groups() if match else None

    result = {"requests_per_s": float(grab(r"^Requests/sec:\s+([\d.]+)")[0])}
    requests_done = grab(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m),")
    result["requests"] = int(requests_done[0])
    result["seconds"] = round(to_ms(*requests_done[1:]) / 1000, 2)
    for p in (50, 75, 90, 99):
        value = grab(rf"^\s+{p}%\s+([\d.]+)(us|ms|s|m)\s*$")
        result[f"p{p}_ms"] = round(to_ms(*value), 3)
    errors = grab(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
    result["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"),
                                       map(int, errors or (0, 0, 0, 0))))
    non_2xx_3xx = grab(r"Non-2xx or 3xx responses: (\d+)")
    result["wrk_non_2xx_3xx"] = int(non_2xx_3xx[0]) if non_2xx_3xx else 0
    statuses: dict[str, int] = {}
    for status, n in re.findall(r"^STATUS (\d+) (\d+)$", text, re.M):
        statuses[status] = statuses.get(status, 0) + int(n)
    result["statuses"] = statuses
    result["non_2xx"] = sum(n for status, n in statuses.items() if not status.startswith("2"))
    return result


def post_script(lua: Path, body: str) -> Path:
    """The status-counting script, sending a form POST with `body` instead of a GET."""
    posting = lua.with_name("post.lua")
    posting.write_text(f"wrk.method = \"POST\"\nwrk.body = {json.dumps(body)}\n"
                       'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
                       + lua.read_text())
    return posting


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(root: int | None) -> float:
    """CPU time (user + system) used so far by the live processes descended from `root`
    and by `root` itself (Linux /proc): the gunicorn master, its workers and the seller
    process; a PostgreSQL server and its backends."""
    if root is None:
        return 0.0
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # ended meanwhile
                continue
            # After the command's ")" : state, ppid, ... utime and stime are fields 14, 15.
            fields = stat[stat.rindex(")") + 2:].split()
            stats[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    tree, total, grew = {root}, 0, True
    while grew:
        grew = False
        for pid, (ppid, _) in stats.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    for pid in tree:
        total += stats.get(pid, (0, 0))[1]
    return total / TICK


def postmaster(pg_dir: str) -> int:
    """The PostgreSQL server's process id (the first line of its postmaster.pid)."""
    return int((Path(pg_dir) / "postmaster.pid").read_text().split()[0])


def run_wrk(url: str, headers: list[str], seconds: int, args, lua: Path,
            pids: dict | None = None) -> dict:
    """One wrk run. `pids`: {"server": gunicorn master, "database": PostgreSQL's
    postmaster or None}, whose process trees' CPU time per request is recorded, with
    wrk's own: unlike requests/s, barely moved by what else the machine runs."""
    # Whole seconds: wrk reads "-d6.0s" as no duration at all and exits 1.
    cmd = ["wrk", f"-t{args.wrk_threads}", f"-c{args.connections}", f"-d{int(seconds)}s",
           "--latency", "--timeout", f"{args.timeout}s", "-s", str(lua)]
    for header in headers:
        cmd += ["-H", header]
    pids = pids or {}
    load_before = os.getloadavg()
    cpu_before = {who: cpu_seconds(pid) for who, pid in pids.items()}
    wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    text = subprocess.run(cmd + [url], check=True, capture_output=True, text=True).stdout
    wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = {who: cpu_seconds(pid) - cpu_before[who] for who, pid in pids.items()}
    cpu["wrk"] = (wrk_after.ru_utime + wrk_after.ru_stime
                  - wrk_before.ru_utime - wrk_before.ru_stime)
    result = parse_wrk(text)
    result["cpu_ms_per_request"] = {who: round(1000 * seconds / max(result["requests"], 1), 3)
                                    for who, seconds in cpu.items()}
    result.update(loadavg_before=load_before, loadavg_after=os.getloadavg(), wrk_output=text)
    return result


def measure(base: str, info: dict, args, lua: Path, pids: dict) -> list[dict]:
    import requests

    sessions = {role: login(base, email, password)
                for role, (email, password) in info["logins"].items()}
    if args.settle:
        # Each worker starts its embedded scheduler at its first request, whose first
        # pass runs every periodic job at once: over before anything is measured.
        run_wrk(base + "/healthz", [f"User-Agent: {USER_AGENT}"], args.settle, args, lua)
    results = []
    for name, path, who in endpoints(info):
        if args.only and path != "/bench/bare" and not any(
                word.lower() in name.lower() for word in args.only):
            continue
        headers = [f"User-Agent: {USER_AGENT}"]
        if who in sessions:
            headers.append(f"Cookie: {sessions[who][0]}")
        elif who is not None:
            headers.append(f"Authorization: Bearer {info['keys'][who]}")
        script, body = lua, POSTED.get(path)
        if body is not None:
            headers.append(f"X-CSRFToken: {sessions[who][1]}")
            script = post_script(lua, body)
            check = requests.post(base + path, data=body, allow_redirects=False, timeout=60,
                                  headers={**dict(h.split(": ", 1) for h in headers),
                                           "Content-Type": "application/x-www-form-urlencoded"})
        else:
            check = requests.get(base + path, allow_redirects=False, timeout=60,
                                 headers=dict(h.split(": ", 1) for h in headers))
        if check.status_code != 200:
            raise RuntimeError(f"{name}: {'POST' if body else 'GET'} {path} answered HTTP "
                               f"{check.status_code} {check.headers.get('Location', '')} "
                               "before the run; not measured")
        if args.warmup:
            run_wrk(base + path, headers, args.warmup, args, script)
        result = run_wrk(base + path, headers, args.duration, args, script, pids)
        result.update(endpoint=name, path=path, who=who, bytes=len(check.content))
        results.append(result)
        print(f"  {name:<32} {result['requests_per_s']:9.1f} req/s  p99 {result['p99_ms']:8.1f} ms"
              f"  CPU/request {cpu_text(result)}  load {result['loadavg_after'][0]:.2f}",
              flush=True)
    # The better of the two bare runs: a first one slowed by whatever the server does
    # as it starts would make every page look closer to it than it is.
    bare = max(results[0]["requests_per_s"], results[-1]["requests_per_s"])
    for result in results:
        result["fraction_of_bare"] = round(result["requests_per_s"] / bare, 4)
    return results


def cpu_text(result: dict) -> str:
    """CPU ms per request: the server's processes, the database's (PostgreSQL), wrk."""
    cpu = result["cpu_ms_per_request"]
    return "/".join(f"{cpu[who]:.2f}" for who in ("server", "database", "wrk") if who in cpu)


TARGET_FRACTION, TARGET_P99_MS = 0.10, 300.0  # issue 17: pages and API GETs


def below_target(results: list[dict]) -> list[str]:
    return [f"{r['endpoint']}: {r['fraction_of_bare']:.1%} of bare, p99 {r['p99_ms']:.0f} ms"
            for r in results if r["path"] != "/bench/bare"
            and (r["fraction_of_bare"] < TARGET_FRACTION or r["p99_ms"] >= TARGET_P99_MS)]


def failures(results: list[dict]) -> list[str]:
    bad = []
    for r in results:
        errors = sum(r["socket_errors"].values())
        if r["non_2xx"] or r["wrk_non_2xx_3xx"] or errors:
            bad.append(f"{r['endpoint']}: statuses {r['statuses']}, socket errors "
                       f"{r['socket_errors']}")
    return bad


def print_table(backend: str, info: dict, results: list[dict], args) -> None:
    c = info["counts"]
    print(f"\n== {backend}: demo data ({c['users']} users, {c['batches']} batches, "
          f"{c['leads']:,} leads, {c['orders']} orders, {c['sales']:,} sales, "
          f"{c['outcomes']:,} outcomes; order page: {info['order_sales']} sales, batch page: "
          f"{info['batch_leads']} leads); gunicorn -w {args.workers} -k gthread --threads "
          f"{args.threads}; wrk -t{args.wrk_threads} -c{args.connections} -d{args.duration}s")
    print(f"{'endpoint':<32} {'req/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
          f"{'of bare':>8} {'KB':>6} {'CPU ms/req':>16}  statuses")
    for r in results:
        statuses = ", ".join(f"{s}: {n:,}" for s, n in sorted(r["statuses"].items()))
        errors = sum(r["socket_errors"].values())
        print(f"{r['endpoint']:<32} {r['requests_per_s']:9.1f} {r['p50_ms']:8.1f} "
              f"{r['p90_ms']:8.1f} {r['p99_ms']:8.1f} {r['fraction_of_bare']:8.3f} "
              f"{r['bytes'] / 1024:6.1f} {cpu_text(r):>16}  {statuses}"
              + (f"; {errors} socket errors" if errors else ""))


def code_state() -> dict:
    """What was measured: others edit app/ while benchmarks run."""
    def git(*a):
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {"head": git("rev-parse", "--short", "HEAD"),
            "head_subject": git("log", "-1", "--format=%s"),
            "modified_under_app": git("status", "--short", "--", "app").splitlines()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: --duration 2 --warmup 1 unless given")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker")
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    # Whole seconds: wrk takes no fraction ("-d6.0s" makes it exit 1).
    parser.add_argument("--duration", type=int, help="whole seconds per endpoint (default 10)")
    parser.add_argument("--warmup", type=int, help="whole seconds of warm-up per endpoint, "
                        "not kept (default 2; 0: none)")
    parser.add_argument("--timeout", type=float, default=10,
                        help="wrk's request timeout, seconds (a timeout FAILs the run)")
    parser.add_argument("--settle", type=int, default=10,
                        help="whole seconds of load on the health check before the first "
                        "measurement, while the workers start (default 10; 0: none)")
    parser.add_argument("--only", nargs="+", metavar="WORD",
                        help="measure only the endpoints whose name has one of these words "
                        "(and the bare route, first and last)")
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--pg-dir", default="/tmp/leadx-bench-web-pg")
    parser.add_argument("--pg-port", type=int, default=55436)
    args = parser.parse_args()
    if args.duration is None:
        args.duration = 2 if args.quick else 10
    if args.warmup is None:
        args.warmup = 1 if args.quick else 2
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk (the Debian package `wrk`)",
              file=sys.stderr)
        return 2

    import gunicorn

    OUT.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = OUT / f"web-{stamp}.json"
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True,
                                 text=True).stdout.splitlines()[0]
    report = {"started": datetime.now(timezone.utc).isoformat(), "args": vars(args),
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                          "wrk": wrk_version, "gunicorn": gunicorn.__version__,
                          "loadavg_start": os.getloadavg()},
              "code": code_state(), "rate_limiting": "off (RATELIMIT_ENABLED=False)",
              "backends": {}}
    print(f"Flask-Limiter is off for this run: the figures are the pages' own cost, not 429s. "
          f"wrk and gunicorn share {os.cpu_count()} cores; load average now "
          f"{report['machine']['loadavg_start'][0]:.2f}.", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="leadx-bench-web-"))
    lua = tmp / "statuses.lua"
    lua.write_text(STATUS_LUA)
    backends = []
    if not args.no_sqlite:
        backends.append(("SQLite", f"sqlite:///{tmp / 'web.sqlite3'}"))
    pg = None
    verdicts = []
    try:
        if not args.no_pg:
            from pgcluster import Postgres

            pg = Postgres(args.pg_dir, args.pg_port)
            pg.start()
            backends.append(("PostgreSQL", pg.fresh_database("leadx_bench_web")))
        for backend, url in backends:
            print(f"[{backend}] migrations and demo data", flush=True)
            info = build(url, str(tmp / "uploads"))
            log_path = OUT / f"web-{stamp}-gunicorn-{backend.lower()}.log"
            server, base = start_server(url, tmp, args, log_path)
            try:
                print(f"[{backend}] gunicorn at {base}", flush=True)
                pids = {"server": server.pid}
                if backend == "PostgreSQL":
                    pids["database"] = postmaster(args.pg_dir)
                results = measure(base, info, args, lua, pids)
            finally:
                stop_server(server)
            print_table(backend, info, results, args)
            bad = failures(results)
            verdicts.append((backend, bad, below_target(results)))
            info.pop("keys")
            report["backends"][backend] = {"data": info, "results": results,
                                           "failures": bad, "below_target": verdicts[-1][2],
                                           "gunicorn_log": str(log_path)}
            out.write_text(json.dumps(report, indent=2, default=str))
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    report["machine"]["loadavg_end"] = os.getloadavg()
    print()
    for backend, bad, slow in verdicts:
        print(f"{backend}: every response 2xx, no socket errors: {'FAIL' if bad else 'PASS'}")
        for line in bad:
            print(f"  {line}")
        print(f"{backend}: below {TARGET_FRACTION:.0%} of bare or p99 >= {TARGET_P99_MS:.0f} ms: "
              + (", ".join(slow) if slow else "none"))
    print(f"load average: start {report['machine']['loadavg_start']}, "
          f"end {report['machine']['loadavg_end']} ({os.cpu_count()} cores shared by wrk and "
          f"gunicorn); Flask-Limiter off")
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"figures: {out.relative_to(ROOT)}")
    return 1 if any(bad for _, bad, _ in verdicts) else 0


if __name__ == "__main__":
    sys.exit(main())
