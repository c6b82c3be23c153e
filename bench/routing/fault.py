"""The routing benchmark's phase 5, the fault test: studies routed by a solo worker
that is killed with ``kill -9`` mid-run; a new worker and two sweeper processes
then start together, and readers holding open offers go off shift meanwhile.
Then every study's routing history is checked (``verify_fault``)."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import re
import subprocess
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.harness import log
from bench.routing import sweeper
from bench.routing.common import (
    STOP_TIMEOUT,
    TASK_OK_RX,
    TASK_RECEIVED_RX,
    Ctx,
    celery_worker,
    decided_count,
    insert_studies,
    log_problems,
    log_size,
    ready_rows,
    utcnow,
)
from bench.supervise import PROCS, wait_log, wait_until

# --- phase 5: fault test -------------------------------------------------------------


def enqueue(ids: Sequence[int], queue: str) -> tuple[float, dict[str, int]]:
    from routing.tasks import route_study
    from teleradiology.celery import app

    t0 = time.perf_counter()
    task_ids: dict[str, int] = {}
    with app.producer_or_acquire() as producer:
        for sid in ids:
            res = route_study.apply_async(args=(sid,), queue=queue, producer=producer)
            task_ids[res.id] = sid
    return time.perf_counter() - t0, task_ids


def phase_fault(ctx: Ctx) -> list[int]:
    from routing.models import LAST_TIER

    args = ctx.args
    ctx.check_ingest("fault-test")
    n = args.fault_studies
    wait_s, accept_s = args.fault_tier_wait, args.fault_accept_timeout
    log(
        f"phase 5: fault test with {n} studies: kill -9 the worker mid-run, then a new worker "
        f"and two sweepers at once (tier wait {wait_s} s, auto-assign accept {accept_s} s, "
        f"CELERY_VISIBILITY_TIMEOUT={args.visibility_timeout})"
    )
    saved = ctx.conn.execute(
        "SELECT id, wait_stat_seconds, wait_urgent_seconds, wait_routine_seconds, "
        "accept_timeout_seconds, min_tier_wait_seconds FROM routing_routingrule"
    ).fetchall()
    # The waits are the longest at a tier (the SLA's fractions are minutes away for
    # these fresh studies, so every tier waits the cap); the floor must not exceed it.
    ctx.conn.execute(
        "UPDATE routing_routingrule SET wait_stat_seconds = %s, "
        "wait_urgent_seconds = %s, wait_routine_seconds = %s, "
        "accept_timeout_seconds = %s, min_tier_wait_seconds = 1",
        (wait_s, wait_s, wait_s, accept_s),
    )
    ids = insert_studies(ctx, ready_rows(ctx, n, "5"))
    first, last = ids[0], ids[-1]
    queue = f"bench-fault-{uuid.uuid4().hex[:8]}"
    _, task_ids = enqueue(ids, queue)
    env = ctx.env(CELERY_VISIBILITY_TIMEOUT=str(args.visibility_timeout))
    res: dict[str, Any] = {
        "studies": n,
        "tier_wait_seconds": wait_s,
        "accept_timeout_seconds": accept_s,
        "visibility_timeout": args.visibility_timeout,
    }
    stop_file = ctx.work / "fault-stop"
    sweep_logs = [ctx.work / "logs" / f"sweeper-{k}.jsonl" for k in (1, 2)]
    procs: list[subprocess.Popen[bytes]] = []
    saved_shifts: list[tuple[int, dt.datetime]] = []
    t_start = time.monotonic()
    try:
        worker_a, log_a = celery_worker(ctx, "fault-a", queue, env=env)
        procs.append(worker_a)
        wait_log(log_a, r"\bready\.", 60, worker_a)
        kill_at = int(n * args.fault_kill_fraction)
        wait_until(
            lambda: decided_count(ctx, first, last) >= kill_at,
            timeout=300,
            what=f"{kill_at} fault studies decided",
            interval=0.05,
        )
        PROCS.kill9(worker_a)
        t_kill = time.monotonic()
        res["decided_at_kill"] = decided_count(ctx, first, last)
        text = log_a.read_text(errors="replace")
        done_ids = {m.group(1) for m in TASK_OK_RX.finditer(text)}
        in_flight = [
            m.group(1) for m in TASK_RECEIVED_RX.finditer(text) if m.group(1) not in done_ids
        ]
        res["in_flight_at_kill"] = [task_ids.get(t) for t in in_flight]
        log(
            f"killed worker A (kill -9) with {res['decided_at_kill']}/{n} decided; "
            f"in flight: studies {res['in_flight_at_kill']}"
        )
        worker_b, log_b = celery_worker(ctx, "fault-b", queue, env=env)
        procs.append(worker_b)
        start_at = time.time() + 1.0
        for k, path in enumerate(sweep_logs, start=1):
            procs.append(
                PROCS.start(
                    sweeper.argv(
                        out=path,
                        stop=stop_file,
                        start_at=start_at,
                        interval=args.sweeper_interval,
                        max_seconds=args.fault_timeout + 60,
                    ),
                    env=env,
                    log_path=ctx.work / "logs" / f"sweeper-{k}.log",
                )
            )

        # Readers go off shift mid-run: the sweepers must withdraw their offers (once)
        # and re-route the studies left with nobody (once).
        time.sleep(max(0.0, start_at + args.fault_leave_after - time.time()))
        res["leavers"] = readers_leave(ctx, ids, args.fault_leave_studies, saved_shifts)
        log(
            f"ended the shifts of {res['leavers']['readers']} readers holding all the open "
            f"offers of {res['leavers']['studies']} offered studies"
        )

        def settled() -> bool:
            # The end of a study's chain: flagged unroutable (nobody eligible left; on
            # an auto-assign rule, every eligible reader let it time out), or offered
            # at the widest tier, where its timer judges that tier again and again.
            row = ctx.conn.execute(
                "SELECT count(*) FILTER (WHERE r.study_id IS NOT NULL), "
                "count(*) FILTER (WHERE r.unroutable_at IS NOT NULL "
                "  OR (r.tier = %s AND rr.delivery = 'offer' AND s.status = 'offered')) "
                "FROM studies_study s LEFT JOIN routing_studyrouting r ON r.study_id = s.id "
                "LEFT JOIN routing_routingrule rr ON rr.id = r.rule_id "
                "WHERE s.id BETWEEN %s AND %s",
                (LAST_TIER, first, last),
            ).fetchone()
            return bool(row[0] >= n and row[1] >= n)

        try:
            wait_until(
                settled,
                timeout=args.fault_timeout,
                interval=1.0,
                what="every fault study to be routed and escalated to the end",
            )
            res["settled"] = True
        except TimeoutError as exc:
            res["settled"] = False
            res["timeout"] = str(exc)
        res["settle_seconds"] = time.monotonic() - t_start
        # The killed worker's unacknowledged message comes back once the visibility
        # timeout has passed and kombu's periodic restore runs; wait for it (bounded)
        # with the sweepers still running, to see what the redelivered task does.
        res["redelivery"] = wait_redelivery(
            log_b, in_flight, task_ids, t_kill, args.redelivery_wait, worker_b
        )
        count_sql = "SELECT count(*) FROM routing_routingdecision WHERE study_id BETWEEN %s AND %s"
        before_linger = int(ctx.conn.execute(count_sql, (first, last)).fetchone()[0])
        time.sleep(args.fault_linger)  # sweepers keep running: nothing more may happen
        res["decisions_during_linger"] = (
            int(ctx.conn.execute(count_sql, (first, last)).fetchone()[0]) - before_linger
        )
        stop_file.touch()
        size_b = log_size(log_b)
    finally:
        for p in reversed(procs):
            PROCS.stop(p, timeout=STOP_TIMEOUT)
        with contextlib.suppress(Exception):
            for shift_id, ends_at in saved_shifts:
                ctx.conn.execute(
                    "UPDATE network_shift SET ends_at = %s WHERE id = %s", (ends_at, shift_id)
                )
        with contextlib.suppress(Exception):
            for rid, a, b, c, d, floor in saved:
                ctx.conn.execute(
                    "UPDATE routing_routingrule SET wait_stat_seconds = %s, "
                    "wait_urgent_seconds = %s, wait_routine_seconds = %s, "
                    "accept_timeout_seconds = %s, min_tier_wait_seconds = %s WHERE id = %s",
                    (a, b, c, d, floor, rid),
                )
    res["worker_a_log_problems"] = log_problems(log_a)
    res["worker_b_log_problems"] = log_problems(log_b, size_b)
    text_b = log_b.read_text(errors="replace")
    redelivered = {m.group(1) for m in TASK_RECEIVED_RX.finditer(text_b)} & set(in_flight)
    res["redelivered_to_b"] = [task_ids.get(t) for t in redelivered]
    sweeps = []
    for k, path in enumerate(sweep_logs, start=1):
        recs = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        sweeps.append(
            {
                "sweeper": k,
                "sweeps": len(recs),
                "escalated": sum(r.get("escalated", 0) for r in recs),
                "routed_late": sum(r.get("routed_late", 0) for r in recs),
                "offers_withdrawn": sum(r.get("offers_withdrawn", 0) for r in recs),
                "errors": [r["error"] for r in recs if "error" in r][:5],
                "error_count": sum(1 for r in recs if "error" in r),
                "first_at": recs[0]["at"] if recs else None,
            }
        )
    res["sweepers"] = sweeps
    if all(s["first_at"] for s in sweeps):
        res["sweepers_start_skew_ms"] = 1000 * abs(sweeps[0]["first_at"] - sweeps[1]["first_at"])
    res.update(
        verify_fault(
            ctx, ids, wait_s, accept_s, set(res["in_flight_at_kill"]), res.get("leavers", {})
        )
    )
    if res["worker_b_log_problems"]["count"]:
        res["passed"] = False
        res["problems"].append(
            f"{res['worker_b_log_problems']['count']} errors in worker B's log: "
            + "; ".join(res["worker_b_log_problems"]["examples"])[:600]
        )
    errors = sum(s["error_count"] for s in sweeps)
    if errors:
        res["leaver_problems"].append(
            f"{errors} sweeps failed with an exception: "
            + "; ".join(" ".join(e.split()) for s in sweeps for e in s["errors"])[:700]
        )
    res["leavers_passed"] = not res["leaver_problems"]
    ctx.results["fault"] = res
    log(f"fault test: {'PASS' if res['passed'] else 'FAIL'} - {res['summary']}")
    log(
        "readers going off shift mid-run: "
        + ("PASS" if res["leavers_passed"] else "FAIL - " + "; ".join(res["leaver_problems"]))
    )
    return ids


def readers_leave(
    ctx: Ctx, ids: Sequence[int], n_studies: int, saved: list[tuple[int, dt.datetime]]
) -> dict[str, Any]:
    """End, now, the current shifts of every reader holding an open offer on up to
    ``n_studies`` offered studies (their original end times go to ``saved``)."""
    c = ctx.conn
    studies = [
        r[0]
        for r in c.execute(
            "SELECT id FROM studies_study WHERE id = ANY(%s) AND status = 'offered' "
            "ORDER BY id LIMIT %s",
            (list(ids), n_studies),
        ).fetchall()
    ]
    readers = [
        r[0]
        for r in c.execute(
            "SELECT DISTINCT radiologist_id FROM worklist_offer "
            "WHERE study_id = ANY(%s) AND withdrawn_at IS NULL",
            (studies,),
        ).fetchall()
    ]
    rows = c.execute(
        "SELECT id, ends_at FROM network_shift WHERE radiologist_id = ANY(%s) "
        "AND starts_at < now() AND ends_at > now()",
        (readers,),
    ).fetchall()
    saved.extend((r[0], r[1]) for r in rows)
    c.execute(
        "UPDATE network_shift SET ends_at = now() WHERE id = ANY(%s)", ([r[0] for r in rows],)
    )
    open_offers = int(
        c.execute(
            "SELECT count(*) FROM worklist_offer o JOIN studies_study s ON s.id = o.study_id "
            "WHERE o.radiologist_id = ANY(%s) AND o.withdrawn_at IS NULL "
            "AND s.status = 'offered'",
            (readers,),
        ).fetchone()[0]
    )
    return {
        "studies": len(studies),
        "study_ids": studies,
        "readers": len(readers),
        "reader_ids": readers,
        "open_offers_of_leavers": open_offers,
        "at": utcnow(),
    }


def wait_redelivery(
    log_b: Path,
    in_flight: Sequence[str],
    task_ids: dict[str, int],
    t_kill: float,
    max_wait: float,
    worker: subprocess.Popen[bytes],
) -> dict[str, Any]:
    """Wait until worker B has run every task that was in flight at the kill."""
    out: dict[str, Any] = {"waited_up_to_s": max_wait, "tasks": {}}
    if not in_flight:
        return out
    pattern = {
        t: re.compile(rf"Task routing\.route_study\[{re.escape(t)}\] succeeded in [0-9.e-]+s: (.*)")
        for t in in_flight
    }
    deadline = t_kill + max_wait
    while time.monotonic() < deadline and worker.poll() is None:
        text = log_b.read_text(errors="replace") if log_b.exists() else ""
        for t, rx in pattern.items():
            found = rx.search(text)
            if found and str(task_ids.get(t)) not in out["tasks"]:
                out["tasks"][str(task_ids.get(t))] = {
                    "seconds_after_kill": round(time.monotonic() - t_kill, 1),
                    "result": found.group(1).strip(),
                }
        if len(out["tasks"]) == len(in_flight):
            break
        time.sleep(0.5)
    return out


def verify_fault(
    ctx: Ctx,
    ids: Sequence[int],
    wait_s: int,
    accept_s: int,
    in_flight: set[int | None],
    leavers: dict[str, Any],
) -> dict[str, Any]:
    from routing.models import LAST_TIER

    ids = list(ids)
    c = ctx.conn
    problems: list[str] = []
    state = {
        r[0]: r[1:]
        for r in c.execute(
            "SELECT s.id, s.status, r.study_id IS NOT NULL, r.unroutable_at IS NOT NULL, "
            "(SELECT count(*) FROM worklist_offer o WHERE o.study_id = s.id "
            " AND o.withdrawn_at IS NULL) "
            "FROM studies_study s LEFT JOIN routing_studyrouting r ON r.study_id = s.id "
            "WHERE s.id = ANY(%s)",
            (ids,),
        ).fetchall()
    }
    not_routed = [
        sid
        for sid, (status, has_r, unr, _) in state.items()
        if not has_r or (status != "offered" and not unr)
    ]
    if not_routed:
        problems.append(
            f"{len(not_routed)} studies neither offered nor flagged unroutable "
            f"(e.g. {not_routed[:5]})"
        )
    dup_offers = c.execute(
        "SELECT count(*) FROM (SELECT study_id, radiologist_id FROM worklist_offer "
        "WHERE study_id = ANY(%s) AND withdrawn_at IS NULL GROUP BY 1, 2 HAVING count(*) > 1) x",
        (ids,),
    ).fetchone()[0]
    if dup_offers:
        problems.append(f"{dup_offers} duplicate open offers (same study, same reader)")
    delivery = dict(c.execute("SELECT id, delivery FROM routing_routingrule").fetchall())
    reroutes = {
        (r[0], r[1])
        for r in c.execute(
            "SELECT study_id, at FROM studies_studytransition WHERE study_id = ANY(%s) "
            "AND reason LIKE 're-routing:%%'",
            (ids,),
        ).fetchall()
    }
    # Each study's steps in the order they were written: ids come from a sequence at
    # insert time, and a study's steps are written under its row lock, one after the
    # other.  Their created_at is the ``now`` each process passed, taken when its sweep
    # began, which can be earlier than a step written before it by another sweeper.
    chains: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    for row in c.execute(
        "SELECT study_id, id, created_at, outcome, tier, rule_id, reason "
        "FROM routing_routingdecision WHERE study_id = ANY(%s) ORDER BY study_id, id",
        (ids,),
    ):
        chains[row[0]].append(row[1:])
    alerts = Counter(
        r[0]
        for r in c.execute(
            "SELECT study_id FROM alerts_alert WHERE kind = 'unroutable' AND study_id = ANY(%s)",
            (ids,),
        ).fetchall()
    )
    too_soon, bad_tier, initial_dups, alert_mismatch = [], [], [], []
    episodes_total = 0
    outcome_counts: Counter[str] = Counter()
    for sid in ids:
        chain = chains.get(sid, [])
        if not chain:
            continue
        if chain[0][2] == "offered" and sum(1 for d in chain if d[2] == "offered") > 1:
            # a second OFFERED is legitimate only after an unroutable retry or a re-route
            for prev, d in itertools.pairwise(chain):
                if d[2] == "offered" and prev[2] != "unroutable" and (sid, d[1]) not in reroutes:
                    initial_dups.append(sid)
                    break
        episodes = 0
        for i, d in enumerate(chain):
            outcome_counts[d[2]] += 1
            if d[2] == "unroutable" and (i == 0 or chain[i - 1][2] != "unroutable"):
                episodes += 1
            if i == 0:
                continue
            prev = chain[i - 1]
            gap = (d[1] - prev[1]).total_seconds()
            if (sid, d[1]) in reroutes:
                continue
            if prev[2] == "unroutable":
                need = 60.0  # UNROUTABLE_RETRY
            elif delivery.get(prev[4]) == "auto_assign":
                need = float(accept_s)
            else:
                need = float(wait_s)
            if gap < need:
                too_soon.append((sid, prev[2], d[2], round(gap, 3)))
            # An escalation widens the tier, except at the widest tier, where the
            # timer offers the study to readers newly eligible there.
            if (
                d[2] == "escalated"
                and prev[2] in ("offered", "escalated")
                and delivery.get(d[4]) != "auto_assign"
                and d[3] <= prev[3]
                and not d[3] == prev[3] == LAST_TIER
            ):
                bad_tier.append(sid)
        episodes_total += episodes
        if alerts.get(sid, 0) != episodes:
            alert_mismatch.append((sid, alerts.get(sid, 0), episodes))
    # Studies whose offers were withdrawn because their readers went off shift: a
    # step too soon there is a problem of the withdraw/re-route path (next table row).
    touched = {
        r[0]
        for r in c.execute(
            "SELECT DISTINCT study_id FROM worklist_offer WHERE study_id = ANY(%s) "
            "AND withdrawn_reason = 'reader no longer eligible'",
            (ids,),
        ).fetchall()
    }
    too_soon_core = [t for t in too_soon if t[0] not in touched]
    too_soon_leavers = [t for t in too_soon if t[0] in touched]
    if too_soon_core:
        problems.append(
            f"{len(too_soon_core)} routing steps came before their timer "
            f"(a double escalation/route), e.g. {too_soon_core[:3]}"
        )
    if bad_tier:
        problems.append(f"{len(bad_tier)} escalations did not widen the tier, e.g. {bad_tier[:3]}")
    if initial_dups:
        problems.append(f"{len(initial_dups)} studies offered twice, e.g. {initial_dups[:3]}")
    if alert_mismatch:
        problems.append(
            f"{len(alert_mismatch)} studies whose unroutable alerts != unroutable "
            f"episodes (study, alerts, episodes), e.g. {alert_mismatch[:3]}"
        )
    killed = [s for s in in_flight if s is not None]
    killed_ok = all(
        s in chains
        and chains[s][0][2] in ("offered", "unroutable")
        and sum(1 for d in chains[s] if d[2] == "offered" and (s, d[1]) not in reroutes) <= 1
        for s in killed
    )
    if not killed_ok:
        problems.append(f"the study in flight at the kill was not routed exactly once: {killed}")
    # Readers who went off shift: none of their offers on offered studies may stay
    # open, and no study may be re-routed twice for it (two reroutes close together).
    leaver_ids = list(leavers.get("reader_ids", []))
    leaver_open = int(
        c.execute(
            "SELECT count(*) FROM worklist_offer o JOIN studies_study s ON s.id = o.study_id "
            "WHERE o.study_id = ANY(%s) AND o.radiologist_id = ANY(%s) "
            "AND o.withdrawn_at IS NULL AND s.status = 'offered' AND o.offered_at <= %s",
            (ids, leaver_ids, leavers.get("at") or utcnow()),
        ).fetchone()[0]
    )
    leaver_problems: list[str] = []
    if too_soon_leavers:
        leaver_problems.append(
            f"{len(too_soon_leavers)} studies whose readers went off shift had two routing "
            f"steps closer than their timer (study, previous, next, seconds apart): "
            f"{too_soon_leavers[:3]}"
        )
    if leaver_open:
        leaver_problems.append(f"{leaver_open} offers of readers who went off shift are still open")
    withdrawn_stale = int(
        c.execute(
            "SELECT count(*) FROM worklist_offer WHERE study_id = ANY(%s) "
            "AND withdrawn_reason = 'reader no longer eligible'",
            (ids,),
        ).fetchone()[0]
    )
    reroute_times: dict[int, list[Any]] = defaultdict(list)
    for sid, at in sorted(reroutes, key=lambda r: (r[0], r[1])):
        reroute_times[sid].append(at)
    double_reroutes = [
        (sid, round((b - a).total_seconds(), 3))
        for sid, times in reroute_times.items()
        for a, b in itertools.pairwise(times)
        if (b - a).total_seconds() < 2.0
    ]
    if double_reroutes:
        leaver_problems.append(
            f"{len(double_reroutes)} studies re-routed twice within 2 s (study, seconds "
            f"apart), e.g. {double_reroutes[:3]}"
        )
    status_counts = Counter(v[0] for v in state.values())
    summary_text = (
        f"{len(ids) - len(not_routed)}/{len(ids)} routed; decisions {dict(outcome_counts)}; "
        f"unroutable alerts {sum(alerts.values())} for {episodes_total} unroutable episodes; "
        f"duplicate open offers {dup_offers}; steps before their timer {len(too_soon_core)}"
    )
    return {
        "passed": not problems,
        "problems": problems,
        "leaver_problems": leaver_problems,
        "summary": summary_text,
        "status_counts": dict(status_counts),
        "decision_outcomes": dict(outcome_counts),
        "alerts": sum(alerts.values()),
        "unroutable_episodes": episodes_total,
        "reroutes": len(reroutes),
        "rerouted_studies": len(reroute_times),
        "double_reroutes": double_reroutes,
        "leaver_offers_left_open": leaver_open,
        "offers_withdrawn_stale": withdrawn_stale,
        "in_flight_routed_once": killed_ok,
    }
