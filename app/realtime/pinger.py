"""I/O, no database: bid requests sent to many bid URLs at once (SPEC §4 rule 9).

Each process keeps one asyncio event loop on a thread of its own and one aiohttp
session on it -- one connection pool, kept alive between pings, so a bid URL asked
again reuses its connection. A ping sends every request at once, gives each its own
timeout, and stops waiting at the overall deadline: what has not answered then is
late. Host names are resolved once per connection and, unless private addresses are
allowed (WEBHOOK_ALLOW_PRIVATE, as for webhooks), must all be public
(app.services.outbound.is_public): no request to the exchange's own network."""
import asyncio
import ipaddress
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import ThreadedResolver

from app.services import outbound

POOL_SIZE = 200  # connections open at once, over all bid URLs


@dataclass(frozen=True)
class BidRequest:
    order_id: int
    url: str
    headers: dict
    body: bytes


@dataclass(frozen=True)
class Reply:
    """What came back for one request: a status and body, or an error sentence
    ("late" when the deadline or the request's own timeout came first)."""

    order_id: int
    milliseconds: int
    status: Optional[int] = None
    body: Optional[bytes] = None
    error: Optional[str] = None


class _PublicOnly(AbstractResolver):
    """The default resolver, refusing names that resolve to a non-public address."""

    def __init__(self, allow_private: bool):
        self._inner = ThreadedResolver()
        self._allow_private = allow_private

    async def resolve(self, host: str, port: int = 0, family=socket.AF_INET):
        found = await self._inner.resolve(host, port, family)
        if not self._allow_private:
            for result in found:
                if not outbound.is_public(result["host"]):
                    raise OSError(f"{host} is not a public address")
        return found

    async def close(self) -> None:
        await self._inner.close()


class Pinger:
    """A process's event loop thread and connection pool."""

    def __init__(self, allow_private: bool):
        self.allow_private = allow_private
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), daemon=True,
                                        name="bid-pinger")
        self._thread.start()
        started.wait()
        self.session = asyncio.run_coroutine_threadsafe(self._open(), self.loop).result()

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(started.set)
        self.loop.run_forever()

    async def _open(self) -> aiohttp.ClientSession:  # on the loop: aiohttp wants it running
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=POOL_SIZE, resolver=_PublicOnly(
                self.allow_private), ttl_dns_cache=60),
            trust_env=False, headers={"User-Agent": "LeadX-Bid/1"})

    def ask(self, requests: list[BidRequest], deadline_ms: int, timeout_ms: int) -> list[Reply]:
        """Send every request at once; each reply, or "late" for those the deadline
        (counted from now) came before."""
        if not requests:
            return []
        future = asyncio.run_coroutine_threadsafe(
            self._ask(requests, deadline_ms, timeout_ms), self.loop)
        return future.result()

    async def _ask(self, requests: list[BidRequest], deadline_ms: int,
                   timeout_ms: int) -> list[Reply]:
        started = time.monotonic()
        tasks = [asyncio.ensure_future(self._one(request, started, timeout_ms))
                 for request in requests]
        done, pending = await asyncio.wait(tasks, timeout=deadline_ms / 1000)
        for task in pending:
            task.cancel()
        late = _elapsed(started)
        return [task.result() if task in done
                else Reply(request.order_id, late, error="late")
                for task, request in zip(tasks, requests)]

    async def _one(self, request: BidRequest, started: float, timeout_ms: int) -> Reply:
        host = urlsplit(request.url).hostname or ""
        if not self.allow_private and _literal(host) and not outbound.is_public(host):
            # aiohttp does not resolve an address, so the resolver cannot refuse it
            return Reply(request.order_id, _elapsed(started),
                         error=f"refused: {host} is not a public address")
        try:
            async with self.session.post(
                    request.url, data=request.body, headers=request.headers,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=timeout_ms / 1000)) as response:
                body = await response.content.read(4096)
                return Reply(request.order_id, _elapsed(started), response.status, body)
        except asyncio.TimeoutError:  # its own timeout: as late as the deadline
            return Reply(request.order_id, _elapsed(started), error="late")
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return Reply(request.order_id, _elapsed(started), error=_sentence(exc))


def _literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _elapsed(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _sentence(exc: Exception) -> str:
    """A failed request as a short sentence for the buyer's journey."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        cause = exc.os_error
        if isinstance(cause, ConnectionRefusedError):
            return f"connection refused by {exc.host}"
        return f"could not connect to {exc.host}: {cause.strerror or cause}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection without answering"
    return f"the request failed: {exc.__class__.__name__}"[:200]


_pinger: Optional[Pinger] = None
_lock = threading.Lock()


def pinger(allow_private: bool) -> Pinger:
    """This process's Pinger (a forked worker starts its own)."""
    global _pinger
    with _lock:
        if (_pinger is None or _pinger.pid != os.getpid()
                or _pinger.allow_private != allow_private):
            _pinger = Pinger(allow_private)
        return _pinger
