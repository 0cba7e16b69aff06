"""Job: the seller thread of app.market.realtime in a process of its own, one per
machine and database, shared by the web processes (REALTIME_SELLER = "process", as
gunicorn.conf.py sets it).

Why: in the web process the seller thread shares the GIL with the request threads
and the webhook threads. Each of its ~35 statements a group gives up the GIL while
PostgreSQL answers and then queues for it behind threads that are validating leads,
so a group took 4-5 times its CPU in wall time, and that wall time is the lead's
latency (docs/scaling.md). Here the request threads only validate and send the lead
over a socket; the seller process stores and matches groups exactly as the thread
does (the same `SellerThread`, the same rules, one transaction per group) and sends
each request its own lead's answer once the lead is committed, so a 201 still means
the lead is stored. The webhooks of its sales go from its own delivery threads.
One process for all the web processes (not one each): a group's cost is mostly fixed,
and with the leads of every web process in the same groups, groups are as many times
larger at the same rate (two sellers of one seller's leads also took turns on the
seller's day batch row anyway).

The first web process to need it starts it (`python -m app.market.seller_main PATH`:
a Unix socket at PATH, per gunicorn master and database), the others connect to it;
starting and connecting happen under a file lock, so there is one. It builds the app
with the configuration the first connection sends, and ends when its last web process
has gone (under the same lock: a web process connecting meanwhile is served, or finds
no socket and starts a new one). If it dies, the leads it was holding are answered
with an error (their group's transaction was either committed, and then their sales'
webhooks go out by the retry job, or not) and the next lead starts it again.
"""
import fcntl
import hashlib
import importlib
import itertools
import os
import pickle
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from contextlib import contextmanager
from concurrent.futures import Future
from multiprocessing.connection import Connection
from pathlib import Path

from flask import Flask

from app.errors import DomainError

ROOT = Path(__file__).resolve().parent.parent.parent
START_SECONDS = 30  # for a new seller process to listen


class SellerProcessGone(RuntimeError):
    """The seller process ended while holding this lead."""


class SellerProcess:
    """The web process's side: sends arrivals, sets each one's answer when it comes."""

    def __init__(self, app: Flask):
        self.address = address_of(app)
        self.process = None  # the process, if this web process started it
        with start_lock():
            ours = _connect(self.address)
            if ours is None:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "app.market.seller_main", self.address], cwd=ROOT)
                ours = _wait_listening(self.address, self.process)
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
        """Leave the process: it ends once no web process is connected."""
        self._socket.shutdown(socket.SHUT_RDWR)  # wakes the answers thread too

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
        if self.process is not None:  # reaped once it ends (it may serve others still)
            self.process.wait()


def address_of(app: Flask) -> str:
    """The seller process's socket: one per gunicorn master (the web processes' parent)
    and database."""
    key = f"{os.getppid()}|{app.config['SQLALCHEMY_DATABASE_URI']}"
    return os.path.join(private_directory(),
                        f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.sock")


def private_directory() -> str:
    """The directory of the sockets and their lock: this user's alone. In the shared
    temporary directory another user could bind a socket (or make the lock file) at the
    path first, be sent the app's configuration and leads, and answer with pickles."""
    path = os.path.join(tempfile.gettempdir(), f"leadx-seller-{os.getuid()}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    found = os.lstat(path)  # not followed: a link to somewhere else is refused too
    if (not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid()
            or found.st_mode & 0o077):
        raise SellerProcessGone(f"{path} is not a directory of this user's alone; the seller "
                                "process does not start there.")
    return path


@contextmanager
def start_lock():
    """Held while a web process connects to the seller process or starts it, and while
    the seller process decides to end: never two of them, never one ending as a web
    process connects."""
    # One lock file for every deployment of this user: held for moments.
    with open(os.path.join(private_directory(), "start.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _connect(address: str, remove_stale: bool = True):
    """A socket connected to the seller process, or None if none is listening (with
    `remove_stale`, a socket file left by one that died is removed)."""
    ours = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        ours.connect(address)
        return ours
    except FileNotFoundError:
        ours.close()
    except ConnectionRefusedError:
        ours.close()
        if remove_stale:
            os.unlink(address)
    return None


def _wait_listening(address: str, process: subprocess.Popen):
    """A socket connected to the seller process this web process has just started. Its
    socket file exists from its bind() on, and connections are refused until its
    listen(): that file is not stale, and removing it left the process listening where
    no one could reach it (until it gave up after START_SECONDS)."""
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        ours = _connect(address, remove_stale=False)
        if ours is not None:
            return ours
        time.sleep(0.01)
    raise SellerProcessGone("The seller process did not start.")


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
