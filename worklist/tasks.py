"""Worklist background work."""

from celery import shared_task
from django.db import DatabaseError

from worklist import services


@shared_task(
    name="worklist.claims_release_stale",
    autoretry_for=(DatabaseError,),
    retry_backoff=True,
    max_retries=3,
    soft_time_limit=50,
    time_limit=60,
)
def claims_release_stale() -> int:
    """Beat: release claims with no report activity for too long (audited, people told)."""
    return len(services.claims_release_stale())
