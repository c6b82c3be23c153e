"""Reporting's Celery tasks: thin adapters over reporting.services."""

from __future__ import annotations

from celery import shared_task
from django.db import DatabaseError

from reporting import services


@shared_task(
    name="reporting.deliver_message",
    acks_late=True,  # idempotent: a redelivered task finds the message sent or leased
    autoretry_for=(DatabaseError,),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=5,
    # Above an attempt's longest wait (connect and answer, 30 s each); below
    # services.DELIVERY_LEASE.
    soft_time_limit=75,
    time_limit=90,
)
def deliver_message(message_id: int) -> str:
    """Make one delivery attempt of a result message; failures are retried with backoff
    by the delivery sweep, from the time stored on the message."""
    return services.report_message_deliver(message_id=message_id)


@shared_task(
    name="reporting.report_messages_sweep",
    autoretry_for=(DatabaseError,),
    retry_backoff=True,
    max_retries=3,
    soft_time_limit=50,
    time_limit=60,
)
def report_messages_sweep() -> int:
    """Beat: enqueue the delivery of every pending result message that is due."""
    return services.report_messages_sweep()


@shared_task(
    name="reporting.critical_overdue_sweep",
    # Idempotent: every alert has a unique dedupe key, so a rerun raises nothing twice.
    acks_late=True,
    autoretry_for=(DatabaseError,),
    retry_backoff=True,
    max_retries=3,
    soft_time_limit=50,
    time_limit=60,
)
def critical_overdue_sweep() -> int:
    """Beat: alert admins of critical findings left uncommunicated past the limit (once each)."""
    return len(services.critical_overdue_alerts_raise())
