"""Prometheus metrics for operators, read from the database at scrape time.

A custom collector: nothing is counted in process memory, so every web worker
(gunicorn, several processes, several hosts) answers a scrape with the same
figures.  Each family is one small query on an index:

- ``telerad_queue_depth{tier,priority}`` (gauge): offered, unclaimed studies
  (live-queue partial index);
- ``telerad_studies_live{status,priority}`` (gauge): studies ready, offered,
  claimed or preliminary (same index);
- ``telerad_studies_overdue{priority}`` (gauge): live studies past their due time;
- ``telerad_studies_ingested_total`` (counter): studies received (rows are never
  deleted: a count only grows; the counters are exact and counted incrementally,
  see ``Tallies``);
- ``telerad_routing_decisions_total{outcome}`` (counter): routing steps;
- ``telerad_claims_total`` (counter): claims made (transitions into *claimed*,
  released ones included);
- ``telerad_sla_breaches_total`` (counter): SLA breach alerts raised (one per
  study that missed its due time);
- ``telerad_turnaround_seconds{priority}`` (gauge histogram): receipt to final of
  the studies finalised in the last ``METRICS_TURNAROUND_WINDOW_HOURS`` (a sliding
  window, hence a gauge histogram: its buckets may go down as studies leave it).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Count, Max, Q, QuerySet, Sum
from django.utils import timezone
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from alerts.models import Alert
from ingest.selectors import quarantine_counts_by_status, staging_state
from ingest.storage import default_storage
from network.models import Priority
from routing.models import TIERS, RoutingDecision
from studies.models import Study, StudyTransition
from studies.states import LIVE_STATES, StudyStatus
from turnaround.expressions import SecondsBetween

S = StudyStatus
# Turnaround buckets, in seconds: 15 min, 30 min, 1, 2, 4, 8, 24 and 48 hours.
TURNAROUND_BUCKETS = (900, 1800, 3600, 7200, 14400, 28800, 86400, 172800)


def _priority(value: int) -> str:
    return str(Priority(value).label).lower()


class DatabaseCollector(Collector):
    """Reads every figure from the database when Prometheus scrapes."""

    def __init__(self, *, now: dt.datetime | None = None) -> None:
        self._now = now  # fixed clock for tests; None: the time of each scrape

    def describe(self) -> list[Metric]:
        # Nothing to describe up front: registering must not query the database.
        return []

    def collect(self) -> Iterator[Metric]:
        now = self._now or timezone.now()
        yield from self._queue(now)
        yield from self._counters()
        yield self._turnaround(now)
        yield from self._ingest()

    def _ingest(self) -> Iterator[Metric]:
        quarantined = CounterMetricFamily(
            "telerad_ingest_quarantined",
            "DICOM objects refused and kept in quarantine, by the C-STORE status answered "
            "(orphan: stored files no row named, moved there by the orphan sweep).",
            labels=["status"],
        )
        for code, n in sorted(quarantine_counts_by_status().items()):
            # Files the orphan sweep found were never answered: labelled "orphan".
            quarantined.add_metric(["orphan" if code == 0xFFFF else f"0x{code:04X}"], n)
        yield quarantined
        count, oldest = staging_state(storage=default_storage())
        yield GaugeMetricFamily(
            "telerad_ingest_staged_files",
            "Files in the gateway's staging folder: transfers in progress and partial "
            "files of aborted ones (removed by the listener's staging sweep).",
            value=count,
        )
        yield GaugeMetricFamily(
            "telerad_ingest_staged_oldest_seconds",
            "Age of the oldest file in staging (stays below the sweep's limit when it runs).",
            value=oldest,
        )

    def _queue(self, now: dt.datetime) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "telerad_queue_depth",
            "Studies on offer and unclaimed, by routing tier and priority.",
            labels=["tier", "priority"],
        )
        counts = {
            (row["routing__tier"], row["priority"]): row["n"]
            for row in Study.objects.filter(status=S.OFFERED)
            .values("routing__tier", "priority")
            .annotate(n=Count("pk"))
            .order_by()
        }
        for tier, name in TIERS.items():
            for priority in Priority.values:
                depth.add_metric(
                    [name.lower(), _priority(priority)], counts.get((tier, priority), 0)
                )
        unrouted = sum(n for (tier, _), n in counts.items() if tier is None)
        if unrouted:
            depth.add_metric(["none", "all"], unrouted)
        yield depth

        live = GaugeMetricFamily(
            "telerad_studies_live",
            "Studies waiting for or held by a reader, by status and priority.",
            labels=["status", "priority"],
        )
        overdue = GaugeMetricFamily(
            "telerad_studies_overdue",
            "Live studies (ready to preliminary) past their due time, by priority.",
            labels=["priority"],
        )
        rows = (
            Study.objects.filter(status__in=sorted(LIVE_STATES))
            .values("status", "priority")
            .annotate(n=Count("pk"), late=Count("pk", filter=Q(sla_due_at__lte=now)))
            .order_by()
        )
        by_status = {(r["status"], r["priority"]): r for r in rows}
        late = dict.fromkeys(Priority.values, 0)
        for status in sorted(LIVE_STATES):
            for priority in Priority.values:
                row = by_status.get((status, priority))
                live.add_metric([status, _priority(priority)], row["n"] if row else 0)
                late[priority] += row["late"] if row else 0
        for priority, n in late.items():
            overdue.add_metric([_priority(priority)], n)
        yield live
        yield overdue

    def _counters(self) -> Iterator[Metric]:
        totals = TALLIES.read()
        yield CounterMetricFamily(
            "telerad_studies_ingested",
            "Studies received (first instance stored).",
            value=totals["studies"].get("", 0),
        )
        decisions = CounterMetricFamily(
            "telerad_routing_decisions",
            "Routing decisions: first offers, escalations, unroutable flags.",
            labels=["outcome"],
        )
        for outcome in RoutingDecision.Outcome.values:
            decisions.add_metric([outcome], totals["decisions"].get(outcome, 0))
        yield decisions
        yield CounterMetricFamily(
            "telerad_claims",
            "Claims made (each entry into the claimed state, later releases included).",
            value=totals["claims"].get("", 0),
        )
        yield CounterMetricFamily(
            "telerad_sla_breaches",
            "Studies that missed their turnaround target (one breach alert each).",
            value=totals["breaches"].get("", 0),
        )

    def _turnaround(self, now: dt.datetime) -> Metric:
        hours = settings.METRICS_TURNAROUND_WINDOW_HOURS
        family = GaugeHistogramMetricFamily(
            "telerad_turnaround_seconds",
            f"Receipt to final report of the studies finalised in the last {hours:g} hours.",
            labels=["priority"],
        )
        seconds = SecondsBetween("received_at", "finalized_at")
        aggregates = {
            f"le_{bound}": Count("pk", filter=Q(tat__lte=bound)) for bound in TURNAROUND_BUCKETS
        }
        rows: dict[int, dict[str, Any]] = {
            row["priority"]: dict(row)
            for row in Study.objects.filter(
                finalized_at__gt=now - dt.timedelta(hours=hours), finalized_at__lte=now
            )
            .alias(tat=seconds)
            .values("priority")
            .annotate(n=Count("pk"), total=Sum(seconds), **aggregates)
            .order_by()
        }
        for priority in Priority.values:
            row = rows.get(priority)
            buckets = [
                (str(float(bound)), row[f"le_{bound}"] if row else 0)
                for bound in TURNAROUND_BUCKETS
            ]
            buckets.append(("+Inf", row["n"] if row else 0))
            family.add_metric(
                [_priority(priority)], buckets, float(row["total"] or 0.0) if row else 0.0
            )
        return family


# --- Counters: counted once, then only what is new ----------------------------
@dataclass(frozen=True)
class CountedRows:
    """An append-only set of rows (never updated out of it, never deleted) to count,
    optionally per the value of one column."""

    key: str
    queryset: Callable[[], QuerySet[Any]]
    label: str | None = None


COUNTED = (
    CountedRows("studies", lambda: Study.objects.all()),
    CountedRows("decisions", lambda: RoutingDecision.objects.all(), label="outcome"),
    CountedRows("claims", lambda: StudyTransition.objects.filter(to_status=S.CLAIMED)),
    CountedRows(
        "breaches",
        lambda: Alert.objects.filter(kind=Alert.Kind.SLA, dedupe_key__endswith=":breach"),
    ),
)


@dataclass
class _Tally:
    settled_id: int = 0  # every row with id <= settled_id is in `settled`, for good
    settled: Counter[str] = field(default_factory=Counter)
    candidate_id: int | None = None  # the highest id seen at an earlier scrape
    candidate_xmax: int | None = None  # the next transaction id, a scrape later


class Tallies:
    """Exact counts of append-only rows without counting the whole table each scrape.

    Rows take increasing ids, so a count is the rows up to a *settled* id (counted
    once, remembered by this process) plus the few above it (one primary-key range
    each scrape).  An id is settled once every transaction that could still insert
    a row below it has finished: the highest id seen at one scrape becomes a
    candidate; the next scrape notes the next transaction id (``xmax`` of
    PostgreSQL's snapshot; a scrape later, so a transaction that took an id just
    before the first look has had its transaction id assigned); once the oldest
    running transaction (``xmin``) is past that, every row up to the candidate is
    committed or never will be.  Each process keeps its own tallies; all read the
    same committed rows, so every worker answers the same exact figure.  On other
    databases (SQLite: development) the rows are simply counted.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tallies: dict[str, _Tally] = {}

    def reset(self) -> None:
        with self._lock:
            self._tallies.clear()

    @staticmethod
    def _count(spec: CountedRows, **id_range: int) -> Counter[str]:
        rows = spec.queryset().filter(**id_range)
        if spec.label is None:
            return Counter({"": rows.count()})
        by_label = rows.values(spec.label).annotate(n=Count("pk")).order_by()
        return Counter(dict(by_label.values_list(spec.label, "n")))

    def read(self) -> dict[str, Counter[str]]:
        if connection.vendor != "postgresql":
            return {spec.key: self._count(spec) for spec in COUNTED}
        with self._lock, connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_snapshot_xmin(s)::text::bigint, pg_snapshot_xmax(s)::text::bigint"
                " FROM pg_current_snapshot() AS s"
            )
            xmin, xmax = cursor.fetchone()
            out = {}
            for spec in COUNTED:
                tally = self._tallies.setdefault(spec.key, _Tally())
                self._advance(spec, tally, xmin=xmin, xmax=xmax)
                out[spec.key] = tally.settled + self._count(spec, pk__gt=tally.settled_id)
            return out

    def _advance(self, spec: CountedRows, tally: _Tally, *, xmin: int, xmax: int) -> None:
        if tally.candidate_id is not None and tally.candidate_xmax is not None:
            if xmin >= tally.candidate_xmax:
                tally.settled += self._count(
                    spec, pk__gt=tally.settled_id, pk__lte=tally.candidate_id
                )
                tally.settled_id = tally.candidate_id
                tally.candidate_id = tally.candidate_xmax = None
        elif tally.candidate_id is not None:
            tally.candidate_xmax = xmax
        if tally.candidate_id is None:
            top = spec.queryset().model.objects.aggregate(top=Max("pk"))["top"] or 0
            if top > tally.settled_id:
                tally.candidate_id = top


TALLIES = Tallies()


def metrics_registry(*, now: dt.datetime | None = None) -> CollectorRegistry:
    """A registry holding only the database collector (no per-process metrics: they
    would differ between the workers a scrape may land on)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(now=now))
    return registry
