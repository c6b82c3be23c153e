"""The Celery application: a worker and beat share this configuration."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "teleradiology.settings")

app = Celery("teleradiology")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Periodic sweeps: every durable timer lives in the database and is found by
# one of these, so a restarted worker or beat loses nothing.
from django.conf import settings  # noqa: E402

app.conf.beat_schedule = {
    "ingest-studies-mark-ready": {
        "task": "ingest.studies_mark_ready",
        "schedule": settings.STUDY_READY_SWEEP_SECONDS,
    },
    "routing-sweep": {"task": "routing.routing_sweep", "schedule": settings.ROUTING_SWEEP_SECONDS},
    "routing-credentials-expiring": {
        "task": "routing.credentials_alert_expiring",
        "schedule": 24 * 3600.0,
    },
    "worklist-stale-claims": {"task": "worklist.claims_release_stale", "schedule": 60.0},
    "health-heartbeat": {"task": "health.tasks.heartbeat_record", "schedule": 30.0},
}
