"""WSGI entry point for bench/realtime.py --thread-cpu: bench/web_app.py's app, in a
worker whose threads' CPU (and with BENCH_CPROFILE=1 their profiles) bench/threadcpu.py
records from before the app starts any thread."""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import threadcpu  # noqa: E402

threadcpu.install(os.environ["BENCH_THREAD_CPU"], os.environ.get("BENCH_CPROFILE") == "1")

from bench.web_app import app  # noqa: E402,F401
