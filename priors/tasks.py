"""Priors' background work: one fetch attempt per message, and the beat sweep that
retries due fetches."""

from __future__ import annotations

from celery import shared_task

from priors import services
from teleradiology.celery import AppTask


@shared_task(
    base=AppTask,
    name="priors.study_priors_fetch",
    # Idempotent: the attempt is claimed by a lease on the fetch row, a finished
    # fetch is left alone and a retrieved prior is never moved again.
    acks_late=True,
    # Moving a few priors of hundreds of instances takes minutes; the row's lease
    # (PRIORS_ATTEMPT_LEASE_SECONDS) outlasts the hard limit.
    soft_time_limit=540,
    time_limit=600,
)
def study_priors_fetch(study_id: int) -> str:
    """Run one attempt at fetching the study's relevant priors from its PACS."""
    return services.study_priors_fetch(study_id=study_id)


@shared_task(base=AppTask, name="priors.prior_fetches_sweep", soft_time_limit=50, time_limit=60)
def prior_fetches_sweep() -> int:
    """Beat sweep: hand due fetches (retries, lost attempts) to the fetch task."""
    return services.prior_fetches_sweep()
