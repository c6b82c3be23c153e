"""Writes to studies: creation and the only path for a status change."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit_record, audit_record_each
from network.models import Facility, Jurisdiction, Priority
from studies import states
from studies.models import Instance, InstanceVersion, Patient, Series, Study, StudyTransition
from studies.sla import sla_due_at
from teleradiology.errors import InvalidTransition
from teleradiology.queue import enqueue


def study_create(
    *,
    facility: Facility,
    study_instance_uid: str,
    received_at: dt.datetime | None = None,
    priority: int | None = None,
    patient_jurisdiction: Jurisdiction | None = None,
    **fields: Any,
) -> Study:
    """Create a receiving study; priority, jurisdiction and SLA default from the facility."""
    received_at = received_at or timezone.now()
    priority = int(priority if priority is not None else facility.default_priority)
    study = Study(
        facility=facility,
        study_instance_uid=study_instance_uid,
        received_at=received_at,
        last_instance_at=received_at,
        priority=priority,
        patient_jurisdiction=patient_jurisdiction or facility.jurisdiction,
        sla_due_at=sla_due_at(received_at=received_at, tat_minutes=facility.tat_minutes(priority)),
        **fields,
    )
    study.full_clean()
    with transaction.atomic():
        if study.patient_id and study.patient_record_id is None:
            study.patient_record = patient_for(
                facility=facility,
                patient_id=study.patient_id,
                name=study.patient_name,
                birth_date=study.patient_birth_date,
                sex=study.patient_sex,
            )
        study.save()
        audit_record(
            actor=None,
            action=AuditEvent.Action.CREATE,
            obj=study,
            patient_id=study.patient_id,
            detail={"facility": facility.pk, "priority": Priority(priority).label},
        )
    return study


def patient_for(
    *,
    facility: Facility,
    patient_id: str,
    issuer: str = "",
    name: str = "",
    birth_date: dt.date | None = None,
    sex: str = "",
) -> Patient:
    """The patient record (reading group, issuer, patient id), created with the
    demographics given if new; ``issuer`` defaults to the facility's.  Never two
    records for one identity: the unique constraint decides a race, the loser reads
    the winner's row."""
    issuer = issuer or facility.patient_issuer
    identity = {
        "reading_group_id": facility.reading_group_id,
        "issuer": issuer[:64],
        "patient_id": patient_id[:64],
    }
    found = Patient.objects.filter(**identity).first()
    if found is not None:
        return found
    try:
        with transaction.atomic():
            return Patient.objects.create(
                **identity, name=name[:200], birth_date=birth_date, sex=sex[:1]
            )
    except IntegrityError:
        return Patient.objects.get(**identity)


def study_hold_release(*, study_id: int, hold: str, at: dt.datetime | None = None) -> bool:
    """End a ready study's hold early (``hold`` is "order" or "priors": its order came,
    its priors are in) and hand it to routing if nothing else holds it.  Returns
    whether the study is now free to route.  A hold already over changes nothing."""
    at = at or timezone.now()
    field = {"order": "order_hold_until", "priors": "priors_hold_until"}[hold]
    with transaction.atomic():
        study = Study.objects.select_for_update(of=("self",)).filter(pk=study_id).first()
        if study is None or getattr(study, field) is None:
            return False
        setattr(study, field, None)
        study.save(update_fields=[field, "updated_at"])
        free = study.status == states.StudyStatus.READY and all(
            other is None or other <= at
            for other in (study.order_hold_until, study.priors_hold_until)
        )
        if free:
            enqueue("routing.route_studies", [study.pk])
    return free


def study_transition(
    *,
    study_id: int,
    to_status: str,
    actor: User | None = None,
    reason: str = "",
    ip_address: str | None = None,
    at: dt.datetime | None = None,
    locked: Study | None = None,
    **changes: Any,
) -> Study:
    """Move a study to ``to_status`` if the state machine allows it, recording when and why.

    The row is locked for the change, so two concurrent transitions from the
    same state cannot both succeed.  ``changes`` are other fields set in the
    same write (e.g. the assigned radiologist on claim).  A caller that already
    holds the row lock in its transaction passes the instance as ``locked``.
    """
    at = at or timezone.now()
    study = locked if locked is not None and locked.pk == study_id else None
    # A caller holding the lock needs no savepoint: the refusal is raised after the
    # block (nothing written), and a failed write must fail its transaction anyway.
    with transaction.atomic(savepoint=study is None):
        if study is None:
            study = Study.objects.select_for_update().get(pk=study_id)
        from_status = study.status
        refusal = states.transition_refusal(from_status, to_status)
        if refusal is None:
            study.status = to_status
            stamp = states.TIMESTAMP_FIELD.get(to_status)
            if stamp is not None:
                setattr(study, stamp, at)
            for name, value in changes.items():
                setattr(study, name, value)
            fields = {"status", "updated_at", *changes}
            if stamp is not None:
                fields.add(stamp)
            study.save(update_fields=sorted(fields))
            StudyTransition.objects.create(
                study=study,
                from_status=from_status,
                to_status=to_status,
                at=at,
                actor=actor,
                reason=reason,
            )
            audit_record(
                actor=actor,
                action=AuditEvent.Action.TRANSITION,
                obj=study,
                patient_id=study.patient_id,
                ip_address=ip_address,
                detail={"from": from_status, "to": to_status, "reason": reason},
            )
    if refusal is not None:
        raise InvalidTransition(refusal, code="invalid_transition")
    return study


def studies_transition_locked(
    *,
    studies: list[Study],
    to_status: str,
    at: dt.datetime,
    reasons: dict[int, str],
    actor: User | None = None,
) -> None:
    """``study_transition`` for many rows the caller has locked in its transaction
    (a routing batch): the same state machine, one UPDATE, one INSERT of the
    transition records and one of the audit events.  If any of them may not move,
    nothing is written and the refusal is raised."""
    if not studies:
        return
    for study in studies:
        refusal = states.transition_refusal(study.status, to_status)
        if refusal is not None:
            raise InvalidTransition(f"study {study.pk}: {refusal}", code="invalid_transition")
    stamp = states.TIMESTAMP_FIELD.get(to_status)
    changes: dict[str, Any] = {"status": to_status, "updated_at": timezone.now()}
    if stamp is not None:
        changes[stamp] = at
    Study.objects.filter(pk__in=[s.pk for s in studies]).update(**changes)
    from_status = {s.pk: s.status for s in studies}
    for study in studies:
        for name, value in changes.items():
            setattr(study, name, value)
    StudyTransition.objects.bulk_create(
        [
            StudyTransition(
                study=study,
                from_status=from_status[study.pk],
                to_status=to_status,
                at=at,
                actor=actor,
                reason=reasons.get(study.pk, ""),
            )
            for study in studies
        ]
    )
    audit_record_each(
        actor=actor,
        action=AuditEvent.Action.TRANSITION,
        object_type=Study._meta.label_lower,
        items=[
            (
                str(study.pk),
                study.patient_id,
                {
                    "from": from_status[study.pk],
                    "to": to_status,
                    "reason": reasons.get(study.pk, ""),
                },
            )
            for study in studies
        ],
    )


# -- filing: what the DICOM gateway records of what it stored -------------------


def study_arrival_record(*, study_id: int, at: dt.datetime) -> bool:
    """Record an instance's arrival on its study; True when the study was already
    past receiving (a late instance, counted)."""
    if Study.objects.filter(pk=study_id, status=states.StudyStatus.RECEIVING).update(
        last_instance_at=at
    ):
        return False
    Study.objects.filter(pk=study_id).update(
        last_instance_at=at, late_instance_count=F("late_instance_count") + 1
    )
    return True


def study_refused_count_add(*, study_instance_uid: str, facility_id: int) -> None:
    """Count one refused object on its study, if the study exists and is the sending
    facility's, so that the reader is told the study may be missing images."""
    Study.objects.filter(study_instance_uid=study_instance_uid, facility_id=facility_id).update(
        refused_instance_count=F("refused_instance_count") + 1
    )


def study_refused_count_set(*, study_id: int, count: int) -> None:
    """Set a new study's count of objects refused before it existed."""
    Study.objects.filter(pk=study_id).update(refused_instance_count=count)


def series_file(*, series_instance_uid: str, study_id: int, **fields: Any) -> tuple[int, int]:
    """(series id, study id) of the series, created in ``study_id`` with ``fields``
    if new; an existing series keeps its study (the caller compares)."""
    series, _ = Series.objects.get_or_create(
        series_instance_uid=series_instance_uid, defaults={"study_id": study_id, **fields}
    )
    return series.pk, series.study_id


def instance_file(*, sop_instance_uid: str, **fields: Any) -> Instance:
    """Record a stored instance; IntegrityError if the SOP Instance is recorded."""
    with transaction.atomic():
        return Instance.objects.create(sop_instance_uid=sop_instance_uid, **fields)


def instances_dicom_json_set(*, values: list[tuple[int, str, str]]) -> int:
    """Record instances' DICOM JSON, each given as (instance id, the storage key it
    was built from, JSON); an instance whose current version has moved on since
    (another key) is left for the next build.  Returns how many were recorded."""
    done = 0
    for instance_id, storage_key, text in values:
        done += Instance.objects.filter(pk=instance_id, storage_key=storage_key).update(
            dicom_json=text
        )
    return done


def instance_mark_after_ready(*, instance_id: int) -> None:
    """Flag an instance that arrived after its study was ready."""
    Instance.objects.filter(pk=instance_id).update(after_ready=True)


def instance_lock(*, sop_instance_uid: str) -> Instance:
    """The recorded instance, locked for a new version (inside the caller's transaction)."""
    return Instance.objects.select_for_update().get(sop_instance_uid=sop_instance_uid)


def instance_version_replace(
    *, existing: Instance, at: dt.datetime, patient_id: str, detail: dict[str, Any], **fields: Any
) -> None:
    """Keep the (locked) instance's current version as an InstanceVersion and record
    the new one in its place, audited; nothing stored is deleted."""
    InstanceVersion.objects.create(
        instance=existing,
        sha256=existing.sha256,
        size_bytes=existing.size_bytes,
        storage_key=existing.storage_key,
        transfer_syntax_uid=existing.transfer_syntax_uid,
        calling_ae=existing.calling_ae,
        received_at=existing.received_at,
        superseded_at=at,
    )
    Instance.objects.filter(pk=existing.pk).update(
        replaced_count=F("replaced_count") + 1, replaced_at=at, **fields
    )
    audit_record(
        actor=None,
        action=AuditEvent.Action.UPDATE,
        obj=existing,
        patient_id=patient_id,
        detail=detail,
    )


# -- changes by routing and worklist ----------------------------------------------


def study_triage_set(
    *,
    study: Study,
    actor: User | None,
    priority: int | None = None,
    flags: list[str] | None = None,
    ip_address: str | None = None,
) -> bool:
    """Change the (locked) study's priority and/or triage flags and recompute its SLA
    due time, audited; False if nothing changed."""
    before = {"priority": study.priority, "flags": list(study.flags or [])}
    if priority is not None and priority != study.priority:
        study.priority = priority
        study.sla_due_at = sla_due_at(
            received_at=study.received_at, tat_minutes=study.facility.tat_minutes(priority)
        )
    if flags is not None:
        study.flags = sorted(set(flags))
    after = {"priority": study.priority, "flags": list(study.flags or [])}
    if after == before:
        return False
    study.save(update_fields=["priority", "sla_due_at", "flags", "updated_at"])
    audit_record(
        actor=actor,
        action=AuditEvent.Action.UPDATE,
        obj=study,
        patient_id=study.patient_id,
        ip_address=ip_address,
        detail={"triage": [before, after]},
    )
    return True


def study_claim_activity_record(*, study_id: int, at: dt.datetime) -> None:
    """Note activity on the study's claim (a draft saved): the stale-claim sweep
    measures idleness from here."""
    Study.objects.filter(pk=study_id).update(claim_activity_at=at)


def study_claim_hand_over(
    *,
    study: Study,
    to_radiologist_id: int,
    at: dt.datetime,
    actor: User | None,
    ip_address: str | None,
) -> None:
    """Move the (locked) study's claim to another reader, audited."""
    previous = study.assigned_radiologist_id
    study.assigned_radiologist_id = to_radiologist_id
    study.claimed_at = study.claim_activity_at = at
    study.save(
        update_fields=["assigned_radiologist", "claimed_at", "claim_activity_at", "updated_at"]
    )
    audit_record(
        actor=actor,
        action=AuditEvent.Action.UPDATE,
        obj=study,
        patient_id=study.patient_id,
        ip_address=ip_address,
        detail={"reassigned": [previous, to_radiologist_id]},
    )
