"""The turnaround section of BENCHMARKS.md, rendered from the results: the data,
the queries' table against the p95 target, and the slowest statement's plan."""

from __future__ import annotations

import json
import re
from typing import Any

from bench.report import verdict
from bench.stats import ms, pct
from bench.turnaround.measure import METRICS_WARMUP, WARMUP

TITLE = "## Turnaround (bench/turnaround)"
TARGET = 0.300  # seconds, p95


def versions_text(ver: dict[str, str]) -> str:
    parts = [
        f"Python {ver['python']}",
        f"Django {ver.get('django')}",
        f"psycopg {ver.get('psycopg')}",
    ]
    if "postgresql" in ver:
        parts += [f"PostgreSQL {ver['postgresql']}", f"({ver.get('pg settings', '')})"]
    return ", ".join(parts)


def header(results: dict[str, Any]) -> list[str]:
    m, others = results["machine"], results.get("others", [])
    lines = [
        TITLE,
        "",
        f"Run on {results['started_at']} UTC, {m['cpus']} cores ({m['model']}), "
        f"{m['memory']}; {versions_text(results['versions'])}.",
        "",
    ]
    if others:
        lines += [
            "**Other work was running on the machine at the same time** (figures are "
            f"pessimistic; load average {results.get('loadavg_end', '?')} at the end): "
            + "; ".join(f"`{o}`" for o in others[:6])
            + ("; …" if len(others) > 6 else "")
            + ".",
            "",
        ]
    return [*lines, f"    {results['command']}", ""]


def data_text(results: dict[str, Any]) -> list[str]:
    a, loaded, facts = results["args"], results["loaded"], results["facts"]
    status = ", ".join(f"{k} {v:,}" for k, v in sorted(loaded["status_counts"].items()))
    return [
        f"Data: {loaded['studies']:,} studies over {a['days']:g} days for {a['facilities']} "
        f"facilities in {a['groups']} reading groups ({a['groups'] * a['readers_per_group']} "
        f"readers; facility volumes Zipf-distributed), by status: {status}; "
        f"{loaded['routing']:,} routing rows, {loaded['decisions']:,} routing decisions, "
        f"{loaded['transitions']:,} claim transitions, {loaded['alerts']:,} SLA breach alerts. "
        f"Loaded with COPY in {sum(loaded['seconds'].values()):.0f} s. 90-day window "
        f"{facts['window']}: the largest facility received "
        f"{facts['largest facility (studies in window)']:,} studies in it, the median one "
        f"{facts['median facility (studies in window)']:,}; the facility queries rotate over "
        "the 10 largest and 20 others at random.",
        "",
        f"Operations, first group: {json.dumps(facts['operations, first group'])}.",
        "",
        f"Target: p95 < {TARGET * 1000:.0f} ms. *Database*: time inside the database driver "
        "(every statement the selector sends, summed), measured in process around the "
        f"selector the API calls, {a['iterations']} calls after {WARMUP} warm-up calls. "
        f"*API*: end to end over HTTP on one keep-alive connection, {a['api_iterations']} "
        f"requests after {WARMUP} warm-up, {results.get('server_description', '')}.",
        "",
    ]


def queries_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| query | statements | database p50 | database p95 | in-process p95 | API p50 | "
        "API p95 | target |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for case in results["cases"].values():
        db, wall, api = case["db"], case["wall"], case["api"]
        worst = max((v for v in (pct(db, 95), pct(api, 95)) if v is not None), default=None)
        ok = verdict(worst < TARGET if worst is not None else None, met="met", unknown="-")
        lines.append(
            f"| {case['label']} | {case['statements']} | {ms(pct(db, 50))} | "
            f"{ms(pct(db, 95))} | {ms(pct(wall, 95))} | {ms(pct(api, 50))} | "
            f"{ms(pct(api, 95))} | {ok} |"
        )
    return lines


def slowest_plan(results: dict[str, Any]) -> list[str]:
    slowest = max(results["cases"].values(), key=lambda c: pct(c["db"], 95) or 0.0)
    if not slowest["plan"]:
        return []
    return [
        f"Plan of the slowest statement of the slowest case ({slowest['label']}), "
        "EXPLAIN (ANALYZE, BUFFERS):",
        "",
        "<details><summary>SQL and plan</summary>",
        "",
        "```sql",
        re.sub(r"\s+", " ", slowest["slowest_sql"] or "").strip()[:3000],
        "```",
        "",
        "```",
        slowest["plan"],
        "```",
        "",
        "</details>",
    ]


def render(results: dict[str, Any]) -> str:
    lines = [
        *header(results),
        *data_text(results),
        *queries_table(results),
        "",
        "The operations page (`GET /api/v1/operations/`) runs the five operations queries "
        "above (the row *operations page, all*); the page's htmx refresh calls the same "
        "selector. Indexes added for these reads: `routing_unroutable_idx` (partial: the "
        "few unroutable studies) and, for the `/metrics` turnaround histogram, "
        "`study_finalized_idx`. `/metrics` counters are exact but counted incrementally "
        "(rows up to a settled id once per process, then a primary-key range): the first "
        f"{METRICS_WARMUP} scrapes of each process (warm-up, not timed) count whole tables.",
        "",
    ]
    for note in [*results["notes"], *results["warnings"]]:
        lines += [note, ""]
    lines += slowest_plan(results)
    return "\n".join(lines) + "\n"
