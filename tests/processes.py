"""Real processes for integration tests: a Celery worker and the DICOM listener,
both reading and writing the test database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from teleradiology.celery import app

ROOT = Path(__file__).resolve().parents[1]


def database_url() -> str:
    """The test database, as a URL a child process can use."""
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(s['NAME']).resolve()}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or 'localhost'}:{s['PORT'] or 5432}/{s['NAME']}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(process: subprocess.Popen[Any]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class Worker:
    queue: str
    process: subprocess.Popen[Any]
    hostname: str


def isolated_broker_env(tmp_path: Path) -> dict[str, str]:
    """A broker of the test's own (Redis database 9, or a filesystem broker under
    ``tmp_path``), so beat's periodic tasks reach only this test's worker."""
    redis_url = os.environ.get("REDIS_URL", "")
    if redis_url:
        import redis

        url = redis_url.rsplit("/", 1)[0] + "/9"
        redis.Redis.from_url(url).flushdb()
        return {"REDIS_URL": url}
    return {"VAR_DIR": str(tmp_path / "var")}


def start_worker(tmp_path: Path, *, beat: bool = False, **env: str) -> Worker:
    queue = f"it-{uuid.uuid4().hex[:10]}"
    hostname = f"{queue}@localhost"
    log_path = tmp_path / f"{queue}.log"
    # With beat, the worker also consumes the default queue beat sends to (on a
    # broker of its own, see isolated_broker_env).
    queues = f"{queue},celery" if beat else queue
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "teleradiology",
        "worker",
        "--pool=solo",
        f"--queues={queues}",
        f"--hostname={hostname}",
        "--loglevel=INFO",
        "--without-gossip",
        "--without-mingle",
    ]
    if beat:
        command += ["--beat", f"--schedule={tmp_path / 'celerybeat-schedule'}"]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": database_url(), **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    if beat:  # on another broker than ours: wait for its log instead of a ping
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"worker exited: {log_path.read_text()}")
            if " ready." in log_path.read_text():
                return Worker(queue, process, hostname)
            time.sleep(0.2)
        _stop(process)
        raise RuntimeError(f"worker with beat not ready within 60 s: {log_path.read_text()}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"worker exited: {log_path.read_text()}")
        if app.control.ping(destination=[hostname], timeout=1.0):
            return Worker(queue, process, hostname)
    _stop(process)
    raise RuntimeError("worker did not answer a ping within 60 s")


@pytest.fixture
def celery_worker_process(transactional_db: Any, tmp_path: Path) -> Iterator[Worker]:
    """A real ``celery worker`` on a queue of its own."""
    worker = start_worker(tmp_path)
    try:
        yield worker
    finally:
        _stop(worker.process)
        connection.close()


@dataclass
class Listener:
    port: int
    storage_root: Path
    process: subprocess.Popen[Any]
    log_path: Path
    ae_title: str = "TELERAD"

    def log(self) -> str:
        return self.log_path.read_text()


def _wait_for_port(port: int, process: subprocess.Popen[Any], log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"listener exited: {log_path.read_text()}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError("listener did not open its port within 60 s")


def start_listener(tmp_path: Path, **env: str) -> Listener:
    """Start ``manage.py dicom_listener`` on a free port, storing under ``tmp_path``."""
    port = free_port()
    storage_root = tmp_path / "dicom"
    log_path = tmp_path / f"listener-{port}.log"
    # The listener names its own database connections (application_name
    # "teleradiology-dicom-listener"), which the outage test looks for.
    url = database_url()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "dicom_listener",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=ROOT,
            env={
                **os.environ,
                "DATABASE_URL": url,
                "DICOM_STORAGE_ROOT": str(storage_root),
                "DB_CONN_MAX_AGE": "60",
                **env,
            },
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_port(port, process, log_path)
    except Exception:
        _stop(process)
        raise
    return Listener(port, storage_root, process, log_path)


def stop_listener(listener: Listener) -> None:
    _stop(listener.process)
    connection.close()


@pytest.fixture
def dicom_listener(transactional_db: Any, tmp_path: Path) -> Iterator[Listener]:
    """The DICOM gateway as a real process, on the test database."""
    listener = start_listener(tmp_path)
    try:
        yield listener
    finally:
        stop_listener(listener)


@dataclass
class Web:
    url: str
    storage_root: Path
    process: subprocess.Popen[Any]
    log_path: Path


def start_web(tmp_path: Path, **env: str) -> Web:
    """Start the web process as production runs it (gunicorn with gunicorn.conf.py)
    on a free port, on the test database, storing DICOM under ``tmp_path``."""
    port = free_port()
    storage_root = tmp_path / "dicom"
    tmp_path.mkdir(parents=True, exist_ok=True)
    log_path = tmp_path / f"web-{port}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py"],
            cwd=ROOT,
            env={
                **os.environ,
                "DATABASE_URL": database_url(),
                "DICOM_STORAGE_ROOT": str(storage_root),
                "GUNICORN_BIND": f"127.0.0.1:{port}",
                "WEB_CONCURRENCY": "1",
                "GUNICORN_REUSE_PORT": "false",
                **env,
            },
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_port(port, process, log_path)
    except Exception:
        _stop(process)
        raise
    return Web(f"http://127.0.0.1:{port}", storage_root, process, log_path)


def stop_web(web: Web) -> None:
    _stop(web.process)
    connection.close()
