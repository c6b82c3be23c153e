"""Routing benchmark: decisions/s and latency through the real task path, a raw-SQL
reference, ready -> offered latency under a steady load, the escalation sweep with
a 1,000,000-study table, and a fault test (kill -9 a worker, two sweepers at once).

Run from the repository root:

    .venv/bin/python -m bench.routing            # full run, about 20 minutes
    .venv/bin/python -m bench.routing --quick    # scaled down, about 2 minutes

See bench/routing/README.md.  Every process it starts is stopped (process group)
even on failure; the benchmark database is dropped unless ``--keep``.  It exits 1,
leaving BENCHMARKS.md alone, if a phase fails.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import time

from bench import harness, host
from bench.harness import Benchmark, Run, log
from bench.routing import report
from bench.routing.common import Ctx, build_network, ingest_running, retire
from bench.routing.decisions import phase_latency, phase_rate, phase_raw
from bench.routing.fault import phase_fault
from bench.routing.sustained import phase_sustained
from bench.routing.sweep import phase_big_table


def wait_for_ingest(max_wait: float) -> float:
    """Wait (polling every 10 s) until the ingest benchmark is not running."""
    start = time.monotonic()
    if not ingest_running():
        return 0.0
    log("the ingest benchmark is running: waiting for it to finish (2 cores are shared)")
    while ingest_running():
        if time.monotonic() - start > max_wait:
            raise SystemExit(f"the ingest benchmark still running after {max_wait:g} s; giving up")
        time.sleep(10)
    waited = time.monotonic() - start
    log(f"ingest benchmark finished; waited {waited:.0f} s")
    return waited


def pick_redis_db(base: str, wanted: int | None) -> str:
    """Our Redis database: --redis-db, or the first empty one in 2..15 but 9."""
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


def versions(ctx: Ctx) -> dict[str, str]:
    import redis

    out = {
        **host.versions("django", "celery"),
        **host.postgres(ctx.conn, ["shared_buffers", "work_mem", "synchronous_commit", "jit"]),
    }
    with contextlib.suppress(Exception):  # a version we could not read is reported as '?'
        out["redis"] = str(redis.Redis.from_url(ctx.redis_url).info()["redis_version"])
    return out


def measure(run: Run) -> None:
    args = run.args
    waited = 0.0 if args.no_wait else wait_for_ingest(1800)
    redis_url = pick_redis_db(args.redis_url, args.redis_db)
    ctx = Ctx(run, redis_url)
    if waited:
        run.results["waited_seconds"] = waited
        run.note(f"waited {waited:.0f} s for the ingest benchmark to finish")

    def close() -> None:
        if ctx.conn is not None:
            ctx.conn.close()
        if not args.keep:
            import redis
            from django.db import connections

            connections.close_all()
            ctx.db.drop()
            redis.Redis.from_url(redis_url).flushdb()

    run.at_end(close)
    log(f"Redis {redis_url}; database {ctx.db.name}")
    log(f"creating database {ctx.db.name} and migrating")
    ctx.db.create_migrated(ctx.env())
    harness.setup_django(ctx.env())
    ctx.conn = ctx.db.connect()
    run.results["versions"] = versions(ctx)
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
        run.note(f"phases skipped (--skip): {', '.join(sorted(skip))}")


def add_options(p: argparse.ArgumentParser) -> None:
    a = p.add_argument
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
    a("--no-wait", action="store_true", help="do not wait for the ingest benchmark to finish")


# About two minutes on 2 cores: the same network, fewer studies, a smaller table,
# short phases; the fault test waits 30 s (not 180) for the killed worker's task to
# come back, so its redelivery is not seen (the sweepers route that study instead).
QUICK = {
    "studies": 1000,
    "latency_sample": 200,
    "capture": 20,
    "sustained_seconds": 10,
    "fault_studies": 100,
    "fault_leave_studies": 10,
    "redelivery_wait": 30,
    "big_table_rows": 30_000,
    "open_worklist": 100,
    "worklist_levels": [50, 100],
    "sweeps": 30,
    "due_sweeps": 10,
    "due_sweeps_nojit": 5,
    "big_latency_sample": 30,
    "big_capture": 5,
}

BENCHMARK = Benchmark(
    module="bench.routing",
    doc=__doc__ or "",
    add_options=add_options,
    measure=measure,
    title=report.TITLE,
    render=report.render,
    console=report.console,
    quick=QUICK,
    renderable=lambda results: "rate" in results,
)

if __name__ == "__main__":
    sys.exit(harness.main(BENCHMARK))
