"""Turnaround benchmark: the facility turnaround query over a 90-day window (grouped
by priority, modality and day) and each operations page query, with 1,000,000
studies over a year for 300 facilities in PostgreSQL; timed at the database and
end to end through the API (gunicorn, production settings).  Also times a
``/metrics`` scrape.

Run from the repository root:

    .venv/bin/python -m bench.turnaround            # full size, about 15 minutes
    .venv/bin/python -m bench.turnaround --quick    # 50,000 studies, 20 iterations: under a minute

The server it starts is stopped (process group) even on failure; the benchmark
database (``bench_turnaround``) is dropped unless ``--keep``.  Target: p95 < 300 ms.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from bench import harness, host
from bench.database import Database
from bench.harness import Benchmark, Run, log
from bench.servers import app_env
from bench.stats import pct
from bench.turnaround import report
from bench.turnaround.measure import (
    Turnaround,
    case_data,
    explain,
    load_data,
    make_cases,
    measure_api,
    measure_db,
    start_server,
    stop_server,
)


def measure(run: Run) -> None:
    args = run.args
    db = Database(args.database_url, args.db_name)
    env = app_env(
        database_url=db.url(),
        redis_url="",
        var_dir=str(run.work / "var"),
        DJANGO_ENV="development",
        LOG_LEVEL="WARNING",
    )
    t = Turnaround(run, env, now=dt.datetime.now(dt.UTC).replace(microsecond=0))
    others: list[str] = run.results.setdefault("others", [])

    def look_for_other_work() -> None:
        for item in host.other_work(exclude="bench.turnaround", tests=True):
            if item not in others:
                others.append(item)

    def close() -> None:
        stop_server(t)
        if t.conn is not None:
            t.conn.close()
        if not args.keep:
            from django.db import connections

            connections.close_all()
            db.drop()

    run.at_end(close)
    cases = make_cases()
    look_for_other_work()
    log(f"creating database {db.name} and migrating")
    db.create_migrated(env)
    harness.setup_django(env)
    t.conn = db.connect()
    run.results["versions"] = {
        **host.versions("django", "psycopg"),
        **host.postgres(
            t.conn, ["shared_buffers", "work_mem", "jit", "max_parallel_workers_per_gather"]
        ),
    }
    load_data(t)
    loaded = t.loaded
    run.results["loaded"] = {
        "studies": loaded.studies,
        "routing": loaded.routing,
        "decisions": loaded.decisions,
        "transitions": loaded.transitions,
        "alerts": loaded.alerts,
        "status_counts": dict(loaded.status_counts),
        "seconds": loaded.seconds,
    }
    look_for_other_work()
    run.results["facts"] = measure_db(t, cases)
    look_for_other_work()
    explain(max(cases.values(), key=lambda c: pct(c.db, 95) or 0.0))
    if not args.no_api:
        port = start_server(t)
        try:
            measure_api(t, port, cases)
        finally:
            stop_server(t)
    look_for_other_work()
    run.results["server_description"] = t.server_description
    run.results["loadavg_end"] = host.loadavg()
    run.results["cases"] = {key: case_data(case) for key, case in cases.items()}


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--studies", type=int, default=1_000_000)
    p.add_argument("--facilities", type=int, default=300)
    p.add_argument("--groups", type=int, default=6, help="reading groups (facilities split evenly)")
    p.add_argument("--readers-per-group", type=int, default=100)
    p.add_argument("--days", type=float, default=365.0)
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--iterations", type=int, default=60, help="timed calls per query")
    p.add_argument("--api-iterations", type=int, default=40, help="timed requests per query")
    p.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432")
    p.add_argument("--db-name", default="bench_turnaround")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/3")
    p.add_argument("--server-workers", type=int, default=2)
    p.add_argument("--server-threads", type=int, default=4)
    p.add_argument("--no-api", action="store_true", help="database only")


BENCHMARK = Benchmark(
    module="bench.turnaround",
    doc=__doc__ or "",
    add_options=add_options,
    measure=measure,
    title=report.TITLE,
    render=report.render,
    quick={"studies": 50_000, "iterations": 20, "api_iterations": 20},
    renderable=lambda results: "cases" in results,  # a complete run
)

if __name__ == "__main__":
    sys.exit(harness.main(BENCHMARK))
