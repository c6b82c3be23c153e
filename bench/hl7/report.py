"""The HL7 section of BENCHMARKS.md, rendered from the results: one row per server,
then the verdicts against the targets."""

from __future__ import annotations

from typing import Any

from bench.host import machine_text
from bench.report import bullets, table, verdict
from bench.stats import ms

TITLE = "## HL7 orders (bench/hl7)"
RATE_TARGET = 500.0  # messages/s through the listener
ECHO_RATIO_TARGET = 0.3


def _served(phase: dict[str, Any]) -> int:
    """Messages the server's CPU figure covers (the timed ones and the warm-up)."""
    return int(phase.get("server_messages", phase["messages"]))


def render(results: dict[str, Any]) -> str:
    phases = results["phases"]
    v = results.get("versions", {})
    rows = []
    for name, p in phases.items():
        if name == "echo":
            label = "bare MLLP echo"
        else:
            label = f"hl7_listener, {p.get('processes', 1)} process(es) (stored, applied)"
        lat = p["latency"]
        rows.append(
            [
                label,
                p["messages"],
                f"{p['per_second']:.0f}",
                ms(lat["p50"]),
                ms(lat["p95"]),
                ms(lat["p99"]),
                p["not_aa"],
                f"{p.get('server_cpu_seconds', 0):.1f}",
                f"{1000 * p.get('server_cpu_seconds', 0) / max(1, _served(p)):.1f}",
            ]
        )
    listeners = [p for name, p in phases.items() if name.startswith("listener")]
    best: dict[str, Any] = max(listeners, key=lambda p: p["per_second"], default={})
    echo = phases.get("echo", {})
    rate = best.get("per_second")
    ratio = rate / echo["per_second"] if rate and echo.get("per_second") else None
    stored = results.get("stored", {})
    lines = [
        TITLE,
        "",
        f"Measured {results['finished_at']} UTC on {machine_text(results['machine'])}; "
        f"PostgreSQL {v.get('postgresql', '?')} ({v.get('pg settings', '')}), "
        f"Django {v.get('django')}, "
        f"hl7apy {v.get('hl7apy')}, python-hl7 {v.get('hl7')}. Command: `{results['command']}`.",
        "",
        f"{results['args']['senders']} senders (python-hl7 `MLLPClient`, one process and "
        "connection each, each message waiting for its ACK) send ORM^O01 NW orders with "
        "distinct accession numbers; the listener (`manage.py hl7_listener`, production "
        "settings, PostgreSQL) answers each only after the message row and its order are "
        "committed. The echo server has the same framing and threads and answers without "
        "work. Latency is per message as the sender saw it.",
        "",
        table(
            "server | messages | messages/s | p50 | p95 | p99 | not AA | server CPU s "
            "| CPU ms/message",
            "lrrrrrrrr",
            rows,
        ),
        "",
        bullets(
            [
                f"listener rate (best) >= {RATE_TARGET:.0f}/s: "
                f"{verdict(rate >= RATE_TARGET if rate else None)} ({rate or 0:.0f}/s)",
                f"listener >= {ECHO_RATIO_TARGET}x the echo: "
                f"{verdict(ratio >= ECHO_RATIO_TARGET if ratio is not None else None)}"
                f" ({ratio or 0:.4f}x)",
                "stored after the run: "
                + ", ".join(f"{k} {n}" for k, n in sorted(stored.items()))
                + f"; orders {results.get('orders', '?')}",
            ]
        ),
    ]
    part = results.get("breakdown")
    if part:
        lines += [
            "",
            f"Where the time goes (in one process, one message at a time, "
            f"{part['messages']} messages): reading a message (decoding, header checks, "
            f"hl7apy's parse) {part['read_ms']:.1f} ms; the whole receive (read, admit, apply "
            f"the order, store the message, audit, commit) {part['receive_ms']:.1f} ms, "
            f"{part['statements']} SQL statements (transaction and savepoints included).",
        ]
    cpu_ms = [
        1000 * p["server_cpu_seconds"] / max(1, _served(p))
        for name, p in phases.items()
        if name.startswith("listener") and p.get("server_cpu_seconds")
    ]
    if rate and rate < RATE_TARGET and cpu_ms and part:
        cores = RATE_TARGET * min(cpu_ms) / 1000
        lines += [
            "",
            f"Why the target is missed: the listener spends about {min(cpu_ms):.0f} ms of CPU "
            f"per message (hl7apy's parse about {part['read_ms']:.0f} ms of it, the rest "
            f"applying the order and storing the message through the ORM, "
            f"{part['statements']} statements), so {RATE_TARGET:.0f} messages/s would take "
            f"about {cores:.0f} cores for the listener alone, before PostgreSQL; this machine "
            f"has {results['machine'].get('cpus', '?')}. The echo answers without parsing or "
            "storing anything, so 0.3x of it is out of reach of any listener that parses "
            "and commits each message before its ACK.",
        ]
    if results.get("notes"):
        lines += ["", bullets(results["notes"])]
    other = results.get("other_work") or []
    if other:
        lines += ["", "Other work running at the start: " + "; ".join(other[:5]) + "."]
    if results.get("warnings"):
        lines += ["", "Warnings: " + "; ".join(results["warnings"])]
    return "\n".join(lines) + "\n"
