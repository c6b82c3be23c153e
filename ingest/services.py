"""Filing received DICOM objects: store the file, write the minimum rows, or quarantine.

Runs in the listener's association threads, so it does only what must happen
before the C-STORE is answered; anything heavier is a Celery task.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import (
    DatabaseError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    connection,
    transaction,
)
from django.db.models import Sum
from django.utils import timezone

from alerts.models import Alert
from alerts.services import alert_raise
from ingest import status
from ingest.header import Header, Unfileable, read_dicom_json, read_header
from ingest.models import FacilityStorageUsage, QuarantinedObject
from ingest.storage import FileSystemStorage, ObjectStorage, StorageError, instance_key
from ingest.validation import Refused, check_object
from network.models import Facility, Priority
from studies.models import Instance, InstanceVersion, Order, Study
from studies.services import (
    instance_file,
    instance_lock,
    instance_mark_after_ready,
    instance_version_replace,
    instances_dicom_json_set,
    series_file,
    studies_order_link,
    study_arrival_record,
    study_create,
    study_refused_count_add,
    study_refused_count_set,
    study_transition,
)
from studies.states import StudyStatus
from studies.validators import is_valid_uid
from teleradiology.queue import enqueue, enqueue_in_batches

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReceiveResult:
    status: int
    outcome: str  # stored | duplicate | version | quarantined | failed
    detail: str = ""


@dataclass(frozen=True)
class Request:
    """Who sent an object and what the C-STORE request said of it."""

    facility_id: int
    calling_ae: str
    peer_address: str | None = None
    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    # The facility's own limit, read with the facility when the association was
    # admitted; None: the INGEST_MAX_OBJECT_BYTES default.
    max_object_bytes: int | None = None
    # Bytes the facility may still store under its quota (None: no quota), as
    # measured by the usage sweep when the association was admitted.
    quota_left_bytes: int | None = None
    # What named the object (the words of a refusal of its UIDs).
    origin: str = "C-STORE request"
    # Sent to the gateway's priors AE title (a PACS answering our C-MOVE): a new
    # study is filed as a prior, never routed.
    is_prior: bool = False


def _digest(path: Path) -> tuple[str, int]:
    sha = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            sha.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), size


def _printable(value: str, limit: int) -> str:
    """A value from the wire made safe for a text column (NUL and control
    characters shown escaped, never stored raw; PostgreSQL refuses NUL)."""
    out = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in value)
    return out[:limit]


def instance_receive(
    *,
    storage: ObjectStorage,
    staged_path: Path,
    request: Request,
    received_at: dt.datetime | None = None,
) -> ReceiveResult:
    """File one received object: stored, an identical duplicate, a new version, or
    quarantined with its reason and status.  Nothing is answered Success unless it
    parsed whole, matched its request and is stored; 0xA700 only when the database
    or the storage is unavailable."""
    received_at = received_at or timezone.now()
    try:
        sha256, size = _digest(staged_path)
    except OSError as exc:
        logger.error("cannot read staged object %s: %s", staged_path, exc)
        return ReceiveResult(status.OUT_OF_RESOURCES, "failed", str(exc))

    evidence = _Evidence(storage, staged_path, request, sha256, size, received_at)
    fault = request_fault(
        sop_class_uid=request.sop_class_uid,
        sop_instance_uid=request.sop_instance_uid,
        origin=request.origin,
    )
    if fault:
        return evidence.quarantine(status.REQUEST_INVALID, fault)
    if request.quota_left_bytes is not None and size > request.quota_left_bytes:
        return evidence.quarantine(
            status.QUOTA_EXCEEDED,
            "the facility's storage quota is used up; an admin must raise it",
        )
    limit = request.max_object_bytes or settings.INGEST_MAX_OBJECT_BYTES
    if size > limit:
        return evidence.quarantine(
            status.TOO_LARGE, f"the object is {size} bytes; the facility's limit is {limit}"
        )
    try:
        check_object(
            staged_path,
            request_sop_class=request.sop_class_uid,
            request_sop_instance=request.sop_instance_uid,
            private_element_limit=settings.INGEST_MAX_PRIVATE_ELEMENT_BYTES,
        )
        header = read_header(staged_path, expected_sop_instance_uid=request.sop_instance_uid)
    except Refused as refused:
        evidence.study_uid = refused.study_uid
        return evidence.quarantine(refused.status, refused.reason)
    except Unfileable as exc:
        return evidence.quarantine(status.CANNOT_UNDERSTAND, str(exc))
    evidence.sop_uid, evidence.study_uid = header.sop_instance_uid, header.study_instance_uid

    try:
        return _file(evidence=evidence, header=header)
    except StorageError as exc:
        logger.error("storage failure for %s: %s", header.sop_instance_uid, exc)
        return ReceiveResult(status.OUT_OF_RESOURCES, "failed", str(exc))
    except (OperationalError, InterfaceError) as exc:
        # The database is unavailable: the sender retries, and the retry takes the
        # duplicate path, so nothing is lost or doubled.  (Values are checked before
        # they reach the database, so a refused value never lands here.)
        logger.error("database unavailable for %s: %s", header.sop_instance_uid, exc)
        connection.close()
        return ReceiveResult(status.OUT_OF_RESOURCES, "failed", f"database: {exc}")
    except DatabaseError as exc:
        # Values are checked before they reach the database; one that still is
        # refused is this object's fault, not an outage: keep it, do not retry it.
        logger.error("database refused a value of %s: %s", header.sop_instance_uid, exc)
        # The file may already be in place (put before the row): quarantine it from
        # there, unless an instance row names that key (identical content stored).
        placed = evidence.placed_key
        if placed and Instance.objects.filter(storage_key=placed).exists():
            placed = ""
        return evidence.quarantine(
            status.INVALID_VALUE, f"the database refused a value: {exc}", stored_key=placed
        )


def _flag_refused(study_uid: str, facility_id: int) -> None:
    """Count a refused object on its study (if the study exists and is the sending
    facility's), so that the reader is told the study may be missing images."""
    try:
        study_refused_count_add(study_instance_uid=study_uid, facility_id=facility_id)
    except DatabaseError as exc:  # the refusal is recorded; the flag is secondary
        logger.error("cannot flag study %s with a refused object: %s", study_uid, exc)


def request_fault(
    *, sop_class_uid: str, sop_instance_uid: str, origin: str = "C-STORE request"
) -> str:
    """Why the C-STORE request's (or another origin's) own UIDs cannot be answered
    as given, or ''."""
    for name, value in (
        ("Affected SOP Class UID", sop_class_uid),
        ("Affected SOP Instance UID", sop_instance_uid),
    ):
        text = value[:-1] if value.endswith("\0") else value
        if not text.strip():
            return f"the {origin}'s {name} is empty or blank"
        if len(text) > 64:
            return f"the {origin}'s {name} is {len(text)} characters (at most 64)"
        if not is_valid_uid(text):
            return f"the {origin}'s {name} {_printable(text, 80)!r} is not a UID"
    return ""


@dataclass
class _Evidence:
    """One received object on its way: where it is staged and what is known of it."""

    storage: ObjectStorage
    staged_path: Path
    request: Request
    sha256: str
    size: int
    received_at: dt.datetime
    sop_uid: str = ""
    study_uid: str = ""
    placed_key: str = ""  # where the object was put in storage, once it was

    def quarantine(
        self, code: int, reason: str, *, stored_key: str = "", alert: bool = False
    ) -> ReceiveResult:
        """Keep the object in quarantine with its reason; the row and the file are
        written together (the file is moved inside the row's transaction, so a
        failed move leaves no row, and a row never names a missing file)."""
        key = f"quarantine/{self.received_at:%Y-%m-%d}/{uuid.uuid4().hex}.dcm"
        # An oversized object, or one beyond the quota, is recorded, not kept.
        keep_file = code not in (status.TOO_LARGE, status.QUOTA_EXCEEDED)
        try:
            with transaction.atomic():
                row = QuarantinedObject.objects.create(
                    received_at=self.received_at,
                    calling_ae=_printable(self.request.calling_ae, 16),
                    peer_address=self.request.peer_address,
                    facility_id=self.request.facility_id,
                    reason=_printable(reason, 500),
                    status=code,
                    storage_key=key if keep_file else "",
                    size_bytes=self.size,
                    sha256=self.sha256,
                    sop_instance_uid=_printable(self.sop_uid or self.request.sop_instance_uid, 200),
                    study_instance_uid=_printable(self.study_uid, 200),
                )
                if stored_key:
                    self.storage.move(stored_key, key)
                elif keep_file:
                    self.storage.put_file(self.staged_path, key)
        except (StorageError, DatabaseError) as exc:
            logger.error(
                "cannot quarantine an object from %s (%s): %s", self.request.calling_ae, reason, exc
            )
            return ReceiveResult(status.OUT_OF_RESOURCES, "failed", str(exc))
        if not keep_file:
            self.staged_path.unlink(missing_ok=True)
        if self.study_uid:
            _flag_refused(self.study_uid, self.request.facility_id)
        logger.warning("quarantined an object from %s: %s", self.request.calling_ae, reason)
        if alert:
            enqueue("ingest.quarantine_alert", row.pk)
        return ReceiveResult(code, "quarantined", reason)


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

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


_studies = _UidCache()
_series = _UidCache()


def filing_caches_clear() -> None:
    """Forget the cached UID -> row mappings: for a process whose database rows were
    rolled back underneath it (tests), which never happens to a listener."""
    _studies.clear()
    _series.clear()


def _study_for(
    header: Header, facility_id: int, received_at: dt.datetime, *, is_prior: bool = False
) -> tuple[int, int]:
    """(study id, facility id) for the header's study, creating the study if new (as
    a prior when it came to the priors AE title)."""
    cached = _studies.get(header.study_instance_uid)
    if cached is not None:
        return cached
    row = (
        Study.objects.filter(study_instance_uid=header.study_instance_uid)
        .values_list("pk", "facility_id")
        .first()
    )
    if row is None:
        row = _study_create(header, facility_id, received_at, is_prior=is_prior)
    _studies.put(header.study_instance_uid, row)
    return row


def _study_create(
    header: Header, facility_id: int, received_at: dt.datetime, *, is_prior: bool = False
) -> tuple[int, int]:
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
                study_time=header.study_time,
                dicom_study_id=header.study_id,
                referring_physician=header.referring_physician,
                is_prior=is_prior,
            )
            # Objects of this study refused before it existed (its first ones were
            # broken, say) flag it too.
            refused = QuarantinedObject.objects.filter(
                facility_id=facility_id, study_instance_uid=header.study_instance_uid
            ).count()
            if refused:
                study_refused_count_set(study_id=study.pk, count=refused)
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
    row = series_file(
        series_instance_uid=header.series_instance_uid,
        study_id=study_id,
        modality=header.modality,
        series_number=header.series_number,
        series_description=header.series_description,
        body_part=header.body_part,
    )
    _series.put(header.series_instance_uid, row)
    return row


def _file(*, evidence: _Evidence, header: Header) -> ReceiveResult:
    facility_id = evidence.request.facility_id
    study_id, study_facility_id = _study_for(
        header, facility_id, evidence.received_at, is_prior=evidence.request.is_prior
    )
    if study_facility_id != facility_id:
        return evidence.quarantine(
            status.INSTANCE_CONFLICT,
            f"study {header.study_instance_uid} belongs to another facility",
            alert=True,
        )
    series_id, series_study_id = _series_for(header, study_id)
    if series_study_id != study_id:
        return evidence.quarantine(
            status.INSTANCE_CONFLICT,
            f"series {header.series_instance_uid} belongs to another study",
            alert=True,
        )

    key = instance_key(
        study_uid=header.study_instance_uid,
        series_uid=header.series_instance_uid,
        sop_uid=header.sop_instance_uid,
        sha256=evidence.sha256,
    )
    # Into place before any row says it exists.  The key holds the content's digest,
    # so this never overwrites another version: an identical re-send rewrites the
    # same bytes (atomically), which costs less than asking first.
    evidence.storage.put_file(evidence.staged_path, key)
    evidence.placed_key = key
    fields = {
        "series_id": series_id,
        "sop_class_uid": header.sop_class_uid,
        "transfer_syntax_uid": header.transfer_syntax_uid,
        "instance_number": header.instance_number,
        "number_of_frames": header.number_of_frames,
        "size_bytes": evidence.size,
        "sha256": evidence.sha256,
        "storage_key": key,
        "calling_ae": evidence.request.calling_ae,
        "received_at": evidence.received_at,
        # Built off the C-STORE path, once the study is ready (a new version's
        # is built again): see ``instances_dicom_json_build``.
        "dicom_json": "",
    }
    # The common case is two statements in autocommit: insert the instance, then
    # record the arrival on the study.  (A crash between them leaves a stored,
    # recorded instance whose study may be declared ready a little early; later
    # instances are then filed as late, never lost.)
    try:
        instance = instance_file(sop_instance_uid=header.sop_instance_uid, **fields)
    except IntegrityError:
        return _file_again(
            evidence=evidence, header=header, fields=fields, key=key, study_id=study_id
        )
    if study_arrival_record(study_id=study_id, at=evidence.received_at):
        instance_mark_after_ready(instance_id=instance.pk)
        enqueue("ingest.study_check_images_after_report", study_id)
        enqueue("ingest.studies_dicom_json_build", [study_id])
    return ReceiveResult(status.SUCCESS, "stored")


def _file_again(
    *, evidence: _Evidence, header: Header, fields: dict[str, object], key: str, study_id: int
) -> ReceiveResult:
    """The SOP Instance was filed before: an identical duplicate, a new version from
    the same facility into the same series, or a conflict (another facility, study
    or series), which is quarantined and leaves the stored instance untouched."""
    with transaction.atomic():
        existing = instance_lock(sop_instance_uid=header.sop_instance_uid)
        if existing.series_id != fields["series_id"]:
            conflict = (
                f"SOP Instance {header.sop_instance_uid} is already stored in series "
                f"{existing.series.series_instance_uid} of study "
                f"{existing.series.study.study_instance_uid}"
            )
        elif existing.sha256 == evidence.sha256:
            return ReceiveResult(status.SUCCESS, "duplicate")
        else:
            conflict = ""
            instance_version_replace(
                existing=existing,
                at=evidence.received_at,
                patient_id=header.patient_id,
                detail={
                    "new_version": {
                        "old_sha256": existing.sha256,
                        "old_storage_key": existing.storage_key,
                        "new_sha256": evidence.sha256,
                        "calling_ae": evidence.request.calling_ae,
                    }
                },
                **fields,
            )
    if conflict:
        # Our copy went to a key of its own (other series, or other content): move
        # it into quarantine; the stored instance is not touched.
        return evidence.quarantine(status.INSTANCE_CONFLICT, conflict, stored_key=key, alert=True)
    enqueue("ingest.studies_dicom_json_build", [study_id])
    return ReceiveResult(status.SUCCESS, "version")


# A burst of late instances (a modality re-sending a series, a forgotten series sent
# afterwards) tells the reader holding the study once per window, not once per image.
LATE_IMAGES_ALERT_WINDOW = dt.timedelta(minutes=5)


def study_late_images_alert(*, study_id: int, now: dt.datetime | None = None) -> bool:
    """Tell whoever must know that images arrived after the study was ready: the
    reader who holds it (claimed or preliminary), at most once per study and reader
    per ``LATE_IMAGES_ALERT_WINDOW``, so that they look again before they sign; the
    group's admins once per late-instance count after the final report.  Idempotent
    by the alerts' dedupe keys; True when an alert was raised."""
    now = now or timezone.now()
    study = (
        Study.objects.select_related("facility__reading_group", "assigned_radiologist__user")
        .filter(pk=study_id)
        .first()
    )
    if study is None:
        return False
    label = study.accession_number or study.study_instance_uid
    if study.status == StudyStatus.FINAL:
        raised = alert_raise(
            kind=Alert.Kind.IMAGES_AFTER_FINAL,
            dedupe_key=f"images-after-final:{study.pk}:{study.late_instance_count}",
            message=(
                f"New images arrived for study {label} ({study.facility.name}) after its "
                f"final report; {study.late_instance_count} late instance(s) so far."
            ),
            reading_group=study.facility.reading_group,
            study=study,
        )
        return raised is not None
    reader = study.assigned_radiologist
    if study.status not in (StudyStatus.CLAIMED, StudyStatus.PRELIMINARY) or reader is None:
        return False
    # One key per aligned window: concurrent tasks of one burst share it, so the
    # unique dedupe key lets exactly one of them raise (no read-then-write).
    window = int(now.timestamp() // LATE_IMAGES_ALERT_WINDOW.total_seconds())
    stage = "your preliminary report" if study.status == StudyStatus.PRELIMINARY else "your claim"
    raised = alert_raise(
        kind=Alert.Kind.LATE_IMAGES,
        dedupe_key=f"late-images:{study.pk}:{reader.pk}:{window}",
        message=(
            f"New images arrived for study {label} ({study.facility.name}), which you hold, "
            f"after {stage}: {study.late_instance_count} image(s) came after the study was "
            "complete. Look at them before you sign."
        )[:1000],
        reading_group=study.facility.reading_group,
        study=study,
        recipient=reader.user,
    )
    return raised is not None


def studies_mark_ready(
    *, quiet_seconds: float, now: dt.datetime | None = None, batch_size: int = 200
) -> list[int]:
    """Declare ready every receiving study with no new instance for ``quiet_seconds``
    (a prior retrieved from a PACS becomes a stored prior instead).

    A ready study may be held from routing: for its order (the facility's
    ``order_hold_minutes``, when none has come) and for its priors (a bounded wait
    by priority, when the facility has a PACS); the holds are timestamps on the
    row, and the routing sweep routes the study when they pass.

    Safe with several sweepers: rows are claimed with FOR UPDATE SKIP LOCKED and
    moved through the state machine, which refuses a second receiving -> ready.
    """
    now = now or timezone.now()
    cutoff = now - dt.timedelta(seconds=quiet_seconds)
    with transaction.atomic():
        rows = list(
            Study.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(status=StudyStatus.RECEIVING, last_instance_at__lte=cutoff)
            .order_by("last_instance_at")
            .values_list(
                "pk",
                "priority",
                "sla_due_at",
                "is_prior",
                "order__pk",
                "order__status",
                "facility__order_hold_minutes",
                "facility__pacs_ae_title",
            )[:batch_size]
        )
        due = [row[0] for row in rows]
        # Studies whose order arrived at the same moment as their images (each missed
        # the other) are linked to it here, before the order hold is decided.
        linked = studies_order_link(
            study_ids=[row[0] for row in rows if row[4] is None and not row[3]]
        )
        ready: list[tuple[int, int, dt.datetime]] = []
        fetch_priors: list[int] = []
        for (
            study_id,
            priority,
            sla_due,
            is_prior,
            order_id,
            order_status,
            hold_minutes,
            pacs,
        ) in rows:
            if is_prior:
                study_transition(
                    study_id=study_id,
                    to_status=StudyStatus.PRIOR,
                    at=now,
                    reason=f"prior retrieved; no new instance for {quiet_seconds:g} s",
                )
                continue
            if study_id in linked:
                order_id, order_status, priority, sla_due = linked[study_id]
            if order_status == Order.Status.CANCELLED:
                # Its order was cancelled before the images were complete: the study
                # is cancelled, never routed (a CA leaves a receiving study to here,
                # so that its remaining images are filed as usual, not as late ones).
                study_transition(
                    study_id=study_id,
                    to_status=StudyStatus.CANCELLED,
                    at=now,
                    reason="its order was cancelled",
                )
                continue
            holds: dict[str, Any] = {}
            if hold_minutes and order_id is None:
                holds["order_hold_until"] = now + dt.timedelta(minutes=hold_minutes)
            if pacs:
                holds["priors_hold_until"] = now + priors_wait(priority)
                fetch_priors.append(study_id)
            study_transition(
                study_id=study_id,
                to_status=StudyStatus.READY,
                at=now,
                reason=f"no new instance for {quiet_seconds:g} s",
                **holds,
            )
            if not holds:
                ready.append((study_id, priority, sla_due))
        # Routing is enqueued only once the ready state is committed, most urgent
        # first, a batch of studies per message; if a message is lost, the routing
        # sweep picks its studies up after a grace period (a held study, when its
        # hold ends or is released).
        urgent_first = sorted(ready, key=lambda r: (r[1], r[2] or now, r[0]))
        enqueue_in_batches(
            "routing.route_studies",
            [pk for pk, _, _ in urgent_first],
            size=settings.ROUTING_BATCH_SIZE,
        )
        for study_id in fetch_priors:
            enqueue("priors.study_priors_fetch", study_id)
        # The metadata a viewer asks for first, built before a reader opens it.
        enqueue_in_batches("ingest.studies_dicom_json_build", due, size=20)
    return due


def priors_wait(priority: int) -> dt.timedelta:
    """How long a ready study waits for its priors before it is offered anyway."""
    seconds = (
        settings.PRIORS_WAIT_STAT_SECONDS
        if priority == Priority.STAT
        else settings.PRIORS_WAIT_SECONDS
    )
    return dt.timedelta(seconds=seconds)


def instances_dicom_json_build(
    *,
    storage: FileSystemStorage,
    study_ids: list[int] | None = None,
    instance_ids: list[int] | None = None,
) -> int:
    """Build and record the DICOM JSON (data set without bulk data) of the stored
    instances of ``study_ids`` (or of ``instance_ids``) that have none yet: the
    metadata the DICOMweb service answers without opening a file.  Run by a task
    once a study is ready or gets late images, and by the DICOMweb service for
    anything a lost task left.  An object pydicom cannot render whole gets the
    identifying attributes its row holds.  Returns how many were recorded."""
    rows = Instance.objects.filter(dicom_json="")
    if study_ids is not None:
        rows = rows.filter(series__study_id__in=study_ids)
    if instance_ids is not None:
        rows = rows.filter(pk__in=instance_ids)
    found = rows.values_list(
        "pk",
        "storage_key",
        "sop_class_uid",
        "sop_instance_uid",
        "series__series_instance_uid",
        "series__study__study_instance_uid",
        "instance_number",
        "number_of_frames",
    )
    values: list[tuple[int, str, str]] = []
    done = 0
    for pk, key, sop_class, sop, series_uid, study_uid, number, frames in found.iterator(
        chunk_size=500
    ):
        try:
            text = read_dicom_json(storage.path(key))
        except ValueError:  # an unsafe key: never opened
            text = ""
        if not text:
            text = _identifying_json(sop_class, sop, series_uid, study_uid, number, frames)
        values.append((pk, key, text))
        if len(values) >= 200:
            done += instances_dicom_json_set(values=values)
            values = []
    return done + instances_dicom_json_set(values=values)


def _identifying_json(
    sop_class: str, sop: str, series_uid: str, study_uid: str, number: int | None, frames: int
) -> str:
    body: dict[str, Any] = {
        "00080016": {"vr": "UI", "Value": [sop_class]},
        "00080018": {"vr": "UI", "Value": [sop]},
        "0020000D": {"vr": "UI", "Value": [study_uid]},
        "0020000E": {"vr": "UI", "Value": [series_uid]},
        "00280008": {"vr": "IS", "Value": [frames]},
    }
    if number is not None:
        body["00200013"] = {"vr": "IS", "Value": [number]}
    return json.dumps(dict(sorted(body.items())), separators=(",", ":"))


# Each listener process stages into ``.staging/listener-<host>-<pid>-<token>``; the
# token tells this process's folder from one an earlier process of the same pid
# left (a container restarted on the same host name with the same pid).
_STAGING_PREFIX = "listener-"
_process_token = uuid.uuid4().hex[:8]


def _host_name() -> str:
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())[:64] or "host"


def staging_dir_of_this_process(storage: ObjectStorage) -> Path:
    """This process's own staging folder (created if missing)."""
    folder = storage.staging_dir() / (
        f"{_STAGING_PREFIX}{_host_name()}-{os.getpid()}-{_process_token}"
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _staging_owner_gone(name: str) -> bool:
    """Whether the listener process a staging folder is named for has stopped: only
    known for a process of this host (pids of other hosts mean nothing here)."""
    if not name.startswith(_STAGING_PREFIX):
        return False
    parts = name[len(_STAGING_PREFIX) :].rsplit("-", 2)
    if len(parts) != 3:
        return False
    host, pid_text, token = parts
    if host != _host_name() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return token != _process_token  # an earlier process that had our pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def staging_sweep(*, storage: ObjectStorage, max_age_seconds: float) -> int:
    """Remove staged files nothing will file: every file of a listener process that
    has stopped (killed, crashed, restarted), at once, and any other staged file
    older than ``max_age_seconds`` (partial files of aborted transfers: the network
    layer writes them, and nothing files them).  A transfer in progress keeps
    writing its file, so only idle ones are this old."""
    cutoff = time.time() - max_age_seconds
    removed = 0
    for entry in storage.staging_dir().iterdir():
        try:
            if entry.is_dir():
                gone = _staging_owner_gone(entry.name)
                for path in entry.iterdir():
                    if path.is_file() and (gone or path.stat().st_mtime < cutoff):
                        path.unlink()
                        removed += 1
                if gone:
                    entry.rmdir()
            elif entry.is_file() and entry.stat().st_mtime < cutoff:
                entry.unlink()
                removed += 1
        except FileNotFoundError:  # filed or removed meanwhile
            continue
        except OSError as exc:  # e.g. a folder a new file arrived in meanwhile
            logger.warning("staging sweep: %s", exc)
    if removed:
        logger.info("removed %d stale staged file(s)", removed)
    return removed


def storage_usage_measure(*, now: dt.datetime | None = None) -> dict[int, int]:
    """Measure the bytes stored per facility (current instances, earlier versions and
    quarantine; three aggregates), record them, and alert a facility's group admins
    once when its usage passes the warning fraction of its quota and once when it
    reaches it (from then on the gateway answers 0xA710)."""
    now = now or timezone.now()
    usage: dict[int, int] = {}
    sources = [
        Instance.objects.values_list("series__study__facility_id").annotate(n=Sum("size_bytes")),
        InstanceVersion.objects.values_list("instance__series__study__facility_id").annotate(
            n=Sum("size_bytes")
        ),
        QuarantinedObject.objects.exclude(storage_key="")
        .exclude(facility=None)
        .values_list("facility_id")
        .annotate(n=Sum("size_bytes")),
    ]
    for rows in sources:
        for facility_id, n in rows.order_by():
            usage[facility_id] = usage.get(facility_id, 0) + int(n or 0)
    for facility_id, stored in usage.items():
        FacilityStorageUsage.objects.update_or_create(
            facility_id=facility_id, defaults={"stored_bytes": stored, "measured_at": now}
        )
    quotas = Facility.objects.filter(
        pk__in=list(usage), dicom_storage_quota_bytes__isnull=False
    ).select_related("reading_group")
    for facility in quotas:
        quota = facility.dicom_storage_quota_bytes or 0
        stored = usage[facility.pk]
        for fraction, word in ((settings.INGEST_QUOTA_WARNING_FRACTION, "nearly"), (1.0, "")):
            if stored >= quota * fraction:
                alert_raise(
                    kind=Alert.Kind.STORAGE_QUOTA,
                    dedupe_key=f"storage-quota:{facility.pk}:{quota}:{fraction:g}",
                    message=(
                        f"{facility.name} has {'nearly ' if word else ''}used its DICOM storage "
                        f"quota: {stored / 2**30:.2f} of {quota / 2**30:.2f} GiB"
                        + ("" if word else "; new objects are refused (0xA710) until it is raised")
                        + "."
                    ),
                    reading_group=facility.reading_group,
                )
    return usage


ORPHAN_REASON = (
    "a stored file that no instance, version or quarantine row names (left by a filing "
    "that failed midway, e.g. a database outage after the file was put); kept here by "
    "the orphan sweep"
)


def _candidate_sops(name: str) -> list[str]:
    """The SOP Instance UIDs a stored file's name may hold: ``<sop>.<digest>.dcm``,
    or ``<sop>.dcm`` for files stored before keys carried the digest."""
    stem = name[:-4] if name.endswith(".dcm") else name
    head, _, tail = stem.rpartition(".")
    return [c for c in (stem, head if len(tail) == 16 else "") if c and is_valid_uid(c)]


def orphans_sweep(
    *, storage: FileSystemStorage, older_than_seconds: float, batch_size: int = 500
) -> int:
    """Find stored files that no row names and move each into quarantine with a row
    (evidence is never deleted).  Only files older than ``older_than_seconds`` are
    judged, so a filing in progress (file put, row not yet written) is left alone.
    Instance files are matched through the SOP UID in their name (a unique index),
    quarantine files through their key."""
    cutoff = time.time() - older_than_seconds
    found = 0

    def judge(batch: list[tuple[str, str]]) -> int:
        keys = {key for key, _ in batch}
        sops = {sop for _, name in batch for sop in _candidate_sops(name)}
        referenced = set(
            Instance.objects.filter(sop_instance_uid__in=sops).values_list("storage_key", flat=True)
        )
        referenced |= set(
            InstanceVersion.objects.filter(instance__sop_instance_uid__in=sops).values_list(
                "storage_key", flat=True
            )
        )
        referenced |= set(
            QuarantinedObject.objects.filter(storage_key__in=keys).values_list(
                "storage_key", flat=True
            )
        )
        moved = 0
        for key, _ in batch:
            if key not in referenced:
                moved += _orphan_keep(storage, key)
        return moved

    batch: list[tuple[str, str]] = []
    for top in ("studies", "quarantine"):
        root = storage.root / top
        if not root.is_dir():
            continue
        for path in root.rglob("*"):
            try:
                if not path.is_file() or path.stat().st_mtime >= cutoff:
                    continue
            except FileNotFoundError:
                continue
            batch.append((path.relative_to(storage.root).as_posix(), path.name))
            if len(batch) >= batch_size:
                found += judge(batch)
                batch = []
    if batch:
        found += judge(batch)
    if found:
        logger.warning("orphan sweep: %d unreferenced stored file(s) moved to quarantine", found)
    return found


def _orphan_keep(storage: FileSystemStorage, key: str) -> int:
    path = storage.path(key)
    try:
        sha256, size = _digest(path)
    except OSError:
        return 0
    parts = key.split("/")
    study_uid = parts[1] if parts[0] == "studies" and len(parts) == 4 else ""
    facility_id = (
        Study.objects.filter(study_instance_uid=study_uid)
        .values_list("facility_id", flat=True)
        .first()
        if study_uid
        else None
    )
    now = timezone.now()
    dest = f"quarantine/{now:%Y-%m-%d}/{uuid.uuid4().hex}.dcm"
    with transaction.atomic():
        QuarantinedObject.objects.create(
            received_at=dt.datetime.fromtimestamp(path.stat().st_mtime, tz=dt.UTC),
            facility_id=facility_id,
            reason=ORPHAN_REASON,
            status=status.NOT_ANSWERED,
            storage_key=dest,
            size_bytes=size,
            sha256=sha256,
            sop_instance_uid=(_candidate_sops(parts[-1]) or [""])[-1][:200],
            study_instance_uid=study_uid[:200],
        )
        storage.move(key, dest)
    return 1
