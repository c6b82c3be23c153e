"""The receivers the ingest benchmark measures, each started fresh with empty
storage for every measurement: our listener (PostgreSQL, a Celery worker +
beat), dcmtk's storescp and Orthanc; sending with dcmtk's storescu, and the
listener's checks (byte-identical files, ready latency, log problems)."""

# ruff: noqa: S603
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bench.database import Database
from bench.ingest.workload import StudySet, Workload, dataset_part
from bench.servers import app_env, celery_worker_argv, dicom_listener_argv
from bench.supervise import HOST, PROCS, free_port, wait_until

# dcmtk by full path: pynetdicom installs its own storescu/echoscu into the venv.
STORESCU = "/usr/bin/storescu"
STORESCP = "/usr/bin/storescp"
ECHOSCU = "/usr/bin/echoscu"
ORTHANC = "/usr/sbin/Orthanc"

CALLING_AE = "STMARY_CT"  # a demo facility's AE title (seed_demo)
CALLED_AE = "TELERAD"


# --- sending ---------------------------------------------------------------------


class SendError(RuntimeError):
    """A sender (storescu) failed: the measurement of that cell is void."""


def echo(port: int, timeout: float = 5) -> bool:
    try:
        result = subprocess.run(
            [ECHOSCU, "-aet", CALLING_AE, "-aec", CALLED_AE, "-to", "2", HOST, str(port)],
            env={**os.environ, "TCP_NODELAY": "1"},
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


def send(
    port: int,
    studies: Sequence[StudySet],
    logs: Path,
    label: str,
    *,
    timeout: float,
    on_started: Callable[[], None] | None = None,
) -> float:
    """Send each study over its own association, in parallel; wall seconds."""
    env = {**os.environ, "TCP_NODELAY": "1"}
    logs.mkdir(parents=True, exist_ok=True)
    procs: list[tuple[subprocess.Popen[bytes], Path, IO[bytes]]] = []
    start = time.perf_counter()
    try:
        for i, study in enumerate(studies):
            log_path = logs / f"storescu-{label}-{i + 1}.log"
            out = log_path.open("wb")
            argv = [
                STORESCU, "-aet", CALLING_AE, "-aec", CALLED_AE, "+sd",
                HOST, str(port), str(study.folder),
            ]  # fmt: skip
            proc = subprocess.Popen(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
            PROCS.adopt(proc)
            procs.append((proc, log_path, out))
        if on_started is not None:
            on_started()
        deadline = start + timeout
        for proc, _, _ in procs:
            remaining = deadline - time.perf_counter()
            try:
                proc.wait(timeout=max(remaining, 0.01))
            except subprocess.TimeoutExpired as exc:
                raise SendError(f"storescu did not finish within {timeout:g} s") from exc
        elapsed = time.perf_counter() - start
    finally:
        for proc, _, stream in procs:
            if proc.poll() is None:
                PROCS.stop(proc, timeout=2)
            else:
                PROCS.forget(proc)
            stream.close()
    for proc, log_path, _ in procs:
        text = log_path.read_text(errors="replace")
        errors = [line for line in text.splitlines() if line.startswith(("E:", "F:"))]
        if proc.returncode != 0 or errors:
            detail = "; ".join(errors[:3]) or text.strip()[-300:]
            raise SendError(f"storescu exited {proc.returncode}: {detail}")
    return elapsed


# --- listener association spread (--processes N) -----------------------------------


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            kids.append(int(entry.name))
    return kids


def _tcp_sockets(port: int, state: str) -> dict[str, int]:
    """inode -> remote port of IPv4 sockets on local ``port`` in ``state`` (hex)."""
    found = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            parts = line.split()
            local, remote, st, inode = parts[1], parts[2], parts[3], parts[9]
            if int(local.split(":")[1], 16) == port and st == state:
                found[inode] = int(remote.split(":")[1], 16)
    return found


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    return inodes


def listening_sockets(port: int) -> int:
    return len(_tcp_sockets(port, "0A"))


class SpreadSampler:
    """Which listener process served which association (polls /proc)."""

    def __init__(self, parent_pid: int, port: int) -> None:
        self.parent_pid, self.port = parent_pid, port
        self.seen: dict[int, set[int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        # Only the processes that hold a listening socket on the port serve.
        listening = _tcp_sockets(self.port, "0A")
        self.pids = [
            pid
            for pid in _children(self.parent_pid) or [self.parent_pid]
            if _socket_inodes(pid) & listening.keys()
        ]
        self.seen = {pid: set() for pid in self.pids}
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            established = _tcp_sockets(self.port, "01")
            for pid in self.pids:
                for inode in _socket_inodes(pid) & established.keys():
                    self.seen[pid].add(established[inode])
            self._stop.wait(0.1)

    def stop(self) -> list[int]:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        return sorted((len(v) for v in self.seen.values()), reverse=True)


# --- measurements ------------------------------------------------------------------


@dataclass
class Measurement:
    peer: str
    associations: int
    instances: int
    seconds: float | None = None
    stored: int | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float | None:
        if self.seconds is None or self.error:
            return None
        return self.instances / self.seconds


@dataclass
class ListenerChecks:
    compared: int = 0
    mismatches: int = 0
    missing: int = 0
    extra: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds after the quiet period
    not_ready: int = 0
    log_problems: dict[str, int] = field(default_factory=dict)
    worker_problems: dict[str, int] = field(default_factory=dict)


_PROBLEM = re.compile(
    r"\b(ERROR|CRITICAL|WARNING|Traceback|Exception|exited|restarting)\b|Error: |^E: "
)


def _blur(line: str) -> str:
    key = re.sub(r"^\d{4}-\d\d-\d\d[ T][\d:,.]+\s*", "", line.strip())  # Django logging
    key = re.sub(r"^\[\d{4}-\d\d-\d\d [\d:,]+: ", "[", key)  # Celery logging
    key = re.sub(r"\b\d[\d.]{8,}\b", "<uid>", key)
    key = re.sub(r"\b(pid|port|process) \d+", r"\1 <n>", key)
    key = re.sub(r" at 0x[0-9a-f]+", "", key)
    return key[:300]


def scan_log(path: Path, into: dict[str, int]) -> None:
    """Count problem lines by message (timestamps and ids blurred); a traceback
    counts once, as its first and last lines."""
    if not path.exists():
        return
    lines = path.read_text(errors="replace").splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if line.startswith("Traceback (most recent call last):"):
            while i < len(lines) and (lines[i].startswith((" ", "\t")) or not lines[i].strip()):
                i += 1
            last = lines[i] if i < len(lines) else "?"
            i += 1
            key = _blur(f"Traceback ... {last}")
        elif _PROBLEM.search(line):
            key = _blur(line)
        else:
            continue
        into[key] = into.get(key, 0) + 1


@dataclass
class Context:
    args: argparse.Namespace
    work: Path
    workload: Workload
    db: Database
    checks: ListenerChecks = field(default_factory=ListenerChecks)

    def dir(self, label: str) -> Path:
        """A new, empty folder for one measurement (fresh storage every time)."""
        n = 1
        while (path := self.work / "runs" / f"{label}-{n}").exists():
            n += 1
        path.mkdir(parents=True)
        return path


def listener_env(ctx: Context, run_dir: Path) -> dict[str, str]:
    """The listener's and the worker's environment for one measurement."""
    return app_env(
        database_url=ctx.db.url(),
        redis_url=ctx.args.redis_url,
        var_dir=str(run_dir / "var"),
        DICOM_STORAGE_ROOT=str(run_dir / "storage"),
        DICOM_MAX_PDU_BYTES=str(ctx.args.max_pdu),
        STUDY_QUIET_SECONDS=f"{ctx.args.quiet_seconds:g}",
        STUDY_READY_SWEEP_SECONDS=f"{ctx.args.sweep_seconds:g}",
        # The demo network's alerts would otherwise print e-mails into the worker log.
        EMAIL_BACKEND="django.core.mail.backends.dummy.EmailBackend",
        TCP_NODELAY="1",
    )


def prepare_template(ctx: Context) -> None:
    """Migrate and seed a template once; each listener run gets a copy of it."""
    ctx.db.prepare_template(
        listener_env(ctx, ctx.dir("setup")), [["migrate", "--noinput"], ["seed_demo"]]
    )


def study_rows(db: Database, uids: Sequence[str]) -> dict[str, tuple[Any, Any, Any, str]]:
    """Study UID -> (received_at, last_instance_at, ready_at, status)."""
    with db.connect(autocommit=False) as conn:
        rows = conn.execute(
            "SELECT study_instance_uid, received_at, last_instance_at, ready_at, status "
            "FROM studies_study WHERE study_instance_uid = ANY(%s)",
            (list(uids),),
        ).fetchall()
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}


def instance_count(db: Database, uids: Sequence[str]) -> int:
    with db.connect(autocommit=False) as conn:
        row = conn.execute(
            "SELECT count(*) FROM studies_instance i "
            "JOIN studies_series s ON s.id = i.series_id "
            "JOIN studies_study st ON st.id = s.study_id "
            "WHERE st.study_instance_uid = ANY(%s)",
            (list(uids),),
        ).fetchone()
    return int(row[0]) if row else 0


def wait_ready(ctx: Context, uids: Sequence[str], timeout: float) -> dict[str, Any]:
    rows: dict[str, Any] = {}

    def all_ready() -> bool:
        nonlocal rows
        rows = study_rows(ctx.db, uids)
        return len(rows) == len(uids) and all(r[2] is not None for r in rows.values())

    with contextlib.suppress(TimeoutError):
        wait_until(all_ready, timeout=timeout, what="studies ready", interval=0.25)
    return rows


def measure_listener(ctx: Context, processes: int, studies: Sequence[StudySet]) -> Measurement:
    label = f"listener-p{processes}-a{len(studies)}"
    m = Measurement(f"listener-p{processes}", len(studies), sum(s.count for s in studies))
    run_dir = ctx.dir(label)
    ctx.db.copy_template()
    env = listener_env(ctx, run_dir)
    port = free_port()
    worker = listener = None
    try:
        worker = PROCS.start(
            celery_worker_argv(
                hostname=f"bench-ingest-{os.getpid()}@%h", loglevel="WARNING", beat=True
            ),
            env=env,
            log_path=run_dir / "worker.log",
        )
        listener = PROCS.start(
            dicom_listener_argv(port=port, processes=processes),
            env=env,
            log_path=run_dir / "listener.log",
        )
        proc = listener

        def listening() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"listener exited {proc.returncode}")
            return listening_sockets(port) >= processes

        # Up to 20 s for every process to bind; go on with fewer (and say so)
        # so the figure shows what the command really does.
        with contextlib.suppress(TimeoutError):
            wait_until(listening, timeout=20, what=f"{processes} listener socket(s)")
        bound = listening_sockets(port)
        wait_until(lambda: echo(port), timeout=30, what="C-ECHO from the listener")
        if bound < processes:
            m.notes.append(
                f"only {bound} of {processes} listener processes had bound the port after "
                "20 s (the others keep exiting and being restarted; see the listener log)"
            )

        # Warm-up; its study turning ready also shows the worker and beat are up.
        send(port, [ctx.workload.warmup], run_dir, "warmup", timeout=120)
        warm = wait_ready(ctx, [ctx.workload.warmup.study_uid], timeout=90)
        if not warm or next(iter(warm.values()))[2] is None:
            m.notes.append("warm-up study not marked ready within 90 s (worker/beat?)")

        sampler = SpreadSampler(listener.pid, port) if processes > 1 else None
        m.seconds = send(
            port,
            studies,
            run_dir,
            "measured",
            timeout=ctx.args.send_timeout,
            on_started=sampler.start if sampler else None,
        )
        if sampler is not None:
            spread = sampler.stop()
            m.notes.append(
                f"associations per serving listener process ({len(spread)} serving): "
                + "/".join(str(n) for n in spread)
            )

        uids = [s.study_uid for s in studies]
        m.stored = instance_count(ctx.db, uids)
        rows = wait_ready(ctx, uids, timeout=ctx.args.quiet_seconds + 30)
        quiet = dt.timedelta(seconds=ctx.args.quiet_seconds)
        for uid in uids:
            row = rows.get(uid)
            if row is None or row[2] is None:
                ctx.checks.not_ready += 1
                continue
            ctx.checks.latencies.append((row[2] - (row[1] + quiet)).total_seconds())
    except Exception as exc:
        m.error = f"{type(exc).__name__}: {exc}"
    finally:
        for p in (listener, worker):
            if p is not None:
                PROCS.stop(p)
    scan_log(run_dir / "listener.log", ctx.checks.log_problems)
    scan_log(run_dir / "worker.log", ctx.checks.worker_problems)
    if m.error is None:
        files = verify_listener_files(ctx, run_dir / "storage", studies)
        if files != m.instances:
            m.notes.append(f"{files} files stored for {m.instances} sent")
        if m.stored != m.instances:
            m.error = f"{m.stored} instance rows for {m.instances} sent"
    return m


def verify_listener_files(ctx: Context, storage: Path, studies: Sequence[StudySet]) -> int:
    """Compare each stored file with the one sent, after the file meta; files stored."""
    stored_files = 0
    for study in studies:
        stored: dict[str, Path] = {}
        for path in (storage / "studies" / study.study_uid).glob("*/*.dcm"):
            # Stored as <sop>.<first 16 hex digits of its SHA-256>.dcm
            sop, _, digest = path.stem.rpartition(".")
            stored[sop if len(digest) == 16 else path.stem] = path
        stored_files += len(stored)
        ctx.checks.missing += len(study.files.keys() - stored.keys())
        ctx.checks.extra += len(stored.keys() - study.files.keys())
        for sop, sent in study.files.items():
            if sop not in stored:
                continue
            ctx.checks.compared += 1
            if dataset_part(sent.read_bytes()) != dataset_part(stored[sop].read_bytes()):
                ctx.checks.mismatches += 1
    return stored_files


def measure_storescp(ctx: Context, studies: Sequence[StudySet]) -> Measurement:
    label = f"storescp-a{len(studies)}"
    m = Measurement("storescp", len(studies), sum(s.count for s in studies))
    run_dir = ctx.dir(label)
    out = run_dir / "storage"
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = None
    try:
        server = PROCS.start(
            [STORESCP, "--fork", "-aet", CALLED_AE, "-od", str(out), "+B",
             "-pdu", str(min(ctx.args.max_pdu, 131072)), "-dhl", str(port)],
            env={**os.environ, "TCP_NODELAY": "1"},
            log_path=run_dir / "storescp.log",
        )  # fmt: skip
        wait_until(lambda: echo(port), timeout=30, what="C-ECHO from storescp", interval=0.2)
        send(port, [ctx.workload.warmup], run_dir, "warmup", timeout=120)
        m.seconds = send(port, studies, run_dir, "measured", timeout=ctx.args.send_timeout)
        wanted = {sop for s in studies for sop in s.files}
        # storescp names files <modality>.<SOP instance UID>
        m.stored = sum(1 for p in out.iterdir() if p.name.split(".", 1)[-1] in wanted)
        if m.stored != m.instances:
            m.error = f"{m.stored} files stored for {m.instances} sent"
    except Exception as exc:
        m.error = f"{type(exc).__name__}: {exc}"
    finally:
        if server is not None:
            PROCS.stop(server)
    return m


def orthanc_config(run_dir: Path, dicom_port: int, http_port: int, max_pdu: int) -> Path:
    config = {
        "Name": "bench-ingest",
        "StorageDirectory": str(run_dir / "storage"),
        "IndexDirectory": str(run_dir / "index"),
        "StorageCompression": False,
        "Plugins": [],
        "LuaScripts": [],
        "HttpServerEnabled": True,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomServerEnabled": True,
        "DicomAet": CALLED_AE,
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True,
        "DicomCheckModalityHost": False,
        "DicomModalities": {"sender": [CALLING_AE, HOST, 104]},
        "MaximumPduLength": max_pdu,
        "SaveJobs": False,
    }
    path = run_dir / "orthanc.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def orthanc_get(http_port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://{HOST}:{http_port}{path}", timeout=5) as response:
        return json.loads(response.read())


def measure_orthanc(ctx: Context, studies: Sequence[StudySet]) -> Measurement:
    label = f"orthanc-a{len(studies)}"
    m = Measurement("orthanc", len(studies), sum(s.count for s in studies))
    run_dir = ctx.dir(label)
    dicom_port, http_port = free_port(), free_port()
    while http_port == dicom_port:
        http_port = free_port()
    config = orthanc_config(run_dir, dicom_port, http_port, min(ctx.args.max_pdu, 131072))
    server = None
    try:
        server = PROCS.start(
            [ORTHANC, str(config)],
            env={**os.environ, "TCP_NODELAY": "1"},
            log_path=run_dir / "orthanc.log",
        )
        proc = server

        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited {proc.returncode}")
            return echo(dicom_port)

        wait_until(up, timeout=60, what="C-ECHO from Orthanc", interval=0.2)
        send(dicom_port, [ctx.workload.warmup], run_dir, "warmup", timeout=120)
        m.seconds = send(dicom_port, studies, run_dir, "measured", timeout=ctx.args.send_timeout)
        total = int(orthanc_get(http_port, "/statistics")["CountInstances"])
        m.stored = total - ctx.workload.warmup.count
        if m.stored != m.instances:
            m.error = f"{m.stored} instances stored for {m.instances} sent"
    except Exception as exc:
        m.error = f"{type(exc).__name__}: {exc}"
    finally:
        if server is not None:
            PROCS.stop(server)
    return m
