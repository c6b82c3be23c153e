"""The ingest section of BENCHMARKS.md, rendered from the results: the receivers'
table (instances/s, median and min-max of the runs), the targets against
Orthanc, and the notes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.host import machine_text
from bench.ingest.peers import CALLED_AE, CALLING_AE
from bench.report import bullets, table, verdict
from bench.stats import median_range

TITLE = "## Ingest (bench/ingest)"

PEER_LABELS = {
    "listener-p1": "our listener, `--processes 1`",
    "storescp": "dcmtk storescp (`--fork`)",
    "orthanc": "Orthanc",
}

Cells = dict[tuple[str, int], list[dict[str, Any]]]


def peer_label(peer: str) -> str:
    if peer in PEER_LABELS:
        return PEER_LABELS[peer]
    return f"our listener, `--processes {peer.removeprefix('listener-p')}`"


def cells(results: dict[str, Any]) -> Cells:
    """Measurements by (receiver, associations)."""
    out: Cells = {}
    for m in results["measurements"]:
        out.setdefault((m["peer"], m["associations"]), []).append(m)
    return out


def cell_rate(ms: Sequence[dict[str, Any]]) -> float | None:
    """The median rate of a cell; None if any run of it failed."""
    rates = [m["rate"] for m in ms]
    if not rates or any(r is None for r in rates):
        return None
    found = median_range(rates)
    return found[0] if found else None


def fmt_cell(ms: Sequence[dict[str, Any]] | None, repeat: int) -> str:
    if not ms:
        return "-"
    found = median_range([m["rate"] for m in ms if m["rate"] is not None])
    if cell_rate(ms) is None or found is None:
        return "FAILED"
    rate, lo, hi = found
    return f"{rate:.1f} ({lo:.1f}-{hi:.1f})" if repeat > 1 else f"{rate:.1f}"


def ratio(a: float | None, b: float | None) -> str:
    if a is None or not b:
        return "-"
    return f"{a / b:.2f}x"


def receivers_table(results: dict[str, Any]) -> str:
    args = results["args"]
    by_cell = cells(results)
    orthanc = {a: cell_rate(by_cell.get(("orthanc", a), [])) for a in (1, 4)}
    rows = []
    for peer in ["listener-p1", f"listener-p{args['processes']}", "storescp", "orthanc"]:
        if not any(p == peer for p, _ in by_cell):
            continue
        one, four = by_cell.get((peer, 1)), by_cell.get((peer, 4))
        r1 = cell_rate(one) if one else None
        r4 = cell_rate(four) if four else None
        rows.append(
            [
                peer_label(peer),
                fmt_cell(one, args["repeat"]),
                ratio(r1, orthanc[1]) if one else "-",
                fmt_cell(four, args["repeat"]),
                ratio(r4, orthanc[4]) if four else "-",
            ]
        )
    return table(
        "receiver | 1 association (inst/s) | vs Orthanc | 4 associations (inst/s) | vs Orthanc",
        "lrrrr",
        rows,
    )


def targets_table(results: dict[str, Any]) -> str:
    args, checks = results["args"], results.get("checks", {})
    by_cell = cells(results)
    rate = {key: cell_rate(ms) for key, ms in by_cell.items()}
    orthanc = {a: rate.get(("orthanc", a)) for a in (1, 4)}

    def versus(value: float | None, base: float | None, needed: float) -> tuple[str, bool | None]:
        if value is None or not base:
            return "-", None
        return f"{value / base:.2f}x", value / base >= needed

    def said(ok: bool | None) -> str:
        return verdict(ok, unknown="not measured")

    one_fig, one_ok = versus(rate.get(("listener-p1", 1)), orthanc[1], 0.8)
    four_p1_fig, four_p1_ok = versus(rate.get(("listener-p1", 4)), orthanc[4], 1.0)
    k = args["processes"]
    four_pk_fig, four_pk_ok = versus(rate.get((f"listener-p{k}", 4)), orthanc[4], 1.0)
    compared = checks.get("compared", 0)
    mismatches, missing, extra = (checks.get(x, 0) for x in ("mismatches", "missing", "extra"))
    identity_ok = None if compared == 0 else mismatches == 0 and missing == 0 and extra == 0
    latencies = sorted(checks.get("latencies", []))
    not_ready = checks.get("not_ready", 0)
    lat = median_range(latencies)
    ready_ok = None if lat is None else lat[2] < 1.0 and not not_ready
    ready = f"max {lat[2]:.2f} s, p50 {lat[0]:.2f} s over {len(latencies)} studies" if lat else "-"
    if not_ready:
        ready += f", {not_ready} never ready"
    return table(
        "target | measured | verdict",
        "lll",
        [
            ["1 association >= 0.8x Orthanc (`--processes 1`)", one_fig, said(one_ok)],
            [f"4 associations >= 1.0x Orthanc, `--processes {k}`", four_pk_fig, said(four_pk_ok)],
            ["4 associations >= 1.0x Orthanc, `--processes 1`", four_p1_fig, said(four_p1_ok)],
            [
                "stored files byte-identical after the file meta: 0 mismatches",
                f"{mismatches} mismatches, {missing} missing, {extra} extra of {compared} compared",
                said(identity_ok),
            ],
            ["ready within 1 s after the quiet period", ready, said(ready_ok)],
        ],
    )


def notes(results: dict[str, Any]) -> list[str]:
    """Notes of the measurements (counted over the runs) and the logs' problems."""
    repeat, checks = results["args"]["repeat"], results.get("checks", {})
    seen: dict[str, int] = {}
    for m in results["measurements"]:
        where = f"{peer_label(m['peer'])}, {m['associations']} assoc."
        for note in m["notes"]:
            seen[f"{where}: {note}"] = seen.get(f"{where}: {note}", 0) + 1
        if m["error"]:
            seen[f"{where} FAILED: {m['error']}"] = seen.get(f"{where} FAILED: {m['error']}", 0) + 1
    out = [f"{k} ({n} of {repeat} runs)" if repeat > 1 else k for k, n in seen.items()]
    for name, key in (("listener log", "log_problems"), ("worker log", "worker_problems")):
        problems = checks.get(key, {})
        if problems:
            for text, count in sorted(problems.items(), key=lambda kv: -kv[1])[:8]:
                out.append(f"{name}: {count}x `{text}`")
        else:
            out.append(f"{name}: no warnings or errors")
    return [*out, *results["notes"], *results["warnings"]]


def header(results: dict[str, Any]) -> str:
    mach, ver = results["machine"], results["versions"]
    return f"""{TITLE}

Measured {results["finished_at"]} UTC on {machine_text(mach)};
dcmtk {ver["dcmtk"]}, Orthanc {ver["orthanc"]}, PostgreSQL {ver["postgresql"]},
Python {ver["python"]}, pynetdicom {ver.get("pynetdicom")}, pydicom {ver.get("pydicom")}.
One run took {results["seconds"] / 60:.1f} min.

Command (from the repository root):

    {results["command"]}"""


def workload_text(results: dict[str, Any]) -> str:
    args, w = results["args"], results["workload"]
    sizes = "/".join(str(n) for n in w["four"])
    repeat = args["repeat"]
    medians = (
        f" Figures are the median of {repeat} runs (min-max in brackets)." if repeat > 1 else ""
    )
    return f"""Workload: {w["one"]} synthetic CT instances (512x512, 16-bit, explicit VR little
endian, {w["instance_bytes"] / 1024:.0f} KiB each)
sent by dcmtk `storescu` (`TCP_NODELAY=1`, calling AE `{CALLING_AE}`, called AE `{CALLED_AE}`)
over loopback. *1 association*: one study of {w["one"]} instances in one `storescu` call.
*4 associations*: four studies of {sizes} instances, four `storescu` processes in parallel.
instances/s = instances / wall seconds from the first `storescu` start to the last exit.
Every receiver is started fresh, with empty storage, for each measurement, gets a
{w["warmup"]}-instance warm-up that is not counted, and accepts PDUs of up to
{min(args["max_pdu"], 131072)} bytes. Our listener runs against PostgreSQL (a fresh copy of a
migrated, `seed_demo`-seeded database per measurement) with `DEBUG=false`, and with a
Celery worker + beat (`STUDY_QUIET_SECONDS={args["quiet_seconds"]:g}`,
`STUDY_READY_SWEEP_SECONDS={args["sweep_seconds"]:g}`) running. storescp runs with `--fork
+B` (one process per association, bit-preserving); Orthanc with a generated configuration
(SQLite index, no plugins, no compression).{medians}"""


def render(results: dict[str, Any]) -> str:
    return (
        "\n\n".join(
            [
                header(results),
                workload_text(results),
                receivers_table(results),
                targets_table(results),
                "Ready latency is `ready_at - (last_instance_at + STUDY_QUIET_SECONDS)` per "
                "measured study\n(from `studies_study`).",
                "Notes:",
                bullets(notes(results)),
            ]
        )
        + "\n"
    )


def console(results: dict[str, Any]) -> str:
    return "\n\n".join([receivers_table(results), targets_table(results), bullets(notes(results))])
