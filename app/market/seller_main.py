"""Entry point of a seller process (app.market.seller_process): `python -m
app.market.seller_main PATH`, started by the first web process that needs it; listens
on the Unix socket PATH for the web processes. Builds the app with the configuration
the first one sends (every connection's first message), then hands each lead it is sent
to one SellerThread and sends its answer back on the connection it came from; ends
when no web process is connected any more."""
import gc
import os
import select
import socket
import sys
import threading
import time
from functools import lru_cache
from multiprocessing.connection import Connection

from psycopg import _queries

from app import create_app
from app.market.realtime import Arrival, SellerThread
from app.market.seller_process import START_SECONDS, reply, start_lock


def parse_long_statements_once() -> None:
    """psycopg parses a statement's placeholders again at every execution when it is
    longer than 4 KB or has more than 50 parameters (its cache leaves those out: an
    ORM's multi-row INSERTs rarely repeat). A seller process repeats them, one text per
    group size for each of a group's multi-row statements and its webhooks' delivery
    rows: parsing them again was ~16% of the seller's CPU (docs/scaling.md). Here they
    are kept too, more of them (1,024 texts, least recently used first out)."""
    _queries.MAX_CACHED_STATEMENT_LENGTH = 256 * 1024
    _queries.MAX_CACHED_STATEMENT_PARAMS = 16 * 1024
    _queries._query2pg = lru_cache(maxsize=1024)(_queries._query2pg_nocache)


class _Server:
    def __init__(self, address: str):
        self.address = address
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(address)
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.lock = threading.Lock()
        self.connected = 0
        self.seller = None  # the SellerThread, once the first configuration came
        self.accepted = False
        self.born = time.monotonic()

    def run(self) -> None:
        """Accept web processes; end once none is connected (after the first, or if the
        one that started it never connected)."""
        while True:
            select.select([self.listener], [], [], 0.2)
            if self._accept():
                continue
            with self.lock:
                idle = self.connected == 0 and (
                    self.accepted or time.monotonic() - self.born > START_SECONDS)
            if idle:
                # Under the lock web processes connect under: one that connected
                # before is accepted now; one after finds no socket, starts another.
                with start_lock():
                    if not self._accept():
                        os.unlink(self.address)
                        os._exit(0)

    def _accept(self) -> bool:
        try:
            theirs, _ = self.listener.accept()
        except BlockingIOError:
            return False
        theirs.setblocking(True)
        with self.lock:
            self.connected += 1
            self.accepted = True
        threading.Thread(target=self._serve, args=(Connection(theirs.detach()),),
                         daemon=True, name="leadx-seller-conn").start()
        return True

    def _serve(self, conn: Connection) -> None:
        lock = threading.Lock()  # one writer on this connection at a time
        try:
            config = conn.recv()
            with self.lock:
                if self.seller is None:
                    config.pop("REALTIME_SELLER", None)
                    app = create_app(config["APP_ENV"], **config, REALTIME_SELLER="thread")
                    self.seller = SellerThread(app)
                    # The app's objects (modules, mappers, compiled statements) live as
                    # long as the process: the cyclic collector's full passes need not
                    # scan them again each time.
                    gc.freeze()
            while True:
                n, seller_id, row, terms, key_checks = conn.recv()
                arrival = Arrival(seller_id, row, terms, key_checks)
                arrival.answer.add_done_callback(
                    lambda future, n=n: _reply(conn, lock, n, future))
                self.seller.put(arrival)
        except (EOFError, OSError):  # this web process has gone
            pass
        finally:  # (if the app could not be built: its web process sees the end too)
            conn.close()
            with self.lock:
                self.connected -= 1


def _reply(conn: Connection, lock: threading.Lock, n: int, future) -> None:
    try:
        reply(conn, lock, n, future)
    except OSError:  # its web process has gone: nobody waits for the answer
        pass


def serve(address: str) -> None:
    parse_long_statements_once()
    _Server(address).run()


if __name__ == "__main__":
    serve(sys.argv[1])
