"""What DICOMweb changes: the audit trail of its reads, and STOW-RS, which files
uploaded objects through the same filing service as the DICOM gateway's C-STORE
(UID checks, atomic storage, quarantine with its reason, readiness, routing)."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings
from django.core.cache import cache
from pydicom import dcmread
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import _read_file_meta_info, read_file_meta_info
from pydicom.filewriter import write_file_meta_info

from audit.models import AuditEvent
from audit.services import audit_record, audit_record_many
from dicomweb.media import BadBody, Readable, Sink, read_multipart
from ingest import services as ingest_services
from ingest import status
from ingest.selectors import facility_quota_left
from ingest.storage import FileSystemStorage
from network.models import Facility
from network.selectors import AnyUser
from studies.models import Instance, Study
from studies.validators import is_valid_uid

# Retrievals a viewer makes per frame (frames, rendered, bulk data) are audited
# once per user, study and kind in this many seconds, not once per frame.
AUDIT_REPEAT_SECONDS = 3600

STOW_CALLING_AE = "STOW-RS"


def retrieval_record(
    *,
    user: AnyUser,
    study: Study,
    what: str,
    detail: dict[str, Any],
    ip_address: str | None,
    per_frame: bool = False,
) -> bool:
    """Audit one DICOMweb read of a study's data (who, which study, what).  A
    per-frame kind of read is recorded once per user, study and kind per hour.
    Returns whether an event was written."""
    if per_frame:
        key = f"dicomweb-audit:{getattr(user, 'pk', None)}:{study.pk}:{what.replace(' ', '-')}"
        if not cache.add(key, 1, timeout=AUDIT_REPEAT_SECONDS):
            return False
    audit_record(
        actor=user if getattr(user, "is_authenticated", False) else None,
        action=AuditEvent.Action.READ,
        obj=study,
        patient_id=study.patient_id,
        ip_address=ip_address,
        detail={"via": "dicomweb", "what": what, **detail},
    )
    return True


def search_record(
    *,
    user: AnyUser,
    level: str,
    params: list[tuple[str, str]],
    studies: dict[int, str],
    ip_address: str | None,
) -> None:
    """Audit one QIDO-RS search: the query and the studies it returned (one event per
    study returned, in one statement, as the API's list pages do)."""
    audit_record_many(
        actor=user,
        action=AuditEvent.Action.LIST,
        object_type="studies.study",
        items=[(str(pk), patient) for pk, patient in studies.items()],
        ip_address=ip_address,
        detail={"via": "dicomweb", "what": f"search {level}", "query": params[:50]},
    )


# -- STOW-RS ------------------------------------------------------------------


@dataclass
class StowResult:
    """What became of each uploaded part (PS3.18 10.5.3)."""

    # class, sop, outcome, path of the stored instance under the DICOMweb root
    stored: list[tuple[str, str, str, str]] = field(default_factory=list)
    failed: list[tuple[str, str, int, str]] = field(default_factory=list)  # + status, reason
    study_uids: set[str] = field(default_factory=set)


class _Staged:
    """One part being written to the staging folder, counting its bytes and
    stopping (but still reading the body) past the facility's object limit."""

    def __init__(self, folder: Path, limit: int, headers: dict[str, str]) -> None:
        fd, name = tempfile.mkstemp(prefix="stow-", suffix=".dcm", dir=folder)
        self.path = Path(name)
        self.fh: BinaryIO = open(fd, "wb")  # noqa: SIM115 - closed by close_part
        self.size = 0
        self.limit = limit
        self.content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size <= self.limit + 1:
            self.fh.write(data[: max(0, self.limit + 1 - (self.size - len(data)))])


def stow_receive(
    *,
    storage: FileSystemStorage,
    facility: Facility,
    body: Readable,
    boundary: str,
    peer_address: str | None,
    expected_study_uid: str | None = None,
) -> StowResult:
    """File each application/dicom part of a multipart/related upload from
    ``facility``, one at a time as it arrives, through the gateway's filing service.
    Every part is answered: stored (or an identical duplicate, or a new version), or
    failed with the filing's status and reason; a broken part is quarantined with
    its reason like a broken C-STORE, never half-stored.  ``BadBody`` if the body is
    not multipart at all."""
    result = StowResult()
    limit = facility.dicom_max_object_bytes or settings.INGEST_MAX_OBJECT_BYTES
    quota_left = facility_quota_left(facility)
    folder = storage.staging_dir()

    def open_part(headers: dict[str, str]) -> Sink:
        return _Staged(folder, limit, headers)

    def close_part(sink: Sink, complete: bool) -> None:
        nonlocal quota_left
        if not isinstance(sink, _Staged):
            raise TypeError(sink)
        sink.fh.close()
        try:
            _file_part(sink, complete)
        finally:
            sink.path.unlink(missing_ok=True)

    def _file_part(part: _Staged, complete: bool) -> None:
        nonlocal quota_left
        if part.content_type not in ("application/dicom", ""):
            result.failed.append(
                (
                    "",
                    "",
                    status.CANNOT_UNDERSTAND,
                    f"a part of type {part.content_type!r}: only application/dicom is accepted",
                )
            )
            return
        _part10_framed(part.path)
        sop_class, sop = _meta_uids(part.path)
        if expected_study_uid is not None:
            study_uid = _study_uid(part.path)
            if study_uid and study_uid != expected_study_uid:
                result.failed.append(
                    (
                        sop_class,
                        sop,
                        status.INSTANCE_CONFLICT,
                        f"the object belongs to study {study_uid}, not to the study of the "
                        f"request, {expected_study_uid}",
                    )
                )
                return
        outcome = ingest_services.instance_receive(
            storage=storage,
            staged_path=part.path,
            request=ingest_services.Request(
                facility_id=facility.pk,
                calling_ae=STOW_CALLING_AE,
                peer_address=peer_address,
                sop_class_uid=sop_class,
                sop_instance_uid=sop,
                max_object_bytes=limit,
                quota_left_bytes=quota_left,
                origin="STOW-RS part (its file meta)",
            ),
        )
        if outcome.status == status.SUCCESS:
            if quota_left is not None and outcome.outcome != "duplicate":
                quota_left = max(0, quota_left - part.size)
            study_uid, series_uid = _stored_at(sop)
            path = f"/studies/{study_uid}/series/{series_uid}/instances/{sop}" if study_uid else ""
            result.stored.append((sop_class, sop, outcome.outcome, path))
            if study_uid:
                result.study_uids.add(study_uid)
        else:
            reason = outcome.detail or outcome.outcome
            if not complete:
                reason = f"the part was cut off before its end: {reason}"
            result.failed.append((sop_class, sop, outcome.status, reason))

    read_multipart(body, boundary, open_part=open_part, close_part=close_part)
    if not result.stored and not result.failed:
        raise BadBody("the body holds no complete part")
    return result


def _meta_uids(path: Path) -> tuple[str, str]:
    """The SOP Class and Instance UIDs the part's file meta names ('' if none):
    what the C-STORE request would have said."""
    try:
        meta = read_file_meta_info(path)
    except Exception:  # not Part 10: filing quarantines it with the reason
        return "", ""
    sop_class = str(meta.get("MediaStorageSOPClassUID", "") or "").strip("\0 ")
    sop = str(meta.get("MediaStorageSOPInstanceUID", "") or "").strip("\0 ")
    return sop_class[:64], sop[:64]


def _study_uid(path: Path) -> str:
    try:
        ds = dcmread(path, stop_before_pixels=True, specific_tags=["StudyInstanceUID"])
        uid = str(ds.get("StudyInstanceUID") or "").strip()
    except Exception:
        return ""
    return uid if is_valid_uid(uid) else ""


def _stored_at(sop: str) -> tuple[str, str]:
    """(study UID, series UID) of a stored instance ('', '' if not found)."""
    row = (
        Instance.objects.filter(sop_instance_uid=sop)
        .values_list("series__study__study_instance_uid", "series__series_instance_uid")
        .first()
    )
    return (row[0], row[1]) if row else ("", "")


def _part10_framed(path: Path) -> None:
    """Give a part the DICOM file framing that filing (like the gateway's C-STORE
    handler) expects, when only the framing is missing: clients that write a data
    set made in memory (pydicom's, hence dicomweb-client's) leave out the 128-byte
    preamble and the DICM prefix, or the file meta group's length.  The file meta is
    rewritten with them (and, if absent, the Media Storage UIDs from the data set);
    the data set's bytes are not touched.  Anything else is left for filing to
    judge (and quarantine with its reason)."""
    with path.open("rb") as fh:
        head = fh.read(140)
    if head[128:132] == b"DICM" and head[132:138] == b"\x02\x00\x00\x00UL":
        return  # framed as it should be
    try:
        with path.open("rb") as fh:
            if head[128:132] == b"DICM":
                fh.seek(132)
            elif not head.startswith(b"\x02\x00"):
                return  # no file meta at all: not a DICOM file; filing says so
            # pydicom's reader of the group itself (it leaves fh at the data set).
            meta = _read_file_meta_info(fh)
            start = fh.tell()
        if "TransferSyntaxUID" not in meta:
            return
        if not meta.get("MediaStorageSOPClassUID") or not meta.get("MediaStorageSOPInstanceUID"):
            ds = dcmread(path, force=True, specific_tags=["SOPClassUID", "SOPInstanceUID"])
            meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", "")
            meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", "")
        framed = path.with_suffix(".framed")
        with framed.open("wb") as out, path.open("rb") as source:
            out.write(b"\x00" * 128 + b"DICM")
            buffer = DicomBytesIO()
            write_file_meta_info(buffer, meta, enforce_standard=True)
            out.write(buffer.getvalue())
            source.seek(start)
            shutil.copyfileobj(source, out, 1 << 20)
        framed.replace(path)
    except Exception:  # malformed framing: filing quarantines it with the reason
        return
