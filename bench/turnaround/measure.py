"""The turnaround benchmark's measurements: each selector as the API calls it,
timed in process (the time inside the database driver and the whole call), the
slowest statement's plan, and the API end to end over HTTP."""

# ruff: noqa: S311
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import random
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.database import explain_analyze
from bench.harness import Run, log
from bench.servers import gunicorn_argv, production
from bench.supervise import PROCS, free_port, wait_for_http
from bench.turnaround import datagen

WINDOW_DAYS = 90
WARMUP = 3
# /metrics settles its counters over a few scrapes per process (see turnaround.metrics).
METRICS_WARMUP = 10


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


@dataclass
class Turnaround:
    """What every step needs."""

    run: Run
    env: dict[str, str]  # the app's, this process's too (development settings, DEBUG off)
    now: dt.datetime
    conn: Any = None
    net: Any = None
    loaded: Any = None
    server: subprocess.Popen[bytes] | None = None
    server_description: str = ""

    @property
    def args(self) -> argparse.Namespace:
        return self.run.args

    @property
    def work(self) -> Path:
        return self.run.work


def load_data(t: Turnaround) -> None:
    a = t.args
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
    t.net = datagen.build_network(shape, rng, now=t.now)
    log(f"generating and loading {a.studies:,} studies over {a.days:g} days")
    t.loaded = datagen.load(t.conn, t.net, shape, now=t.now, work=t.work)
    for step, seconds in t.loaded.seconds.items():
        log(f"  {step}: {seconds:.1f} s")


def facility_sizes(t: Turnaround, date_from: dt.date) -> list[tuple[int, int]]:
    """(facility, studies in the window), largest first."""
    rows = t.conn.execute(
        "SELECT facility_id, COUNT(*) FROM studies_study WHERE received_at >= %s "
        "GROUP BY facility_id ORDER BY 2 DESC, 1",
        [dt.datetime.combine(date_from, dt.time(), tzinfo=dt.UTC) - dt.timedelta(days=1)],
    ).fetchall()
    return [(int(f), int(n)) for f, n in rows]


def rotation(t: Turnaround, sizes: list[tuple[int, int]]) -> list[int]:
    """The facilities queried, in turn: the ten largest and twenty others at random."""
    rng = random.Random(t.args.seed + 1)
    largest = [f for f, _ in sizes[:10]]
    rest = [f for f, _ in sizes[10:]]
    return largest + rng.sample(rest, min(20, len(rest)))


def users_by_group(t: Turnaround) -> dict[int, Any]:
    from django.contrib.auth.models import User

    return {group: User.objects.get(username=name) for group, name in t.net.admin_usernames.items()}


def measure_db(t: Turnaround, cases: dict[str, Case]) -> dict[str, Any]:
    """Each selector as the API calls it, in this process: the time inside the
    database driver (every statement it sends, summed) and the whole call."""
    from prometheus_client import generate_latest

    from turnaround import operations, selectors
    from turnaround.metrics import metrics_registry

    n = t.args.iterations
    date_to = t.now.date()
    date_from = date_to - dt.timedelta(days=WINDOW_DAYS - 1)
    sizes = facility_sizes(t, date_from)
    order = rotation(t, sizes)
    admins = users_by_group(t)
    group_of = t.net.facility_group
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
                now=t.now,
            )

        run(case, facility_call)

    groups = t.net.group_ids
    group_rows = {g: operations.operations_groups(user=admins[g], group_id=g) for g in groups}
    ops_calls: dict[str, Callable[[int], Any]] = {
        "ops-groups": lambda i: operations.operations_groups(
            user=admins[groups[i % len(groups)]], group_id=groups[i % len(groups)]
        ),
        "ops-queue": lambda i: operations.queue_by_tier_and_priority(
            groups=group_rows[groups[i % len(groups)]], now=t.now
        ),
        "ops-at-risk": lambda i: list(
            operations.studies_at_risk(groups=group_rows[groups[i % len(groups)]], now=t.now)[:100]
        ),
        "ops-unroutable": lambda i: list(
            operations.studies_unroutable(groups=group_rows[groups[i % len(groups)]])[:100]
        ),
        "ops-load": lambda i: operations.reader_load(
            groups=group_rows[groups[i % len(groups)]], now=t.now
        ),
        "ops-all": lambda i: operations.operations_snapshot(
            user=admins[groups[i % len(groups)]], group_id=groups[i % len(groups)], now=t.now
        ),
        "metrics": lambda i: generate_latest(metrics_registry(now=t.now)),
    }
    for key, call in ops_calls.items():
        log(f"database: {cases[key].label} x {n}")
        run(cases[key], call)
    snapshot = operations.operations_snapshot(user=admins[groups[0]], group_id=groups[0], now=t.now)
    facts["operations, first group"] = {
        "queue (offered)": sum(r["studies"] for r in snapshot.queue),
        "at risk": snapshot.at_risk_total,
        "unroutable": snapshot.unroutable_total,
        "readers listed": len(snapshot.load),
        "fairness CV": snapshot.fairness[0].coefficient_of_variation,
    }
    return facts


def explain(case: Case) -> None:
    """The plan of the case's slowest statement."""
    if case.slowest_sql is not None:
        case.plan = explain_analyze(*case.slowest_sql)


# --- the API -------------------------------------------------------------------------


def start_server(t: Turnaround) -> int:
    a = t.args
    port = free_port()
    argv = gunicorn_argv(
        port, worker_class="gthread", workers=a.server_workers, threads=a.server_threads
    )
    t.server_description = (
        f"gunicorn ({a.server_workers} workers x {a.server_threads} threads, gthread), "
        "production settings (DEBUG off)"
    )
    env = production(t.env, redis_url=a.redis_url, METRICS_TOKEN=t.net.metrics_token)
    log(f"starting the server: {t.server_description}")
    log_path = t.work / "server.log"
    t.server = PROCS.start(argv, env=env, log_path=log_path)
    wait_for_http(  # any answer will do: the server is up
        port,
        "/healthz",
        headers={"X-Forwarded-Proto": "https"},
        timeout=60,
        what="the server",
        proc=t.server,
        log_path=log_path,
        ok=lambda status, body: True,
        interval=0.3,
    )
    return port


def stop_server(t: Turnaround) -> None:
    if t.server is not None:
        PROCS.stop(t.server, timeout=10)
        t.server = None


def measure_api(t: Turnaround, port: int, cases: dict[str, Case]) -> None:
    """Sequential requests on one keep-alive connection, as one user would send them."""
    n = t.args.api_iterations
    date_to = t.now.date()
    date_from = date_to - dt.timedelta(days=WINDOW_DAYS - 1)
    order = rotation(t, facility_sizes(t, date_from))
    groups = t.net.group_ids
    group_of = t.net.facility_group
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
        return f"Token {t.net.admin_tokens[group]}"

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
    plans["metrics"] = lambda i: ("/metrics", f"Bearer {t.net.metrics_token}")
    for key, plan in plans.items():
        case = cases[key]
        log(f"API: {case.label} x {n}")
        # Each server process settles its own /metrics tallies: warm them all up.
        warmup = METRICS_WARMUP * t.args.server_workers if key == "metrics" else WARMUP
        for i in range(n + warmup):
            path, authorization = plan(i)
            took = get(path, authorization)
            if i >= warmup:
                case.api.append(took)
        case.api_path = plan(0)[0]
    conn.close()


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


def case_data(case: Case) -> dict[str, Any]:
    """A case's timings and plan as the results JSON holds them."""
    return {
        "label": case.label,
        "kind": case.kind,
        "statements": case.statements,
        "db": case.db,
        "wall": case.wall,
        "api": case.api,
        "api_path": case.api_path,
        "slowest_sql": case.slowest_sql[0] if case.slowest_sql else None,
        "slowest_seconds": case.slowest_seconds,
        "plan": case.plan,
    }
