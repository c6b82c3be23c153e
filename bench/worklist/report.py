"""The worklist section of BENCHMARKS.md, rendered from the results: the cases'
table (database and API), the targets, what was measured, the page query as the
app sends it, the indexes and every case's plan."""

from __future__ import annotations

import re
import statistics
from typing import Any

from bench.host import machine_text, postgres_text
from bench.report import bullets, indent, verdict
from bench.stats import ms
from bench.worklist.measure import WORKLIST_PATH, count_text, is_page_query

TITLE = "## Worklist (bench/worklist)"
DB_TARGET = 0.005  # seconds, p95 at the database
API_TARGET = 0.100  # seconds, p95 end to end


def ms2(seconds: float | None) -> str:
    return ms(seconds, 2)


def pretty_sql(sql: str) -> str:
    import sqlparse

    return str(sqlparse.format(sql, reindent=True, keyword_case="upper"))


def _db(results: dict[str, Any]) -> dict[str, Any]:
    cases: dict[str, Any] = results.get("db", {}).get("cases", {})
    return cases


def _api(results: dict[str, Any]) -> dict[str, Any]:
    cases: dict[str, Any] = results.get("api", {}).get("cases", {})
    return cases


def cases_table(results: dict[str, Any]) -> str:
    db, api = _db(results), _api(results)
    rows = [
        "| case | rows (matching) | DB p50 | DB p95 | DB p99 | server p50 / p95 | "
        "API p50 | API p95 | API p99 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in results["cases"]:
        d, a = db.get(c["key"], {}), api.get(c["key"], {})
        server = d.get("server", {})
        rows.append(
            f"| {c['label']} | {c['rows']} ({count_text(c['matching'])}) | {ms2(d.get('p50'))} | "
            f"{ms2(d.get('p95'))} | {ms2(d.get('p99'))} | "
            f"{ms2(server.get('p50'))} / {ms2(server.get('p95'))} | "
            f"{ms(a.get('p50'))} | {ms(a.get('p95'))} | {ms(a.get('p99'))} |"
        )
    return "\n".join(rows)


def targets_table(results: dict[str, Any]) -> str:
    cases, db, api = results["cases"], _db(results), _api(results)
    db_ok = [db[c["key"]]["p95"] <= DB_TARGET for c in cases if c["key"] in db]
    api_ok = [api[c["key"]]["p95"] < API_TARGET for c in cases if c["key"] in api]
    db_worst = max(cases, key=lambda c: db.get(c["key"], {}).get("p95") or 0)["key"]
    api_worst = max(cases, key=lambda c: api.get(c["key"], {}).get("p95") or 0)["key"]
    return "\n".join(
        [
            "| target | result | verdict |",
            "| --- | --- | --- |",
            f"| database p95 <= 5 ms (every case) | {sum(db_ok)}/{len(db_ok)} cases; worst "
            f"{ms2(db.get(db_worst, {}).get('p95'))} ({db_worst}) | "
            f"{verdict(all(db_ok) if db_ok else None)} |",
            f"| API p95 < 100 ms (every case) | {sum(api_ok)}/{len(api_ok)} cases; worst "
            f"{ms(api.get(api_worst, {}).get('p95'))} ({api_worst}) | "
            f"{verdict(all(api_ok) if api_ok else None)} |",
        ]
    )


def header(results: dict[str, Any]) -> str:
    ver, data = results["versions"], results.get("data", {})
    return f"""{TITLE}

Measured {results["started_at"]} UTC on {machine_text(results["machine"])};
{postgres_text(ver)},
Python {ver["python"]}, Django {ver.get("django")}, DRF {ver.get("djangorestframework")},
psycopg {ver.get("psycopg")}.
One run took {results["seconds"] / 60:.1f} min (loading {data.get("load_seconds", 0):.0f} s,
VACUUM ANALYZE {data.get("vacuum_analyze_seconds", 0):.0f} s).

Command (from the repository root):

    {results["command"]}"""


def _query_kind(sql: str) -> str:
    if sql.startswith("INSERT"):
        return "audit INSERT" if "audit_auditevent" in sql else "INSERT"
    if is_page_query(sql):
        return "page query"
    table = re.search(r'FROM "([a-z_]+)"', sql)
    return f"SELECT {table.group(1)}" if table else sql[:30]


def _decode_p50(db: dict[str, Any]) -> float | None:
    values = [c["decode"]["p50"] for c in db.values() if c.get("decode", {}).get("p50")]
    return statistics.median(values) if values else None


def first_case(results: dict[str, Any]) -> dict[str, Any]:
    cases: list[dict[str, Any]] = results["cases"]
    return next((c for c in cases if c["key"] == "first"), cases[0])


def what_was_measured(results: dict[str, Any]) -> str:
    args, data, fx = results["args"], results.get("data", {}), results.get("facts", {})
    apimeta, db = results.get("api", {}), _db(results)
    status = ", ".join(f"{k} {v:,}" for k, v in data.get("status_counts", {}).items())
    offers = ", ".join(f"{k} {v:,}" for k, v in data.get("offer_counts", {}).items())
    busy_hist = ", ".join(
        f"{k} {v:,}" for k, v in data.get("busy_offers", {}).items() if k != "claimed_live"
    )
    per_request = "; ".join(
        f"{_query_kind(q['sql'])} {q['seconds'] * 1000:.0f} ms"
        for q in first_case(results)["queries"]
    )
    return f"""### What was measured

- **Data** (seed {args["seed"]}; COPY with explicit ids in arrival order, then
  `VACUUM (ANALYZE)` as autovacuum would leave the tables): {data.get("studies", 0):,}
  studies over {args["days"]:g} days ({status}); {data.get("offers", 0):,} offers
  ({offers}). As the app leaves them: a claim holds the study's open offers (off
  the worklists until a release), a final or a cancellation withdraws them, and
  before that {args["history_withdrawn"]:.0%} of the others on historical studies were
  withdrawn (re-routing, declines, readers no longer eligible).
  Open offers: {fx.get("open_offers_total", 0):,}, of which
  {fx.get("open_on_offered_total", 0):,} on the
  {data.get("status_counts", {}).get("offered", 0):,} offered studies.
  {args["radiologists"]:,} radiologists, {args["facilities"]} facilities, 9 routing rules.
- **The busy radiologist** (`{data.get("busy_username", "?")}`): on the worklist of
  {fx.get("busy_open_on_offered", 0):,} offered studies; {fx.get("busy_offers_total", 0):,}
  offers in all, {fx.get("busy_open_total", 0):,} of them open (by offer and study
  state: {busy_hist}); {fx.get("busy_claimed", 0)} claimed cases.
- **Cases**: the API's default page size (50; the query fetches 51 to know whether
  there is a next page). "Next page" follows the `next` link (keyset `cursor`) the
  API returned for the first page; the deep page follows it page after page. The
  facility filter is the facility with most studies on the reader's worklist
  (id {results.get("filter_facility")}).
- **Database**: each case's request was sent through the app in-process (Django's
  test client: the same view, filter set and keyset pagination), and the SQL it sent
  for the page was captured. That exact SQL was then run {args["repeat"]} times per case
  (after {args["warmup"]} warm-up rounds; cases shuffled each round) over one psycopg
  connection set up as Django's (client-side binding, no prepared statements, so
  every run is parsed and planned), timing on the client from sending the query until
  the whole page has arrived (psycopg's `execute`). Turning the rows into Python
  values (`fetchall`, client CPU, part of the API figure) is not included: p50
  {ms2(_decode_p50(db))} per page. "Server" is planning + execution time reported by
  PostgreSQL (`EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON)`, {args["explain_repeat"]} runs
  per case): the same work without the round trip and the transfer of the page (EXPLAIN's
  row counting adds a little, so it can come out above the client figure). The plans
  below are the last of three warm `EXPLAIN (ANALYZE, BUFFERS)` runs.
  Load average before: {results.get("db", {}).get("loadavg_before")}.
- **API**: `GET {WORKLIST_PATH}` with a DRF token, {args["repeat"]} times per case (after
  {args["warmup"]} warm-up rounds, shuffled) over one keep-alive HTTP connection from this
  process (one request at a time) to {apimeta.get("server")}, `DEBUG` off, as behind
  a TLS proxy (`X-Forwarded-Proto: https`); time from sending the request to the
  last byte of the body. Each
  request authenticates the token, looks up the reader (twice), runs the page
  query, serialises 50 rows and writes one audit event per row (one INSERT).
  Reconnects: {apimeta.get("reconnects")}; new database sessions during the
  measurement: {apimeta.get("db_sessions_opened")} (the connection is kept,
  `CONN_MAX_AGE`); server CPU per request: {ms(apimeta.get("server_cpu_per_request"))};
  server errors: {apimeta.get("server_errors")}. Load average before:
  {apimeta.get("loadavg_before")}.
  The client, the server and PostgreSQL share the machine's {results["machine"]["cpus"]} cores.
- The SQL of one first-page request (in-process, Django's own timings, 1 ms
  resolution): {per_request}."""


def page_query(results: dict[str, Any]) -> str:
    sqls = "\n".join(indent(pretty_sql(q)) for q in first_case(results)["sqls"])
    return f"### The page query (first page, no filter), as the app sends it\n\n{sqls}"


def indexes(results: dict[str, Any]) -> str:
    fx = results.get("facts", {})
    sizes = ", ".join(f"{k} {v}" for k, v in fx.get("sizes", {}).items())
    return (
        "### Indexes on the two tables\n\n"
        + indent("\n".join(fx.get("indexes", [])))
        + f"\n\nSizes: {sizes}."
    )


def plans(results: dict[str, Any]) -> str:
    db = _db(results)
    parts = ["### Query plans (EXPLAIN (ANALYZE, BUFFERS))", ""]
    for c in results["cases"]:
        d, path = db.get(c["key"], {}), c["path"]
        parts.append(
            f"#### {c['label']}\n\n"
            f"`GET {path if len(path) < 160 else path[:157] + '...'}`, "
            f"{c['rows']} rows; planning {ms(d.get('planning'), 3)}, "
            f"execution {ms(d.get('execution'), 3)}\n\n{indent(d.get('plan', ''))}\n"
        )
    return "\n".join(parts)


def remarks(results: dict[str, Any]) -> list[str]:
    return [*results["notes"], *(f"WARNING: {w}" for w in results["warnings"])]


def render(results: dict[str, Any]) -> str:
    parts = [
        header(results),
        cases_table(results),
        targets_table(results),
        what_was_measured(results),
        page_query(results),
        indexes(results),
        plans(results),
    ]
    if remarks(results):
        parts.append("### Notes\n\n" + bullets(remarks(results)))
    return "\n\n".join(p.rstrip() for p in parts) + "\n"


def console(results: dict[str, Any]) -> str:
    text = cases_table(results) + "\n\n" + targets_table(results)
    warnings = results["warnings"]
    if warnings:
        text += "\n\n" + "\n".join(f"WARNING: {w}" for w in warnings)
    return text
