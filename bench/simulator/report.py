"""The rule simulator's section of BENCHMARKS.md, rendered from the results: the
data, the replay against its target beside its peers, memory over two windows,
and what the replay found."""

from __future__ import annotations

import statistics
from typing import Any

from bench.host import machine_text, postgres_text
from bench.report import table, verdict

TITLE = "## Rule simulator (bench/simulator)"
TARGET = 60.0  # seconds for the 30-day replay


def _mb(n: float) -> str:
    return f"{n / (1 << 20):,.1f} MB"


def header(results: dict[str, Any]) -> list[str]:
    ver = results.get("versions", {})
    others = results.get("others", [])
    loads = results.get("loadavg", [])
    lines = [
        TITLE,
        "",
        f"Run on {results['started_at']} UTC, {machine_text(results['machine'])}; Python "
        f"{ver.get('python')}, Django {ver.get('django')}, psycopg {ver.get('psycopg')}, "
        f"{postgres_text(ver)}. Load average (1, 5, 15 min) seen between phases: "
        + "; ".join(loads)
        + ".",
        "",
    ]
    if others:
        lines += [
            "**Other work was running on the machine meanwhile** (figures are pessimistic): "
            + "; ".join(f"`{o}`" for o in others[:6])
            + ("; …" if len(others) > 6 else "")
            + ".",
            "",
        ]
    return [*lines, f"    {results['command']}", ""]


def data_text(results: dict[str, Any]) -> list[str]:
    a, loaded, db = results["args"], results["loaded"], results["database"]
    outcomes = ", ".join(f"{k} {v:,}" for k, v in sorted(loaded["outcomes"].items()))
    tiers = ", ".join(f"tier {k}: {v:,}" for k, v in sorted(loaded["tiers"].items()))
    rows = [(name, f"{t['rows']:,}", _mb(t["bytes"])) for name, t in db["tables"].items()]
    return [
        f"Data (`bench/simulator/datagen.py`): one reading group of {a['readers']} readers "
        f"(five US regions and offshore readers with preliminary-only US licenses) and "
        f"{a['facilities']} facilities in six US states, the demo's routing rules (five "
        "subspecialty rules and a default), shifts in three 8-hour bands (five days on, two "
        f"off); {loaded['studies']:,} finished studies ({a['per_day']:,} a day over "
        f"{a['days_before']} + {a['days']} days; {loaded['window_studies']:,} ready in the "
        f"replayed window {loaded['window'][0][:10]} to {loaded['window'][1][:10]}), each with "
        "its first routing decision as live routing would have recorded it (the same rule "
        "matching, policy and widening over the readers' history, with the generated open "
        f"claims; verdicts stored): {outcomes}; first offer {tiers}. Readers' history: "
        f"{loaded['versions']} versions (`network.history.reader_versions_record` at each "
        "change's instant): " + "; ".join(loaded["changes"]) + ". Network through the ORM, "
        f"studies and decisions with COPY, {sum(loaded['seconds'].values()):.0f} s in all.",
        "",
        f"Database size (`pg_database_size`): **{_mb(db['database_bytes'])}**.",
        "",
        table("table | rows | size (with indexes)", "lrr", rows),
        "",
        f"The draft replayed: the live rules with {results.get('draft_change', '?')}.",
        "",
    ]


def _per_study(seconds: float, studies: int) -> tuple[str, str]:
    if not studies:
        return "-", "-"
    return f"{seconds * 1000 / studies:.2f}", f"{studies / seconds:,.0f}"


def timings(results: dict[str, Any]) -> list[str]:
    m, a = results["measurements"], results["args"]
    studies = (m["execute"][0].get("studies_total") or 0) if m.get("execute") else 0
    rows = []

    def row(label: str, r: dict[str, Any] | None, n: int) -> None:
        if not r or "seconds" not in r:
            return
        per, rate = _per_study(r["seconds"], n)
        peak = r.get("tracemalloc_peak_mb")
        rows.append(
            (
                label,
                f"{r['seconds']:.2f}",
                per,
                rate,
                f"{r['cpu_seconds']:.1f}",
                f"{r['maxrss_mb']:.0f}",
                f"{peak:.1f}" if peak is not None else "-",
                r.get("loadavg_before", "?").split()[0],
            )
        )

    for k, r in enumerate(m.get("execute", []), start=1):
        row(f"**`run_execute`, {a['days']} days** (run {k})", r, r.get("studies_total") or studies)
    short = m.get("short") or {}
    row(f"`run_execute`, {a['short_days']} days", m.get("short"), short.get("studies_total") or 0)
    for traced in m.get("traced", []):
        row(
            f"`run_execute`, {traced['days']} days, under tracemalloc",
            traced,
            traced.get("studies_total") or 0,
        )
    row(
        "peer: stream the studies + recorded decisions (`replay_studies`)", m.get("stream"), studies
    )
    row("peer: the same rows by bare SQL (server-side cursor)", m.get("bare"), studies)
    row("peer: `engine.replay` alone, studies preloaded", m.get("engine"), studies)
    row("setup: count, reading rates, roster from the history, rules", m.get("setup"), studies)
    runs = [r["seconds"] for r in m.get("execute", []) if r.get("status") == "done"]
    cpus = [r["cpu_seconds"] for r in m.get("execute", []) if r.get("status") == "done"]
    median = statistics.median(runs) if runs else None
    parts = (m.get("setup") or {}).get("value", {}).get("parts", {})
    lines = [
        table(
            "measurement | seconds | ms / study | studies/s | CPU s | peak RSS MB | "
            "tracemalloc peak MB | load (1 min) before",
            "lrrrrrrr",
            rows,
        ),
        "",
        f"**Target: the {a['days']}-day replay of {studies:,} studies in under "
        f"{TARGET:.0f} s:** {verdict(median < TARGET if median is not None else None)} "
        f"(median {median:.1f} s over {len(runs)} run(s), "
        f"{median * 1000 / max(studies, 1):.2f} ms per simulated study; the process's own "
        f"CPU time {statistics.median(cpus):.1f} s: wall time above CPU time is time spent "
        "waiting, for the database or for a core the other work on the machine held)."
        if median is not None
        else "No replay finished.",
        "",
        "Each row is a fresh process (`bench/simulator/child.py`), so its peak RSS is its own "
        "(`VmHWM`: on Linux `getrusage`'s maxrss carries the parent's peak over fork and exec, "
        "here the data generator's) and includes Django and the app imported (the RSS after "
        f"`django.setup()` was {_first(m, 'rss_before_mb'):.0f} MB). *Seconds* is wall "
        "time of the call alone; `run_execute` is what the Celery task runs (take the run, "
        "count, read the reading rates, the readers' history and the rules, stream the studies "
        "through both arms, write progress every batch and the result). The stream peer is "
        "the I/O floor through the app (the same selector, the same chunks, `SimStudy` "
        "objects built, nothing decided); the bare-SQL peer the floor under the ORM (the "
        "same rows, nothing built). Setup parts: "
        + ", ".join(f"{k} {v:.2f} s" for k, v in parts.items())
        + ".",
        "",
    ]
    return lines


def _first(m: dict[str, Any], key: str) -> float:
    for r in m.get("execute", []):
        if key in r:
            return float(r[key])
    return 0.0


def memory(results: dict[str, Any]) -> list[str]:
    m, a = results["measurements"], results["args"]
    full = next((r for r in m.get("execute", []) if "maxrss_mb" in r), None)
    short = m.get("short") or {}
    traced = [t for t in m.get("traced", []) if "tracemalloc_peak_mb" in t]
    lines = []
    if full and "maxrss_mb" in short:
        fg = full["maxrss_mb"] - full["rss_before_mb"]
        sg = short["maxrss_mb"] - short["rss_before_mb"]
        lines.append(
            f"**Memory bounded.** The replay's process grew by {fg:.0f} MB of RSS over "
            f"{a['days']} days ({full.get('studies_total', 0):,} studies; peak RSS "
            f"{full['maxrss_mb']:.0f} MB) against {sg:.0f} MB over {a['short_days']} days "
            f"({short.get('studies_total', 0):,} studies; peak RSS {short['maxrss_mb']:.0f} MB): "
            f"a window x{a['days'] / a['short_days']:.0f} as long."
        )
    if len(traced) >= 2:
        lo, hi = traced[0], traced[-1]
        lines.append(
            f"Python's allocations during the replay (tracemalloc peak, from the start of "
            f"`run_execute` to its end) peaked at {lo['tracemalloc_peak_mb']:.1f} MB over "
            f"{lo['days']} day(s) and {hi['tracemalloc_peak_mb']:.1f} MB over {hi['days']} "
            f"days (x{hi['tracemalloc_peak_mb'] / lo['tracemalloc_peak_mb']:.2f} for a "
            f"window x{hi['days'] / lo['days']:.0f} as long); tracemalloc slows the replay "
            "about tenfold, so its peaks are taken over short windows."
        )
    if lines:
        lines.append(
            "The studies are streamed in chunks (`simulation.selectors.replay_studies`); "
            "what stays is bounded by the readers, the studies still unclaimed in simulated "
            "time, and the result's counters."
        )
    return [" ".join(lines), ""] if lines else []


def findings(results: dict[str, Any]) -> list[str]:
    runs = results["measurements"].get("execute") or []
    result = runs[0].get("result") if runs else None
    if not result:
        return []
    lines = ["What the replay found over the window (first run):", ""]
    for name in ("live", "draft"):
        arm = result.get(name) or {}
        lines.append(
            f"- {name} rules: first offers by tier {arm.get('first_offer_by_tier')}, "
            f"{arm.get('unroutable')} ever unroutable ({arm.get('never_offered')} never offered), "
            f"{arm.get('escalations')} escalations, {arm.get('claimed')} claimed, fairness "
            f"CV {arm.get('fairness_cv')}"
        )
    rec = result.get("recorded") or {}
    lines += [
        f"- {result.get('elsewhere')} studies would have gone elsewhere under the draft; "
        f"the live arm against the recorded decisions: {rec.get('same')} of "
        f"{rec.get('compared')} the same (tier and readers offered)",
        "",
    ]
    return lines


def render(results: dict[str, Any]) -> str:
    lines = [*header(results), *data_text(results), *timings(results), *memory(results)]
    lines += findings(results)
    for note in [*results.get("notes", []), *results.get("warnings", [])]:
        lines += [note, ""]
    return "\n".join(lines).rstrip() + "\n"
