"""The Celery application: a worker and beat share this configuration."""

import os
from typing import Any

from celery import Celery, Task
from celery.signals import task_prerun
from django.db import DatabaseError, close_old_connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "teleradiology.settings")

app = Celery("teleradiology")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


class AppTask(Task[Any, Any]):
    """The defaults of every task of ours (``@shared_task(base=AppTask, name=...)``): a
    database error is retried with exponential backoff (1 s, 2 s, 4 s, ... jittered, at
    most ``retry_backoff_max`` apart), at most ``max_retries`` times, and a task is
    stopped softly then hard at its time limits.  Not ``acks_late``: a task opts in only
    where a second run changes nothing, and says why.  tests/test_tasks.py holds every
    task's effective options, so a change here shows there."""

    autoretry_for = (DatabaseError,)
    retry_backoff = True
    retry_backoff_max = 600  # seconds; Celery's default, stated
    retry_jitter = True  # Celery's default, stated
    max_retries = 3
    soft_time_limit = 50
    time_limit = 60


# Periodic sweeps: every durable timer lives in the database and is found by
# one of these, so a restarted worker or beat loses nothing.
from django.conf import settings  # noqa: E402

app.conf.beat_schedule = {
    "ingest-studies-mark-ready": {
        "task": "ingest.studies_mark_ready",
        "schedule": settings.STUDY_READY_SWEEP_SECONDS,
    },
    "ingest-storage-usage": {
        "task": "ingest.storage_usage_sweep",
        "schedule": settings.INGEST_USAGE_SWEEP_SECONDS,
    },
    "ingest-orphans": {
        "task": "ingest.orphans_sweep",
        "schedule": settings.INGEST_ORPHAN_SWEEP_SECONDS,
    },
    "routing-sweep": {"task": "routing.routing_sweep", "schedule": settings.ROUTING_SWEEP_SECONDS},
    "routing-offers-eligibility": {
        "task": "routing.offers_withdraw_ineligible",
        "schedule": settings.OFFER_ELIGIBILITY_SWEEP_SECONDS,
    },
    "routing-credentials-expiring": {
        "task": "routing.credentials_alert_expiring",
        "schedule": 24 * 3600.0,
    },
    "worklist-stale-claims": {"task": "worklist.claims_release_stale", "schedule": 60.0},
    "health-heartbeat": {"task": "health.tasks.heartbeat_record", "schedule": 30.0},
    "reporting-deliver-messages": {"task": "reporting.report_messages_sweep", "schedule": 15.0},
    "turnaround-sla-warnings": {
        "task": "turnaround.sla_warnings_sweep",
        "schedule": settings.SLA_WARNING_SWEEP_SECONDS,
    },
    "reporting-critical-overdue": {
        "task": "reporting.critical_overdue_sweep",
        "schedule": settings.CRITICAL_OVERDUE_SWEEP_SECONDS,
    },
    "review-sweep": {"task": "review.reviews_sweep", "schedule": 60.0},
    "network-rota-shifts": {
        "task": "network.rota_shifts_generate",
        "schedule": settings.ROTA_SWEEP_SECONDS,
    },
    "network-pauses-end": {"task": "network.pauses_end", "schedule": settings.PAUSE_SWEEP_SECONDS},
    "priors-fetches": {
        "task": "priors.prior_fetches_sweep",
        "schedule": settings.PRIORS_SWEEP_SECONDS,
    },
    "simulation-runs-recover": {"task": "simulation.runs_recover", "schedule": 60.0},
}


# Database connections in the worker: Celery's Django fixup closes them around
# every task unless told to reuse them, which costs a new PostgreSQL session
# (several ms) per task.  Reuse them, and before each task let Django drop a
# connection that is broken or older than CONN_MAX_AGE, as it does per request.
app.conf.CELERY_DB_REUSE_MAX = settings.WORKER_DB_REUSE_TASKS


@task_prerun.connect
def _database_connections_check(sender: "Task[Any, Any] | None" = None, **_: object) -> None:
    if sender is not None and getattr(sender.request, "is_eager", False):
        return  # run in the caller's process, maybe inside its transaction
    close_old_connections()
