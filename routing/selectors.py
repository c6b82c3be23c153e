"""Facts for routing, gathered with a few set-based queries (never one per reader)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from django.db import connection
from django.db.models import (
    Count,
    Exists,
    OuterRef,
    Q,
    QuerySet,
)

from network.models import (
    CredentialStatus,
    Facility,
    FacilityPrivilege,
    License,
    Radiologist,
    Shift,
)
from routing.eligibility import CandidateFacts, Credential
from routing.models import (
    FacilityTierPool,
    RoutingDecision,
    RoutingRule,
    StudyRouting,
)
from routing.rules import RuleKey
from studies.models import Study
from studies.states import StudyStatus
from worklist.models import Offer

RECENT_WORK_WINDOW = dt.timedelta(hours=8)


def rules_requiring(*, subspecialty_code: str) -> QuerySet[RoutingRule, int]:
    """Ids of the rules that require (or accept) the subspecialty."""
    return RoutingRule.objects.filter(subspecialties__code=subspecialty_code).values_list(
        "id", flat=True
    )


def rule_keys_for_group(*, reading_group_id: int) -> list[tuple[RuleKey, RoutingRule]]:
    """The group's active rules in order, as match keys (three plain queries: the
    rules, their facilities, their subspecialty codes)."""
    rules = list(
        RoutingRule.objects.filter(reading_group_id=reading_group_id, is_active=True).order_by(
            "is_default", "position", "id"
        )
    )
    ids = [r.pk for r in rules]
    facilities: dict[int, set[int]] = defaultdict(set)
    for rule_id, facility_id in RoutingRule.facilities.through.objects.filter(
        routingrule_id__in=ids
    ).values_list("routingrule_id", "facility_id"):
        facilities[rule_id].add(facility_id)
    required: dict[int, set[str]] = defaultdict(set)
    for rule_id, code in RoutingRule.subspecialties.through.objects.filter(
        routingrule_id__in=ids
    ).values_list("routingrule_id", "subspecialty__code"):
        required[rule_id].add(code)
    keyed = []
    for r in rules:
        r.required_subspecialties_known(frozenset(required[r.pk]))
        keyed.append(
            (
                RuleKey(
                    rule_id=r.pk,
                    is_default=r.is_default,
                    facility_ids=frozenset(facilities[r.pk]),
                    modalities=frozenset(str(m).upper() for m in r.modalities),
                    body_parts=frozenset(str(b).upper() for b in r.body_parts),
                    description_pattern=r.description_pattern,
                    procedure_code_pattern=r.procedure_code_pattern,
                    priorities=frozenset(int(p) for p in r.priorities),
                    flags=frozenset(str(f) for f in r.flags),
                ),
                r,
            )
        )
    return keyed


def _tier_sql(*, facility: Facility) -> tuple[str, list[Any]]:
    """SQL for a reader's tier for this facility (0 local, 1 regional, 2 global):
    the admin's named pools where set, geography otherwise.  Pool membership is an
    EXISTS, so a reader is one row whatever their pools."""
    pools = {tp.tier: tp.pool_id for tp in FacilityTierPool.objects.filter(facility=facility)}
    local_params: list[Any]
    regional_params: list[Any]
    member = (
        "EXISTS (SELECT 1 FROM routing_readerpool_radiologists pm"
        " WHERE pm.readerpool_id = %s AND pm.radiologist_id = r.id)"
    )
    if 0 in pools:
        local, local_params = member, [pools[0]]
    else:
        local, local_params = "r.home_region_id = %s", [facility.region_id]
    if 1 in pools:
        regional, regional_params = member, [pools[1]]
    else:
        regional = "r.home_region_id IN (SELECT rg.id FROM network_region rg WHERE rg.country = %s)"
        regional_params = [facility.region.country]
    return (
        f"CASE WHEN {local} THEN 0 WHEN ({regional}) OR ({local}) THEN 1 ELSE 2 END",
        [*local_params, *regional_params, *local_params],
    )


def candidate_facts(
    *,
    facility: Facility,
    jurisdiction_code: str,
    max_tier: int,
    at: dt.datetime,
    radiologist_ids: list[int] | None = None,
) -> list[CandidateFacts]:
    """Facts about the facility's group's readers within ``max_tier`` who are on shift
    at ``at`` (or about the named readers, on shift or not).

    Four queries whatever the number of readers, read as plain rows: readers with
    their tier, shift, open claims and recent work; their licenses in the
    jurisdiction; their privileges at the facility; their subspecialties.  The
    first is hand-written SQL (portable: PostgreSQL and SQLite): it runs for every
    routing decision, and building it with the ORM cost more than running it.
    """
    ops = connection.ops
    tier_sql, tier_params = _tier_sql(facility=facility)
    now = ops.adapt_datetimefield_value(at)
    where = ["r.reading_group_id = %s"]
    where_params: list[Any] = [facility.reading_group_id]
    if radiologist_ids is not None:
        where.append(f"r.id IN ({', '.join(['%s'] * len(radiologist_ids))})")
        where_params += radiologist_ids
    else:
        # Plausible candidates only: on shift in the tier, holding some license in
        # the jurisdiction and some privilege at the facility (valid or not: the
        # decision says which).  Anyone else is explained on demand (why_not).
        where += [
            "EXISTS (SELECT 1 FROM network_license l JOIN network_jurisdiction j"
            " ON j.id = l.jurisdiction_id WHERE l.radiologist_id = r.id AND j.code = %s)",
            "EXISTS (SELECT 1 FROM network_facilityprivilege p"
            " WHERE p.radiologist_id = r.id AND p.facility_id = %s)",
            "EXISTS (SELECT 1 FROM network_shift sh WHERE sh.radiologist_id = r.id"
            " AND sh.starts_at <= %s AND sh.ends_at > %s)",
            f"{tier_sql} <= %s",
        ]
        where_params += [jurisdiction_code, facility.pk, now, now, *tier_params, max_tier]
    sql = f"""
        SELECT r.id, r.display_name, {tier_sql} AS tier, r.is_active, r.is_available,
            EXISTS (SELECT 1 FROM network_shift sh WHERE sh.radiologist_id = r.id
                    AND sh.starts_at <= %s AND sh.ends_at > %s) AS on_shift,
            (SELECT COUNT(*) FROM studies_study st WHERE st.assigned_radiologist_id = r.id
                AND st.status IN (%s, %s)) AS open_claims,
            r.workload_cap,
            COALESCE((SELECT SUM(sr.relative_value) FROM studies_study st
                      JOIN routing_studyrouting sr ON sr.study_id = st.id
                      WHERE st.assigned_radiologist_id = r.id AND st.claimed_at >= %s), 0)
                AS recent_work
        FROM network_radiologist r
        WHERE {" AND ".join(where)}
        ORDER BY r.id
    """  # noqa: S608 - only placeholders and fixed fragments are interpolated
    params = [
        *tier_params,
        now,
        now,
        StudyStatus.CLAIMED.value,
        StudyStatus.PRELIMINARY.value,
        ops.adapt_datetimefield_value(at - RECENT_WORK_WINDOW),
        *where_params,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if not rows:
        return []
    ids = [row[0] for row in rows]
    licenses: dict[int, list[Credential]] = defaultdict(list)
    for reader_id, valid_from, valid_to, status, scope in License.objects.filter(
        radiologist_id__in=ids, jurisdiction__code=jurisdiction_code
    ).values_list("radiologist_id", "valid_from", "valid_to", "status", "scope"):
        licenses[reader_id].append(
            Credential(
                key=jurisdiction_code,
                valid_from=valid_from,
                valid_to=valid_to,
                active=status == CredentialStatus.ACTIVE,
                final_scope=scope == License.Scope.FINAL,
            )
        )
    privileges: dict[int, list[Credential]] = defaultdict(list)
    for reader_id, valid_from, valid_to, status in FacilityPrivilege.objects.filter(
        radiologist_id__in=ids, facility=facility
    ).values_list("radiologist_id", "valid_from", "valid_to", "status"):
        privileges[reader_id].append(
            Credential(
                key=str(facility.pk),
                valid_from=valid_from,
                valid_to=valid_to,
                active=status == CredentialStatus.ACTIVE,
            )
        )
    subspecialties: dict[int, set[str]] = defaultdict(set)
    for reader_id, code in Radiologist.subspecialties.through.objects.filter(
        radiologist_id__in=ids
    ).values_list("radiologist_id", "subspecialty__code"):
        subspecialties[reader_id].add(code)
    return [
        CandidateFacts(
            radiologist_id=pk,
            name=name,
            tier=int(tier),
            active=is_active,
            available=is_available,
            on_shift=bool(shift),
            subspecialties=frozenset(subspecialties[pk]),
            licenses=tuple(licenses[pk]),
            privileges=tuple(privileges[pk]),
            open_claims=int(claims),
            workload_cap=cap,
            recent_work=float(work),
        )
        for pk, name, tier, is_active, is_available, shift, claims, cap, work in rows
    ]


def escalations_due(*, now: dt.datetime) -> QuerySet[StudyRouting, int]:
    """Studies whose routing timer is due, oldest first (partial index on the timer)."""
    return (
        StudyRouting.objects.filter(next_escalation_at__lte=now)
        .order_by("next_escalation_at")
        .values_list("study_id", flat=True)
    )


def studies_unrouted(*, ready_before: dt.datetime) -> QuerySet[Study, int]:
    """Ready studies with no routing decision at all (their task was lost)."""
    return (
        Study.objects.filter(
            status=StudyStatus.READY, ready_at__lte=ready_before, routing__isnull=True
        )
        .order_by("ready_at")
        .values_list("pk", flat=True)
    )


def offers_no_longer_eligible(*, now: dt.datetime) -> QuerySet[Offer, tuple[int, int]]:
    """(offer id, study id) of open offers on offered studies whose reader is off
    shift, no longer licensed in the jurisdiction or privileged at the facility, or
    deactivated: one set-based query."""
    today = now.date()
    reader = OuterRef("radiologist")
    return (
        Offer.objects.filter(withdrawn_at__isnull=True, study__status=StudyStatus.OFFERED)
        .annotate(
            on_shift=Exists(
                Shift.objects.filter(radiologist=reader, starts_at__lte=now, ends_at__gt=now)
            ),
            licensed=Exists(
                License.objects.filter(
                    radiologist=reader,
                    jurisdiction=OuterRef("study__patient_jurisdiction"),
                    status=CredentialStatus.ACTIVE,
                    valid_from__lte=today,
                    valid_to__gte=today,
                )
            ),
            privileged=Exists(
                FacilityPrivilege.objects.filter(
                    radiologist=reader,
                    facility=OuterRef("study__facility"),
                    status=CredentialStatus.ACTIVE,
                    valid_from__lte=today,
                    valid_to__gte=today,
                )
            ),
        )
        .filter(
            Q(on_shift=False)
            | Q(licensed=False)
            | Q(privileged=False)
            | Q(radiologist__is_active=False)
        )
        .values_list("pk", "study_id")
    )


def decisions_for_study(*, study: Study) -> QuerySet[RoutingDecision]:
    return RoutingDecision.objects.filter(study=study).order_by("created_at", "id")


def shift_coverage(
    *, facility: Facility, jurisdiction_code: str, at: dt.datetime
) -> dict[str, int]:
    """How many of the group's readers are on shift, and of those how many hold a
    currently valid license in the jurisdiction, and privileges at the facility too
    (three counts in one query, for unroutable explanations)."""
    today = at.date()
    valid_license = Exists(
        License.objects.filter(
            radiologist=OuterRef("pk"),
            jurisdiction__code=jurisdiction_code,
            status=CredentialStatus.ACTIVE,
            valid_from__lte=today,
            valid_to__gte=today,
        )
    )
    valid_privilege = Exists(
        FacilityPrivilege.objects.filter(
            radiologist=OuterRef("pk"),
            facility=facility,
            status=CredentialStatus.ACTIVE,
            valid_from__lte=today,
            valid_to__gte=today,
        )
    )
    on_shift = Exists(
        Shift.objects.filter(radiologist=OuterRef("pk"), starts_at__lte=at, ends_at__gt=at)
    )
    return Radiologist.objects.filter(
        on_shift, reading_group_id=facility.reading_group_id, is_active=True
    ).aggregate(
        on_shift=Count("pk"),
        licensed=Count("pk", filter=Q(valid_license)),
        privileged=Count("pk", filter=Q(valid_license) & Q(valid_privilege)),
    )
