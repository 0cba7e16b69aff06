#!/usr/bin/env bash
# Sets everything up and serves the marketplace on http://127.0.0.1:${PORT:-5000} (SQLite,
# demo data, background jobs in a thread: no other server needed).
#
# Card payments work out of the box: unless STRIPE_SECRET_KEY is set (a real Stripe
# account), a local Stripe test server (localstripe, pinned in requirements-serve.txt)
# runs on 127.0.0.1 beside the app, the app talks to it and it sends its signed
# webhooks back to the app. It stops with this script. LOCALSTRIPE=0 turns it off.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh requirements-serve.txt
export FLASK_APP=wsgi.py
port=${PORT:-5000}
export PUBLIC_URL=${PUBLIC_URL:-http://127.0.0.1:${port}}  # links in emails
.venv/bin/flask db upgrade
.venv/bin/flask demo --if-empty

pids=()
stop() {
  trap - EXIT INT TERM
  if [ ${#pids[@]} -gt 0 ]; then
    kill "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -z "${STRIPE_SECRET_KEY:-}" ] && [ "${LOCALSTRIPE:-1}" != 0 ]; then
  stripe_port=${LOCALSTRIPE_PORT:-$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
  export STRIPE_SECRET_KEY=sk_test_local STRIPE_PUBLISHABLE_KEY=pk_test_local
  export STRIPE_WEBHOOK_SECRET=whsec_local STRIPE_CONNECT=simulated
  export STRIPE_API_BASE="http://127.0.0.1:${stripe_port}"
  mkdir -p instance
  .venv/bin/python scripts/localstripe-server.py --port "$stripe_port" \
    --webhook-url "http://127.0.0.1:${port}/stripe/webhook" \
    --webhook-secret "$STRIPE_WEBHOOK_SECRET" --store instance/localstripe.pickle &
  pids+=($!)
  .venv/bin/python - "$STRIPE_API_BASE" <<'PY'
import sys, time, urllib.request, urllib.error
deadline = time.monotonic() + 20
while True:
    try:
        urllib.request.urlopen(sys.argv[1] + "/v1/balance", timeout=1)
    except urllib.error.HTTPError:
        break  # it answers (401 without a key): up
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("localstripe did not start")
        time.sleep(0.2)
    else:
        break
PY
  echo "Card payments: local Stripe test server on ${STRIPE_API_BASE} (test card 4242 4242 4242 4242)"
fi

echo "Serving on http://127.0.0.1:${port} (Ctrl-C to stop)"
.venv/bin/flask run --host 127.0.0.1 --port "$port" &
pids+=($!)
wait "${pids[-1]}"
