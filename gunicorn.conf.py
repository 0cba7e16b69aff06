"""gunicorn's settings, read from the working directory (`gunicorn wsgi:app`); the
command line overrides them.

Threads (gthread): a real-time lead waits in its request thread while the process's
seller thread stores and matches it with the leads that arrived meanwhile
(app.market.realtime). A group holds at most as many leads as the process has
threads, and a group's cost is mostly fixed, so threads are what let groups grow with
the load: 48 rather than 16 took 200 leads/s from a p99 of 6 s to 1.3 s on two cores
(docs/scaling.md). Two processes for two cores: more made smaller groups, each paying
a group's fixed cost, and contended for the seller's day batch.

Database connections: each process keeps one per thread that may use the database
(its request threads; the seller, webhook (8), mail, job and scheduler threads). With
SQLAlchemy's default pool of 5 (+10 opened and closed per use), 48 threads opened a
new PostgreSQL connection for most requests under load (the server forks a backend
for each) and the seller thread queued behind request threads for a connection.

Seller process (REALTIME_SELLER=process): the workers' real-time leads are stored and
matched by one process of their own, shared by every worker on the machine
(app.market.seller_process), not by a thread sharing a worker's GIL with its request
threads.
"""
import gc
import os

workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "48"))
# A listening socket per process (SO_REUSEPORT): the kernel spreads new connections
# over the processes. With the one shared socket, the process that woke first took a
# client's whole burst of keep-alive connections and kept them, and one process (one
# core: Python's lock) served a page while the other idled: bench/web.py measured 1.0
# core busy of 2 on a buyer's pages, 1.4-1.7 with this.
reuse_port = True


def post_fork(server, worker):
    """Before the worker builds the app (config.py reads DB_POOL_SIZE)."""
    os.environ.setdefault("DB_POOL_SIZE", str(worker.cfg.threads + 16))
    os.environ.setdefault("REALTIME_SELLER", "process")


def post_worker_init(worker):
    """The worker connects to the seller process now (starting it if it is the first),
    not with the first real-time lead. The app's objects, built by now, live as long
    as the worker: the cyclic collector's full passes leave them out (gc.freeze)
    instead of scanning them again each time."""
    from app.market import realtime

    realtime.start_seller(worker.wsgi)
    gc.freeze()


def worker_exit(server, worker):
    """The worker leaves the seller process, which ends once its last worker has left."""
    from app.market import realtime

    realtime.stop_seller(worker.wsgi)
