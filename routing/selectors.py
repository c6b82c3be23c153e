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


def _tier_pools(facility_ids: list[int]) -> dict[int, dict[int, int]]:
    """The admin's named pools per facility and tier (one query for many facilities)."""
    pools: dict[int, dict[int, int]] = defaultdict(dict)
    for facility_id, tier, pool_id in FacilityTierPool.objects.filter(
        facility_id__in=facility_ids
    ).values_list("facility_id", "tier", "pool_id"):
        pools[facility_id][tier] = pool_id
    return pools


def _tier_sql(*, facility: Facility, pools: dict[int, int]) -> tuple[str, list[Any]]:
    """SQL for a reader's tier for this facility (0 local, 1 regional, 2 global):
    the admin's named pools where set, geography otherwise.  Pool membership is an
    EXISTS, so a reader is one row whatever their pools."""
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


ReaderRow = tuple[int, str, int, bool, bool, bool, int, int, float]


def _reader_rows(
    *,
    facility: Facility,
    pools: dict[int, int],
    jurisdiction_code: str,
    max_tier: int,
    at: dt.datetime,
    radiologist_ids: list[int] | None,
) -> list[ReaderRow]:
    """The readers query: one hand-written statement (portable: PostgreSQL and
    SQLite).  It runs for every routing decision, and building it with the ORM cost
    more than running it."""
    ops = connection.ops
    tier_sql, tier_params = _tier_sql(facility=facility, pools=pools)
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
        rows: list[ReaderRow] = cursor.fetchall()
    return rows


class _Credentials:
    """Licenses, privileges and subspecialties of a set of readers, read as plain
    rows in three queries whatever the number of studies being decided."""

    def __init__(
        self, *, reader_ids: set[int], jurisdiction_codes: set[str], facility_ids: set[int]
    ) -> None:
        ids = sorted(reader_ids)
        self.licenses: dict[tuple[int, str], list[Credential]] = defaultdict(list)
        self.privileges: dict[tuple[int, int], list[Credential]] = defaultdict(list)
        self.subspecialties: dict[int, set[str]] = defaultdict(set)
        if not ids:
            return
        for reader_id, code, valid_from, valid_to, status, scope in License.objects.filter(
            radiologist_id__in=ids, jurisdiction__code__in=sorted(jurisdiction_codes)
        ).values_list(
            "radiologist_id", "jurisdiction__code", "valid_from", "valid_to", "status", "scope"
        ):
            self.licenses[reader_id, code].append(
                Credential(
                    key=code,
                    valid_from=valid_from,
                    valid_to=valid_to,
                    active=status == CredentialStatus.ACTIVE,
                    final_scope=scope == License.Scope.FINAL,
                )
            )
        for (
            reader_id,
            facility_id,
            valid_from,
            valid_to,
            status,
        ) in FacilityPrivilege.objects.filter(
            radiologist_id__in=ids, facility_id__in=sorted(facility_ids)
        ).values_list("radiologist_id", "facility_id", "valid_from", "valid_to", "status"):
            self.privileges[reader_id, facility_id].append(
                Credential(
                    key=str(facility_id),
                    valid_from=valid_from,
                    valid_to=valid_to,
                    active=status == CredentialStatus.ACTIVE,
                )
            )
        for reader_id, code in Radiologist.subspecialties.through.objects.filter(
            radiologist_id__in=ids
        ).values_list("radiologist_id", "subspecialty__code"):
            self.subspecialties[reader_id].add(code)

    def facts(
        self, rows: list[ReaderRow], *, facility_id: int, jurisdiction_code: str
    ) -> list[CandidateFacts]:
        return [
            CandidateFacts(
                radiologist_id=pk,
                name=name,
                tier=int(tier),
                active=is_active,
                available=is_available,
                on_shift=bool(shift),
                subspecialties=frozenset(self.subspecialties[pk]),
                licenses=tuple(self.licenses[pk, jurisdiction_code]),
                privileges=tuple(self.privileges[pk, facility_id]),
                open_claims=int(claims),
                workload_cap=cap,
                recent_work=float(work),
            )
            for pk, name, tier, is_active, is_available, shift, claims, cap, work in rows
        ]


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

    A few queries whatever the number of readers, read as plain rows: the named
    pools; readers with their tier, shift, open claims and recent work; their
    licenses in the jurisdiction; their privileges at the facility; their
    subspecialties.
    """
    return candidate_facts_many(
        [(facility, jurisdiction_code)], max_tier=max_tier, at=at, radiologist_ids=radiologist_ids
    )[facility.pk, jurisdiction_code]


def candidate_facts_many(
    wanted: list[tuple[Facility, str]],
    *,
    max_tier: int,
    at: dt.datetime,
    radiologist_ids: list[int] | None = None,
) -> dict[tuple[int, str], list[CandidateFacts]]:
    """``candidate_facts`` for several (facility, jurisdiction code) pairs at once, as
    when a batch of studies is routed: one readers query per distinct pair, and the
    pools and credentials of everyone found read once for the whole batch."""
    distinct = {(f.pk, code): (f, code) for f, code in wanted}
    pools = _tier_pools(sorted({pk for pk, _ in distinct}))
    rows = {
        key: _reader_rows(
            facility=facility,
            pools=pools.get(facility.pk, {}),
            jurisdiction_code=code,
            max_tier=max_tier,
            at=at,
            radiologist_ids=radiologist_ids,
        )
        for key, (facility, code) in distinct.items()
    }
    credentials = _Credentials(
        reader_ids={row[0] for found in rows.values() for row in found},
        jurisdiction_codes={code for _, code in distinct},
        facility_ids={pk for pk, _ in distinct},
    )
    return {
        (pk, code): credentials.facts(found, facility_id=pk, jurisdiction_code=code)
        for (pk, code), found in rows.items()
    }


def studies_awaiting_route() -> QuerySet[Study, int]:
    """Ready studies never routed, most urgent first (the live-queue partial index):
    a routing task takes a batch of them besides its own study."""
    return (
        Study.objects.filter(status=StudyStatus.READY, routing__isnull=True)
        .order_by("priority", "sla_due_at", "id")
        .values_list("pk", flat=True)
    )


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
