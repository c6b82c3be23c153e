from celery import shared_task

from health import services


@shared_task(name="health.tasks.heartbeat_record", soft_time_limit=10, time_limit=20)
def heartbeat_record(name: str = "worker") -> str:
    """Record that a worker is alive (scheduled by beat, so it proves beat too)."""
    return services.heartbeat_record(name=name).at.isoformat()
