"""What a radiologist sees: the studies offered to them, most urgent first."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, F, Q, QuerySet

from network.models import Radiologist
from studies.models import Series, Study
from studies.states import StudyStatus
from worklist.models import Offer

# The worklist order, on the offer's copies of the study's sort keys, so that the
# database walks one index (offer_worklist_idx) and stops after a page.
WORKLIST_ORDER = ("wl_priority", "wl_due", "wl_received", "id")


def _on_worklist_of(radiologist: Radiologist) -> Q:
    """Studies with an open, unheld offer to the reader, as one condition (one join
    to worklist_offer, which annotations and ordering on ``offers__`` then reuse)."""
    return Q(
        offers__radiologist=radiologist,
        offers__withdrawn_at__isnull=True,
        offers__held_at__isnull=True,
    )


def worklist_for_reader(*, radiologist: Radiologist) -> QuerySet[Study]:
    """Studies on offer to the reader: priority, then SLA due time, then arrival.

    Read from the reader's open, unheld offers (only offered studies have any),
    so the query is one join with no status filter for the planner to misjudge
    (a cancelled study's offers are withdrawn with it, so it drops off).
    The annotations reuse that one join (annotate after filter on the relation).
    """
    return (
        Study.objects.filter(_on_worklist_of(radiologist))
        .annotate(
            wl_priority=F("offers__priority"),
            wl_due=F("offers__sla_due_at"),
            wl_received=F("offers__received_at"),
            offer_tier=F("offers__tier"),
            wl_facility=F("offers__facility_id"),
            wl_rule=F("offers__rule_id"),
            relative_value=F("routing__relative_value"),
            rule_name=F("routing__rule__name"),
        )
        # The order (reason for exam, ED/inpatient badge): a LEFT JOIN on its unique
        # study_id, in the same query.
        .select_related("facility", "order")
        .order_by(*WORKLIST_ORDER)
    )


def claim_candidates(*, radiologist: Radiologist) -> QuerySet[Study]:
    """The top of the reader's worklist for "next case", locked with SKIP LOCKED by
    the caller: only what claiming needs is joined (the facility's group, the
    jurisdiction's code and the routing rule for the eligibility re-check)."""
    return (
        Study.objects.filter(_on_worklist_of(radiologist))
        .order_by("offers__priority", "offers__sla_due_at", "offers__received_at", "id")
        .select_related("facility", "patient_jurisdiction", "routing__rule")
    )


def cases_for_reader(*, radiologist: Radiologist) -> QuerySet[Study]:
    """The reader's claimed cases not yet final."""
    return (
        Study.objects.filter(
            assigned_radiologist=radiologist,
            status__in=[StudyStatus.CLAIMED, StudyStatus.PRELIMINARY],
        )
        .select_related("facility", "order")
        .order_by("priority", "sla_due_at", "id")
    )


def series_for_study_page(*, study_id: int) -> QuerySet[Series]:
    """A study's series in their numbered order, each with its ``instance_count``:
    one query, whatever the number of series (the page shows a thumbnail of each)."""
    return (
        Series.objects.filter(study_id=study_id)
        .annotate(instance_count=Count("instances"))
        .order_by(F("series_number").asc(nulls_last=True), "pk")
    )


def offered_study_ids(*, radiologist: Radiologist) -> QuerySet[Offer, Any]:
    """Ids of the studies with an open offer to the reader, held by a claim or not
    (a subquery for study visibility: a late claimer hears "already claimed")."""
    return Offer.objects.filter(radiologist=radiologist, withdrawn_at__isnull=True).values(
        "study_id"
    )


def study_has_open_offer(*, study_id: int) -> bool:
    """Whether the study is on anyone's worklist (an open offer, held or not)."""
    return Offer.objects.filter(study_id=study_id, withdrawn_at__isnull=True).exists()


def study_is_offered_to(*, study_id: int, radiologist_id: int) -> bool:
    """Whether the study has an open offer to the reader."""
    return Offer.objects.filter(
        study_id=study_id, radiologist_id=radiologist_id, withdrawn_at__isnull=True
    ).exists()


def study_offered_readers(*, study_id: int) -> frozenset[int]:
    """Every reader the study was ever offered to (open or withdrawn)."""
    return frozenset(
        Offer.objects.filter(study_id=study_id).values_list("radiologist_id", flat=True)
    )


def studies_with_open_offers(*, study_ids: set[int]) -> set[int]:
    """Of these studies, those on someone's worklist."""
    return set(
        Offer.objects.filter(study_id__in=study_ids, withdrawn_at__isnull=True).values_list(
            "study_id", flat=True
        )
    )


def open_offers_of_offered_studies() -> QuerySet[Offer, tuple[int, int, int]]:
    """(offer id, study id, reader id) of every open offer of a study still offered:
    what the sweep that withdraws offers judges (one indexed read)."""
    return (
        Offer.objects.filter(withdrawn_at__isnull=True, study__status=StudyStatus.OFFERED)
        .order_by("study_id", "radiologist_id")
        .values_list("pk", "study_id", "radiologist_id")
    )
