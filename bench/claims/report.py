"""The claims section of BENCHMARKS.md, rendered from the results: the loops'
table, the targets, how it was measured, and the plans of both claim queries."""

from __future__ import annotations

from typing import Any

from bench.host import machine_text, postgres_text
from bench.report import verdict
from bench.servers import SERVER_CONFIG
from bench.stats import ms

TITLE = "## Claims (bench/claims)"
TARGET_RATIO = 3.0  # the issue: API p99 <= 3x the bare loop's p99 from the same run


def _p99(phase: dict[str, Any]) -> float | None:
    value = phase.get("claim_latency", {}).get("p99")
    return float(value) if value is not None else None


def naive_phases(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [ph for name, ph in results["phases"].items() if name.startswith("naive-")]


def assess(results: dict[str, Any]) -> dict[str, Any]:
    """The verdicts: the latency ratio, doubles per loop, whether the detector is proven."""
    hold_ms = results["args"]["hold_ms"]
    phases = results["phases"]
    api, bare = phases.get("api", {}), phases.get("bare", {})
    api_p99, bare_p99 = _p99(api), _p99(bare)
    ratio = api_p99 / bare_p99 if api_p99 is not None and bare_p99 else None
    naive = {ph["hold_ms"]: ph["doubles"]["pairs"] for ph in naive_phases(results)}
    if not naive:
        detector = None
    elif naive.get(hold_ms, 0) > 0:
        detector = "proven"  # doubles seen in the very loop the API and bare loop run
    elif any(naive.values()):
        held = ", ".join(f"{h:g} ms" for h, n in naive.items() if n)
        detector = f"proven only with a hold ({held}): none seen at {hold_ms:g} ms"
    else:
        detector = "UNPROVEN: it found no double in the naive control"
    return {
        "ratio": ratio,
        "latency_ok": ratio <= TARGET_RATIO if ratio is not None else None,
        "api_doubles": api["doubles"]["pairs"] if api else None,
        "bare_doubles": bare["doubles"]["pairs"] if bare else None,
        "naive_doubles": naive,
        "detector": detector,
        "detector_proven": detector.startswith("proven") if detector else None,
    }


def exit_code(results: dict[str, Any]) -> int:
    """3 for a double, or for a detector that found nothing in the control: a finding."""
    if not (results.get("phases") or "profile" in results):
        return 0
    verdicts = assess(results)
    bad = verdicts.get("api_doubles") or verdicts.get("bare_doubles")
    return 3 if bad or verdicts.get("detector_proven") is False else 0


def _errors_text(phase: dict[str, Any]) -> str:
    parts = []
    if phase.get("claim_errors"):
        parts.append("claims: " + ", ".join(f"{k} x{v}" for k, v in phase["claim_errors"].items()))
    if phase.get("release_problems"):
        parts.append(
            "releases: " + ", ".join(f"{k} x{v}" for k, v in phase["release_problems"].items())
        )
    if phase.get("reconnects"):
        parts.append(f"reconnects x{phase['reconnects']}")
    return "; ".join(parts) or "0"


def _loop_row(label: str, ph: dict[str, Any]) -> str:
    if not ph:
        return f"| {label} | not run | | | | | | |"
    c, rl = ph["claim_latency"], ph["release_latency"]
    d = ph["doubles"]
    return (
        f"| {label} | {ph['claims_per_s']:,.0f} | {ms(c.get('p50'))} | {ms(c.get('p99'))} "
        f"| {ms(rl.get('p50'))} / {ms(rl.get('p99'))} | {ph['nothing']} "
        f"| {_errors_text(ph)} | {d['pairs']} ({d['studies']} studies) |"
    )


def loops_table(results: dict[str, Any]) -> list[str]:
    phases = results["phases"]
    return [
        "| loop | claims/s | claim p50 | claim p99 | release p50 / p99 | nothing to claim "
        "| errors, non-2xx | doubles (clients' logs) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
        _loop_row("bare SQL (reference)", phases.get("bare", {})),
        _loop_row("API (`POST worklist/next/`)", phases.get("api", {})),
        *(
            _loop_row(f"naive read-then-write, {ph['hold_ms']:g} ms hold (control)", ph)
            for ph in naive_phases(results)
        ),
    ]


def targets_table(results: dict[str, Any]) -> list[str]:
    verdicts = assess(results)
    api, bare = results["phases"].get("api", {}), results["phases"].get("bare", {})
    ratio = verdicts["ratio"]
    ratio_text = f"{ms(_p99(api))} / {ms(_p99(bare))} = {ratio:.1f}x" if ratio is not None else "-"
    naive_text = ", ".join(f"{n} at {h:g} ms" for h, n in verdicts["naive_doubles"].items())
    detector = verdicts["detector"]
    return [
        "| target | result | verdict |",
        "| --- | --- | --- |",
        f"| API claim p99 <= {TARGET_RATIO:g}x the bare loop's p99 (same run) | {ratio_text} "
        f"| {verdict(verdicts['latency_ok'])} |",
        f"| 0 doubles through the API | {verdicts['api_doubles']} "
        f"| {verdict(verdicts['api_doubles'] == 0 if api else None)} |",
        f"| 0 doubles in the bare loop | {verdicts['bare_doubles']} "
        f"| {verdict(verdicts['bare_doubles'] == 0 if bare else None)} |",
        f"| the detector sees the naive control's doubles | {naive_text or '-'} | "
        + (
            "n/a"
            if detector is None
            else (detector if detector.startswith("proven") else f"**{detector}**")
        )
        + " |",
    ]


def header(results: dict[str, Any]) -> list[str]:
    args, v, data = results["args"], results.get("versions", {}), results.get("data", {})
    priorities = ", ".join(f"{k} {n}" for k, n in data.get("priorities", {}).items())
    return [
        TITLE,
        "",
        f"Measured {results['finished_at']} UTC on {machine_text(results['machine'])}; "
        f"{postgres_text(v)}, Python {v.get('python')}, Django {v.get('django')}, DRF "
        f"{v.get('djangorestframework')}, gunicorn {v.get('gunicorn')}, psycopg "
        f"{v.get('psycopg')}. One run took {results['seconds'] / 60:.1f} min.",
        "",
        "Command (from the repository root):",
        "",
        f"    {results['command']}",
        "",
        f"{args['clients']} clients, one process each, each signed in as its own radiologist "
        f"(a DRF token); {data.get('studies', 0):,} studies ({priorities}) routed by the "
        "app's `study_route` and so offered to every reader (all licensed, privileged, on "
        "shift, under their cap). Each loop runs "
        f"{args['warmup']:g} s of warm-up, then {args['seconds']:g} s measured (each naive "
        f"control: {args['naive_seconds']:g} s, no warm-up); claims/s and latencies count the "
        "claims answered inside the measured window, errors and doubles the whole run. A "
        "claim's latency is what its client saw: the `next` request until its response was "
        "read, or the bare loop's BEGIN until its COMMIT returned. Every loop releases at "
        f"once ({args['hold_ms']:g} ms hold) unless said otherwise.",
    ]


def _server_text(conf: dict[str, Any]) -> str:
    if not conf:
        return "not started"
    return (
        f"{conf['workers']} workers x {conf['threads']} threads, {conf['worker_class']}, "
        + (
            "`reuse_port`: a listening socket per worker, "
            if conf.get("reuse_port")
            else "one shared listening socket, "
        )
        + f"keep-alive {conf['keepalive']} s"
    )


def how_measured(results: dict[str, Any]) -> list[str]:
    api = results["phases"].get("api", {})
    spread = api.get("connections_per_worker")
    return [
        "### How it was measured",
        "",
        f"- **API**: gunicorn with the product's `{SERVER_CONFIG}` "
        f"({_server_text(results.get('server') or {})}) serving `teleradiology.wsgi` with "
        "`DJANGO_ENV=production` (DEBUG off, a random SECRET_KEY, persistent database "
        "connections as configured) against PostgreSQL, with no proxy in front: clients send "
        "`X-Forwarded-Proto: https` as a TLS-terminating proxy would. Each client loops "
        "`POST /api/v1/worklist/next/` then `POST /api/v1/studies/{id}/release/` with a "
        "reason, on one keep-alive connection"
        + (f" (connections per worker process: {', '.join(map(str, spread))})" if spread else "")
        + ".",
        "- **Bare SQL loop** (reference): the app's own tables (`studies_study`, "
        "`worklist_offer`), one psycopg connection per client: `BEGIN; SELECT s.id ... WHERE "
        "status = 'offered' AND EXISTS (an open offer to me) ORDER BY priority, sla_due_at, "
        "received_at, id LIMIT 1 FOR UPDATE OF s SKIP LOCKED; UPDATE ... SET status = "
        "'claimed', assigned_radiologist_id = me; COMMIT`, then the release `UPDATE ... "
        "WHERE id = ... AND status = 'claimed' AND assigned_radiologist_id = me` "
        "(autocommit). No eligibility re-check, transition or audit row: what the API "
        "adds on top is the difference.",
        "- **Naive control**: the same rows read, then written with no lock and no "
        "condition (`SELECT ... LIMIT 1`, then `UPDATE ... WHERE id = ...`, each "
        "autocommitted), with the same release; once releasing at once like the loops "
        "above, once holding each claim a little before releasing it.",
        "- **Doubles** come from the clients' own logs, not from the database: each client "
        "writes (study, reader, claim sent, claim answered, release sent, release answered) "
        "for every claim it won; a double is two claims of one study by different readers "
        "whose certain holding intervals (from the claim's answer to the sending of the "
        "release) overlap, so a double is never counted by mistake, but one shorter than "
        "the time between reading a claim's answer and sending its release is missed: the "
        "naive rows show how many it still sees. Releases refused because another reader "
        "held the study ('lost' in SQL, 409 through the API) are a second sign, under errors.",
        "- Before each loop every study is put back on offer and the tables are "
        "`VACUUM ANALYZE`d, so that each loop starts from the same rows and statistics.",
    ]


def findings(results: dict[str, Any]) -> list[str]:
    """The cross-check, the in-process profile, CPU, errors, examples, notes, warnings."""
    phases = results["phases"]
    api, bare, naive = phases.get("api", {}), phases.get("bare", {}), naive_phases(results)
    lines = []
    if api.get("db_check"):
        dc = api["db_check"]
        same = "the same" if dc["same_claims"] else "**not the same**"
        lines.append(
            f"- **Cross-check with the database** (API): {dc['transitions_claimed']:,} "
            f"`claimed` transitions written during the run for {dc['claims_logged']:,} claims "
            f"in the clients' logs ({same} study/reader pairs); "
            f"{dc['claimed_back_to_back']} claims of a study with no release since the last."
        )
    prof = results.get("profile")
    if prof:
        lines.append(
            f"- **In-process, one claim at a time** (one reader, no HTTP, no contention, "
            f"{prof['cycles']} cycles): `study_claim_next` p50 {ms(prof['claim'].get('p50'))} "
            f"({prof['queries'].get('claim')} queries, of which database time p50 "
            f"{ms(prof['claim_db'].get('p50'))}); `study_release` p50 "
            f"{ms(prof['release'].get('p50'))} ({prof['queries'].get('release')} queries, "
            f"database {ms(prof['release_db'].get('p50'))})."
        )
    named = [("bare SQL", bare), ("API", api)] + [(f"naive {p['hold_ms']:g} ms", p) for p in naive]
    cpu_rows = []
    for label, ph in named:
        if ph:
            c = ph["cpu"]
            busy = c.get("machine_busy")
            cpu_rows.append(
                f"{label}: machine {busy * 100:.0f}% busy, clients {c['clients']:.2f}, "
                f"server {c['server']:.2f}, PostgreSQL {c['postgres']:.2f}"
                if busy is not None
                else f"{label}: -"
            )
    lines.append(
        f"- **CPU**: the {results['machine']['cpus']} cores are shared by the clients, the "
        "server and PostgreSQL; cores used, averaged over the measured window: "
        + "; ".join(cpu_rows)
        + "."
    )
    if api.get("server_log", {}).get("count"):
        lines.append(
            f"- Server log: {api['server_log']['count']} error lines, e.g. "
            + " / ".join(api["server_log"]["examples"][:2])
        )
    for label, ph in named:
        if ph.get("error_examples"):
            lines.append(f"- {label} error examples: " + " / ".join(ph["error_examples"][:3]))
        if ph.get("left_claimed"):
            lines.append(f"- {label}: {ph['left_claimed']} studies were left claimed")
    for ph in naive:
        if ph["doubles"]["examples"]:
            lines.append(
                f"- Naive control ({ph['hold_ms']:g} ms), e.g.: "
                + "; ".join(ph["doubles"]["examples"][:2])
            )
    lines += [f"- {n}" for n in results["notes"]]
    lines += [f"- **Warning**: {w}" for w in results["warnings"]]
    return lines


def plans(results: dict[str, Any]) -> list[str]:
    prof = results.get("profile")
    if not prof:
        return []
    return [
        "",
        "Plans (EXPLAIN ANALYZE, after the run, no contention): the app's `next` "
        "query (`claim_candidates` ... `FOR UPDATE SKIP LOCKED`, the top study):",
        "",
        *("    " + line for line in prof["app_plan"].splitlines()),
        "",
        "the bare loop's claim query:",
        "",
        *("    " + line for line in prof["bare_plan"].splitlines()),
    ]


def render(results: dict[str, Any]) -> str:
    lines = [
        *header(results),
        "",
        *loops_table(results),
        "",
        *targets_table(results),
        "",
        *how_measured(results),
        *findings(results),
        *plans(results),
    ]
    return "\n".join(lines) + "\n"


def console(results: dict[str, Any]) -> str:
    return "\n".join(
        [
            *loops_table(results),
            "",
            *targets_table(results),
            "",
            *how_measured(results),
            *findings(results),
        ]
    )
