"""Late images tell the reader who holds the study: once per study and reader per few
minutes however many arrive, through the gateway's filing path (the staged files of
the C-STORE handler, and dcmtk's storescu against the real listener)."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from alerts.models import Alert
from ingest.services import LATE_IMAGES_ALERT_WINDOW
from ingest.storage import FileSystemStorage
from ingest.synthetic import StudySpec, write_series
from studies.models import Study
from studies.services import study_transition
from studies.states import StudyStatus as S
from tests import factories as f
from tests.ingest.dcmtk import storescu
from tests.ingest.staged import receive

# Inside one alert window whatever the wall clock (14:00:30 to 14:04:30).
T0 = dt.datetime(2026, 6, 1, 14, 0, 30, tzinfo=dt.UTC)


@pytest.fixture
def storage(tmp_path):
    return FileSystemStorage(tmp_path / "store")


def _reader(facility):
    return f.RadiologistFactory(
        user=f.UserFactory(username="dr_holder", email="holder@example.test"),
        reading_group=facility.reading_group,
    )


def _held(study_uid: str, reader, *, to=S.CLAIMED) -> Study:
    """The received study made ready, offered and claimed by ``reader`` (fixtures)."""
    study = Study.objects.get(study_instance_uid=study_uid)
    for status in (S.READY, S.OFFERED):
        study_transition(study_id=study.pk, to_status=status)
    study_transition(study_id=study.pk, to_status=S.CLAIMED, assigned_radiologist=reader)
    if to == S.PRELIMINARY:
        study_transition(study_id=study.pk, to_status=S.PRELIMINARY)
    return Study.objects.get(pk=study.pk)


@pytest.mark.django_db(transaction=True)
def test_a_burst_of_300_late_images_alerts_the_holder_once_per_window(
    storage, facility_a, tmp_path
):
    spec = StudySpec()
    paths = write_series(spec, tmp_path / "s", count=302, rows=16, columns=16)
    reader = _reader(facility_a)
    with time_machine.travel(T0, tick=False):
        for path in paths[:2]:
            assert receive(storage, path, facility_a).outcome == "stored"
        study = _held(spec.study_uid, reader)
        for path in paths[2:]:
            assert receive(storage, path, facility_a).outcome == "stored"

    study.refresh_from_db()
    assert study.late_instance_count == 300
    alert = Alert.objects.get(kind=Alert.Kind.LATE_IMAGES)
    assert alert.recipient == reader.user and alert.study_id == study.pk
    assert alert.reading_group == facility_a.reading_group
    assert "which you hold" in alert.message and "image(s) came after" in alert.message
    # Images a window later tell them again, once.
    (more,) = write_series(spec, tmp_path / "later", count=1, rows=16, columns=16)
    with time_machine.travel(T0 + LATE_IMAGES_ALERT_WINDOW, tick=False):
        assert receive(storage, more, facility_a).outcome == "stored"
    assert Alert.objects.filter(kind=Alert.Kind.LATE_IMAGES, study=study).count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_preliminary_study_alerts_its_reader_and_an_unclaimed_one_nobody(
    storage, facility_a, tmp_path
):
    reader = _reader(facility_a)
    prelim, waiting = StudySpec(accession="P1"), StudySpec(accession="W1")
    prelim_paths = write_series(prelim, tmp_path / "p", count=2, rows=16, columns=16)
    waiting_paths = write_series(waiting, tmp_path / "w", count=2, rows=16, columns=16)
    receive(storage, prelim_paths[0], facility_a)
    receive(storage, waiting_paths[0], facility_a)
    _held(prelim.study_uid, reader, to=S.PRELIMINARY)
    study_transition(
        study_id=Study.objects.get(study_instance_uid=waiting.study_uid).pk, to_status=S.READY
    )

    receive(storage, prelim_paths[1], facility_a)
    receive(storage, waiting_paths[1], facility_a)

    alert = Alert.objects.get(kind=Alert.Kind.LATE_IMAGES)
    assert alert.study.study_instance_uid == prelim.study_uid
    assert alert.recipient == reader.user
    assert "your preliminary report" in alert.message
    assert Study.objects.get(study_instance_uid=waiting.study_uid).late_instance_count == 1


@pytest.mark.worker
def test_late_images_through_the_dicom_gateway_alert_the_holder_once(transactional_db, tmp_path):
    from tests.processes import start_listener, stop_listener

    facility = f.FacilityFactory(name="Gateway Hospital", ae_titles=["GW_CT"])
    reader = _reader(facility)
    spec = StudySpec(accession="GW-LATE")
    first = write_series(spec, tmp_path / "first", count=2, rows=16, columns=16)
    late = write_series(spec, tmp_path / "late", count=40, rows=16, columns=16)
    # The listener runs the tasks its filing hands over inline (no broker between).
    listener = start_listener(tmp_path, CELERY_TASK_ALWAYS_EAGER="1")
    try:
        sent = storescu(listener.port, first, aet="GW_CT")
        assert sent.returncode == 0, sent.stdout + sent.stderr
        study = _held(spec.study_uid, reader)
        sent = storescu(listener.port, late, aet="GW_CT")
        assert sent.returncode == 0, sent.stdout + sent.stderr
    finally:
        stop_listener(listener)
    study.refresh_from_db()
    assert study.late_instance_count == 40
    alerts = list(Alert.objects.filter(kind=Alert.Kind.LATE_IMAGES))
    # One window, or two if the send straddled a window's edge: never one per image.
    assert 1 <= len(alerts) <= 2, listener.log()
    assert {(a.study_id, a.recipient_id) for a in alerts} == {(study.pk, reader.user_id)}
