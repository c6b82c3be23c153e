"""What the routing benchmark's phases share: the run's state, the benchmark's
own rows (studies COPYed in, taken off the worklist between phases), Celery
workers and their logs, and SQL helpers (plans, normalised statements)."""

# ruff: noqa: S311, S608
from __future__ import annotations

import contextlib
import datetime as dt
import random
import re
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import REPO, host
from bench.database import Database
from bench.harness import Run, log
from bench.servers import app_env, celery_worker_argv
from bench.supervise import PROCS

UTC = dt.UTC
STOP_TIMEOUT = 20  # seconds for a worker's warm shutdown before SIGKILL


def utcnow() -> dt.datetime:
    return dt.datetime.now(UTC)


# --- environment ---------------------------------------------------------------

INGEST_RX = r"-m bench\.ingest(\s|$)|bench/ingest/run\.py"


def ingest_running() -> bool:
    """Whether the ingest benchmark is running (it takes both cores)."""
    return bool(host.processes_matching(INGEST_RX))


class Ctx:
    """What every phase needs."""

    def __init__(self, run: Run, redis_url: str) -> None:
        self.run = run
        self.args = run.args
        self.work = run.work
        self.db = Database(self.args.database_url, self.args.db_name)
        self.db_url = self.db.url()
        self.redis_url = redis_url
        self.results = run.results
        self.net: Any = None
        self.maker: Any = None
        self.conn: Any = None  # psycopg autocommit connection for bulk work and polling

    def env(self, **extra: str) -> dict[str, str]:
        return app_env(
            database_url=self.db_url,
            redis_url=self.redis_url,
            var_dir=str(self.work / "var"),
            EMAIL_BACKEND="django.core.mail.backends.dummy.EmailBackend",
            LOG_LEVEL="INFO",
            **extra,
        )

    def check_ingest(self, phase: str) -> None:
        if ingest_running():
            self.run.warn(f"the ingest benchmark was running during the {phase} phase (shared CPU)")


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
    argv = celery_worker_argv(
        hostname=f"{name}@%h", pool=pool, concurrency=concurrency, queues=queues
    )
    proc = PROCS.start(argv, env=env or ctx.env(), log_path=log_path)
    return proc, log_path


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
    from bench.routing.netgen import copy_models
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
    from bench.routing.netgen import StudyMaker, generate_network

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


def decided_count(ctx: Ctx, first: int, last: int) -> int:
    return int(
        ctx.conn.execute(
            "SELECT count(*) FROM routing_studyrouting WHERE study_id BETWEEN %s AND %s",
            (first, last),
        ).fetchone()[0]
    )


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


def plan_time(plan: str) -> float | None:
    found = re.search(r"Execution Time: ([0-9.]+) ms", plan)
    return float(found.group(1)) if found else None


def set_jit(on: bool) -> None:
    """PostgreSQL's JIT for this process's Django connection (on = the server default)."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("RESET jit" if on else "SET jit = off")
