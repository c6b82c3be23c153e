"""Reading what routing and the worklist need from a DICOM header (no pixel data).

Pure: a path in, a ``Header`` or an ``Unfileable`` reason out.  Values from the
wire are untrusted: lengths are clamped to the columns', dates that do not parse
become None, and every UID is validated before anything uses it.
"""

from __future__ import annotations

import datetime as dt
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from pydicom import config as pydicom_config
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_file_meta_info
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from network.models import Priority
from studies.models import BULK_DATA_URI_PREFIX
from studies.validators import is_valid_uid

# DICOM (0040,1003) Requested Procedure Priority and the retired (0032,000C)
# Study Priority ID, mapped to reading priorities.
PRIORITY_WORDS = {
    "STAT": Priority.STAT,
    "HIGH": Priority.URGENT,
    "URGENT": Priority.URGENT,
    "ROUTINE": Priority.ROUTINE,
    "MEDIUM": Priority.ROUTINE,
    "MED": Priority.ROUTINE,
    "LOW": Priority.ROUTINE,
}


# Senders' values are often slightly off-standard; we validate what we use
# ourselves instead of logging a warning per element per object.
pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE


# Only these elements are decoded (pydicom skips the rest), which roughly halves
# the cost of reading a header on the gateway's hot path.
HEADER_TAGS: list[Any] = [
    "SpecificCharacterSet",
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "Modality",
    "ReferringPhysicianName",
    "StudyDescription",
    "ProcedureCodeSequence",
    "SeriesDescription",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "BodyPartExamined",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SeriesNumber",
    "InstanceNumber",
    "NumberOfFrames",
    (0x0032, 0x000C),
    "RequestAttributesSequence",
    "RequestedProcedureCodeSequence",
    "RequestedProcedurePriority",
]


class Unfileable(Exception):
    """The object cannot be filed under a study; the message is the quarantine reason."""


@dataclass(frozen=True)
class Header:
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    modality: str
    body_part: str
    study_description: str
    series_description: str
    series_number: int | None
    instance_number: int | None
    number_of_frames: int
    accession_number: str
    procedure_code: str
    patient_id: str
    patient_name: str
    patient_birth_date: dt.date | None
    patient_sex: str
    study_date: dt.date | None
    study_time: dt.time | None
    study_id: str
    referring_physician: str
    priority: int | None


def _text(ds: Dataset, keyword: str, limit: int) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    return str(value).strip().replace("\x00", "")[:limit]


def _int(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _date(ds: Dataset, keyword: str) -> dt.date | None:
    raw = str(ds.get(keyword) or "").strip()
    try:
        return dt.datetime.strptime(raw[:8], "%Y%m%d").date() if raw else None  # noqa: DTZ007
    except ValueError:
        return None


def _time(ds: Dataset, keyword: str) -> dt.time | None:
    """A DICOM TM value (HH, HHMM, HHMMSS, HHMMSS.FFFFFF; HH:MM:SS tolerated)."""
    raw = str(ds.get(keyword) or "").strip().replace(":", "")
    digits, _, fraction = raw.partition(".")
    if not digits.isdigit() or len(digits) not in (2, 4, 6):
        return None
    parts = [int(digits[i : i + 2]) for i in range(0, len(digits), 2)] + [0, 0]
    micro = int((fraction + "000000")[:6]) if fraction.isdigit() else 0
    try:
        return dt.time(parts[0], parts[1], parts[2], micro)
    except ValueError:
        return None


def _procedure_code(ds: Dataset) -> str:
    for keyword in ("ProcedureCodeSequence", "RequestedProcedureCodeSequence"):
        seq = ds.get(keyword)
        if seq:
            return _text(seq[0], "CodeValue", 64)
    return ""


def _priority(ds: Dataset) -> int | None:
    candidates: list[Any] = [ds.get("RequestedProcedurePriority")]
    for item in ds.get("RequestAttributesSequence") or []:
        candidates.append(item.get("RequestedProcedurePriority"))
    candidates.append(ds.get((0x0032, 0x000C)))  # Study Priority ID (retired)
    for value in candidates:
        raw = getattr(value, "value", value)
        word = str(raw or "").strip().upper()
        if word in PRIORITY_WORDS:
            return int(PRIORITY_WORDS[word])
    return None


# Binary values longer than this are left out of the stored JSON and named by a
# BulkDataURI instead (pixel data always is: it is not read here at all).
BULK_DATA_THRESHOLD = 8192


def _bulk_uri(element: Any) -> str:
    return f"{BULK_DATA_URI_PREFIX}{int(element.tag):08X}"


def read_dicom_json(path: Path) -> str:
    """A stored object's data set as DICOM JSON without bulk data (see
    ``dicom_json``); '' if the file cannot be read or rendered."""
    try:
        if _is_deflated(path):
            ds = _inflated_header(path, tags=None)
        else:
            ds = dcmread(path, stop_before_pixels=True)
    except Exception:  # an object that filed may still hold values pydicom cannot show
        return ""
    return dicom_json(ds)


def dicom_json(ds: Dataset) -> str:
    """The data set (read without its pixel data) as DICOM JSON, with a BulkDataURI
    for the pixel data and for large binary values; '' if it cannot be built."""
    try:
        body = ds.to_json_dict(
            bulk_data_threshold=BULK_DATA_THRESHOLD,
            bulk_data_element_handler=_bulk_uri,
            suppress_invalid_tags=True,
        )
        meta = getattr(ds, "file_meta", None)
        if meta is not None and "TransferSyntaxUID" in meta:
            # Not part of the data set, but a viewer needs it to decode frames.
            body["00020010"] = {"vr": "UI", "Value": [str(meta.TransferSyntaxUID)]}
        encapsulated = bool(
            meta is not None
            and getattr(meta, "TransferSyntaxUID", None)
            and UID(str(meta.TransferSyntaxUID)).is_compressed
        )
        if "Rows" in ds:
            vr = "OB" if encapsulated or int(ds.get("BitsAllocated") or 16) <= 8 else "OW"
            body["7FE00010"] = {"vr": vr, "BulkDataURI": f"{BULK_DATA_URI_PREFIX}7FE00010"}
        return json.dumps(dict(sorted(body.items())), separators=(",", ":"), ensure_ascii=False)
    except Exception:  # a value pydicom cannot render: the service reads the file
        return ""


# pydicom inflates a deflated dataset whole, in memory: a few MB on the wire can
# become gigabytes (a decompression bomb).  We inflate at most this much, which is
# far more than any header before the pixel data needs.
DEFLATED_HEADER_LIMIT = 32 * 1024 * 1024


def _meta_end(raw: BinaryIO) -> int:
    """Offset of the dataset after the preamble and file meta group."""
    raw.seek(128)
    if raw.read(4) != b"DICM":
        raise Unfileable("not a DICOM file (no DICM prefix)")
    tag_vr_len = raw.read(8)
    if tag_vr_len[:6] != b"\x02\x00\x00\x00UL":
        raise Unfileable("file meta information has no group length")
    group_length = int.from_bytes(raw.read(4), "little")
    return 144 + group_length


def _inflated_header(path: Path, tags: list[Any] | None = HEADER_TAGS) -> Dataset:
    """Read a deflated object's header, inflating no more than the limit."""
    meta = read_file_meta_info(path)
    with path.open("rb") as raw:
        raw.seek(_meta_end(raw))
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        out = bytearray()
        while len(out) < DEFLATED_HEADER_LIMIT:
            chunk = raw.read(1 << 16)
            if not chunk:
                break
            out += inflater.decompress(chunk, DEFLATED_HEADER_LIMIT - len(out))
            if inflater.unconsumed_tail:
                break  # the limit was reached mid-chunk
    # Re-label the inflated bytes as explicit VR little endian and parse those.
    meta.TransferSyntaxUID = UID(ExplicitVRLittleEndian)
    buffer = DicomBytesIO()
    buffer.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buffer, meta, enforce_standard=False)
    buffer.write(bytes(out))
    buffer.seek(0)
    truncated = len(out) >= DEFLATED_HEADER_LIMIT
    bomb = Unfileable(
        f"deflated dataset inflates beyond {DEFLATED_HEADER_LIMIT} bytes before its "
        "identifying elements (possible decompression bomb)"
    )
    try:
        ds = dcmread(buffer, stop_before_pixels=True, specific_tags=tags)
    except Exception as exc:
        if truncated:
            raise bomb from exc
        raise
    # A large image legitimately passes the limit inside its pixel data; the
    # header before it must still be complete.
    required = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")
    if truncated and not all(k in ds for k in required):
        raise bomb
    ds.file_meta.TransferSyntaxUID = UID(DeflatedExplicitVRLittleEndian)
    return ds


def _is_deflated(path: Path) -> bool:
    try:
        meta = read_file_meta_info(path)
    except Exception:
        return False
    return str(meta.get("TransferSyntaxUID", "")) == DeflatedExplicitVRLittleEndian


def read_header(path: Path, *, expected_sop_instance_uid: str = "") -> Header:
    """Parse the header of a stored object; raise ``Unfileable`` with the reason."""
    try:
        if _is_deflated(path):
            ds = _inflated_header(path)
        else:
            ds = dcmread(path, stop_before_pixels=True, specific_tags=HEADER_TAGS)
        # Touch the elements we need now, so a malformed value fails here.
        uids = {
            "StudyInstanceUID": str(ds.get("StudyInstanceUID") or "").strip(),
            "SeriesInstanceUID": str(ds.get("SeriesInstanceUID") or "").strip(),
            "SOPInstanceUID": str(ds.get("SOPInstanceUID") or "").strip(),
            "SOPClassUID": str(ds.get("SOPClassUID") or "").strip(),
        }
    except Unfileable:
        raise
    except InvalidDicomError as exc:
        raise Unfileable(f"not a DICOM object: {exc}") from exc
    except Exception as exc:  # pydicom raises many types on malformed data
        raise Unfileable(f"cannot parse the DICOM header: {type(exc).__name__}: {exc}") from exc

    for keyword, value in uids.items():
        if not value:
            raise Unfileable(f"missing {keyword}")
        if not is_valid_uid(value):
            raise Unfileable(f"invalid {keyword} {value[:80]!r}")
    if expected_sop_instance_uid and uids["SOPInstanceUID"] != expected_sop_instance_uid:
        raise Unfileable(
            "SOPInstanceUID in the dataset differs from the C-STORE request's "
            "Affected SOP Instance UID"
        )

    meta = getattr(ds, "file_meta", None)
    try:
        return Header(
            study_instance_uid=uids["StudyInstanceUID"],
            series_instance_uid=uids["SeriesInstanceUID"],
            sop_instance_uid=uids["SOPInstanceUID"],
            sop_class_uid=uids["SOPClassUID"],
            transfer_syntax_uid=str(getattr(meta, "TransferSyntaxUID", "") or "")[:64],
            modality=_text(ds, "Modality", 16),
            body_part=_text(ds, "BodyPartExamined", 64),
            study_description=_text(ds, "StudyDescription", 200),
            series_description=_text(ds, "SeriesDescription", 200),
            series_number=_int(ds, "SeriesNumber"),
            instance_number=_int(ds, "InstanceNumber"),
            number_of_frames=max(1, _int(ds, "NumberOfFrames") or 1),
            accession_number=_text(ds, "AccessionNumber", 16),
            procedure_code=_procedure_code(ds),
            patient_id=_text(ds, "PatientID", 64),
            patient_name=_text(ds, "PatientName", 200),
            patient_birth_date=_date(ds, "PatientBirthDate"),
            patient_sex=_text(ds, "PatientSex", 1).upper()
            if _text(ds, "PatientSex", 1).upper() in {"M", "F", "O"}
            else "",
            study_date=_date(ds, "StudyDate"),
            study_time=_time(ds, "StudyTime"),
            study_id=_text(ds, "StudyID", 16),
            referring_physician=_text(ds, "ReferringPhysicianName", 200),
            priority=_priority(ds),
        )
    except Exception as exc:
        raise Unfileable(f"malformed header value: {type(exc).__name__}: {exc}") from exc
