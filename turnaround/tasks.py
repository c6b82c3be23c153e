"""Turnaround's Celery tasks: thin adapters over turnaround.services."""

from __future__ import annotations

from celery import shared_task

from teleradiology.celery import AppTask
from turnaround import services


@shared_task(
    base=AppTask,
    name="turnaround.sla_warnings_sweep",
    # Idempotent: every alert has a unique dedupe key, so a rerun raises nothing twice.
    acks_late=True,
    soft_time_limit=25,
    time_limit=30,
)
def sla_warnings_sweep() -> int:
    """Beat: raise the SLA warnings and breaches due now (once per study and threshold)."""
    return len(services.sla_warnings_raise())
