"""Header reading and storage: untrusted values are validated before use."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from ingest.header import Unfileable, read_header
from ingest.storage import FileSystemStorage, instance_key
from ingest.synthetic import StudySpec, make_instance
from network.models import Priority


@pytest.fixture(autouse=True)
def _allow_writing_invalid_values(monkeypatch):
    # These tests build deliberately malformed objects, as a bad sender would.
    from pydicom import config

    monkeypatch.setattr(config.settings, "writing_validation_mode", config.IGNORE)


def _write(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize(
    ("word", "priority"),
    [
        ("STAT", Priority.STAT),
        ("HIGH", Priority.URGENT),
        ("ROUTINE", Priority.ROUTINE),
        ("LOW", Priority.ROUTINE),
        (None, None),
        ("WHENEVER", None),
    ],
)
def test_priority_comes_from_requested_procedure_priority(tmp_path, word, priority):
    ds = make_instance(StudySpec(priority=word), series_uid="1.2.3", number=1, rows=4, columns=4)
    assert read_header(_write(ds, tmp_path / "a.dcm")).priority == priority


def test_priority_inside_the_request_attributes_sequence(tmp_path):
    ds = make_instance(StudySpec(), series_uid="1.2.3", number=1, rows=4, columns=4)
    item = Dataset()
    item.RequestedProcedurePriority = "STAT"
    ds.RequestAttributesSequence = [item]
    assert read_header(_write(ds, tmp_path / "a.dcm")).priority == Priority.STAT


def test_malformed_values_are_clamped_not_fatal(tmp_path):
    ds = make_instance(StudySpec(), series_uid="1.2.3", number=1, rows=4, columns=4)
    ds.PatientBirthDate = "19xx0101"
    ds.AccessionNumber = "A" * 16
    ds.PatientSex = "Q"
    header = read_header(_write(ds, tmp_path / "a.dcm"))
    assert header.patient_birth_date is None
    assert header.patient_sex == ""
    assert header.procedure_code == "70450"


@pytest.mark.parametrize("bad", ["1.2.abc", "../../../etc", "1." * 40 + "1"])
def test_an_invalid_uid_is_unfileable(tmp_path, bad):
    ds = make_instance(StudySpec(), series_uid="1.2.3", number=1, rows=4, columns=4)
    ds.StudyInstanceUID = bad
    with pytest.raises(Unfileable, match="invalid StudyInstanceUID"):
        read_header(_write(ds, tmp_path / "a.dcm"))


def test_a_non_dicom_file_is_unfileable(tmp_path):
    path = tmp_path / "junk.dcm"
    path.write_bytes(b"hello" * 100)
    with pytest.raises(Unfileable):
        read_header(path)


def test_a_sop_instance_uid_that_disagrees_with_the_request_is_unfileable(tmp_path):
    ds = make_instance(StudySpec(), series_uid="1.2.3", number=1, rows=4, columns=4)
    with pytest.raises(Unfileable, match="differs"):
        read_header(_write(ds, tmp_path / "a.dcm"), expected_sop_instance_uid="9.9.9")


def test_storage_put_is_a_rename_into_place(tmp_path):
    storage = FileSystemStorage(tmp_path / "root")
    staged = storage.staging_dir() / "incoming.dcm"
    staged.write_bytes(b"object")
    key = instance_key(study_uid="1.2", series_uid="1.2.3", sop_uid="1.2.3.4")
    storage.put_file(staged, key)
    assert not staged.exists()
    with storage.open(key) as fh:
        assert fh.read() == b"object"
    # Replacing keeps exactly one file with the newest content.
    staged.write_bytes(b"newer")
    storage.put_file(staged, key)
    with storage.open(key) as fh:
        assert fh.read() == b"newer"


@pytest.mark.parametrize("key", ["../x", "/etc/passwd", "a/../../b", "a//b", ""])
def test_storage_refuses_keys_that_could_escape_the_root(tmp_path, key):
    with pytest.raises(ValueError, match="unsafe"):
        FileSystemStorage(tmp_path).path(key)
