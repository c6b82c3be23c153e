"""The routing benchmark's phase 6: the escalation sweep with a 1,000,000-study
table (history bulk-loaded with COPY), at several open-worklist sizes, with
nothing due and with timers made due; the offer-eligibility sweep on its own;
the sweeps' plans; and one decision timed again with the big table."""

# ruff: noqa: S311
from __future__ import annotations

import datetime as dt
import random
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from bench.database import explain_analyze
from bench.harness import log
from bench.routing.common import (
    Ctx,
    add_routing_rows,
    insert_studies,
    max_study_id,
    plan_time,
    ready_rows,
    retire,
    set_jit,
    utcnow,
)
from bench.routing.decisions import phase_raw, route_in_process
from bench.stats import ms, summary

# --- phase 6: the escalation sweep with 1,000,000 studies -----------------------------


def filler_rows(ctx: Ctx, n: int) -> Any:
    """Historical studies: ~96.5% final, 3.5% cancelled, received over 180 days."""
    rng = random.Random(ctx.args.seed + 3)
    readers = ctx.net.radiologist_ids
    now = utcnow()
    maker = ctx.maker
    for _ in range(n):
        received = now - dt.timedelta(seconds=rng.uniform(3600, 180 * 86400))
        row = maker.row(prefix="6", status="final", at=received)
        ready = received + dt.timedelta(seconds=rng.uniform(20, 300))
        row["ready_at"] = ready
        row["offered_at"] = ready + dt.timedelta(seconds=1)
        row["last_instance_at"] = ready - dt.timedelta(seconds=10)
        if rng.random() < 0.035:
            row["status"] = "cancelled"
            row["cancelled_at"] = ready + dt.timedelta(minutes=rng.uniform(1, 120))
        else:
            claimed = ready + dt.timedelta(minutes=rng.uniform(1, 90))
            row["assigned_radiologist_id"] = rng.choice(readers)
            row["claimed_at"] = claimed
            row["finalized_at"] = claimed + dt.timedelta(minutes=rng.uniform(3, 60))
        yield row


def route_worklist(ctx: Ctx) -> list[int]:
    """The open worklist: fresh studies routed by the app (real offers and timers)."""
    from routing.services import study_route

    m = max(ctx.args.worklist_levels)
    log(f"phase 6: routing {m} fresh studies in-process (the open worklist for the sweep)")
    ids = insert_studies(ctx, ready_rows(ctx, m, "7"))
    ctx.conn.execute("ANALYZE studies_study")
    for sid in ids:
        study_route(study_id=sid)
    push_timers(ctx, ids)
    return ids


def push_timers(ctx: Ctx, ids: Sequence[int]) -> None:
    """Timers 1 h out: the sweep bench makes studies due on purpose."""
    ctx.conn.execute(
        "UPDATE routing_studyrouting SET next_escalation_at = now() + interval '1 hour' "
        "WHERE study_id = ANY(%s) AND next_escalation_at IS NOT NULL",
        (list(ids),),
    )


def phase_big_table(ctx: Ctx) -> None:
    args = ctx.args
    ctx.check_ingest("sweep")
    c = ctx.conn
    worklist = route_worklist(ctx)
    current = int(c.execute("SELECT count(*) FROM studies_study").fetchone()[0])
    extra = 2 * args.big_latency_sample + 40 + 2 * args.big_capture
    n = max(0, args.big_table_rows - current - extra)
    log(
        f"bulk-loading {n} historical studies (table target {args.big_table_rows}) "
        f"with routing rows and {args.offers_per_study} offers each"
    )
    t0 = time.monotonic()
    before = max_study_id(ctx)
    from bench.routing.netgen import copy_models
    from studies.models import Study

    copy_models(c, Study, filler_rows(ctx, n))
    after = max_study_id(ctx)
    t_copy = time.monotonic() - t0
    add_routing_rows(ctx, before + 1, after, decided="offered_at")
    rad_ids = sorted(ctx.net.radiologist_ids)
    # Offers as the app leaves them: withdrawn when the study was reported final (or
    # cancelled), so history puts nothing on a worklist.
    for k in range(args.offers_per_study):
        c.execute(
            # rank_at as worklist.aging.rank_at: arrival plus (priority - 1) aging
            # steps of the facility's group.
            """INSERT INTO worklist_offer (study_id, radiologist_id, tier, offered_at,
                                           priority, sla_due_at, received_at, facility_id,
                                           rank_at, withdrawn_at, withdrawn_reason)
               SELECT s.id, (%(rads)s::bigint[])[1 + ((s.id * 7919 + %(k)s * 677)
                                                     %% array_length(%(rads)s::bigint[], 1))],
                      0, s.offered_at, s.priority, s.sla_due_at, s.received_at, s.facility_id,
                      s.received_at + (s.priority - 1) * g.worklist_aging_minutes
                                      * interval '1 minute',
                      GREATEST(s.offered_at, COALESCE(s.finalized_at, s.cancelled_at)),
                      'study reported final or cancelled'
               FROM studies_study s
               JOIN network_facility f ON f.id = s.facility_id
               JOIN network_readinggroup g ON g.id = f.reading_group_id
               WHERE s.id BETWEEN %(a)s AND %(b)s""",
            {"rads": rad_ids, "k": k, "a": before + 1, "b": after},
        )
    t_rows = time.monotonic() - t0
    log(f"loaded in {t_rows:.0f} s (COPY of studies {t_copy:.0f} s); VACUUM ANALYZE")
    c.execute("VACUUM ANALYZE")
    t_load = time.monotonic() - t0
    sizes = dict(
        c.execute(
            "SELECT relname, pg_size_pretty(pg_total_relation_size(oid)) FROM pg_class "
            "WHERE relname IN ('studies_study', 'routing_studyrouting', 'worklist_offer', "
            "'routing_routingdecision', 'audit_auditevent', 'studies_studytransition')"
        ).fetchall()
    )
    counts = dict(
        c.execute("SELECT status, count(*) FROM studies_study GROUP BY 1 ORDER BY 1").fetchall()
    )
    ctx.results["big"] = {
        "filler": n,
        "load_seconds": t_load,
        "copy_seconds": t_copy,
        "sizes": sizes,
        "status_counts": counts,
        "studies": sum(counts.values()) + extra,
        "offers": int(c.execute("SELECT count(*) FROM worklist_offer").fetchone()[0]),
        "open_offers": int(
            c.execute("SELECT count(*) FROM worklist_offer WHERE withdrawn_at IS NULL").fetchone()[
                0
            ]
        ),
        "open_worklist": dict(
            c.execute(
                "SELECT status, count(*) FROM studies_study WHERE id = ANY(%s) GROUP BY 1",
                (worklist,),
            ).fetchall()
        ),
    }

    # One decision with the big table (fresh studies; retired afterwards).
    k = args.big_latency_sample
    log(f"timing study_route in-process on {k} fresh studies with the big table")
    ids = insert_studies(ctx, ready_rows(ctx, extra, "8"))
    c.execute("ANALYZE studies_study")
    ctx.results["latency_big"] = route_in_process(ctx, ids, args.big_capture)
    lat = ctx.results["latency_big"]["latency"]
    log(
        f"in-process study_route with the big table: p50 {ms(lat.get('p50'))} "
        f"p99 {ms(lat.get('p99'))}"
    )
    phase_raw(ctx, ids, "raw_big")
    retire(ctx, ids, "big-table latency")
    # Diagnostic (not a target figure): the same with PostgreSQL's JIT off for the session.
    log(f"diagnostic: the same with SET jit = off ({k} fresh studies)")
    ids = insert_studies(ctx, ready_rows(ctx, k + 20, "9"))
    set_jit(False)
    try:
        ctx.results["latency_big_nojit"] = route_in_process(ctx, ids, 0)
    finally:
        set_jit(True)
    phase_raw(ctx, ids, "raw_big_nojit", jit_off=True)
    retire(ctx, ids, "big-table latency without JIT")
    sweep_bench(ctx, worklist)


def set_worklist(ctx: Ctx, offered: Sequence[int], level: int) -> list[int]:
    """Make the first ``level`` offered studies the open worklist; the rest are
    set aside (status final, as if read) until the next level.  Every timer is
    pushed 1 h out: the sweep bench makes studies due on purpose."""
    c = ctx.conn
    live, hidden = list(offered[:level]), list(offered[level:])
    c.execute(
        "UPDATE studies_study SET status = 'offered' WHERE id = ANY(%s) AND status = 'final'",
        (live,),
    )
    c.execute(
        "UPDATE studies_study SET status = 'final', finalized_at = coalesce(finalized_at, now()) "
        "WHERE id = ANY(%s) AND status = 'offered'",
        (hidden,),
    )
    push_timers(ctx, offered)
    return live


def timed_sweeps(n: int) -> tuple[list[float], Counter[str]]:
    from django.utils import timezone

    from routing.services import routing_sweep

    times: list[float] = []
    acted: Counter[str] = Counter()
    for _ in range(n):
        t0 = time.perf_counter()
        out = routing_sweep(now=timezone.now())
        times.append(time.perf_counter() - t0)
        acted.update(out)
    return times, acted


def timed_withdraw(n: int) -> list[float]:
    """The offer-eligibility sweep (a beat task of its own) timed in-process."""
    from django.utils import timezone

    from routing.services import offers_withdraw_ineligible

    times: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter()
        offers_withdraw_ineligible(now=timezone.now())
        times.append(time.perf_counter() - t0)
    return times


def sweep_bench(ctx: Ctx, worklist: Sequence[int]) -> None:
    from django.utils import timezone

    from routing.services import routing_sweep

    args = ctx.args
    c = ctx.conn
    rng = random.Random(args.seed + 4)
    offered = [
        r[0]
        for r in c.execute(
            "SELECT id FROM studies_study WHERE id = ANY(%s) AND status = 'offered' ORDER BY id",
            (list(worklist),),
        ).fetchall()
    ]
    levels = sorted({min(level, len(offered)) for level in args.worklist_levels})
    main_level = min(args.open_worklist, len(offered))
    if main_level not in levels:
        levels = sorted({*levels, main_level})
    by_level: dict[int, dict[str, Any]] = {}
    plans: dict[str, str] = {}
    due_times: list[float] = []
    due_nojit: list[float] = []
    acted_due: Counter[str] = Counter()
    made_due = 0
    for level in levels:
        live = set_worklist(ctx, offered, level)
        open_offers = int(
            c.execute(
                "SELECT count(*) FROM worklist_offer o JOIN studies_study s ON s.id = o.study_id "
                "WHERE o.withdrawn_at IS NULL AND s.status = 'offered'"
            ).fetchone()[0]
        )
        for _ in range(5):  # warm-up
            routing_sweep(now=timezone.now())
        n = args.sweeps if level == main_level else max(20, args.sweeps // 4)
        log(f"sweep: open worklist {level} studies ({open_offers} open offers): {n} idle sweeps")
        idle, acted = timed_sweeps(n)
        withdraw_plan = sweep_plans(only="withdraw")
        withdraw_times = timed_withdraw(20)
        by_level[level] = {
            "open_offers": open_offers,
            "idle": summary(idle),
            "acted": dict(acted),
            "withdraw_query_ms": plan_time(withdraw_plan),
            "withdraw": summary(withdraw_times),
        }
        if level != main_level:
            continue
        log(
            f"sweep: open worklist {level}: {args.due_sweeps} sweeps with {args.due_per_sweep} "
            f"due each (+{args.due_sweeps_nojit} with JIT off)"
        )
        for n_sweep in range(args.due_sweeps + args.due_sweeps_nojit):
            jit_off = n_sweep >= args.due_sweeps
            candidates = [
                r[0]
                for r in c.execute(
                    "SELECT r.study_id FROM routing_studyrouting r JOIN studies_study s "
                    "ON s.id = r.study_id WHERE r.study_id = ANY(%s) AND s.status = 'offered' "
                    "AND r.tier < 2 AND r.next_escalation_at > now()",
                    (live,),
                ).fetchall()
            ]
            due = rng.sample(candidates, min(args.due_per_sweep, len(candidates)))
            made_due += len(due)
            c.execute(
                "UPDATE routing_studyrouting SET next_escalation_at = now() - interval '1 ms' "
                "WHERE study_id = ANY(%s)",
                (due,),
            )
            if jit_off:
                set_jit(False)
            t0 = time.perf_counter()
            out = routing_sweep(now=timezone.now())
            elapsed = time.perf_counter() - t0
            if jit_off:
                set_jit(True)
                due_nojit.append(elapsed)
                continue
            due_times.append(elapsed)
            acted_due.update(out)
        # Plans: make 3 due and EXPLAIN ANALYZE the sweep's queries as the app builds them.
        candidates = [
            r[0]
            for r in c.execute(
                "SELECT study_id FROM routing_studyrouting WHERE study_id = ANY(%s) AND tier < 2 "
                "AND next_escalation_at > now()",
                (live,),
            ).fetchall()
        ]
        c.execute(
            "UPDATE routing_studyrouting SET next_escalation_at = now() - interval '1 ms' "
            "WHERE study_id = ANY(%s)",
            (rng.sample(candidates, min(3, len(candidates))),),
        )
        plans = sweep_plans()
        push_timers(ctx, live)
    set_worklist(ctx, offered, len(offered))
    main = by_level[main_level]
    ctx.results["sweep"] = {
        "open_worklist": main_level,
        "open_offers": main["open_offers"],
        "idle": main["idle"],
        "due": summary(due_times),
        "due_nojit": summary(due_nojit),
        "due_per_sweep": args.due_per_sweep,
        "made_due": made_due,
        "acted_idle": main["acted"],
        "acted_due": dict(acted_due),
        "by_level": by_level,
        "plans": plans,
    }
    i, d = main["idle"], ctx.results["sweep"]["due"]
    log(
        f"sweep (worklist {main_level}) idle p50 {ms(i['p50'], 2)} p95 {ms(i['p95'], 2)}; "
        f"with {args.due_per_sweep} due p50 {ms(d.get('p50'), 2)} p95 {ms(d.get('p95'), 2)}"
    )


def sweep_plans(only: str = "") -> Any:
    """EXPLAIN ANALYZE of the sweeps' selection queries, from the app's own selectors."""
    from django.utils import timezone

    from routing import selectors
    from routing.services import ROUTE_GRACE
    from worklist.selectors import open_offers_of_live_studies

    now = timezone.now()
    due = selectors.escalations_due(now=now)[:200]
    orphans = selectors.studies_unrouted(ready_before=now - ROUTE_GRACE, now=now)[:200]
    # The withdraw sweep's one selection statement; its readers' facts are then read
    # as routing's batch reads them, and judged by the KEEP_OFFER policy in Python.
    stale = open_offers_of_live_studies()
    if only == "withdraw":
        return explain_analyze(stale)
    return {
        "due timers (routing_sweep)": explain_analyze(due),
        "lost routing tasks (routing_sweep)": explain_analyze(orphans),
        "offers to withdraw (offers_withdraw_ineligible, a beat task of its own)": explain_analyze(
            stale
        ),
    }
