"""gunicorn's configuration for the web process: the recommended production server.

    gunicorn -c gunicorn.conf.py teleradiology.wsgi:application

(gunicorn also reads ``./gunicorn.conf.py`` by itself when started from the
repository root.)  Every value can be changed from the environment, so a
deployment tunes it without editing this file; a command-line option wins over
both.

Why these values:

- ``gthread`` workers: the requests are short and spend part of their time
  waiting for PostgreSQL, so several threads per process overlap those waits,
  and keep-alive connections are kept (the ``sync`` worker closes every one).
- One process per core (at least two): Python runs one thread at a time per
  process, so processes are what use the cores, and more of them than cores
  only adds switching on a machine that also runs PostgreSQL, while making the
  spread of connections over them (below) less even.  8 threads each, to
  overlap the database waits of several requests.  On the claims benchmark
  (bench/claims: 32 keep-alive clients, 2 shared cores; noisy) 8 threads did
  better than 4, and 2 or 3 workers with ``reuse_port`` better than the five
  workers with one shared socket it used before (claim p99 about 0.6-1.3 s
  against 1.1-2.0 s).
- ``reuse_port``: each worker listens on a socket of its own and the kernel
  spreads new connections over them by a hash of the connection.  With one
  shared socket, whichever worker wakes first accepts, and long-lived keep-alive
  connections stay unevenly spread (15, 6, 5, 5, 1 over five workers in one run:
  the first worker's clients queue behind each other while another idles).
"""

from __future__ import annotations

import os
import sys


def _int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


_cores = os.cpu_count() or 1

wsgi_app = "teleradiology.wsgi:application"


def _bind_named_on_command_line() -> bool:
    """Whether ``--bind``/``-b`` was given (command line or GUNICORN_CMD_ARGS), which
    gunicorn applies over this file."""
    args = [*sys.argv[1:], *os.environ.get("GUNICORN_CMD_ARGS", "").split()]
    return any(a in ("-b", "--bind") or a.startswith(("--bind=", "-b")) for a in args)


# Only this machine unless told otherwise; the production profile must name its
# interfaces (GUNICORN_BIND or --bind), never fall back to a default.
_bind = os.environ.get("GUNICORN_BIND", "").strip()
if os.environ.get("DJANGO_ENV") == "production" and not _bind and not _bind_named_on_command_line():
    raise RuntimeError(
        "DJANGO_ENV=production: set GUNICORN_BIND (or --bind) to the address(es) the web "
        "server listens on, e.g. GUNICORN_BIND=10.0.0.5:8000; there is no default."
    )
bind = (_bind or "127.0.0.1:8000").split(",")
worker_class = "gthread"
# WEB_CONCURRENCY is the usual name (gunicorn's own default reads it too).
workers = _int("WEB_CONCURRENCY", max(2, _cores))
threads = _int("GUNICORN_THREADS", 8)
reuse_port = os.environ.get("GUNICORN_REUSE_PORT", "true").lower() not in ("0", "false", "no")
# Seconds an idle keep-alive connection is kept: a proxy in front keeps its
# connections longer than a browser would, so more than gunicorn's 2 s.
keepalive = _int("GUNICORN_KEEPALIVE", 5)
timeout = _int("GUNICORN_TIMEOUT", 30)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
# Access lines cost every request a log write; a proxy in front usually logs them.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
# The workers' heartbeat files on a RAM disk where there is one (a slow or full
# disk must not make the arbiter think its workers hung).
# gunicorn's control socket (for ``gunicornc``) defaults to one path per user, so a
# second server on the machine (another checkout, a benchmark, a test) would take
# over the first one's socket and remove it when it stops.  Off unless a path is
# given.
_control = os.environ.get("GUNICORN_CONTROL_SOCKET", "").strip()
if _control:
    control_socket = _control
else:
    control_socket_disable = True
_SHM = "/dev/shm"  # noqa: S108 - a RAM disk for gunicorn's own files, not shared temp files
if os.path.isdir(_SHM):
    worker_tmp_dir = _SHM
