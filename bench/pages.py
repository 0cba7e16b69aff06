#!/usr/bin/env python
"""Page benchmark (issue #7): the buyer KPI page and API, the seller dashboard and the
admin marketplace page with ~1,000,000 leads in the database, each timed next to a
bare Flask route of the same app measured in the same run.

    . .venv/bin/activate
    python bench/pages.py --leads 20000 --no-pg     # smoke run, ~1 minute
    python bench/pages.py                           # 1,000,000 leads, SQLite and PostgreSQL

What one run does (fixed seed, invented data only): a fresh database built by the
migrations (SQLite file under bench/out/; PostgreSQL from scripts/pg-test-cluster.sh at
--pg-dir/--pg-port, stopped at the end); users, batches, leads, orders, sales and
outcomes written with app.core.bulk (COPY on PostgreSQL), then ANALYZE.
Shape: --sellers sellers with Zipf-like shares of the leads (the measured seller is the
biggest), batches of --batch-rows, consent over 90 days; --buyers buyers with
--orders-per-buyer orders each; --sell-through of the leads sold once, over the last 90
days, to orders of buyers with Zipf-like shares (the measured buyer is the biggest);
--outcome-share of the sales with an outcome (converted 12%, bad 10%, rest contacted).
Sales carry no ledger transactions (pages do not read them; the admin page's
all-time commission is one ledger account).

Timed through the app's own WSGI stack (Flask test client, logged in through the real
login form; every request in its own app context like production): --repeat requests
per page after --warmup, median and p90 in ms, and median ÷ the bare route's median.
The bare route is `GET /bench/bare` returning "ok", registered on the same app, so the
ratio is the page's own work over the framework's fixed cost (sessions, headers).
Pages are measured with MARKET_STATS_CACHE_SECONDS=0 (every request computes every
figure), then the KPI and admin pages again with the production default (300 s: the
market-wide scans served from the in-process cache).
Figures and the machine's load average go to bench/out/pages-<timestamp>.json.
"""
import argparse
import json
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "out"
PASSWORD = "bench-password-1"
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
REGIONS = ["US-CA", "US-NY", "US-TX", "US-WA", "US-FL", "RU-MOW", "RU-SPE", "RU-NVS",
           "RU-TA", "ES-M", "ES-B", "ES-V", "ES-SE", "GB-LND", "DE-BE"]


def zipf_shares(n: int, s: float = 1.0) -> list[float]:
    weights = [1 / (i + 1) ** s for i in range(n)]
    total = sum(weights)
    return [w / total for w in weights]


def build(url: str, args) -> dict:
    """Fill a fresh database; returns who to log in as and what to ask for."""
    import sqlalchemy as sa
    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db
    from app.models import AccountKind, Batch, Lead, Order, Sale, SaleOutcome, User
    from app.services import accounts, ledger
    from app.core.bulk import bulk_insert
    from app.services.crypto import current_vault

    app = create_app("testing", SQLALCHEMY_DATABASE_URI=url, TASK_MODE="eager")
    rng = random.Random(args.seed)
    now = datetime.now(timezone.utc)
    horizon = now - timedelta(days=90)
    info = {}
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        started = time.perf_counter()
        template = accounts.create_user("template@bench.example.com", PASSWORD, "buyer")
        db.session.commit()
        password_hash, next_id = template.password_hash, template.id + 1
        users, seller_ids, buyer_ids = [], [], []
        for role, count, ids in (("seller", args.sellers, seller_ids),
                                 ("buyer", args.buyers, buyer_ids), ("admin", 1, [])):
            for i in range(count):
                users.append((next_id, f"{role}{i}@bench.example.com", password_hash, role,
                              f"{role.capitalize()} {i}", "verified" if role == "seller" else "new",
                              True, f"{role}{i}", now))
                ids.append(next_id)
                next_id += 1
        bulk_insert(User.__table__, ("id", "email", "password_hash", "role", "display_name",
                                     "trust_level", "is_active_account", "session_nonce",
                                     "created_at"), users)
        ledger.account(AccountKind.PLATFORM_COMMISSION)
        db.session.commit()

        # Batches of --batch-rows; sellers' shares of the leads are Zipf-like.
        counts = [max(1, int(args.leads * share)) for share in zipf_shares(args.sellers)]
        counts[0] += args.leads - sum(counts)
        batches = []  # (id, seller, first lead id, size, day)
        lead_id = 1
        for seller_id, total in zip(seller_ids, counts):
            while total > 0:
                size = min(args.batch_rows, total)
                total -= size
                batches.append((len(batches) + 1, seller_id, lead_id, size,
                                now - timedelta(days=rng.uniform(0, 90))))
                lead_id += size
        bulk_insert(Batch.__table__, (
            "id", "seller_id", "source", "status", "filename", "file_size", "default_country",
            "floor_price", "cap", "mapping", "rows_total", "rows_processed", "bytes_processed",
            "accepted", "rejected", "cross_seller_duplicates", "created_at", "finished_at",
            "seller_points"), [
            (b, seller, "upload", "live", f"batch-{b}.csv", size * 200, "US", 100, 1, {},
             size * 21 // 20, size * 21 // 20, size * 200, size, size * 21 // 20 - size, 0, day,
             day, 8) for b, seller, _, size, day in batches])
        db.session.commit()

        # Which leads sell, to which orders (buyers' shares Zipf-like), and when.
        orders = []
        for buyer_id in buyer_ids:
            for k in range(args.orders_per_buyer):
                orders.append([len(orders) + 1, buyer_id, f"Campaign {k}", "open",
                               rng.choice([150, 200, 250, 300, 400, 600]), 0, None, 0, 0, 0,
                               {}, 0, "UTC", 30, now - timedelta(days=95), now])
        buyer_shares = zipf_shares(len(buyer_ids), 0.8)
        weights = [buyer_shares[i // args.orders_per_buyer] for i in range(len(orders))]
        sold = int(args.leads * args.sell_through)
        sold_leads = sorted(rng.sample(range(1, args.leads + 1), sold))
        to_order = dict(zip(sold_leads, rng.choices(range(len(orders)), weights=weights, k=sold)))

        lead_columns = ("id", "batch_id", "seller_id", "status", "row_number", "email_hash",
                        "phone_hash", "has_email", "has_phone", "age", "gender", "region",
                        "country", "marital_status", "employed", "interests", "consent_at",
                        "source_url", "cross_seller_duplicate", "floor_price", "cap",
                        "sold_count", "created_at", "score_base", "seller_points", "contact_enc")
        # One sealed blob shared by every lead: the pages never open contacts, and
        # sealing a million would time the bench's own set-up.
        sealed = current_vault().seal_contact("Bench", "Lead", "bench@example.com",
                                              "+14155550100", None)
        sale_columns = ("id", "order_id", "lead_id", "buyer_id", "seller_id", "price",
                        "commission", "seller_share", "created_at", "region", "batch_id")
        outcome_columns = ("sale_id", "order_id", "buyer_id", "seller_id", "batch_id", "sold_at",
                           "status", "revenue", "recorded_at", "updated_at")
        leads, sales, outcomes = [], [], []

        def flush(final: bool = False) -> None:
            nonlocal leads
            if len(leads) >= 50_000 or (final and leads):
                bulk_insert(Lead.__table__, lead_columns, leads)
                db.session.commit()
                leads = []

        for b, seller_id, first, size, day in batches:
            for row in range(size):
                lead = first + row
                region = REGIONS[int(rng.random() ** 1.6 * len(REGIONS))]
                has_phone = rng.random() < 0.9
                order_index = to_order.get(lead)
                leads.append((
                    lead, b, seller_id, "live", row + 1, rng.randbytes(16),
                    rng.randbytes(16) if has_phone else None, True, has_phone,
                    rng.randrange(18, 80), rng.choice("fm"), region, region[:2], "unknown",
                    "unknown", [], day - timedelta(days=rng.random() * 20),
                    "https://x.example.com", False, 100, 1, int(order_index is not None), day,
                    rng.randrange(10, 55), 8, sealed))
                if order_index is not None:
                    order = orders[order_index]
                    since = max(day, horizon)
                    sold_at = since + (now - since) * rng.random()
                    price = order[4]
                    sale_id = len(sales) + 1
                    sales.append((sale_id, order[0], lead, order[1], seller_id, price, price // 5,
                                  price - price // 5, sold_at, region, b))
                    order[7] += 1
                    order[8] += price
                    if rng.random() < args.outcome_share:
                        draw = rng.random()
                        status = "converted" if draw < 0.12 else "bad" if draw < 0.22 else "contacted"
                        revenue = rng.randrange(1_000, 20_000) if status == "converted" else None
                        outcomes.append((sale_id, order[0], order[1], seller_id, b, sold_at,
                                         status, revenue, now, now))
            flush()
        flush(final=True)
        for order in orders:
            order[5] = order[7] + rng.randrange(0, 50)  # quantity: filled plus what is left
            if order[5] == order[7]:
                order[3] = "filled"
            order[5] = max(order[5], 1)
        bulk_insert(Order.__table__, ("id", "buyer_id", "name", "status", "price", "quantity",
                                      "budget", "filled", "spent", "held", "filters",
                                      "revision", "timezone", "lookback_days", "created_at",
                                      "updated_at"), [tuple(o) for o in orders])
        db.session.commit()
        for table, columns, rows in ((Sale.__table__, sale_columns, sales),
                                     (SaleOutcome.__table__, outcome_columns, outcomes)):
            for start in range(0, len(rows), 50_000):
                bulk_insert(table, columns, rows[start:start + 50_000])
                db.session.commit()
        db.session.commit()
        if db.engine.dialect.name == "postgresql":
            # Autovacuum's steady state: statistics, and the visibility map that lets
            # index-only scans skip the table.
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")
        else:
            db.session.execute(sa.text("ANALYZE"))
            db.session.commit()
        biggest_buyer = buyer_ids[0]
        info.update(
            seller_email="seller0@bench.example.com", buyer_email="buyer0@bench.example.com",
            buyer_order=next(o[0] for o in orders if o[1] == biggest_buyer),
            big_batch=max(b for b, seller, *_ in batches if seller == seller_ids[0]),
            counts={"leads": args.leads, "batches": len(batches), "orders": len(orders),
                    "sales": len(sales), "outcomes": len(outcomes),
                    "biggest_seller_leads": counts[0],
                    "biggest_buyer_sales": sum(1 for s in sales if s[3] == biggest_buyer)},
            load_seconds=round(time.perf_counter() - started, 1))
    return info


def measure(url: str, info: dict, args) -> list[dict]:
    from app import create_app
    from app.extensions import db, limiter

    app = create_app("testing", SQLALCHEMY_DATABASE_URI=url, TASK_MODE="eager",
                     LOGIN_RATE_LIMIT="1000 per minute")
    app.add_url_rule("/bench/bare", "bench_bare", lambda: "ok")

    from flask.testing import FlaskClient

    class Client(FlaskClient):
        def open(self, *a, **kw):
            with app.app_context():
                return super().open(*a, **kw)

    app.test_client_class = Client

    def login(email: str):
        client = app.test_client()
        token = CSRF_RE.search(client.get("/auth/login").get_data(as_text=True)).group(1)
        response = client.post("/auth/login", data={"email": email, "password": PASSWORD,
                                                    "csrf_token": token})
        assert response.status_code == 302, response.get_data(as_text=True)[:300]
        return client

    with app.app_context():
        limiter.reset()
        from app.models import User
        from app.services import accounts
        import sqlalchemy as sa

        buyer = db.session.scalar(sa.select(User).where(User.email == info["buyer_email"]))
        _, key = accounts.create_api_key(buyer, "bench")
        db.session.commit()
    api = {"Authorization": f"Bearer {key}"}
    buyer_client = login(info["buyer_email"])
    seller_client = login(info["seller_email"])
    admin_client = login("admin0@bench.example.com")
    today = datetime.now(timezone.utc).date()
    last_90 = f"from={today - timedelta(days=89)}&to={today}"
    pages = [
        ("bare Flask route", buyer_client, "/bench/bare", {}),
        ("buyer KPI page (30 days)", buyer_client, "/buyer/kpis", {}),
        ("buyer KPI page (90 days)", buyer_client, f"/buyer/kpis?{last_90}", {}),
        ("buyer KPI CSV (90 days)", buyer_client, f"/buyer/kpis.csv?{last_90}", {}),
        ("API /kpis?order_id", buyer_client, f"/api/v1/kpis?order_id={info['buyer_order']}", api),
        ("API /kpis (all orders, all time)", buyer_client, "/api/v1/kpis", api),
        ("API /kpis?from&to (90 days)", buyer_client, f"/api/v1/kpis?{last_90}", api),
        ("seller dashboard", seller_client, "/seller/", {}),
        ("seller batches (200)", seller_client, "/seller/batches", {}),
        ("seller batch page", seller_client, f"/seller/batches/{info['big_batch']}", {}),
        ("admin marketplace (30 days)", admin_client, "/admin/?days=30", {}),
        ("admin marketplace (90 days)", admin_client, "/admin/?days=90", {}),
    ]
    cached = [  # the same pages with the market-wide figures cached (as in production)
        ("buyer KPI page (30 days), cached", buyer_client, "/buyer/kpis", {}),
        ("admin marketplace (30 days), cached", admin_client, "/admin/?days=30", {}),
    ]
    results = []
    for name, client, path, headers in pages + cached:
        app.config["MARKET_STATS_CACHE_SECONDS"] = 300 if name.endswith("cached") else 0
        for _ in range(args.warmup):
            response = client.get(path, headers=headers)
            body = response.get_data(as_text=True)  # a streamed body runs as it is read
            assert response.status_code == 200, (path, response.status_code, body[:300])
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            response = client.get(path, headers=headers)
            response.get_data()
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200
        results.append({"page": name, "path": path, "median_ms": statistics.median(times),
                        "p90_ms": sorted(times)[int(0.9 * (len(times) - 1))],
                        "bytes": len(response.get_data())})
    bare = results[0]["median_ms"]
    for r in results:
        r["ratio"] = r["median_ms"] / bare
    return results


def print_table(backend: str, info: dict, results: list[dict]) -> None:
    counts = info["counts"]
    print(f"\n== {backend}: {counts['leads']:,} leads, {counts['batches']:,} batches, "
          f"{counts['orders']:,} orders, {counts['sales']:,} sales, {counts['outcomes']:,} "
          f"outcomes (biggest seller {counts['biggest_seller_leads']:,} leads, biggest buyer "
          f"{counts['biggest_buyer_sales']:,} sales); loaded in {info['load_seconds']} s")
    print(f"{'page':36} {'median ms':>10} {'p90 ms':>8} {'x bare':>8}")
    for r in results:
        print(f"{r['page']:36} {r['median_ms']:10.1f} {r['p90_ms']:8.1f} {r['ratio']:8.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--sellers", type=int, default=40)
    parser.add_argument("--batch-rows", type=int, default=10_000)
    parser.add_argument("--buyers", type=int, default=20)
    parser.add_argument("--orders-per-buyer", type=int, default=10)
    parser.add_argument("--sell-through", type=float, default=0.3)
    parser.add_argument("--outcome-share", type=float, default=0.5)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--sqlite-path", help="keep the SQLite database here and reuse it "
                        "(with its .json) on the next run instead of building it again")
    parser.add_argument("--pg-dir", default="/tmp/leadx-bench-pages-pg")
    parser.add_argument("--pg-port", type=int, default=55435)
    args = parser.parse_args()
    os.environ.setdefault("APP_ENV", "testing")
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    report = {"args": vars(args), "machine": {"python": platform.python_version(),
                                              "cpus": os.cpu_count(),
                                              "loadavg_start": os.getloadavg()},
              "backends": {}}
    backends = []
    if not args.no_sqlite:
        path = Path(args.sqlite_path) if args.sqlite_path else \
            Path(tempfile.mkdtemp(dir=OUT)) / "pages.sqlite3"
        backends.append(("SQLite", f"sqlite:///{path}", None))
    pg = None
    if not args.no_pg:
        sys.path.insert(0, str(ROOT / "bench"))
        from pgcluster import Postgres

        pg = Postgres(args.pg_dir, args.pg_port)
        pg.start()
        backends.append(("PostgreSQL", pg.fresh_database("leadx_bench_pages"), pg))
    try:
        for backend, url, _ in backends:
            kept = Path(url.removeprefix("sqlite:///") + ".json") if args.sqlite_path and \
                backend == "SQLite" else None
            if kept is not None and kept.exists():
                info = json.loads(kept.read_text())
            else:
                info = build(url, args)
                if kept is not None:
                    kept.write_text(json.dumps(info))
            results = measure(url, info, args)
            print_table(backend, info, results)
            report["backends"][backend] = {"data": info, "results": results}
            if backend == "SQLite" and kept is None:
                Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
    finally:
        if pg is not None:
            pg.stop()
    report["machine"]["loadavg_end"] = os.getloadavg()
    print(f"\nload average: start {report['machine']['loadavg_start']}, "
          f"end {report['machine']['loadavg_end']}")
    out = OUT / f"pages-{stamp}.json"
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"figures: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
