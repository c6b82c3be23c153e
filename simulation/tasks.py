"""The rule simulator's Celery tasks: thin adapters over simulation.services."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from simulation import services
from teleradiology.celery import AppTask


@shared_task(
    base=AppTask,
    name="simulation.simulation_run",
    # Idempotent: the run is taken by a conditional UPDATE, so a redelivered task
    # finds it done, failed or beating under another worker and leaves it alone.
    acks_late=True,
    # A replay of 30 days of 1,000 studies a day takes well under a minute; the
    # soft limit ends a runaway one as failed (with its reason) before the hard
    # limit kills the worker.
    soft_time_limit=1800,
    time_limit=1860,
)
def simulation_run(run_id: int) -> None:
    """Replay a queued simulation run against its draft and the live rules."""
    services.run_execute(run_id=run_id)


@shared_task(base=AppTask, name="simulation.runs_recover")
def runs_recover() -> int:
    """Beat: re-queue runs never started and runs whose worker stopped beating."""
    return services.runs_recover(now=timezone.now())
