#!/usr/bin/env python
"""What the database costs per stored lead (issue 15): the bench file's accepted rows
stored as the upload path stores them, schema variants side by side in one run.

Not a unit test: it measures and prints. Each variant runs in a fresh interpreter on a
fresh database (schema by the real migrations, to --revision), optionally changed
further by DDL and SQLite pragmas, and stores the same rows in the same chunks and
commits, timing each part: CPU of this process and of the PostgreSQL backend,
per stored lead; `serial` is what the workers do in a chunk's turn (leads,
rejections, keys).

    . .venv/bin/activate
    python bench/storing.py --rows 300000 \
        --variant 'before:revision=73382b63885f' --variant 'after:revision=head'
    python bench/storing.py --variant 'no-region:sql=DROP INDEX ix_leads_region' \
        --variant 'big-cache:sqlite=PRAGMA cache_size=-32768'
    python bench/storing.py --backends sqlite --chunk 5000 \
        --variant 'direct:leads=direct' --variant 'staged:leads=staged'
    python bench/storing.py --backends postgresql --chunk 5000 \
        --variant 'foreign-keys:revision=054479af09d5' --variant 'statement-check:'

Parts, per chunk of --chunk rows (the app's INGEST_CHUNK_ROWS), each through the
functions the ingest workers store with (app.services.ingest.storing):
  lookup      the chunk's contact keys looked up among stored leads (holders_by_key;
              `lookup=in` in a variant: PostgreSQL's plain `key = ANY(...)` join)
  stage       SQLite, `leads=staged` in a variant: the accepted rows bound into the
              worker's temporary table (stage_leads), as a worker does before its turn
  leads       the accepted rows written (write_leads: SQLite executemany; PostgreSQL
              binary COPY of the rows as the workers pack them; `leads=staged`: copied
              from the temporary table, as a worker does in its turn)
  rejections  the rejected rows written, and the chunk's claim on its batch
  keys        every --commit-rows leads, their contact keys (write_keys, in key
              order) and the commit
The rows are validated once (workers._validate_in_worker, a fixed key) and kept in
bench/out/tmp, untimed. PostgreSQL: a throwaway cluster of its own (--pg-dir,
--pg-port), stopped at the end unless --keep-pg.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import subprocess
import sys
import time
from pathlib import Path

from pgcluster import Postgres  # bench/, beside this script

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
TMP = OUT / "tmp"
SEED = 20261122
MASTER_KEY = "c3RvcmluZy1iZW5jaC1rZXktMzItYnl0ZXMtbG9uZyE="  # bench data only
PARTS = ("lookup", "stage", "leads", "rejections", "keys")
SERIAL = ("leads", "rejections", "keys")  # the parts of a chunk's turn


def rows_file(rows: int, backend: str, chunk: int) -> Path:
    """The validated chunks of the bench file's first `rows` rows, made once, in the
    form the real path stores on `backend`."""
    sys.path.insert(0, str(ROOT))
    from app.services.ingest import workers

    storage = workers.STORAGE_OF[backend]
    path = TMP / f"storing-{rows}-{chunk}-{storage}.pickle"
    if path.exists():
        return path
    from app.services.ingest.reader import open_csv
    from app.services.ingest.validate import RowContext

    source_csv = next(p for p in sorted(OUT.glob(f"leads-*-seed{SEED}-v1.csv"),
                                        key=lambda p: int(p.name.split("-")[1]))
                      if int(p.name.split("-")[1]) >= rows)
    workers._init_worker(MASTER_KEY)
    import datetime as dt

    ctx = RowContext("US", dt.datetime(2026, 11, 22, tzinfo=dt.timezone.utc))
    TMP.mkdir(parents=True, exist_ok=True)
    done = 0
    with open_csv(source_csv, mapping={}) as source, open(f"{path}.part", "wb") as out:
        for block in source.blocks(chunk):
            result = workers._validate_in_worker(block, source.header_map.fields, ctx, storage)
            pickle.dump((result.accepted, result.rejected), out, pickle.HIGHEST_PROTOCOL)
            done += block.rows
            if done >= rows:
                break
    os.replace(f"{path}.part", path)
    return path


def parse_variant(text: str) -> dict:
    """'name:revision=R;sql=S;pg=S;sqlite=S' -> a variant: statements run after the
    migrations on both databases (sql), on PostgreSQL alone (pg), on SQLite alone."""
    name, _, rest = text.partition(":")
    variant = {"name": name, "revision": "head", "sql": [], "pg": [], "sqlite": [],
               "lookup": "lateral", "leads": "direct"}
    # Split where a setting starts, so that a statement may hold semicolons.
    for part in filter(None, re.split(r";(?=(?:revision|sql|pg|sqlite|lookup|leads)=)", rest)):
        key, _, value = part.partition("=")
        if key in ("sql", "pg", "sqlite"):
            variant[key].append(value)
        elif key in ("revision", "lookup", "leads"):
            variant[key] = value
        else:
            raise SystemExit(f"unknown variant setting {key!r}")
    return variant


# =====================================================================================
# The child: one variant on one fresh database
# =====================================================================================
def child(spec: dict) -> dict:
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    from flask_migrate import upgrade

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from app import create_app

    pragmas = [s for s in spec["variant"]["sqlite"] if s.upper().startswith("PRAGMA")]
    if spec["url"].startswith("postgresql"):
        pragmas = []
    # A page size is the new database's, fixed by WAL before the app first connects;
    # the other pragmas follow the app's own at every connection.
    first = [p for p in pragmas if "PAGE_SIZE" in p.upper()]
    if first:
        import sqlite3

        import sqlalchemy as sa

        created = sqlite3.connect(sa.engine.make_url(spec["url"]).database)
        for pragma in first + ["PRAGMA journal_mode=WAL"]:
            created.execute(pragma)
        created.close()

    @event.listens_for(Engine, "connect")
    def _pragmas(dbapi_connection, record) -> None:
        for pragma in pragmas:
            if pragma not in first:
                dbapi_connection.execute(pragma)

    app = create_app("development", SQLALCHEMY_DATABASE_URI=spec["url"],
                     ARGON2_PROFILE="CHEAPEST")
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"), revision=spec["variant"]["revision"])
        return _store_all(spec)


def _store_all(spec: dict) -> dict:
    import sqlalchemy as sa

    from app.core import pgcopy
    from app.core.bulk import SessionConnection
    from app.extensions import db
    from app.models import Batch, Role
    from app.services import accounts
    from app.services.ingest import pipeline, storing

    variant, postgres = spec["variant"], spec["url"].startswith("postgresql")
    seller = accounts.create_user("bench-seller@example.com", "bench password 12345",
                                  Role.SELLER)
    db.session.flush()
    batch = Batch(seller_id=seller.id, default_country="US", floor_price=0, cap=3)
    db.session.add(batch)
    db.session.commit()
    driver = db.session.connection().connection.driver_connection
    for statement in variant["sql"] + variant["pg" if postgres else "sqlite"]:
        if not statement.upper().startswith("PRAGMA"):  # pragmas: at connect (child)
            driver.execute(statement)
    db.session.commit()
    backend = driver.execute("SELECT pg_backend_pid()").fetchone()[0] if postgres else None

    def server_cpu() -> float:
        if backend is None:
            return 0.0
        fields = Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    cpu = {part: [0.0, 0.0] for part in PARTS}  # part -> [this process, server]
    wall = 0.0

    class timed:
        def __init__(self, part):
            self.part = part

        def __enter__(self):
            self.t, self.c, self.s = time.perf_counter(), time.process_time(), server_cpu()

        def __exit__(self, *exc):
            nonlocal wall
            wall += time.perf_counter() - self.t
            cpu[self.part][0] += time.process_time() - self.c
            cpu[self.part][1] += server_cpu() - self.s

    plan = pipeline.storing_plan(pipeline.BatchRun(batch.id, seller.id, 0, 3, 0))
    e_at, p_at = plan.hashes
    connection = SessionConnection()
    holders = f"SELECT {storing._HOLDER_COLUMNS} FROM contact_keys k JOIN leads l ON l.id = k.lead_id WHERE"
    stored, rejected, uncommitted, unwritten, next_id, previous = 0, 0, 0, [], 1, 0
    have_statistics = False
    with open(spec["rows_file"], "rb") as source:
        while True:
            try:
                accepted, rejections = pickle.load(source)
            except EOFError:
                break
            emails = {r[e_at] for r in accepted if r[e_at]}
            phones = {r[p_at] for r in accepted if r[p_at]}
            keys = set(storing.keys("email", list(emails)) + storing.keys("phone", list(phones)))
            with timed("lookup"):
                if postgres and variant["lookup"] == "lateral":
                    storing.holders_by_key(connection.begin(), keys)
                else:
                    storing._matching(connection.begin(), holders, "k.key", keys)
            ids = range(next_id, next_id + len(accepted))
            leads = [row + (False, lead_id) for row, lead_id in zip(accepted, ids)]
            next_id += len(accepted)
            unwritten += storing.key_rows(accepted, e_at, p_at, ids)
            if variant["leads"] == "staged" and not postgres and leads:
                with timed("stage"):
                    storing.stage_leads(connection.driver, plan, accepted)
                with timed("leads"):
                    connection.driver.execute(plan.copy_staged_sql, (leads[0][-1] - 1,))
                with timed("stage"):  # after the commit, in the app
                    connection.driver.execute(f"DELETE FROM temp.{storing.STAGED_LEADS}")
            else:
                with timed("leads"):
                    storing.write_leads(connection, plan, leads)
            with timed("rejections"):
                rows = [row + (batch.id,) for row in rejections]
                if postgres:
                    storing.copy(connection, plan.rejections_sql,
                                 pgcopy.rows(plan.rejection_kinds, rows))
                else:
                    connection.driver.executemany(plan.rejections_sql, rows)
                # The run's claim on its batch with its progress, as every chunk has.
                last = previous + len(accepted) + len(rejections)
                connection.driver.execute(storing._sql(plan.dialect, storing._CLAIM), (
                    last, 0, storing._now(plan.dialect), last - previous, len(leads),
                    len(rejections), 0, batch.id, previous))
                previous = last
            stored, rejected = stored + len(leads), rejected + len(rejections)
            uncommitted += len(leads)
            if uncommitted >= spec["commit_rows"]:
                with timed("keys"):
                    storing.write_keys(connection, unwritten)
                    if postgres and not have_statistics:
                        have_statistics = storing.ensure_statistics(connection)
                    connection.commit()
                uncommitted, unwritten = 0, []
    with timed("keys"):
        storing.write_keys(connection.begin(), unwritten)
        connection.commit()
    sizes = {}
    if postgres:
        for name in ("leads", "contact_keys", "rejections"):
            sizes[name] = db.session.execute(sa.text(
                f"SELECT pg_total_relation_size('{name}')")).scalar()
    else:
        db.session.commit()
        sizes["file"] = Path(sa.engine.make_url(spec["url"]).database).stat().st_size
    return {"stored": stored, "rejected": rejected, "wall": wall, "cpu": cpu, "sizes": sizes}


# =====================================================================================
# The parent
# =====================================================================================
def run_variant(backend: str, variant: dict, args, rows_path: Path, pg: Postgres | None) -> dict:
    if backend == "sqlite":
        db_path = TMP / "storing.sqlite"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{db_path}"
    else:
        url = pg.fresh_database("leadx_storing")
    spec = {"url": url, "variant": variant, "rows_file": str(rows_path),
            "commit_rows": args.commit_rows}
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{backend} {variant['name']} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(backend: str, name: str, result: dict) -> None:
    n = result["stored"]
    parts = "  ".join(f"{part} {(c + s) / n * 1e6:5.2f}" + (f" ({s / n * 1e6:4.2f} srv)" if s else "")
                      for part, (c, s) in result["cpu"].items())
    total = sum(c + s for c, s in result["cpu"].values()) / n * 1e6
    server = sum(s for _, s in result["cpu"].values()) / n * 1e6
    serial = sum(sum(result["cpu"][part]) for part in SERIAL) / n * 1e6
    sizes = " ".join(f"{k} {v / 2**20:.0f} MB" for k, v in result["sizes"].items())
    print(f"  {backend:<10} {name:<16} {total:6.2f} µs CPU/lead (server {server:5.2f}, "
          f"serial {serial:5.2f}), "
          f"wall {result['wall'] / n * 1e6:6.2f} µs | {parts} | {sizes}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child")
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--chunk", type=int, default=2000)
    parser.add_argument("--commit-rows", type=int, default=20_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--variant", action="append", default=[])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--pg-dir", default="/tmp/leadx-bench-pg-db")
    parser.add_argument("--pg-port", type=int, default=55471)
    parser.add_argument("--keep-pg", action="store_true")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    variants = [parse_variant(v) for v in args.variant] or [parse_variant("head:")]
    backends = args.backends.split(",")
    pg = None
    if "postgresql" in backends:
        pg = Postgres(args.pg_dir, args.pg_port)
        pg.start()
    try:
        files = {b: rows_file(args.rows, b, args.chunk) for b in backends}
        print(f"storing {args.rows:,} file rows, chunks of {args.chunk}, a commit every "
              f"{args.commit_rows:,} leads; load {os.getloadavg()[0]:.2f}", flush=True)
        for round_ in range(args.rounds):
            for backend in backends:
                for variant in variants:
                    report(backend, variant["name"], run_variant(backend, variant, args,
                                                                 files[backend], pg))
        print(f"load {os.getloadavg()[0]:.2f}")
    finally:
        if pg and not args.keep_pg:
            pg.drop_database("leadx_storing")
            pg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
