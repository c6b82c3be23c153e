"""The routing benchmark's decision phases: decisions/s through the real task path
(phase 1), the raw-SQL reference over the same studies (phase 2), and one
decision timed in-process with its SQL captured and profiled (phase 3)."""

from __future__ import annotations

import contextlib
import statistics
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from bench import host
from bench.database import explain_analyze
from bench.harness import log
from bench.routing.common import (
    STOP_TIMEOUT,
    Ctx,
    celery_worker,
    decided_count,
    insert_studies,
    log_problems,
    normalize_sql,
    ready_rows,
    short_path,
    task_runtimes,
    task_runtimes_by_kind,
)
from bench.stats import ms, summary
from bench.supervise import PROCS, wait_log

# --- phase 1: decisions/s through the task path -----------------------------------


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
        cpu0, sessions0 = host.cpu_jiffies(), host.pg_sessions(ctx.conn) or 0
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
        cpu_busy = host.cpu_busy_since(cpu0)
        sessions = (host.pg_sessions(ctx.conn) or 0) - sessions0
        worker_cpu = host.process_cpu_seconds(proc.pid)
    finally:
        PROCS.stop(proc, timeout=STOP_TIMEOUT)
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

    from bench.routing.rawsql import RawRouter

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
            top_plan = explain_analyze(examples[top[0][0]])
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
