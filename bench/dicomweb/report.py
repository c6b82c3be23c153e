"""The DICOMweb section of BENCHMARKS.md, rendered from the results: the data and
the servers, the targets, then one table per measurement and what the servers
logged."""

from __future__ import annotations

from typing import Any

from bench.report import table, verdict
from bench.stats import ms

TITLE = "## DICOMweb (bench/dicomweb)"
FIRST_IMAGE_TARGET = 0.300  # seconds, p95
QIDO_TARGET = 0.050  # seconds, p95
MEMORY_TARGET_MIB = 50.0
RETRIEVAL_TARGET = 1.0  # ours / Orthanc
SERVERS = ("ours", "orthanc")
STUDY_KEYS = ("ct", "mr")


def _mb(value: list[float] | None) -> str:
    if not value:
        return "-"
    med, lo, hi = value
    return f"{med:.0f} ({lo:.0f}-{hi:.0f})" if hi - lo >= 1 else f"{med:.0f}"


def _rate(value: list[float] | None) -> str:
    return "-" if not value else f"{value[0]:.0f}"


def _ratio(cell: dict[str, Any]) -> float | None:
    ours, theirs = (
        cell.get("ours", {}).get("mb_per_second"),
        cell.get("orthanc", {}).get("mb_per_second"),
    )
    if not ours or not theirs or not theirs[0]:
        return None
    return float(ours[0] / theirs[0])


def _label(results: dict[str, Any], key: str) -> str:
    return str(results["studies"][key]["label"])


def header(results: dict[str, Any]) -> list[str]:
    m, v = results["machine"], results["versions"]
    lines = [
        TITLE,
        "",
        f"Run on {results['started_at']} UTC, {m['cpus']} cores ({m['model']}), {m['memory']}; "
        f"Python {v['python']}, Django {v.get('django')}, DRF {v.get('djangorestframework')}, "
        f"psycopg {v.get('psycopg')}, pydicom {v.get('pydicom')}, gunicorn {v.get('gunicorn')}, "
        f"PostgreSQL {v.get('postgresql', '?')} ({v.get('pg settings', '')}); "
        f"Orthanc {v.get('orthanc')}. The run took {results['seconds'] / 60:.1f} min.",
        "",
    ]
    waited = results.get("waited", {})
    if waited:
        lines += [
            "Waited for other work on the machine to finish before: "
            + ", ".join(f"{phase} ({seconds:.0f} s)" for phase, seconds in waited.items())
            + ".",
            "",
        ]
    others = results.get("others", [])
    if others:
        lines += [
            "**Other work was running on the machine meanwhile** (the figures are "
            f"pessimistic; load average {results.get('loadavg_end', '?')} at the end): "
            + "; ".join(f"`{o}`" for o in others[:6])
            + ".",
            "",
        ]
    setup = [o for o in results.get("others_setup", []) if o not in others]
    if setup:
        lines += [
            "While the data was loaded (not during the measurements) other work ran: "
            + "; ".join(f"`{o}`" for o in setup[:4])
            + " (only the filing and COPY rates are affected).",
            "",
        ]
    return [*lines, f"    {results['command']}", ""]


def data_text(results: dict[str, Any]) -> list[str]:
    st, filed, hist = results["studies"], results["filed"], results["history"]
    a = results["args"]

    def study(key: str) -> str:
        s, f = st[key], filed[key]
        return (
            f"{s['label']} ({s['instances']:,} instances, {s['bytes'] / 1e6:,.0f} MB; filed "
            f"at {f['instances'] / f['seconds']:.0f}/s, DICOM JSON built at "
            f"{f['json_built'] / max(f['json_seconds'], 1e-9):.0f}/s)"
        )

    servers = results["servers"]
    return [
        f"Data: synthetic studies (`ingest.synthetic.make_instance`, noise pixels, 16-bit, "
        "explicit VR little endian, with the geometry and window attributes a viewer reads): "
        f"{study('ct')}; {study('mr')}; and for the memory test {study('big')}. "
        "Ours filed each file through the gateway's filing service "
        "(`ingest.services.instance_receive`, as the listener does once an object is in "
        "staging), then `studies_mark_ready` (the beat sweep's service) made the studies "
        "ready and enqueued `ingest.studies_dicom_json_build`, whose body "
        "(`instances_dicom_json_build`) was then called as the task calls it (no Celery "
        "worker runs here). The same files were POSTed to Orthanc (`/instances`); every "
        "file ours stored, and every instance both servers return in a whole-study "
        "retrieve, is byte-identical to the one sent (sha256), and frame 1 of three "
        "instances of each study is the file's pixel data exactly.",
        "",
        f"Our database also holds {hist['studies']:,} final studies of the same facility "
        f"({hist['patients']:,} patients, about {hist['studies'] / max(hist['patients'], 1):.0f} "
        f"studies each; COPY {hist['copy_seconds']:.0f} s, VACUUM ANALYZE "
        f"{hist['vacuum_analyze_seconds']:.0f} s; {hist['studies_in_database']:,} studies "
        "in all); Orthanc holds only the two viewed studies.",
        "",
        f"Servers: *ours*: {servers['ours']['description']}. *Orthanc*: "
        f"{servers['orthanc']['description']}. The client runs on the same 2 cores "
        "(Python `http.client`), every request with the `Accept-Encoding: gzip, deflate` a "
        "browser adds unless said otherwise. Time to first image: "
        f"{a['iterations']} loads per server and study after {a['warmup']} warm-up, the "
        "servers alternating; retrieval: median (min-max) of "
        f"{a['repeat']} run(s) after a warm-up pass.",
        "",
    ]


def targets(results: dict[str, Any]) -> list[str]:
    rows = []
    retrieval = results["retrieval"]
    for key in STUDY_KEYS:
        for cell, what in (("frames_browser", "frames"), ("retrieve", "whole study")):
            r = _ratio(retrieval[key][cell])
            rows.append(
                [
                    f"retrieval >= 1.0x Orthanc: {key.upper()} {what}",
                    "-" if r is None else f"{r:.2f}x",
                    verdict(None if r is None else r >= RETRIEVAL_TARGET),
                ]
            )
    for key in STUDY_KEYS:
        p95 = results["first_image"][key]["ours"]["total"].get("p95")
        rows.append(
            [
                f"time to first image p95 < 300 ms: {key.upper()}",
                ms(p95),
                verdict(None if p95 is None else p95 < FIRST_IMAGE_TARGET),
            ]
        )
    q = results["qido"]["history"]
    rows.append(
        [
            f"QIDO p95 < 50 ms at {results['history']['studies_in_database']:,} studies",
            ms(q.get("p95")),
            verdict(None if q.get("p95") is None else q["p95"] < QIDO_TARGET),
        ]
    )
    runs = results["memory"]["runs"]
    worst = max((r["growth_kib"] for r in runs), default=None)
    gb = results["memory"]["bytes"] / 1e9
    rows.append(
        [
            f"memory growth < 50 MB streaming {gb:.2f} GB",
            "-" if worst is None else f"{worst / 1024:.1f} MiB",
            verdict(None if worst is None else worst / 1024 < MEMORY_TARGET_MIB),
        ]
    )
    return [
        table("target | result | verdict", "llr", rows),
        "",
        "Retrieval is judged on what a viewer in a browser sends (`Accept-Encoding: gzip`) "
        "for frames, and on the whole-study retrieve; table 2 also shows frames fetched "
        "without `Accept-Encoding`, where Orthanc does not compress them.",
        "",
    ]


def first_image(results: dict[str, Any]) -> list[str]:
    rows = []
    for key in STUDY_KEYS:
        for server in SERVERS:
            d = results["first_image"][key][server]
            t = d["total"]
            rows.append(
                [
                    _label(results, key),
                    server,
                    ms(t.get("p50")),
                    ms(t.get("p95")),
                    ms(d["qido"].get("p50")),
                    ms(d["metadata"].get("p50")),
                    ms(d["frame"].get("p50")),
                    d.get("error_count", 0),
                ]
            )
    meta = results["checks"]
    sizes = "; ".join(
        f"{key.upper()} {server} {meta[key][server]['metadata']['bytes'] / 1e3:,.0f} kB "
        f"({meta[key][server]['metadata']['attributes_per_instance']} attributes per instance"
        + (
            f", {meta[key][server]['metadata']['wire_bytes'] / 1e3:,.0f} kB gzip"
            if meta[key][server]["metadata"]["content_encoding"]
            else ", not compressed"
        )
        + ")"
        for key in STUDY_KEYS
        for server in SERVERS
    )
    return [
        "### 1. Time to first image (OHIF's load: QIDO series, series metadata, frame 1)",
        "",
        "Sequential on one new keep-alive connection per load, as the viewer does: "
        "`GET studies/{uid}/series`, then `GET studies/{uid}/series/{first}/metadata` "
        "(gzip accepted), then `GET .../instances/{first}/frames/1` (`Accept: multipart/related; "
        'type="application/octet-stream"; transfer-syntax=*`); each response read whole and '
        "the JSON decoded and parsed (the next URL comes from it). Steps are p50s.",
        "",
        table(
            "study | server | total p50 | total p95 | QIDO series | metadata | frame 1 | errors",
            "llrrrrrr",
            rows,
        ),
        "",
        f"Series metadata as served: {sizes}.",
        "",
    ]


def retrieval(results: dict[str, Any]) -> list[str]:
    a = results["args"]
    rows = []
    for key in STUDY_KEYS:
        for cell, what in (
            ("frames_browser", f"all frames, {a['connections']} connections (gzip accepted)"),
            ("frames_identity", f"all frames, {a['connections']} connections (no Accept-Encoding)"),
            ("retrieve", "`GET studies/{uid}`, 1 connection"),
        ):
            c = results["retrieval"][key][cell]
            r = _ratio(c)
            rows.append(
                [
                    _label(results, key),
                    what,
                    _mb(c["ours"]["mb_per_second"]),
                    _rate(c["ours"]["per_second"]) if cell != "retrieve" else "",
                    _mb(c["orthanc"]["mb_per_second"]),
                    _rate(c["orthanc"]["per_second"]) if cell != "retrieve" else "",
                    "-" if r is None else f"{r:.2f}x",
                    _cpu(c["ours"]),
                    _cpu(c["orthanc"]),
                ]
            )
    checks = results["checks"]
    enc = "; ".join(
        f"{server} frames `{checks['ct'][server]['frame']['content_encoding'] or 'identity'}`, "
        f"whole study `{checks['ct'][server]['retrieve']['content_encoding'] or 'identity'}`"
        for server in SERVERS
    )
    return [
        "### 2. Retrieval throughput",
        "",
        "MB/s of the frames' (or files') own bytes (10^6 bytes per MB) over wall time; "
        "frames/s; the server's CPU seconds per 100 MB (all its processes) and the "
        "client's.",
        "",
        table(
            "study | what | ours MB/s | ours frames/s | Orthanc MB/s | Orthanc frames/s | "
            "ours/Orthanc | ours CPU s/100 MB (server, client) | Orthanc CPU s/100 MB "
            "(server, client)",
            "llrrrrrrr",
            rows,
        ),
        "",
        f"Content encodings answered to a browser's `Accept-Encoding: gzip` (CT): {enc}. "
        "The synthetic pixels are noise, which does not compress: Orthanc's gzip of every "
        "frame costs it CPU and saves nothing here (real images compress, which a real "
        "network would feel; loopback does not).",
        "",
        "Largest RSS growth of one server process during a whole-study retrieve: "
        + "; ".join(
            f"{key.upper()} ours {_growth(results, key, 'ours')}, Orthanc "
            f"{_growth(results, key, 'orthanc')}"
            for key in STUDY_KEYS
        )
        + ".",
        "",
    ]


def _growth(results: dict[str, Any], key: str, server: str) -> str:
    runs = results["retrieval"][key]["retrieve"][server]["runs"]
    values = [r["growth_kib"] for r in runs if "growth_kib" in r]
    return "-" if not values else f"{max(values) / 1024:.1f} MiB"


def _cpu(cell: dict[str, Any]) -> str:
    s, c = cell.get("server_cpu_per_mb"), cell.get("client_cpu_per_mb")
    if s is None or c is None:
        return "-"
    return f"{s * 100:.2f}, {c * 100:.2f}"


def qido(results: dict[str, Any]) -> list[str]:
    q = results["qido"]
    rows = []
    for key in ("history", "viewed_ours", "viewed_orthanc"):
        d = q[key]
        rows.append(
            [
                d["label"],
                d["n"],
                f"{d['results'].get('mean', 0):.1f}",
                ms(d.get("p50")),
                ms(d.get("p95")),
                ms(d.get("p99")),
            ]
        )
    ip = q["in_process"]
    return [
        "### 3. QIDO-RS: `GET studies?PatientID=...`",
        "",
        f"One keep-alive connection, {results['args']['qido_requests']} requests per case "
        "after 10 warm-up, rotating over the patients (the history's: 500 patients drawn at "
        f"random). Our database holds {results['history']['studies_in_database']:,} studies, "
        "all visible to the group admin searching; Orthanc's only the 2 viewed studies "
        "(loading a million studies into Orthanc is not feasible here), so its row is a "
        "reference, not a like-for-like comparison.",
        "",
        table("case | requests | results per answer | p50 | p95 | p99", "lrrrrr", rows),
        "",
        f"In process (the selector the view calls, {ip['selector']['n']} calls): p50 "
        f"{ms(ip['selector']['p50'], 2)}, p95 {ms(ip['selector']['p95'], 2)}, of which in the "
        f"database p50 {ms(ip['database']['p50'], 2)}; {len(ip['statements'])} statements per "
        "search. Plan of the search statement (EXPLAIN ANALYZE):",
        "",
        "<details><summary>SQL and plan</summary>",
        "",
        "```sql",
        next((s for s in ip["statements"] if '"patient_id" =' in s), ip["statements"][0]),
        "```",
        "",
        "```",
        ip["plan"],
        "```",
        "",
        "</details>",
        "",
    ]


def where_time_goes(results: dict[str, Any]) -> list[str]:
    prof = results.get("profile")
    if not prof:
        return []
    rows = [
        [
            kind,
            f"{d['cpu_ms']:.1f} ms",
            f"{d['wall_ms']:.1f} ms",
            f"{d['statements']:.0f}",
            f"{d['db_ms']:.1f} ms",
            f"{d['database_share'] * 100:.0f}%",
        ]
        for kind, d in prof.items()
    ]
    lines = [
        "### Where a request's time goes (in process)",
        "",
        "Each kind of request through Django's test client in the benchmark's process "
        "(the whole middleware, DRF and view path; development settings with DEBUG off, "
        "the same database and files), 100 requests after 10 warm-up: the process's CPU "
        "time and wall time per request (p50), the statements sent and their time; then "
        "100 more under cProfile: the share of the time spent in the driver's `execute`, "
        "and the project's functions by cumulative share (cProfile inflates Python-heavy "
        "code such as the ORM's query building).",
        "",
        table(
            "request | CPU | wall | statements | in the database | database share (cProfile)",
            "lrrrrr",
            rows,
        ),
        "",
        "<details><summary>the project's functions by cumulative share, per request kind</summary>",
        "",
    ]
    for kind, d in prof.items():
        lines += [
            f"{kind}:",
            "",
            *[f"    {share * 100:5.1f}%  {label}" for share, label in d["top"]],
            "",
        ]
    return [*lines, "</details>", ""]


def memory(results: dict[str, Any]) -> list[str]:
    m = results["memory"]
    rows = [
        [
            i + 1,
            f"{r['wire_bytes'] / 1e9:.2f} GB",
            f"{r['seconds']:.1f} s",
            f"{r['mb_per_second']:.0f}",
            f"{r['before_kib'] / 1024:.1f} MiB",
            f"{r['peak_kib'] / 1024:.1f} MiB",
            f"{r['growth_kib'] / 1024:.1f} MiB",
            r["samples"],
        ]
        for i, r in enumerate(m["runs"])
    ]
    return [
        "### 4. Memory while streaming a big study",
        "",
        f"`GET studies/{{uid}}` of the {results['studies']['big']['label']} study "
        f"({m['bytes'] / 1e9:.2f} GB) on one connection, read as fast as it comes, after "
        "each worker served a few single-instance retrieves; VmRSS of every gunicorn "
        "worker sampled every 5 ms (`/proc/<pid>/status`), the growth of the worker that "
        "grew most.",
        "",
        table(
            "run | bytes | time | MB/s | RSS before | RSS peak | growth | samples",
            "lrrrrrrr",
            rows,
        ),
        "",
    ]


def problems(results: dict[str, Any]) -> list[str]:
    lines = ["### Errors", ""]
    items = []
    for study in STUDY_KEYS:
        for server in SERVERS:
            d = results["first_image"][study][server]
            if d.get("error_count"):
                items.append(
                    f"{server}, first image of the {study.upper()}: {d['error_count']} errors, "
                    f"e.g. {d['errors'][0]}"
                )
            for cell in ("frames_browser", "frames_identity", "retrieve"):
                statuses = results["retrieval"][study][cell][server]["statuses"]
                bad = {k: v for k, v in statuses.items() if k != "200"}
                if bad:
                    items.append(f"{server}, {cell} of the {study.upper()}: statuses {bad}")
    for server, found in results.get("server_log_problems", {}).items():
        for line, n in found.items():
            items.append(f"{server}'s log, {n}x: `{line}`")
    for w in results.get("warnings", []):
        items.append(f"warning: {w}")
    if not items:
        items.append("None: every request was answered 200 and neither server logged an error.")
    lines += [f"- {item}" for item in items]
    return [*lines, ""]


def render(results: dict[str, Any]) -> str:
    parts = [
        *header(results),
        *data_text(results),
        *targets(results),
        *first_image(results),
        *retrieval(results),
        *qido(results),
        *memory(results),
        *where_time_goes(results),
        *problems(results),
    ]
    return "\n".join(parts).rstrip() + "\n"
