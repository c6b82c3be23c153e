"""The routing section of BENCHMARKS.md, rendered from the results: one function
per part (the measures table, the decision rate and latency, the raw-SQL
reference, ready -> offered, the escalation sweep, the fault test, notes)."""

from __future__ import annotations

from typing import Any

from bench.host import machine_text, postgres_text
from bench.report import bullets, indent, table, verdict
from bench.routing.common import plan_time
from bench.stats import ms

TITLE = "## Routing (bench/routing)"

Results = dict[str, Any]


# --- the pieces several parts show ----------------------------------------------------


def lat_line(name: str, d: dict[str, Any]) -> str:
    lt = d.get("latency", {})
    return (
        f"- {name}: n={lt.get('n', 0)}, mean {ms(lt.get('mean'))}, p50 {ms(lt.get('p50'))}, "
        f"p95 {ms(lt.get('p95'))}, p99 {ms(lt.get('p99'))}, max {ms(lt.get('max'))}; "
        f"{(d.get('queries_per_decision') or 0):.1f} SQL queries per decision, "
        f"{(d.get('sql_share') or 0):.0%} of its wall time in SQL"
    )


def kind_table(d: dict[str, Any]) -> str:
    return table(
        "decision | studies | p50 | p99 | max | verdicts stored (mean)",
        "lrrrrr",
        (
            [kind, k["n"], ms(k["p50"]), ms(k["p99"]), ms(k["max"]), f"{k['verdicts_mean']:.0f}"]
            for kind, k in d.get("by_kind", {}).items()
        ),
    )


def top_queries(d: dict[str, Any]) -> str:
    return table(
        "share of SQL time | calls/decision | mean | query (normalized, cut)",
        "rrrl",
        (
            [
                f"{q['share']:.0%}",
                f"{q['calls_per_decision']:.1f}",
                f"{q['mean_ms']:.2f} ms",
                "`" + q["sql"].replace("|", "\\|") + "`",
            ]
            for q in d.get("top_queries", [])
        ),
    )


def profile_table(d: dict[str, Any]) -> str:
    text = (
        f"cProfile over {d.get('profiled', 0)} more decisions (cumulative time per "
        "decision; the profiler inflates Python-heavy parts):\n\n"
        + table(
            "part | ms per decision",
            "lr",
            (
                [label, f"{value:.1f}"]
                for label, value in d.get("profile_ms_per_decision", {}).items()
            ),
        )
    )
    if d.get("profile_top"):
        text += "\n\nFunctions with the most own time (per decision, same profile):\n\n" + table(
            "function | own ms | cumulative ms | calls",
            "lrrr",
            (
                [
                    f"`{f['function']}`",
                    f"{f['own_ms']:.2f}",
                    f"{f['cum_ms']:.2f}",
                    f"{f['calls']:.0f}",
                ]
                for f in d["profile_top"]
            ),
        )
    return text


def where_time_goes(d: dict[str, Any], captured: int, *, big: bool) -> str:
    """By kind of decision, the SQL time of one decision, the profile and the top plan."""
    with_big = ", with the big table" if big else ""
    if big:
        where = (
            "Where the SQL time of one decision goes with the big table\n"
            f"({captured} decisions captured):"
        )
        plan = (
            "Plan of the most expensive query of a decision with the big table (one\n"
            "captured instance, EXPLAIN ANALYZE):"
        )
    else:
        where = f"Where the SQL time of one decision goes ({captured} decisions captured):"
        plan = "Plan of the most expensive query of a decision (one captured instance):"
    return "\n\n".join(
        [
            f"By what was decided{with_big or ' (in-process timings)'}:",
            kind_table(d),
            where,
            top_queries(d),
            profile_table(d),
            plan,
            indent(d.get("top_plan", "")),
        ]
    )


# --- the parts ------------------------------------------------------------------------


def header(r: Results) -> str:
    args, m, v = r["args"], r["machine"], r.get("versions", {})
    net = r.get("network", {}).get("counts", {})
    net_line = ", ".join(f"{n:,} {what}" for what, n in net.items())
    return f"""{TITLE}

Measured {r["finished_at"]} UTC on {machine_text(m)};
{postgres_text(v)},
Redis {v.get("redis", "?")}, Python {v["python"]}, Django {v.get("django")},
Celery {v.get("celery")}.
One run took {(r["seconds"] - r.get("waited_seconds", 0)) / 60:.1f} min.

Command (from the repository root):

    {r["command"]}

Network (seed {args["seed"]}, one reading group): {net_line}.
Geography: 6 countries, 60 jurisdictions, 40 regions; tiers are geographic (0 = the
facility's region, 1 = its country, 2 = anywhere). 9 routing rules (8 by
modality/body part/description/priority, one default; one auto-assign)."""


def measures_table(r: Results) -> str:
    args = r["args"]
    rate, raw, lat = r.get("rate", {}), r.get("raw", {}), r.get("latency", {}).get("latency", {})
    sus, sweep, fault, big = (r.get(k, {}) for k in ("sustained", "sweep", "fault", "big"))
    app_rate, raw_rate = rate.get("rate_wall"), raw.get("rate")
    ratio = app_rate / raw_rate if app_rate and raw_rate else None
    ro = sus.get("ready_to_offered_observed", {})
    sd, si = sweep.get("due", {}), sweep.get("idle", {})
    batch, noop = rate.get("batch_runtime", {}), rate.get("noop_runtime", {})
    studies = f"{big.get('studies', 0):,} studies"

    def below(value: float | None, limit: float, *, strict: bool = False) -> str:
        if value is None:
            return verdict(None)
        return verdict(value < limit if strict else value <= limit)

    def passed(key: str) -> str:
        return ("pass" if fault.get(key) else "FAIL") if fault else "-"

    rows = [
        [
            "Decisions/s, one worker process (`--pool=solo`), `routing.route_studies` tasks",
            f"{app_rate:.1f}/s" if app_rate else "-",
            f">= 50% of raw SQL ({0.5 * raw_rate:.0f}/s)" if raw_rate else ">= 50% of raw SQL",
            f"{ratio:.1%} of raw SQL" if ratio else "-",
            verdict(ratio >= 0.5 if ratio else None),
        ],
        [
            "Raw-SQL eligibility query (reference), one connection, sequential",
            f"{raw_rate:.0f}/s" if raw_rate else "-",
            "reference (issue: ~775/s for 300 readers)",
            f"agrees with the app on {raw.get('agree')}/{raw.get('studies')} studies",
            "",
        ],
        [
            "Routing task runtime, p50 / p99 (worker log): tasks that routed a batch",
            f"{ms(batch.get('p50'))} / {ms(batch.get('p99'))}",
            "(a task is a batch: one decision is the next rows)",
            f"{batch.get('n', 0)} batches of {rate.get('batch_size_mean') or 0:.1f} studies on "
            f"average; {ms(rate.get('per_decision_in_batch'))} of batch time per decision; "
            f"{noop.get('n', 0)} messages that routed nothing, p50 {ms(noop.get('p50'))}",
            "",
        ],
        [
            "One decision, p50 / p99 (`study_route` in-process, perf_counter)",
            f"{ms(lat.get('p50'))} / {ms(lat.get('p99'))}",
            "p99 < 25 ms",
            f"{lat.get('n', 0)} studies",
            below(lat.get("p99"), 0.025, strict=True),
        ],
        [
            f"Ready -> offered, p50 / p99, {args['sustained_rate']:g} studies/s sustained",
            f"{ms(ro.get('p50'))} / {ms(ro.get('p99'))}",
            "p99 < 1 s",
            f"max {ms(ro.get('max'))}; {sus.get('counts')}",
            below(ro.get("p99"), 1.0, strict=True),
        ],
        [
            f"Escalation sweep, p50 / p95, {studies}, {sweep.get('due_per_sweep')} due per sweep",
            f"{ms(sd.get('p50'), 2)} / {ms(sd.get('p95'), 2)}",
            "p95 <= 5 ms",
            "",
            below(sd.get("p95"), 0.005),
        ],
        [
            f"Escalation sweep, p50 / p95, {studies}, nothing due",
            f"{ms(si.get('p50'), 2)} / {ms(si.get('p95'), 2)}",
            "p95 <= 5 ms",
            "",
            below(si.get("p95"), 0.005),
        ],
        [
            "Due-timer selection query alone (EXPLAIN ANALYZE, partial index)",
            f"{plan_time(sweep.get('plans', {}).get('due timers (routing_sweep)', ''))} ms",
            "(part of the sweep)",
            "",
            "",
        ],
        [
            "Fault test: kill -9 a worker mid-run, two sweepers at once",
            passed("passed"),
            "every study routed; escalations and alerts exactly once",
            fault.get("summary", ""),
            verdict(fault.get("passed")),
        ],
        [
            "Same run, readers going off shift meanwhile: both sweepers withdraw their "
            "offers and re-route the studies left with nobody",
            passed("leavers_passed"),
            "(added here) offers withdrawn and studies re-routed exactly once, no sweep fails",
            "; ".join(fault.get("leaver_problems", [])) or "no problem seen",
            verdict(fault.get("leavers_passed")),
        ],
    ]
    return table("measure | result | target | detail | verdict", "lllll", rows)


def decision_rate(r: Results) -> str:
    args, rate, lat = r["args"], r.get("rate", {}), r.get("latency", {})
    tr = rate.get("task_runtime", {})
    outcomes = ", ".join(f"{k}: {v}" for k, v in rate.get("outcomes", {}).items())
    return f"""### Decision rate and latency (task path)

- {rate.get("studies")} READY studies (COPY), enqueued as the ready sweep enqueues
  them (`teleradiology.queue.enqueue_in_batches`: most urgent first, one
  `routing.route_studies` message per `ROUTING_BATCH_SIZE={rate.get("batch_size")}`
  studies, so {rate.get("messages")} messages) to a queue of their own before the
  worker started (enqueue took {rate.get("enqueue_seconds", 0):.1f} s); one
  `celery worker --pool=solo` on it (a task routes the studies it names, topped up
  with other waiting ones to the batch size).
  decisions/s = studies / wall seconds from the worker's "ready" line until every
  study is decided **and** all {rate.get("messages")} messages are consumed
  ({rate.get("tasks_drained")} seen in the worker log): {rate.get("decided")} in
  {rate.get("wall_seconds", 0):.1f} s = {(rate.get("rate_wall") or 0):.1f}/s.
  The last routing row was written after {rate.get("wall_seconds_decided", 0):.1f} s
  ({(rate.get("rate_decided") or 0):.1f}/s; from the first to the last decision time
  stamp: {(rate.get("rate_db_span") or 0):.1f}/s).
  Machine CPU busy meanwhile: {(rate.get("cpu_busy") or 0):.0%} of 2 cores (the worker
  process itself: {(rate.get("worker_cpu_share") or 0):.0%} of one core); new PostgreSQL
  sessions opened meanwhile: {rate.get("pg_sessions")}.
- Task runtime (worker log, "succeeded in"; a batch is one task, a message whose study
  a batch routed is another): n={tr.get("n")}, p50 {ms(tr.get("p50"))},
  p95 {ms(tr.get("p95"))}, p99 {ms(tr.get("p99"))}, max {ms(tr.get("max"))}; mean of the
  first tenth of the tasks {ms(rate.get("runtime_first_tenth"))}, of the last tenth
  {ms(rate.get("runtime_last_tenth"))}.
- Outcomes: {outcomes}. Offered to {rate.get("offered_to_mean", 0):.1f} readers on average;
  each decision stores {rate.get("verdicts_per_decision_mean", 0):.0f} verdicts on average
  (max {rate.get("verdicts_per_decision_max")}),
  {rate.get("verdicts_bytes_mean", 0) / 1024:.1f} KiB of JSON per decision
  (max {rate.get("verdicts_bytes_max", 0) / 1024:.0f} KiB),
  {rate.get("verdicts_bytes_total", 0) / 2**20:.0f} MiB for this phase.
  Most common unroutable reasons: {rate.get("unroutable_reasons")}.
- Worker log errors/retries: {rate.get("worker_log_problems", {}).get("count")}.
{lat_line("In-process `study_route` (same code, no Celery), fresh studies", lat)}

{where_time_goes(lat, args["capture"], big=False)}"""


def raw_reference(r: Results) -> str:
    rate, raw = r.get("rate", {}), r.get("raw", {})
    app_rate, raw_rate = rate.get("rate_wall"), raw.get("rate")
    ratio = app_rate / raw_rate if app_rate and raw_rate else None
    differences = f" (differences: {raw.get('mismatch_examples')})" if raw.get("disagree") else ""
    return f"""### Raw-SQL reference

One hand-written query per study (`bench/routing/rawsql.py`: the same hard
filters and ranking as `routing.eligibility`, tier by geography, rule chosen by
the app's pure `first_match`), psycopg 3, prepared, one connection, sequential,
for the same {raw.get("studies")} studies at each study's decision time:
{(raw_rate or 0):.0f} studies/s. Its result (eligible readers at the nearest tier,
in rank order) is identical to the app's offer list for {raw.get("agree")} of
{raw.get("studies")} studies{differences}.
The app's rate is {ratio or 0:.1%} of it. The reference does only the read; the
app also writes the offers, the state transition, the audit row and the
decision record."""


def ready_to_offered(r: Results) -> str:
    args, sus = r["args"], r.get("sustained", {})
    ro, stamps = sus.get("ready_to_offered_observed", {}), sus.get("ready_to_offered_stamps", {})
    quiet_end, quiet_ready = sus.get("quiet_end_to_offered", {}), sus.get("quiet_end_to_ready", {})
    route, mark = sus.get("route_runtime", {}), sus.get("mark_ready_runtime", {})
    return f"""### Ready -> offered at {args["sustained_rate"]:g} studies/s

- {sus.get("studies")} studies inserted as `receiving` with `last_instance_at` = now,
  {(sus.get("insert_rate") or 0):.1f}/s for {args["sustained_seconds"]:g} s; a
  `celery worker --concurrency={sus.get("concurrency")}` (prefork, as in the
  Procfile) and `celery beat` running with `STUDY_QUIET_SECONDS={sus.get("quiet_seconds")}`,
  `STUDY_READY_SWEEP_SECONDS={sus.get("ready_sweep_seconds")}` (other beat
  schedules as configured). The study becomes ready by the real
  `ingest.studies_mark_ready` sweep and is routed by the `routing.route_study`
  task it enqueues.
- "offered on a worklist" = the routing commit seen by a poller (every
  {args["poll_interval"] * 1000:.0f} ms, so up to that much late):
  ready -> offered p50 {ms(ro.get("p50"))}, p95 {ms(ro.get("p95"))}, p99 {ms(ro.get("p99"))},
  max {ms(ro.get("max"))} (n={ro.get("n")}).
- From the app's own stamps (`offered_at - ready_at`, both taken at the start of
  their transactions, so without the routing task's own run time):
  p50 {ms(stamps.get("p50"))}, p99
  {ms(stamps.get("p99"))}.
- From the end of the quiet period (`last_instance_at + quiet`) to offered,
  i.e. including the ready sweep's delay: p50 {ms(quiet_end.get("p50"))},
  p99 {ms(quiet_end.get("p99"))}; from the end of the quiet period to `ready_at`
  alone: p50 {ms(quiet_ready.get("p50"))}, p99
  {ms(quiet_ready.get("p99"))}.
- Machine CPU busy while studies arrived: {(sus.get("cpu_busy") or 0):.0%} of 2 cores.
  Worker task runtimes: `routing.route_study` p50
  {ms(route.get("p50"))}, p99 {ms(route.get("p99"))}
  (n={route.get("n")}); `ingest.studies_mark_ready` p50
  {ms(mark.get("p50"))}, p99
  {ms(mark.get("p99"))}
  (n={mark.get("n")}).
  Both run in the same two worker processes, from the same `celery` queue.
- Outcomes: {sus.get("counts")}; worker log errors
  {sus.get("worker_log_problems", {}).get("count")}."""


def level_table(sweep: dict[str, Any]) -> str:
    return table(
        "open worklist (offered studies) | open offers on them | escalation sweep p50 "
        "| escalation sweep p95 | offer-eligibility sweep p50 (its own task) "
        "| its query alone (EXPLAIN ANALYZE)",
        "rrrrrr",
        (
            [
                level,
                f"{d['open_offers']:,}",
                ms(d["idle"]["p50"], 2),
                ms(d["idle"]["p95"], 2),
                ms(d.get("withdraw", {}).get("p50"), 2),
                f"{d['withdraw_query_ms']} ms",
            ]
            for level, d in sorted(sweep.get("by_level", {}).items(), key=lambda kv: int(kv[0]))
        ),
    )


def escalation_sweep(r: Results) -> str:
    args, sweep, big = r["args"], r.get("sweep", {}), r.get("big", {})
    lat_big, raw_big = r.get("latency_big", {}), r.get("raw_big", {})
    nojit, raw_nojit = r.get("latency_big_nojit", {}).get("latency", {}), r.get("raw_big_nojit", {})
    sd, si, due_nojit = sweep.get("due", {}), sweep.get("idle", {}), sweep.get("due_nojit", {})
    due = sweep.get("due_per_sweep")
    plans = "\n\n".join(
        f"{name}:\n\n" + indent(plan) for name, plan in sweep.get("plans", {}).items()
    )
    return f"""### Escalation sweep with {big.get("studies", 0):,} studies

- Table: {big.get("status_counts")}; {big.get("filler", 0):,} historical studies
  bulk-loaded (COPY, {big.get("load_seconds", 0):.0f} s) with a `StudyRouting` row each
  (no timer) and {args["offers_per_study"]} offers each, withdrawn as the app withdraws
  them at the final ({big.get("offers", 0):,} offers, {big.get("open_offers", 0):,} open).
  No RoutingDecision/StudyTransition/audit rows for them (the sweep does not read those).
  Sizes: {big.get("sizes")}.
- Open worklist: {max(args["worklist_levels"])} fresh studies routed by the app in-process
  just before the history was loaded ({big.get("open_worklist")}); the first
  {sweep.get("open_worklist")} offered ones
  ({sweep.get("open_offers", 0):,} open offers) are the open worklist for the main
  measurement, the others set aside (marked final) meanwhile. 1,000,000 studies
  over 180 days is ~5,600 a day, ~230 an hour: {sweep.get("open_worklist")} waiting is
  a backlog of about two hours. Timers are pushed 1 h out, then before each timed
  sweep {due} of them are made due (outside the timing).
- `routing.services.routing_sweep(now=...)` in-process, {args["sweeps"]} times with
  nothing due, {args["due_sweeps"]} times with {due} due.
  Nothing due: p50 {ms(si.get("p50"), 2)}, p95 {ms(si.get("p95"), 2)},
  max {ms(si.get("max"), 2)};
  {due} due: p50 {ms(sd.get("p50"), 2)}, p95 {ms(sd.get("p95"), 2)},
  max {ms(sd.get("max"), 2)}. What the sweeps did: idle {sweep.get("acted_idle")},
  with due {sweep.get("acted_due")}.
{lat_line("Decision latency with this table (in-process `study_route`)", lat_big)}
- Raw-SQL reference with this table: {(raw_big.get("rate") or 0):.0f} studies/s
  (agrees on {raw_big.get("agree")}/{raw_big.get("studies")}).
- Diagnostic, not a target figure (the server default is `jit = on`): the same
  with `SET jit = off` for the session: one decision p50
  {ms(nojit.get("p50"))}, p99 {ms(nojit.get("p99"))} (n={nojit.get("n")}); raw SQL
  {(raw_nojit.get("rate") or 0):.0f} studies/s; sweep with {due} due
  p50 {ms(due_nojit.get("p50"), 2)}, p95
  {ms(due_nojit.get("p95"), 2)} (n={due_nojit.get("n")}).

Idle sweep time against the size of the open worklist. The offer-eligibility
sweep (`offers_withdraw_ineligible`: every open offer of every offered study
checked against shifts and credentials) is a beat task of its own, every
`OFFER_ELIGIBILITY_SWEEP_SECONDS` (30 s by default), not part of the escalation
sweep; it is timed on its own here (20 runs) and its plan is below:

{level_table(sweep)}

{where_time_goes(lat_big, args["big_capture"], big=True)}

Query plans (EXPLAIN ANALYZE, BUFFERS; {due} to 3 timers due):

{plans}"""


def redelivery_text(fault: dict[str, Any]) -> str:
    red = fault.get("redelivery", {})
    tasks = red.get("tasks", {})
    if not fault.get("in_flight_at_kill"):
        return "nothing was in flight"
    if not tasks:
        return f"not within {red.get('waited_up_to_s', 0):.0f} s of the kill"
    return "; ".join(
        f"study {sid} after {t['seconds_after_kill']:.0f} s, and the task returned "
        f"{t['result']} (the study had already been routed)"
        if t["result"] == "None"
        else f"study {sid} after {t['seconds_after_kill']:.0f} s, task returned {t['result']}"
        for sid, t in tasks.items()
    )


def fault_lines(r: Results) -> list[str]:
    args, fault = r["args"], r.get("fault", {})
    if not fault:
        return []
    leavers, linger = fault.get("leavers", {}), args["fault_linger"]
    sweepers = "; ".join(
        f"sweeper {s['sweeper']}: {s['sweeps']} sweeps, {s['escalated']} escalations, "
        f"{s['routed_late']} routed late, {s['offers_withdrawn']} offers withdrawn, "
        f"{s['error_count']} errors"
        for s in fault.get("sweepers", [])
    )
    lines = [
        f"{fault.get('studies')} ready studies enqueued to one solo worker "
        f"(`CELERY_VISIBILITY_TIMEOUT={fault.get('visibility_timeout')}` instead of the "
        "default 600, so that the killed worker's unacknowledged task can come back "
        "within the test). Routing rules' longest tier waits were set to "
        f"{fault.get('tier_wait_seconds')} s and their floor to 1 s (auto-assign accept "
        f"timeout {fault.get('accept_timeout_seconds')} s) for the test so that every study "
        "goes through all its escalations (the SLA's widening times are minutes away, so "
        "each tier waits the longest wait), then restored.",
        f"Worker A was killed (`kill -9` on its process group) with "
        f"{fault.get('decided_at_kill')} studies decided; task in flight: study "
        f"{fault.get('in_flight_at_kill')}. Its message came back to worker B: "
        f"{redelivery_text(fault)}.",
        f"Worker B and two sweeper processes (each `routing_sweep()` in a loop, "
        f"{args['sweeper_interval']:g} s apart) started together; first sweeps "
        f"{fault.get('sweepers_start_skew_ms', 0):.0f} ms apart. {sweepers}.",
        f"{args['fault_leave_after']:g} s after the sweepers started, the shifts of the "
        f"{leavers.get('readers')} readers holding the open offers of "
        f"{leavers.get('studies')} offered studies were ended (so those studies have nobody "
        f"left): {fault.get('offers_withdrawn_stale')} offers were withdrawn as 'reader no "
        f"longer eligible', {fault.get('leaver_offers_left_open')} left open; "
        f"{fault.get('rerouted_studies')} studies re-routed ({fault.get('reroutes')} "
        f"re-route transitions); re-routed twice within 2 s: "
        f"{len(fault.get('double_reroutes', []))}. (The sweepers' own counts of withdrawn "
        "offers above count an offer once per sweeper that saw it, and a sweep that "
        "failed is not counted.) The shifts were restored after the test.",
        f"Settled (every study routed and at the end of its chain: offered at the widest "
        "tier, where its timer judges that tier again, or flagged unroutable) after "
        f"{fault.get('settle_seconds', 0):.0f} s; the sweepers kept running until the "
        f"lost task came back (or {args['redelivery_wait']:g} s after the kill) and "
        f"{linger:g} s more; in the last {linger:g} s {fault.get('decisions_during_linger')} "
        "more routing decisions were made.",
        f"Result: {fault.get('summary')}. Final study states: {fault.get('status_counts')}.",
        "Checks: every study has a routing decision and is offered or flagged "
        "unroutable; no study has two open offers to one reader; every routing step "
        "came no earlier than the timer the previous step set (a step run twice would "
        "come early); escalations widen the tier (at the widest tier, a step offers it "
        "to readers newly eligible there); one unroutable alert per unroutable "
        "episode; the study in flight at the kill was routed exactly once; no offer "
        "of a reader who went off shift left open; no study re-routed twice; "
        f"worker/sweeper log errors: A {fault.get('worker_a_log_problems', {}).get('count')}, "
        f"B {fault.get('worker_b_log_problems', {}).get('count')}.",
    ]
    if fault.get("problems"):
        lines.append("**Problems:** " + "; ".join(fault["problems"]))
    if fault.get("leaver_problems"):
        lines.append(
            "**Problems with readers going off shift:** " + "; ".join(fault["leaver_problems"])
        )
    return lines


def render(r: Results) -> str:
    notes = [*r["notes"], *r["warnings"]]
    parts = [
        header(r),
        measures_table(r),
        decision_rate(r),
        raw_reference(r),
        ready_to_offered(r),
        escalation_sweep(r),
        "### Fault test\n\n" + bullets(fault_lines(r)),
        "### Notes\n\n" + bullets(notes),
    ]
    return "\n\n".join(parts).rstrip() + "\n"


def console(r: Results) -> str:
    return measures_table(r) + "\n\n" + bullets([*r["notes"], *r["warnings"]])
