"""Ingest workers end when the process that started them is killed (a dev server
stopped by a signal runs no clean-up: its workers used to stay behind for good)."""
import os
import subprocess
import sys
import time
from pathlib import Path

PARENT = """
import os, sys
from app.services.ingest import workers
pool = workers.pool_for({"INGEST_WORKERS": 2, "INGEST_CHUNK_ROWS": 50,
                         "CONTACT_ENCRYPTION_KEY": "ZGV2LW9ubHktY29udGFjdC1rZXktMzItYnl0ZXMhISE="})
pids = {pool._executor.submit(os.getpid).result() for _ in range(4)}
print(" ".join(map(str, pids)), flush=True)
sys.stdin.read()  # until killed
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_workers_exit_when_their_parent_is_killed():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[2])
    try:
        pids = [int(pid) for pid in parent.stdout.readline().split()]
        assert pids and all(_alive(pid) for pid in pids)
        time.sleep(1.5)  # the workers watch their parent once a second
        assert all(_alive(pid) for pid in pids)
        os.kill(parent.pid, 9)
        parent.wait()
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in pids)
    finally:
        parent.kill()
        parent.wait()
