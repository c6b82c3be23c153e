"""Ingest integrity: what the gateway refuses, what it keeps as evidence, and what it
never does to a stored instance.  Called through the filing service with staged
files (the mutation fuzzer in tests/ingest/fuzz drives the same through real
associations)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from alerts.models import Alert
from ingest import status
from ingest.models import QuarantinedObject
from ingest.services import Request, instance_receive, staging_sweep
from ingest.storage import FileSystemStorage
from ingest.synthetic import StudySpec, make_instance, write_series
from studies.models import Instance
from tests.ingest.staged import receive

pytestmark = pytest.mark.django_db(transaction=True)

CT = "1.2.840.10008.5.1.4.1.1.2"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


@pytest.fixture
def storage(tmp_path):
    return FileSystemStorage(tmp_path / "store")


@pytest.fixture(autouse=True)
def _allow_writing_invalid_values(monkeypatch):
    # These tests build deliberately malformed objects, as a bad sender would.
    from pydicom import config

    monkeypatch.setattr(config.settings, "writing_validation_mode", config.IGNORE)


def stored_bytes(storage, sop_uid: str) -> bytes:
    with storage.open(Instance.objects.get(sop_instance_uid=sop_uid).storage_key) as fh:
        return fh.read()


def write(ds, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def assert_evidence(storage, result, sent: Path) -> QuarantinedObject:
    """One quarantine row for the refusal, with the status answered and the file kept."""
    row = QuarantinedObject.objects.latest("id")
    assert row.status == result.status
    assert row.reason == result.detail[:500]
    with storage.open(row.storage_key) as fh:
        assert fh.read() == sent.read_bytes()
    return row


def test_another_facility_reusing_a_stored_sop_instance_uid_changes_nothing(
    storage, facility_a, facility_b, tmp_path
):
    (first,) = write_series(StudySpec(patient_id="A-1"), tmp_path / "a", count=1)
    assert receive(storage, first, facility_a).status == status.SUCCESS
    good = stored_bytes(storage, pydicom.dcmread(first).SOPInstanceUID)

    # Facility B sends the same SOP Instance UID under a new study and another patient.
    original = pydicom.dcmread(first)
    intruder = make_instance(
        StudySpec(patient_id="B-9", patient_name="OTHER^PATIENT"),
        series_uid=str(generate_uid()),
        number=1,
    )
    intruder.SOPInstanceUID = original.SOPInstanceUID
    intruder.file_meta.MediaStorageSOPInstanceUID = original.SOPInstanceUID
    sent = write(intruder, tmp_path / "intruder.dcm")
    result = receive(storage, sent, facility_b, aet="FAC_B")

    assert result.status == status.INSTANCE_CONFLICT
    assert "already stored" in result.detail
    row = assert_evidence(storage, result, sent)
    assert row.facility == facility_b
    instance = Instance.objects.get(sop_instance_uid=original.SOPInstanceUID)
    assert instance.series.study.facility == facility_a
    assert instance.series.study.patient_id == "A-1"
    assert stored_bytes(storage, original.SOPInstanceUID) == good
    assert Alert.objects.filter(kind=Alert.Kind.INGEST_CONFLICT).count() == 1


def test_the_same_uid_into_another_study_of_the_same_facility_is_a_conflict(
    storage, facility_a, tmp_path
):
    (first,) = write_series(StudySpec(), tmp_path / "a", count=1)
    assert receive(storage, first, facility_a).status == status.SUCCESS
    original = pydicom.dcmread(first)
    other = make_instance(StudySpec(), series_uid=str(generate_uid()), number=1)
    other.SOPInstanceUID = original.SOPInstanceUID
    other.file_meta.MediaStorageSOPInstanceUID = original.SOPInstanceUID
    result = receive(storage, write(other, tmp_path / "o.dcm"), facility_a)
    assert result.status == status.INSTANCE_CONFLICT
    instance = Instance.objects.get(sop_instance_uid=original.SOPInstanceUID)
    assert instance.series.study.study_instance_uid == original.StudyInstanceUID


def test_a_broken_resend_of_a_good_instance_is_refused_and_the_good_file_kept(
    storage, facility_a, tmp_path
):
    (good,) = write_series(StudySpec(), tmp_path / "a", count=1)
    assert receive(storage, good, facility_a).status == status.SUCCESS
    sop = str(pydicom.dcmread(good).SOPInstanceUID)
    before = stored_bytes(storage, sop)

    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(good.read_bytes()[:-7000])  # cut inside the pixel data
    result = receive(storage, truncated, facility_a)
    assert result.status == status.CANNOT_UNDERSTAND
    assert "runs past the end" in result.detail
    assert_evidence(storage, result, truncated)
    assert stored_bytes(storage, sop) == before
    assert Instance.objects.get(sop_instance_uid=sop).replaced_count == 0


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("InstanceNumber", "2147483648"),
        ("SeriesNumber", "99999999999"),
        ("NumberOfFrames", "2147483648"),
    ],
)
def test_integers_beyond_32_bits_are_refused_with_evidence_not_retried(
    storage, facility_a, tmp_path, keyword, value
):
    ds = make_instance(StudySpec(), series_uid=str(generate_uid()), number=1, rows=8, columns=8)
    setattr(ds, keyword, value)
    sent = write(ds, tmp_path / "big.dcm")
    result = receive(storage, sent, facility_a)
    assert result.status == status.INVALID_VALUE, result.detail
    assert "32-bit" in result.detail
    assert_evidence(storage, result, sent)
    assert not Instance.objects.exists()


def test_nul_inside_a_uid_is_refused_with_evidence(storage, facility_a, tmp_path):
    ds = make_instance(StudySpec(), series_uid=str(generate_uid()), number=1, rows=8, columns=8)
    ds.StudyInstanceUID = "1.2.3\x004.5"
    sent = write(ds, tmp_path / "nul.dcm")
    result = receive(storage, sent, facility_a)
    assert result.status == status.INVALID_VALUE
    row = assert_evidence(storage, result, sent)
    assert "\x00" not in row.reason


def test_request_and_data_set_that_disagree_are_a_mismatch(storage, facility_a, tmp_path):
    (path,) = write_series(StudySpec(), tmp_path / "a", count=1)
    result = receive(storage, path, facility_a, sop_class=BASIC_TEXT_SR)
    assert result.status == status.DATASET_MISMATCH
    assert "Basic Text SR" not in result.detail and "CT Image Storage" in result.detail
    assert_evidence(storage, result, path)

    result = receive(storage, path, facility_a, sop_instance="1.2.3.4.5.6")
    assert result.status == status.DATASET_MISMATCH
    assert not Instance.objects.exists()


def test_two_study_instance_uids_in_one_data_set_are_refused(storage, facility_a, tmp_path):
    ds = make_instance(StudySpec(), series_uid=str(generate_uid()), number=1, rows=8, columns=8)
    ds.StudyInstanceUID = [str(generate_uid()), str(generate_uid())]
    result = receive(storage, write(ds, tmp_path / "two.dcm"), facility_a)
    assert result.status == status.INVALID_VALUE
    assert "takes one" in result.detail


def test_text_that_is_not_in_the_declared_character_set_is_refused(storage, facility_a, tmp_path):
    ds = make_instance(StudySpec(), series_uid=str(generate_uid()), number=1, rows=8, columns=8)
    ds.SpecificCharacterSet = "ISO_IR 192"
    sent = write(ds, tmp_path / "latin.dcm")
    # Put latin-1 bytes where UTF-8 was declared: "MÜLLER" with Ü as 0xDC.
    data = sent.read_bytes().replace(b"TEST^PATIENT", b"M\xdcLLER^PATIE")
    sent.write_bytes(data)
    result = receive(storage, sent, facility_a)
    assert result.status == status.INVALID_VALUE
    assert "utf" in result.detail.lower()


def test_native_pixel_data_of_the_wrong_length_is_refused(storage, facility_a, tmp_path):
    ds = make_instance(StudySpec(), series_uid=str(generate_uid()), number=1, rows=16, columns=16)
    ds.Columns = 17  # the pixel data no longer matches Rows x Columns
    result = receive(storage, write(ds, tmp_path / "w.dcm"), facility_a)
    assert result.status == status.PIXEL_DATA_INVALID
    assert "imply" in result.detail


def test_native_pixel_data_labelled_jpeg_is_refused(storage, facility_a, tmp_path):
    ds = make_instance(StudySpec(), series_uid=str(generate_uid()), number=1, rows=16, columns=16)
    native = write(ds, tmp_path / "native.dcm")
    # The same data set bytes behind a file meta that says JPEG baseline.
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info

    from tests.ingest.dcmtk import dataset_bytes

    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.50"
    buffer = DicomBytesIO()
    buffer.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buffer, ds.file_meta)
    sent = tmp_path / "labelled-jpeg.dcm"
    sent.write_bytes(buffer.getvalue() + dataset_bytes(native))
    result = receive(storage, sent, facility_a)
    assert result.status == status.PIXEL_DATA_INVALID
    assert "native pixel data under a compressed label" in result.detail


def test_an_object_beyond_the_facilitys_size_limit_is_refused_and_recorded(
    storage, facility_a, tmp_path
):
    facility_a.dicom_max_object_bytes = 10_000
    facility_a.save(update_fields=["dicom_max_object_bytes"])
    (path,) = write_series(StudySpec(), tmp_path / "a", count=1, rows=128, columns=128)
    result = receive(storage, path, facility_a)
    assert result.status == status.TOO_LARGE
    row = QuarantinedObject.objects.get()
    assert row.status == status.TOO_LARGE and row.size_bytes == path.stat().st_size
    assert row.storage_key == ""  # recorded, not kept: the limit protects the disk
    assert not list(storage.staging_dir().iterdir())
    assert not Instance.objects.exists()


def test_a_private_element_beyond_the_limit_is_refused(storage, facility_a, tmp_path, settings):
    settings.INGEST_MAX_PRIVATE_ELEMENT_BYTES = 1 << 20
    ds = make_instance(StudySpec(), series_uid=str(generate_uid()), number=1, rows=8, columns=8)
    block = ds.private_block(0x0011, "HUGE VENDOR", create=True)
    block.add_new(0x01, "OB", b"\x00" * (2 << 20))
    result = receive(storage, write(ds, tmp_path / "huge.dcm"), facility_a)
    assert result.status == status.TOO_LARGE
    assert "private element" in result.detail


def test_the_staging_sweep_removes_what_aborted_transfers_left(storage, tmp_path):
    partial = storage.staging_dir() / "tmp_partial_upload"
    partial.write_bytes(b"\x00" * 1000)
    old = time.time() - 3600
    os.utime(partial, (old, old))
    fresh = storage.staging_dir() / "tmp_in_progress"
    fresh.write_bytes(b"\x00" * 10)
    from ingest.selectors import staging_state

    assert staging_state(storage=storage)[0] == 2
    assert staging_sweep(storage=storage, max_age_seconds=300) == 1
    assert not partial.exists() and fresh.exists()
    count, oldest = staging_state(storage=storage)
    assert count == 1 and oldest < 300


@pytest.mark.parametrize("bad", ["", "   ", "1." + "2" * 80, "1.2.abc"])
def test_a_request_with_an_invalid_affected_sop_instance_uid_is_answered_and_recorded(
    storage, facility_a, tmp_path, bad
):
    (path,) = write_series(StudySpec(), tmp_path / "a", count=1)
    result = receive(storage, path, facility_a, sop_instance=bad)
    assert result.status == status.REQUEST_INVALID
    assert "Affected SOP Instance UID" in result.detail
    assert_evidence(storage, result, path)
    assert not Instance.objects.exists()


def test_a_study_missing_a_refused_object_is_flagged_for_its_reader(storage, facility_a, tmp_path):
    from studies.models import Study

    spec = StudySpec()
    first, second, third = write_series(spec, tmp_path / "a", count=3)
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(first.read_bytes()[:-5000])
    # Its first object is broken: refused before the study exists...
    assert receive(storage, broken, facility_a).status == status.CANNOT_UNDERSTAND
    # ...and the study, created by the next one, starts flagged.
    assert receive(storage, second, facility_a).status == status.SUCCESS
    assert Study.objects.get(study_instance_uid=spec.study_uid).refused_instance_count == 1
    broken.write_bytes(third.read_bytes()[:-5000])
    assert receive(storage, broken, facility_a).status == status.CANNOT_UNDERSTAND
    study = Study.objects.get(study_instance_uid=spec.study_uid)
    assert study.refused_instance_count == 2


def test_the_quota_refuses_new_objects_once_used_up_and_alerts_before(
    storage, facility_a, tmp_path, settings
):
    from ingest.services import storage_usage_measure

    paths = write_series(StudySpec(), tmp_path / "a", count=3, rows=64, columns=64)
    size = paths[0].stat().st_size
    # The files differ by a few bytes (their random UIDs' lengths): the usage is
    # what was stored, the two files' own sizes.
    used = sum(p.stat().st_size for p in paths[:2])
    facility_a.dicom_storage_quota_bytes = int(size * 2.1)
    facility_a.save(update_fields=["dicom_storage_quota_bytes"])
    for path in paths[:2]:
        assert receive(storage, path, facility_a).status == status.SUCCESS
    assert storage_usage_measure()[facility_a.pk] == used
    warning = Alert.objects.get(kind=Alert.Kind.STORAGE_QUOTA)
    assert "nearly used" in warning.message

    from ingest.selectors import facility_quota_left as quota_left

    left = quota_left(facility_a)
    assert left == int(size * 2.1) - used
    staged = storage.staging_dir() / "third.part"
    shutil.copy(paths[2], staged)
    ds = pydicom.dcmread(paths[2], stop_before_pixels=True)
    result = instance_receive(
        storage=storage,
        staged_path=staged,
        request=Request(
            facility_id=facility_a.pk,
            calling_ae="FAC_A",
            sop_class_uid=ds.SOPClassUID,
            sop_instance_uid=ds.SOPInstanceUID,
            quota_left_bytes=left,
        ),
    )
    assert result.status == status.QUOTA_EXCEEDED
    assert QuarantinedObject.objects.get().storage_key == ""
    assert Instance.objects.count() == 2


def test_the_orphan_sweep_keeps_unreferenced_stored_files_in_quarantine(
    storage, facility_a, tmp_path
):
    from ingest.services import orphans_sweep

    (path,) = write_series(StudySpec(), tmp_path / "a", count=1)
    assert receive(storage, path, facility_a).status == status.SUCCESS
    instance = Instance.objects.get()
    # A file put in place whose row was never written (a filing cut short).
    orphan_key = instance.storage_key.replace(instance.sop_instance_uid, "1.2.3.999")
    orphan = storage.path(orphan_key)
    orphan.write_bytes(b"left behind")
    old = time.time() - 7200
    os.utime(orphan, (old, old))
    os.utime(storage.path(instance.storage_key), (old, old))

    assert orphans_sweep(storage=storage, older_than_seconds=3600) == 1
    assert not orphan.exists()
    assert storage.exists(instance.storage_key)  # a referenced file is left alone
    row = QuarantinedObject.objects.get()
    assert row.status == status.NOT_ANSWERED and row.facility == facility_a
    with storage.open(row.storage_key) as fh:
        assert fh.read() == b"left behind"
    # The quarantine file now has its row: a second sweep finds nothing.
    os.utime(storage.path(row.storage_key), (old, old))
    assert orphans_sweep(storage=storage, older_than_seconds=3600) == 0


@pytest.mark.parametrize("index", [275, 3093, 4964, 6170, 7506])
def test_deflated_values_running_past_the_inflated_end_are_refused(
    storage, facility_a, tmp_path, index
):
    """Cases of seed 7 that bench/ingest/fuzz.py's 10,000-case run found accepted: a
    length inside a deflated data set that runs past its inflated end."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import UID
    from pynetdicom.dsutils import create_file_meta

    from tests.ingest.fuzz.mutate import make_case

    case = make_case(7, index)
    assert case.transfer_syntax == "1.2.840.10008.1.2.1.99"
    buffer = DicomBytesIO()
    buffer.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(
        buffer,
        create_file_meta(
            sop_class_uid=UID(case.sop_class),
            sop_instance_uid=UID(case.sop_instance),
            transfer_syntax=UID(case.transfer_syntax),
        ),
    )
    sent = tmp_path / "deflated.dcm"
    sent.write_bytes(buffer.getvalue() + case.dataset)
    result = receive(
        storage, sent, facility_a, sop_class=case.sop_class, sop_instance=case.sop_instance
    )
    assert result.status == status.CANNOT_UNDERSTAND
    assert "past the end of the inflated data set" in result.detail
    assert_evidence(storage, result, sent)


def test_a_value_the_database_still_refuses_is_quarantined_from_where_it_was_put(
    storage, facility_a, tmp_path, monkeypatch
):
    """Values are checked first; should the database refuse one anyway (after the file
    was put), the object is kept in quarantine, not retried and not orphaned."""
    from django.db import DataError

    from studies.models import Instance as InstanceModel

    def refuse(*args, **kwargs):
        raise DataError("value out of range")

    (path,) = write_series(StudySpec(), tmp_path / "a", count=1)
    monkeypatch.setattr(InstanceModel.objects, "create", refuse)
    result = receive(storage, path, facility_a)
    assert result.status == status.INVALID_VALUE
    assert_evidence(storage, result, path)
    assert not list((storage.root / "studies").rglob("*.dcm"))  # nothing orphaned
