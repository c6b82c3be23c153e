"""Routing's Celery tasks: thin adapters over routing.services."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings

from routing import services
from routing.credentials import credentials_alert_expiring
from teleradiology.celery import AppTask

_ROUTE_TASK: dict[str, Any] = {
    "base": AppTask,
    "acks_late": True,  # idempotent: a redelivered task finds its studies already offered
    "retry_backoff_max": 60,
    "max_retries": 8,
    "soft_time_limit": 30,
    "time_limit": 60,
}


@shared_task(name="routing.route_studies", **_ROUTE_TASK)
def route_studies(study_ids: list[int]) -> dict[str, int]:
    """Route ready studies (offer each, or flag it unroutable) in one batch, topped
    up with other ready studies waiting for a decision to ROUTING_BATCH_SIZE.  The
    result (in the worker's log) says how many were routed."""
    decided = services.studies_route(study_ids=study_ids, batch_size=settings.ROUTING_BATCH_SIZE)
    return {"named": len(study_ids), "routed": len(decided)}


@shared_task(name="routing.route_study", **_ROUTE_TASK)
def route_study(study_id: int) -> dict[str, str | int | None]:
    """Route one ready study, and with it a batch of other ready studies waiting for
    a decision (ROUTING_BATCH_SIZE).  Kept for messages already queued by earlier
    releases; new work comes in batches (``teleradiology.queue.enqueue_in_batches``)."""
    decided = services.studies_route(study_ids=[study_id], batch_size=settings.ROUTING_BATCH_SIZE)
    decision = decided.get(study_id)
    return {"outcome": decision.outcome if decision else None, "routed": len(decided)}


@shared_task(
    base=AppTask,
    name="routing.reroute_study",
    # Idempotent: under the study's lock, a redelivered task routes a still-waiting
    # study afresh by the same rules and leaves a claimed one alone.
    acks_late=True,
    max_retries=8,
    soft_time_limit=30,
    time_limit=60,
)
def reroute_study(study_id: int, reason: str) -> None:
    """Route a waiting study afresh after its priority or flags changed."""
    services.study_reroute(study_id=study_id, reason=reason)


@shared_task(base=AppTask, name="routing.routing_sweep")
def routing_sweep() -> dict[str, int]:
    """Beat: escalate due studies and route ready studies whose task was lost."""
    return services.routing_sweep()


@shared_task(base=AppTask, name="routing.offers_withdraw_ineligible")
def offers_withdraw_ineligible() -> int:
    """Beat: withdraw offers whose reader went off shift or lost a credential, and
    re-route the studies left with nobody."""
    return services.offers_withdraw_ineligible()


@shared_task(
    base=AppTask,
    name="routing.credentials_alert_expiring",
    soft_time_limit=120,
    time_limit=180,
    autoretry_for=(),  # not retried: it runs daily, and the next run alerts what this one missed
)
def credentials_alert_expiring_task() -> int:
    """Daily: alert admins of licenses and privileges expiring within 30 days."""
    return credentials_alert_expiring()
