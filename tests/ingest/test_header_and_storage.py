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
    key = instance_key(study_uid="1.2", series_uid="1.2.3", sop_uid="1.2.3.4", sha256="ab" * 32)
    storage.put_file(staged, key)
    assert not staged.exists()
    with storage.open(key) as fh:
        assert fh.read() == b"object"
    # The same key again (identical content) keeps exactly one file.
    staged.write_bytes(b"object")
    storage.put_file(staged, key)
    with storage.open(key) as fh:
        assert fh.read() == b"object"
    # Other content has another key: a version never overwrites another.
    other = instance_key(study_uid="1.2", series_uid="1.2.3", sop_uid="1.2.3.4", sha256="cd" * 32)
    assert other != key


@pytest.mark.parametrize("key", ["../x", "/etc/passwd", "a/../../b", "a//b", ""])
def test_storage_refuses_keys_that_could_escape_the_root(tmp_path, key):
    with pytest.raises(ValueError, match="unsafe"):
        FileSystemStorage(tmp_path).path(key)


def _deflated(ds: Dataset, path: Path) -> Path:
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return path


def test_a_deflated_object_is_read(tmp_path):
    ds = make_instance(
        StudySpec(priority="STAT"), series_uid="1.2.3", number=1, rows=64, columns=64
    )
    header = read_header(_deflated(ds, tmp_path / "d.dcm"))
    assert header.priority == Priority.STAT
    assert header.transfer_syntax_uid == "1.2.840.10008.1.2.1.99"
    assert header.study_instance_uid == ds.StudyInstanceUID


def _write_bomb(path: Path, zeros: int) -> None:
    """A deflated object whose private element inflates to ``zeros`` bytes, written
    streaming so the test itself never holds it in memory."""
    import zlib

    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    ds = make_instance(StudySpec(), series_uid="1.2.3", number=1, rows=4, columns=4)

    def encode(part: Dataset) -> bytes:
        buffer = DicomBytesIO()
        buffer.is_little_endian, buffer.is_implicit_VR = True, False
        write_dataset(buffer, part)
        return buffer.getvalue()

    early = Dataset()
    late = Dataset()
    for element in ds:
        (early if element.tag.group < 0x0009 else late).add(element)
    # (0009,1010) OB with a 32-bit length: tag, "OB", 2 reserved bytes, length.
    element_header = b"\x09\x00\x10\x10OB\x00\x00" + zeros.to_bytes(4, "little")
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    with path.open("wb") as out:
        out.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(out, ds.file_meta)
        deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        out.write(deflater.compress(encode(early) + element_header))
        block = bytes(1 << 20)
        for _ in range(zeros // len(block)):
            out.write(deflater.compress(block))
        out.write(deflater.compress(encode(late)))
        out.write(deflater.flush())


def test_a_deflate_bomb_is_refused_with_bounded_memory(tmp_path, monkeypatch):
    import resource

    from ingest import header as header_module

    monkeypatch.setattr(header_module, "DEFLATED_HEADER_LIMIT", 4 * 1024 * 1024)
    path = tmp_path / "bomb.dcm"
    _write_bomb(path, zeros=512 * 1024 * 1024)
    assert path.stat().st_size < 2 * 1024 * 1024  # ~0.5 MB that inflates to 512 MB
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(Unfileable, match="decompression bomb"):
        read_header(path)
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kb < 64 * 1024, f"peak memory grew by {grown_kb} KB"
