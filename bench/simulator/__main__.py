"""Rule simulator benchmark: a replay of 30 days x 1,000 studies a day of one
reading group's real history (60 readers, 12 facilities in six US states, the
readers' eligibility history with changes mid-window) against a draft rule set
and the live rules, as the Celery task runs it (``simulation.services.
run_execute``), on PostgreSQL.  Peers measured in the same run: merely streaming
the same studies and their recorded decisions (through the app's selector and by
bare SQL: the I/O floor), and the replay engine alone on studies loaded first.
Memory: each measurement runs in a fresh process (its peak RSS its own), with
tracemalloc's peak in separate runs (it slows Python down), over the full
window and over a shorter one (``--short-days``): the peak must not grow with
the window.

Run from the repository root:

    .venv/bin/python -m bench.simulator                 # 30 days x 1,000/day: about 10 minutes
    .venv/bin/python -m bench.simulator --quick         # 3 days x 300/day: about a minute

Target: the 30-day replay in under 60 s.  The benchmark database
(``bench_simulator``) is dropped unless ``--keep``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import subprocess
import sys
import time
from typing import Any

from bench import REPO, harness, host
from bench.database import Database
from bench.harness import Benchmark, Run, log
from bench.servers import app_env
from bench.simulator import datagen, report

TABLES = [
    "studies_study",
    "routing_routingdecision",
    "network_readerversion",
    "network_shift",
    "network_license",
    "network_facilityprivilege",
    "network_radiologist",
    "network_facility",
    "routing_routingrule",
]


def child(
    run: Run, env: dict[str, str], mode: str, run_id: int, *, trace: bool = False
) -> dict[str, Any]:
    """One measurement in a fresh process (``bench.simulator.child``)."""
    argv = [sys.executable, "-m", "bench.simulator.child", mode, "--run-id", str(run_id)]
    if trace:
        argv.append("--tracemalloc")
    load_before = host.loadavg()
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800, check=False
    )
    if done.returncode != 0 or not done.stdout.strip():
        # Recorded, not raised: the other measurements still tell something.
        run.warn(f"{mode} failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
        log(done.stderr[-3000:])
        return {"mode": mode, "error": done.stderr[-2000:]}
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    out["loadavg_before"], out["loadavg_after"] = load_before, host.loadavg()
    extra = f", tracemalloc peak {out['tracemalloc_peak_mb']:.1f} MB" if trace else ""
    traced = " (tracemalloc)" if trace else ""
    log(f"  {mode}{traced}: {out['seconds']:.2f} s, peak RSS {out['maxrss_mb']:.0f} MB{extra}")
    if out.get("status") not in (None, "done"):
        run.warn(f"run {run_id} ended {out.get('status')}: {out.get('error')}")
    return out


def database_facts(conn: Any, db_name: str) -> dict[str, Any]:
    """The database's size and the tables' row counts and sizes."""
    size = conn.execute("SELECT pg_database_size(%s)", (db_name,)).fetchone()[0]
    tables = {}
    for table in TABLES:
        rows = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]  # noqa: S608 - ours
        total = conn.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()[0]
        tables[table] = {"rows": int(rows), "bytes": int(total)}
    return {"database_bytes": int(size), "tables": tables}


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
    others: list[str] = run.results.setdefault("others", [])
    loads: list[str] = run.results.setdefault("loadavg", [])

    def look_for_other_work() -> None:
        loads.append(host.loadavg())
        for item in host.other_work(exclude="bench.simulator", tests=True):
            if item not in others:
                others.append(item)

    conn: Any = None

    def close() -> None:
        if conn is not None:
            conn.close()
        if not args.keep:
            from django.db import connections

            connections.close_all()
            db.drop()

    run.at_end(close)
    look_for_other_work()
    log(f"creating database {db.name} and migrating")
    db.create_migrated(env)
    harness.setup_django(env)
    conn = db.connect()
    run.results["versions"] = {
        **host.versions("django", "psycopg"),
        **host.postgres(conn, ["shared_buffers", "work_mem", "jit"]),
    }
    # Whole days ending at midnight UTC today: the window is [end - days, end).
    end = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    window_start = end - dt.timedelta(days=args.days)
    start = window_start - dt.timedelta(days=args.days_before)
    shape = datagen.Shape(
        readers=args.readers,
        facilities=args.facilities,
        days=args.days,
        days_before=args.days_before,
        per_day=args.per_day,
        seed=args.seed,
    )
    log(f"network: {shape.readers} readers, {shape.facilities} facilities, history")
    t = time.monotonic()
    rng = random.Random(shape.seed)  # noqa: S311 - test data
    net = datagen.build_network(shape, rng, start=start, end=end)
    network_seconds = time.monotonic() - t
    log(f"studies: {shape.per_day:,}/day over {shape.days_before} + {shape.days} days (COPY)")
    loaded = datagen.load(
        conn, net, shape, start=start, window_start=window_start, end=end, work=run.work
    )
    loaded.seconds["network (ORM)"] = network_seconds
    run.results["loaded"] = {
        "studies": loaded.studies,
        "window_studies": loaded.window_studies,
        "decisions": loaded.decisions,
        "outcomes": loaded.outcomes,
        "tiers": loaded.tiers,
        "seconds": loaded.seconds,
        "versions": net.versions,
        "changes": net.changes,
        "window": [window_start.isoformat(), end.isoformat()],
    }
    run.results["database"] = database_facts(conn, db.name)
    log(
        f"loaded {loaded.studies:,} studies ({loaded.window_studies:,} in the window), "
        f"{net.versions} reader versions; database "
        f"{run.results['database']['database_bytes'] / (1 << 20):.0f} MB"
    )

    from simulation.models import RoutingDraft, SimulationRun
    from simulation.selectors import live_rules_as_draft

    rules = live_rules_as_draft(reading_group_id=net.group_id)
    narrowed = next(r for r in rules if r["is_default"])
    run.results["draft_change"] = (
        f"the default rule '{narrowed['name']}' narrowed from widest tier "
        f"{narrowed['widest_tier']} to 1 (regional)"
    )
    narrowed["widest_tier"] = 1
    draft = RoutingDraft.objects.create(
        reading_group_id=net.group_id, name="bench: default rule regional", rules=rules
    )

    def new_run(days: int) -> int:
        return SimulationRun.objects.create(
            draft=draft,
            reading_group_id=net.group_id,
            window_start=end - dt.timedelta(days=days),
            window_end=end,
        ).pk

    full = new_run(args.days)
    m: dict[str, Any] = {}
    run.results["measurements"] = m
    look_for_other_work()
    log(f"peers over the {args.days}-day window")
    m["bare"] = child(run, env, "bare", full)
    m["stream"] = child(run, env, "stream", full)
    m["setup"] = child(run, env, "setup", full)
    m["engine"] = child(run, env, "engine", full)
    look_for_other_work()
    log(f"run_execute over {args.days} days, {args.repeat} time(s)")
    m["execute"] = [child(run, env, "execute", new_run(args.days)) for _ in range(args.repeat)]
    look_for_other_work()
    if 0 < args.short_days < args.days:
        log(f"run_execute over {args.short_days} days")
        m["short"] = child(run, env, "execute", new_run(args.short_days))
    # tracemalloc slows the replay down about tenfold: its peaks are taken over short
    # windows (a few days apart), the RSS over the full and the short one.
    m["traced"] = []
    for days in sorted({int(d) for d in args.trace_days.split(",") if d.strip()}):
        if 0 < days <= args.days:
            log(f"run_execute over {days} days under tracemalloc")
            traced = child(run, env, "execute", new_run(days), trace=True)
            m["traced"].append({"days": days, **traced})
    look_for_other_work()


def add_options(p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    a("--days", type=int, default=30, help="the replayed window (days)")
    a("--per-day", type=int, default=1000, help="studies a day")
    a(
        "--days-before",
        type=int,
        default=30,
        help="days of history before the window (not replayed)",
    )
    a("--short-days", type=int, default=10, help="the shorter window of the memory comparison")
    a("--readers", type=int, default=60)
    a("--facilities", type=int, default=12)
    a("--repeat", type=int, default=1, help="timed run_execute runs over the window")
    a(
        "--trace-days",
        default="2,6",
        help="windows (days) replayed under tracemalloc for its peak (slow: about 10x)",
    )
    a("--seed", type=int, default=20261207)
    a("--database-url", default="postgres://postgres@127.0.0.1:5432")
    a("--db-name", default="bench_simulator")


BENCHMARK = Benchmark(
    module="bench.simulator",
    doc=__doc__ or "",
    add_options=add_options,
    measure=measure,
    title=report.TITLE,
    render=report.render,
    quick={"days": 3, "per_day": 300, "days_before": 1, "short_days": 1, "trace_days": "1,3"},
    renderable=lambda results: "execute" in results.get("measurements", {}),
)

if __name__ == "__main__":
    sys.exit(harness.main(BENCHMARK))
