"""Writes to studies: creation and the only path for a status change."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit_record, audit_record_each
from network.models import Facility, Jurisdiction, Priority
from studies import states
from studies.models import Study, StudyTransition
from studies.sla import sla_due_at
from teleradiology.errors import InvalidTransition


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
        study.save()
        audit_record(
            actor=None,
            action=AuditEvent.Action.CREATE,
            obj=study,
            patient_id=study.patient_id,
            detail={"facility": facility.pk, "priority": Priority(priority).label},
        )
    return study


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
