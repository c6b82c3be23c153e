"""Process supervision: every process a benchmark starts runs in a process group
of its own and is stopped by group (SIGTERM, then SIGKILL for what is left),
also on failure, Ctrl-C or SIGTERM; free ports; waiting for a port, a URL or a
log line."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import NoReturn

from bench import REPO

HOST = "127.0.0.1"


class Processes:
    """Every long-running process a benchmark started and has not stopped yet."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        log_path: Path,
        cwd: Path = REPO,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` in a new session (its own process group), output to ``log_path``."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as out:
            proc = subprocess.Popen(  # noqa: S603 - argv built by the benchmarks
                list(argv),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.running.append(proc)
        return proc

    def adopt(self, proc: subprocess.Popen[bytes]) -> None:
        """A process started elsewhere (in its own session) that ``stop_all`` must stop."""
        self.running.append(proc)

    def forget(self, proc: subprocess.Popen[bytes]) -> None:
        if proc in self.running:
            self.running.remove(proc)

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
        """SIGTERM the process group (a warm shutdown), then SIGKILL what is left."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
        # The leader may be gone while forked children linger: kill the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        self.forget(proc)

    def kill9(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the process group at once (a crash, for fault tests)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        self.forget(proc)

    def stop_all(self, timeout: float = 10) -> None:
        """Stop everything still running, the last started first."""
        for proc in list(reversed(self.running)):
            self.stop(proc, timeout=timeout)


PROCS = Processes()


def terminate(signum: int, frame: FrameType | None) -> NoReturn:
    """SIGTERM/SIGHUP end the run as an exception would, so cleanup still runs."""
    raise SystemExit(128 + signum)


def handle_signals() -> None:
    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)


def free_port(host: str = HOST) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_until(
    predicate: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.1
) -> None:
    """Poll ``predicate`` every ``interval`` s until true; TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")


def alive(proc: subprocess.Popen[bytes] | None, what: str, log_path: Path | None = None) -> None:
    """Raise if ``proc`` has exited (with the tail of its log)."""
    if proc is not None and proc.poll() is not None:
        tail = ""
        if log_path is not None and log_path.exists():
            tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{what} exited {proc.returncode}" + (f":\n{tail}" if tail else ""))


def wait_for_port(
    port: int,
    *,
    timeout: float,
    what: str,
    proc: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
    host: str = HOST,
) -> None:
    """Until something accepts TCP connections on ``port``."""

    def open_() -> bool:
        alive(proc, what, log_path)
        with socket.socket() as sock:
            return sock.connect_ex((host, port)) == 0

    wait_until(open_, timeout=timeout, what=f"{what} to open port {port}")


def http_get(
    port: int, path: str, headers: dict[str, str], timeout: float = 5
) -> tuple[int, bytes]:
    """One GET on a new connection: (status, body)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_for_http(
    port: int,
    path: str,
    *,
    headers: dict[str, str],
    timeout: float,
    what: str,
    proc: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
    ok: Callable[[int, bytes], bool] = lambda status, body: status == 200,
    interval: float = 0.2,
) -> None:
    """Until a GET of ``path`` is answered as ``ok`` says (a connection refused is
    retried; an answer ``ok`` refuses is retried too, and reported on timeout)."""
    last = "no answer"

    def answered() -> bool:
        nonlocal last
        alive(proc, what, log_path)
        try:
            status, body = http_get(port, path, headers)
        except (OSError, http.client.HTTPException) as exc:
            last = f"{type(exc).__name__}: {exc}"
            return False
        last = f"{status} {body[:300]!r}"
        return ok(status, body)

    try:
        wait_until(answered, timeout=timeout, what=f"{what} to answer {path}", interval=interval)
    except TimeoutError as exc:
        raise TimeoutError(f"{exc} (last: {last})") from None


def wait_log(path: Path, pattern: str, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    """Until ``pattern`` appears in the log ``proc`` writes."""
    rx = re.compile(pattern)

    def seen() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{path.name} exited early:\n{path.read_text()[-3000:]}")
        return path.exists() and bool(rx.search(path.read_text(errors="replace")))

    wait_until(seen, timeout=timeout, what=f"{pattern!r} in {path.name}", interval=0.1)
