"""Turnaround benchmark: the facility turnaround query over a 90-day window (grouped
by priority, modality and day) and each operations page query, with 1,000,000
studies over a year for 300 facilities in PostgreSQL; timed at the database and
end to end through the API (gunicorn, production settings).  Also times a
``/metrics`` scrape.

Run from the repository root:

    .venv/bin/python bench/turnaround/run.py            # full size, about 15 minutes
    .venv/bin/python bench/turnaround/run.py --quick    # 50,000 studies, about 2 minutes

The server it starts is stopped (process group) even on failure; the benchmark
database (``bench_turnaround``) is dropped unless ``--keep``.  Target: p95 < 300 ms.
"""

# ruff: noqa: S311, S603, S607
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import os
import platform
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO), str(HERE)]

SECTION_TITLE = "## Turnaround (bench/turnaround)"
TARGET = 0.300  # seconds, p95
WINDOW_DAYS = 90
WARMUP = 3
# /metrics settles its counters over a few scrapes per process (see turnaround.metrics).
METRICS_WARMUP = 10
UTC = dt.UTC


def log(message: str) -> None:
    stamp = dt.datetime.now().strftime("%H:%M:%S")  # noqa: DTZ005 - a console timestamp
    print(f"[{stamp}] {message}", flush=True)


def pct(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(-(-p * len(ordered) // 100)) - 1))
    return ordered[k]


def ms(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x * 1000:.{digits}f} ms"


def loadavg() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


def other_work() -> list[str]:
    """Other heavy processes now (benchmarks, test runs): they share the 2 cores."""
    result = subprocess.run(
        ["pgrep", "-af", r"bench/[a-z_]+/run\.py|pytest|postgres: .* (SELECT|INSERT|UPDATE)"],
        capture_output=True,
        text=True,
        check=False,
    )
    found = []
    for line in result.stdout.splitlines():
        pid, _, cmd = line.partition(" ")
        if pid.isdigit() and int(pid) != os.getpid() and "bench/turnaround/" not in cmd:
            # Only the program's name of any absolute path: no machine's folders here.
            found.append(re.sub(r"(?<!\S)(?:/[^\s/]+)+/([^\s/]+)", r"\1", cmd.strip())[:120])
    return found


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


# --- measurements ----------------------------------------------------------------


@dataclass
class Case:
    """One query (or one page's set of queries), timed at the database and through the API."""

    key: str
    label: str
    kind: str  # "facility", "operations" or "metrics"
    db: list[float] = field(default_factory=list)  # seconds in cursor.execute, per call
    wall: list[float] = field(default_factory=list)  # the selector call, in process
    statements: int = 0
    api: list[float] = field(default_factory=list)
    api_path: str = ""
    slowest_sql: tuple[str, Any] | None = None
    slowest_seconds: float = 0.0
    plan: str = ""


class Timer:
    """A Django execute wrapper adding up the time spent in the database driver."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.count = 0
        self.slowest: tuple[float, str, Any] = (0.0, "", None)

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            took = time.perf_counter() - start
            self.seconds += took
            self.count += 1
            if took > self.slowest[0]:
                self.slowest = (took, sql, params)


@contextlib.contextmanager
def timed() -> Iterator[Timer]:
    from django.db import connection

    timer = Timer()
    with connection.execute_wrapper(timer):
        yield timer


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.base_url = args.database_url.rstrip("/")
        self.db_url = f"{self.base_url}/{args.db_name}"
        self.conn: Any = None
        self.net: Any = None
        self.loaded: Any = None
        self.now = dt.datetime.now(UTC).replace(microsecond=0)
        self.server: subprocess.Popen[bytes] | None = None
        self.server_description = ""
        self.notes: list[str] = []
        self.others: list[str] = []

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "teleradiology.settings",
            "DJANGO_ENV": "development",
            "DATABASE_URL": self.db_url,
            "REDIS_URL": "",
            "VAR_DIR": str(self.work / "var"),
            "DEBUG": "false",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }

    def look_for_other_work(self) -> None:
        for item in other_work():
            if item not in self.others:
                self.others.append(item)


def admin_sql(bench: Bench, *statements: str) -> None:
    import psycopg

    with psycopg.connect(f"{bench.base_url}/postgres", autocommit=True) as conn:
        for s in statements:
            conn.execute(s)


def prepare_database(bench: Bench) -> None:
    name = bench.args.db_name
    log(f"creating database {name} and migrating")
    admin_sql(bench, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=REPO,
        env=bench.env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"migrate failed:\n{result.stderr[-3000:]}")


def setup_django(bench: Bench) -> None:
    os.environ.update(bench.env())
    import django

    django.setup()
    import psycopg

    bench.conn = psycopg.connect(bench.db_url, autocommit=True)


def load_data(bench: Bench) -> None:
    import datagen

    a = bench.args
    shape = datagen.Shape(
        studies=a.studies,
        facilities=a.facilities,
        groups=a.groups,
        readers_per_group=a.readers_per_group,
        days=a.days,
        seed=a.seed,
    )
    rng = random.Random(a.seed)
    log(f"building the network: {a.groups} groups, {a.facilities} facilities")
    bench.net = datagen.build_network(shape, rng, now=bench.now)
    log(f"generating and loading {a.studies:,} studies over {a.days:g} days")
    bench.loaded = datagen.load(bench.conn, bench.net, shape, now=bench.now, work=bench.work)
    for step, seconds in bench.loaded.seconds.items():
        log(f"  {step}: {seconds:.1f} s")


def facility_sizes(bench: Bench, date_from: dt.date) -> list[tuple[int, int]]:
    """(facility, studies in the window), largest first."""
    rows = bench.conn.execute(
        "SELECT facility_id, COUNT(*) FROM studies_study WHERE received_at >= %s "
        "GROUP BY facility_id ORDER BY 2 DESC, 1",
        [dt.datetime.combine(date_from, dt.time(), tzinfo=UTC) - dt.timedelta(days=1)],
    ).fetchall()
    return [(int(f), int(n)) for f, n in rows]


def rotation(bench: Bench, sizes: list[tuple[int, int]]) -> list[int]:
    """The facilities queried, in turn: the ten largest and twenty others at random."""
    rng = random.Random(bench.args.seed + 1)
    largest = [f for f, _ in sizes[:10]]
    rest = [f for f, _ in sizes[10:]]
    return largest + rng.sample(rest, min(20, len(rest)))


def users_by_group(bench: Bench) -> dict[int, Any]:
    from django.contrib.auth.models import User

    return {
        group: User.objects.get(username=name) for group, name in bench.net.admin_usernames.items()
    }


def measure_db(bench: Bench, cases: dict[str, Case]) -> dict[str, Any]:
    """Each selector as the API calls it, in this process: the time inside the
    database driver (every statement it sends, summed) and the whole call."""
    from prometheus_client import generate_latest

    from turnaround import operations, selectors
    from turnaround.metrics import metrics_registry

    n = bench.args.iterations
    date_to = bench.now.date()
    date_from = date_to - dt.timedelta(days=WINDOW_DAYS - 1)
    sizes = facility_sizes(bench, date_from)
    order = rotation(bench, sizes)
    admins = users_by_group(bench)
    group_of = bench.net.facility_group
    size = dict(sizes)
    facts = {
        "window": f"{date_from} to {date_to}",
        "largest facility (studies in window)": sizes[0][1] if sizes else 0,
        "median facility (studies in window)": sizes[len(sizes) // 2][1] if sizes else 0,
        "rotation sizes": sorted((size.get(f, 0) for f in order), reverse=True),
    }

    def run(case: Case, call: Callable[[int], Any]) -> None:
        warmup = METRICS_WARMUP if case.kind == "metrics" else WARMUP
        for i in range(n + warmup):
            with timed() as timer:
                start = time.perf_counter()
                call(i)
                wall = time.perf_counter() - start
            if i < warmup:
                continue
            case.db.append(timer.seconds)
            case.wall.append(wall)
            case.statements = timer.count
            if timer.slowest[0] > case.slowest_seconds:
                case.slowest_seconds = timer.slowest[0]
                case.slowest_sql = (timer.slowest[1], timer.slowest[2])

    for group_by in ("priority", "modality", "day"):
        case = cases[f"facility-{group_by}"]
        log(f"database: {case.label} x {n}")

        def facility_call(i: int, group_by: str = group_by) -> Any:
            facility = order[i % len(order)]
            return selectors.turnaround_summary(
                user=admins[group_of[facility]],
                facility_id=facility,
                date_from=date_from,
                date_to=date_to,
                group_by=group_by,
                now=bench.now,
            )

        run(case, facility_call)

    groups = bench.net.group_ids
    group_rows = {g: operations.operations_groups(user=admins[g], group_id=g) for g in groups}
    ops_calls: dict[str, Callable[[int], Any]] = {
        "ops-groups": lambda i: operations.operations_groups(
            user=admins[groups[i % len(groups)]], group_id=groups[i % len(groups)]
        ),
        "ops-queue": lambda i: operations.queue_by_tier_and_priority(
            groups=group_rows[groups[i % len(groups)]], now=bench.now
        ),
        "ops-at-risk": lambda i: list(
            operations.studies_at_risk(groups=group_rows[groups[i % len(groups)]], now=bench.now)[
                :100
            ]
        ),
        "ops-unroutable": lambda i: list(
            operations.studies_unroutable(groups=group_rows[groups[i % len(groups)]])[:100]
        ),
        "ops-load": lambda i: operations.reader_load(
            groups=group_rows[groups[i % len(groups)]], now=bench.now
        ),
        "ops-all": lambda i: operations.operations_snapshot(
            user=admins[groups[i % len(groups)]], group_id=groups[i % len(groups)], now=bench.now
        ),
        "metrics": lambda i: generate_latest(metrics_registry(now=bench.now)),
    }
    for key, call in ops_calls.items():
        log(f"database: {cases[key].label} x {n}")
        run(cases[key], call)
    snapshot = operations.operations_snapshot(
        user=admins[groups[0]], group_id=groups[0], now=bench.now
    )
    facts["operations, first group"] = {
        "queue (offered)": sum(r["studies"] for r in snapshot.queue),
        "at risk": snapshot.at_risk_total,
        "unroutable": snapshot.unroutable_total,
        "readers listed": len(snapshot.load),
        "fairness CV": snapshot.fairness[0].coefficient_of_variation,
    }
    return facts


def explain(bench: Bench, case: Case) -> None:
    from django.db import connection

    if case.slowest_sql is None:
        return
    sql, params = case.slowest_sql
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        case.plan = "\n".join(row[0] for row in cursor.fetchall())


# --- the API -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(bench: Bench) -> int:
    import secrets

    a = bench.args
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "teleradiology.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--worker-class",
        "gthread",
        "--workers",
        str(a.server_workers),
        "--threads",
        str(a.server_threads),
        "--error-logfile",
        "-",
    ]
    bench.server_description = (
        f"gunicorn ({a.server_workers} workers x {a.server_threads} threads, gthread), "
        "production settings (DEBUG off)"
    )
    env = bench.env(
        DJANGO_ENV="production",
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        REDIS_URL=a.redis_url,
        METRICS_TOKEN=bench.net.metrics_token,
    )
    log(f"starting the server: {bench.server_description}")
    out = (bench.work / "server.log").open("ab")
    bench.server = subprocess.Popen(
        argv,
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if bench.server.poll() is not None:
            raise RuntimeError(f"the server exited: {(bench.work / 'server.log').read_text()}")
        with contextlib.suppress(OSError):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz", headers={"X-Forwarded-Proto": "https"})
            conn.getresponse().read()
            conn.close()
            return port
        time.sleep(0.3)
    raise TimeoutError("the server did not answer within 60 s")


def stop_server(bench: Bench) -> None:
    proc = bench.server
    if proc is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    bench.server = None


def measure_api(bench: Bench, port: int, cases: dict[str, Case]) -> None:
    """Sequential requests on one keep-alive connection, as one user would send them."""
    n = bench.args.api_iterations
    date_to = bench.now.date()
    date_from = date_to - dt.timedelta(days=WINDOW_DAYS - 1)
    order = rotation(bench, facility_sizes(bench, date_from))
    groups = bench.net.group_ids
    group_of = bench.net.facility_group
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(path: str, authorization: str) -> float:
        start = time.perf_counter()
        conn.request(
            "GET", path, headers={"Authorization": authorization, "X-Forwarded-Proto": "https"}
        )
        response = conn.getresponse()
        body = response.read()
        took = time.perf_counter() - start
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status} {body[:300]!r}")
        return took

    def token(group: int) -> str:
        return f"Token {bench.net.admin_tokens[group]}"

    plans: dict[str, Callable[[int], tuple[str, str]]] = {}
    for group_by in ("priority", "modality", "day"):

        def facility_path(i: int, group_by: str = group_by) -> tuple[str, str]:
            facility = order[i % len(order)]
            query = urllib.parse.urlencode(
                {"facility": facility, "from": date_from, "to": date_to, "group_by": group_by}
            )
            return f"/api/v1/turnaround/?{query}", token(group_of[facility])

        plans[f"facility-{group_by}"] = facility_path
    plans["ops-all"] = lambda i: (
        f"/api/v1/operations/?group={groups[i % len(groups)]}",
        token(groups[i % len(groups)]),
    )
    plans["metrics"] = lambda i: ("/metrics", f"Bearer {bench.net.metrics_token}")
    for key, plan in plans.items():
        case = cases[key]
        log(f"API: {case.label} x {n}")
        # Each server process settles its own /metrics tallies: warm them all up.
        warmup = METRICS_WARMUP * bench.args.server_workers if key == "metrics" else WARMUP
        for i in range(n + warmup):
            path, authorization = plan(i)
            took = get(path, authorization)
            if i >= warmup:
                case.api.append(took)
        case.api_path = plan(0)[0]
    conn.close()


# --- the report ----------------------------------------------------------------------


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


def versions(bench: Bench) -> str:
    import django
    import psycopg

    parts = [
        f"Python {platform.python_version()}",
        f"Django {django.get_version()}",
        f"psycopg {psycopg.__version__}",
    ]
    with contextlib.suppress(Exception):
        pg = str(bench.conn.execute("SHOW server_version").fetchone()[0]).split()[0]
        parts.append(f"PostgreSQL {pg}")
        settings = ", ".join(
            f"{n}={s}"
            for n, s in bench.conn.execute(
                "SELECT name, current_setting(name) FROM pg_settings WHERE name IN "
                "('shared_buffers', 'work_mem', 'jit', 'max_parallel_workers_per_gather') "
                "ORDER BY name"
            )
        )
        parts.append(f"({settings})")
    return ", ".join(parts)


def verdict(value: float | None) -> str:
    if value is None:
        return "-"
    return "met" if value < TARGET else "**not met**"


def build_report(bench: Bench, cases: dict[str, Case], facts: dict[str, Any]) -> str:
    a = bench.args
    m = machine()
    loaded = bench.loaded
    status = ", ".join(f"{k} {v:,}" for k, v in sorted(loaded.status_counts.items()))
    lines = [
        SECTION_TITLE,
        "",
        f"Run on {bench.now:%Y-%m-%d %H:%M} UTC, {m['cpus']} cores ({m['model']}), "
        f"{m['memory']}; {versions(bench)}.",
        "",
    ]
    if bench.others:
        lines += [
            "**Other work was running on the machine at the same time** (figures are "
            f"pessimistic; load average {loadavg()} at the end): "
            + "; ".join(f"`{o}`" for o in bench.others[:6])
            + ("; …" if len(bench.others) > 6 else "")
            + ".",
            "",
        ]
    lines += [
        f"    .venv/bin/python bench/turnaround/run.py{' ' + ' '.join(a.argv) if a.argv else ''}",
        "",
        f"Data: {loaded.studies:,} studies over {a.days:g} days for {a.facilities} facilities "
        f"in {a.groups} reading groups ({a.groups * a.readers_per_group} readers; facility "
        f"volumes Zipf-distributed), by status: {status}; {loaded.routing:,} routing rows, "
        f"{loaded.decisions:,} routing decisions, {loaded.transitions:,} claim transitions, "
        f"{loaded.alerts:,} SLA breach alerts. Loaded with COPY in "
        f"{sum(loaded.seconds.values()):.0f} s. 90-day window {facts['window']}: the largest "
        f"facility received {facts['largest facility (studies in window)']:,} studies in it, "
        f"the median one {facts['median facility (studies in window)']:,}; the facility "
        "queries rotate over the 10 largest and 20 others at random.",
        "",
        f"Operations, first group: {json.dumps(facts['operations, first group'])}.",
        "",
        f"Target: p95 < {TARGET * 1000:.0f} ms. *Database*: time inside the database driver "
        "(every statement the selector sends, summed), measured in process around the "
        f"selector the API calls, {a.iterations} calls after {WARMUP} warm-up calls. *API*: "
        f"end to end over HTTP on one keep-alive connection, {a.api_iterations} requests "
        f"after {WARMUP} warm-up, {bench.server_description}.",
        "",
        "| query | statements | database p50 | database p95 | in-process p95 | API p50 | "
        "API p95 | target |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for case in cases.values():
        worst = max(
            (v for v in (pct(case.db, 95), pct(case.api, 95)) if v is not None), default=None
        )
        lines.append(
            f"| {case.label} | {case.statements} | {ms(pct(case.db, 50))} | "
            f"{ms(pct(case.db, 95))} | {ms(pct(case.wall, 95))} | {ms(pct(case.api, 50))} | "
            f"{ms(pct(case.api, 95))} | {verdict(worst)} |"
        )
    slowest = max(cases.values(), key=lambda c: pct(c.db, 95) or 0.0)
    lines += [
        "",
        "The operations page (`GET /api/v1/operations/`) runs the five operations queries "
        "above (the row *operations page, all*); the page's htmx refresh calls the same "
        "selector. Indexes added for these reads: `routing_unroutable_idx` (partial: the "
        "few unroutable studies) and, for the `/metrics` turnaround histogram, "
        "`study_finalized_idx`. `/metrics` counters are exact but counted incrementally "
        "(rows up to a settled id once per process, then a primary-key range): the first "
        f"{METRICS_WARMUP} scrapes of each process (warm-up, not timed) count whole tables.",
        "",
    ]
    for note in bench.notes:
        lines += [note, ""]
    if slowest.plan:
        sql = slowest.slowest_sql[0] if slowest.slowest_sql else ""
        lines += [
            f"Plan of the slowest statement of the slowest case ({slowest.label}), "
            "EXPLAIN (ANALYZE, BUFFERS):",
            "",
            "<details><summary>SQL and plan</summary>",
            "",
            "```sql",
            re.sub(r"\s+", " ", sql).strip()[:3000],
            "```",
            "",
            "```",
            slowest.plan,
            "```",
            "",
            "</details>",
        ]
    return "\n".join(lines) + "\n"


def update_benchmarks(section: str) -> Path:
    path = REPO / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION_TITLE)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text.rstrip() + "\n")
    return path


# --- main ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--studies", type=int, default=1_000_000)
    p.add_argument("--facilities", type=int, default=300)
    p.add_argument("--groups", type=int, default=6, help="reading groups (facilities split evenly)")
    p.add_argument("--readers-per-group", type=int, default=100)
    p.add_argument("--days", type=float, default=365.0)
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--iterations", type=int, default=60, help="timed calls per query")
    p.add_argument("--api-iterations", type=int, default=40, help="timed requests per query")
    p.add_argument("--quick", action="store_true", help="50,000 studies, 20 iterations")
    p.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432")
    p.add_argument("--db-name", default="bench_turnaround")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/3")
    p.add_argument("--server-workers", type=int, default=2)
    p.add_argument("--server-threads", type=int, default=4)
    p.add_argument("--no-api", action="store_true", help="database only")
    p.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    p.add_argument("--keep", action="store_true", help="keep the database and the work folder")
    p.add_argument("--json", type=Path, help="also write the raw timings here")
    args = p.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    if args.quick:
        args.studies = min(args.studies, 50_000)
        args.iterations = min(args.iterations, 20)
        args.api_iterations = min(args.api_iterations, 20)
    return args


def make_cases() -> dict[str, Case]:
    specs = [
        ("facility-priority", "facility turnaround, 90 days, by priority", "facility"),
        ("facility-modality", "facility turnaround, 90 days, by modality", "facility"),
        ("facility-day", "facility turnaround, 90 days, by day", "facility"),
        ("ops-groups", "operations: the admin's groups", "operations"),
        ("ops-queue", "operations: queue by tier and priority", "operations"),
        ("ops-at-risk", "operations: studies at risk (first 100 + total)", "operations"),
        ("ops-unroutable", "operations: unroutable (first 100 + total)", "operations"),
        ("ops-load", "operations: readers' load and fairness", "operations"),
        ("ops-all", "operations page, all (the API's one call)", "operations"),
        ("metrics", "`/metrics` scrape (all families)", "metrics"),
    ]
    return {key: Case(key=key, label=label, kind=kind) for key, label, kind in specs}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    work = Path(tempfile.mkdtemp(prefix="bench-turnaround-"))
    bench = Bench(args, work)
    cases = make_cases()
    failed = False
    try:
        bench.look_for_other_work()
        prepare_database(bench)
        setup_django(bench)
        load_data(bench)
        bench.look_for_other_work()
        facts = measure_db(bench, cases)
        bench.look_for_other_work()
        slowest = max(cases.values(), key=lambda c: pct(c.db, 95) or 0.0)
        explain(bench, slowest)
        if not args.no_api:
            port = start_server(bench)
            try:
                measure_api(bench, port, cases)
            finally:
                stop_server(bench)
        bench.look_for_other_work()
        section = build_report(bench, cases, facts)
        print()
        print(section)
        if not args.no_write:
            log(f"updated {update_benchmarks(section)}")
        if args.json:
            args.json.write_text(
                json.dumps(
                    {k: {"db": c.db, "wall": c.wall, "api": c.api} for k, c in cases.items()},
                    indent=1,
                )
            )
    except BaseException:
        failed = True
        traceback.print_exc()
    finally:
        stop_server(bench)
        if bench.conn is not None:
            bench.conn.close()
        if not args.keep:
            with contextlib.suppress(Exception):
                from django.db import connections

                connections.close_all()
            with contextlib.suppress(Exception):
                admin_sql(bench, f'DROP DATABASE IF EXISTS "{args.db_name}" WITH (FORCE)')
            subprocess.run(["rm", "-rf", str(work)], check=False)
        else:
            log(f"kept the database {args.db_name} and {work}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
