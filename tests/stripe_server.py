"""localstripe (a real Stripe API server, from PyPI) in a background thread on
127.0.0.1 — its own command line listens on every interface. Used by the tests and
by `scripts/localstripe-server.py` for trying card payments locally."""
import asyncio
import random
import socket
import threading

import requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(port: int = 0) -> str:
    """Start localstripe and return its base URL once it answers."""
    from aiohttp import web
    from localstripe import resources
    from localstripe.server import app

    # localstripe pickles its whole store to /tmp on every write; keep it in memory.
    resources.store.dump_to_disk = lambda: None
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
