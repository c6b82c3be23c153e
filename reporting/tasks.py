"""Reporting's Celery tasks: thin adapters over reporting.services' modules."""

from __future__ import annotations

from celery import shared_task

from reporting.services import critical, delivery
from teleradiology.celery import AppTask


@shared_task(
    base=AppTask,
    name="reporting.deliver_message",
    acks_late=True,  # idempotent: a redelivered task finds the message sent or leased
    retry_backoff_max=60,
    max_retries=5,
    # Above an attempt's longest wait (connect and answer, 30 s each); below
    # delivery.DELIVERY_LEASE.
    soft_time_limit=75,
    time_limit=90,
)
def deliver_message(message_id: int) -> str:
    """Make one delivery attempt of a result message; failures are retried with backoff
    by the delivery sweep, from the time stored on the message."""
    return delivery.report_message_deliver(message_id=message_id)


@shared_task(base=AppTask, name="reporting.report_messages_sweep")
def report_messages_sweep() -> int:
    """Beat: enqueue the delivery of every pending result message that is due."""
    return delivery.report_messages_sweep()


@shared_task(
    base=AppTask,
    name="reporting.critical_overdue_sweep",
    # Idempotent: every alert has a unique dedupe key, so a rerun raises nothing twice.
    acks_late=True,
)
def critical_overdue_sweep() -> int:
    """Beat: alert admins of critical findings left uncommunicated past the limit (once each)."""
    return len(critical.critical_overdue_alerts_raise())
