"""A throwaway PostgreSQL cluster for the benchmarks (scripts/pg-test-cluster.sh with
its own directory and port, so it never touches the test suite's)."""
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class Postgres:
    def __init__(self, pg_dir: str, port: int):
        self.env = {**os.environ, "PG_TEST_DIR": pg_dir, "PG_TEST_PORT": str(port)}
        self.url = None

    def start(self) -> str:
        out = subprocess.run([str(ROOT / "scripts" / "pg-test-cluster.sh"), "start"],
                             env=self.env, check=True, capture_output=True, text=True)
        self.url = out.stdout.strip().splitlines()[-1]
        return self.url

    def stop(self) -> None:
        subprocess.run([str(ROOT / "scripts" / "pg-test-cluster.sh"), "stop"], env=self.env,
                       check=False, capture_output=True)

    def dsn(self, database: str | None = None) -> str:
        import sqlalchemy as sa

        url = sa.engine.make_url(self.url)
        if database:
            url = url.set(database=database)
        return url.set(drivername="postgresql").render_as_string(hide_password=False)

    def sqlalchemy_url(self, database: str) -> str:
        import sqlalchemy as sa

        return sa.engine.make_url(self.url).set(database=database).render_as_string(
            hide_password=False)

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql)

    def fresh_database(self, name: str) -> str:
        self._admin(f'DROP DATABASE IF EXISTS "{name}"')
        self._admin(f'CREATE DATABASE "{name}"')
        return self.sqlalchemy_url(name)

    def drop_database(self, name: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{name}"')
