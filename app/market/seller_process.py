"""Job: the seller thread of app.market.realtime in a process of its own, one per web
process (REALTIME_SELLER = "process", as gunicorn.conf.py sets it).

Why: in the web process the seller thread shares the GIL with the request threads
and the webhook threads. Each of its ~35 statements a group gives up the GIL while
PostgreSQL answers and then queues for it behind threads that are validating leads,
so a group took 4-5 times its CPU in wall time, and that wall time is the lead's
latency (docs/scaling.md). Here the request threads only validate and send the lead
over a socket; the seller process stores and matches groups exactly as the thread
does (the same `SellerThread`, the same rules, one transaction per group) and sends
each request its own lead's answer once the lead is committed, so a 201 still means
the lead is stored. The webhooks of its sales go from its own delivery threads.

The process is started with the web process's configuration (`python -m
app.market.seller_main FD`: the socket's file descriptor), ends when that socket
closes (its web process has gone), and is started again by the next lead if it died;
the leads it was holding are answered with an error (their group's transaction was
either committed, and then their sales' webhooks go out by the retry job, or not).
"""
import importlib
import itertools
import os
import pickle
import socket
import subprocess
import sys
import threading
import traceback
from concurrent.futures import Future
from multiprocessing.connection import Connection
from pathlib import Path

from flask import Flask

from app.errors import DomainError

ROOT = Path(__file__).resolve().parent.parent.parent


class SellerProcessGone(RuntimeError):
    """The seller process ended while holding this lead."""


class SellerProcess:
    """The web process's side: sends arrivals, sets each one's answer when it comes."""

    def __init__(self, app: Flask):
        ours, theirs = socket.socketpair()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.market.seller_main", str(theirs.fileno())],
            pass_fds=[theirs.fileno()], cwd=ROOT)
        theirs.close()
        self._socket = ours
        self.conn = Connection(os.dup(ours.fileno()))
        self.conn.send(_picklable_config(app))
        self.pid = os.getpid()
        self.alive = True
        self._pending: dict[int, Future] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()  # one writer on the socket at a time
        threading.Thread(target=self._answers, daemon=True, name="leadx-realtime-answers").start()

    def put(self, arrival) -> None:
        with self._lock:
            if not self.alive:
                raise SellerProcessGone("The seller process has ended.")
            n = next(self._ids)
            self._pending[n] = arrival.answer
            self.conn.send((n, arrival.seller_id, arrival.row, arrival.terms, arrival.key_checks))

    def close(self) -> None:
        """End the process (it sees its socket close) and wait for it."""
        self._socket.shutdown(socket.SHUT_RDWR)  # wakes the answers thread too
        self.process.wait(10)

    def _answers(self) -> None:
        while True:
            try:
                n, kind, payload = self.conn.recv()
            except (EOFError, OSError):
                break
            future = self._pending.pop(n)
            if kind == "ok":
                future.set_result(payload)
            elif kind == "domain":
                module, name, message, code, details = payload
                cls = getattr(importlib.import_module(module), name)
                future.set_exception(cls(message, code=code, details=details))
            else:
                future.set_exception(RuntimeError(f"The seller process failed: {payload}"))
        with self._lock:
            self.alive = False
            pending, self._pending = self._pending, {}
        for future in pending.values():
            future.set_exception(SellerProcessGone("The seller process ended."))
        self.process.wait()


def _picklable_config(app: Flask) -> dict:
    config = {}
    for key, value in app.config.items():
        try:
            pickle.dumps(value)
        except Exception:  # the few objects the child builds again itself
            continue
        config[key] = value
    return config


def reply(conn: Connection, lock: threading.Lock, n: int, future: Future) -> None:
    exc = future.exception()
    if exc is None:
        message = (n, "ok", future.result())
    elif isinstance(exc, DomainError):
        message = (n, "domain", (type(exc).__module__, type(exc).__name__, exc.message,
                                 exc.code, exc.details))
    else:
        message = (n, "error", "".join(traceback.format_exception_only(exc)).strip())
    with lock:
        conn.send(message)
