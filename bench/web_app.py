"""WSGI entry point for bench/web.py: the real app, built by `create_app` from the
environment exactly as wsgi.py builds it, with two bench-only changes:

- Flask-Limiter off (RATELIMIT_ENABLED=False): the bench measures what the pages cost,
  not 429s, and no limiter check runs on any request;
- one extra route, `GET /bench/bare` returning "ok": the baseline the pages are
  compared with, served by the same gunicorn, app, middleware and after-request hooks.

    gunicorn bench.web_app:app      # from the repository root, as bench/web.py runs it
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import create_app  # noqa: E402  (needs the repository root on sys.path)

app = create_app(RATELIMIT_ENABLED=False)
app.add_url_rule("/bench/bare", "bench_bare", lambda: "ok")
