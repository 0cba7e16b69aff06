"""gunicorn's settings, read from the working directory (`gunicorn wsgi:app`); the
command line overrides them.

Threads (gthread): a real-time lead waits in its request thread while the process's
seller thread stores and matches it with the leads that arrived meanwhile
(app.market.realtime). A group holds at most as many leads as the process has
threads, and a group's cost is mostly fixed, so threads are what let groups grow with
the load: 48 rather than 16 took 200 leads/s from a p99 of 6 s to 1.3 s on two cores
(docs/scaling.md). Two processes for two cores: more made smaller groups, each paying
a group's fixed cost, and contended for the seller's day batch.
"""
import os

workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "48"))
