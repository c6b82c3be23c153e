"""Worklist benchmark: the worklist query of a busy radiologist (first page, keyset
next page, with and without filters) with 1,000,000 studies and 5,000,000 offers
in PostgreSQL, timed at the database and end to end through the API over HTTP.

Run from the repository root:

    .venv/bin/python -m bench.worklist            # full size, about 15 minutes
    .venv/bin/python -m bench.worklist --quick    # 50,000 studies, 50 runs per case: under a minute

See bench/worklist/README.md.  The server it starts is stopped (process group)
even on failure; the benchmark database is dropped unless ``--keep``.
"""

from __future__ import annotations

import argparse
import sys

from bench import harness, host
from bench.database import Database
from bench.harness import Benchmark, Run, log
from bench.servers import app_env, production
from bench.worklist import report
from bench.worklist.measure import (
    Worklist,
    capture,
    facts,
    load_data,
    make_cases,
    measure_api,
    measure_db,
    stop_server,
)


def measure(run: Run) -> None:
    args = run.args
    db = Database(args.database_url, args.db_name)
    env = app_env(
        database_url=db.url(),
        redis_url="",  # listing the worklist enqueues nothing
        var_dir=str(run.work / "var"),
        DJANGO_ENV="development",
        LOG_LEVEL="WARNING",
    )
    # Production settings require a broker; listing the worklist sends no task.
    w = Worklist(run, db.url(), env, production(env, redis_url=args.redis_url))

    def close() -> None:
        stop_server(w)
        if w.conn is not None:
            w.conn.close()
        if not args.keep:
            from django.db import connections

            connections.close_all()
            db.drop()

    run.at_end(close)
    log(f"database {db.name}")
    w.warn_if_busy("start")
    log(f"creating database {db.name} and migrating")
    db.create_migrated(env)
    harness.setup_django(env)
    w.conn = db.connect()
    load_data(w)
    run.results["versions"] = {
        **host.versions("django", "djangorestframework", "psycopg"),
        **host.postgres(
            w.conn,
            [
                "shared_buffers", "work_mem", "effective_cache_size", "random_page_cost",
                "jit", "max_parallel_workers_per_gather",
            ],
        ),
    }  # fmt: skip
    run.results["facts"] = facts(w)
    log(
        f"busy reader: {run.results['facts']['busy_open_on_offered']:,} studies on the "
        f"worklist, {run.results['facts']['busy_offers_total']:,} offers in all"
    )
    cases = make_cases(w)
    log("capturing the app's SQL (in-process requests)")
    capture(w, cases)
    run.results["cases"] = [
        {"key": c.key, "label": c.label, "path": c.path, "sqls": c.sqls, "rows": c.rows,
         "matching": c.matching, "queries": c.queries}
        for c in cases
    ]  # fmt: skip
    log(f"database: {args.repeat} runs per case")
    measure_db(w, cases)
    if args.skip_api:
        run.note("API not measured (--skip-api)")
    else:
        log(f"API: {args.repeat} requests per case")
        measure_api(w, cases)


def add_options(p: argparse.ArgumentParser) -> None:
    a = p.add_argument
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


BENCHMARK = Benchmark(
    module="bench.worklist",
    doc=__doc__ or "",
    add_options=add_options,
    measure=measure,
    title=report.TITLE,
    render=report.render,
    console=report.console,
    quick={
        "studies": 50_000,
        "offers": 250_000,
        "offered": 2000,
        "repeat": 50,
        "explain_repeat": 10,
    },
    renderable=lambda results: "db" in results,
)

if __name__ == "__main__":
    sys.exit(harness.main(BENCHMARK))
