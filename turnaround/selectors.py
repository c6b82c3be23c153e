"""Reads for turnaround: a study's timeline, facility figures and SLA threshold crossings.

Who may see what is decided here:
- a study's timeline: exactly who may see the study (``access.selectors``);
- facility figures: facility staff their own facilities, group admins their
  groups' facilities, superusers all.  Readers see no facility figures.

Definitions (the API documents the same):
- the measures use the study's stamped times, which the state machine sets on
  every entry into a state (the latest entry wins): ready→claimed is the wait
  from the (latest) ready to the claim that holds or finished the study,
  claimed→final the reading time of that claim, received→final the whole
  turnaround.  ready→claimed counts only studies claimed now or since
  reported (a released claim does not count);
- percentiles interpolate linearly between the two nearest ranks, as
  PostgreSQL's ``percentile_cont`` and numpy's default do: for n sorted values
  v1..vn the p-th percentile is at rank r = 1 + (n - 1)·p, so
  v⌊r⌋ + (r - ⌊r⌋)·(v⌊r⌋+1 - v⌊r⌋).  The median of an even count is the mean of
  the two middle values;
- within target: finalised at or before ``Study.sla_due_at`` (receipt plus the
  facility's contracted minutes for the study's priority).  The denominator is
  every study whose outcome is known: finalised, or still open past its due
  time (an open overdue study is a miss, not left out).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from django.db import connection
from django.db.models import (
    Case,
    Count,
    DateTimeField,
    Exists,
    F,
    FloatField,
    OuterRef,
    Q,
    QuerySet,
    Value,
    When,
)
from django.db.models.functions import Coalesce, ExtractHour, TruncDate
from rest_framework.exceptions import NotFound

from access.selectors import study_get_visible
from alerts.models import Alert
from network.models import Facility, Priority
from network.selectors import AnyUser, facilities_staffed, reading_groups_administered
from reporting.models import Addendum
from reporting.selectors import StudyDelivery, study_deliveries
from routing.models import RoutingDecision
from studies.models import Study, StudyTransition
from studies.states import StudyStatus
from turnaround.expressions import SecondsBetween

S = StudyStatus
GROUP_BY_CHOICES = ("priority", "modality", "day")
# Studies whose claim holds or finished them: their claimed_at is the live claim.
CLAIM_HELD = (S.CLAIMED, S.PRELIMINARY, S.FINAL)
MEASURES = ("received_to_final", "ready_to_claimed", "claimed_to_final")
PERCENTILES_PER_MILLE = {"median": 500, "p90": 900}
PERCENTILE_DEFINITION = (
    "Linear interpolation between the nearest ranks (as percentile_cont): "
    "rank 1 + (n - 1) * p over the sorted values."
)


def _is_superuser(user: AnyUser) -> bool:
    return bool(getattr(user, "is_superuser", False)) and user.is_active


# --- Timeline ---------------------------------------------------------------
def _seconds(start: dt.datetime | None, end: dt.datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


@dataclass(frozen=True)
class StudyTimeline:
    study: Study
    first_offered_at: dt.datetime | None
    events: list[dict[str, Any]]
    escalations: list[dict[str, Any]]
    addenda: list[dict[str, Any]]
    measures: dict[str, float | None] = field(default_factory=dict)
    within_target: bool | None = None


def study_timeline(*, user: AnyUser, study_id: int) -> StudyTimeline:
    """A study's life in order (transitions, escalations, addenda) and its measures;
    404 unless ``user`` may see the study."""
    study = study_get_visible(user=user, study_id=study_id)
    events: list[dict[str, Any]] = [
        {"at": study.received_at, "event": "received", "detail": "first instance received"}
    ]
    first_offered_at = None
    for t in StudyTransition.objects.filter(study=study).order_by("at", "id"):
        if t.to_status == S.OFFERED and first_offered_at is None:
            first_offered_at = t.at
        events.append(
            {
                "at": t.at,
                "event": t.to_status,
                "detail": f"{t.from_status} → {t.to_status}"
                + (f": {t.reason}" if t.reason else ""),
            }
        )
    escalations = []
    for d in RoutingDecision.objects.filter(
        study=study,
        outcome__in=[RoutingDecision.Outcome.ESCALATED, RoutingDecision.Outcome.UNROUTABLE],
    ).order_by("created_at", "id"):
        if d.outcome == RoutingDecision.Outcome.ESCALATED:
            escalations.append({"at": d.created_at, "tier": d.tier, "reason": d.reason})
        events.append(
            {
                "at": d.created_at,
                "event": d.outcome,
                "detail": f"tier {d.tier}" + (f": {d.reason}" if d.reason else ""),
            }
        )
    addenda = [
        {"number": a.number, "signed_at": a.signed_at}
        for a in Addendum.objects.filter(report__study=study).order_by("number")
    ]
    events.extend(
        {"at": a["signed_at"], "event": "addendum", "detail": f"addendum {a['number']}"}
        for a in addenda
    )
    # Stable: same-instant events keep their recorded order.
    events.sort(key=lambda e: e["at"])
    claim_held = study.status in CLAIM_HELD
    measures = {
        "received_to_final": _seconds(study.received_at, study.finalized_at),
        "ready_to_claimed": _seconds(study.ready_at, study.claimed_at) if claim_held else None,
        "claimed_to_final": _seconds(study.claimed_at, study.finalized_at),
    }
    within = None
    if study.finalized_at is not None:
        within = study.finalized_at <= study.sla_due_at
    return StudyTimeline(
        study=study,
        first_offered_at=first_offered_at,
        events=events,
        escalations=escalations,
        addenda=addenda,
        measures=measures,
        within_target=within,
    )


# --- Facility figures -------------------------------------------------------
def turnaround_facilities(*, user: AnyUser) -> QuerySet[Facility]:
    """Facilities whose figures ``user`` may see: staff their own, admins their groups'."""
    if not user.is_authenticated or not user.is_active:
        return Facility.objects.none()
    if _is_superuser(user):
        return Facility.objects.all()
    return Facility.objects.filter(
        Q(reading_group__in=reading_groups_administered(user=user))
        | Q(pk__in=facilities_staffed(user=user).values("pk"))
    )


@dataclass(frozen=True)
class StudyScope:
    facility: Facility | None
    tz: dt.tzinfo
    studies: QuerySet[Study]


def scoped_studies(
    *,
    user: AnyUser,
    date_from: dt.date,
    date_to: dt.date,
    facility_id: int | None = None,
    priority: int | None = None,
) -> StudyScope:
    """Studies of the facilities ``user`` may see (or of the one asked for: a 404 when
    it is not theirs, so its existence does not leak), received from ``date_from`` to
    ``date_to`` inclusive, days in the facility's zone (UTC across facilities)."""
    facilities = turnaround_facilities(user=user)
    facility = None
    tz: dt.tzinfo = dt.UTC
    if facility_id is not None:
        facility = facilities.filter(pk=facility_id).first()
        if facility is None:
            raise NotFound("No such facility.")
        tz = ZoneInfo(facility.timezone)
        studies = Study.objects.filter(facility=facility)
    else:
        studies = Study.objects.filter(facility__in=facilities.values("pk"))
    start = dt.datetime.combine(date_from, dt.time(), tzinfo=tz)
    end = dt.datetime.combine(date_to + dt.timedelta(days=1), dt.time(), tzinfo=tz)
    # Priors retrieved from a PACS are kept for comparison, never read: not turnaround.
    studies = studies.filter(received_at__gte=start, received_at__lt=end, is_prior=False)
    if priority is not None:
        studies = studies.filter(priority=priority)
    return StudyScope(facility=facility, tz=tz, studies=studies)


@dataclass(frozen=True)
class TurnaroundSummary:
    facility: Facility | None
    timezone: str
    date_from: dt.date
    date_to: dt.date
    priority: int | None
    group_by: str
    rows: list[dict[str, Any]]


def _group_key(group_by: str, tz: dt.tzinfo) -> F | TruncDate:
    if group_by == "priority":
        return F("priority")
    if group_by == "modality":
        return F("modality")
    return TruncDate("received_at", tzinfo=tz)


def _key(value: Any) -> Any:
    """One spelling of a group key across the ORM and raw rows (SQLite days are text)."""
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _label(group_by: str, key: Any) -> str:
    if group_by == "priority" and key is not None:
        return str(Priority(key).label)
    return str(key) if key not in (None, "") else "(none)"


def _percentile_sql(base_sql: str) -> str:
    """Per group and measure: n, median and 90th percentile, by ROW_NUMBER and
    COUNT over the group's partition (see the module docstring).  Plain SQL that
    PostgreSQL and SQLite both run; ``%%`` is a literal modulo under params."""
    columns = []
    for name, pm in PERCENTILES_PER_MILLE.items():
        # (n - 1)·p in thousandths: integer part picks the lower rank, the
        # remainder weighs the next one.
        pos = f"((n - 1) * {pm})"
        columns.append(
            f"SUM(CASE WHEN rn = 1 + {pos} / 1000 THEN v * (1000 - {pos} %% 1000) / 1000.0"
            f" WHEN rn = 2 + {pos} / 1000 THEN v * ({pos} %% 1000) / 1000.0"
            f" ELSE 0 END) AS {name}"
        )
    unions = " UNION ALL ".join(
        # Names from MEASURES (constants), values only ever as parameters.
        f"SELECT g, '{m}' AS m, {m} AS v FROM base WHERE {m} IS NOT NULL"  # noqa: S608
        for m in MEASURES
    )
    # base_sql is the ORM's compiled query, with its values left as parameters.
    return (
        f"WITH base AS ({base_sql}), vals AS ({unions}), ranked AS ("  # noqa: S608
        " SELECT g, m, v, ROW_NUMBER() OVER (PARTITION BY g, m ORDER BY v) AS rn,"
        " COUNT(*) OVER (PARTITION BY g, m) AS n FROM vals)"
        f" SELECT g, m, MAX(n), {', '.join(columns)} FROM ranked GROUP BY g, m"
    )


def turnaround_summary(
    *,
    user: AnyUser,
    date_from: dt.date,
    date_to: dt.date,
    now: dt.datetime,
    facility_id: int | None = None,
    priority: int | None = None,
    group_by: str = "priority",
) -> TurnaroundSummary:
    """Turnaround per group for studies received from ``date_from`` to ``date_to``
    (inclusive days), computed in the database; only facilities ``user`` may see,
    and a facility outside them is a 404 (its existence does not leak)."""
    if group_by not in GROUP_BY_CHOICES:
        raise ValueError(group_by)
    scope = scoped_studies(
        user=user, facility_id=facility_id, date_from=date_from, date_to=date_to, priority=priority
    )
    facility, tz = scope.facility, scope.tz
    studies = scope.studies.exclude(status=S.CANCELLED)
    key = _group_key(group_by, tz)

    counts = (
        studies.annotate(g=key)
        .values("g")
        .annotate(
            studies=Count("pk"),
            finalized=Count("pk", filter=Q(finalized_at__isnull=False)),
            due=Count("pk", filter=Q(finalized_at__isnull=False) | Q(sla_due_at__lte=now)),
            met=Count(
                "pk", filter=Q(finalized_at__isnull=False, finalized_at__lte=F("sla_due_at"))
            ),
        )
        .order_by("g")
    )
    rows: dict[Any, dict[str, Any]] = {}
    for c in counts:
        k = _key(c["g"])
        row: dict[str, Any] = {
            "key": k,
            "name": _label(group_by, k),
            "studies": c["studies"],
            "finalized": c["finalized"],
            "within_target_met": c["met"],
            "within_target_due": c["due"],
            "within_target_share": round(c["met"] / c["due"], 4) if c["due"] else None,
        }
        for m in MEASURES:
            row[f"{m}_count"] = 0
            for p in PERCENTILES_PER_MILLE:
                row[f"{m}_{p}_seconds"] = None
        rows[k] = row

    if rows:
        base = (
            studies.annotate(
                g=key,
                received_to_final=SecondsBetween("received_at", "finalized_at"),
                ready_to_claimed=Case(
                    When(status__in=CLAIM_HELD, then=SecondsBetween("ready_at", "claimed_at")),
                    default=None,
                    output_field=FloatField(),
                ),
                claimed_to_final=SecondsBetween("claimed_at", "finalized_at"),
            )
            .values("g", *MEASURES)
            .order_by()
        )
        base_sql, params = base.query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(_percentile_sql(base_sql), params)
            for g, m, n, *values in cursor.fetchall():
                found = rows.get(_key(g))
                if found is None:  # not possible: the same studies, grouped the same way
                    continue
                found[f"{m}_count"] = int(n)
                for p, value in zip(PERCENTILES_PER_MILLE, values, strict=True):
                    found[f"{m}_{p}_seconds"] = round(float(value), 3)
    return TurnaroundSummary(
        facility=facility,
        timezone=str(tz),
        date_from=date_from,
        date_to=date_to,
        priority=priority,
        group_by=group_by,
        rows=list(rows.values()),
    )


# --- Facility portal --------------------------------------------------------
def portal_studies(*, scope: StudyScope, now: dt.datetime) -> QuerySet[Study]:
    """The scope's studies, newest first, each with ``wait_seconds``: receipt to final
    for a finished study, receipt to ``now`` for an open one (to its cancellation for
    a cancelled one), computed in the database."""
    now_value = Value(now, output_field=DateTimeField())
    return (
        scope.studies.annotate(
            wait_seconds=SecondsBetween(
                "received_at", Coalesce("finalized_at", "cancelled_at", now_value)
            )
        )
        .select_related("facility")
        .order_by("-received_at", "-id")
    )


def portal_deliveries(*, user: AnyUser, studies: list[Study]) -> dict[int, StudyDelivery]:
    """The report links and result deliveries of the portal's rows (studies the
    caller already scoped to ``user``), by study id: reporting's answer, a fixed
    number of statements for the page."""
    return study_deliveries(user=user, study_ids=[study.pk for study in studies])


def volume_by_hour(*, scope: StudyScope) -> list[int]:
    """Studies received in each hour of the day (0-23, in the scope's zone): one
    GROUP BY, cancelled studies included (they were sent all the same)."""
    counts = dict(
        scope.studies.annotate(hour=ExtractHour("received_at", tzinfo=scope.tz))
        .values("hour")
        .annotate(n=Count("pk"))
        .order_by("hour")
        .values_list("hour", "n")
    )
    return [int(counts.get(hour, 0)) for hour in range(24)]


# --- SLA warnings -----------------------------------------------------------
def sla_threshold_label(fraction: float | None) -> str:
    """How a threshold is named in dedupe keys and messages: "50", "80", "breach"."""
    return "breach" if fraction is None else f"{round(fraction * 100, 2):g}"


def sla_crossings(*, now: dt.datetime, fraction: float | None) -> QuerySet[Study]:
    """Live studies that reached ``fraction`` of their target (None: their due time)
    and have no alert for it yet.  Warnings are for unclaimed studies (ready,
    offered) not yet overdue; a breach is any study not final by its due time."""
    label = sla_threshold_label(fraction)
    if fraction is None:
        qs = Study.objects.filter(
            status__in=[S.READY, S.OFFERED, S.CLAIMED, S.PRELIMINARY], sla_due_at__lte=now
        )
    else:
        qs = (
            Study.objects.filter(
                status__in=[S.READY, S.OFFERED], sla_due_at__gt=now, received_at__lte=now
            )
            .alias(
                elapsed=SecondsBetween("received_at", Value(now, output_field=DateTimeField())),
                target=SecondsBetween("received_at", "sla_due_at"),
            )
            # A millisecond of slack: SQLite's Julian-day arithmetic can land a
            # hair under an exact threshold.
            .filter(elapsed__gte=F("target") * fraction - 0.001)
        )
    # The unique dedupe key is the guarantee; this keeps repeated sweeps from
    # re-trying the insert for every study already told (one indexed probe each).
    told = Alert.objects.filter(
        study_id=OuterRef("pk"), kind=Alert.Kind.SLA, dedupe_key__endswith=f":{label}"
    )
    return (
        qs.filter(~Exists(told))
        .select_related("facility__reading_group")
        .order_by("sla_due_at", "id")
    )
