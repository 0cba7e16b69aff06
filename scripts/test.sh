#!/usr/bin/env bash
# Runs the whole test suite on SQLite, then again on PostgreSQL (a throwaway cluster,
# or TEST_DATABASE_URL if set). Extra arguments go to pytest.
# REQUIRE_POSTGRES=1 / REQUIRE_BROWSER=1 (set by CI) turn a missing server or browser
# into a failure instead of a skip.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh requirements-dev.txt
export PYTHONDONTWRITEBYTECODE=1

echo "=== lint (ruff: undefined names, unused imports) ==="
.venv/bin/ruff check app tests bench config.py wsgi.py

echo "=== test suite on SQLite ==="
env -u TEST_DATABASE_URL .venv/bin/python -m pytest -m "not postgres" "$@"

echo "=== test suite on PostgreSQL ==="
pg_url=${TEST_DATABASE_URL:-}
if [ -z "$pg_url" ]; then
  if ! pg_url=$(scripts/pg-test-cluster.sh start); then
    if [ "${REQUIRE_POSTGRES:-0}" = 1 ]; then
      echo "PostgreSQL could not be started and REQUIRE_POSTGRES=1" >&2
      exit 1
    fi
    echo "PostgreSQL not available: PostgreSQL run skipped"
    exit 0
  fi
  trap 'scripts/pg-test-cluster.sh stop' EXIT
fi
# tests/unit touch no database, so they have already said all they can on SQLite.
TEST_DATABASE_URL="$pg_url" .venv/bin/python -m pytest --ignore=tests/unit "$@"
