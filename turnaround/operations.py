"""Reads for the group admins' operations page: the live queue, studies at risk,
unroutable studies, each reader's load and the shift's fairness figure.

Scoped to the reading groups the user administers (all of them for a superuser);
anyone else has no operations view.  Every figure is aggregated in the database
(GROUP BY, window functions); Python only shapes the few rows that come back.

Definitions (the page and the README say the same):
- **queue**: studies on offer and unclaimed (status *offered*), counted by the
  routing tier they are offered at and by priority, with the earliest due time
  and how many are already past it;
- **at risk**: unclaimed studies (ready or offered) that have used at least the
  first SLA warning fraction (``SLA_WARNING_FRACTIONS``, 50% by default) of their
  target, receipt to due time; overdue ones included, soonest due first;
- **unroutable**: live unclaimed studies that routing flagged as having nobody
  to offer them to, with the reason it recorded and since when;
- **load**, per reader: open claims (claimed or preliminary), studies claimed and
  *weighted work* (the sum of each study's relative value, from the routing rule
  that offered it) in the last ``OPERATIONS_WORK_HOURS`` hours, and the weighted
  work claimed since the start of their current shift;
- **fairness** of the current shift, per reading group: over the readers on shift
  now, the coefficient of variation of their weighted work claimed since their
  shift began (population standard deviation ÷ mean; 0 = perfectly even, higher
  = more uneven), and max ÷ mean.  Undefined (None) while nobody on shift has
  claimed anything.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import (
    Count,
    DateTimeField,
    F,
    Min,
    Q,
    QuerySet,
    Value,
    Window,
)
from rest_framework.exceptions import NotFound, PermissionDenied

from access.selectors import study_get_visible, study_is_administered_by
from alerts.models import Alert
from alerts.selectors import alert_is_administered_by, alert_list_visible
from network.models import Priority, Radiologist, ReadingGroup
from network.selectors import (
    AnyUser,
    radiologist_list_visible,
    reading_groups_administered,
)
from routing.eligibility import CLAIM, REASON_TEXT
from routing.models import LAST_TIER, TIERS, StudyRouting
from routing.selectors import (
    OPEN_CLAIMS,
    READER_AVAILABLE,
    SHIFT_UNDER_WAY,
    candidate_facts,
    reader_state_named_params,
    study_facts,
    study_rule,
)
from studies.models import Study
from studies.states import StudyStatus
from turnaround.expressions import SecondsBetween

S = StudyStatus
UNCLAIMED = (S.READY, S.OFFERED)
OPEN_CLAIM = (S.CLAIMED, S.PRELIMINARY)


def operations_groups(*, user: AnyUser, group_id: int | None = None) -> list[ReadingGroup]:
    """The reading groups whose operations ``user`` sees: those they administer, or the
    one asked for.  403 for someone who administers none; 404 for a group not theirs."""
    groups = reading_groups_administered(user=user)
    if not groups.exists():
        raise PermissionDenied("The operations view is for group admins.")
    if group_id is not None:
        groups = groups.filter(pk=group_id)
        if not groups.exists():
            raise NotFound("No such reading group.")
    return list(groups.order_by("name"))


def at_risk_fraction() -> float:
    """The share of its target an unclaimed study has used when it counts as at risk."""
    return min(settings.SLA_WARNING_FRACTIONS, default=0.5)


# --- Queue ------------------------------------------------------------------
def queue_by_tier_and_priority(
    *, groups: list[ReadingGroup], now: dt.datetime
) -> list[dict[str, Any]]:
    """Offered, unclaimed studies counted per (group, tier, priority): one GROUP BY
    over the live-queue partial index."""
    rows = (
        Study.objects.filter(status=S.OFFERED, facility__reading_group__in=groups)
        .values(group=F("facility__reading_group_id"), tier=F("routing__tier"), prio=F("priority"))
        .annotate(
            studies=Count("pk"),
            overdue=Count("pk", filter=Q(sla_due_at__lte=now)),
            next_due_at=Min("sla_due_at"),
            oldest_received_at=Min("received_at"),
        )
        .order_by("group", "tier", "prio")
    )
    return [
        {
            "reading_group": r["group"],
            "tier": r["tier"],
            "tier_name": TIERS.get(r["tier"], "(not routed)"),
            "priority": r["prio"],
            "priority_name": str(Priority(r["prio"]).label),
            "studies": r["studies"],
            "overdue": r["overdue"],
            "next_due_at": r["next_due_at"],
            "oldest_received_at": r["oldest_received_at"],
        }
        for r in rows
    ]


# --- At risk ----------------------------------------------------------------
def studies_at_risk(*, groups: list[ReadingGroup], now: dt.datetime) -> QuerySet[Study]:
    """Unclaimed studies past the first warning fraction of their target, soonest due
    first, each annotated with ``target_used`` (elapsed ÷ target: 1.0 = due now),
    ``tier`` and ``at_risk_total`` (the count before any slicing, by a window)."""
    fraction = at_risk_fraction()
    elapsed = SecondsBetween("received_at", Value(now, output_field=DateTimeField()))
    target = SecondsBetween("received_at", "sla_due_at")
    return (
        Study.objects.filter(
            status__in=UNCLAIMED, facility__reading_group__in=groups, received_at__lte=now
        )
        .alias(elapsed=elapsed, target=target)
        # A millisecond of slack, as the SLA sweep (SQLite's Julian days).
        .filter(elapsed__gte=F("target") * fraction - 0.001)
        .annotate(
            target_used=F("elapsed") / F("target"),
            tier=F("routing__tier"),
            at_risk_total=Window(Count("pk")),
        )
        .select_related("facility")
        .order_by("sla_due_at", "id")
    )


# --- Unroutable -------------------------------------------------------------
def studies_unroutable(*, groups: list[ReadingGroup]) -> QuerySet[StudyRouting]:
    """Unclaimed studies routing could not place, longest stuck first, with
    ``unroutable_total`` (the count before slicing)."""
    return (
        StudyRouting.objects.filter(
            unroutable_at__isnull=False,
            study__status__in=UNCLAIMED,
            study__facility__reading_group__in=groups,
        )
        .annotate(unroutable_total=Window(Count("pk")))
        .select_related("study__facility")
        .order_by("unroutable_at", "study_id")
    )


# --- Load and fairness ------------------------------------------------------
@dataclass(frozen=True)
class ReaderLoad:
    radiologist_id: int
    name: str
    reading_group_id: int
    on_shift: bool
    shift_started_at: dt.datetime | None
    available: bool
    paused_until: dt.datetime | None
    pause_reason: str
    workload_cap: int
    open_claims: int
    recent_claims: int
    recent_work: float
    shift_work: float


@dataclass(frozen=True)
class Fairness:
    reading_group_id: int
    readers_on_shift: int
    total_work: float
    mean_work: float | None
    max_work: float | None
    coefficient_of_variation: float | None
    max_over_mean: float | None


def _as_datetime(value: Any) -> dt.datetime | None:
    """A datetime from a raw row (SQLite returns text)."""
    if value is None or isinstance(value, dt.datetime):
        return value
    parsed = dt.datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


# --- reader_load's SQL, one named part each -------------------------------------
# Parameters are named (one dict): %(now)s; %(since)s, the start of the work window;
# %(lower)s, the earliest claim time read at all; %(claimed)s and %(preliminary)s, the
# statuses of an open claim; %(group_0)s, %(group_1)s, ... for the reading groups,
# whose list stands in each part as {groups}.

# Of a reader ``r`` now: the start of the shift under way (NULL when off shift) and the
# open claims, from routing's own parts (the facts eligibility reads).
_NAMED = {"now": "%(now)s", "claimed": "%(claimed)s", "preliminary": "%(preliminary)s"}
READER_SHIFT_AND_OPEN_CLAIMS = f"""
    (SELECT MIN(sh.starts_at) FROM network_shift sh WHERE {SHIFT_UNDER_WAY}) AS shift_start,
    {OPEN_CLAIMS} AS open_claims""".format(**_NAMED)  # noqa: S608 - constant parts only

# The earliest start of a shift under way among the groups' active readers (a statement
# of its own): a constant lower bound for the index ranges of LOAD_WORK.
LOAD_EARLIEST_SHIFT = """
    SELECT MIN(sh.starts_at) FROM network_shift sh
    JOIN network_radiologist r ON r.id = sh.radiologist_id
    WHERE r.is_active AND r.reading_group_id IN ({groups})
        AND sh.starts_at <= %(now)s AND sh.ends_at > %(now)s"""

# rd: the groups' active readers, each with their shift start and open claims, and their
# pause while it lasts (one that has run out is over, as routing judges it, before the
# sweep clears it).
LOAD_READERS = f"""
    rd AS (
        SELECT r.id, r.display_name, r.reading_group_id,
            {READER_AVAILABLE.format(**_NAMED)} AS is_available, r.workload_cap,
            CASE WHEN r.paused_until > %(now)s THEN r.paused_until END AS paused_until,
            CASE WHEN r.paused_until > %(now)s THEN r.pause_reason ELSE '' END AS pause_reason,
            {READER_SHIFT_AND_OPEN_CLAIMS.strip()}
        FROM network_radiologist r
        WHERE r.is_active AND r.reading_group_id IN ({{groups}})
    )"""  # noqa: S608 - constant parts and placeholders only

# rw: rd with work_from, where a reader's work is counted from: the shift's start if it
# began before the work window, else the window's start.
LOAD_WORK_FROM = """
    rw AS (
        SELECT rd.*, CASE WHEN rd.shift_start IS NOT NULL AND rd.shift_start < %(since)s
            THEN rd.shift_start ELSE %(since)s END AS work_from
        FROM rd
    )"""

# work: per reader with any, the studies claimed in the window (count and weighted work)
# and the weighted work claimed since the shift began.
LOAD_WORK = """
    work AS (
        -- One range of the (reader, claimed_at) index per reader; the constant
        -- lower bound (the earliest of any reader's) lets the planner see how
        -- few rows that is.
        SELECT rw.id AS rid,
            SUM(CASE WHEN st.claimed_at >= %(since)s THEN 1 ELSE 0 END) AS recent_claims,
            SUM(CASE WHEN st.claimed_at >= %(since)s
                THEN COALESCE(sr.relative_value, 1) ELSE 0 END) AS recent_work,
            SUM(CASE WHEN rw.shift_start IS NOT NULL AND st.claimed_at >= rw.shift_start
                THEN COALESCE(sr.relative_value, 1) ELSE 0 END) AS shift_work
        FROM rw
        JOIN studies_study st
            ON st.assigned_radiologist_id = rw.id AND st.claimed_at >= rw.work_from
            AND st.claimed_at >= %(lower)s
        LEFT JOIN routing_studyrouting sr ON sr.study_id = st.id
        GROUP BY rw.id
    )"""

# loads: every reader of rw with their work (0 without any) and whether on shift.
LOAD_PER_READER = """
    loads AS (
        SELECT rw.id, rw.display_name, rw.reading_group_id, rw.shift_start,
            rw.is_available, rw.workload_cap, rw.paused_until, rw.pause_reason,
            CASE WHEN rw.shift_start IS NULL THEN 0 ELSE 1 END AS on_shift,
            rw.open_claims,
            COALESCE(w.recent_claims, 0) AS recent_claims,
            COALESCE(w.recent_work, 0) AS recent_work,
            COALESCE(w.shift_work, 0) AS shift_work
        FROM rw LEFT JOIN work w ON w.rid = rw.id
    )"""

# The readers listed (on shift, holding a claim, claimed in the window or paused, so that
# an admin can resume them from the page), each with the
# fairness aggregates of their group's on-shift readers: count, mean, mean of squares
# and maximum of the shift's weighted work.
LOAD_LISTED = """
    SELECT id, display_name, reading_group_id, shift_start, is_available, workload_cap,
        paused_until, pause_reason,
        on_shift, open_claims, recent_claims, recent_work, shift_work,
        COUNT(*) OVER g AS n, AVG(shift_work) OVER g AS mean,
        AVG(shift_work * shift_work) OVER g AS mean_sq, MAX(shift_work) OVER g AS top
    FROM loads
    WHERE on_shift = 1 OR open_claims > 0 OR recent_claims > 0 OR paused_until IS NOT NULL
    WINDOW g AS (PARTITION BY reading_group_id, on_shift)
    ORDER BY reading_group_id, on_shift DESC, shift_work DESC, recent_work DESC,
        display_name, id"""


def _group_params(groups: list[ReadingGroup]) -> tuple[str, dict[str, int]]:
    """The {groups} of the parts (``%(group_0)s, ...``) and their parameters."""
    params = {f"group_{i}": g.pk for i, g in enumerate(groups)}
    return ", ".join(f"%({name})s" for name in params), params


def _reader_load_sql(groups_sql: str) -> str:
    """The readers' statement: its common table expressions in order, then the list."""
    ctes = ",".join((LOAD_READERS, LOAD_WORK_FROM, LOAD_WORK, LOAD_PER_READER))
    return f"WITH{ctes}{LOAD_LISTED}".replace("{groups}", groups_sql)


def reader_load(
    *, groups: list[ReadingGroup], now: dt.datetime
) -> tuple[list[ReaderLoad], list[Fairness]]:
    """Each active reader of the groups who is on shift, holds a claim, claimed
    something in the work window or is paused; and each group's fairness figure.

    Two statements of the named parts above: LOAD_EARLIEST_SHIFT (the earliest start
    of a shift under way, a constant lower bound for the index ranges of LOAD_WORK),
    then LOAD_LISTED over the common table expressions LOAD_READERS (readers, their
    shift's start and open claims), LOAD_WORK_FROM, LOAD_WORK (their studies claimed in
    the window or since their shift began, summed per reader) and LOAD_PER_READER, with
    window functions over each group's on-shift readers for the fairness figure.  Hand
    written (it runs every few seconds per admin) and portable (PostgreSQL, SQLite).
    """
    if not groups:
        return [], []
    ops = connection.ops
    since = now - dt.timedelta(hours=settings.OPERATIONS_WORK_HOURS)
    groups_sql, group_params = _group_params(groups)
    now_db = ops.adapt_datetimefield_value(now)
    with connection.cursor() as cursor:
        # The earliest start of a shift under way: no reader's work is read before it.
        cursor.execute(
            LOAD_EARLIEST_SHIFT.replace("{groups}", groups_sql), {"now": now_db, **group_params}
        )
        earliest_shift = _as_datetime(cursor.fetchone()[0])
    lower = since if earliest_shift is None else min(since, earliest_shift)
    params = {
        **reader_state_named_params(now),
        "since": ops.adapt_datetimefield_value(since),
        "lower": ops.adapt_datetimefield_value(lower),
        **group_params,
    }
    with connection.cursor() as cursor:
        cursor.execute(_reader_load_sql(groups_sql), params)
        rows = cursor.fetchall()
    loads = []
    fairness: dict[int, Fairness] = {}
    for (
        pk,
        name,
        group_id,
        shift_start,
        available,
        cap,
        paused_until,
        pause_reason,
        on_shift,
        open_claims,
        recent_claims,
        recent_work,
        shift_work,
        n,
        mean,
        mean_sq,
        top,
    ) in rows:
        loads.append(
            ReaderLoad(
                radiologist_id=pk,
                name=name,
                reading_group_id=group_id,
                on_shift=bool(on_shift),
                shift_started_at=_as_datetime(shift_start),
                available=bool(available),
                paused_until=_as_datetime(paused_until),
                pause_reason=pause_reason or "",
                workload_cap=cap,
                open_claims=int(open_claims),
                recent_claims=int(recent_claims),
                recent_work=round(float(recent_work), 2),
                shift_work=round(float(shift_work), 2),
            )
        )
        if on_shift and group_id not in fairness:
            fairness[group_id] = _fairness(
                group_id, int(n), float(mean), float(mean_sq), float(top)
            )
    return loads, [
        fairness.get(g.pk) or Fairness(g.pk, 0, 0.0, None, None, None, None) for g in groups
    ]


def _fairness(group_id: int, n: int, mean: float, mean_sq: float, top: float) -> Fairness:
    """The figure from the window aggregates: CV = sqrt(E[w²] - E[w]²) / E[w]."""
    if mean <= 0:
        return Fairness(group_id, n, 0.0, 0.0, 0.0, None, None)
    variance = max(0.0, mean_sq - mean * mean)  # rounding can dip a hair below 0
    return Fairness(
        reading_group_id=group_id,
        readers_on_shift=n,
        total_work=round(mean * n, 2),
        mean_work=round(mean, 3),
        max_work=round(top, 2),
        coefficient_of_variation=round(math.sqrt(variance) / mean, 3),
        max_over_mean=round(top / mean, 3),
    )


def alerts_open(*, groups: list[ReadingGroup]) -> QuerySet[Alert]:
    """The groups' unacknowledged alerts, newest first (SLA warnings and breaches,
    unroutable studies, critical results not communicated, ...): what needs an
    admin now, on the page beside the queue."""
    return (
        Alert.objects.filter(reading_group__in=groups, acknowledged_at__isnull=True)
        .select_related("study")
        .order_by("-created_at", "-id")
    )


# --- All of it --------------------------------------------------------------
@dataclass(frozen=True)
class OperationsSnapshot:
    generated_at: dt.datetime
    groups: list[ReadingGroup]
    at_risk_fraction: float
    work_hours: float
    queue: list[dict[str, Any]]
    at_risk: list[Study]
    at_risk_total: int
    unroutable: list[StudyRouting]
    unroutable_total: int
    load: list[ReaderLoad]
    fairness: list[Fairness]
    alerts: list[Alert]


def operations_snapshot(
    *, user: AnyUser, now: dt.datetime, group_id: int | None = None, limit: int | None = None
) -> OperationsSnapshot:
    """Everything the operations page shows, in nine small queries whatever the volume."""
    groups = operations_groups(user=user, group_id=group_id)
    limit = limit or settings.OPERATIONS_LIST_LIMIT
    at_risk = list(studies_at_risk(groups=groups, now=now)[:limit])
    unroutable = list(studies_unroutable(groups=groups)[:limit])
    load, fairness = reader_load(groups=groups, now=now)
    return OperationsSnapshot(
        generated_at=now,
        groups=groups,
        at_risk_fraction=at_risk_fraction(),
        work_hours=settings.OPERATIONS_WORK_HOURS,
        queue=queue_by_tier_and_priority(groups=groups, now=now),
        at_risk=at_risk,
        at_risk_total=at_risk[0].at_risk_total if at_risk else 0,  # type: ignore[attr-defined]
        unroutable=unroutable,
        unroutable_total=unroutable[0].unroutable_total if unroutable else 0,  # type: ignore[attr-defined]
        load=load,
        fairness=fairness,
        alerts=list(alerts_open(groups=groups)[:limit]),
    )


# --- What the page acts on ----------------------------------------------------
# Each action names its object by id; these answer it only to an admin of the
# object's group (a superuser: any).  Someone who cannot see the object at all (another
# group's admin, facility staff of another facility) gets 404, so its existence does
# not leak; someone who sees it but does not administer its group (its reader, its
# facility's staff) gets 403.

REASSIGNABLE = (S.OFFERED, S.CLAIMED)
LIVE = (*UNCLAIMED, *OPEN_CLAIM)


def study_for_action(*, user: AnyUser, study_id: int) -> Study:
    """A study an admin acts on from the operations page (403/404 as above)."""
    study = study_get_visible(user=user, study_id=study_id)
    if not study_is_administered_by(user=user, study=study):
        raise PermissionDenied("Only the group's admins act on its studies.")
    return study


def alert_for_action(*, user: AnyUser, alert_id: int) -> Alert:
    """An alert an admin acknowledges from the page (403/404 as above)."""
    alert = alert_list_visible(user=user).select_related("study").filter(pk=alert_id).first()
    if alert is None:
        raise NotFound("No such alert.")
    if not alert_is_administered_by(user=user, alert=alert):
        raise PermissionDenied("Only the group's admins acknowledge its alerts.")
    return alert


def reader_for_action(*, user: AnyUser, radiologist_id: int) -> Radiologist:
    """A reader an admin pauses, resumes or looks at from the page (403/404 as above:
    a reader sees themselves and is refused 403; they pause from their worklist)."""
    reader = (
        radiologist_list_visible(user=user)
        .select_related("reading_group")
        .filter(pk=radiologist_id)
        .first()
    )
    if reader is None:
        raise NotFound("No such radiologist.")
    if not reading_groups_administered(user=user).filter(pk=reader.reading_group_id).exists():
        raise PermissionDenied("Only the group's admins pause or resume its readers.")
    return reader


@dataclass(frozen=True)
class ReassignChoice:
    """One reader of the study's group in the reassign chooser."""

    radiologist_id: int
    name: str
    eligible: bool
    why_not: str  # the CLAIM policy's reasons, or why the reader cannot take it
    tier_name: str
    open_claims: int
    workload_cap: int


def reassign_choices(*, study: Study, now: dt.datetime) -> list[ReassignChoice]:
    """The study's group's active readers for an admin's reassign, the eligible first
    (in routing's ranking: nearer tier, subspecialty fit, final scope, least load) and
    then the others with the reasons the CLAIM policy gives, the re-check
    ``worklist.services.claims.study_reassign`` makes.  One batch of facts for all the
    readers (``candidate_facts`` with their ids): a few statements, whatever their
    number, not one ``why_not`` per reader."""
    readers = list(
        Radiologist.objects.filter(reading_group_id=study.facility.reading_group_id, is_active=True)
        .order_by("pk")
        .values_list("pk", "display_name")
    )
    holder = study.assigned_radiologist_id if study.status in OPEN_CLAIM else None
    rule = study_rule(study=study)
    if rule is None:
        return [
            ReassignChoice(pk, name, False, "no routing rule applies to this study", "", 0, 0)
            for pk, name in readers
        ]
    facts = study_facts(study=study, rule=rule, now=now)
    candidates = candidate_facts(
        facility=study.facility,
        jurisdiction_code=facts.jurisdiction,
        max_tier=LAST_TIER,
        at=now,
        radiologist_ids=[pk for pk, _ in readers],
    )
    by_id = {c.radiologist_id: c for c in candidates}
    choices = []
    for verdict in CLAIM.decide(facts, candidates):
        candidate = by_id[verdict.radiologist_id]
        eligible = verdict.eligible and verdict.radiologist_id != holder
        why = (
            "holds this study now"
            if verdict.radiologist_id == holder
            else "; ".join(REASON_TEXT[r] for r in verdict.reasons)
        )
        choices.append(
            ReassignChoice(
                radiologist_id=verdict.radiologist_id,
                name=verdict.name,
                eligible=eligible,
                why_not="" if eligible else why,
                tier_name=TIERS.get(verdict.tier, ""),
                open_claims=candidate.open_claims,
                workload_cap=candidate.workload_cap,
            )
        )
    # Stable: the eligible keep routing's rank, the others their tier and id.
    return sorted(choices, key=lambda c: not c.eligible)


def reassign_target(*, study: Study, radiologist_id: int | None) -> Radiologist | None:
    """The reader a reassign names, if they read for the study's group: another
    group's id answers as a missing one, so the field is no oracle of who reads where."""
    if radiologist_id is None:
        return None
    return Radiologist.objects.filter(
        pk=radiologist_id, reading_group_id=study.facility.reading_group_id
    ).first()


def reader_open_cases(*, radiologist: Radiologist) -> QuerySet[Study]:
    """The studies a reader holds (claimed or preliminary), soonest due first: what an
    admin moves to others when the reader is paused or overloaded."""
    return (
        Study.objects.filter(assigned_radiologist=radiologist, status__in=OPEN_CLAIM)
        .select_related("facility")
        .order_by("sla_due_at", "id")
    )
