"""Pure logic: Python's cyclic garbage collector paused around bulk work.

A large match builds hundreds of thousands of objects (leads, fills, rows) with no
reference cycles among them; reference counting frees them. The cyclic collector,
triggered by their number alone, scanned them again and again: a third of the Python
time of matching 20,000 leads (bench/match.py). While a job holds `paused()` it does
not run (in any thread: the collector is the process's); cycles made meanwhile are
collected by its first run after."""
import gc
import threading
from contextlib import contextmanager
from typing import Iterator

_lock = threading.Lock()
_holders = 0  # jobs inside paused(), in any thread
_resume = False  # whether the last holder turns the collector back on


@contextmanager
def paused() -> Iterator[None]:
    global _holders, _resume
    with _lock:
        if _holders == 0:
            _resume = gc.isenabled()
            gc.disable()
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and _resume:
                gc.enable()
