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
  deleted: a count only grows);
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
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db.models import Count, Q, Sum
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
        yield CounterMetricFamily(
            "telerad_studies_ingested",
            "Studies received (first instance stored).",
            value=Study.objects.count(),
        )
        decisions = CounterMetricFamily(
            "telerad_routing_decisions",
            "Routing decisions: first offers, escalations, unroutable flags.",
            labels=["outcome"],
        )
        counts = dict(
            RoutingDecision.objects.values("outcome")
            .annotate(n=Count("pk"))
            .order_by()
            .values_list("outcome", "n")
        )
        for outcome in RoutingDecision.Outcome.values:
            decisions.add_metric([outcome], counts.get(outcome, 0))
        yield decisions
        yield CounterMetricFamily(
            "telerad_claims",
            "Claims made (each entry into the claimed state, later releases included).",
            value=StudyTransition.objects.filter(to_status=S.CLAIMED).count(),
        )
        yield CounterMetricFamily(
            "telerad_sla_breaches",
            "Studies that missed their turnaround target (one breach alert each).",
            value=Alert.objects.filter(kind=Alert.Kind.SLA, dedupe_key__endswith=":breach").count(),
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


def metrics_registry(*, now: dt.datetime | None = None) -> CollectorRegistry:
    """A registry holding only the database collector (no per-process metrics: they
    would differ between the workers a scrape may land on)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(now=now))
    return registry
