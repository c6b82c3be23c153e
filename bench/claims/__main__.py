"""Claims benchmark: HTTP clients claiming ("next case") and releasing through the real
API, served by gunicorn against PostgreSQL, next to the bare SQL loop
(``SELECT ... FOR UPDATE SKIP LOCKED`` + ``UPDATE``) at the same concurrency, with
double assignments counted from the clients' own logs and a naive read-then-write
control that shows the detector finds doubles when there are some.

Run from the repository root:

    .venv/bin/python -m bench.claims            # about 5 minutes
    .venv/bin/python -m bench.claims --quick    # 4 clients, 5 s loops, under a minute

See bench/claims/README.md.  Exits 1 if a step failed (BENCHMARKS.md left
alone), 3 if it found a double assignment or its detector found none in the
naive control.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import queue
import re
import runpy
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import REPO, harness, host
from bench.claims import data, report
from bench.claims.clients import NS, client_main, find_doubles, read_holds, sleep_until_ns
from bench.database import Database
from bench.harness import Benchmark, Run, log
from bench.servers import SERVER_CONFIG, app_env, gunicorn_argv, production
from bench.stats import ms, summary
from bench.supervise import PROCS, free_port, wait_for_http


@dataclass
class Claims:
    """What every phase needs."""

    run: Run
    db: Database
    env: dict[str, str]  # a deployment's: production settings, DEBUG off
    conn: Any = None  # psycopg autocommit connection of the parent
    readers: list[dict[str, Any]] = field(default_factory=list)  # radiologist, username, token
    sql: dict[str, str] = field(default_factory=dict)
    server: subprocess.Popen[bytes] | None = None

    @property
    def args(self) -> argparse.Namespace:
        return self.run.args

    @property
    def phases(self) -> dict[str, Any]:
        phases: dict[str, Any] = self.run.results["phases"]
        return phases


# --- CPU accounting ----------------------------------------------------------------


def cpu_snapshot(
    server_pgid: int | None, client_pids: Iterable[int], pg_pids: Iterable[int]
) -> dict[str, dict[int, float]]:
    """CPU seconds used so far by each process of the server (its process group), the
    clients, and PostgreSQL (our database's backends and the background processes)."""
    clients, postgres = set(client_pids), set(pg_pids)
    out: dict[str, dict[int, float]] = {"server": {}, "clients": {}, "postgres": {}}
    for pid in host.pids():
        info = host.proc_stat(pid)
        if info is None:
            continue
        _, pgid, cpu = info
        if pid in clients:
            out["clients"][pid] = cpu
        elif server_pgid is not None and pgid == server_pgid:
            out["server"][pid] = cpu
        elif pid in postgres:
            out["postgres"][pid] = cpu
    return out


def cpu_used(
    before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]
) -> dict[str, float]:
    """CPU seconds per group between two snapshots (processes that ended are left out)."""
    return {
        group: sum(cpu - before[group].get(pid, 0.0) for pid, cpu in pids.items())
        for group, pids in after.items()
    }


def pg_pids(c: Claims) -> list[int]:
    """PostgreSQL processes that work for this benchmark: our database's backends and
    the server's background processes (not other databases' backends)."""
    rows = c.conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() OR datname IS NULL"
    ).fetchall()
    return [int(r[0]) for r in rows]


def connections_per_process(port: int) -> list[int]:
    """How the clients' keep-alive connections are spread over the server's worker
    processes (each worker accepts connections for itself), largest first."""
    ss = shutil.which("ss")  # iproute2
    if ss is None:
        return []
    result = subprocess.run(  # noqa: S603 - ss by its full path
        [ss, "-Htnp", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=False,
    )
    pids = Counter(re.findall(r"pid=(\d+)", result.stdout))
    return sorted(pids.values(), reverse=True)


# --- the loops -----------------------------------------------------------------------


def between_phases(c: Claims, label: str) -> int:
    """Put every study back on offer (what a phase left claimed is reported) and
    VACUUM ANALYZE, so that each phase starts from the same tables."""
    left = int(c.conn.execute(c.sql["claimed_left"]).fetchone()[0])
    if left:
        c.conn.execute(c.sql["reset"])
    # The app's claims hold the study's offers (off the worklists) until release.
    c.conn.execute(
        "UPDATE worklist_offer SET held_at = NULL "
        "WHERE held_at IS NOT NULL AND withdrawn_at IS NULL"
    )
    c.conn.execute("VACUUM (ANALYZE)")
    log(f"{label}: VACUUM ANALYZE done" + (f"; {left} studies were left claimed" if left else ""))
    return left


def run_clients(
    c: Claims,
    name: str,
    kind: str,
    *,
    seconds: float,
    warmup: float,
    hold_ms: float,
    port: int = 0,
) -> dict[str, Any]:
    """Start one process per client, start them together, measure, collect."""
    folder = c.run.work / name
    folder.mkdir(parents=True, exist_ok=True)
    mp = multiprocessing.get_context("spawn")
    ready = mp.Queue()
    go = mp.Event()
    start = mp.Value("q", 0)
    specs = [
        {
            "index": n,
            "kind": kind,
            "folder": str(folder),
            "reader": r["radiologist"],
            "token": r["token"],
            "port": port,
            "dsn": c.db.url(),
            "sql": c.sql,
            "seconds": seconds,
            "warmup": warmup,
            "hold_ms": hold_ms,
        }
        for n, r in enumerate(c.readers[: c.args.clients])
    ]
    procs = [mp.Process(target=client_main, args=(s, ready, go, start)) for s in specs]
    server_pgid = c.server.pid if c.server is not None else None
    try:
        for p in procs:
            p.start()
        for _ in procs:
            try:
                ready.get(timeout=120)
            except queue.Empty:
                raise RuntimeError(f"{name}: a client did not start within 120 s") from None
        t_start = time.monotonic_ns() + NS // 5
        start.value = t_start
        go.set()
        lo = t_start + int(warmup * NS)
        hi = lo + int(seconds * NS)
        log(
            f"{name}: {len(procs)} clients running for {warmup:g} s warm-up + {seconds:g} s"
            + (f" (hold {hold_ms:g} ms)" if hold_ms else "")
        )
        pids = [p.pid for p in procs if p.pid is not None]
        sleep_until_ns(lo)
        cpu0, jiffies0 = cpu_snapshot(server_pgid, pids, pg_pids(c)), host.cpu_jiffies()
        spread = connections_per_process(port) if port else []
        # Just before the end: at the end the clients close their database sessions.
        cpu_end = hi - int(min(0.1, seconds / 10) * NS)
        sleep_until_ns(cpu_end)
        cpu1, jiffies1 = cpu_snapshot(server_pgid, pids, pg_pids(c)), host.cpu_jiffies()
        cpu_seconds = (time.monotonic_ns() - lo) / NS
        for p in procs:
            p.join(timeout=180)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(timeout=10)
    others = host.other_work(exclude="bench.claims")
    if others:
        c.run.warn(f"other benchmarks were running during '{name}': {'; '.join(others)[:300]}")
    window = (hi - lo) / NS
    counts: Counter[str] = Counter()
    claim_lat: list[float] = []
    release_lat: list[float] = []
    errors: list[str] = []
    examples: list[str] = []
    reconnects = 0
    for s in specs:
        path = folder / f"client-{s['index']:03d}.json"
        if not path.exists():
            errors.append(f"client {s['index']} wrote no result")
            continue
        result = json.loads(path.read_text())
        if "error" in result:
            errors.append(f"client {s['index']}: {result['error'][-500:]}")
        counts.update(result["counts"])
        claim_lat += [x / NS for x in result["claim_latency_ns"]]
        release_lat += [x / NS for x in result["release_latency_ns"]]
        reconnects += int(result.get("reconnects", 0))
        examples += result.get("error_examples", [])
    if errors:
        raise RuntimeError(f"{name}: " + " | ".join(errors)[:3000])
    holds = read_holds(folder)
    doubles = find_doubles(holds)
    busy = jiffies1[0] - jiffies0[0]
    total = jiffies1[1] - jiffies0[1]
    claims = counts.get("window claimed", 0)
    out: dict[str, Any] = {
        "kind": kind,
        "clients": len(specs),
        "seconds": window,
        "warmup": warmup,
        "hold_ms": hold_ms,
        "claims": claims,
        "claims_per_s": claims / window if window else None,
        "claim_latency": summary(claim_lat),
        "release_latency": summary(release_lat),
        "nothing": counts.get("window nothing", 0),
        "nothing_total": counts.get("nothing", 0),
        "claims_total": counts.get("claimed", 0),
        "releases_ok": counts.get("release ok", 0),
        "release_problems": {
            k.removeprefix("release "): v
            for k, v in counts.items()
            if k.startswith("release ") and k != "release ok"
        },
        "claim_errors": {
            k: v
            for k, v in counts.items()
            if not k.startswith(("window ", "release ")) and k not in ("claimed", "nothing")
        },
        "reconnects": reconnects,
        "connections_per_worker": spread,
        "error_examples": examples[:5],
        "holds_logged": len(holds),
        "doubles": doubles,
        "cpu": {
            "machine_busy": busy / total if total else None,
            **{k: v / cpu_seconds for k, v in cpu_used(cpu0, cpu1).items()},
        },
    }
    lat = out["claim_latency"]
    log(
        f"{name}: {claims} claims in {window:.0f} s = {out['claims_per_s']:.0f}/s; "
        f"claim p50 {ms(lat.get('p50'))}, p99 {ms(lat.get('p99'))}; nothing {out['nothing']}; "
        f"doubles {doubles['pairs']}; release problems {out['release_problems'] or 0}; "
        f"claim errors {out['claim_errors'] or 0}"
    )
    return out


def phase_bare(c: Claims) -> None:
    a = c.args
    between_phases(c, "before the bare SQL loop")
    c.phases["bare"] = run_clients(
        c, "bare", "bare", seconds=a.seconds, warmup=a.warmup, hold_ms=a.hold_ms
    )
    c.phases["bare"]["left_claimed"] = between_phases(c, "after the bare SQL loop")


def server_config(c: Claims) -> dict[str, Any]:
    """What the server runs with: the product's ``gunicorn.conf.py`` read with the
    server's environment, then the command line's ``--server-workers/-threads``."""
    saved = dict(os.environ)
    try:
        os.environ.update(c.env)
        conf = runpy.run_path(str(REPO / SERVER_CONFIG))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    a = c.args
    return {
        "worker_class": conf.get("worker_class", "sync"),
        "workers": a.server_workers if a.server_workers is not None else conf.get("workers", 1),
        "threads": a.server_threads if a.server_threads is not None else conf.get("threads", 1),
        "reuse_port": bool(conf.get("reuse_port", False)),
        "keepalive": conf.get("keepalive", 2),
    }


def server_log_problems(path: Path) -> dict[str, Any]:
    text = path.read_text(errors="replace") if path.exists() else ""
    lines = [
        line
        for line in text.splitlines()
        if re.search(r"\b(ERROR|CRITICAL)\b|Traceback|WORKER TIMEOUT", line)
    ]
    return {"count": len(lines), "examples": lines[:5]}


def db_claim_check(after_id: int, readers: dict[int, int]) -> dict[str, Any]:
    """The database's own record of the API phase: one ``claimed`` transition per claim
    the clients logged, and no study claimed twice without a release in between."""
    from studies.models import StudyTransition

    rows = (
        StudyTransition.objects.filter(pk__gt=after_id)
        .order_by("study_id", "pk")
        .values_list("study_id", "to_status", "actor_id")
    )
    claims: Counter[tuple[int, int]] = Counter()
    back_to_back = 0
    last: dict[int, str] = {}
    for study_id, to_status, actor_id in rows:
        if to_status == "claimed":
            claims[(study_id, readers.get(actor_id or 0, -1))] += 1
            if last.get(study_id) == "claimed":
                back_to_back += 1
        last[study_id] = to_status
    return {"claims": sum(claims.values()), "by_study_reader": claims, "back_to_back": back_to_back}


def phase_api(c: Claims) -> None:
    from django.contrib.auth.models import User

    from studies.models import StudyTransition

    a = c.args
    between_phases(c, "before the API")
    before = StudyTransition.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    port = free_port()
    log_path = c.run.work / "gunicorn.log"
    conf = c.run.results["server"] = server_config(c)
    log(
        f"starting gunicorn on 127.0.0.1:{port} with {SERVER_CONFIG} ({conf['workers']} "
        f"workers x {conf['threads']} threads, {conf['worker_class']}, reuse_port "
        f"{conf['reuse_port']}, DJANGO_ENV=production)"
    )
    argv = gunicorn_argv(
        port, config=SERVER_CONFIG, workers=a.server_workers, threads=a.server_threads
    )
    c.server = PROCS.start(argv, env=c.env, log_path=log_path)
    try:
        wait_for_http(
            port,
            "/healthz",
            headers={"X-Forwarded-Proto": "https"},
            timeout=60,
            what="the server",
            proc=c.server,
            log_path=log_path,
        )
        result = run_clients(
            c, "api", "api", seconds=a.seconds, warmup=a.warmup, hold_ms=a.hold_ms, port=port
        )
    finally:
        PROCS.stop(c.server, timeout=30)
        c.server = None
    result["server_log"] = server_log_problems(log_path)
    users = dict(
        User.objects.filter(username__startswith="bench-reader-")
        .select_related("radiologist")
        .values_list("pk", "radiologist__pk")
    )
    db = db_claim_check(before, users)
    logged: Counter[tuple[int, int]] = Counter(
        (h.study, h.reader) for h in read_holds(c.run.work / "api")
    )
    result["db_check"] = {
        "transitions_claimed": db["claims"],
        "claims_logged": sum(logged.values()),
        "same_claims": db["by_study_reader"] == logged,
        "claimed_back_to_back": db["back_to_back"],
    }
    result["left_claimed"] = between_phases(c, "after the API")
    c.phases["api"] = result


def phase_naive(c: Claims) -> None:
    """The control: read then write with no lock, once per hold (0 ms: the same
    claim-then-release-at-once loop as the API and the bare loop)."""
    a = c.args
    for hold in a.naive_hold_ms:
        name = f"naive-{hold:g}ms"
        result = run_clients(c, name, "naive", seconds=a.naive_seconds, warmup=0, hold_ms=hold)
        result["left_claimed"] = between_phases(c, f"after the naive control ({hold:g} ms)")
        c.phases[name] = result


def phase_profile(c: Claims) -> None:
    """One reader claiming and releasing in-process, one at a time (no contention, no
    HTTP): what a claim costs the server by itself, and the plans of both claim queries."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from network.models import Radiologist
    from worklist.selectors import claim_candidates
    from worklist.services.claims import study_claim_next, study_release

    reader = Radiologist.objects.get(pk=c.readers[0]["radiologist"])
    cycles: dict[str, list[float]] = {"claim": [], "release": [], "claim_db": [], "release_db": []}
    queries: dict[str, int] = {}
    for _ in range(c.args.profile_cycles):
        with CaptureQueriesContext(connection) as captured:
            t0 = time.perf_counter()
            study = study_claim_next(radiologist=reader)
            t1 = time.perf_counter()
        if study is None:
            raise RuntimeError("profile: nothing to claim")
        cycles["claim"].append(t1 - t0)
        cycles["claim_db"].append(sum(float(q["time"]) for q in captured.captured_queries))
        queries["claim"] = len(captured.captured_queries)
        with CaptureQueriesContext(connection) as captured:
            t0 = time.perf_counter()
            study_release(study_id=study.pk, radiologist=reader, reason="benchmark profile")
            t1 = time.perf_counter()
        cycles["release"].append(t1 - t0)
        cycles["release_db"].append(sum(float(q["time"]) for q in captured.captured_queries))
        queries["release"] = len(captured.captured_queries)
    with transaction.atomic():
        # The statement study_claim_next runs (it reads the top study alone first).
        app_plan = (
            claim_candidates(radiologist=reader)
            .select_for_update(skip_locked=True, of=("self",))[:1]
            .explain(analyze=True)
        )
    bare_plan = "\n".join(
        str(r[0])
        for r in c.conn.execute("EXPLAIN ANALYZE " + c.sql["claim_select"], (reader.pk,)).fetchall()
    )
    profile = c.run.results["profile"] = {
        "cycles": c.args.profile_cycles,
        "queries": queries,
        **{k: summary(v) for k, v in cycles.items()},
        "app_plan": app_plan,
        "bare_plan": bare_plan,
    }
    log(
        f"in-process, one at a time: claim p50 {ms(profile['claim'].get('p50'))} "
        f"({queries['claim']} queries, database {ms(profile['claim_db'].get('p50'))}), "
        f"release p50 {ms(profile['release'].get('p50'))} ({queries['release']} queries)"
    )
    between_phases(c, "after the in-process profile")


# --- the run --------------------------------------------------------------------------


def measure(run: Run) -> None:
    args = run.args
    run.results["phases"] = {}
    db = Database(args.database_url, args.db_name)
    env = production(
        app_env(
            database_url=db.url(),
            redis_url=args.redis_url,  # required by production; claims send no task
            var_dir=str(run.work / "var"),
            EMAIL_BACKEND="django.core.mail.backends.dummy.EmailBackend",
        ),
        redis_url=args.redis_url,
    )
    c = Claims(run, db, env)
    others = host.other_work(exclude="bench.claims")
    if others:
        run.warn(f"other benchmarks were running at the start: {'; '.join(others)[:300]}")

    def close() -> None:
        if c.conn is not None:
            c.conn.close()
        if not args.keep:
            from django.db import connections

            connections.close_all()
            db.drop()

    run.at_end(close)
    log(f"creating database {db.name} and migrating")
    db.create_migrated(env)
    harness.setup_django(env)
    c.conn = db.connect()
    run.results["versions"] = {
        **host.versions("django", "djangorestframework", "gunicorn", "psycopg"),
        **host.postgres(c.conn, ["shared_buffers", "synchronous_commit", "max_connections", "jit"]),
    }
    c.readers, c.sql = data.build(args, run.results)
    if "bare" not in args.skip:
        phase_bare(c)
    if "api" not in args.skip:
        phase_api(c)
    if "profile" not in args.skip:
        phase_profile(c)
    if "naive" not in args.skip:
        phase_naive(c)
    if args.skip:
        run.note(f"left out (--skip): {', '.join(sorted(args.skip))}")


def add_options(p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    a("--clients", type=int, default=32, help="concurrent clients (and readers)")
    a("--seconds", type=float, default=60.0, help="measured seconds of each loop")
    a("--warmup", type=float, default=5.0, help="seconds run before measuring (each loop)")
    a("--studies", type=int, default=2000, help="studies on offer to every reader")
    a("--hold-ms", type=float, default=0.0, help="API and bare loop: ms between claim and release")
    a("--naive-seconds", type=float, default=10.0, help="how long the naive control runs")
    a(
        "--naive-hold-ms",
        type=lambda text: [float(x) for x in text.split(",") if x],
        default=[0.0, 2.0],
        help="naive control: ms each claim is held before its release, one run each "
        "(comma-separated; default 0,2)",
    )
    a("--profile-cycles", type=int, default=50, help="in-process claim/release cycles timed")
    a(
        "--server-workers",
        type=int,
        default=None,
        help=f"gunicorn worker processes (default: the product's, {SERVER_CONFIG})",
    )
    a(
        "--server-threads",
        type=int,
        default=None,
        help=f"threads per worker (default: the product's, {SERVER_CONFIG})",
    )
    a(
        "--skip",
        type=lambda text: {x for x in text.split(",") if x},
        default=set(),
        help="parts to leave out: bare, api, profile, naive (comma-separated)",
    )
    a("--seed", type=int, default=20260605)
    a("--database-url", default="postgres://postgres@127.0.0.1:5432")
    a("--db-name", default="telerad_bench_claims")
    a("--redis-url", default="redis://127.0.0.1:6379/0")


def check_args(args: argparse.Namespace) -> str | None:
    if args.skip - {"bare", "api", "profile", "naive"}:
        return f"unknown loops in --skip: {sorted(args.skip)}"
    if args.clients < 1 or args.studies < args.clients:
        return "need at least one client and at least as many studies as clients"
    return None


BENCHMARK = Benchmark(
    module="bench.claims",
    doc=__doc__ or "",
    add_options=add_options,
    measure=measure,
    title=report.TITLE,
    render=report.render,
    console=report.console,
    quick={
        "clients": 4,
        "seconds": 5.0,
        "warmup": 2.0,
        "studies": 500,
        "naive_seconds": 3.0,
        "profile_cycles": 20,
    },
    check_args=check_args,
    renderable=lambda results: bool(results.get("phases")) or "profile" in results,
    exit_code=report.exit_code,
)

if __name__ == "__main__":
    sys.exit(harness.main(BENCHMARK))
