"""Filing received DICOM objects: store the file, write the minimum rows, or quarantine.

Runs in the listener's association threads, so it does only what must happen
before the C-STORE is answered; anything heavier is a Celery task.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit_record
from ingest import status
from ingest.header import Header, Unfileable, read_header
from ingest.models import QuarantinedObject
from ingest.storage import ObjectStorage, StorageError, instance_key
from network.models import Facility
from routing.tasks import route_when_committed
from studies.models import Instance, Series, Study
from studies.services import study_create, study_transition
from studies.states import StudyStatus

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReceiveResult:
    status: int
    outcome: str  # stored | duplicate | replaced | quarantined | failed
    detail: str = ""


def _digest(path: Path) -> tuple[str, int]:
    sha = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            sha.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), size


def instance_receive(
    *,
    storage: ObjectStorage,
    staged_path: Path,
    facility_id: int,
    calling_ae: str,
    peer_address: str | None = None,
    expected_sop_instance_uid: str = "",
    received_at: dt.datetime | None = None,
) -> ReceiveResult:
    """File one received object: stored, an idempotent duplicate, a replacement, or
    quarantined with its reason.  Nothing is answered Success unless it is stored."""
    received_at = received_at or timezone.now()
    try:
        sha256, size = _digest(staged_path)
    except OSError as exc:
        logger.error("cannot read staged object %s: %s", staged_path, exc)
        return ReceiveResult(status.OUT_OF_RESOURCES, "failed", str(exc))

    try:
        header = read_header(staged_path, expected_sop_instance_uid=expected_sop_instance_uid)
    except Unfileable as exc:
        return _quarantine(
            storage=storage,
            staged_path=staged_path,
            reason=str(exc),
            facility_id=facility_id,
            calling_ae=calling_ae,
            peer_address=peer_address,
            sha256=sha256,
            size=size,
            received_at=received_at,
            sop_uid=expected_sop_instance_uid,
        )

    try:
        return _file(
            storage=storage,
            staged_path=staged_path,
            header=header,
            facility_id=facility_id,
            calling_ae=calling_ae,
            peer_address=peer_address,
            sha256=sha256,
            size=size,
            received_at=received_at,
        )
    except StorageError as exc:
        logger.error("storage failure for %s: %s", header.sop_instance_uid, exc)
        return ReceiveResult(status.OUT_OF_RESOURCES, "failed", str(exc))
    except DatabaseError as exc:
        # Database down, or (IntegrityError) another association filed the same
        # SOP Instance in the same instant.  The file may already be in place;
        # the sender retries, and the retry takes the duplicate-or-replace path,
        # so nothing is lost or doubled.
        logger.error("database failure for %s: %s", header.sop_instance_uid, exc)
        return ReceiveResult(status.OUT_OF_RESOURCES, "failed", f"database: {exc}")


def _quarantine(
    *,
    storage: ObjectStorage,
    staged_path: Path,
    reason: str,
    facility_id: int | None,
    calling_ae: str,
    peer_address: str | None,
    sha256: str,
    size: int,
    received_at: dt.datetime,
    sop_uid: str = "",
    study_uid: str = "",
) -> ReceiveResult:
    key = f"quarantine/{received_at:%Y-%m-%d}/{uuid.uuid4().hex}.dcm"
    try:
        storage.put_file(staged_path, key)
        QuarantinedObject.objects.create(
            received_at=received_at,
            calling_ae=calling_ae,
            peer_address=peer_address,
            facility_id=facility_id,
            reason=reason[:500],
            storage_key=key,
            size_bytes=size,
            sha256=sha256,
            sop_instance_uid=sop_uid[:200],
            study_instance_uid=study_uid[:200],
        )
    except (StorageError, DatabaseError) as exc:
        logger.error("cannot quarantine an object from %s (%s): %s", calling_ae, reason, exc)
        return ReceiveResult(status.OUT_OF_RESOURCES, "failed", str(exc))
    logger.warning("quarantined an object from %s: %s", calling_ae, reason)
    return ReceiveResult(status.CANNOT_UNDERSTAND, "quarantined", reason)


class _UidCache:
    """UID -> (row id, parent id) for studies and series this process has filed.

    The mapping never changes once written (UIDs are unique and rows are never
    deleted), so caching it saves two queries per instance on the hot path.
    """

    def __init__(self, size: int = 20000) -> None:
        self._data: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, uid: str) -> tuple[int, int] | None:
        with self._lock:
            value = self._data.get(uid)
            if value is not None:
                self._data.move_to_end(uid)
            return value

    def put(self, uid: str, value: tuple[int, int]) -> None:
        with self._lock:
            self._data[uid] = value
            if len(self._data) > self._size:
                self._data.popitem(last=False)


_studies = _UidCache()
_series = _UidCache()


def _study_for(header: Header, facility_id: int, received_at: dt.datetime) -> tuple[int, int]:
    """(study id, facility id) for the header's study, creating the study if new."""
    cached = _studies.get(header.study_instance_uid)
    if cached is not None:
        return cached
    row = (
        Study.objects.filter(study_instance_uid=header.study_instance_uid)
        .values_list("pk", "facility_id")
        .first()
    )
    if row is None:
        row = _study_create(header, facility_id, received_at)
    _studies.put(header.study_instance_uid, row)
    return row


def _study_create(header: Header, facility_id: int, received_at: dt.datetime) -> tuple[int, int]:
    facility = Facility.objects.select_related("jurisdiction").get(pk=facility_id)
    try:
        with transaction.atomic():
            study = study_create(
                facility=facility,
                study_instance_uid=header.study_instance_uid,
                received_at=received_at,
                priority=header.priority,
                accession_number=header.accession_number,
                patient_id=header.patient_id,
                patient_name=header.patient_name,
                patient_birth_date=header.patient_birth_date,
                patient_sex=header.patient_sex,
                modality=header.modality,
                body_part=header.body_part,
                study_description=header.study_description,
                procedure_code=header.procedure_code,
                study_date=header.study_date,
                referring_physician=header.referring_physician,
            )
            return study.pk, study.facility_id
    except IntegrityError:
        # Another association (or listener process) created it first.
        existing = Study.objects.get(study_instance_uid=header.study_instance_uid)
        return existing.pk, existing.facility_id


def _series_for(header: Header, study_id: int) -> tuple[int, int]:
    """(series id, study id) for the header's series, creating the series if new."""
    cached = _series.get(header.series_instance_uid)
    if cached is not None:
        return cached
    series, _ = Series.objects.get_or_create(
        series_instance_uid=header.series_instance_uid,
        defaults={
            "study_id": study_id,
            "modality": header.modality,
            "series_number": header.series_number,
            "series_description": header.series_description,
            "body_part": header.body_part,
        },
    )
    row = (series.pk, series.study_id)
    _series.put(header.series_instance_uid, row)
    return row


def _file(
    *,
    storage: ObjectStorage,
    staged_path: Path,
    header: Header,
    facility_id: int,
    calling_ae: str,
    peer_address: str | None,
    sha256: str,
    size: int,
    received_at: dt.datetime,
) -> ReceiveResult:
    study_id, study_facility_id = _study_for(header, facility_id, received_at)
    misfiled = ""
    if study_facility_id != facility_id:
        misfiled = f"study {header.study_instance_uid} belongs to another facility"
    else:
        series_id, series_study_id = _series_for(header, study_id)
        if series_study_id != study_id:
            misfiled = f"series {header.series_instance_uid} belongs to another study"
    if misfiled:
        return _quarantine(
            storage=storage,
            staged_path=staged_path,
            facility_id=facility_id,
            reason=misfiled,
            calling_ae=calling_ae,
            peer_address=peer_address,
            sha256=sha256,
            size=size,
            received_at=received_at,
            sop_uid=header.sop_instance_uid,
            study_uid=header.study_instance_uid,
        )

    key = instance_key(
        study_uid=header.study_instance_uid,
        series_uid=header.series_instance_uid,
        sop_uid=header.sop_instance_uid,
    )
    # Into place before any row says it exists.  An identical re-send rewrites
    # identical bytes (atomically), which costs less than asking first.
    storage.put_file(staged_path, key)
    fields = {
        "series_id": series_id,
        "sop_class_uid": header.sop_class_uid,
        "transfer_syntax_uid": header.transfer_syntax_uid,
        "instance_number": header.instance_number,
        "number_of_frames": header.number_of_frames,
        "size_bytes": size,
        "sha256": sha256,
        "storage_key": key,
        "calling_ae": calling_ae,
        "received_at": received_at,
    }
    # The common case is two statements in autocommit: insert the instance, then
    # record the arrival on the study.  (A crash between them leaves a stored,
    # recorded instance whose study may be declared ready a little early; later
    # instances are then filed as late, never lost.)
    try:
        instance = Instance.objects.create(sop_instance_uid=header.sop_instance_uid, **fields)
    except IntegrityError:
        return _file_again(header=header, fields=fields, sha256=sha256, calling_ae=calling_ae)
    if _touch_study(study_id, received_at):
        Instance.objects.filter(pk=instance.pk).update(after_ready=True)
        from ingest.tasks import study_check_images_after_report

        study_check_images_after_report.delay(study_id)
    return ReceiveResult(status.SUCCESS, "stored")


def _file_again(
    *, header: Header, fields: dict[str, object], sha256: str, calling_ae: str
) -> ReceiveResult:
    """The SOP Instance was filed before: a duplicate, or a replacement to record."""
    existing = Instance.objects.get(sop_instance_uid=header.sop_instance_uid)
    if existing.sha256 == sha256:
        return ReceiveResult(status.SUCCESS, "duplicate")
    with transaction.atomic():
        Instance.objects.filter(pk=existing.pk).update(
            replaced_count=F("replaced_count") + 1, replaced_at=fields["received_at"], **fields
        )
        audit_record(
            actor=None,
            action=AuditEvent.Action.UPDATE,
            obj=existing,
            patient_id=header.patient_id,
            detail={
                "replaced": {
                    "old_sha256": existing.sha256,
                    "new_sha256": sha256,
                    "calling_ae": calling_ae,
                }
            },
        )
    return ReceiveResult(status.SUCCESS, "replaced")


def _touch_study(study_id: int, at: dt.datetime) -> bool:
    """Record the arrival on the study; True when the study was already past receiving."""
    if Study.objects.filter(pk=study_id, status=StudyStatus.RECEIVING).update(last_instance_at=at):
        return False
    Study.objects.filter(pk=study_id).update(
        last_instance_at=at, late_instance_count=F("late_instance_count") + 1
    )
    return True


def studies_mark_ready(
    *, quiet_seconds: float, now: dt.datetime | None = None, batch_size: int = 200
) -> list[int]:
    """Declare ready every receiving study with no new instance for ``quiet_seconds``.

    Safe with several sweepers: rows are claimed with FOR UPDATE SKIP LOCKED and
    moved through the state machine, which refuses a second receiving -> ready.
    """
    now = now or timezone.now()
    cutoff = now - dt.timedelta(seconds=quiet_seconds)
    with transaction.atomic():
        rows = list(
            Study.objects.select_for_update(skip_locked=True)
            .filter(status=StudyStatus.RECEIVING, last_instance_at__lte=cutoff)
            .order_by("last_instance_at")
            .values_list("pk", "priority", "sla_due_at")[:batch_size]
        )
        due = [pk for pk, _, _ in rows]
        for study_id in due:
            study_transition(
                study_id=study_id,
                to_status=StudyStatus.READY,
                at=now,
                reason=f"no new instance for {quiet_seconds:g} s",
            )
        # Routing is enqueued only once the ready state is committed, most urgent
        # first, a batch of studies per message; if a message is lost, the routing
        # sweep picks its studies up after a grace period.
        urgent_first = sorted(rows, key=lambda r: (r[1], r[2] or now, r[0]))
        route_when_committed([pk for pk, _, _ in urgent_first])
    return due
