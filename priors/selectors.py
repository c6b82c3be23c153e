"""Reads of priors: a study's chosen priors, and the fetches the sweep must run."""

from __future__ import annotations

import datetime as dt

from django.db.models import QuerySet

from priors.models import PriorFetch, PriorStudy
from studies.models import Study
from studies.states import StudyStatus


def prior_studies_of(*, study: Study) -> QuerySet[PriorStudy]:
    """The priors chosen for ``study``, most recent first (the caller has checked
    that the user may see ``study``; each retrieved prior is visible to whoever sees
    it, see ``access.selectors``)."""
    return PriorStudy.objects.filter(current=study).order_by("-study_date", "id")


def prior_fetch_of(*, study: Study) -> PriorFetch | None:
    """The fetch of ``study``'s priors, if one was started."""
    return PriorFetch.objects.filter(study=study).first()


def fetches_due(*, now: dt.datetime) -> QuerySet[PriorFetch, int]:
    """Unfinished fetches whose next attempt is due: a retry after the PACS was
    unavailable, or an attempt whose worker died (its lease passed)."""
    return (
        PriorFetch.objects.filter(
            status__in=[PriorFetch.Status.QUERYING, PriorFetch.Status.RETRIEVING],
            next_attempt_at__lte=now,
        )
        .order_by("next_attempt_at")
        .values_list("study_id", flat=True)
    )


def studies_without_fetch(*, ready_before: dt.datetime) -> QuerySet[Study, int]:
    """Ready studies held for their priors whose fetch never started (its message
    was lost)."""
    return (
        Study.objects.filter(
            status=StudyStatus.READY,
            priors_hold_until__isnull=False,
            prior_fetch__isnull=True,
            ready_at__lte=ready_before,
        )
        .order_by("ready_at")
        .values_list("pk", flat=True)
    )
