"""Every Celery task of ours with its effective options, as a worker runs it: the
base class (teleradiology.celery.AppTask) gives the defaults, each task states what
differs.  A change to the base, or to a task, shows here as a changed row."""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest
from django.db import DatabaseError

from teleradiology.celery import AppTask, app


class Options(NamedTuple):
    max_retries: int
    soft_time_limit: int
    time_limit: int
    acks_late: bool
    # The longest wait between automatic retries of a DatabaseError (exponential
    # backoff, jittered); None: never retried automatically.
    retry_backoff_max: int | None


NOT_RETRIED = None
EXPECTED: dict[str, Options] = {
    "health.tasks.heartbeat_record": Options(3, 10, 20, False, NOT_RETRIED),
    "ingest.studies_mark_ready": Options(3, 20, 30, False, 600),
    "ingest.study_check_images_after_report": Options(5, 20, 30, True, 600),
    "ingest.quarantine_alert": Options(5, 20, 30, True, 600),
    "ingest.storage_usage_sweep": Options(3, 120, 180, False, NOT_RETRIED),
    "ingest.orphans_sweep": Options(3, 1800, 1900, False, NOT_RETRIED),
    "ingest.studies_dicom_json_build": Options(3, 300, 330, True, 600),
    "network.pauses_end": Options(3, 50, 60, True, 600),
    "network.rota_shifts_generate": Options(3, 300, 330, True, 600),
    "priors.study_priors_fetch": Options(3, 540, 600, True, 600),
    "priors.prior_fetches_sweep": Options(3, 50, 60, False, 600),
    "reporting.deliver_message": Options(5, 75, 90, True, 60),
    "reporting.report_messages_sweep": Options(3, 50, 60, False, 600),
    "reporting.critical_overdue_sweep": Options(3, 50, 60, True, 600),
    "review.peer_review_consider": Options(5, 30, 45, True, 600),
    "review.reviews_sweep": Options(3, 50, 60, False, 600),
    "routing.route_studies": Options(8, 30, 60, True, 60),
    "routing.route_study": Options(8, 30, 60, True, 60),
    "routing.reroute_study": Options(8, 30, 60, True, 600),
    "routing.routing_sweep": Options(3, 50, 60, False, 600),
    "routing.offers_withdraw_ineligible": Options(3, 50, 60, False, 600),
    "routing.credentials_alert_expiring": Options(3, 120, 180, False, NOT_RETRIED),
    "simulation.simulation_run": Options(3, 1800, 1860, True, 600),
    "simulation.runs_recover": Options(3, 50, 60, False, 600),
    "turnaround.sla_warnings_sweep": Options(3, 25, 30, True, 600),
    "worklist.claims_release_stale": Options(3, 50, 60, False, 600),
}


def our_tasks() -> dict[str, Any]:
    app.loader.import_default_modules()  # every app's tasks.py, as a worker does
    return {name: task for name, task in app.tasks.items() if not name.startswith("celery.")}


def test_every_task_of_ours_is_in_the_table() -> None:
    assert sorted(our_tasks()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_effective_options(name: str) -> None:
    task = our_tasks()[name]
    assert isinstance(task, AppTask)
    expected = EXPECTED[name]
    assert (
        task.max_retries,
        task.soft_time_limit,
        task.time_limit,
        bool(task.acks_late),
    ) == expected[:4]
    # No task names a queue of its own: all go to the default one.
    assert getattr(task, "queue", None) is None
    assert app.amqp.router.route({}, name, (), {})["queue"].name == "celery"
    if expected.retry_backoff_max is NOT_RETRIED:
        assert tuple(task.autoretry_for) == ()
        assert not hasattr(task, "_orig_run")  # Celery did not wrap it for retries
    else:
        assert tuple(task.autoretry_for) == (DatabaseError,)
        assert hasattr(task, "_orig_run")  # wrapped: a DatabaseError is retried
        assert task.retry_backoff is True
        assert task.retry_jitter is True
        assert task.retry_backoff_max == expected.retry_backoff_max
