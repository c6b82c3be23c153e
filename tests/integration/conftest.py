"""A real Celery worker process, on the broker the settings name (Redis in CI, the
filesystem transport otherwise), reading and writing the test database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from teleradiology.celery import app

ROOT = Path(__file__).resolve().parents[2]


def _database_url() -> str:
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(s['NAME']).resolve()}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or 'localhost'}:{s['PORT'] or 5432}/{s['NAME']}"


class Worker:
    def __init__(self, queue: str, process: subprocess.Popen[str], hostname: str) -> None:
        self.queue = queue
        self.process = process
        self.hostname = hostname


@pytest.fixture
def celery_worker_process(transactional_db: Any, tmp_path: Path) -> Iterator[Worker]:
    """Start ``celery worker`` on a queue of its own; stop it after the test."""
    log_path = tmp_path / "worker.log"
    log = log_path.open("w")
    queue = f"it-{uuid.uuid4().hex[:10]}"
    hostname = f"{queue}@localhost"
    env = {**os.environ, "DATABASE_URL": _database_url(), "CELERY_TASK_ALWAYS_EAGER": "false"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "teleradiology",
            "worker",
            "--pool=solo",
            f"--queues={queue}",
            f"--hostname={hostname}",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"worker exited: {log_path.read_text()}")
            if app.control.ping(destination=[hostname], timeout=1.0):
                break
        else:
            raise RuntimeError("worker did not answer a ping within 60 s")
        yield Worker(queue, process, hostname)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        connection.close()
