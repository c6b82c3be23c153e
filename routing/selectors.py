"""Facts for routing, gathered with a few set-based queries (never one per reader)."""

from __future__ import annotations

import datetime as dt

from django.db.models import (
    Case,
    Count,
    DecimalField,
    Exists,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce

from network.models import (
    CredentialStatus,
    Facility,
    FacilityPrivilege,
    License,
    Radiologist,
    Shift,
)
from routing.eligibility import CandidateFacts, Credential
from routing.models import FacilityTierPool, RoutingDecision, RoutingRule
from routing.rules import RuleKey
from studies.models import Study
from studies.states import StudyStatus

RECENT_WORK_WINDOW = dt.timedelta(hours=8)


def rule_keys_for_group(*, reading_group_id: int) -> list[tuple[RuleKey, RoutingRule]]:
    """The group's active rules in order, as match keys (two queries)."""
    rules = (
        RoutingRule.objects.filter(reading_group_id=reading_group_id, is_active=True)
        .prefetch_related("facilities", "subspecialties")
        .order_by("is_default", "position", "id")
    )
    return [
        (
            RuleKey(
                rule_id=r.pk,
                is_default=r.is_default,
                facility_ids=frozenset(f.pk for f in r.facilities.all()),
                modalities=frozenset(str(m).upper() for m in r.modalities),
                body_parts=frozenset(str(b).upper() for b in r.body_parts),
                description_pattern=r.description_pattern,
                procedure_code_pattern=r.procedure_code_pattern,
                priorities=frozenset(int(p) for p in r.priorities),
                flags=frozenset(str(f) for f in r.flags),
            ),
            r,
        )
        for r in rules
    ]


def tier_scopes(*, facility: Facility) -> tuple[Q, Q]:
    """Radiologist filters for tier 0 (local) and tier 1 (regional) of a facility:
    the admin's named pools where set, geography otherwise.  Tier 2 is everyone."""
    pools = {tp.tier: tp.pool_id for tp in FacilityTierPool.objects.filter(facility=facility)}
    local = Q(pools=pools[0]) if 0 in pools else Q(home_region_id=facility.region_id)
    regional = Q(pools=pools[1]) if 1 in pools else Q(home_region__country=facility.region.country)
    return local, regional | local


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

    Four queries whatever the number of readers: readers with their tier, shift,
    open claims and recent work; their licenses in the jurisdiction; their
    privileges at the facility; their subspecialties.
    """
    local, regional = tier_scopes(facility=facility)
    on_shift = Exists(
        Shift.objects.filter(radiologist=OuterRef("pk"), starts_at__lte=at, ends_at__gt=at)
    )
    open_claims = (
        Study.objects.filter(
            assigned_radiologist=OuterRef("pk"),
            status__in=[StudyStatus.CLAIMED, StudyStatus.PRELIMINARY],
        )
        .order_by()
        .values("assigned_radiologist")
        .annotate(n=Count("pk"))
        .values("n")
    )
    recent_work = (
        Study.objects.filter(
            assigned_radiologist=OuterRef("pk"), claimed_at__gte=at - RECENT_WORK_WINDOW
        )
        .order_by()
        .values("assigned_radiologist")
        .annotate(total=Sum("routing__relative_value"))
        .values("total")
    )
    readers: QuerySet[Radiologist] = Radiologist.objects.filter(
        reading_group_id=facility.reading_group_id
    ).annotate(
        tier=Case(
            When(local, then=Value(0)),
            When(regional, then=Value(1)),
            default=Value(2),
            output_field=IntegerField(),
        ),
        on_shift=on_shift,
        open_claims=Coalesce(Subquery(open_claims, output_field=IntegerField()), 0),
        recent_work=Coalesce(
            Subquery(recent_work, output_field=DecimalField(max_digits=12, decimal_places=2)),
            Value(0),
            output_field=DecimalField(max_digits=12, decimal_places=2),
        ),
    )
    if radiologist_ids is not None:
        readers = readers.filter(pk__in=radiologist_ids)
    else:
        # Plausible candidates only: on shift in the tier, holding some license in
        # the jurisdiction and some privilege at the facility (valid or not: the
        # decision says which).  Anyone else is explained on demand (why_not).
        readers = readers.filter(  # type: ignore[misc]
            Exists(
                License.objects.filter(
                    radiologist=OuterRef("pk"), jurisdiction__code=jurisdiction_code
                )
            ),
            Exists(FacilityPrivilege.objects.filter(radiologist=OuterRef("pk"), facility=facility)),
            on_shift=True,
            tier__lte=max_tier,
        )
    readers = readers.distinct().prefetch_related(
        Prefetch(
            "licenses",
            queryset=License.objects.filter(jurisdiction__code=jurisdiction_code),
            to_attr="jurisdiction_licenses",
        ),
        Prefetch(
            "privileges",
            queryset=FacilityPrivilege.objects.filter(facility=facility),
            to_attr="facility_privileges",
        ),
        "subspecialties",
    )
    facts = []
    for r in readers:
        facts.append(
            CandidateFacts(
                radiologist_id=r.pk,
                name=r.display_name,
                tier=int(r.tier),  # type: ignore[attr-defined]
                active=r.is_active,
                available=r.is_available,
                on_shift=bool(r.on_shift),  # type: ignore[attr-defined]
                subspecialties=frozenset(s.code for s in r.subspecialties.all()),
                licenses=tuple(
                    Credential(
                        key=jurisdiction_code,
                        valid_from=lic.valid_from,
                        valid_to=lic.valid_to,
                        active=lic.status == CredentialStatus.ACTIVE,
                        final_scope=lic.scope == License.Scope.FINAL,
                    )
                    for lic in r.jurisdiction_licenses
                ),
                privileges=tuple(
                    Credential(
                        key=str(facility.pk),
                        valid_from=p.valid_from,
                        valid_to=p.valid_to,
                        active=p.status == CredentialStatus.ACTIVE,
                    )
                    for p in r.facility_privileges
                ),
                open_claims=int(r.open_claims),  # type: ignore[attr-defined]
                workload_cap=r.workload_cap,
                recent_work=float(r.recent_work),  # type: ignore[attr-defined]
            )
        )
    return facts


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
