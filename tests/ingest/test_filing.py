"""Filing rules of the gateway's service, called directly with staged files."""

from __future__ import annotations

import pytest

from ingest import status
from ingest.models import QuarantinedObject
from ingest.storage import FileSystemStorage
from ingest.synthetic import StudySpec, write_series
from studies.models import Instance, Study
from studies.services import study_transition
from studies.states import StudyStatus as S
from tests.ingest.staged import receive

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def storage(tmp_path):
    return FileSystemStorage(tmp_path / "store")


def test_a_study_uid_sent_by_another_facility_is_quarantined(
    storage, facility_a, facility_b, tmp_path
):
    first, second = write_series(StudySpec(), tmp_path / "s", count=2)
    assert receive(storage, first, facility_a).status == status.SUCCESS
    result = receive(storage, second, facility_b, aet="FAC_B")
    assert result.status == status.INSTANCE_CONFLICT
    row = QuarantinedObject.objects.get()
    assert "belongs to another facility" in row.reason
    assert row.facility == facility_b and row.status == status.INSTANCE_CONFLICT
    assert storage.exists(row.storage_key)
    assert Instance.objects.count() == 1
    # The sending facility's group admins are told, once.
    from alerts.models import Alert

    assert Alert.objects.filter(kind=Alert.Kind.INGEST_CONFLICT).count() == 1


def test_instances_after_ready_are_added_and_flagged(storage, facility_a, tmp_path):
    paths = write_series(StudySpec(), tmp_path / "s", count=3)
    for path in paths[:2]:
        assert receive(storage, path, facility_a).status == status.SUCCESS
    study = Study.objects.get()
    study_transition(study_id=study.pk, to_status=S.READY)
    assert receive(storage, paths[2], facility_a).outcome == "stored"
    study.refresh_from_db()
    assert study.late_instance_count == 1
    assert list(
        Instance.objects.order_by("instance_number").values_list("after_ready", flat=True)
    ) == [False, False, True]


def test_duplicates_do_not_count_as_late_images(storage, facility_a, tmp_path):
    (path,) = write_series(StudySpec(), tmp_path / "s", count=1)
    receive(storage, path, facility_a)
    study_transition(study_id=Study.objects.get().pk, to_status=S.READY)
    assert receive(storage, path, facility_a).outcome == "duplicate"
    assert Study.objects.get().late_instance_count == 0


def test_a_storage_failure_is_out_of_resources_and_writes_no_row(
    storage, facility_a, tmp_path, monkeypatch
):
    from ingest.storage import StorageError

    def full_disk(*args, **kwargs):
        raise StorageError("cannot store: No space left on device")

    monkeypatch.setattr(storage, "put_file", full_disk)
    (path,) = write_series(StudySpec(), tmp_path / "s", count=1)
    result = receive(storage, path, facility_a)
    assert result.status == status.OUT_OF_RESOURCES
    assert not Instance.objects.exists()
