#!/usr/bin/env python
"""Run localstripe on 127.0.0.1 for trying card payments and payouts locally.

    .venv/bin/python scripts/localstripe-server.py        # then, in another shell:
    STRIPE_SECRET_KEY=sk_test_local STRIPE_PUBLISHABLE_KEY=pk_test_local \
    STRIPE_WEBHOOK_SECRET=whsec_local STRIPE_API_BASE=http://127.0.0.1:8420 \
    STRIPE_CONNECT=simulated scripts/serve.sh

Test cards: 4242424242424242 (succeeds), 4000000000000341 (declined),
4000000000003220 (asks for 3-D Secure). localstripe has no Connect, hence
STRIPE_CONNECT=simulated for payouts.
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests import stripe_server  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
parser.add_argument("--port", type=int, default=8420)
parser.add_argument("--webhook-url", default="http://127.0.0.1:5000/stripe/webhook")
parser.add_argument("--webhook-secret", default="whsec_local")
args = parser.parse_args()

base = stripe_server.start(args.port)
stripe_server.register_webhook(base, args.webhook_url, args.webhook_secret)
print(f"localstripe on {base}; events go to {args.webhook_url}. Ctrl-C stops it.", flush=True)
try:
    while True:
        time.sleep(3600)
except KeyboardInterrupt:
    pass
