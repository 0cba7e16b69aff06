"""With CELERY_BROKER_URL set, jobs run in a real Celery worker through a real Redis:
an upload is processed by the worker process and its leads fill an open order."""
import io
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import Batch, BatchStatus, Order
from app.tasks import celery_for
from tests.ingest_helpers import csv_bytes, person
from tests.market_helpers import funded_buyer, place, verified_seller

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_url(tmp_path):
    server = shutil.which("redis-server")
    if server is None:
        if os.environ.get("REQUIRE_REDIS") == "1":
            pytest.fail("redis-server is not installed and REQUIRE_REDIS=1")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = _free_port()
    process = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1",
                                "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def celery_worker(app, redis_url, database_url, tmp_path):
    env = os.environ | {
        "APP_ENV": "development", "DATABASE_URL": database_url, "CELERY_BROKER_URL": redis_url,
        "UPLOAD_DIR": app.config["UPLOAD_DIR"], "INGEST_WORKERS": "1", "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "app.worker", "worker", "-P", "solo",
         "--loglevel=INFO", "--without-mingle", "--without-gossip"],
        cwd=ROOT, env=env, stdout=open(tmp_path / "worker.log", "wb"), stderr=subprocess.STDOUT)
    celery = celery_for(app)
    previous = (app.config["TASK_MODE"], celery.conf.broker_url)
    app.config["TASK_MODE"] = "celery"
    celery.conf.broker_url = redis_url
    yield tmp_path / "worker.log"
    app.config["TASK_MODE"], celery.conf.broker_url = previous
    worker.terminate()  # a warm shutdown; a busy machine may need longer, then no mercy
    try:
        worker.wait(timeout=20)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait(timeout=10)


def test_upload_is_processed_and_matched_by_a_celery_worker(client, api_key_for, celery_worker):
    order = place(funded_buyer(), 500, 5)
    seller = verified_seller()
    response = client.post("/api/v1/batches", headers=api_key_for(seller), data={
        "default_country": "US", "file": (io.BytesIO(csv_bytes([person(1), person(2)])), "a.csv")},
        content_type="multipart/form-data")
    assert response.status_code == 202 and response.json["status"] == "processing"
    batch_id = response.json["id"]
    deadline = time.time() + 60
    while time.time() < deadline:
        db.session.expire_all()
        batch = db.session.get(Batch, batch_id)
        if batch.status is not BatchStatus.PROCESSING and db.session.get(Order, order.id).filled == 2:
            break  # fills commit one by one: wait for both
        db.session.commit()
        time.sleep(0.2)
    log = celery_worker.read_text(errors="replace")
    assert batch.status is BatchStatus.LIVE, log[-3000:]
    assert db.session.get(Order, order.id).filled == 2, log[-3000:]
    assert "app.tasks.process_batch" in log
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Batch)) == 1
