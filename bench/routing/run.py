"""Routing benchmark: decisions/s and latency through the real task path, a raw-SQL
reference, ready -> offered latency under a steady load, the escalation sweep with
a 1,000,000-study table, and a fault test (kill -9 a worker, two sweepers at once).

Run from the repository root:

    .venv/bin/python bench/routing/run.py            # full run, about 20 minutes
    .venv/bin/python bench/routing/run.py --quick    # scaled down, a few minutes

See bench/routing/README.md.  Every process it starts is stopped (process group)
even on failure; the benchmark database is dropped unless ``--keep``.
"""

# ruff: noqa: S311, S603, S607, S608
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import json
import os
import platform
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO), str(HERE)]

SECTION_TITLE = "## Routing (bench/routing)"
INGEST_PATTERN = "bench/ingest/run.py"
UTC = dt.UTC


# --- small helpers -------------------------------------------------------------


def log(message: str) -> None:
    stamp = dt.datetime.now().strftime("%H:%M:%S")  # noqa: DTZ005 - a console timestamp
    print(f"[{stamp}] {message}", flush=True)


def utcnow() -> dt.datetime:
    return dt.datetime.now(UTC)


def pct(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(-(-p * len(ordered) // 100)) - 1))
    return ordered[k]


def summary(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "mean": statistics.fmean(values),
        "p50": pct(values, 50),
        "p95": pct(values, 95),
        "p99": pct(values, 99),
        "max": max(values),
    }


def ms(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x * 1000:.{digits}f} ms"


def wait_until(
    predicate: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.2
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")


def ingest_running() -> list[str]:
    result = subprocess.run(
        ["pgrep", "-f", INGEST_PATTERN], capture_output=True, text=True, check=False
    )
    return [p for p in result.stdout.split() if p and int(p) != os.getpid()]


def wait_for_ingest(max_wait: float) -> float:
    """Wait (polling every 10 s) until the ingest benchmark is not running."""
    start = time.monotonic()
    if not ingest_running():
        return 0.0
    log("bench/ingest/run.py is running: waiting for it to finish (2 cores are shared)")
    while ingest_running():
        if time.monotonic() - start > max_wait:
            raise SystemExit(f"bench/ingest/run.py still running after {max_wait:g} s; giving up")
        time.sleep(10)
    waited = time.monotonic() - start
    log(f"ingest benchmark finished; waited {waited:.0f} s")
    return waited


# --- processes -----------------------------------------------------------------


class Processes:
    """Every process we start, each in its own process group."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen[bytes]] = []

    def start(
        self, argv: Sequence[str], *, env: dict[str, str], log_path: Path
    ) -> subprocess.Popen[bytes]:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                list(argv),
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.running.append(proc)
        return proc

    def kill9(self, proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        if proc in self.running:
            self.running.remove(proc)

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
        """SIGTERM the process group (a warm shutdown), then SIGKILL what is left."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        if proc in self.running:
            self.running.remove(proc)

    def stop_all(self) -> None:
        for proc in list(reversed(self.running)):
            self.stop(proc, timeout=10)


PROCS = Processes()


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


# --- environment ---------------------------------------------------------------


class Ctx:
    """What every phase needs."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.base_url = args.database_url.rstrip("/")
        self.db_url = f"{self.base_url}/{args.db_name}"
        self.redis_url = ""
        self.results: dict[str, Any] = {"notes": [], "warnings": []}
        self.net: Any = None
        self.maker: Any = None
        self.conn: Any = None  # psycopg autocommit connection for bulk work and polling

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "teleradiology.settings",
            "DATABASE_URL": self.db_url,
            "REDIS_URL": self.redis_url,
            "VAR_DIR": str(self.work / "var"),
            "DEBUG": "false",  # as deployed: no per-query bookkeeping
            "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }

    def check_ingest(self, phase: str) -> None:
        if ingest_running():
            msg = f"bench/ingest/run.py was running during the {phase} phase (shared CPU)"
            log("WARNING: " + msg)
            self.results["warnings"].append(msg)


def pick_redis_db(base: str, wanted: int | None) -> str:
    import redis

    base = base.rstrip("/")
    if re.search(r"/\d+$", base):
        base = base.rsplit("/", 1)[0]
    candidates = [wanted] if wanted is not None else [n for n in range(2, 16) if n != 9]
    for n in candidates:
        client = redis.Redis.from_url(f"{base}/{n}")
        if wanted is not None or client.dbsize() == 0:
            client.flushdb()  # ours (empty, or named with --redis-db)
            return f"{base}/{n}"
    raise SystemExit("no empty Redis database in 2..15; name one with --redis-db")


def admin_sql(ctx: Ctx, *statements: str) -> None:
    import psycopg

    with psycopg.connect(f"{ctx.base_url}/postgres", autocommit=True) as conn:
        for s in statements:
            conn.execute(s)


def prepare_database(ctx: Ctx) -> None:
    name = ctx.args.db_name
    log(f"creating database {name} and migrating")
    admin_sql(ctx, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=REPO,
        env=ctx.env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"migrate failed:\n{result.stderr[-3000:]}")


def setup_django(ctx: Ctx) -> None:
    os.environ.update(ctx.env())
    import django

    django.setup()
    import psycopg

    ctx.conn = psycopg.connect(ctx.db_url, autocommit=True)


def celery_worker(
    ctx: Ctx,
    name: str,
    queues: str,
    *,
    pool: str = "solo",
    concurrency: int = 1,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], Path]:
    log_path = ctx.work / "logs" / f"{name}.log"
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "teleradiology",
        "worker",
        "--loglevel=INFO",
        f"--pool={pool}",
        f"--concurrency={concurrency}",
        "-Q",
        queues,
        f"--hostname={name}@%h",
    ]
    proc = PROCS.start(argv, env=env or ctx.env(), log_path=log_path)
    return proc, log_path


def wait_log(path: Path, pattern: str, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    rx = re.compile(pattern)

    def seen() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{path.name} exited early:\n{path.read_text()[-3000:]}")
        return path.exists() and bool(rx.search(path.read_text(errors="replace")))

    wait_until(seen, timeout=timeout, what=f"{pattern!r} in {path.name}", interval=0.1)


def log_size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def log_problems(path: Path, upto: int | None = None) -> dict[str, Any]:
    """Errors in a log, up to ``upto`` bytes (what was written before we stopped it)."""
    text = path.read_bytes()[:upto].decode(errors="replace") if path.exists() else ""
    errors = [
        line
        for line in text.splitlines()
        if re.search(r"\b(ERROR|CRITICAL)\b|Traceback|raised unexpected|Retry in", line)
    ]
    return {"count": len(errors), "examples": errors[:5]}


def cpu_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the whole machine, from /proc/stat."""
    with contextlib.suppress(OSError):
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields) - idle, sum(fields)
    return 0, 0


def cpu_busy_since(start: tuple[int, int]) -> float | None:
    busy, total = cpu_jiffies()
    return (busy - start[0]) / (total - start[1]) if total > start[1] else None


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux /proc)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return None


def pg_sessions(ctx: Ctx) -> int:
    """Sessions opened on the benchmark database so far (PostgreSQL 14+)."""
    row = ctx.conn.execute(
        "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


TASK_OK_RX = re.compile(
    r"Task routing\.route_stud(?:y|ies)\[([0-9a-f-]+)\] succeeded in ([0-9.e-]+)s"
)
TASK_RECEIVED_RX = re.compile(r"Task routing\.route_stud(?:y|ies)\[([0-9a-f-]+)\] received")


def task_runtimes(path: Path) -> list[float]:
    text = path.read_text(errors="replace") if path.exists() else ""
    return [float(m.group(2)) for m in TASK_OK_RX.finditer(text)]


TASK_RESULT_RX = re.compile(
    r"Task routing\.route_stud(?:y|ies)\[[0-9a-f-]+\] succeeded in ([0-9.e-]+)s: .*'routed': (\d+)"
)


def task_runtimes_by_kind(path: Path) -> tuple[list[float], list[float], list[int]]:
    """Runtimes of the tasks that routed studies (a batch: their own study and
    others waiting, or others only when their own was decided already) and of those
    that routed none; and the batch sizes (from each task's result)."""
    text = path.read_text(errors="replace") if path.exists() else ""
    routed: list[float] = []
    noop: list[float] = []
    sizes: list[int] = []
    for m in TASK_RESULT_RX.finditer(text):
        n = int(m.group(2))
        (routed if n else noop).append(float(m.group(1)))
        if n:
            sizes.append(n)
    return routed, noop, sizes


# --- data ------------------------------------------------------------------------


def max_study_id(ctx: Ctx) -> int:
    return int(ctx.conn.execute("SELECT coalesce(max(id), 0) FROM studies_study").fetchone()[0])


def insert_studies(ctx: Ctx, rows: Any) -> list[int]:
    """COPY study rows; returns their ids (only this process inserts meanwhile)."""
    from netgen import copy_models

    from studies.models import Study

    before = max_study_id(ctx)
    copy_models(ctx.conn, Study, rows)
    ids = [
        r[0]
        for r in ctx.conn.execute(
            "SELECT id FROM studies_study WHERE id > %s ORDER BY id", (before,)
        ).fetchall()
    ]
    return ids


def ready_rows(ctx: Ctx, n: int, prefix: str) -> list[dict[str, Any]]:
    now = utcnow()
    return [
        ctx.maker.row(
            prefix=prefix,
            status="ready",
            at=now - dt.timedelta(seconds=30),
            last_instance_at=now - dt.timedelta(seconds=12),
            ready_at=now,
        )
        for _ in range(n)
    ]


def on_shift_readers(ctx: Ctx, at: dt.datetime) -> list[int]:
    return [
        r[0]
        for r in ctx.conn.execute(
            "SELECT DISTINCT radiologist_id FROM network_shift "
            "WHERE starts_at <= %s AND ends_at > %s",
            (at, at),
        ).fetchall()
    ]


def build_network(ctx: Ctx) -> None:
    from netgen import StudyMaker, generate_network

    args = ctx.args
    t0 = time.monotonic()
    now = utcnow()
    log(f"generating the network: {args.radiologists} radiologists, {args.facilities} facilities")
    net = generate_network(
        seed=args.seed, radiologists=args.radiologists, facilities=args.facilities, now=now
    )
    ctx.net = net
    ctx.maker = StudyMaker(net, args.seed + 1)

    # Background load: claimed / preliminary studies held by readers who are on
    # shift (so the workload caps matter), claimed within the last 6 hours.
    rng = random.Random(args.seed + 2)
    on_shift = on_shift_readers(ctx, now)
    n_claims = int(len(on_shift) * args.claims_per_reader)
    rows = []
    for _ in range(n_claims):
        reader = rng.choice(on_shift)
        claimed = now - dt.timedelta(minutes=rng.uniform(1, 360))
        prelim = rng.random() < 0.2
        rows.append(
            ctx.maker.row(
                prefix="1",
                status="preliminary" if prelim else "claimed",
                at=claimed - dt.timedelta(minutes=rng.uniform(5, 60)),
                ready_at=claimed - dt.timedelta(minutes=4),
                offered_at=claimed - dt.timedelta(minutes=3),
                claimed_at=claimed,
                claim_activity_at=now,
                preliminary_at=(claimed + dt.timedelta(minutes=10)) if prelim else None,
                assigned_radiologist_id=reader,
            )
        )
    ids = insert_studies(ctx, rows)
    add_routing_rows(ctx, ids[0] if ids else 0, ids[-1] if ids else -1, decided="offered_at")
    ctx.conn.execute("VACUUM ANALYZE")
    counts = dict(net.counts)
    counts["background claimed/preliminary studies"] = len(ids)
    counts["readers on shift at generation"] = len(on_shift)
    ctx.results["network"] = {
        "counts": counts,
        "seconds": time.monotonic() - t0,
        "generated_at": now.isoformat(),
    }
    log(f"network ready in {time.monotonic() - t0:.1f} s: {counts}")


def add_routing_rows(ctx: Ctx, first: int, last: int, *, decided: str) -> None:
    """StudyRouting rows (no timer) for studies routed long ago, as the app leaves them."""
    ctx.conn.execute(
        f"""INSERT INTO routing_studyrouting
              (study_id, rule_id, tier, relative_value, next_escalation_at, unroutable_at,
               unroutable_reason, decided_at)
            SELECT id, %s, (id %% 3), 1 + (id %% 5) * 0.25, NULL, NULL, '',
                   coalesce({decided}, received_at)
            FROM studies_study WHERE id BETWEEN %s AND %s""",
        (ctx.net.default_rule_id, first, last),
    )


def retire(ctx: Ctx, ids: Sequence[int], label: str) -> None:
    """Take a phase's studies off the live worklist (as if read): offered -> final,
    still-ready (unroutable) -> cancelled, timers cleared.  Offers stay open, as the
    app leaves them after a claim."""
    if not ids:
        return
    ids = list(ids)
    now = utcnow()
    c = ctx.conn
    c.execute(
        "UPDATE studies_study SET status = 'final', finalized_at = %s, updated_at = %s "
        "WHERE id = ANY(%s) AND status = 'offered'",
        (now, now, ids),
    )
    c.execute(
        "UPDATE studies_study SET status = 'cancelled', cancelled_at = %s, updated_at = %s "
        "WHERE id = ANY(%s) AND status IN ('ready', 'receiving')",
        (now, now, ids),
    )
    c.execute(
        "UPDATE routing_studyrouting SET next_escalation_at = NULL WHERE study_id = ANY(%s)", (ids,)
    )
    log(f"retired the {len(ids)} studies of the {label} phase (final / cancelled)")


# --- phase 1: decisions/s through the task path -----------------------------------


def decided_count(ctx: Ctx, first: int, last: int) -> int:
    return int(
        ctx.conn.execute(
            "SELECT count(*) FROM routing_studyrouting WHERE study_id BETWEEN %s AND %s",
            (first, last),
        ).fetchone()[0]
    )


def enqueue(ids: Sequence[int], queue: str) -> tuple[float, dict[str, int]]:
    from routing.tasks import route_study
    from teleradiology.celery import app

    t0 = time.perf_counter()
    task_ids: dict[str, int] = {}
    with app.producer_or_acquire() as producer:
        for sid in ids:
            res = route_study.apply_async(args=(sid,), queue=queue, producer=producer)
            task_ids[res.id] = sid
    return time.perf_counter() - t0, task_ids


def enqueue_as_ingest(ctx: Ctx, ids: Sequence[int], queue: str) -> tuple[float, int]:
    """Enqueue routing as the ready sweep does (``teleradiology.queue.enqueue_in_batches``:
    most urgent first, one ``routing.route_studies`` message per batch)."""
    from django.conf import settings

    from teleradiology.queue import enqueue_in_batches

    t0 = time.perf_counter()
    first, last = min(ids), max(ids)
    urgent_first = [
        r[0]
        for r in ctx.conn.execute(
            "SELECT id FROM studies_study WHERE id BETWEEN %s AND %s "
            "ORDER BY priority, sla_due_at, id",
            (first, last),
        ).fetchall()
    ]
    messages = enqueue_in_batches(
        "routing.route_studies", urgent_first, size=settings.ROUTING_BATCH_SIZE, queue=queue
    )
    return time.perf_counter() - t0, messages


def phase_rate(ctx: Ctx) -> list[int]:
    args = ctx.args
    ctx.check_ingest("decision-rate")
    n = args.studies
    log(f"phase 1: {n} ready studies routed by one worker process (--pool=solo)")
    ids = insert_studies(ctx, ready_rows(ctx, n, "2"))
    ctx.conn.execute("ANALYZE studies_study")
    queue = f"bench-routing-{uuid.uuid4().hex[:8]}"
    enqueue_s, messages = enqueue_as_ingest(ctx, ids, queue)
    log(
        f"enqueued {messages} routing.route_studies messages for {n} studies in "
        f"{enqueue_s:.1f} s; starting the worker"
    )
    proc, log_path = celery_worker(ctx, "rate", queue)
    first, last = ids[0], ids[-1]
    try:
        wait_log(log_path, r"\bready\.", 60, proc)
        t_ready = time.monotonic()
        cpu0, sessions0 = cpu_jiffies(), pg_sessions(ctx)
        deadline = t_ready + (args.rate_timeout or max(600.0, n / 5))
        progress_at = t_ready
        done = 0
        while time.monotonic() < deadline:
            done = decided_count(ctx, first, last)
            if done >= n:
                break
            if proc.poll() is not None:
                raise RuntimeError("the worker exited during the decision-rate phase")
            if time.monotonic() - progress_at > 15:
                progress_at = time.monotonic()
                log(f"  {done}/{n} decided ({done / (progress_at - t_ready):.0f}/s)")
            time.sleep(0.25)
        t_done = time.monotonic()
        # A task routes a batch of waiting studies with its own; the other studies'
        # messages are still queued and the worker must consume them all: the
        # headline rate is over the time to drain the whole queue.
        drained = len(task_runtimes(log_path))
        while drained < messages and time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError("the worker exited during the decision-rate phase")
            time.sleep(0.25)
            drained = len(task_runtimes(log_path))
        t_drained = time.monotonic()
        cpu_busy = cpu_busy_since(cpu0)
        sessions = pg_sessions(ctx) - sessions0
        worker_cpu = process_cpu_seconds(proc.pid)
    finally:
        PROCS.stop(proc)
    wall = t_drained - t_ready
    wall_decided = t_done - t_ready
    row = ctx.conn.execute(
        "SELECT min(decided_at), max(decided_at) FROM routing_studyrouting "
        "WHERE study_id BETWEEN %s AND %s",
        (first, last),
    ).fetchone()
    span = (row[1] - row[0]).total_seconds() if row[0] else 0.0
    runtimes = task_runtimes(log_path)
    batch_runtimes, noop_runtimes, batch_sizes = task_runtimes_by_kind(log_path)
    res: dict[str, Any] = {
        "studies": n,
        "decided": done,
        "complete": done >= n,
        "wall_seconds": wall,
        "rate_wall": done / wall if wall else None,
        "tasks_drained": drained,
        "messages": messages,
        "batch_size": ctx.env().get("ROUTING_BATCH_SIZE", "32 (default)"),
        "wall_seconds_decided": wall_decided,
        "rate_decided": done / wall_decided if wall_decided else None,
        "rate_db_span": (done - 1) / span if span else None,
        "enqueue_seconds": enqueue_s,
        "cpu_busy": cpu_busy,
        "worker_cpu_share": worker_cpu / wall if worker_cpu is not None and wall else None,
        "pg_sessions": sessions,
        "task_runtime": summary(runtimes),
        "batch_runtime": summary(batch_runtimes),
        "noop_runtime": summary(noop_runtimes),
        "batch_size_mean": statistics.fmean(batch_sizes) if batch_sizes else None,
        "per_decision_in_batch": (sum(batch_runtimes) / done if batch_runtimes and done else None),
        "runtime_first_tenth": statistics.fmean(runtimes[: max(1, len(runtimes) // 10)])
        if runtimes
        else None,
        "runtime_last_tenth": statistics.fmean(runtimes[-max(1, len(runtimes) // 10) :])
        if runtimes
        else None,
        "worker_log_problems": log_problems(log_path),
    }
    if done < n:
        ctx.results["warnings"].append(
            f"the decision-rate phase timed out: {done} of {n} studies decided; the rate is "
            "over those"
        )
    res.update(decision_stats(ctx, first, last))
    ctx.results["rate"] = res
    log(
        f"phase 1: {done}/{n} decided in {wall:.1f} s -> {res['rate_wall']:.1f} decisions/s; "
        f"task runtime p50 {ms(res['task_runtime'].get('p50'))} "
        f"p99 {ms(res['task_runtime'].get('p99'))}"
    )
    return ids


def decision_stats(ctx: Ctx, first: int, last: int) -> dict[str, Any]:
    c = ctx.conn
    outcomes = dict(
        c.execute(
            "SELECT outcome || ' tier ' || tier, count(*) FROM routing_routingdecision "
            "WHERE study_id BETWEEN %s AND %s GROUP BY 1 ORDER BY 1",
            (first, last),
        ).fetchall()
    )
    row = c.execute(
        "SELECT avg(jsonb_array_length(verdicts)), max(jsonb_array_length(verdicts)), "
        "avg(jsonb_array_length(offered_to)) FILTER (WHERE outcome = 'offered'), "
        "avg(pg_column_size(verdicts)), max(pg_column_size(verdicts)), "
        "sum(pg_column_size(verdicts)) FROM routing_routingdecision "
        "WHERE study_id BETWEEN %s AND %s",
        (first, last),
    ).fetchone()
    reasons = c.execute(
        "SELECT left(regexp_replace(reason, '[0-9]+', 'N', 'g'), 110), count(*) "
        "FROM routing_routingdecision "
        "WHERE study_id BETWEEN %s AND %s AND outcome = 'unroutable' "
        "GROUP BY 1 ORDER BY 2 DESC LIMIT 4",
        (first, last),
    ).fetchall()
    return {
        "outcomes": outcomes,
        "verdicts_per_decision_mean": float(row[0] or 0),
        "verdicts_per_decision_max": int(row[1] or 0),
        "offered_to_mean": float(row[2] or 0),
        "verdicts_bytes_mean": float(row[3] or 0),
        "verdicts_bytes_max": int(row[4] or 0),
        "verdicts_bytes_total": int(row[5] or 0),
        "unroutable_reasons": [[r, n] for r, n in reasons],
    }


# --- phase 2: the raw-SQL reference --------------------------------------------------


def phase_raw(ctx: Ctx, ids: Sequence[int], key: str, *, jit_off: bool = False) -> None:
    import psycopg
    from rawsql import RawRouter

    ctx.check_ingest("raw-SQL")
    ids = list(ids)
    decisions = {}
    for sid, created, outcome, offered in ctx.conn.execute(
        "SELECT DISTINCT ON (study_id) study_id, created_at, outcome, offered_to "
        "FROM routing_routingdecision WHERE study_id = ANY(%s) ORDER BY study_id, id",
        (ids,),
    ):
        decisions[sid] = (created, outcome, offered)
    ids = [i for i in ids if i in decisions]
    log(f"raw-SQL reference over {len(ids)} studies (same data, each at its decision time)")
    with psycopg.connect(ctx.db_url, autocommit=True) as conn:
        if jit_off:
            conn.execute("SET jit = off")
        router = RawRouter(conn)
        studies = RawRouter.load_studies(conn, ids)
        for sid in ids[:50]:  # warm-up (and server-side prepare), not counted
            router.eligible(sid, studies[sid], decisions[sid][0])
        out: dict[int, list[int]] = {}
        t0 = time.perf_counter()
        for sid in ids:
            out[sid] = router.eligible(sid, studies[sid], decisions[sid][0])[1]
        elapsed = time.perf_counter() - t0
    same = 0
    mismatches: list[Any] = []
    for sid in ids:
        _, outcome, offered = decisions[sid]
        app_ids = list(offered) if outcome == "offered" else []
        if app_ids == out[sid]:
            same += 1
        elif len(mismatches) < 5:
            mismatches.append({"study": sid, "app": app_ids[:8], "raw": out[sid][:8]})
    res = {
        "studies": len(ids),
        "seconds": elapsed,
        "rate": len(ids) / elapsed if elapsed else None,
        "agree": same,
        "disagree": len(ids) - same,
        "mismatch_examples": mismatches,
    }
    ctx.results[key] = res
    log(f"raw SQL: {res['rate']:.0f} decisions/s; agrees with the app on {same}/{len(ids)} studies")


# --- phase 3: latency of one decision, in-process -----------------------------------


PROFILE_TARGETS = {
    # label: (file suffix, function name)
    "study_route, total": ("routing/services.py", "study_route"),
    "selectors.candidate_facts (readers + prefetches, model instances)": (
        "routing/selectors.py",
        "candidate_facts",
    ),
    "eligibility.decide (pure verdicts and ranking)": ("routing/eligibility.py", "decide"),
    "eligibility.judge (the policy's checks, per reader)": ("routing/eligibility.py", "judge"),
    "Verdict.as_dict (every verdict to JSON-ready dicts)": ("routing/eligibility.py", "as_dict"),
    "studies.services.study_transition (+ transition and audit rows)": (
        "studies/services.py",
        "study_transition",
    ),
    "alerts.services.alert_raise (unroutable)": ("alerts/services.py", "alert_raise"),
    "every SQL round trip (CursorWrapper._execute)": ("django/db/backends/utils.py", "_execute"),
    "JSON encoding (json.dumps)": ("json/__init__.py", "dumps"),
}


def route_in_process(ctx: Ctx, ids: Sequence[int], capture: int) -> dict[str, Any]:
    """Time ``study_route`` per study (perf_counter).  Then, on separate studies
    (not timed): capture the SQL of ``capture`` decisions, and profile ``capture``
    more with cProfile, to see where the time goes."""
    import cProfile
    import pstats

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from routing.services import study_route

    ids = list(ids)
    n_timed = len(ids) - 2 * capture
    timed, captured, profiled = (
        ids[:n_timed],
        ids[n_timed : n_timed + capture],
        ids[n_timed + capture :],
    )
    for sid in timed[:20]:  # warm-up: connection, rule cache, imports (not counted)
        study_route(study_id=sid)
    times: dict[int, float] = {}
    for sid in timed[20:]:
        t0 = time.perf_counter()
        study_route(study_id=sid)
        times[sid] = time.perf_counter() - t0
    per_query: dict[str, list[float]] = defaultdict(list)
    examples: dict[str, str] = {}
    n_queries = []
    wall = 0.0
    for sid in captured:
        t0 = time.perf_counter()
        with CaptureQueriesContext(connection) as cq:
            study_route(study_id=sid)
        wall += time.perf_counter() - t0
        n_queries.append(len(cq.captured_queries))
        for q in cq.captured_queries:
            norm = normalize_sql(q["sql"])
            per_query[norm].append(float(q["time"]))
            examples.setdefault(norm, q["sql"])
    sql_total = sum(sum(v) for v in per_query.values())
    top = sorted(per_query.items(), key=lambda kv: -sum(kv[1]))[:6]
    prof = cProfile.Profile()
    prof.enable()
    for sid in profiled:
        study_route(study_id=sid)
    prof.disable()
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    profile = {}
    for label, (suffix, func) in PROFILE_TARGETS.items():
        cum = sum(
            v[3] for (path, _, name), v in stats.items() if name == func and path.endswith(suffix)
        )
        profile[label] = 1000 * cum / max(len(profiled), 1)
    n_prof = max(len(profiled), 1)
    own_time = sorted(stats.items(), key=lambda kv: -kv[1][2])[:12]
    profile_top = [
        {
            "function": f"{short_path(path)}:{line}({name})",
            "own_ms": 1000 * v[2] / n_prof,
            "cum_ms": 1000 * v[3] / n_prof,
            "calls": v[1] / n_prof,
        }
        for (path, line, name), v in own_time
    ]
    # Latency by what the decision was (nearest tier with someone eligible, or none).
    by_kind: dict[str, list[float]] = defaultdict(list)
    kinds = ctx.conn.execute(
        "SELECT DISTINCT ON (study_id) study_id, outcome, tier, jsonb_array_length(verdicts) "
        "FROM routing_routingdecision WHERE study_id = ANY(%s) ORDER BY study_id, id",
        (list(times),),
    ).fetchall()
    verdict_counts: dict[str, list[int]] = defaultdict(list)
    for sid, outcome, tier, nverdicts in kinds:
        kind = f"{outcome} at tier {tier}"
        by_kind[kind].append(times[sid])
        verdict_counts[kind].append(nverdicts)
    top_plan = ""
    if top:
        with contextlib.suppress(Exception):
            top_plan = explain(examples[top[0][0]])
    return {
        "top_plan": top_plan,
        "latency": summary(list(times.values())),
        "by_kind": {
            k: {**summary(v), "verdicts_mean": statistics.fmean(verdict_counts[k])}
            for k, v in sorted(by_kind.items())
        },
        "queries_per_decision": statistics.fmean(n_queries) if n_queries else None,
        "sql_share": sql_total / wall if wall else None,
        "profile_ms_per_decision": profile,
        "profile_top": profile_top,
        "profiled": len(profiled),
        "top_queries": [
            {
                "sql": norm[:160],
                "calls_per_decision": len(v) / max(len(captured), 1),
                "mean_ms": 1000 * statistics.fmean(v),
                "share": sum(v) / (sql_total or 1.0),
                "example": examples[norm],
            }
            for norm, v in top
        ],
    }


def short_path(path: str) -> str:
    """A source path without the machine's folders (package or repository relative)."""
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    found = re.search(r"/lib/python3[.\d]*/(.+)$", path)
    if found:
        return found.group(1)
    with contextlib.suppress(ValueError):
        return str(Path(path).resolve().relative_to(REPO))
    return Path(path).name


def normalize_sql(sql: str) -> str:
    sql = re.sub(r"'[^']*'", "?", sql)
    sql = re.sub(r"\b\d+(\.\d+)?\b", "?", sql)
    sql = re.sub(r"\(\?(, \?)*\)", "(...)", sql)
    return re.sub(r"\s+", " ", sql).strip()


def phase_latency(ctx: Ctx) -> list[int]:
    ctx.check_ingest("latency")
    n = ctx.args.latency_sample
    log(f"phase 3: timing study_route in-process on {n} fresh ready studies")
    ids = insert_studies(ctx, ready_rows(ctx, n + 20 + 2 * ctx.args.capture, "3"))
    res = route_in_process(ctx, ids, ctx.args.capture)
    ctx.results["latency"] = res
    log(
        f"in-process study_route: p50 {ms(res['latency'].get('p50'))} "
        f"p99 {ms(res['latency'].get('p99'))}, {res['queries_per_decision']:.1f} queries/decision"
    )
    return ids


# --- phase 4: ready -> offered at a steady rate ---------------------------------------


def phase_sustained(ctx: Ctx) -> list[int]:
    import psycopg
    from netgen import Columns

    from studies.models import Study

    args = ctx.args
    ctx.check_ingest("ready->offered")
    quiet, sweep = args.quiet_seconds, args.ready_sweep_seconds
    total = int(args.sustained_rate * args.sustained_seconds)
    log(
        f"phase 4: {total} studies arriving at {args.sustained_rate:g}/s for "
        f"{args.sustained_seconds:g} s; worker "
        f"(--concurrency={args.sustained_concurrency}) + beat, "
        f"STUDY_QUIET_SECONDS={quiet:g}, STUDY_READY_SWEEP_SECONDS={sweep:g}"
    )
    # Readers holding background claims keep working on them (the stale-claim sweep
    # would release claims idle for too long).
    ctx.conn.execute(
        "UPDATE studies_study SET claim_activity_at = now() "
        "WHERE status IN ('claimed', 'preliminary')"
    )
    env = ctx.env(STUDY_QUIET_SECONDS=f"{quiet:g}", STUDY_READY_SWEEP_SECONDS=f"{sweep:g}")
    worker, wlog = celery_worker(
        ctx,
        "sustained-worker",
        "celery",
        pool="prefork",
        concurrency=args.sustained_concurrency,
        env=env,
    )
    beat_log = ctx.work / "logs" / "sustained-beat.log"
    beat = PROCS.start(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "teleradiology",
            "beat",
            "--loglevel=INFO",
            "--schedule",
            str(ctx.work / "var" / "beat-schedule"),
        ],
        env=env,
        log_path=beat_log,
    )
    cols = Columns(Study)
    insert_sql = cols.insert_sql()
    inserted: dict[int, dt.datetime] = {}
    observed: dict[int, float] = {}  # study id -> wall time (epoch) first seen decided
    stop = threading.Event()
    errors: list[str] = []

    def poller() -> None:
        with psycopg.connect(ctx.db_url, autocommit=True) as conn:
            while not stop.is_set():
                pending = [i for i in list(inserted) if i not in observed]
                if pending:
                    rows = conn.execute(
                        "SELECT study_id FROM routing_studyrouting WHERE study_id = ANY(%s)",
                        (pending,),
                    ).fetchall()
                    now = time.time()
                    for (sid,) in rows:
                        observed[sid] = now
                stop.wait(args.poll_interval)

    try:
        wait_log(wlog, r"\bready\.", 60, worker)
        wait_log(beat_log, r"beat: Starting", 60, beat)
        time.sleep(1.0)
        poll_thread = threading.Thread(target=poller, daemon=True)
        poll_thread.start()
        with psycopg.connect(ctx.db_url, autocommit=True) as conn:
            t0 = time.monotonic()
            cpu0 = cpu_jiffies()
            for i in range(total):
                target = t0 + i / args.sustained_rate
                delay = target - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                now = utcnow()
                row = ctx.maker.row(prefix="4", status="receiving", at=now)
                fetched = conn.execute(insert_sql, cols.values(row)).fetchone()
                if fetched is None:
                    raise RuntimeError("INSERT ... RETURNING gave no row")
                sid = fetched[0]
                inserted[sid] = now
            t_insert = time.monotonic() - t0
            cpu_busy = cpu_busy_since(cpu0)
        log(
            f"inserted {total} receiving studies in {t_insert:.1f} s "
            f"({total / t_insert:.1f}/s); waiting for every one to be decided"
        )
        try:
            wait_until(
                lambda: len(observed) >= total,
                timeout=args.sustained_drain_timeout,
                what="every sustained study to be decided",
                interval=0.2,
            )
        except TimeoutError as exc:
            errors.append(str(exc))
    finally:
        stop.set()
        sizes = {wlog: log_size(wlog), beat_log: log_size(beat_log)}
        PROCS.stop(beat)
        PROCS.stop(worker)
    ids = sorted(inserted)
    rows = ctx.conn.execute(
        "SELECT s.id, s.status, s.last_instance_at, s.ready_at, s.offered_at, r.unroutable_at "
        "FROM studies_study s LEFT JOIN routing_studyrouting r ON r.study_id = s.id "
        "WHERE s.id = ANY(%s)",
        (ids,),
    ).fetchall()
    to_offer_obs, to_offer_app, quiet_to_offer, to_decided, quiet_to_ready = [], [], [], [], []
    counts: Counter[str] = Counter()
    for sid, status, last_at, ready_at, offered_at, unroutable_at in rows:
        seen = observed.get(sid)
        if status == "offered" and offered_at and ready_at and seen:
            counts["offered"] += 1
            to_offer_obs.append(seen - ready_at.timestamp())
            to_offer_app.append((offered_at - ready_at).total_seconds())
            quiet_to_offer.append(seen - (last_at.timestamp() + quiet))
        elif unroutable_at is not None:
            counts["unroutable"] += 1
        else:
            counts[f"undecided ({status})"] += 1
        if seen and ready_at:
            to_decided.append(seen - ready_at.timestamp())
        if ready_at:
            quiet_to_ready.append(ready_at.timestamp() - (last_at.timestamp() + quiet))
    res = {
        "studies": total,
        "insert_rate": total / t_insert,
        "counts": dict(counts),
        "ready_to_offered_observed": summary(to_offer_obs),
        "ready_to_offered_stamps": summary(to_offer_app),
        "quiet_end_to_offered": summary(quiet_to_offer),
        "ready_to_decided_observed": summary(to_decided),
        "quiet_end_to_ready": summary(quiet_to_ready),
        "cpu_busy": cpu_busy,
        "mark_ready_runtime": summary(
            [
                float(m.group(1))
                for m in re.finditer(
                    r"Task ingest\.studies_mark_ready\[[0-9a-f-]+\] succeeded in ([0-9.e-]+)s",
                    wlog.read_text(errors="replace"),
                )
            ]
        ),
        "route_runtime": summary(task_runtimes(wlog)),
        "errors": errors,
        "worker_log_problems": log_problems(wlog, sizes[wlog]),
        "beat_log_problems": log_problems(beat_log, sizes[beat_log]),
        "quiet_seconds": quiet,
        "ready_sweep_seconds": sweep,
        "concurrency": args.sustained_concurrency,
    }
    ctx.results["sustained"] = res
    o = res["ready_to_offered_observed"]
    log(
        f"ready -> offered (observed): p50 {ms(o.get('p50'))} p99 {ms(o.get('p99'))} "
        f"max {ms(o.get('max'))}; {dict(counts)}"
    )
    return ids


# --- phase 5: fault test -------------------------------------------------------------


def sweeper_main(args: argparse.Namespace) -> int:
    """One sweeper process: routing_sweep() and offers_withdraw_ineligible() in a loop
    from --start-at until the stop file appears (or --max-seconds); one JSON line per
    loop."""
    import django

    django.setup()
    from routing.services import offers_withdraw_ineligible, routing_sweep

    out = Path(args.sweeper_out)
    stop_file = Path(args.sweeper_stop)
    while time.time() < args.sweeper_start_at:
        time.sleep(0.005)
    deadline = time.monotonic() + args.sweeper_max_seconds
    with out.open("a") as fh:
        while not stop_file.exists() and time.monotonic() < deadline:
            t0 = time.perf_counter()
            record: dict[str, Any] = {"at": time.time()}
            try:
                record.update(routing_sweep())
                # Beat runs it every OFFER_ELIGIBILITY_SWEEP_SECONDS; here every loop.
                record["offers_withdrawn"] = offers_withdraw_ineligible()
            except Exception as exc:  # recorded and counted
                record["error"] = f"{type(exc).__name__}: {exc}"
                record["traceback"] = traceback.format_exc()[-2000:]
            record["seconds"] = time.perf_counter() - t0
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            time.sleep(args.sweeper_interval)
    return 0


def phase_fault(ctx: Ctx) -> list[int]:
    args = ctx.args
    ctx.check_ingest("fault-test")
    n = args.fault_studies
    wait_s, accept_s = args.fault_tier_wait, args.fault_accept_timeout
    log(
        f"phase 5: fault test with {n} studies: kill -9 the worker mid-run, then a new worker "
        f"and two sweepers at once (tier wait {wait_s} s, auto-assign accept {accept_s} s, "
        f"CELERY_VISIBILITY_TIMEOUT={args.visibility_timeout})"
    )
    saved = ctx.conn.execute(
        "SELECT id, wait_stat_seconds, wait_urgent_seconds, wait_routine_seconds, "
        "accept_timeout_seconds FROM routing_routingrule"
    ).fetchall()
    ctx.conn.execute(
        "UPDATE routing_routingrule SET wait_stat_seconds = %s, "
        "wait_urgent_seconds = %s, wait_routine_seconds = %s, "
        "accept_timeout_seconds = %s",
        (wait_s, wait_s, wait_s, accept_s),
    )
    ids = insert_studies(ctx, ready_rows(ctx, n, "5"))
    first, last = ids[0], ids[-1]
    queue = f"bench-fault-{uuid.uuid4().hex[:8]}"
    _, task_ids = enqueue(ids, queue)
    env = ctx.env(CELERY_VISIBILITY_TIMEOUT=str(args.visibility_timeout))
    res: dict[str, Any] = {
        "studies": n,
        "tier_wait_seconds": wait_s,
        "accept_timeout_seconds": accept_s,
        "visibility_timeout": args.visibility_timeout,
    }
    stop_file = ctx.work / "fault-stop"
    sweep_logs = [ctx.work / "logs" / f"sweeper-{k}.jsonl" for k in (1, 2)]
    procs: list[subprocess.Popen[bytes]] = []
    saved_shifts: list[tuple[int, dt.datetime]] = []
    t_start = time.monotonic()
    try:
        worker_a, log_a = celery_worker(ctx, "fault-a", queue, env=env)
        procs.append(worker_a)
        wait_log(log_a, r"\bready\.", 60, worker_a)
        kill_at = int(n * args.fault_kill_fraction)
        wait_until(
            lambda: decided_count(ctx, first, last) >= kill_at,
            timeout=300,
            what=f"{kill_at} fault studies decided",
            interval=0.05,
        )
        PROCS.kill9(worker_a)
        t_kill = time.monotonic()
        res["decided_at_kill"] = decided_count(ctx, first, last)
        text = log_a.read_text(errors="replace")
        done_ids = {m.group(1) for m in TASK_OK_RX.finditer(text)}
        in_flight = [
            m.group(1) for m in TASK_RECEIVED_RX.finditer(text) if m.group(1) not in done_ids
        ]
        res["in_flight_at_kill"] = [task_ids.get(t) for t in in_flight]
        log(
            f"killed worker A (kill -9) with {res['decided_at_kill']}/{n} decided; "
            f"in flight: studies {res['in_flight_at_kill']}"
        )
        worker_b, log_b = celery_worker(ctx, "fault-b", queue, env=env)
        procs.append(worker_b)
        start_at = time.time() + 1.0
        for k, path in enumerate(sweep_logs, start=1):
            procs.append(
                PROCS.start(
                    [
                        sys.executable,
                        str(HERE / "run.py"),
                        "--sweeper",
                        "--sweeper-out",
                        str(path),
                        "--sweeper-stop",
                        str(stop_file),
                        "--sweeper-start-at",
                        f"{start_at:.3f}",
                        "--sweeper-interval",
                        str(args.sweeper_interval),
                        "--sweeper-max-seconds",
                        str(args.fault_timeout + 60),
                    ],
                    env=env,
                    log_path=ctx.work / "logs" / f"sweeper-{k}.log",
                )
            )

        # Readers go off shift mid-run: the sweepers must withdraw their offers (once)
        # and re-route the studies left with nobody (once).
        time.sleep(max(0.0, start_at + args.fault_leave_after - time.time()))
        res["leavers"] = readers_leave(ctx, ids, args.fault_leave_studies, saved_shifts)
        log(
            f"ended the shifts of {res['leavers']['readers']} readers holding all the open "
            f"offers of {res['leavers']['studies']} offered studies"
        )

        def settled() -> bool:
            row = ctx.conn.execute(
                "SELECT count(*) FILTER (WHERE r.study_id IS NOT NULL), "
                "count(*) FILTER (WHERE r.unroutable_at IS NOT NULL) "
                "FROM studies_study s LEFT JOIN routing_studyrouting r ON r.study_id = s.id "
                "WHERE s.id BETWEEN %s AND %s",
                (first, last),
            ).fetchone()
            return bool(row[0] >= n and row[1] >= n)

        try:
            wait_until(
                settled,
                timeout=args.fault_timeout,
                interval=1.0,
                what="every fault study to be routed and escalated to the end",
            )
            res["settled"] = True
        except TimeoutError as exc:
            res["settled"] = False
            res["timeout"] = str(exc)
        res["settle_seconds"] = time.monotonic() - t_start
        # The killed worker's unacknowledged message comes back once the visibility
        # timeout has passed and kombu's periodic restore runs; wait for it (bounded)
        # with the sweepers still running, to see what the redelivered task does.
        res["redelivery"] = wait_redelivery(
            log_b, in_flight, task_ids, t_kill, args.redelivery_wait, worker_b
        )
        count_sql = "SELECT count(*) FROM routing_routingdecision WHERE study_id BETWEEN %s AND %s"
        before_linger = int(ctx.conn.execute(count_sql, (first, last)).fetchone()[0])
        time.sleep(args.fault_linger)  # sweepers keep running: nothing more may happen
        res["decisions_during_linger"] = (
            int(ctx.conn.execute(count_sql, (first, last)).fetchone()[0]) - before_linger
        )
        stop_file.touch()
        size_b = log_size(log_b)
    finally:
        for p in reversed(procs):
            PROCS.stop(p)
        with contextlib.suppress(Exception):
            for shift_id, ends_at in saved_shifts:
                ctx.conn.execute(
                    "UPDATE network_shift SET ends_at = %s WHERE id = %s", (ends_at, shift_id)
                )
        with contextlib.suppress(Exception):
            for rid, a, b, c, d in saved:
                ctx.conn.execute(
                    "UPDATE routing_routingrule SET wait_stat_seconds = %s, "
                    "wait_urgent_seconds = %s, wait_routine_seconds = %s, "
                    "accept_timeout_seconds = %s WHERE id = %s",
                    (a, b, c, d, rid),
                )
    res["worker_a_log_problems"] = log_problems(log_a)
    res["worker_b_log_problems"] = log_problems(log_b, size_b)
    text_b = log_b.read_text(errors="replace")
    redelivered = {m.group(1) for m in TASK_RECEIVED_RX.finditer(text_b)} & set(in_flight)
    res["redelivered_to_b"] = [task_ids.get(t) for t in redelivered]
    sweeps = []
    for k, path in enumerate(sweep_logs, start=1):
        recs = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        sweeps.append(
            {
                "sweeper": k,
                "sweeps": len(recs),
                "escalated": sum(r.get("escalated", 0) for r in recs),
                "routed_late": sum(r.get("routed_late", 0) for r in recs),
                "offers_withdrawn": sum(r.get("offers_withdrawn", 0) for r in recs),
                "errors": [r["error"] for r in recs if "error" in r][:5],
                "error_count": sum(1 for r in recs if "error" in r),
                "first_at": recs[0]["at"] if recs else None,
            }
        )
    res["sweepers"] = sweeps
    if all(s["first_at"] for s in sweeps):
        res["sweepers_start_skew_ms"] = 1000 * abs(sweeps[0]["first_at"] - sweeps[1]["first_at"])
    res.update(
        verify_fault(
            ctx, ids, wait_s, accept_s, set(res["in_flight_at_kill"]), res.get("leavers", {})
        )
    )
    if res["worker_b_log_problems"]["count"]:
        res["passed"] = False
        res["problems"].append(
            f"{res['worker_b_log_problems']['count']} errors in worker B's log: "
            + "; ".join(res["worker_b_log_problems"]["examples"])[:600]
        )
    errors = sum(s["error_count"] for s in sweeps)
    if errors:
        res["leaver_problems"].append(
            f"{errors} sweeps failed with an exception: "
            + "; ".join(" ".join(e.split()) for s in sweeps for e in s["errors"])[:700]
        )
    res["leavers_passed"] = not res["leaver_problems"]
    ctx.results["fault"] = res
    log(f"fault test: {'PASS' if res['passed'] else 'FAIL'} - {res['summary']}")
    log(
        "readers going off shift mid-run: "
        + ("PASS" if res["leavers_passed"] else "FAIL - " + "; ".join(res["leaver_problems"]))
    )
    return ids


def readers_leave(
    ctx: Ctx, ids: Sequence[int], n_studies: int, saved: list[tuple[int, dt.datetime]]
) -> dict[str, Any]:
    """End, now, the current shifts of every reader holding an open offer on up to
    ``n_studies`` offered studies (their original end times go to ``saved``)."""
    c = ctx.conn
    studies = [
        r[0]
        for r in c.execute(
            "SELECT id FROM studies_study WHERE id = ANY(%s) AND status = 'offered' "
            "ORDER BY id LIMIT %s",
            (list(ids), n_studies),
        ).fetchall()
    ]
    readers = [
        r[0]
        for r in c.execute(
            "SELECT DISTINCT radiologist_id FROM worklist_offer "
            "WHERE study_id = ANY(%s) AND withdrawn_at IS NULL",
            (studies,),
        ).fetchall()
    ]
    rows = c.execute(
        "SELECT id, ends_at FROM network_shift WHERE radiologist_id = ANY(%s) "
        "AND starts_at < now() AND ends_at > now()",
        (readers,),
    ).fetchall()
    saved.extend((r[0], r[1]) for r in rows)
    c.execute(
        "UPDATE network_shift SET ends_at = now() WHERE id = ANY(%s)", ([r[0] for r in rows],)
    )
    open_offers = int(
        c.execute(
            "SELECT count(*) FROM worklist_offer o JOIN studies_study s ON s.id = o.study_id "
            "WHERE o.radiologist_id = ANY(%s) AND o.withdrawn_at IS NULL "
            "AND s.status = 'offered'",
            (readers,),
        ).fetchone()[0]
    )
    return {
        "studies": len(studies),
        "study_ids": studies,
        "readers": len(readers),
        "reader_ids": readers,
        "open_offers_of_leavers": open_offers,
        "at": utcnow(),
    }


def wait_redelivery(
    log_b: Path,
    in_flight: Sequence[str],
    task_ids: dict[str, int],
    t_kill: float,
    max_wait: float,
    worker: subprocess.Popen[bytes],
) -> dict[str, Any]:
    """Wait until worker B has run every task that was in flight at the kill."""
    out: dict[str, Any] = {"waited_up_to_s": max_wait, "tasks": {}}
    if not in_flight:
        return out
    pattern = {
        t: re.compile(rf"Task routing\.route_study\[{re.escape(t)}\] succeeded in [0-9.e-]+s: (.*)")
        for t in in_flight
    }
    deadline = t_kill + max_wait
    while time.monotonic() < deadline and worker.poll() is None:
        text = log_b.read_text(errors="replace") if log_b.exists() else ""
        for t, rx in pattern.items():
            found = rx.search(text)
            if found and str(task_ids.get(t)) not in out["tasks"]:
                out["tasks"][str(task_ids.get(t))] = {
                    "seconds_after_kill": round(time.monotonic() - t_kill, 1),
                    "result": found.group(1).strip(),
                }
        if len(out["tasks"]) == len(in_flight):
            break
        time.sleep(0.5)
    return out


def verify_fault(
    ctx: Ctx,
    ids: Sequence[int],
    wait_s: int,
    accept_s: int,
    in_flight: set[int | None],
    leavers: dict[str, Any],
) -> dict[str, Any]:
    ids = list(ids)
    c = ctx.conn
    problems: list[str] = []
    state = {
        r[0]: r[1:]
        for r in c.execute(
            "SELECT s.id, s.status, r.study_id IS NOT NULL, r.unroutable_at IS NOT NULL, "
            "(SELECT count(*) FROM worklist_offer o WHERE o.study_id = s.id "
            " AND o.withdrawn_at IS NULL) "
            "FROM studies_study s LEFT JOIN routing_studyrouting r ON r.study_id = s.id "
            "WHERE s.id = ANY(%s)",
            (ids,),
        ).fetchall()
    }
    not_routed = [
        sid
        for sid, (status, has_r, unr, _) in state.items()
        if not has_r or (status != "offered" and not unr)
    ]
    if not_routed:
        problems.append(
            f"{len(not_routed)} studies neither offered nor flagged unroutable "
            f"(e.g. {not_routed[:5]})"
        )
    dup_offers = c.execute(
        "SELECT count(*) FROM (SELECT study_id, radiologist_id FROM worklist_offer "
        "WHERE study_id = ANY(%s) AND withdrawn_at IS NULL GROUP BY 1, 2 HAVING count(*) > 1) x",
        (ids,),
    ).fetchone()[0]
    if dup_offers:
        problems.append(f"{dup_offers} duplicate open offers (same study, same reader)")
    delivery = dict(c.execute("SELECT id, delivery FROM routing_routingrule").fetchall())
    reroutes = {
        (r[0], r[1])
        for r in c.execute(
            "SELECT study_id, at FROM studies_studytransition WHERE study_id = ANY(%s) "
            "AND reason LIKE 're-routing:%%'",
            (ids,),
        ).fetchall()
    }
    chains: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    for row in c.execute(
        "SELECT study_id, id, created_at, outcome, tier, rule_id, reason "
        "FROM routing_routingdecision WHERE study_id = ANY(%s) ORDER BY study_id, created_at, id",
        (ids,),
    ):
        chains[row[0]].append(row[1:])
    alerts = Counter(
        r[0]
        for r in c.execute(
            "SELECT study_id FROM alerts_alert WHERE kind = 'unroutable' AND study_id = ANY(%s)",
            (ids,),
        ).fetchall()
    )
    too_soon, bad_tier, initial_dups, alert_mismatch = [], [], [], []
    episodes_total = 0
    outcome_counts: Counter[str] = Counter()
    for sid in ids:
        chain = chains.get(sid, [])
        if not chain:
            continue
        if chain[0][2] == "offered" and sum(1 for d in chain if d[2] == "offered") > 1:
            # a second OFFERED is legitimate only after an unroutable retry or a re-route
            for prev, d in itertools.pairwise(chain):
                if d[2] == "offered" and prev[2] != "unroutable" and (sid, d[1]) not in reroutes:
                    initial_dups.append(sid)
                    break
        episodes = 0
        for i, d in enumerate(chain):
            outcome_counts[d[2]] += 1
            if d[2] == "unroutable" and (i == 0 or chain[i - 1][2] != "unroutable"):
                episodes += 1
            if i == 0:
                continue
            prev = chain[i - 1]
            gap = (d[1] - prev[1]).total_seconds()
            if (sid, d[1]) in reroutes:
                continue
            if prev[2] == "unroutable":
                need = 60.0  # UNROUTABLE_RETRY
            elif delivery.get(prev[4]) == "auto_assign":
                need = float(accept_s)
            else:
                need = float(wait_s)
            if gap < need:
                too_soon.append((sid, prev[2], d[2], round(gap, 3)))
            if (
                d[2] == "escalated"
                and prev[2] in ("offered", "escalated")
                and delivery.get(d[4]) != "auto_assign"
                and d[3] <= prev[3]
            ):
                bad_tier.append(sid)
        episodes_total += episodes
        if alerts.get(sid, 0) != episodes:
            alert_mismatch.append((sid, alerts.get(sid, 0), episodes))
    # Studies whose offers were withdrawn because their readers went off shift: a
    # step too soon there is a problem of the withdraw/re-route path (next table row).
    touched = {
        r[0]
        for r in c.execute(
            "SELECT DISTINCT study_id FROM worklist_offer WHERE study_id = ANY(%s) "
            "AND withdrawn_reason = 'reader no longer eligible'",
            (ids,),
        ).fetchall()
    }
    too_soon_core = [t for t in too_soon if t[0] not in touched]
    too_soon_leavers = [t for t in too_soon if t[0] in touched]
    if too_soon_core:
        problems.append(
            f"{len(too_soon_core)} routing steps came before their timer "
            f"(a double escalation/route), e.g. {too_soon_core[:3]}"
        )
    if bad_tier:
        problems.append(f"{len(bad_tier)} escalations did not widen the tier, e.g. {bad_tier[:3]}")
    if initial_dups:
        problems.append(f"{len(initial_dups)} studies offered twice, e.g. {initial_dups[:3]}")
    if alert_mismatch:
        problems.append(
            f"{len(alert_mismatch)} studies whose unroutable alerts != unroutable "
            f"episodes (study, alerts, episodes), e.g. {alert_mismatch[:3]}"
        )
    killed = [s for s in in_flight if s is not None]
    killed_ok = all(
        s in chains
        and chains[s][0][2] in ("offered", "unroutable")
        and sum(1 for d in chains[s] if d[2] == "offered" and (s, d[1]) not in reroutes) <= 1
        for s in killed
    )
    if not killed_ok:
        problems.append(f"the study in flight at the kill was not routed exactly once: {killed}")
    # Readers who went off shift: none of their offers on offered studies may stay
    # open, and no study may be re-routed twice for it (two reroutes close together).
    leaver_ids = list(leavers.get("reader_ids", []))
    leaver_open = int(
        c.execute(
            "SELECT count(*) FROM worklist_offer o JOIN studies_study s ON s.id = o.study_id "
            "WHERE o.study_id = ANY(%s) AND o.radiologist_id = ANY(%s) "
            "AND o.withdrawn_at IS NULL AND s.status = 'offered' AND o.offered_at <= %s",
            (ids, leaver_ids, leavers.get("at") or utcnow()),
        ).fetchone()[0]
    )
    leaver_problems: list[str] = []
    if too_soon_leavers:
        leaver_problems.append(
            f"{len(too_soon_leavers)} studies whose readers went off shift had two routing "
            f"steps closer than their timer (study, previous, next, seconds apart): "
            f"{too_soon_leavers[:3]}"
        )
    if leaver_open:
        leaver_problems.append(f"{leaver_open} offers of readers who went off shift are still open")
    withdrawn_stale = int(
        c.execute(
            "SELECT count(*) FROM worklist_offer WHERE study_id = ANY(%s) "
            "AND withdrawn_reason = 'reader no longer eligible'",
            (ids,),
        ).fetchone()[0]
    )
    reroute_times: dict[int, list[Any]] = defaultdict(list)
    for sid, at in sorted(reroutes, key=lambda r: (r[0], r[1])):
        reroute_times[sid].append(at)
    double_reroutes = [
        (sid, round((b - a).total_seconds(), 3))
        for sid, times in reroute_times.items()
        for a, b in itertools.pairwise(times)
        if (b - a).total_seconds() < 2.0
    ]
    if double_reroutes:
        leaver_problems.append(
            f"{len(double_reroutes)} studies re-routed twice within 2 s (study, seconds "
            f"apart), e.g. {double_reroutes[:3]}"
        )
    status_counts = Counter(v[0] for v in state.values())
    summary_text = (
        f"{len(ids) - len(not_routed)}/{len(ids)} routed; decisions {dict(outcome_counts)}; "
        f"unroutable alerts {sum(alerts.values())} for {episodes_total} unroutable episodes; "
        f"duplicate open offers {dup_offers}; steps before their timer {len(too_soon_core)}"
    )
    return {
        "passed": not problems,
        "problems": problems,
        "leaver_problems": leaver_problems,
        "summary": summary_text,
        "status_counts": dict(status_counts),
        "decision_outcomes": dict(outcome_counts),
        "alerts": sum(alerts.values()),
        "unroutable_episodes": episodes_total,
        "reroutes": len(reroutes),
        "rerouted_studies": len(reroute_times),
        "double_reroutes": double_reroutes,
        "leaver_offers_left_open": leaver_open,
        "offers_withdrawn_stale": withdrawn_stale,
        "in_flight_routed_once": killed_ok,
    }


# --- phase 6: the escalation sweep with 1,000,000 studies -----------------------------


def filler_rows(ctx: Ctx, n: int) -> Any:
    """Historical studies: ~96.5% final, 3.5% cancelled, received over 180 days."""
    rng = random.Random(ctx.args.seed + 3)
    readers = ctx.net.radiologist_ids
    now = utcnow()
    maker = ctx.maker
    for _ in range(n):
        received = now - dt.timedelta(seconds=rng.uniform(3600, 180 * 86400))
        row = maker.row(prefix="6", status="final", at=received)
        ready = received + dt.timedelta(seconds=rng.uniform(20, 300))
        row["ready_at"] = ready
        row["offered_at"] = ready + dt.timedelta(seconds=1)
        row["last_instance_at"] = ready - dt.timedelta(seconds=10)
        if rng.random() < 0.035:
            row["status"] = "cancelled"
            row["cancelled_at"] = ready + dt.timedelta(minutes=rng.uniform(1, 120))
        else:
            claimed = ready + dt.timedelta(minutes=rng.uniform(1, 90))
            row["assigned_radiologist_id"] = rng.choice(readers)
            row["claimed_at"] = claimed
            row["finalized_at"] = claimed + dt.timedelta(minutes=rng.uniform(3, 60))
        yield row


def route_worklist(ctx: Ctx) -> list[int]:
    """The open worklist: fresh studies routed by the app (real offers and timers)."""
    from routing.services import study_route

    m = max(ctx.args.worklist_levels)
    log(f"phase 6: routing {m} fresh studies in-process (the open worklist for the sweep)")
    ids = insert_studies(ctx, ready_rows(ctx, m, "7"))
    ctx.conn.execute("ANALYZE studies_study")
    for sid in ids:
        study_route(study_id=sid)
    push_timers(ctx, ids)
    return ids


def push_timers(ctx: Ctx, ids: Sequence[int]) -> None:
    """Timers 1 h out: the sweep bench makes studies due on purpose."""
    ctx.conn.execute(
        "UPDATE routing_studyrouting SET next_escalation_at = now() + interval '1 hour' "
        "WHERE study_id = ANY(%s) AND next_escalation_at IS NOT NULL",
        (list(ids),),
    )


def phase_big_table(ctx: Ctx) -> None:
    args = ctx.args
    ctx.check_ingest("sweep")
    c = ctx.conn
    worklist = route_worklist(ctx)
    current = int(c.execute("SELECT count(*) FROM studies_study").fetchone()[0])
    extra = 2 * args.big_latency_sample + 40 + 2 * args.big_capture
    n = max(0, args.big_table_rows - current - extra)
    log(
        f"bulk-loading {n} historical studies (table target {args.big_table_rows}) "
        f"with routing rows and {args.offers_per_study} offers each"
    )
    t0 = time.monotonic()
    before = max_study_id(ctx)
    from netgen import copy_models

    from studies.models import Study

    copy_models(c, Study, filler_rows(ctx, n))
    after = max_study_id(ctx)
    t_copy = time.monotonic() - t0
    add_routing_rows(ctx, before + 1, after, decided="offered_at")
    rad_ids = sorted(ctx.net.radiologist_ids)
    # Offers as the app leaves them: withdrawn when the study was reported final (or
    # cancelled), so history puts nothing on a worklist.
    for k in range(args.offers_per_study):
        c.execute(
            """INSERT INTO worklist_offer (study_id, radiologist_id, tier, offered_at,
                                           priority, sla_due_at, received_at, facility_id,
                                           withdrawn_at, withdrawn_reason)
               SELECT s.id, (%(rads)s::bigint[])[1 + ((s.id * 7919 + %(k)s * 677)
                                                     %% array_length(%(rads)s::bigint[], 1))],
                      0, s.offered_at, s.priority, s.sla_due_at, s.received_at, s.facility_id,
                      GREATEST(s.offered_at, COALESCE(s.finalized_at, s.cancelled_at)),
                      'study reported final or cancelled'
               FROM studies_study s WHERE s.id BETWEEN %(a)s AND %(b)s""",
            {"rads": rad_ids, "k": k, "a": before + 1, "b": after},
        )
    t_rows = time.monotonic() - t0
    log(f"loaded in {t_rows:.0f} s (COPY of studies {t_copy:.0f} s); VACUUM ANALYZE")
    c.execute("VACUUM ANALYZE")
    t_load = time.monotonic() - t0
    sizes = dict(
        c.execute(
            "SELECT relname, pg_size_pretty(pg_total_relation_size(oid)) FROM pg_class "
            "WHERE relname IN ('studies_study', 'routing_studyrouting', 'worklist_offer', "
            "'routing_routingdecision', 'audit_auditevent', 'studies_studytransition')"
        ).fetchall()
    )
    counts = dict(
        c.execute("SELECT status, count(*) FROM studies_study GROUP BY 1 ORDER BY 1").fetchall()
    )
    ctx.results["big"] = {
        "filler": n,
        "load_seconds": t_load,
        "copy_seconds": t_copy,
        "sizes": sizes,
        "status_counts": counts,
        "studies": sum(counts.values()) + extra,
        "offers": int(c.execute("SELECT count(*) FROM worklist_offer").fetchone()[0]),
        "open_offers": int(
            c.execute("SELECT count(*) FROM worklist_offer WHERE withdrawn_at IS NULL").fetchone()[
                0
            ]
        ),
        "open_worklist": dict(
            c.execute(
                "SELECT status, count(*) FROM studies_study WHERE id = ANY(%s) GROUP BY 1",
                (worklist,),
            ).fetchall()
        ),
    }

    # One decision with the big table (fresh studies; retired afterwards).
    k = args.big_latency_sample
    log(f"timing study_route in-process on {k} fresh studies with the big table")
    ids = insert_studies(ctx, ready_rows(ctx, extra, "8"))
    c.execute("ANALYZE studies_study")
    ctx.results["latency_big"] = route_in_process(ctx, ids, args.big_capture)
    lat = ctx.results["latency_big"]["latency"]
    log(
        f"in-process study_route with the big table: p50 {ms(lat.get('p50'))} "
        f"p99 {ms(lat.get('p99'))}"
    )
    phase_raw(ctx, ids, "raw_big")
    retire(ctx, ids, "big-table latency")
    # Diagnostic (not a target figure): the same with PostgreSQL's JIT off for the session.
    log(f"diagnostic: the same with SET jit = off ({k} fresh studies)")
    ids = insert_studies(ctx, ready_rows(ctx, k + 20, "9"))
    set_jit(False)
    try:
        ctx.results["latency_big_nojit"] = route_in_process(ctx, ids, 0)
    finally:
        set_jit(True)
    phase_raw(ctx, ids, "raw_big_nojit", jit_off=True)
    retire(ctx, ids, "big-table latency without JIT")
    sweep_bench(ctx, worklist)


def set_jit(on: bool) -> None:
    """PostgreSQL's JIT for this process's Django connection (on = the server default)."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("RESET jit" if on else "SET jit = off")


def set_worklist(ctx: Ctx, offered: Sequence[int], level: int) -> list[int]:
    """Make the first ``level`` offered studies the open worklist; the rest are
    set aside (status final, as if read) until the next level.  Every timer is
    pushed 1 h out: the sweep bench makes studies due on purpose."""
    c = ctx.conn
    live, hidden = list(offered[:level]), list(offered[level:])
    c.execute(
        "UPDATE studies_study SET status = 'offered' WHERE id = ANY(%s) AND status = 'final'",
        (live,),
    )
    c.execute(
        "UPDATE studies_study SET status = 'final', finalized_at = coalesce(finalized_at, now()) "
        "WHERE id = ANY(%s) AND status = 'offered'",
        (hidden,),
    )
    push_timers(ctx, offered)
    return live


def timed_sweeps(n: int) -> tuple[list[float], Counter[str]]:
    from django.utils import timezone

    from routing.services import routing_sweep

    times: list[float] = []
    acted: Counter[str] = Counter()
    for _ in range(n):
        t0 = time.perf_counter()
        out = routing_sweep(now=timezone.now())
        times.append(time.perf_counter() - t0)
        acted.update(out)
    return times, acted


def timed_withdraw(n: int) -> list[float]:
    """The offer-eligibility sweep (a beat task of its own) timed in-process."""
    from django.utils import timezone

    from routing.services import offers_withdraw_ineligible

    times: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter()
        offers_withdraw_ineligible(now=timezone.now())
        times.append(time.perf_counter() - t0)
    return times


def sweep_bench(ctx: Ctx, worklist: Sequence[int]) -> None:
    from django.utils import timezone

    from routing.services import routing_sweep

    args = ctx.args
    c = ctx.conn
    rng = random.Random(args.seed + 4)
    offered = [
        r[0]
        for r in c.execute(
            "SELECT id FROM studies_study WHERE id = ANY(%s) AND status = 'offered' ORDER BY id",
            (list(worklist),),
        ).fetchall()
    ]
    levels = sorted({min(level, len(offered)) for level in args.worklist_levels})
    main_level = min(args.open_worklist, len(offered))
    if main_level not in levels:
        levels = sorted({*levels, main_level})
    by_level: dict[int, dict[str, Any]] = {}
    plans: dict[str, str] = {}
    due_times: list[float] = []
    due_nojit: list[float] = []
    acted_due: Counter[str] = Counter()
    made_due = 0
    for level in levels:
        live = set_worklist(ctx, offered, level)
        open_offers = int(
            c.execute(
                "SELECT count(*) FROM worklist_offer o JOIN studies_study s ON s.id = o.study_id "
                "WHERE o.withdrawn_at IS NULL AND s.status = 'offered'"
            ).fetchone()[0]
        )
        for _ in range(5):  # warm-up
            routing_sweep(now=timezone.now())
        n = args.sweeps if level == main_level else max(20, args.sweeps // 4)
        log(f"sweep: open worklist {level} studies ({open_offers} open offers): {n} idle sweeps")
        idle, acted = timed_sweeps(n)
        withdraw_plan = sweep_plans(only="withdraw")
        withdraw_times = timed_withdraw(20)
        by_level[level] = {
            "open_offers": open_offers,
            "idle": summary(idle),
            "acted": dict(acted),
            "withdraw_query_ms": plan_time(withdraw_plan),
            "withdraw": summary(withdraw_times),
        }
        if level != main_level:
            continue
        log(
            f"sweep: open worklist {level}: {args.due_sweeps} sweeps with {args.due_per_sweep} "
            f"due each (+{args.due_sweeps_nojit} with JIT off)"
        )
        for n_sweep in range(args.due_sweeps + args.due_sweeps_nojit):
            jit_off = n_sweep >= args.due_sweeps
            candidates = [
                r[0]
                for r in c.execute(
                    "SELECT r.study_id FROM routing_studyrouting r JOIN studies_study s "
                    "ON s.id = r.study_id WHERE r.study_id = ANY(%s) AND s.status = 'offered' "
                    "AND r.tier < 2 AND r.next_escalation_at > now()",
                    (live,),
                ).fetchall()
            ]
            due = rng.sample(candidates, min(args.due_per_sweep, len(candidates)))
            made_due += len(due)
            c.execute(
                "UPDATE routing_studyrouting SET next_escalation_at = now() - interval '1 ms' "
                "WHERE study_id = ANY(%s)",
                (due,),
            )
            if jit_off:
                set_jit(False)
            t0 = time.perf_counter()
            out = routing_sweep(now=timezone.now())
            elapsed = time.perf_counter() - t0
            if jit_off:
                set_jit(True)
                due_nojit.append(elapsed)
                continue
            due_times.append(elapsed)
            acted_due.update(out)
        # Plans: make 3 due and EXPLAIN ANALYZE the sweep's queries as the app builds them.
        candidates = [
            r[0]
            for r in c.execute(
                "SELECT study_id FROM routing_studyrouting WHERE study_id = ANY(%s) AND tier < 2 "
                "AND next_escalation_at > now()",
                (live,),
            ).fetchall()
        ]
        c.execute(
            "UPDATE routing_studyrouting SET next_escalation_at = now() - interval '1 ms' "
            "WHERE study_id = ANY(%s)",
            (rng.sample(candidates, min(3, len(candidates))),),
        )
        plans = sweep_plans()
        push_timers(ctx, live)
    set_worklist(ctx, offered, len(offered))
    main = by_level[main_level]
    ctx.results["sweep"] = {
        "open_worklist": main_level,
        "open_offers": main["open_offers"],
        "idle": main["idle"],
        "due": summary(due_times),
        "due_nojit": summary(due_nojit),
        "due_per_sweep": args.due_per_sweep,
        "made_due": made_due,
        "acted_idle": main["acted"],
        "acted_due": dict(acted_due),
        "by_level": by_level,
        "plans": plans,
    }
    i, d = main["idle"], ctx.results["sweep"]["due"]
    log(
        f"sweep (worklist {main_level}) idle p50 {ms(i['p50'], 2)} p95 {ms(i['p95'], 2)}; "
        f"with {args.due_per_sweep} due p50 {ms(d.get('p50'), 2)} p95 {ms(d.get('p95'), 2)}"
    )


def plan_time(plan: str) -> float | None:
    found = re.search(r"Execution Time: ([0-9.]+) ms", plan)
    return float(found.group(1)) if found else None


def explain(qs_or_sql: Any, params: Sequence[Any] = ()) -> str:
    from django.db import connection

    if isinstance(qs_or_sql, str):
        sql = qs_or_sql
    else:
        sql, params = qs_or_sql.query.sql_with_params()
    with connection.cursor() as cur:
        cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        return "\n".join(r[0] for r in cur.fetchall())


def sweep_plans(only: str = "") -> Any:
    """EXPLAIN ANALYZE of the sweeps' selection queries, from the app's own selectors."""
    from django.utils import timezone

    from routing import selectors
    from routing.services import ROUTE_GRACE

    now = timezone.now()
    due = selectors.escalations_due(now=now)[:200]
    orphans = selectors.studies_unrouted(ready_before=now - ROUTE_GRACE)[:200]
    stale = selectors.offers_no_longer_eligible(now=now)
    if only == "withdraw":
        return explain(stale)
    return {
        "due timers (routing_sweep)": explain(due),
        "lost routing tasks (routing_sweep)": explain(orphans),
        "offers to withdraw (offers_withdraw_ineligible, a beat task of its own)": explain(stale),
    }


# --- report --------------------------------------------------------------------------


def machine() -> dict[str, str]:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / (1 << 20):.1f} GiB"
    return {"cpus": str(os.cpu_count() or "?"), "model": model, "memory": mem}


def versions(ctx: Ctx) -> dict[str, str]:
    import celery
    import django
    import redis

    out = {
        "python": platform.python_version(),
        "django": django.get_version(),
        "celery": celery.__version__,
    }
    with contextlib.suppress(Exception):
        out["postgresql"] = str(ctx.conn.execute("SHOW server_version").fetchone()[0]).split()[0]
        out["pg settings"] = ", ".join(
            f"{n}={s}"
            for n, s in ctx.conn.execute(
                "SELECT name, current_setting(name) FROM pg_settings WHERE name IN "
                "('shared_buffers', 'work_mem', 'synchronous_commit', 'jit') ORDER BY name"
            )
        )
    with contextlib.suppress(Exception):
        out["redis"] = str(redis.Redis.from_url(ctx.redis_url).info()["redis_version"])
    return out


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**not met**")


def build_report(ctx: Ctx, elapsed: float, argv: Sequence[str]) -> tuple[str, str]:
    r = ctx.results
    args = ctx.args
    m, v = machine(), versions(ctx)
    rate, raw = r.get("rate", {}), r.get("raw", {})
    lat, sus, sweep, fault = (
        r.get("latency", {}),
        r.get("sustained", {}),
        r.get("sweep", {}),
        r.get("fault", {}),
    )
    big, lat_big, raw_big = r.get("big", {}), r.get("latency_big", {}), r.get("raw_big", {})
    nojit = r.get("latency_big_nojit", {}).get("latency", {})
    raw_nojit = r.get("raw_big_nojit", {})
    app_rate, raw_rate = rate.get("rate_wall"), raw.get("rate")
    ratio = app_rate / raw_rate if app_rate and raw_rate else None
    tr = rate.get("task_runtime", {})
    ro = sus.get("ready_to_offered_observed", {})
    sd, si = sweep.get("due", {}), sweep.get("idle", {})
    rows = [
        (
            "Decisions/s, one worker process (`--pool=solo`), `routing.route_studies` tasks",
            f"{app_rate:.1f}/s" if app_rate else "-",
            f">= 50% of raw SQL ({0.5 * raw_rate:.0f}/s)" if raw_rate else ">= 50% of raw SQL",
            f"{ratio:.1%} of raw SQL" if ratio else "-",
            verdict(ratio >= 0.5 if ratio else None),
        ),
        (
            "Raw-SQL eligibility query (reference), one connection, sequential",
            f"{raw_rate:.0f}/s" if raw_rate else "-",
            "reference (issue: ~775/s for 300 readers)",
            f"agrees with the app on {raw.get('agree')}/{raw.get('studies')} studies",
            "",
        ),
        (
            "Routing task runtime, p50 / p99 (worker log): tasks that routed a batch",
            f"{ms(rate.get('batch_runtime', {}).get('p50'))} / "
            f"{ms(rate.get('batch_runtime', {}).get('p99'))}",
            "(a task is a batch: one decision is the next rows)",
            f"{rate.get('batch_runtime', {}).get('n', 0)} batches of "
            f"{rate.get('batch_size_mean') or 0:.1f} studies on average; "
            f"{ms(rate.get('per_decision_in_batch'))} of batch time per decision; "
            f"{rate.get('noop_runtime', {}).get('n', 0)} messages that routed nothing, "
            f"p50 {ms(rate.get('noop_runtime', {}).get('p50'))}",
            "",
        ),
        (
            "One decision, p50 / p99 (`study_route` in-process, perf_counter)",
            f"{ms(lat.get('latency', {}).get('p50'))} / {ms(lat.get('latency', {}).get('p99'))}",
            "p99 < 25 ms",
            f"{lat.get('latency', {}).get('n', 0)} studies",
            verdict(
                lat.get("latency", {}).get("p99") < 0.025
                if lat.get("latency", {}).get("p99") is not None
                else None
            ),
        ),
        (
            f"Ready -> offered, p50 / p99, {args.sustained_rate:g} studies/s sustained",
            f"{ms(ro.get('p50'))} / {ms(ro.get('p99'))}",
            "p99 < 1 s",
            f"max {ms(ro.get('max'))}; {sus.get('counts')}",
            verdict(ro.get("p99") < 1.0 if ro.get("p99") is not None else None),
        ),
        (
            f"Escalation sweep, p50 / p95, {big.get('studies', 0):,} studies, "
            f"{sweep.get('due_per_sweep')} due per sweep",
            f"{ms(sd.get('p50'), 2)} / {ms(sd.get('p95'), 2)}",
            "p95 <= 5 ms",
            "",
            verdict(sd.get("p95") <= 0.005 if sd.get("p95") is not None else None),
        ),
        (
            f"Escalation sweep, p50 / p95, {big.get('studies', 0):,} studies, nothing due",
            f"{ms(si.get('p50'), 2)} / {ms(si.get('p95'), 2)}",
            "p95 <= 5 ms",
            "",
            verdict(si.get("p95") <= 0.005 if si.get("p95") is not None else None),
        ),
        (
            "Due-timer selection query alone (EXPLAIN ANALYZE, partial index)",
            f"{plan_time(sweep.get('plans', {}).get('due timers (routing_sweep)', ''))} ms",
            "(part of the sweep)",
            "",
            "",
        ),
        (
            "Fault test: kill -9 a worker mid-run, two sweepers at once",
            ("pass" if fault.get("passed") else "FAIL") if fault else "-",
            "every study routed; escalations and alerts exactly once",
            fault.get("summary", ""),
            verdict(fault.get("passed")),
        ),
        (
            "Same run, readers going off shift meanwhile: both sweepers withdraw their "
            "offers and re-route the studies left with nobody",
            ("pass" if fault.get("leavers_passed") else "FAIL") if fault else "-",
            "(added here) offers withdrawn and studies re-routed exactly once, no sweep fails",
            "; ".join(fault.get("leaver_problems", [])) or "no problem seen",
            verdict(fault.get("leavers_passed")),
        ),
    ]
    table = "| measure | result | target | detail | verdict |\n| --- | --- | --- | --- | --- |\n"
    table += "\n".join("| " + " | ".join(str(x) for x in row) + " |" for row in rows)

    net = r.get("network", {}).get("counts", {})
    net_line = ", ".join(f"{v:,} {k}" for k, v in net.items())
    shown, skip_next = [], False
    for arg in argv:  # no local file names in the report
        if skip_next:
            skip_next = False
        elif arg == "--json":
            skip_next = True
        elif not arg.startswith("--json="):
            shown.append(arg)
    cmd = "    .venv/bin/python bench/routing/run.py" + "".join(" " + a for a in shown)

    def lat_line(name: str, d: dict[str, Any]) -> str:
        lt = d.get("latency", {})
        return (
            f"- {name}: n={lt.get('n', 0)}, mean {ms(lt.get('mean'))}, p50 {ms(lt.get('p50'))}, "
            f"p95 {ms(lt.get('p95'))}, p99 {ms(lt.get('p99'))}, max {ms(lt.get('max'))}; "
            f"{(d.get('queries_per_decision') or 0):.1f} SQL queries per decision, "
            f"{(d.get('sql_share') or 0):.0%} of its wall time in SQL"
        )

    def kind_table(d: dict[str, Any]) -> str:
        lines = [
            "| decision | studies | p50 | p99 | max | verdicts stored (mean) |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for kind, k in d.get("by_kind", {}).items():
            lines.append(
                f"| {kind} | {k['n']} | {ms(k['p50'])} | {ms(k['p99'])} | {ms(k['max'])} | "
                f"{k['verdicts_mean']:.0f} |"
            )
        return "\n".join(lines)

    def profile_table(d: dict[str, Any]) -> str:
        lines = [
            f"cProfile over {d.get('profiled', 0)} more decisions (cumulative time per "
            "decision; the profiler inflates Python-heavy parts):",
            "",
            "| part | ms per decision |",
            "| --- | ---: |",
        ]
        for label, value in d.get("profile_ms_per_decision", {}).items():
            lines.append(f"| {label} | {value:.1f} |")
        if d.get("profile_top"):
            lines += [
                "",
                "Functions with the most own time (per decision, same profile):",
                "",
                "| function | own ms | cumulative ms | calls |",
                "| --- | ---: | ---: | ---: |",
            ]
            for f in d["profile_top"]:
                lines.append(
                    f"| `{f['function']}` | {f['own_ms']:.2f} | {f['cum_ms']:.2f} | "
                    f"{f['calls']:.0f} |"
                )
        return "\n".join(lines)

    def level_table() -> str:
        lines = [
            "| open worklist (offered studies) | open offers on them | escalation sweep p50 "
            "| escalation sweep p95 | offer-eligibility sweep p50 (its own task) "
            "| its query alone (EXPLAIN ANALYZE) |",
            "| ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for level, d in sorted(sweep.get("by_level", {}).items(), key=lambda kv: int(kv[0])):
            lines.append(
                f"| {level} | {d['open_offers']:,} | {ms(d['idle']['p50'], 2)} | "
                f"{ms(d['idle']['p95'], 2)} | {ms(d.get('withdraw', {}).get('p50'), 2)} | "
                f"{d['withdraw_query_ms']} ms |"
            )
        return "\n".join(lines)

    def top_queries(d: dict[str, Any]) -> str:
        lines = [
            "| share of SQL time | calls/decision | mean | query (normalized, cut) |",
            "| ---: | ---: | ---: | --- |",
        ]
        for q in d.get("top_queries", []):
            sql = q["sql"].replace("|", "\\|")
            lines.append(
                f"| {q['share']:.0%} | {q['calls_per_decision']:.1f} | "
                f"{q['mean_ms']:.2f} ms | `{sql}` |"
            )
        return "\n".join(lines)

    fault_lines = []
    if fault:
        fault_lines = [
            f"- {fault.get('studies')} ready studies enqueued to one solo worker "
            f"(`CELERY_VISIBILITY_TIMEOUT={fault.get('visibility_timeout')}` instead of the "
            f"default 600, so that the killed worker's unacknowledged task can come back "
            f"within the test). Routing rules' tier waits were set to "
            f"{fault.get('tier_wait_seconds')} s "
            f"(auto-assign accept timeout {fault.get('accept_timeout_seconds')} s) for the test "
            f"so that every study goes through all its escalations, then restored.",
            f"- Worker A was killed (`kill -9` on its process group) with "
            f"{fault.get('decided_at_kill')} studies decided; task in flight: study "
            f"{fault.get('in_flight_at_kill')}. Its message came back to worker B: "
            f"{redelivery_text(fault)}.",
            f"- Worker B and two sweeper processes (each `routing_sweep()` in a loop, "
            f"{args.sweeper_interval:g} s apart) started together; first sweeps "
            f"{fault.get('sweepers_start_skew_ms', 0):.0f} ms apart. "
            + "; ".join(
                f"sweeper {s['sweeper']}: {s['sweeps']} sweeps, {s['escalated']} "
                f"escalations, {s['routed_late']} routed late, {s['offers_withdrawn']} "
                f"offers withdrawn, {s['error_count']} errors"
                for s in fault.get("sweepers", [])
            )
            + ".",
            f"- {args.fault_leave_after:g} s after the sweepers started, the shifts of the "
            f"{fault.get('leavers', {}).get('readers')} readers holding the open offers of "
            f"{fault.get('leavers', {}).get('studies')} offered studies were ended (so those "
            f"studies have nobody left): {fault.get('offers_withdrawn_stale')} offers were "
            f"withdrawn as 'reader no longer eligible', "
            f"{fault.get('leaver_offers_left_open')} left open; "
            f"{fault.get('rerouted_studies')} studies re-routed "
            f"({fault.get('reroutes')} re-route transitions); re-routed twice within 2 s: "
            f"{len(fault.get('double_reroutes', []))}. (The sweepers' own counts of withdrawn "
            "offers above count an offer once per sweeper that saw it, and a sweep that "
            "failed is not counted.) The shifts were restored after the test.",
            f"- Settled (every study routed and escalated to the end of its chain) after "
            f"{fault.get('settle_seconds', 0):.0f} s; the sweepers kept running until the "
            f"lost task came back (or {args.redelivery_wait:g} s after the kill) and "
            f"{args.fault_linger:g} s more; in the last {args.fault_linger:g} s "
            f"{fault.get('decisions_during_linger')} more routing decisions were made.",
            f"- Result: {fault.get('summary')}. Final study states: {fault.get('status_counts')}.",
            "- Checks: every study has a routing decision and is offered or flagged "
            "unroutable; no study has two open offers to one reader; every routing step "
            "came no earlier than the timer the previous step set (a step run twice would "
            "come early); escalations widen the tier; one unroutable alert per unroutable "
            "episode; the study in flight at the kill was routed exactly once; no offer "
            "of a reader who went off shift left open; no study re-routed twice; "
            f"worker/sweeper log errors: A {fault.get('worker_a_log_problems', {}).get('count')}, "
            f"B {fault.get('worker_b_log_problems', {}).get('count')}.",
        ]
        if fault.get("problems"):
            fault_lines.append("- **Problems:** " + "; ".join(fault["problems"]))
        if fault.get("leaver_problems"):
            fault_lines.append(
                "- **Problems with readers going off shift:** "
                + "; ".join(fault["leaver_problems"])
            )

    def indent(text: str) -> str:
        return "\n".join("    " + line for line in text.splitlines())

    plans = "\n\n".join(
        f"{name}:\n\n" + indent(plan) for name, plan in sweep.get("plans", {}).items()
    )
    outcomes = ", ".join(f"{k}: {v}" for k, v in rate.get("outcomes", {}).items())
    quiet_end = sus.get("quiet_end_to_offered", {})
    differences = f" (differences: {raw.get('mismatch_examples')})" if raw.get("disagree") else ""
    notes = ctx.results["notes"] + ctx.results["warnings"]
    section = f"""{SECTION_TITLE}

Measured {dt.datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {m["cpus"]} CPU(s) ({m["model"]}),
{m["memory"]} RAM; PostgreSQL {v.get("postgresql", "?")} ({v.get("pg settings", "")}),
Redis {v.get("redis", "?")}, Python {v["python"]}, Django {v["django"]}, Celery {v["celery"]}.
One run took {elapsed / 60:.1f} min.

Command (from the repository root):

{cmd}

Network (seed {args.seed}, one reading group): {net_line}.
Geography: 6 countries, 60 jurisdictions, 40 regions; tiers are geographic (0 = the
facility's region, 1 = its country, 2 = anywhere). 9 routing rules (8 by
modality/body part/description/priority, one default; one auto-assign).

{table}

### Decision rate and latency (task path)

- {rate.get("studies")} READY studies (COPY), enqueued as the ready sweep enqueues
  them (`teleradiology.queue.enqueue_in_batches`: most urgent first, one
  `routing.route_studies` message per `ROUTING_BATCH_SIZE={rate.get("batch_size")}`
  studies, so {rate.get("messages")} messages) to a queue of their own before the
  worker started (enqueue took {rate.get("enqueue_seconds", 0):.1f} s); one
  `celery worker --pool=solo` on it (a task routes the studies it names, topped up
  with other waiting ones to the batch size).
  decisions/s = studies / wall seconds from the worker's "ready" line until every
  study is decided **and** all {rate.get("messages")} messages are consumed
  ({rate.get("tasks_drained")} seen in the worker log): {rate.get("decided")} in
  {rate.get("wall_seconds", 0):.1f} s = {(rate.get("rate_wall") or 0):.1f}/s.
  The last routing row was written after {rate.get("wall_seconds_decided", 0):.1f} s
  ({(rate.get("rate_decided") or 0):.1f}/s; from the first to the last decision time
  stamp: {(rate.get("rate_db_span") or 0):.1f}/s).
  Machine CPU busy meanwhile: {(rate.get("cpu_busy") or 0):.0%} of 2 cores (the worker
  process itself: {(rate.get("worker_cpu_share") or 0):.0%} of one core); new PostgreSQL
  sessions opened meanwhile: {rate.get("pg_sessions")}.
- Task runtime (worker log, "succeeded in"; a batch is one task, a message whose study
  a batch routed is another): n={tr.get("n")}, p50 {ms(tr.get("p50"))},
  p95 {ms(tr.get("p95"))}, p99 {ms(tr.get("p99"))}, max {ms(tr.get("max"))}; mean of the
  first tenth of the tasks {ms(rate.get("runtime_first_tenth"))}, of the last tenth
  {ms(rate.get("runtime_last_tenth"))}.
- Outcomes: {outcomes}. Offered to {rate.get("offered_to_mean", 0):.1f} readers on average;
  each decision stores {rate.get("verdicts_per_decision_mean", 0):.0f} verdicts on average
  (max {rate.get("verdicts_per_decision_max")}),
  {rate.get("verdicts_bytes_mean", 0) / 1024:.1f} KiB of JSON per decision
  (max {rate.get("verdicts_bytes_max", 0) / 1024:.0f} KiB),
  {rate.get("verdicts_bytes_total", 0) / 2**20:.0f} MiB for this phase.
  Most common unroutable reasons: {rate.get("unroutable_reasons")}.
- Worker log errors/retries: {rate.get("worker_log_problems", {}).get("count")}.
{lat_line("In-process `study_route` (same code, no Celery), fresh studies", lat)}

By what was decided (in-process timings):

{kind_table(lat)}

Where the SQL time of one decision goes ({args.capture} decisions captured):

{top_queries(lat)}

{profile_table(lat)}

Plan of the most expensive query of a decision (one captured instance):

{indent(lat.get("top_plan", ""))}

### Raw-SQL reference

One hand-written query per study (`bench/routing/rawsql.py`: the same hard
filters and ranking as `routing.eligibility`, tier by geography, rule chosen by
the app's pure `first_match`), psycopg 3, prepared, one connection, sequential,
for the same {raw.get("studies")} studies at each study's decision time:
{(raw_rate or 0):.0f} studies/s. Its result (eligible readers at the nearest tier,
in rank order) is identical to the app's offer list for {raw.get("agree")} of
{raw.get("studies")} studies{differences}.
The app's rate is {ratio or 0:.1%} of it. The reference does only the read; the
app also writes the offers, the state transition, the audit row and the
decision record.

### Ready -> offered at {args.sustained_rate:g} studies/s

- {sus.get("studies")} studies inserted as `receiving` with `last_instance_at` = now,
  {(sus.get("insert_rate") or 0):.1f}/s for {args.sustained_seconds:g} s; a
  `celery worker --concurrency={sus.get("concurrency")}` (prefork, as in the
  Procfile) and `celery beat` running with `STUDY_QUIET_SECONDS={sus.get("quiet_seconds")}`,
  `STUDY_READY_SWEEP_SECONDS={sus.get("ready_sweep_seconds")}` (other beat
  schedules as configured). The study becomes ready by the real
  `ingest.studies_mark_ready` sweep and is routed by the `routing.route_study`
  task it enqueues.
- "offered on a worklist" = the routing commit seen by a poller (every
  {args.poll_interval * 1000:.0f} ms, so up to that much late):
  ready -> offered p50 {ms(ro.get("p50"))}, p95 {ms(ro.get("p95"))}, p99 {ms(ro.get("p99"))},
  max {ms(ro.get("max"))} (n={ro.get("n")}).
- From the app's own stamps (`offered_at - ready_at`, both taken at the start of
  their transactions, so without the routing task's own run time):
  p50 {ms(sus.get("ready_to_offered_stamps", {}).get("p50"))}, p99
  {ms(sus.get("ready_to_offered_stamps", {}).get("p99"))}.
- From the end of the quiet period (`last_instance_at + quiet`) to offered,
  i.e. including the ready sweep's delay: p50 {ms(quiet_end.get("p50"))},
  p99 {ms(quiet_end.get("p99"))}; from the end of the quiet period to `ready_at`
  alone: p50 {ms(sus.get("quiet_end_to_ready", {}).get("p50"))}, p99
  {ms(sus.get("quiet_end_to_ready", {}).get("p99"))}.
- Machine CPU busy while studies arrived: {(sus.get("cpu_busy") or 0):.0%} of 2 cores.
  Worker task runtimes: `routing.route_study` p50
  {ms(sus.get("route_runtime", {}).get("p50"))}, p99 {ms(sus.get("route_runtime", {}).get("p99"))}
  (n={sus.get("route_runtime", {}).get("n")}); `ingest.studies_mark_ready` p50
  {ms(sus.get("mark_ready_runtime", {}).get("p50"))}, p99
  {ms(sus.get("mark_ready_runtime", {}).get("p99"))}
  (n={sus.get("mark_ready_runtime", {}).get("n")}).
  Both run in the same two worker processes, from the same `celery` queue.
- Outcomes: {sus.get("counts")}; worker log errors
  {sus.get("worker_log_problems", {}).get("count")}.

### Escalation sweep with {big.get("studies", 0):,} studies

- Table: {big.get("status_counts")}; {big.get("filler", 0):,} historical studies
  bulk-loaded (COPY, {big.get("load_seconds", 0):.0f} s) with a `StudyRouting` row each
  (no timer) and {args.offers_per_study} offers each, withdrawn as the app withdraws
  them at the final ({big.get("offers", 0):,} offers, {big.get("open_offers", 0):,} open).
  No RoutingDecision/StudyTransition/audit rows for them (the sweep does not read those).
  Sizes: {big.get("sizes")}.
- Open worklist: {max(args.worklist_levels)} fresh studies routed by the app in-process
  just before the history was loaded ({big.get("open_worklist")}); the first
  {sweep.get("open_worklist")} offered ones
  ({sweep.get("open_offers", 0):,} open offers) are the open worklist for the main
  measurement, the others set aside (marked final) meanwhile. 1,000,000 studies
  over 180 days is ~5,600 a day, ~230 an hour: {sweep.get("open_worklist")} waiting is
  a backlog of about two hours. Timers are pushed 1 h out, then before each timed
  sweep {sweep.get("due_per_sweep")} of them are made due (outside the timing).
- `routing.services.routing_sweep(now=...)` in-process, {args.sweeps} times with
  nothing due, {args.due_sweeps} times with {sweep.get("due_per_sweep")} due.
  Nothing due: p50 {ms(si.get("p50"), 2)}, p95 {ms(si.get("p95"), 2)},
  max {ms(si.get("max"), 2)};
  {sweep.get("due_per_sweep")} due: p50 {ms(sd.get("p50"), 2)}, p95 {ms(sd.get("p95"), 2)},
  max {ms(sd.get("max"), 2)}. What the sweeps did: idle {sweep.get("acted_idle")},
  with due {sweep.get("acted_due")}.
{lat_line("Decision latency with this table (in-process `study_route`)", lat_big)}
- Raw-SQL reference with this table: {(raw_big.get("rate") or 0):.0f} studies/s
  (agrees on {raw_big.get("agree")}/{raw_big.get("studies")}).
- Diagnostic, not a target figure (the server default is `jit = on`): the same
  with `SET jit = off` for the session: one decision p50
  {ms(nojit.get("p50"))}, p99 {ms(nojit.get("p99"))} (n={nojit.get("n")}); raw SQL
  {(raw_nojit.get("rate") or 0):.0f} studies/s; sweep with {sweep.get("due_per_sweep")} due
  p50 {ms(sweep.get("due_nojit", {}).get("p50"), 2)}, p95
  {ms(sweep.get("due_nojit", {}).get("p95"), 2)} (n={sweep.get("due_nojit", {}).get("n")}).

Idle sweep time against the size of the open worklist. The offer-eligibility
sweep (`offers_withdraw_ineligible`: every open offer of every offered study
checked against shifts and credentials) is a beat task of its own, every
`OFFER_ELIGIBILITY_SWEEP_SECONDS` (30 s by default), not part of the escalation
sweep; it is timed on its own here (20 runs) and its plan is below:

{level_table()}

By what was decided, with the big table:

{kind_table(lat_big)}

Where the SQL time of one decision goes with the big table
({args.big_capture} decisions captured):

{top_queries(lat_big)}

{profile_table(lat_big)}

Plan of the most expensive query of a decision with the big table (one
captured instance, EXPLAIN ANALYZE):

{indent(lat_big.get("top_plan", ""))}

Query plans (EXPLAIN ANALYZE, BUFFERS; {sweep.get("due_per_sweep")} to 3 timers due):

{plans}

### Fault test

{chr(10).join(fault_lines)}

### Notes

""" + "\n".join(f"- {n}" for n in notes)
    console = table + "\n\n" + "\n".join(f"- {n}" for n in notes)
    return console, section.rstrip() + "\n"


def redelivery_text(fault: dict[str, Any]) -> str:
    red = fault.get("redelivery", {})
    tasks = red.get("tasks", {})
    if not fault.get("in_flight_at_kill"):
        return "nothing was in flight"
    if not tasks:
        return f"not within {red.get('waited_up_to_s', 0):.0f} s of the kill"
    return "; ".join(
        f"study {sid} after {t['seconds_after_kill']:.0f} s, and the task returned "
        f"{t['result']} (the study had already been routed)"
        if t["result"] == "None"
        else f"study {sid} after {t['seconds_after_kill']:.0f} s, task returned {t['result']}"
        for sid, t in tasks.items()
    )


def update_benchmarks(section: str) -> Path:
    path = REPO / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"  # re-read right before writing
    pattern = re.compile(rf"^{re.escape(SECTION_TITLE)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text.rstrip() + "\n")
    return path


# --- main ------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    a = p.add_argument
    a("--quick", action="store_true", help="scaled-down run (a few minutes)")
    a("--seed", type=int, default=20260601)
    a("--radiologists", type=int, default=2000)
    a("--facilities", type=int, default=300)
    a(
        "--claims-per-reader",
        type=float,
        default=2.0,
        help="background claims per on-shift reader (workload caps are 3-10)",
    )
    a(
        "--studies",
        type=int,
        default=5000,
        help="studies routed through the task path (the issue says 20000: about 25 min here)",
    )
    a(
        "--rate-timeout",
        type=float,
        default=None,
        help="seconds allowed for the decision-rate phase (default: studies / 5, at least 600)",
    )
    a("--latency-sample", type=int, default=1000, help="studies timed in-process")
    a("--capture", type=int, default=100, help="decisions whose SQL is captured")
    a("--sustained-rate", type=float, default=20.0)
    a("--sustained-seconds", type=float, default=60.0)
    a("--sustained-concurrency", type=int, default=2)
    a("--sustained-drain-timeout", type=float, default=120.0)
    a("--quiet-seconds", type=float, default=1.0)
    a("--ready-sweep-seconds", type=float, default=0.2)
    a("--poll-interval", type=float, default=0.02)
    a("--fault-studies", type=int, default=300)
    a("--fault-kill-fraction", type=float, default=0.3)
    a("--fault-tier-wait", type=int, default=4)
    a("--fault-accept-timeout", type=int, default=2)
    a("--fault-timeout", type=float, default=420)
    a("--fault-linger", type=float, default=5.0)
    a("--visibility-timeout", type=int, default=20)
    a(
        "--fault-leave-studies",
        type=int,
        default=30,
        help="fault test: offered studies whose readers all go off shift mid-run",
    )
    a("--fault-leave-after", type=float, default=3.0, help="seconds after the sweepers start")
    a(
        "--redelivery-wait",
        type=float,
        default=180,
        help="fault test: seconds after the kill to wait for the lost task's redelivery",
    )
    a("--sweeper-interval", type=float, default=0.5)
    a("--big-table-rows", type=int, default=1_000_000)
    a("--offers-per-study", type=int, default=3)
    a(
        "--open-worklist",
        type=int,
        default=500,
        help="offered studies (open worklist) for the main sweep measurement",
    )
    a(
        "--worklist-levels",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[100, 500, 1000],
        help="open-worklist sizes at which idle sweeps are timed (comma-separated)",
    )
    a("--sweeps", type=int, default=200, help="idle sweeps timed at the main worklist level")
    a("--due-sweeps", type=int, default=50, help="sweeps timed with --due-per-sweep due")
    a("--due-sweeps-nojit", type=int, default=20, help="the same with JIT off (diagnostic)")
    a(
        "--big-latency-sample",
        type=int,
        default=100,
        help="studies timed in-process with the big table",
    )
    a("--big-capture", type=int, default=20, help="decisions captured/profiled, big table")
    a("--due-per-sweep", type=int, default=2)
    a(
        "--skip",
        type=lambda v: [x for x in v.split(",") if x],
        default=[],
        help="phases to leave out: latency, sustained, fault, sweep (comma-separated)",
    )
    a("--database-url", default="postgres://postgres@127.0.0.1:5432")
    a("--db-name", default="telerad_bench_routing")
    a("--redis-url", default="redis://127.0.0.1:6379")
    a("--redis-db", type=int, default=None, help="default: the first empty one in 2..15 (not 9)")
    a("--no-wait", action="store_true", help="do not wait for bench/ingest/run.py to finish")
    a("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    a("--keep", action="store_true", help="keep the database and the work folder")
    a("--json", help="also write the raw results to this file")
    # internal: sweeper subprocess of the fault test
    a("--sweeper", action="store_true", help=argparse.SUPPRESS)
    a("--sweeper-out", help=argparse.SUPPRESS)
    a("--sweeper-stop", help=argparse.SUPPRESS)
    a("--sweeper-start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    a("--sweeper-max-seconds", type=float, default=600.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        for name, value in {
            "radiologists": 2000,
            "facilities": 300,
            "studies": 2000,
            "latency_sample": 300,
            "sustained_seconds": 20,
            "fault_studies": 200,
            "big_table_rows": 100_000,
            "open_worklist": 200,
            "worklist_levels": [100, 200, 500],
            "big_latency_sample": 50,
            "big_capture": 10,
            "sweeps": 50,
            "due_sweeps": 20,
            "due_sweeps_nojit": 10,
        }.items():
            if f"--{name.replace('_', '-')}" not in (argv or sys.argv):
                setattr(args, name, value)
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", args.db_name):
        p.error(f"unsafe database name {args.db_name!r}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(raw_argv)
    if args.sweeper:
        return sweeper_main(args)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    started = time.monotonic()
    waited = 0.0 if args.no_wait else wait_for_ingest(1800)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="bench-routing-"))
    ctx = Ctx(args, work)
    ctx.redis_url = pick_redis_db(args.redis_url, args.redis_db)
    if waited:
        ctx.results["notes"].append(f"waited {waited:.0f} s for bench/ingest/run.py to finish")
    log(f"work folder {work}; Redis {ctx.redis_url}; database {args.db_name}")
    failed = False
    try:
        prepare_database(ctx)
        setup_django(ctx)
        build_network(ctx)
        skip = set(args.skip)
        rate_ids = phase_rate(ctx)
        phase_raw(ctx, rate_ids, "raw")
        lat_ids = [] if "latency" in skip else phase_latency(ctx)
        retire(ctx, rate_ids + lat_ids, "decision-rate and latency")
        if "sustained" not in skip:
            retire(ctx, phase_sustained(ctx), "ready->offered")
        if "fault" not in skip:
            retire(ctx, phase_fault(ctx), "fault-test")
        if "sweep" not in skip:
            phase_big_table(ctx)
        if skip:
            ctx.results["notes"].append(f"phases skipped (--skip): {', '.join(sorted(skip))}")
    except BaseException as exc:
        failed = True
        ctx.results["error"] = f"{type(exc).__name__}: {exc}"
        log(f"FAILED: {type(exc).__name__}: {exc}")
        traceback.print_exc()
    finally:
        PROCS.stop_all()
    elapsed = time.monotonic() - started
    try:
        if failed:
            ctx.results["warnings"].append(f"the run failed: {ctx.results.get('error')}")
        if "rate" in ctx.results:
            console, section = build_report(ctx, elapsed, raw_argv)
            ctx.results["section"] = section
            print("\n" + console + "\n", flush=True)
            if not args.no_write and not failed:
                path = update_benchmarks(section)
                log(f"updated the '{SECTION_TITLE[3:]}' section of {path.name}")
            elif not args.no_write:
                (work / "section.md").write_text(section)
                log(f"run failed: BENCHMARKS.md not touched (section in {work}/section.md)")
        if args.json:
            Path(args.json).write_text(json.dumps(ctx.results, indent=2, default=str))
    finally:
        with contextlib.suppress(Exception):
            if ctx.conn is not None:
                ctx.conn.close()
        if not args.keep:
            with contextlib.suppress(Exception):
                from django.db import connections

                connections.close_all()
            with contextlib.suppress(Exception):
                admin_sql(ctx, f'DROP DATABASE IF EXISTS "{args.db_name}" WITH (FORCE)')
            with contextlib.suppress(Exception):
                import redis

                redis.Redis.from_url(ctx.redis_url).flushdb()
            if not failed:
                import shutil

                shutil.rmtree(work, ignore_errors=True)
        log(f"done in {(time.monotonic() - started) / 60:.1f} min")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
