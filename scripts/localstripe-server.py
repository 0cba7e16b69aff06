#!/usr/bin/env python
"""Run localstripe (a local Stripe test server) on 127.0.0.1 for the marketplace.

`scripts/serve.sh` starts it for you and points the app at it. By hand:

    .venv/bin/python scripts/localstripe-server.py        # then, in another shell:
    STRIPE_SECRET_KEY=sk_test_local STRIPE_PUBLISHABLE_KEY=pk_test_local \
    STRIPE_WEBHOOK_SECRET=whsec_local STRIPE_API_BASE=http://127.0.0.1:8420 \
    STRIPE_CONNECT=simulated .venv/bin/flask --app wsgi run

Test cards: 4242424242424242 (succeeds), 4000000000000341 (declined),
4000000000003220 (asks for 3-D Secure). localstripe has no Connect, hence
STRIPE_CONNECT=simulated for payouts.
"""
import argparse
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from app.dev import localstripe  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
parser.add_argument("--port", type=int, default=8420)
parser.add_argument("--webhook-url", default="http://127.0.0.1:5000/stripe/webhook")
parser.add_argument("--webhook-secret", default="whsec_local")
parser.add_argument("--store", type=Path, default=None,
                    help="keep localstripe's objects in this file across restarts "
                         "(default: in memory only)")
args = parser.parse_args()

# Wait for Ctrl-C or serve.sh's kill with sigwait, the signals blocked before
# localstripe's thread starts so that it inherits the mask. A handler setting a
# threading.Event deadlocked when a second signal came while Event.wait() held its lock
# (Ctrl-C reaches us, then serve.sh's kill), and serve.sh waited for ever.
stop_signals = {signal.SIGINT, signal.SIGTERM}
signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
base = localstripe.start(args.port, store_path=args.store)
localstripe.register_webhook(base, args.webhook_url, args.webhook_secret)
print(f"localstripe on {base}; events go to {args.webhook_url}.", flush=True)
signal.sigwait(stop_signals)
