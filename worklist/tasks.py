"""Worklist background work."""

from celery import shared_task

from teleradiology.celery import AppTask
from worklist.services import claims as services


@shared_task(base=AppTask, name="worklist.claims_release_stale")
def claims_release_stale() -> int:
    """Beat: release claims with no report activity for too long (audited, people told)."""
    return len(services.claims_release_stale())
