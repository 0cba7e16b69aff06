"""Entry point of a seller process (app.market.seller_process): `python -m
app.market.seller_main FD`, started by its web process with the socket's file
descriptor. Builds the app with the web process's configuration (the first message),
then hands each lead it is sent to a SellerThread and sends back its answer; ends when
the socket closes (its web process has gone)."""
import os
import sys
import threading
from multiprocessing.connection import Connection

from app import create_app
from app.market.realtime import Arrival, SellerThread
from app.market.seller_process import reply


def serve(fd: int) -> None:
    conn = Connection(fd)
    config = conn.recv()
    config.pop("REALTIME_SELLER", None)
    app = create_app(config["APP_ENV"], **config, REALTIME_SELLER="thread")
    seller, lock = SellerThread(app), threading.Lock()
    while True:
        try:
            n, seller_id, row, terms = conn.recv()
        except (EOFError, OSError):  # the web process has gone
            os._exit(0)
        arrival = Arrival(seller_id, row, terms)
        arrival.answer.add_done_callback(lambda future, n=n: reply(conn, lock, n, future))
        seller.put(arrival)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
