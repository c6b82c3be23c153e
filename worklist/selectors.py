"""What a radiologist sees: the studies offered to them, most urgent first."""

from __future__ import annotations

from django.db.models import Exists, F, OuterRef, QuerySet, Subquery

from network.models import Radiologist
from routing.models import StudyRouting
from studies.models import Study
from studies.states import StudyStatus
from worklist.models import Offer


def worklist_for_reader(*, radiologist: Radiologist) -> QuerySet[Study]:
    """Studies on offer to the reader: priority, then SLA due time, then arrival."""
    open_offer = Offer.objects.filter(
        study=OuterRef("pk"), radiologist=radiologist, withdrawn_at__isnull=True
    )
    return (
        Study.objects.filter(status=StudyStatus.OFFERED)
        .filter(Exists(open_offer))
        .annotate(
            offer_tier=Subquery(open_offer.values("tier")[:1]),
            relative_value=Subquery(
                StudyRouting.objects.filter(study=OuterRef("pk")).values("relative_value")[:1]
            ),
            rule_name=F("routing__rule__name"),
        )
        .select_related("facility")
        .order_by("priority", "sla_due_at", "received_at", "id")
    )


def cases_for_reader(*, radiologist: Radiologist) -> QuerySet[Study]:
    """The reader's claimed cases not yet final."""
    return (
        Study.objects.filter(
            assigned_radiologist=radiologist,
            status__in=[StudyStatus.CLAIMED, StudyStatus.PRELIMINARY],
        )
        .select_related("facility")
        .order_by("priority", "sla_due_at", "id")
    )
