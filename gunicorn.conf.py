"""gunicorn's settings, read from the working directory (`gunicorn wsgi:app`); the
command line overrides them.

Threads (gthread): a real-time lead waits in its request thread while the process's
seller thread stores and matches it with the leads that arrived meanwhile
(app.market.realtime), so a process needs threads to hold one group's requests, and
leads group per process. Two processes for two cores (docs/scaling.md): more made
smaller groups, each paying a group's fixed cost, and contended for the seller's day
batch.
"""
import os

workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "16"))
