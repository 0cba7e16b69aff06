"""A short-lived in-process cache for market-wide figures that every viewer shares
(prices by region, the admin's marketplace page): scans of a whole period's sales,
worth computing once per few minutes rather than on every page view. Per process
(each gunicorn worker keeps its own); MARKET_STATS_CACHE_SECONDS = 0 turns it off.

A caller may pass a `version`: a cheap fingerprint of the data the figure is computed
from. A cached value computed at another version is stale and computed again, so a
change anywhere (in any process) shows at once rather than after the timeout."""
import threading
import time
from typing import Callable, Hashable, TypeVar

from flask import current_app

T = TypeVar("T")
MAX_ENTRIES = 256
_entries: dict[Hashable, tuple[float, Hashable, object]] = {}
_lock = threading.Lock()


def cached(key: Hashable, compute: Callable[[], T], version: Hashable = None) -> T:
    seconds = current_app.config.get("MARKET_STATS_CACHE_SECONDS", 0)
    if seconds <= 0:
        return compute()
    now = time.monotonic()
    with _lock:
        hit = _entries.get(key)
    if hit is not None and now - hit[0] < seconds and hit[1] == version:
        return hit[2]  # type: ignore[return-value]
    value = compute()
    with _lock:
        if len(_entries) >= MAX_ENTRIES:
            _entries.clear()
        _entries[key] = (now, version, value)
    return value
