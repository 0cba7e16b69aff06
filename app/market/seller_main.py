"""Entry point of a seller process (app.market.seller_process): `python -m
app.market.seller_main FD`, started by its web process with the socket's file
descriptor. Builds the app with the web process's configuration (the first message),
then hands each lead it is sent to a SellerThread and sends back its answer; ends when
the socket closes (its web process has gone)."""
import gc
import os
import sys
import threading
from functools import lru_cache
from multiprocessing.connection import Connection

from psycopg import _queries

from app import create_app
from app.market.realtime import Arrival, SellerThread
from app.market.seller_process import reply


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


def serve(fd: int) -> None:
    parse_long_statements_once()
    conn = Connection(fd)
    config = conn.recv()
    config.pop("REALTIME_SELLER", None)
    app = create_app(config["APP_ENV"], **config, REALTIME_SELLER="thread")
    seller, lock = SellerThread(app), threading.Lock()
    # The app's objects (modules, mappers, compiled statements) live as long as the
    # process: the cyclic collector's full passes need not scan them again each time.
    gc.freeze()
    while True:
        try:
            n, seller_id, row, terms, key_checks = conn.recv()
        except (EOFError, OSError):  # the web process has gone
            os._exit(0)
        arrival = Arrival(seller_id, row, terms, key_checks)
        arrival.answer.add_done_callback(lambda future, n=n: reply(conn, lock, n, future))
        seller.put(arrival)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
