"""Worklist benchmark: the worklist query of a busy radiologist (first page, keyset
next page, with and without filters) with 1,000,000 studies and 5,000,000 offers
in PostgreSQL, timed at the database and end to end through the API over HTTP.

Run from the repository root:

    .venv/bin/python bench/worklist/run.py            # full size, about 15 minutes
    .venv/bin/python bench/worklist/run.py --quick    # 50,000 studies, about 3 minutes

See bench/worklist/README.md.  The server it starts is stopped (process group)
even on failure; the benchmark database is dropped unless ``--keep``.
"""

# ruff: noqa: S311, S603, S607, S608
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
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO), str(HERE)]

SECTION_TITLE = "## Worklist (bench/worklist)"
WORKLIST_PATH = "/api/v1/worklist/"
DB_TARGET = 0.005  # seconds, p95 at the database
API_TARGET = 0.100  # seconds, p95 end to end
UTC = dt.UTC


# --- small helpers -------------------------------------------------------------


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


def summary(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "mean": statistics.fmean(values),
        "min": min(values),
        "p50": pct(values, 50),
        "p95": pct(values, 95),
        "p99": pct(values, 99),
        "max": max(values),
    }


def ms(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x * 1000:.{digits}f} ms"


def other_benchmarks() -> list[str]:
    """Command lines of other benchmarks running now (they share the 2 cores)."""
    result = subprocess.run(
        ["pgrep", "-af", r"bench/[a-z_]+/run\.py"], capture_output=True, text=True, check=False
    )
    found = []
    for line in result.stdout.splitlines():
        pid, _, cmd = line.partition(" ")
        if pid.isdigit() and int(pid) != os.getpid() and "bench/worklist/" not in cmd:
            found.append(cmd.strip())
    return found


def loadavg() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


# --- the run ---------------------------------------------------------------------


@dataclass
class Case:
    """One worklist request: query parameters, and how many "next" links to follow."""

    key: str
    label: str
    params: list[tuple[str, str]]
    follow: int = 0
    # Filled in by capture():
    path: str = ""
    sqls: list[str] = field(default_factory=list)  # the page's SQL, in order
    rows: int = 0
    matching: int | None = None
    first_ids: list[int] = field(default_factory=list)
    queries: list[dict[str, Any]] = field(default_factory=list)
    next_cursor: str | None = None


class Bench:
    """What every step needs."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.base_url = args.database_url.rstrip("/")
        self.db_url = f"{self.base_url}/{args.db_name}"
        self.results: dict[str, Any] = {"notes": [], "warnings": []}
        self.conn: Any = None  # psycopg autocommit connection (bulk load, facts)
        self.net: Any = None
        self.server: subprocess.Popen[bytes] | None = None

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "teleradiology.settings",
            "DJANGO_ENV": "development",
            "DATABASE_URL": self.db_url,
            "REDIS_URL": "",  # listing the worklist enqueues nothing
            "VAR_DIR": str(self.work / "var"),
            "DEBUG": "false",  # as deployed: no per-query bookkeeping
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }

    def warn_if_busy(self, phase: str) -> None:
        others = other_benchmarks()
        if others:
            msg = f"another benchmark was running during the {phase}: {'; '.join(others)}"
            log("WARNING: " + msg)
            if msg not in self.results["warnings"]:
                self.results["warnings"].append(msg)


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


def shape_of(args: argparse.Namespace) -> Any:
    from datagen import Shape

    return Shape(
        studies=args.studies,
        offers=args.offers,
        offered=args.offered,
        claimed=args.claimed,
        preliminary=args.preliminary,
        ready=args.ready,
        receiving=args.receiving,
        radiologists=args.radiologists,
        facilities=args.facilities,
        busy_share=args.busy_share,
        busy_history_share=args.busy_history_share,
        busy_claims=args.busy_claims,
        history_withdrawn=args.history_withdrawn,
        days=args.days,
        seed=args.seed,
    )


def load_data(bench: Bench) -> None:
    import datagen

    args = bench.args
    shape = shape_of(args)
    now = dt.datetime.now(UTC).replace(microsecond=0)
    log("building the reading network (ORM)")
    bench.net = datagen.build_network(shape, random.Random(args.seed))
    log(f"generating and loading {args.studies:,} studies and {args.offers:,} offers (COPY)")
    t0 = time.monotonic()
    loaded = datagen.load(bench.conn, bench.net, shape, bench.work, now=now, log=log)
    load_seconds = time.monotonic() - t0
    log("VACUUM ANALYZE")
    t0 = time.monotonic()
    bench.conn.execute("VACUUM (ANALYZE)")
    vacuum_seconds = time.monotonic() - t0
    bench.results["data"] = {
        "generated_at": now.isoformat(),
        "studies": loaded.studies,
        "offers": loaded.offers,
        "routing_rows": loaded.routing,
        "status_counts": dict(loaded.status_counts.most_common()),
        "offer_counts": dict(loaded.offer_counts.most_common()),
        "busy_offers": dict(loaded.busy.most_common()),
        "load_seconds": load_seconds,
        "copy_seconds": loaded.seconds,
        "vacuum_analyze_seconds": vacuum_seconds,
    }


def facts(bench: Bench) -> dict[str, Any]:
    """Sizes and the busy reader's worklist, straight from the database."""
    conn = bench.conn
    busy = bench.net.busy_reader_id
    out: dict[str, Any] = {}
    out["busy_open_on_offered"] = conn.execute(
        "SELECT count(*) FROM worklist_offer o JOIN studies_study s ON s.id = o.study_id "
        "WHERE o.radiologist_id = %s AND o.withdrawn_at IS NULL AND s.status = 'offered'",
        (busy,),
    ).fetchone()[0]
    out["busy_open_total"] = conn.execute(
        "SELECT count(*) FROM worklist_offer WHERE radiologist_id = %s AND withdrawn_at IS NULL",
        (busy,),
    ).fetchone()[0]
    out["busy_offers_total"] = conn.execute(
        "SELECT count(*) FROM worklist_offer WHERE radiologist_id = %s", (busy,)
    ).fetchone()[0]
    out["open_offers_total"] = conn.execute(
        "SELECT count(*) FROM worklist_offer WHERE withdrawn_at IS NULL"
    ).fetchone()[0]
    out["open_on_offered_total"] = conn.execute(
        "SELECT count(*) FROM worklist_offer o JOIN studies_study s ON s.id = o.study_id "
        "WHERE o.withdrawn_at IS NULL AND s.status = 'offered'"
    ).fetchone()[0]
    out["busy_claimed"] = conn.execute(
        "SELECT count(*) FROM studies_study WHERE assigned_radiologist_id = %s "
        "AND status IN ('claimed', 'preliminary')",
        (busy,),
    ).fetchone()[0]
    out["sizes"] = {
        name: f"{size / (1 << 20):.1f} MiB"
        for name, size in conn.execute(
            "SELECT c.relname, pg_relation_size(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public' "
            "WHERE c.relname IN ('studies_study', 'worklist_offer', 'routing_studyrouting') "
            "OR (c.relkind = 'i' AND (c.relname LIKE 'study%%' OR c.relname LIKE 'offer%%' "
            "OR c.relname LIKE 'worklist_offer%%' OR c.relname = 'studies_study_pkey')) "
            "ORDER BY c.relname"
        ).fetchall()
    }
    out["indexes"] = [
        row[0]
        for row in conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename IN ('studies_study', "
            "'worklist_offer') ORDER BY tablename, indexname"
        ).fetchall()
    ]
    return out


def pick_facility(bench: Bench) -> int:
    """The facility with most studies on the busy reader's worklist ("my hospital")."""
    row = bench.conn.execute(
        "SELECT s.facility_id, count(*) FROM worklist_offer o "
        "JOIN studies_study s ON s.id = o.study_id "
        "WHERE o.radiologist_id = %s AND o.withdrawn_at IS NULL AND s.status = 'offered' "
        "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1",
        (bench.net.busy_reader_id,),
    ).fetchone()
    return int(row[0])


def make_cases(bench: Bench) -> list[Case]:
    fac = str(pick_facility(bench))
    stat_urgent = [("priority", "1"), ("priority", "2")]
    # The deepest page the worklist has (50 rows a page), at most --deep-page.
    worklist = int(bench.results["facts"]["busy_open_on_offered"])
    deep = min(bench.args.deep_page, max(1, (worklist - 1) // 50 + 1))
    if deep < bench.args.deep_page:
        bench.results["notes"].append(
            f"the worklist has {worklist} rows: the deep page is page {deep}, "
            f"not {bench.args.deep_page}"
        )
    cases = [
        Case("first", "first page, no filter", []),
        Case("next", "next page (keyset cursor), no filter", [], follow=1),
        Case("deep", f"page {deep} (cursor after cursor), no filter", [], follow=deep - 1),
        Case("modality", "first page, modality=CT", [("modality", "CT")]),
        Case("modality-next", "next page, modality=CT", [("modality", "CT")], follow=1),
        Case("priority", "first page, priority=1,2 (STAT, urgent)", stat_urgent),
        Case("facility", "first page, facility=<the reader's top facility>", [("facility", fac)]),
        Case(
            "combined",
            "first page, modality=CT + priority=1,2 + facility",
            [("modality", "CT"), *stat_urgent, ("facility", fac)],
        ),
        Case("tier", "first page, tier=0", [("tier", "0")]),
        Case("subspecialty", "first page, subspecialty=neuro", [("subspecialty", "neuro")]),
    ]
    if deep < 3:
        cases = [c for c in cases if c.key != "deep"]
    bench.results["filter_facility"] = int(fac)
    return cases


# --- the app's SQL, captured in-process ---------------------------------------------


def is_page_query(sql: str) -> bool:
    """A read of studies or offers: the page (one query today; if the app ever reads
    the page in several, all of them are timed together)."""
    return sql.lstrip().upper().startswith("SELECT") and (
        '"studies_study"' in sql or '"worklist_offer"' in sql
    )


def capture(bench: Bench, cases: Sequence[Case]) -> None:
    """Send each case's request through the app in-process (Django's test client, the
    same view, filters and pagination) and keep the SQL it sent for the page."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    auth = {"HTTP_AUTHORIZATION": f"Token {bench.net.token}"}
    for case in cases:
        params = list(case.params)
        cursor: str | None = None
        for hop in range(case.follow + 1):
            query = params + ([("cursor", cursor)] if cursor else [])
            path = WORKLIST_PATH + ("?" + urllib.parse.urlencode(query) if query else "")
            with CaptureQueriesContext(connection) as captured:
                response = client.get(path, **auth)  # type: ignore[arg-type]
            if response.status_code != 200:
                raise RuntimeError(f"{case.key}: {path} -> {response.status_code}")
            body = response.json()
            if hop < case.follow:
                if not body["next"]:
                    raise RuntimeError(f"{case.key}: no next page after page {hop + 1}")
                cursor = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(body["next"]).query))[
                    "cursor"
                ]
                continue
            sqls = [q["sql"] for q in captured.captured_queries]
            case.sqls = [s for s in sqls if is_page_query(s)]
            if not case.sqls:
                raise RuntimeError(f"{case.key}: no query of studies or offers was sent")
            case.path = path
            case.rows = len(body["results"])
            case.first_ids = [r["id"] for r in body["results"]]
            case.queries = [
                {"sql": q["sql"], "seconds": float(q["time"])} for q in captured.captured_queries
            ]
            case.next_cursor = (
                dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(body["next"]).query))["cursor"]
                if body["next"]
                else None
            )
        limited = [q for q in case.sqls if re.search(r" LIMIT \d+$", q)]
        if limited:  # how many rows match the filters (and lie after the cursor)
            unlimited = re.sub(r" LIMIT \d+$", "", limited[0])
            case.matching = int(
                bench.conn.execute(f"SELECT count(*) FROM ({unlimited}) AS page").fetchone()[0]
            )
        log(
            f"  {case.key}: {case.rows} rows on the page, {_count(case.matching)} match after "
            f"the cursor/filters; {len(case.sqls)} page quer{'y' if len(case.sqls) == 1 else 'ies'}"
            f", {len(case.queries)} SQL statements per request"
        )
    connection.close()


# --- at the database -----------------------------------------------------------------


def db_connection(bench: Bench) -> Any:
    """A connection that sends SQL as Django's psycopg backend does: client-side
    binding (``ClientCursor``), never prepared, so every run is parsed and planned."""
    import psycopg

    return psycopg.connect(
        bench.db_url,
        autocommit=True,
        cursor_factory=psycopg.ClientCursor,
        prepare_threshold=None,
        options="-c timezone=UTC",
    )


def plan_times(plan: str) -> tuple[float | None, float | None]:
    planning = re.search(r"Planning Time: ([0-9.]+) ms", plan)
    execution = re.search(r"Execution Time: ([0-9.]+) ms", plan)
    return (
        float(planning.group(1)) / 1000 if planning else None,
        float(execution.group(1)) / 1000 if execution else None,
    )


def measure_db(bench: Bench, cases: Sequence[Case]) -> None:
    """Run each case's captured SQL ``--repeat`` times, round-robin, and time the round
    trip (send, plan, execute, fetch the page) from this client; then EXPLAIN it."""
    args = bench.args
    bench.warn_if_busy("database measurement")
    times: dict[str, list[float]] = {c.key: [] for c in cases}
    decode: dict[str, list[float]] = {c.key: [] for c in cases}
    expected: dict[str, list[int]] = {}
    load_before = loadavg()
    with db_connection(bench) as conn, conn.cursor() as cur:
        for round_no in range(args.warmup + args.repeat):
            order = list(cases)
            random.Random(round_no).shuffle(order)
            for case in order:
                waited = decoding = 0.0
                counts = []
                for sql in case.sqls:
                    t0 = time.perf_counter()
                    cur.execute(sql)  # returns when the whole result has arrived
                    t1 = time.perf_counter()
                    counts.append(len(cur.fetchall()))  # into Python values: client CPU
                    waited += t1 - t0
                    decoding += time.perf_counter() - t1
                if expected.setdefault(case.key, counts) != counts:  # the data do not change
                    raise RuntimeError(f"{case.key}: {counts} rows, {expected[case.key]} before")
                if round_no >= args.warmup:
                    times[case.key].append(waited)
                    decode[case.key].append(decoding)
        # Server-side time (planning + execution) without the round trip, from
        # EXPLAIN ANALYZE with per-node timing off (little instrumentation overhead).
        server: dict[str, list[float]] = {c.key: [] for c in cases}
        for round_no in range(args.explain_repeat):
            order = list(cases)
            random.Random(50_000 + round_no).shuffle(order)
            for case in order:
                total = 0.0
                for sql in case.sqls:
                    cur.execute("EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON) " + sql)
                    planning, execution = plan_times("\n".join(r[0] for r in cur.fetchall()))
                    total += (planning or 0.0) + (execution or 0.0)
                server[case.key].append(total)
        plans: dict[str, str] = {}
        for case in cases:
            texts = []
            for n, sql in enumerate(case.sqls, 1):
                for _ in range(3):  # the last of three (warm) is kept
                    cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
                    text = "\n".join(r[0] for r in cur.fetchall())
                if len(case.sqls) > 1:
                    text = f"-- page query {n} of {len(case.sqls)}\n{text}"
                texts.append(text)
            plans[case.key] = "\n\n".join(texts)
    bench.results["db"] = {
        "loadavg_before": load_before,
        "cases": {
            c.key: {
                **summary(times[c.key]),
                "server": summary(server[c.key]),
                "decode": summary(decode[c.key]),
                "plan": plans[c.key],
                "planning": plan_times(plans[c.key])[0],
                "execution": plan_times(plans[c.key])[1],
            }
            for c in cases
        },
    }
    for c in cases:
        s = bench.results["db"]["cases"][c.key]
        log(
            f"  db {c.key:14} p50 {ms(s['p50'])}  p95 {ms(s['p95'])}  p99 {ms(s['p99'])}"
            f"  (server p95 {ms(s['server'].get('p95'))})"
        )


# --- end to end over HTTP -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def use_gunicorn(bench: Bench) -> bool:
    if bench.args.server == "runserver":
        return False
    import importlib.util

    found = importlib.util.find_spec("gunicorn") is not None
    if not found and bench.args.server == "gunicorn":
        raise SystemExit("--server gunicorn: gunicorn is not installed in this environment")
    return found


def server_env(bench: Bench) -> dict[str, str]:
    """A deployment's environment: production settings (DEBUG off, the production
    guard satisfied), behind a TLS-terminating proxy (``X-Forwarded-Proto``)."""
    import secrets

    return bench.env(
        DJANGO_ENV="production",
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        # Required by the production settings; listing the worklist sends no task.
        REDIS_URL=bench.args.redis_url,
    )


def server_argv(bench: Bench, port: int) -> tuple[list[str], str]:
    a = bench.args
    if use_gunicorn(bench):
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
        return argv, (
            f"gunicorn ({a.server_workers} workers x {a.server_threads} threads, gthread), "
            "production settings"
        )
    argv = [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"]
    why = "" if a.server == "runserver" else "gunicorn is not installed: "
    return argv, (
        f"manage.py runserver --noreload ({why}Django's threaded development server, "
        "one process), production settings"
    )


def request_headers(bench: Bench) -> dict[str, str]:
    return {"Authorization": f"Token {bench.net.token}", "X-Forwarded-Proto": "https"}


def start_server(bench: Bench) -> tuple[int, str]:
    port = bench.args.port or free_port()
    argv, description = server_argv(bench, port)
    log(f"starting the server: {description}")
    log_path = bench.work / "server.log"
    with log_path.open("ab") as out:
        bench.server = subprocess.Popen(
            argv,
            cwd=REPO,
            env=server_env(bench),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if bench.server.poll() is not None:
            raise RuntimeError(f"the server exited: {log_path.read_text()[-2000:]}")
        with contextlib.suppress(OSError):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", WORKLIST_PATH, headers=request_headers(bench))
            response = conn.getresponse()
            body = response.read()
            conn.close()
            if response.status == 200:
                return port, description
            raise RuntimeError(f"the server answered {response.status}: {body[:300]!r}")
        time.sleep(0.2)
    raise TimeoutError("the server did not answer within 60 s")


def group_cpu_seconds(pgid: int) -> float | None:
    """CPU time of every process in the group (gunicorn's master and workers)."""
    total, found = 0.0, False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
                found = True
    return total if found else None


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


def pg_sessions(bench: Bench) -> int | None:
    with contextlib.suppress(Exception):
        return int(
            bench.conn.execute(
                "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
            ).fetchone()[0]
        )
    return None


def measure_api(bench: Bench, cases: Sequence[Case]) -> None:
    """GET each case's URL ``--repeat`` times, round-robin, over one keep-alive HTTP
    connection, timing from sending the request to the last byte of the body."""
    args = bench.args
    port, description = start_server(bench)
    assert bench.server is not None  # noqa: S101 - set by start_server
    server_pid = bench.server.pid
    headers = request_headers(bench)
    bench.warn_if_busy("API measurement")
    times: dict[str, list[float]] = {c.key: [] for c in cases}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    reconnects = 0
    checked: set[str] = set()
    load_before = loadavg()
    sessions_before = pg_sessions(bench)
    cpu_before = group_cpu_seconds(server_pid)
    measured = 0
    try:
        for round_no in range(args.warmup + args.repeat):
            order = list(cases)
            random.Random(10_000 + round_no).shuffle(order)
            for case in order:
                t0 = time.perf_counter()
                conn.request("GET", case.path, headers=headers)
                response = conn.getresponse()
                body = response.read()
                elapsed = time.perf_counter() - t0
                if response.status != 200:
                    raise RuntimeError(f"{case.key}: HTTP {response.status}: {body[:300]!r}")
                if case.key not in checked:
                    data = json.loads(body)
                    ids = [r["id"] for r in data["results"]]
                    if ids != case.first_ids:
                        raise RuntimeError(f"{case.key}: HTTP and in-process pages differ")
                    checked.add(case.key)
                if response.will_close:
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    reconnects += 1
                if round_no >= args.warmup:
                    times[case.key].append(elapsed)
                    measured += 1
            if round_no == args.warmup - 1:
                cpu_before = group_cpu_seconds(server_pid)
                sessions_before = pg_sessions(bench)
    finally:
        conn.close()
    cpu_after = group_cpu_seconds(server_pid)
    sessions_after = pg_sessions(bench)
    stop_server(bench)
    log_text = (bench.work / "server.log").read_text(errors="replace")
    bench.results["api"] = {
        "loadavg_before": load_before,
        "server": description,
        "reconnects": reconnects,
        "requests": measured,
        "server_cpu_per_request": (
            (cpu_after - cpu_before) / measured
            if cpu_after is not None and cpu_before is not None and measured
            else None
        ),
        "db_sessions_opened": (
            sessions_after - sessions_before
            if sessions_after is not None and sessions_before is not None
            else None
        ),
        "server_errors": log_text.count("Traceback"),
        "cases": {c.key: summary(times[c.key]) for c in cases},
    }
    for c in cases:
        s = bench.results["api"]["cases"][c.key]
        log(f"  api {c.key:14} p50 {ms(s['p50'])}  p95 {ms(s['p95'])}  p99 {ms(s['p99'])}")


# --- report ---------------------------------------------------------------------------


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


def versions(bench: Bench) -> dict[str, str]:
    import django
    import psycopg
    import rest_framework

    out = {
        "python": platform.python_version(),
        "django": django.get_version(),
        "drf": rest_framework.VERSION,
        "psycopg": psycopg.__version__,
    }
    with contextlib.suppress(Exception):
        out["postgresql"] = str(bench.conn.execute("SHOW server_version").fetchone()[0]).split()[0]
        out["pg settings"] = ", ".join(
            f"{n}={s}"
            for n, s in bench.conn.execute(
                "SELECT name, current_setting(name) FROM pg_settings WHERE name IN "
                "('shared_buffers', 'work_mem', 'effective_cache_size', 'random_page_cost', "
                "'jit', 'max_parallel_workers_per_gather') ORDER BY name"
            )
        )
    return out


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**not met**")


def indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def pretty_sql(sql: str) -> str:
    import sqlparse

    return str(sqlparse.format(sql, reindent=True, keyword_case="upper"))


def build_report(
    bench: Bench, cases: Sequence[Case], elapsed: float, argv: Sequence[str]
) -> tuple[str, str]:
    args, res = bench.args, bench.results
    data, fx = res.get("data", {}), res.get("facts", {})
    db, api = res.get("db", {}).get("cases", {}), res.get("api", {}).get("cases", {})
    mach, ver = res["machine"], res["versions"]
    command = " ".join([".venv/bin/python bench/worklist/run.py", *argv])

    rows = [
        "| case | rows (matching) | DB p50 | DB p95 | DB p99 | server p50 / p95 | "
        "API p50 | API p95 | API p99 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in cases:
        d, a = db.get(c.key, {}), api.get(c.key, {})
        rows.append(
            f"| {c.label} | {c.rows} ({_count(c.matching)}) | {ms(d.get('p50'))} | "
            f"{ms(d.get('p95'))} | {ms(d.get('p99'))} | "
            f"{ms(d.get('server', {}).get('p50'))} / {ms(d.get('server', {}).get('p95'))} | "
            f"{ms(a.get('p50'), 1)} | {ms(a.get('p95'), 1)} | {ms(a.get('p99'), 1)} |"
        )
    table = "\n".join(rows)

    db_ok = [db[c.key]["p95"] <= DB_TARGET for c in cases if c.key in db]
    api_ok = [api[c.key]["p95"] < API_TARGET for c in cases if c.key in api]
    db_worst = max(cases, key=lambda c: db.get(c.key, {}).get("p95") or 0)
    api_worst = max(cases, key=lambda c: api.get(c.key, {}).get("p95") or 0)
    targets = [
        "| target | result | verdict |",
        "| --- | --- | --- |",
        f"| database p95 <= 5 ms (every case) | {sum(db_ok)}/{len(db_ok)} cases; worst "
        f"{ms(db.get(db_worst.key, {}).get('p95'))} ({db_worst.key}) | "
        f"{verdict(all(db_ok) if db_ok else None)} |",
        f"| API p95 < 100 ms (every case) | {sum(api_ok)}/{len(api_ok)} cases; worst "
        f"{ms(api.get(api_worst.key, {}).get('p95'), 1)} ({api_worst.key}) | "
        f"{verdict(all(api_ok) if api_ok else None)} |",
    ]

    status = ", ".join(f"{k} {v:,}" for k, v in data.get("status_counts", {}).items())
    offers = ", ".join(f"{k} {v:,}" for k, v in data.get("offer_counts", {}).items())
    busy_hist = ", ".join(
        f"{k} {v:,}" for k, v in data.get("busy_offers", {}).items() if k != "claimed_live"
    )
    apimeta = res.get("api", {})
    notes = list(res["notes"])
    warnings = list(res["warnings"])
    first = next((c for c in cases if c.key == "first"), cases[0])
    per_request = "; ".join(
        f"{_query_kind(q['sql'])} {q['seconds'] * 1000:.0f} ms" for q in first.queries
    )

    plans = []
    for c in cases:
        d = db.get(c.key, {})
        plans.append(
            f"#### {c.label}\n\n"
            f"`GET {c.path if len(c.path) < 160 else c.path[:157] + '...'}`, "
            f"{c.rows} rows; planning {ms(d.get('planning'), 3)}, "
            f"execution {ms(d.get('execution'), 3)}\n\n{indent(d.get('plan', ''))}\n"
        )

    section = f"""{SECTION_TITLE}

Measured {res["started_at"]} UTC on {mach["cpus"]} CPU(s) ({mach["model"]}), {mach["memory"]} RAM;
PostgreSQL {ver.get("postgresql")} ({ver.get("pg settings")}),
Python {ver["python"]}, Django {ver["django"]}, DRF {ver["drf"]}, psycopg {ver["psycopg"]}.
One run took {elapsed / 60:.1f} min (loading {data.get("load_seconds", 0):.0f} s,
VACUUM ANALYZE {data.get("vacuum_analyze_seconds", 0):.0f} s).

Command (from the repository root):

    {command}

{table}

{chr(10).join(targets)}

### What was measured

- **Data** (seed {args.seed}; COPY with explicit ids in arrival order, then
  `VACUUM (ANALYZE)` as autovacuum would leave the tables): {data.get("studies", 0):,}
  studies over {args.days:g} days ({status}); {data.get("offers", 0):,} offers
  ({offers}). As the app leaves them: a claim holds the study's open offers (off
  the worklists until a release), a final or a cancellation withdraws them, and
  before that {args.history_withdrawn:.0%} of the others on historical studies were
  withdrawn (re-routing, declines, readers no longer eligible).
  Open offers: {fx.get("open_offers_total", 0):,}, of which {fx.get("open_on_offered_total", 0):,}
  on the {data.get("status_counts", {}).get("offered", 0):,} offered studies.
  {args.radiologists:,} radiologists, {args.facilities} facilities, 9 routing rules.
- **The busy radiologist** (`{bench.net.busy_username if bench.net else "?"}`): on the worklist of
  {fx.get("busy_open_on_offered", 0):,} offered studies; {fx.get("busy_offers_total", 0):,}
  offers in all, {fx.get("busy_open_total", 0):,} of them open (by offer and study
  state: {busy_hist}); {fx.get("busy_claimed", 0)} claimed cases.
- **Cases**: the API's default page size (50; the query fetches 51 to know whether
  there is a next page). "Next page" follows the `next` link (keyset `cursor`) the
  API returned for the first page; the deep page follows it page after page. The
  facility filter is the facility with most studies on the reader's worklist
  (id {res.get("filter_facility")}).
- **Database**: each case's request was sent through the app in-process (Django's
  test client: the same view, filter set and keyset pagination), and the SQL it sent
  for the page was captured. That exact SQL was then run {args.repeat} times per case
  (after {args.warmup} warm-up rounds; cases shuffled each round) over one psycopg
  connection set up as Django's (client-side binding, no prepared statements, so
  every run is parsed and planned), timing on the client from sending the query until
  the whole page has arrived (psycopg's `execute`). Turning the rows into Python
  values (`fetchall`, client CPU, part of the API figure) is not included: p50
  {ms(_decode_p50(db))} per page. "Server" is planning + execution time reported by PostgreSQL
  (`EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON)`, {args.explain_repeat} runs per case):
  the same work without the round trip and the transfer of the page (EXPLAIN's
  row counting adds a little, so it can come out above the client figure). The plans
  below are the last of three warm `EXPLAIN (ANALYZE, BUFFERS)` runs.
  Load average before: {res.get("db", {}).get("loadavg_before")}.
- **API**: `GET {WORKLIST_PATH}` with a DRF token, {args.repeat} times per case (after
  {args.warmup} warm-up rounds, shuffled) over one keep-alive HTTP connection from this
  process (one request at a time) to {apimeta.get("server")}, `DEBUG` off, as behind
  a TLS proxy (`X-Forwarded-Proto: https`); time from sending the request to the
  last byte of the body. Each
  request authenticates the token, looks up the reader (twice), runs the page
  query, serialises 50 rows and writes one audit event per row (one INSERT).
  Reconnects: {apimeta.get("reconnects")}; new database sessions during the
  measurement: {apimeta.get("db_sessions_opened")} (the connection is kept,
  `CONN_MAX_AGE`); server CPU per request: {ms(apimeta.get("server_cpu_per_request"), 1)};
  server errors: {apimeta.get("server_errors")}. Load average before:
  {apimeta.get("loadavg_before")}.
  The client, the server and PostgreSQL share the machine's {mach["cpus"]} cores.
- The SQL of one first-page request (in-process, Django's own timings, 1 ms
  resolution): {per_request}.

### The page query (first page, no filter), as the app sends it

{chr(10).join(indent(pretty_sql(q)) for q in first.sqls)}

### Indexes on the two tables

{indent(chr(10).join(fx.get("indexes", [])))}

Sizes: {", ".join(f"{k} {v}" for k, v in fx.get("sizes", {}).items())}.

### Query plans (EXPLAIN (ANALYZE, BUFFERS))

{chr(10).join(plans)}"""
    remarks = notes + [f"WARNING: {w}" for w in warnings]
    if remarks:
        section += "\n### Notes\n\n" + "\n".join(f"- {n}" for n in remarks)
    console = table + "\n\n" + "\n".join(targets)
    if warnings:
        console += "\n\n" + "\n".join(f"WARNING: {w}" for w in warnings)
    return console, section.rstrip() + "\n"


def _count(n: int | None) -> str:
    return "?" if n is None else f"{n:,}"


def _decode_p50(db: dict[str, Any]) -> float | None:
    values = [c["decode"]["p50"] for c in db.values() if c.get("decode", {}).get("p50")]
    return statistics.median(values) if values else None


def _query_kind(sql: str) -> str:
    if sql.startswith("INSERT"):
        return "audit INSERT" if "audit_auditevent" in sql else "INSERT"
    if is_page_query(sql):
        return "page query"
    table = re.search(r'FROM "([a-z_]+)"', sql)
    return f"SELECT {table.group(1)}" if table else sql[:30]


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


# --- main ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    a = p.add_argument
    a("--quick", action="store_true", help="50,000 studies and 250,000 offers")
    a("--studies", type=int, default=1_000_000)
    a("--offers", type=int, default=5_000_000)
    a("--offered", type=int, default=4000, help="studies waiting on worklists now")
    a("--claimed", type=int, default=600, help="studies claimed now")
    a("--preliminary", type=int, default=150)
    a("--ready", type=int, default=40, help="studies ready, not yet routed")
    a("--receiving", type=int, default=40)
    a("--radiologists", type=int, default=2000)
    a("--facilities", type=int, default=300)
    a(
        "--busy-share",
        type=float,
        default=0.5,
        help="share of the offered studies on the busy reader's worklist",
    )
    a(
        "--busy-history-share",
        type=float,
        default=0.01,
        help="share of all offers that went to the busy reader",
    )
    a("--busy-claims", type=int, default=5, help="cases the busy reader holds claimed")
    a(
        "--history-withdrawn",
        type=float,
        default=0.25,
        help="share of the offers of historical studies withdrawn (not the claimer's)",
    )
    a("--days", type=float, default=180.0, help="days of history")
    a("--repeat", type=int, default=200, help="timed runs per case (database and API)")
    a("--warmup", type=int, default=10, help="untimed rounds first")
    a(
        "--explain-repeat",
        type=int,
        default=50,
        help="EXPLAIN ANALYZE runs per case for the server-side times",
    )
    a("--deep-page", type=int, default=20, help="the page reached by following cursors")
    a("--skip-api", action="store_true", help="measure at the database only")
    a("--port", type=int, default=0, help="the server's port (default: a free one)")
    a(
        "--server",
        choices=["auto", "gunicorn", "runserver"],
        default="auto",
        help="HTTP server for the API (auto: gunicorn if installed, else runserver)",
    )
    a("--server-workers", type=int, default=2, help="gunicorn worker processes")
    a("--server-threads", type=int, default=2, help="gunicorn threads per worker")
    a(
        "--redis-url",
        default="redis://127.0.0.1:6379/0",
        help="required by the production settings of the server; nothing is sent to it",
    )
    a("--seed", type=int, default=20260605)
    a("--database-url", default="postgres://postgres@127.0.0.1:5432")
    a("--db-name", default="telerad_bench_worklist")
    a("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    a("--keep", action="store_true", help="keep the database and the work folder")
    a("--json", help="also write the raw results to this file")
    args = p.parse_args(argv)
    if args.quick:
        given = argv if argv is not None else sys.argv[1:]
        quick = {"studies": 50_000, "offers": 250_000, "offered": 2000, "repeat": 100}
        for name, value in quick.items():
            if not any(a == f"--{name}" or a.startswith(f"--{name}=") for a in given):
                setattr(args, name, value)
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", args.db_name):
        p.error(f"unsafe database name {args.db_name!r}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(raw_argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="bench-worklist-"))
    bench = Bench(args, work)
    bench.results["started_at"] = dt.datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
    bench.results["machine"] = machine()
    log(f"work folder {work}; database {args.db_name}")
    bench.warn_if_busy("start")
    failed = False
    cases: list[Case] = []
    try:
        prepare_database(bench)
        setup_django(bench)
        load_data(bench)
        bench.results["versions"] = versions(bench)
        bench.results["facts"] = facts(bench)
        log(
            f"busy reader: {bench.results['facts']['busy_open_on_offered']:,} studies on the "
            f"worklist, {bench.results['facts']['busy_offers_total']:,} offers in all"
        )
        cases = make_cases(bench)
        log("capturing the app's SQL (in-process requests)")
        capture(bench, cases)
        log(f"database: {args.repeat} runs per case")
        measure_db(bench, cases)
        if args.skip_api:
            bench.results["notes"].append("API not measured (--skip-api)")
        else:
            log(f"API: {args.repeat} requests per case")
            measure_api(bench, cases)
    except BaseException as exc:
        failed = True
        bench.results["error"] = f"{type(exc).__name__}: {exc}"
        log(f"FAILED: {type(exc).__name__}: {exc}")
        traceback.print_exc()
    finally:
        stop_server(bench)
    elapsed = time.monotonic() - started
    try:
        bench.results["cases"] = [
            {"key": c.key, "label": c.label, "path": c.path, "sqls": c.sqls, "rows": c.rows,
             "matching": c.matching, "queries": c.queries}
            for c in cases
        ]  # fmt: skip
        if "db" in bench.results:
            console, section = build_report(bench, cases, elapsed, raw_argv)
            bench.results["section"] = section
            print("\n" + console + "\n", flush=True)
            if not args.no_write and not failed:
                path = update_benchmarks(section)
                log(f"updated the '{SECTION_TITLE[3:]}' section of {path.name}")
            elif not args.no_write:
                (work / "section.md").write_text(section)
                log(f"run failed: BENCHMARKS.md not touched (section in {work}/section.md)")
        if args.json:
            Path(args.json).write_text(json.dumps(bench.results, indent=2, default=str))
    finally:
        with contextlib.suppress(Exception):
            if bench.conn is not None:
                bench.conn.close()
        if not args.keep:
            with contextlib.suppress(Exception):
                from django.db import connections

                connections.close_all()
            with contextlib.suppress(Exception):
                admin_sql(bench, f'DROP DATABASE IF EXISTS "{args.db_name}" WITH (FORCE)')
            if not failed:
                import shutil

                shutil.rmtree(work, ignore_errors=True)
        log(f"done in {(time.monotonic() - started) / 60:.1f} min")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
