"""localstripe (a real Stripe API server, from PyPI) in a background thread on
127.0.0.1 -- its own command line listens on every interface. Used by
`scripts/serve.sh` (through `scripts/localstripe-server.py`) so card top-ups work in
the default setup, and by the tests.

Infrastructure, not domain logic: it only starts the server and tells it where to
send its signed events."""
import asyncio
import pickle
import random
import socket
import threading
from pathlib import Path
from typing import Optional

import requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _keep_store(store, path: Optional[Path]) -> None:
    """localstripe pickles its whole store to /tmp/localstripe.pickle on every write.
    Tests keep it in memory only; the served marketplace keeps it in `path` (under
    instance/), so Customers, cards and PaymentIntents the database refers to survive
    a restart (a withdrawal refunds an earlier PaymentIntent)."""
    if path is None:
        store.dump_to_disk = lambda: None
        return
    path.parent.mkdir(parents=True, exist_ok=True)

    def dump() -> None:
        partial = path.with_suffix(".tmp")
        with open(partial, "wb") as out:
            pickle.dump(dict(store), out, protocol=pickle.HIGHEST_PROTOCOL)
        partial.replace(path)  # a crash mid-write leaves the previous store whole

    if path.exists():
        with open(path, "rb") as saved:
            dict.update(store, pickle.load(saved))
    store.dump_to_disk = dump


# Stripe.js checks a card in its own field before it asks Stripe for a token, and says
# which part is wrong (error.code, as Stripe documents them); the stand-in sent anything
# and answered only "Bad request". This check runs where Stripe.js's would.
_CHECK_CARD = """function localStripeCardProblem(card) {
  const problem = (code, message) => ({type: 'validation_error', code, message});
  if (!card || !card.number) return problem('incomplete_number', 'Your card number is incomplete.');
  if (!/^[0-9]{12,19}$/.test(card.number)) return problem('invalid_number', 'Your card number is invalid.');
  if (!card.exp_month || !card.exp_year) return problem('incomplete_expiry', "Your card's expiration date is incomplete.");
  if (!/^(0?[1-9]|1[0-2])$/.test(card.exp_month)) return problem('invalid_expiry_month', "Your card's expiration month is invalid.");
  if (!/^20[0-9]{2}$/.test(card.exp_year)) return problem('invalid_expiry_year', "Your card's expiration year is invalid.");
  const now = new Date(), year = parseInt(card.exp_year, 10), month = parseInt(card.exp_month, 10);
  if (year < now.getFullYear()) return problem('invalid_expiry_year_past', "Your card's expiration year is in the past.");
  if (year === now.getFullYear() && month < now.getMonth() + 1) return problem('invalid_expiry_month_past', "Your card's expiration date is in the past.");
  if (!/^[0-9]{3,4}$/.test(card.cvc || '')) return problem('incomplete_cvc', "Your card's security code is incomplete.");
  return null;
}

Stripe = (apiKey) => {"""

# localstripe's stand-in for Stripe.js, as served to the browser: its top-level
# `class Element` shadowed the DOM's Element for every script on the page (Bootstrap's
# menus and htmx threw on each event), its card field sent a number typed with
# spaces, as people type it and as Stripe's own field takes it, to be refused, and a
# year typed in full ("2030") as "202030"; and it did not check a card (_CHECK_CARD).
STAND_IN_FIXES = (
    ("class Element {", "class LocalStripeElement {"),
    ("new Element(this)", "new LocalStripeElement(this)"),
    ("instanceof Element)", "instanceof LocalStripeElement)"),
    ("number: this._inputs.number.value,", "number: this._inputs.number.value.replace(/[\\s-]/g, ''),"),
    ("exp_year: '20' + this._inputs.exp_year.value,",
     "exp_year: this._inputs.exp_year.value.trim().replace(/^([0-9]{2})$/, '20$1'),"),
    ("exp_month: this._inputs.exp_month.value,", "exp_month: this._inputs.exp_month.value.trim(),"),
    ("Stripe = (apiKey) => {", _CHECK_CARD),
    ("""    createToken: async (element) => {
      console.log('localstripe: Stripe().createToken()');
""", """    createToken: async (element) => {
      console.log('localstripe: Stripe().createToken()');
      const problem = localStripeCardProblem(element.value && element.value.card);
      if (problem) return {error: problem};
"""),
)


def stand_in_js() -> str:
    from localstripe import server

    text = (Path(server.__file__).parent / "localstripe-v3.js").read_text()
    for old, new in STAND_IN_FIXES:
        if old not in text:  # another localstripe version: fix this list, do not serve it half-fixed
            raise RuntimeError(f"localstripe's Stripe.js stand-in has no {old!r}")
        text = text.replace(old, new)
    return text


def _serve_fixed_stand_in(app) -> None:
    from aiohttp import web

    text = stand_in_js()

    @web.middleware
    async def fixed_stand_in(request, handler):
        if request.path == "/js.stripe.com/v3/":
            return web.Response(text=text, content_type="application/javascript")
        return await handler(request)

    app.middlewares.insert(0, fixed_stand_in)


def start(port: int = 0, store_path: Optional[Path] = None) -> str:
    """Start localstripe and return its base URL once it answers."""
    from aiohttp import web
    from localstripe import resources
    from localstripe.server import app

    _keep_store(resources.store, store_path)
    _serve_fixed_stand_in(app)
    # Its ids come from the global `random`, which hypothesis re-seeds for every
    # example: the same ids again would collide. Stripe's ids do not repeat.
    resources.random = random.SystemRandom()
    port = port or free_port()
    ready = threading.Event()

    def serve() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(app, access_log=None)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        ready.set()
        loop.run_forever()

    threading.Thread(target=serve, daemon=True, name="localstripe").start()
    if not ready.wait(10):
        raise RuntimeError("localstripe did not start")
    return f"http://127.0.0.1:{port}"


def register_webhook(base_url: str, target_url: str, secret: str, name: str = "leadx") -> None:
    """Have localstripe sign and POST its events to `target_url` (as Stripe would)."""
    response = requests.post(f"{base_url}/_config/webhooks/{name}",
                             data={"url": target_url, "secret": secret}, timeout=5)
    response.raise_for_status()
