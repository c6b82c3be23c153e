"""The worklist benchmark's measurements: the cases (first page, keyset next
page, filters), the SQL the app sends for each (captured in-process), that SQL
timed at the database, and the API end to end over HTTP."""

# ruff: noqa: S311, S608
from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import random
import re
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import host
from bench.harness import Run, log
from bench.servers import gunicorn_argv
from bench.stats import ms, summary
from bench.supervise import HOST, PROCS, free_port, wait_for_http
from bench.worklist import datagen

WORKLIST_PATH = "/api/v1/worklist/"


# --- the run ---------------------------------------------------------------------


@dataclass
class Case:
    """One worklist request: query parameters, and how many "next" links to follow."""

    key: str
    label: str
    params: list[tuple[str, str]]
    follow: int = 0
    # Filled in by capture():
    path: str = ""
    sqls: list[str] = field(default_factory=list)  # the page's SQL, in order
    rows: int = 0
    matching: int | None = None
    first_ids: list[int] = field(default_factory=list)
    queries: list[dict[str, Any]] = field(default_factory=list)
    next_cursor: str | None = None


@dataclass
class Worklist:
    """What every step needs."""

    run: Run
    db_url: str
    env: dict[str, str]  # the app's, this process's too (development settings, DEBUG off)
    server_env: dict[str, str]  # the server's: production settings
    conn: Any = None  # psycopg autocommit connection (bulk load, facts)
    net: Any = None
    server: subprocess.Popen[bytes] | None = None

    @property
    def args(self) -> argparse.Namespace:
        return self.run.args

    @property
    def work(self) -> Path:
        return self.run.work

    @property
    def results(self) -> dict[str, Any]:
        return self.run.results

    def warn_if_busy(self, phase: str) -> None:
        others = host.other_work(exclude="bench.worklist")
        if others:
            self.run.warn(f"another benchmark was running during the {phase}: {'; '.join(others)}")


def shape_of(args: argparse.Namespace) -> datagen.Shape:
    return datagen.Shape(
        studies=args.studies,
        offers=args.offers,
        offered=args.offered,
        claimed=args.claimed,
        preliminary=args.preliminary,
        ready=args.ready,
        receiving=args.receiving,
        radiologists=args.radiologists,
        facilities=args.facilities,
        busy_share=args.busy_share,
        busy_history_share=args.busy_history_share,
        busy_claims=args.busy_claims,
        history_withdrawn=args.history_withdrawn,
        days=args.days,
        seed=args.seed,
    )


def load_data(w: Worklist) -> None:
    args = w.args
    shape = shape_of(args)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    log("building the reading network (ORM)")
    w.net = datagen.build_network(shape, random.Random(args.seed))
    log(f"generating and loading {args.studies:,} studies and {args.offers:,} offers (COPY)")
    t0 = time.monotonic()
    loaded = datagen.load(w.conn, w.net, shape, w.work, now=now, log=log)
    load_seconds = time.monotonic() - t0
    log("VACUUM ANALYZE")
    t0 = time.monotonic()
    w.conn.execute("VACUUM (ANALYZE)")
    vacuum_seconds = time.monotonic() - t0
    w.results["data"] = {
        "generated_at": now.isoformat(),
        "studies": loaded.studies,
        "offers": loaded.offers,
        "routing_rows": loaded.routing,
        "status_counts": dict(loaded.status_counts.most_common()),
        "offer_counts": dict(loaded.offer_counts.most_common()),
        "busy_offers": dict(loaded.busy.most_common()),
        "load_seconds": load_seconds,
        "copy_seconds": loaded.seconds,
        "vacuum_analyze_seconds": vacuum_seconds,
        "busy_username": w.net.busy_username,
    }


def facts(w: Worklist) -> dict[str, Any]:
    """Sizes and the busy reader's worklist, straight from the database."""
    conn = w.conn
    busy = w.net.busy_reader_id
    out: dict[str, Any] = {}
    out["busy_open_on_offered"] = conn.execute(
        "SELECT count(*) FROM worklist_offer o JOIN studies_study s ON s.id = o.study_id "
        "WHERE o.radiologist_id = %s AND o.withdrawn_at IS NULL AND s.status = 'offered'",
        (busy,),
    ).fetchone()[0]
    out["busy_open_total"] = conn.execute(
        "SELECT count(*) FROM worklist_offer WHERE radiologist_id = %s AND withdrawn_at IS NULL",
        (busy,),
    ).fetchone()[0]
    out["busy_offers_total"] = conn.execute(
        "SELECT count(*) FROM worklist_offer WHERE radiologist_id = %s", (busy,)
    ).fetchone()[0]
    out["open_offers_total"] = conn.execute(
        "SELECT count(*) FROM worklist_offer WHERE withdrawn_at IS NULL"
    ).fetchone()[0]
    out["open_on_offered_total"] = conn.execute(
        "SELECT count(*) FROM worklist_offer o JOIN studies_study s ON s.id = o.study_id "
        "WHERE o.withdrawn_at IS NULL AND s.status = 'offered'"
    ).fetchone()[0]
    out["busy_claimed"] = conn.execute(
        "SELECT count(*) FROM studies_study WHERE assigned_radiologist_id = %s "
        "AND status IN ('claimed', 'preliminary')",
        (busy,),
    ).fetchone()[0]
    out["sizes"] = {
        name: f"{size / (1 << 20):.1f} MiB"
        for name, size in conn.execute(
            "SELECT c.relname, pg_relation_size(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public' "
            "WHERE c.relname IN ('studies_study', 'worklist_offer', 'routing_studyrouting') "
            "OR (c.relkind = 'i' AND (c.relname LIKE 'study%%' OR c.relname LIKE 'offer%%' "
            "OR c.relname LIKE 'worklist_offer%%' OR c.relname = 'studies_study_pkey')) "
            "ORDER BY c.relname"
        ).fetchall()
    }
    out["indexes"] = [
        row[0]
        for row in conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename IN ('studies_study', "
            "'worklist_offer') ORDER BY tablename, indexname"
        ).fetchall()
    ]
    return out


def pick_facility(w: Worklist) -> int:
    """The facility with most studies on the busy reader's worklist ("my hospital")."""
    row = w.conn.execute(
        "SELECT s.facility_id, count(*) FROM worklist_offer o "
        "JOIN studies_study s ON s.id = o.study_id "
        "WHERE o.radiologist_id = %s AND o.withdrawn_at IS NULL AND s.status = 'offered' "
        "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1",
        (w.net.busy_reader_id,),
    ).fetchone()
    return int(row[0])


def make_cases(w: Worklist) -> list[Case]:
    fac = str(pick_facility(w))
    stat_urgent = [("priority", "1"), ("priority", "2")]
    # The deepest page the worklist has (50 rows a page), at most --deep-page.
    worklist = int(w.results["facts"]["busy_open_on_offered"])
    deep = min(w.args.deep_page, max(1, (worklist - 1) // 50 + 1))
    if deep < w.args.deep_page:
        w.results["notes"].append(
            f"the worklist has {worklist} rows: the deep page is page {deep}, "
            f"not {w.args.deep_page}"
        )
    cases = [
        Case("first", "first page, no filter", []),
        Case("next", "next page (keyset cursor), no filter", [], follow=1),
        Case("deep", f"page {deep} (cursor after cursor), no filter", [], follow=deep - 1),
        Case("modality", "first page, modality=CT", [("modality", "CT")]),
        Case("modality-next", "next page, modality=CT", [("modality", "CT")], follow=1),
        Case("priority", "first page, priority=1,2 (STAT, urgent)", stat_urgent),
        Case("facility", "first page, facility=<the reader's top facility>", [("facility", fac)]),
        Case(
            "combined",
            "first page, modality=CT + priority=1,2 + facility",
            [("modality", "CT"), *stat_urgent, ("facility", fac)],
        ),
        Case("tier", "first page, tier=0", [("tier", "0")]),
        Case("subspecialty", "first page, subspecialty=neuro", [("subspecialty", "neuro")]),
    ]
    if deep < 3:
        cases = [c for c in cases if c.key != "deep"]
    w.results["filter_facility"] = int(fac)
    return cases


# --- the app's SQL, captured in-process ---------------------------------------------


def count_text(n: int | None) -> str:
    return "?" if n is None else f"{n:,}"


def is_page_query(sql: str) -> bool:
    """A read of studies or offers: the page (one query today; if the app ever reads
    the page in several, all of them are timed together)."""
    return sql.lstrip().upper().startswith("SELECT") and (
        '"studies_study"' in sql or '"worklist_offer"' in sql
    )


def capture(w: Worklist, cases: Sequence[Case]) -> None:
    """Send each case's request through the app in-process (Django's test client, the
    same view, filters and pagination) and keep the SQL it sent for the page."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    auth = {"HTTP_AUTHORIZATION": f"Token {w.net.token}"}
    for case in cases:
        params = list(case.params)
        cursor: str | None = None
        for hop in range(case.follow + 1):
            query = params + ([("cursor", cursor)] if cursor else [])
            path = WORKLIST_PATH + ("?" + urllib.parse.urlencode(query) if query else "")
            with CaptureQueriesContext(connection) as captured:
                response = client.get(path, **auth)  # type: ignore[arg-type]
            if response.status_code != 200:
                raise RuntimeError(f"{case.key}: {path} -> {response.status_code}")
            body = response.json()
            if hop < case.follow:
                if not body["next"]:
                    raise RuntimeError(f"{case.key}: no next page after page {hop + 1}")
                cursor = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(body["next"]).query))[
                    "cursor"
                ]
                continue
            sqls = [q["sql"] for q in captured.captured_queries]
            case.sqls = [s for s in sqls if is_page_query(s)]
            if not case.sqls:
                raise RuntimeError(f"{case.key}: no query of studies or offers was sent")
            case.path = path
            case.rows = len(body["results"])
            case.first_ids = [r["id"] for r in body["results"]]
            case.queries = [
                {"sql": q["sql"], "seconds": float(q["time"])} for q in captured.captured_queries
            ]
            case.next_cursor = (
                dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(body["next"]).query))["cursor"]
                if body["next"]
                else None
            )
        limited = [q for q in case.sqls if re.search(r" LIMIT \d+$", q)]
        if limited:  # how many rows match the filters (and lie after the cursor)
            unlimited = re.sub(r" LIMIT \d+$", "", limited[0])
            case.matching = int(
                w.conn.execute(f"SELECT count(*) FROM ({unlimited}) AS page").fetchone()[0]
            )
        log(
            f"  {case.key}: {case.rows} rows on the page, {count_text(case.matching)} match after "
            f"the cursor/filters; {len(case.sqls)} page quer{'y' if len(case.sqls) == 1 else 'ies'}"
            f", {len(case.queries)} SQL statements per request"
        )
    connection.close()


# --- at the database -----------------------------------------------------------------


def db_connection(w: Worklist) -> Any:
    """A connection that sends SQL as Django's psycopg backend does: client-side
    binding (``ClientCursor``), never prepared, so every run is parsed and planned."""
    import psycopg

    return psycopg.connect(
        w.db_url,
        autocommit=True,
        cursor_factory=psycopg.ClientCursor,
        prepare_threshold=None,
        options="-c timezone=UTC",
    )


def plan_times(plan: str) -> tuple[float | None, float | None]:
    planning = re.search(r"Planning Time: ([0-9.]+) ms", plan)
    execution = re.search(r"Execution Time: ([0-9.]+) ms", plan)
    return (
        float(planning.group(1)) / 1000 if planning else None,
        float(execution.group(1)) / 1000 if execution else None,
    )


def measure_db(w: Worklist, cases: Sequence[Case]) -> None:
    """Run each case's captured SQL ``--repeat`` times, round-robin, and time the round
    trip (send, plan, execute, fetch the page) from this client; then EXPLAIN it."""
    args = w.args
    w.warn_if_busy("database measurement")
    times: dict[str, list[float]] = {c.key: [] for c in cases}
    decode: dict[str, list[float]] = {c.key: [] for c in cases}
    expected: dict[str, list[int]] = {}
    load_before = host.loadavg()
    with db_connection(w) as conn, conn.cursor() as cur:
        for round_no in range(args.warmup + args.repeat):
            order = list(cases)
            random.Random(round_no).shuffle(order)
            for case in order:
                waited = decoding = 0.0
                counts = []
                for sql in case.sqls:
                    t0 = time.perf_counter()
                    cur.execute(sql)  # returns when the whole result has arrived
                    t1 = time.perf_counter()
                    counts.append(len(cur.fetchall()))  # into Python values: client CPU
                    waited += t1 - t0
                    decoding += time.perf_counter() - t1
                if expected.setdefault(case.key, counts) != counts:  # the data do not change
                    raise RuntimeError(f"{case.key}: {counts} rows, {expected[case.key]} before")
                if round_no >= args.warmup:
                    times[case.key].append(waited)
                    decode[case.key].append(decoding)
        # Server-side time (planning + execution) without the round trip, from
        # EXPLAIN ANALYZE with per-node timing off (little instrumentation overhead).
        server: dict[str, list[float]] = {c.key: [] for c in cases}
        for round_no in range(args.explain_repeat):
            order = list(cases)
            random.Random(50_000 + round_no).shuffle(order)
            for case in order:
                total = 0.0
                for sql in case.sqls:
                    cur.execute("EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON) " + sql)
                    planning, execution = plan_times("\n".join(r[0] for r in cur.fetchall()))
                    total += (planning or 0.0) + (execution or 0.0)
                server[case.key].append(total)
        plans: dict[str, str] = {}
        for case in cases:
            texts = []
            for n, sql in enumerate(case.sqls, 1):
                for _ in range(3):  # the last of three (warm) is kept
                    cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
                    text = "\n".join(r[0] for r in cur.fetchall())
                if len(case.sqls) > 1:
                    text = f"-- page query {n} of {len(case.sqls)}\n{text}"
                texts.append(text)
            plans[case.key] = "\n\n".join(texts)
    w.results["db"] = {
        "loadavg_before": load_before,
        "cases": {
            c.key: {
                **summary(times[c.key]),
                "server": summary(server[c.key]),
                "decode": summary(decode[c.key]),
                "plan": plans[c.key],
                "planning": plan_times(plans[c.key])[0],
                "execution": plan_times(plans[c.key])[1],
            }
            for c in cases
        },
    }
    for c in cases:
        s = w.results["db"]["cases"][c.key]
        log(
            f"  db {c.key:14} p50 {ms(s['p50'], 2)}  p95 {ms(s['p95'], 2)}  "
            f"p99 {ms(s['p99'], 2)}  (server p95 {ms(s['server'].get('p95'), 2)})"
        )


# --- end to end over HTTP -------------------------------------------------------------


def use_gunicorn(w: Worklist) -> bool:
    if w.args.server == "runserver":
        return False
    import importlib.util

    found = importlib.util.find_spec("gunicorn") is not None
    if not found and w.args.server == "gunicorn":
        raise SystemExit("--server gunicorn: gunicorn is not installed in this environment")
    return found


def server_argv(w: Worklist, port: int) -> tuple[list[str], str]:
    a = w.args
    if use_gunicorn(w):
        argv = gunicorn_argv(
            port, worker_class="gthread", workers=a.server_workers, threads=a.server_threads
        )
        return argv, (
            f"gunicorn ({a.server_workers} workers x {a.server_threads} threads, gthread), "
            "production settings"
        )
    argv = [sys.executable, "manage.py", "runserver", f"{HOST}:{port}", "--noreload"]
    why = "" if a.server == "runserver" else "gunicorn is not installed: "
    return argv, (
        f"manage.py runserver --noreload ({why}Django's threaded development server, "
        "one process), production settings"
    )


def request_headers(w: Worklist) -> dict[str, str]:
    return {"Authorization": f"Token {w.net.token}", "X-Forwarded-Proto": "https"}


def start_server(w: Worklist) -> tuple[int, str]:
    port = w.args.port or free_port()
    argv, description = server_argv(w, port)
    log(f"starting the server: {description}")
    log_path = w.work / "server.log"
    w.server = PROCS.start(argv, env=w.server_env, log_path=log_path)

    def ok(status: int, body: bytes) -> bool:
        if status != 200:
            raise RuntimeError(f"the server answered {status}: {body[:300]!r}")
        return True

    wait_for_http(
        port,
        WORKLIST_PATH,
        headers=request_headers(w),
        timeout=60,
        what="the server",
        proc=w.server,
        log_path=log_path,
        ok=ok,
    )
    return port, description


def stop_server(w: Worklist) -> None:
    if w.server is not None:
        PROCS.stop(w.server, timeout=10)
        w.server = None


def measure_api(w: Worklist, cases: Sequence[Case]) -> None:
    """GET each case's URL ``--repeat`` times, round-robin, over one keep-alive HTTP
    connection, timing from sending the request to the last byte of the body."""
    args = w.args
    port, description = start_server(w)
    assert w.server is not None  # noqa: S101 - set by start_server
    server_pid = w.server.pid
    headers = request_headers(w)
    w.warn_if_busy("API measurement")
    times: dict[str, list[float]] = {c.key: [] for c in cases}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    reconnects = 0
    checked: set[str] = set()
    load_before = host.loadavg()
    sessions_before = host.pg_sessions(w.conn)
    cpu_before = host.group_cpu_seconds(server_pid)
    measured = 0
    try:
        for round_no in range(args.warmup + args.repeat):
            order = list(cases)
            random.Random(10_000 + round_no).shuffle(order)
            for case in order:
                t0 = time.perf_counter()
                conn.request("GET", case.path, headers=headers)
                response = conn.getresponse()
                body = response.read()
                elapsed = time.perf_counter() - t0
                if response.status != 200:
                    raise RuntimeError(f"{case.key}: HTTP {response.status}: {body[:300]!r}")
                if case.key not in checked:
                    data = json.loads(body)
                    ids = [r["id"] for r in data["results"]]
                    if ids != case.first_ids:
                        raise RuntimeError(f"{case.key}: HTTP and in-process pages differ")
                    checked.add(case.key)
                if response.will_close:
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    reconnects += 1
                if round_no >= args.warmup:
                    times[case.key].append(elapsed)
                    measured += 1
            if round_no == args.warmup - 1:
                cpu_before = host.group_cpu_seconds(server_pid)
                sessions_before = host.pg_sessions(w.conn)
    finally:
        conn.close()
    cpu_after = host.group_cpu_seconds(server_pid)
    sessions_after = host.pg_sessions(w.conn)
    stop_server(w)
    log_text = (w.work / "server.log").read_text(errors="replace")
    w.results["api"] = {
        "loadavg_before": load_before,
        "server": description,
        "reconnects": reconnects,
        "requests": measured,
        "server_cpu_per_request": (
            (cpu_after - cpu_before) / measured
            if cpu_after is not None and cpu_before is not None and measured
            else None
        ),
        "db_sessions_opened": (
            sessions_after - sessions_before
            if sessions_after is not None and sessions_before is not None
            else None
        ),
        "server_errors": log_text.count("Traceback"),
        "cases": {c.key: summary(times[c.key]) for c in cases},
    }
    for c in cases:
        s = w.results["api"]["cases"][c.key]
        log(f"  api {c.key:14} p50 {ms(s['p50'], 2)}  p95 {ms(s['p95'], 2)}  p99 {ms(s['p99'], 2)}")
