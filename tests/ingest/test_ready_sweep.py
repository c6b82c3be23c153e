"""A study is ready once its quiet period passes: found by a durable sweep, once."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
import time_machine
from django.db import connection

from alerts.models import Alert
from ingest import services
from ingest.tasks import studies_mark_ready, study_check_images_after_report
from studies.models import Study, StudyTransition
from studies.services import study_transition
from studies.states import StudyStatus as S
from tests import factories as f

T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


@pytest.mark.django_db
def test_a_study_becomes_ready_only_after_its_quiet_period():
    study = f.StudyFactory(received_at=T0)
    assert services.studies_mark_ready(quiet_seconds=10, now=T0 + dt.timedelta(seconds=9)) == []
    assert services.studies_mark_ready(quiet_seconds=10, now=T0 + dt.timedelta(seconds=10)) == [
        study.pk
    ]
    study.refresh_from_db()
    assert study.status == S.READY
    assert study.ready_at == T0 + dt.timedelta(seconds=10)
    # A second sweep finds nothing more to do.
    assert services.studies_mark_ready(quiet_seconds=10, now=T0 + dt.timedelta(seconds=60)) == []
    assert StudyTransition.objects.filter(study=study, to_status=S.READY).count() == 1


@pytest.mark.django_db
def test_a_new_instance_restarts_the_quiet_period():
    study = f.StudyFactory(received_at=T0)
    Study.objects.filter(pk=study.pk).update(last_instance_at=T0 + dt.timedelta(seconds=8))
    assert services.studies_mark_ready(quiet_seconds=10, now=T0 + dt.timedelta(seconds=12)) == []
    assert services.studies_mark_ready(quiet_seconds=10, now=T0 + dt.timedelta(seconds=18)) == [
        study.pk
    ]


@pytest.mark.django_db
def test_the_beat_task_uses_the_configured_quiet_period(settings):
    settings.STUDY_QUIET_SECONDS = 5
    f.StudyFactory(received_at=T0)
    with time_machine.travel(T0 + dt.timedelta(seconds=4), tick=False):
        assert studies_mark_ready() == 0
    with time_machine.travel(T0 + dt.timedelta(seconds=6), tick=False):
        assert studies_mark_ready() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_sweeps_mark_each_study_ready_exactly_once():
    studies = [f.StudyFactory(received_at=T0) for _ in range(30)]
    barrier = threading.Barrier(4)
    found: list[int] = []

    def sweep():
        try:
            barrier.wait()
            for _ in range(5):
                found.extend(
                    services.studies_mark_ready(
                        quiet_seconds=1, now=T0 + dt.timedelta(seconds=5), batch_size=7
                    )
                )
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(found) == sorted(s.pk for s in studies)
    assert StudyTransition.objects.filter(to_status=S.READY).count() == 30


@pytest.mark.worker
def test_two_real_workers_sweeping_at_once_mark_a_study_ready_once(tmp_path, transactional_db):
    from tests.processes import _stop, start_worker

    study = f.StudyFactory(received_at=T0)
    workers = [start_worker(tmp_path, STUDY_QUIET_SECONDS="1") for _ in range(2)]
    try:
        results = [studies_mark_ready.apply_async(queue=w.queue) for w in workers]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if Study.objects.get(pk=study.pk).status == S.READY:
                break
            time.sleep(0.2)
        time.sleep(1.5)  # let the slower worker finish its sweep too
        assert results  # both were sent
    finally:
        for w in workers:
            _stop(w.process)
        connection.close()
    assert Study.objects.get(pk=study.pk).status == S.READY
    assert StudyTransition.objects.filter(study=study, to_status=S.READY).count() == 1


@pytest.mark.django_db
def test_images_after_a_final_report_alert_the_admins_once(
    group_admin, facility_a, mailoutbox, django_capture_on_commit_callbacks
):
    group_admin.email = "admin@example.test"
    group_admin.save()
    reader = f.RadiologistFactory(reading_group=facility_a.reading_group)
    study = f.StudyFactory(facility=facility_a)
    for target in (S.READY, S.OFFERED):
        study_transition(study_id=study.pk, to_status=target)
    study_transition(study_id=study.pk, to_status=S.CLAIMED, assigned_radiologist=reader)
    study_transition(study_id=study.pk, to_status=S.FINAL)
    Study.objects.filter(pk=study.pk).update(late_instance_count=1)

    with django_capture_on_commit_callbacks(execute=True):
        assert study_check_images_after_report(study.pk) is True
        assert study_check_images_after_report(study.pk) is False  # same cause: once
    alert = Alert.objects.get()
    assert alert.kind == "images_after_final" and alert.study_id == study.pk
    assert alert.reading_group == facility_a.reading_group
    assert [m.to for m in mailoutbox] == [["admin@example.test"]]


@pytest.mark.django_db
def test_images_after_ready_but_before_final_raise_no_alert(facility_a):
    study = f.StudyFactory(facility=facility_a)
    study_transition(study_id=study.pk, to_status=S.READY)
    assert study_check_images_after_report(study.pk) is False
    assert not Alert.objects.exists()


@pytest.mark.django_db
def test_ready_studies_are_enqueued_a_batch_per_message_most_urgent_first(
    settings, monkeypatch, django_capture_on_commit_callbacks
):
    from teleradiology.celery import app

    settings.ROUTING_BATCH_SIZE = 3
    sent: list[list[int]] = []
    # The broker is outside the system: record what would be sent to it.
    monkeypatch.setitem(app.conf, "task_always_eager", False)
    monkeypatch.setattr(
        app,
        "send_task",
        lambda name, args, **kw: sent.append(args[0]) if name == "routing.route_studies" else None,
    )
    routine = [f.StudyFactory(received_at=T0, priority=3) for _ in range(4)]
    stat = [f.StudyFactory(received_at=T0, priority=1) for _ in range(2)]
    urgent = f.StudyFactory(received_at=T0, priority=2)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        due = services.studies_mark_ready(quiet_seconds=1, now=T0 + dt.timedelta(seconds=5))
    assert len(due) == 7
    assert sent == []  # nothing before the ready states are committed
    for callback in callbacks:
        callback()
    assert [len(m) for m in sent] == [3, 3, 1]
    assert sorted(x for m in sent for x in m) == sorted(due)
    assert set(sent[0]) == {stat[0].pk, stat[1].pk, urgent.pk}
    assert set(sent[1]) | set(sent[2]) == {s.pk for s in routine}
