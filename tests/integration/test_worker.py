"""The background machinery runs for real: a worker process takes a task from the
broker and writes to the same database the web process reads."""

import time

import pytest

from health.models import Heartbeat
from health.tasks import heartbeat_record

pytestmark = pytest.mark.worker


def test_a_real_worker_runs_a_task_from_the_broker(celery_worker_process):
    name = f"integration-{celery_worker_process.queue}"
    heartbeat_record.apply_async(args=[name], queue=celery_worker_process.queue)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        beat = Heartbeat.objects.filter(name=name).first()
        if beat is not None:
            break
        time.sleep(0.2)
    assert beat is not None, "the worker did not record the heartbeat within 30 s"


def test_healthz_reports_the_worker_heartbeat(celery_worker_process, client):
    heartbeat_record.apply_async(args=["worker"], queue=celery_worker_process.queue)
    deadline = time.monotonic() + 30
    body = {}
    while time.monotonic() < deadline:
        body = client.get("/healthz").json()
        if body["worker_heartbeat_age_seconds"] is not None:
            break
        time.sleep(0.2)
    assert body["database"] == "ok"
    assert 0 <= body["worker_heartbeat_age_seconds"] < 30
