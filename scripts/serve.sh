#!/usr/bin/env bash
# Sets everything up and serves the marketplace on http://127.0.0.1:5000 (SQLite,
# demo data, background jobs in a thread: no other server needed).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh requirements.txt
export FLASK_APP=wsgi.py
.venv/bin/flask db upgrade
.venv/bin/flask demo --if-empty
echo "Serving on http://127.0.0.1:${PORT:-5000} (Ctrl-C to stop)"
exec .venv/bin/flask run --host 127.0.0.1 --port "${PORT:-5000}"
