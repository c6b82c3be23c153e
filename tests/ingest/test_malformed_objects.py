"""Objects that must not be filed as good instances, sent byte for byte through real
associations to the listener process: what the sender is answered, what the
quarantine row says, and that nothing is stored as an instance.

The decisions (docs/dicom-conformance.md, "Objects refused"): every defect below
makes the images undisplayable or the object's identity uncertain, so each is
refused with a final failure status (never 0xA7xx, which would make the sender
retry for ever) and kept in quarantine with a reason that names the defect; the
study it belongs to, once it exists, is flagged as missing refused objects.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import generate_uid

from ingest import status
from ingest.models import QuarantinedObject
from ingest.synthetic import StudySpec, make_instance
from studies.models import Instance, Study
from tests import factories as f
from tests.ingest.fuzz.sender import StoreSender
from tests.processes import Listener

pytestmark = pytest.mark.worker

CALLING_AE = "MAL_CT"
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"


@pytest.fixture
def facility(transactional_db: Any) -> Any:
    return f.FacilityFactory(name="Malformed Hospital", ae_titles=[CALLING_AE])  # type: ignore[no-untyped-call]


def ct(rows: int = 16, columns: int = 16) -> Dataset:
    return make_instance(
        StudySpec(patient_id="MAL-1"),
        series_uid=str(generate_uid()),
        number=1,
        rows=rows,
        columns=columns,
    )


def encode(ds: Dataset, *, implicit: bool) -> bytes:
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, implicit
    write_dataset(buffer, ds)
    return buffer.getvalue()


def pixel_offset(data: bytes) -> int:
    """Offset of the (7FE0,0010) element's header in an encoded data set."""
    at = data.rfind(b"\xe0\x7f\x10\x00")
    assert at > 0
    return at


def truncated_pixels() -> tuple[bytes, str, str, str]:
    ds = ct()
    data = encode(ds, implicit=False)
    at = pixel_offset(data)
    # Declare and send half the pixel data: a whole, well-formed data set whose
    # image is missing its lower half.
    half = len(ds.PixelData) // 2
    data = data[: at + 8] + struct.pack("<I", half) + ds.PixelData[:half]
    return data, EXPLICIT, str(ds.SOPClassUID), str(ds.SOPInstanceUID)


def cut_inside_pixels() -> tuple[bytes, str, str, str]:
    ds = ct()
    data = encode(ds, implicit=False)
    return data[:-100], EXPLICIT, str(ds.SOPClassUID), str(ds.SOPInstanceUID)


def huge_pixel_length() -> tuple[bytes, str, str, str]:
    ds = ct()
    data = bytearray(encode(ds, implicit=False))
    at = pixel_offset(bytes(data))
    data[at + 8 : at + 12] = struct.pack("<I", 0xFFFFFFF0)
    return bytes(data), EXPLICIT, str(ds.SOPClassUID), str(ds.SOPInstanceUID)


def native_under_jpeg() -> tuple[bytes, str, str, str]:
    ds = ct()
    return encode(ds, implicit=False), JPEG_BASELINE, str(ds.SOPClassUID), str(ds.SOPInstanceUID)


def class_mismatch() -> tuple[bytes, str, str, str]:
    ds = ct()
    return encode(ds, implicit=False), EXPLICIT, MR, str(ds.SOPInstanceUID)


def instance_mismatch() -> tuple[bytes, str, str, str]:
    ds = ct()
    return encode(ds, implicit=False), EXPLICIT, CT, str(generate_uid())


def explicit_under_implicit() -> tuple[bytes, str, str, str]:
    ds = ct()
    return encode(ds, implicit=False), IMPLICIT, str(ds.SOPClassUID), str(ds.SOPInstanceUID)


def nul_in_sop_instance_uid() -> tuple[bytes, str, str, str]:
    ds = ct()
    uid = "1.2.826.0.1.3680043.8.498.1\x002"
    ds.SOPInstanceUID = uid
    return encode(ds, implicit=False), EXPLICIT, CT, uid


def not_dicom() -> tuple[bytes, str, str, str]:
    return b"%PDF-1.4\n" + b"\x00garbage" * 300, EXPLICIT, CT, "1.2.3.4.5.6"


def header_cut_short() -> tuple[bytes, str, str, str]:
    ds = ct()
    data = encode(ds, implicit=False)
    # Cut inside the header of the first element.
    return data[:6], EXPLICIT, str(ds.SOPClassUID), str(ds.SOPInstanceUID)


CASES: dict[str, tuple[Callable[[], tuple[bytes, str, str, str]], int, str]] = {
    "pixel data shorter than its description": (
        truncated_pixels,
        status.PIXEL_DATA_INVALID,
        "the pixel data is 256 bytes; Rows, Columns, samples, bits and frames imply 512",
    ),
    "data set cut inside its pixel data": (
        cut_inside_pixels,
        status.CANNOT_UNDERSTAND,
        "runs past the end of the data set",
    ),
    "pixel data length absurdly large": (
        huge_pixel_length,
        status.PIXEL_DATA_INVALID,
        "the pixel data is 4294967280 bytes",
    ),
    "native pixels under a JPEG transfer syntax": (
        native_under_jpeg,
        status.PIXEL_DATA_INVALID,
        "native pixel data under a compressed label",
    ),
    "C-STORE SOP class differs from the data set's": (
        class_mismatch,
        status.DATASET_MISMATCH,
        f"the C-STORE request's SOP Class {MR} is not the data set's ({CT}",
    ),
    "C-STORE SOP instance differs from the data set's": (
        instance_mismatch,
        status.DATASET_MISMATCH,
        "is not the data set's",
    ),
    "explicit VR body under an implicit VR context": (
        explicit_under_implicit,
        status.CANNOT_UNDERSTAND,
        "encoded in explicit VR",
    ),
    "NUL inside the SOP Instance UID": (
        nul_in_sop_instance_uid,
        status.REQUEST_INVALID,
        "is not a UID",
    ),
    "not DICOM at all": (not_dicom, status.CANNOT_UNDERSTAND, "not a DICOM data set"),
    "element header cut short": (
        header_cut_short,
        status.CANNOT_UNDERSTAND,
        "the data set ends inside the header of (0008,0016)",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_malformed_object_is_refused_with_its_reason_and_kept(
    dicom_listener: Listener, facility: Any, name: str
) -> None:
    make, expected_status, reason = CASES[name]
    data, syntax, sop_class, sop_instance = make()
    with StoreSender(
        host="127.0.0.1",
        port=dicom_listener.port,
        calling_ae=CALLING_AE,
        called_ae=dicom_listener.ae_title,
        abstract_syntaxes=[CT, MR],
        transfer_syntaxes=[IMPLICIT, EXPLICIT, JPEG_BASELINE],
    ) as sender:
        answered = sender.send(
            dataset=data, transfer_syntax=syntax, sop_class=sop_class, sop_instance=sop_instance
        )
        assert sender.echo() == status.SUCCESS  # the association goes on
    assert answered == expected_status, f"0x{answered:04X}"
    row = QuarantinedObject.objects.get()
    assert row.status == expected_status
    assert reason in row.reason, row.reason
    kept = dicom_listener.storage_root.joinpath(*row.storage_key.split("/")).read_bytes()
    assert kept.endswith(data)
    assert not Instance.objects.exists()
    assert not Study.objects.exists()
