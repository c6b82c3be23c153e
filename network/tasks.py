"""Reading network background work: rota shifts generated ahead, pauses ended."""

from celery import shared_task
from django.utils import timezone

from network import services
from teleradiology.celery import AppTask


@shared_task(
    base=AppTask,
    name="network.rota_shifts_generate",
    # Idempotent (one shift per rota and start, a unique constraint; what exists is
    # reconciled, never added twice): a second run after a lost worker changes nothing.
    acks_late=True,
    soft_time_limit=300,
    time_limit=330,
)
def rota_shifts_generate() -> int:
    """Beat: generate every rota's shifts over the horizon and remove generated shifts
    not started that no longer apply; returns how many shifts were made or removed."""
    result = services.rota_shifts_generate(now=timezone.now())
    return len(result.created) + len(result.removed)


@shared_task(base=AppTask, name="network.pauses_end", acks_late=True)
def pauses_end() -> int:
    """Beat: clear the pauses that ran out (a conditional update: run twice, the second
    finds none); returns how many ended."""
    return len(services.pauses_end(now=timezone.now()))
