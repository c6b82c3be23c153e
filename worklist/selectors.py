"""What a radiologist sees: the studies offered to them, most urgent first."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.db.models import (
    BooleanField,
    Count,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
)

from alerts.models import Alert
from alerts.selectors import alerts_to_recipient
from network.models import Radiologist
from studies.models import Series, Study
from studies.states import StudyStatus
from worklist.models import Offer

# The worklist order: aged priority (worklist.aging), as the offer's fixed key
# ``rank_at``, then priority (a STAT study before the urgent one it ties with), then
# the study id (a total order), so that the database walks one index
# (offer_worklist_idx: radiologist, rank_at, priority, study) and stops after a page.
WORKLIST_ORDER = ("wl_rank", "wl_priority", "id")


def _on_worklist_of(radiologist: Radiologist) -> Q:
    """Studies with an open, unheld offer to the reader, as one condition (one join
    to worklist_offer, which annotations and ordering on ``offers__`` then reuse)."""
    return Q(
        offers__radiologist=radiologist,
        offers__withdrawn_at__isnull=True,
        offers__held_at__isnull=True,
    )


def worklist_for_reader(*, radiologist: Radiologist) -> QuerySet[Study]:
    """Studies on offer to the reader, by aged priority: a study rises one priority
    level per the group's aging step of waiting, so no class starves (``rank_at``).

    Read from the reader's open, unheld offers (only offered studies have any),
    so the query is one join with no status filter for the planner to misjudge
    (a cancelled study's offers are withdrawn with it, so it drops off).
    The annotations reuse that one join (annotate after filter on the relation).
    """
    return (
        Study.objects.filter(_on_worklist_of(radiologist))
        .annotate(
            wl_rank=F("offers__rank_at"),
            wl_priority=F("offers__priority"),
            offer_tier=F("offers__tier"),
            wl_facility=F("offers__facility_id"),
            wl_rule=F("offers__rule_id"),
            relative_value=F("routing__relative_value"),
            rule_name=F("routing__rule__name"),
            # Taken by "next case" only (no claim button): the rule's flag, on offer
            # delivery (worklist.services.claims.claim_by_id_refused), from the
            # rule already joined for its name.
            next_case_only=ExpressionWrapper(
                Q(routing__rule__next_case_only=True, routing__rule__delivery="offer"),
                output_field=BooleanField(),
            ),
        )
        # The order (reason for exam, ED/inpatient badge): a LEFT JOIN on its unique
        # study_id, in the same query.
        .select_related("facility", "order")
        .order_by(*WORKLIST_ORDER)
    )


def claim_candidates(*, radiologist: Radiologist) -> QuerySet[Study]:
    """The top of the reader's worklist for "next case" (the worklist's order: aged
    priority), locked with SKIP LOCKED by the caller: only what claiming needs is
    joined (the facility's group, the jurisdiction's code and the routing rule for
    the eligibility re-check)."""
    return (
        Study.objects.filter(_on_worklist_of(radiologist))
        .order_by("offers__rank_at", "offers__priority", "id")
        .select_related("facility", "patient_jurisdiction", "routing__rule")
    )


def cases_for_reader(*, radiologist: Radiologist) -> QuerySet[Study]:
    """The reader's claimed cases not yet final, each with ``late_images_at``: when
    they were last told that new images arrived for it since they claimed it (the
    LATE_IMAGES alert to them; NULL if never)."""
    late_images = (
        alerts_to_recipient(user_id=radiologist.user_id, kind=Alert.Kind.LATE_IMAGES)
        .filter(study=OuterRef("pk"), created_at__gte=OuterRef("claimed_at"))
        .values("created_at")[:1]
    )
    return (
        Study.objects.filter(
            assigned_radiologist=radiologist,
            status__in=[StudyStatus.CLAIMED, StudyStatus.PRELIMINARY],
        )
        .annotate(late_images_at=Subquery(late_images))
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


def study_open_offer_readers(*, study_id: int) -> frozenset[int]:
    """The readers the study is open on offer to now (held by a claim or not)."""
    return frozenset(
        Offer.objects.filter(study_id=study_id, withdrawn_at__isnull=True).values_list(
            "radiologist_id", flat=True
        )
    )


def readers_withdrawn_for(
    *, study_ids: Iterable[int], reasons: Sequence[str]
) -> dict[int, frozenset[int]]:
    """Per study, the readers an offer of it was ever withdrawn from for one of
    ``reasons`` (a reason matches the withdrawal reason or its beginning, as in
    "declined: ..."), e.g. the auto-assigned readers who let it time out."""
    ids = list(study_ids)
    if not ids or not reasons:
        return {}
    why = Q()
    for reason in reasons:
        why |= Q(withdrawn_reason__startswith=reason)
    found: dict[int, set[int]] = {}
    for study_id, reader_id in (
        Offer.objects.filter(why, study_id__in=ids, withdrawn_at__isnull=False)
        .values_list("study_id", "radiologist_id")
        .distinct()
    ):
        found.setdefault(study_id, set()).add(reader_id)
    return {study_id: frozenset(readers) for study_id, readers in found.items()}


def studies_with_open_offers(*, study_ids: set[int]) -> set[int]:
    """Of these studies, those on someone's worklist."""
    return set(
        Offer.objects.filter(study_id__in=study_ids, withdrawn_at__isnull=True).values_list(
            "study_id", flat=True
        )
    )


def open_offers_of_live_studies(
    *, radiologist_ids: Sequence[int] | None = None
) -> QuerySet[Offer, tuple[int, int, int]]:
    """(offer id, study id, reader id) of every open offer of a study still offered or
    claimed (a claim holds its study's offers, and a release puts them back on the
    worklists), or only of these readers': what the sweep that withdraws offers and
    an eligibility change judge (one indexed read, from the studies' status or the
    readers' offers)."""
    offers = Offer.objects.filter(
        withdrawn_at__isnull=True,
        study__status__in=[StudyStatus.OFFERED, StudyStatus.CLAIMED, StudyStatus.PRELIMINARY],
    )
    if radiologist_ids is not None:
        offers = offers.filter(radiologist_id__in=list(radiologist_ids))
    return offers.order_by("study_id", "radiologist_id").values_list(
        "pk", "study_id", "radiologist_id"
    )
