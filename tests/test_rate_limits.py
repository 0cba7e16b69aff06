"""Login rate limits in production: one counter shared by every web process (Redis),
or the app refuses to start; development and tests count in memory."""
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from app import create_app
from config import ProductionConfig
from tests.test_celery_mode import _free_port, redis_url  # noqa: F401  (a fixture)

ROOT = Path(__file__).resolve().parent.parent
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def test_production_refuses_to_start_without_shared_rate_limit_storage(monkeypatch):
    monkeypatch.setattr(ProductionConfig, "SECRET_KEY", "x" * 32)
    monkeypatch.setattr(ProductionConfig, "CONTACT_ENCRYPTION_KEY", "y" * 44)
    monkeypatch.setattr(ProductionConfig, "RATELIMIT_STORAGE_URI", "memory://")
    with pytest.raises(RuntimeError, match="REDIS_URL must be set in production"):
        create_app("production", SQLALCHEMY_DATABASE_URI="sqlite://")


def _start_gunicorn(env: dict, log: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}", "wsgi:app"],
        cwd=ROOT, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    process.kill()
    process.wait(timeout=10)
    pytest.fail(f"gunicorn did not start:\n{log.read_text()}")


def _failed_login(session: requests.Session, base: str) -> int:
    token = CSRF_RE.search(session.get(f"{base}/auth/login").text).group(1)
    return session.post(f"{base}/auth/login", allow_redirects=False, data={
        "email": "victim@example.com", "password": "a guess", "csrf_token": token}).status_code


def test_login_limit_holds_across_two_production_servers(app, database_url, redis_url, tmp_path):  # noqa: F811
    env = {name: value for name, value in os.environ.items()
           if name not in ("RATELIMIT_STORAGE_URI", "CELERY_BROKER_URL")} | {
        "APP_ENV": "production", "SECRET_KEY": "s" * 48,
        "CONTACT_ENCRYPTION_KEY": "ZGV2LW9ubHktY29udGFjdC1rZXktMzItYnl0ZXMhISE=",
        "DATABASE_URL": database_url, "REDIS_URL": redis_url, "TASK_MODE": "eager",
        "SESSION_COOKIE_SECURE": "0",  # plain HTTP here; the CSRF token lives in the session
        "LOGIN_RATE_LIMIT": "3 per hour", "PYTHONPATH": str(ROOT)}
    servers = [_start_gunicorn(env, tmp_path / f"gunicorn{i}.log") for i in range(2)]
    try:
        sessions = [requests.Session() for _ in servers]
        statuses = [_failed_login(sessions[i % 2], servers[i % 2][1]) for i in range(6)]
    finally:
        for process, _ in servers:
            process.terminate()
            process.wait(timeout=20)
    # Each process counting alone would have let all six through.
    assert statuses == [200, 200, 200, 429, 429, 429]
