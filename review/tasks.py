"""Review's Celery tasks: thin adapters over review.services."""

from __future__ import annotations

from celery import shared_task

from review import services
from teleradiology.celery import AppTask


@shared_task(
    base=AppTask,
    name="review.peer_review_consider",
    acks_late=True,  # idempotent: the draw is stored once per report
    max_retries=5,
    soft_time_limit=30,
    time_limit=45,
)
def peer_review_consider(report_id: int) -> int | None:
    """Draw a newly final report for peer review; the id of the new case, if selected."""
    review = services.peer_review_consider(report_id=report_id)
    return review.pk if review is not None else None


@shared_task(base=AppTask, name="review.reviews_sweep")
def reviews_sweep() -> dict[str, int]:
    """Beat: retry unroutable review cases and draw for finals whose draw was lost."""
    return services.reviews_sweep()
