from celery import shared_task

from health import services
from teleradiology.celery import AppTask


@shared_task(
    base=AppTask,
    name="health.tasks.heartbeat_record",
    soft_time_limit=10,
    time_limit=20,
    autoretry_for=(),  # not retried: the next beat, 30 s later, records the next one
)
def heartbeat_record(name: str = "worker") -> str:
    """Record that a worker is alive (scheduled by beat, so it proves beat too)."""
    return services.heartbeat_record(name=name).at.isoformat()
