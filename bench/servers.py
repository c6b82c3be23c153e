"""The app's own processes as the benchmarks start them: its environment,
gunicorn, a Celery worker (with beat, or beat alone) and the DICOM listener.
Each ``*_argv`` is a command line for ``supervise.PROCS.start``."""

from __future__ import annotations

import os
import secrets
import sys

from bench.supervise import HOST

SERVER_CONFIG = "gunicorn.conf.py"  # the product's server configuration (repository root)


def app_env(*, database_url: str, redis_url: str, var_dir: str, **extra: str) -> dict[str, str]:
    """The environment of the app's processes (and of this one once Django is set
    up): our database and broker, our own var/ (the repository's stays untouched),
    DEBUG off as deployed (no per-query bookkeeping), unbuffered logs."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "teleradiology.settings",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "VAR_DIR": var_dir,
        "DEBUG": "false",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def production(env: dict[str, str], *, redis_url: str, **extra: str) -> dict[str, str]:
    """``env`` as a deployment runs: production settings (DEBUG off, the production
    guard satisfied with a random secret key), the broker production requires."""
    return {
        **env,
        "DJANGO_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "REDIS_URL": redis_url,
        # Production names the web server's interface (gunicorn.conf.py refuses to start
        # without one); loopback, as every benchmark server binds (gunicorn_argv's
        # --bind names the port and wins over this).
        "GUNICORN_BIND": f"{HOST}:8000",
        # Each benchmark client is a reader in a loop, far beyond the API's production
        # rates (the claims loop alone is ~3 claims/s per reader): measure the work,
        # not the throttle's refusals.
        "API_THROTTLE_USER": "100000/s",
        "API_THROTTLE_DICOMWEB": "100000/s",
        "API_THROTTLE_CLAIM": "100000/s",
        "API_THROTTLE_ANON": "100000/s",
        **extra,
    }


def gunicorn_argv(
    port: int,
    *,
    config: str | None = None,
    worker_class: str | None = None,
    workers: int | None = None,
    threads: int | None = None,
) -> list[str]:
    """gunicorn serving ``teleradiology.wsgi`` on 127.0.0.1:``port``, errors to its log."""
    argv = [sys.executable, "-m", "gunicorn"]
    if config:
        argv += ["--config", config]
    argv += ["teleradiology.wsgi:application", "--bind", f"{HOST}:{port}"]
    if worker_class:
        argv += ["--worker-class", worker_class]
    if workers is not None:
        argv += ["--workers", str(workers)]
    if threads is not None:
        argv += ["--threads", str(threads)]
    return [*argv, "--error-logfile", "-"]


def celery_worker_argv(
    *,
    hostname: str,
    loglevel: str = "INFO",
    queues: str | None = None,
    pool: str | None = None,
    concurrency: int | None = None,
    beat: bool = False,
) -> list[str]:
    """``celery worker`` (with ``--beat`` embedded when asked)."""
    argv = [sys.executable, "-m", "celery", "-A", "teleradiology", "worker"]
    if beat:
        argv.append("--beat")
    argv.append(f"--loglevel={loglevel}")
    if pool:
        argv.append(f"--pool={pool}")
    if concurrency is not None:
        argv.append(f"--concurrency={concurrency}")
    if queues:
        argv += ["-Q", queues]
    return [*argv, f"--hostname={hostname}"]


def celery_beat_argv(*, schedule: str, loglevel: str = "INFO") -> list[str]:
    """``celery beat`` alone, its schedule file in our folder."""
    return [
        sys.executable, "-m", "celery", "-A", "teleradiology", "beat",
        f"--loglevel={loglevel}", "--schedule", schedule,
    ]  # fmt: skip


def dicom_listener_argv(*, port: int, processes: int | None = None) -> list[str]:
    """``manage.py dicom_listener`` on 127.0.0.1:``port``."""
    argv = [sys.executable, "manage.py", "dicom_listener", "--host", HOST, "--port", str(port)]
    return argv + (["--processes", str(processes)] if processes is not None else [])
