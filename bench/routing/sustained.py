"""The routing benchmark's phase 4: ready -> offered under a steady arrival rate,
with a worker (prefork, as in the Procfile) and beat running the real ready
sweep, and a poller recording when each routing commit becomes visible."""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from collections import Counter

from bench import host
from bench.harness import log
from bench.routing.common import (
    STOP_TIMEOUT,
    Ctx,
    celery_worker,
    log_problems,
    log_size,
    task_runtimes,
    utcnow,
)
from bench.servers import celery_beat_argv
from bench.stats import ms, summary
from bench.supervise import PROCS, wait_log, wait_until

# --- phase 4: ready -> offered at a steady rate ---------------------------------------


def phase_sustained(ctx: Ctx) -> list[int]:
    import psycopg

    from bench.routing.netgen import Columns
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
        celery_beat_argv(schedule=str(ctx.work / "var" / "beat-schedule")),
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
            cpu0 = host.cpu_jiffies()
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
            cpu_busy = host.cpu_busy_since(cpu0)
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
        PROCS.stop(beat, timeout=STOP_TIMEOUT)
        PROCS.stop(worker, timeout=STOP_TIMEOUT)
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
