"""One measurement of the simulator benchmark, in a fresh process of its own (so
its peak memory is its own): run as ``python -m bench.simulator.child MODE
--run-id N [--tracemalloc]`` with the app's environment; prints one JSON line.

Modes, all over the window of the queued run ``N`` (its draft, its group):

- ``execute``: ``simulation.services.run_execute`` (what the Celery task runs),
  start to end;
- ``stream``: the I/O floor through the app: ``simulation.selectors.
  replay_studies`` iterated (the studies, each with its first recorded decision,
  as ``SimStudy`` objects), nothing else;
- ``bare``: the I/O floor under the ORM: the same rows by hand-written SQL on a
  server-side cursor (psycopg), nothing built from them;
- ``setup``: what ``run_execute`` reads besides the stream (count, reading
  rates, the readers' history into a roster, the live rules);
- ``engine``: ``simulation.engine.replay`` alone, on studies loaded into a list
  first (the load not timed).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import tracemalloc
from typing import Any

BARE_SQL = """
SELECT s.id, s.accession_number, s.study_instance_uid, s.facility_id, s.modality,
       s.body_part, s.study_description, s.procedure_code, s.priority, s.flags,
       j.code, s.received_at, d.created_at, s.sla_due_at, d.rule_name, d.tier,
       d.outcome, d.offered_to
FROM studies_study s
JOIN network_facility f ON f.id = s.facility_id
JOIN network_jurisdiction j ON j.id = s.patient_jurisdiction_id
LEFT JOIN LATERAL (
    SELECT created_at, rule_name, tier, outcome, offered_to
    FROM routing_routingdecision r WHERE r.study_id = s.id
    ORDER BY r.created_at, r.id LIMIT 1
) d ON true
WHERE f.reading_group_id = %s AND s.ready_at >= %s AND s.ready_at < %s
  AND NOT s.is_prior AND s.status IN ('ready', 'offered', 'claimed', 'preliminary', 'final')
ORDER BY coalesce(d.created_at, s.ready_at), s.id
"""


def _maxrss_mb() -> float:
    """This process's peak resident set size, MB: ``VmHWM`` (the high-water mark of
    its own memory since it started this program), else ``getrusage``'s maxrss.
    On Linux ``getrusage``'s maxrss carries over the parent's peak across fork and
    exec (here the benchmark's own process, data generator and all), so it would
    hide the measurement's own peak below it."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    """The figures of a result worth printing beside the timing."""
    out: dict[str, Any] = {"studies": result.get("studies")}
    for name, arm in result.get("arms", {}).items():
        out[name] = {
            "first_offer_by_tier": arm.get("first_offer_by_tier"),
            "unroutable": (arm.get("unroutable") or {}).get("count"),
            "never_offered": (arm.get("unroutable") or {}).get("never_offered"),
            "escalations": arm.get("escalations"),
            "claimed": arm.get("claimed"),
            "fairness_cv": (arm.get("fairness") or {}).get("coefficient_of_variation"),
        }
    elsewhere = result.get("elsewhere") or {}
    recorded = result.get("recorded") or {}
    out["elsewhere"] = elsewhere.get("count")
    out["recorded"] = {"compared": recorded.get("compared"), "same": recorded.get("same")}
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["execute", "stream", "bare", "setup", "engine"])
    p.add_argument("--run-id", type=int, required=True)
    p.add_argument("--tracemalloc", action="store_true")
    args = p.parse_args(argv)

    import django

    django.setup()
    from simulation.models import SimulationRun

    run = SimulationRun.objects.select_related("draft").get(pk=args.run_id)
    group, start, end = run.reading_group_id, run.window_start, run.window_end
    out: dict[str, Any] = {"mode": args.mode, "run_id": run.pk, "tracemalloc": args.tracemalloc}
    out["rss_before_mb"] = _maxrss_mb()
    work: Any = None
    if args.mode == "engine":
        from simulation import engine
        from simulation.roster import HistoryRoster
        from simulation.rulesets import sim_rules
        from simulation.selectors import live_rules_as_draft, reading_minutes, replay_studies

        studies = list(replay_studies(reading_group_id=group, window_start=start, window_end=end))
        minutes, default = reading_minutes(reading_group_id=group, until=end)
        roster = HistoryRoster(reading_group_id=group, since=start, until=end)
        live = sim_rules(live_rules_as_draft(reading_group_id=group))
        draft = sim_rules(run.draft.rules)
        out["loaded"] = len(studies)

        def work() -> Any:
            return engine.replay(
                studies,
                live=live,
                draft=draft,
                roster=roster,
                reading_minutes=minutes,
                default_reading_minutes=default,
                window=(start, end),
            )
    elif args.mode == "execute":
        from simulation.services import run_execute

        def work() -> Any:
            run_execute(run_id=run.pk)
    elif args.mode == "stream":
        from simulation.selectors import replay_studies

        def work() -> Any:
            n = recorded = 0
            for study in replay_studies(reading_group_id=group, window_start=start, window_end=end):
                n += 1
                recorded += study.recorded is not None
            return {"studies": n, "with_recorded_decision": recorded}
    elif args.mode == "bare":
        from django.db import connection

        def work() -> Any:
            n = 0
            connection.ensure_connection()
            raw = connection.connection
            with raw.transaction(), raw.cursor(name="bench_bare") as cur:
                cur.itersize = 2000
                cur.execute(BARE_SQL, (group, start, end))
                for _ in cur:
                    n += 1
            return {"studies": n}
    else:  # setup
        from simulation.roster import HistoryRoster
        from simulation.rulesets import sim_rules
        from simulation.selectors import (
            live_rules_as_draft,
            reading_minutes,
            replay_studies_count,
        )

        def work() -> Any:
            parts = {}
            t = time.perf_counter()
            count = replay_studies_count(reading_group_id=group, window_start=start, window_end=end)
            parts["count"] = time.perf_counter() - t
            t = time.perf_counter()
            reading_minutes(reading_group_id=group, until=end)
            parts["reading rates"] = time.perf_counter() - t
            t = time.perf_counter()
            roster = HistoryRoster(reading_group_id=group, since=start, until=end)
            parts["roster (history)"] = time.perf_counter() - t
            t = time.perf_counter()
            sim_rules(live_rules_as_draft(reading_group_id=group))
            parts["live rules"] = time.perf_counter() - t
            return {"studies": count, "parts": parts, "readers": len(roster.timelines)}

    if args.tracemalloc:
        tracemalloc.start()
    cpu, wall = _cpu(), time.perf_counter()
    value = work()
    out["seconds"] = time.perf_counter() - wall
    out["cpu_seconds"] = _cpu() - cpu
    if args.tracemalloc:
        out["tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / (1 << 20)
        tracemalloc.stop()
    out["maxrss_mb"] = _maxrss_mb()
    if args.mode == "execute":
        run.refresh_from_db()
        out["status"] = run.status
        out["error"] = run.error[:2000]
        out["studies_total"] = run.studies_total
        out["studies_done"] = run.studies_done
        out["result"] = _summary(run.result) if run.result else None
    elif args.mode == "engine":
        out["result"] = _summary(value)
    else:
        out["value"] = value
    print(json.dumps(out, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
