"""Writes to studies: creation and the only path for a status change."""

from __future__ import annotations

import datetime as dt
from typing import Any, NamedTuple

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit_record, audit_record_each
from network.models import Facility, Jurisdiction, Priority
from studies import states
from studies.models import (
    Instance,
    InstanceVersion,
    Order,
    Patient,
    Series,
    Study,
    StudyTransition,
)
from studies.sla import sla_due_at
from teleradiology.errors import Conflict, InvalidTransition
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
        # Its order may have come first (HL7): link it and take what it brings.
        if study.accession_number and not study.is_prior:
            _order_link_unlinked(study=study)
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
    found = Patient.objects.filter(**identity).select_related("merged_into").first()
    if found is not None:
        # A merged record (ADT^A40) stands for its survivor (kept one hop away).
        return found.merged_into or found
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


# -- orders and patients: the facility's HL7 feed ----------------------------------
# The `orders` app reads the messages and applies them through these.  Locks are
# taken in one order everywhere: the studies of an accession, then its order, so an
# order applied while its images are declared ready (which locks the study first)
# cannot deadlock with it.


class OrderApplied(NamedTuple):
    """What applying an order did: its row, and its study's state afterwards."""

    order: Order
    created: bool
    changed: list[str]  # the order's fields that changed
    study_id: int | None
    study_status: str | None
    linked: bool  # the study was linked to the order by this call
    priority_raised: bool  # the study took the order's more urgent priority
    jurisdiction_changed: bool  # the study's patient jurisdiction followed the order
    order_held: bool  # the study is ready and held from routing for its order


class LinkedOrder(NamedTuple):
    """A study's order as linked at ready time, and the study's priority after it."""

    order_id: int
    status: str
    priority: int
    sla_due_at: dt.datetime


class PatientsMerged(NamedTuple):
    survivor: Patient
    prior: Patient
    studies: int  # relinked to the survivor
    orders: int


def _order_values(order: Order, values: dict[str, Any]) -> dict[str, list[Any]]:
    """Set ``values`` on the order (text cut to its column), returning what changed."""
    changed: dict[str, list[Any]] = {}
    for name, value in values.items():
        column = Order._meta.get_field(name)
        max_length = getattr(column, "max_length", None)
        if isinstance(value, str) and max_length:
            value = value[:max_length]
        attname = getattr(column, "attname", name)  # "patient" -> "patient_id"
        before = getattr(order, attname)
        if before != value:
            changed[name] = [before, value]
            setattr(order, attname, value)
    return changed


def _accession_studies(*, facility_id: int, accession_number: str) -> list[Study]:
    """The facility's studies with this accession number (priors aside), locked."""
    return list(
        Study.objects.select_for_update(of=("self",))
        .select_related("facility")
        .filter(facility_id=facility_id, accession_number=accession_number, is_prior=False)
        .order_by("pk")
    )


def _order_to_study(*, study: Study, order: Order) -> tuple[bool, bool]:
    """Apply the order to its (locked) study: the more urgent priority (SLA
    recomputed) and, when the facility takes the patient's jurisdiction from the
    order, that jurisdiction; a study without a patient record takes the order's.
    A final, cancelled or prior study is left as it is.  Returns (priority raised,
    jurisdiction changed).

    A lower order priority never lowers the study's: what part of its priority came
    from its DICOM header or from triage is not kept, and lowering a study's urgency
    on a guess is the unsafe direction."""
    if study.status in states.TERMINAL_STATES or study.status == states.StudyStatus.PRIOR:
        return False, False
    raised = False
    if order.priority is not None and order.priority < study.priority:
        raised = study_triage_set(study=study, actor=None, priority=order.priority)
    moved = False
    facility = study.facility
    if facility.order_jurisdiction_source != Facility.OrderJurisdictionSource.FACILITY:
        target = order.jurisdiction_id or facility.jurisdiction_id
        before = study.patient_jurisdiction_id
        if target != before:
            codes = dict(
                Jurisdiction.objects.filter(pk__in=[before, target]).values_list("pk", "code")
            )
            study.patient_jurisdiction_id = target
            study.save(update_fields=["patient_jurisdiction", "updated_at"])
            audit_record(
                actor=None,
                action=AuditEvent.Action.UPDATE,
                obj=study,
                patient_id=study.patient_id,
                detail={
                    "patient_jurisdiction": [codes.get(before), codes.get(target)],
                    "from_order": order.pk,
                },
            )
            moved = True
    if study.patient_record_id is None and order.patient_id is not None:
        study.patient_record_id = order.patient_id
        study.save(update_fields=["patient_record", "updated_at"])
    return raised, moved


def _order_link_unlinked(*, study: Study) -> Order | None:
    """Link the (locked or new) study to its facility's unlinked order of the same
    accession number, if there is one, and apply the order to it."""
    order = (
        Order.objects.select_for_update(of=("self",))
        .filter(
            facility_id=study.facility_id,
            accession_number=study.accession_number,
            study__isnull=True,
        )
        .first()
    )
    if order is None:
        return None
    order.study = study
    order.save(update_fields=["study", "updated_at"])
    audit_record(
        actor=None,
        action=AuditEvent.Action.UPDATE,
        obj=order,
        patient_id=study.patient_id,
        detail={"linked_study": study.pk, "images_after_order": True},
    )
    _order_to_study(study=study, order=order)
    return order


def studies_order_link(*, study_ids: list[int]) -> dict[int, LinkedOrder]:
    """Link each of these studies to its facility's unlinked order of the same
    accession number, applying it (``_order_to_study``): the backstop, at ready
    time, for an order and images that arrived at the same moment and each missed the
    other.  Returns the studies linked now, with their order and priority after it.
    Two statements for the batch when nothing is to link (a facility with no feed)."""
    with transaction.atomic():
        studies = list(
            Study.objects.select_for_update(of=("self",))
            .select_related("facility")
            .filter(pk__in=study_ids, is_prior=False, order__isnull=True)
            .exclude(accession_number="")
            .order_by("pk")
        )
        if not studies:
            return {}
        wanted = Q()
        for study in studies:
            wanted |= Q(facility_id=study.facility_id, accession_number=study.accession_number)
        orders = {
            (o.facility_id, o.accession_number): o
            for o in Order.objects.select_for_update(of=("self",))
            .filter(wanted, study__isnull=True)
            .order_by("pk")
        }
        linked: dict[int, LinkedOrder] = {}
        for study in studies:
            order = orders.pop((study.facility_id, study.accession_number), None)
            if order is None:
                continue  # none, or an earlier study of the same accession took it
            order.study = study
            order.save(update_fields=["study", "updated_at"])
            audit_record(
                actor=None,
                action=AuditEvent.Action.UPDATE,
                obj=order,
                patient_id=study.patient_id,
                detail={"linked_study": study.pk, "at_ready": True},
            )
            _order_to_study(study=study, order=order)
            linked[study.pk] = LinkedOrder(order.pk, order.status, study.priority, study.sla_due_at)
        return linked


def order_upsert(
    *,
    facility: Facility,
    accession_number: str,
    values: dict[str, Any],
    at: dt.datetime,
    status: str | None = None,
    patient: Patient | None = None,
    create: bool = True,
) -> OrderApplied | None:
    """Create or change the facility's order of ``accession_number`` with ``values``
    (Order fields; one not given is left as it is), link it to its study if the
    images came first, and apply it to the study (``_order_to_study``).  An order
    that does not exist is created when ``create`` or when its study exists; else
    None.  A cancelled order is not changed (Conflict).  Idempotent: the same
    values again change nothing.  One order per (facility, accession): the unique
    constraint decides a race, the loser updates the winner's row."""
    with transaction.atomic():
        studies = _accession_studies(facility_id=facility.pk, accession_number=accession_number)
        order = (
            Order.objects.select_for_update(of=("self",))
            .filter(facility=facility, accession_number=accession_number)
            .first()
        )
        created = False
        if order is None:
            if not create and not studies:
                return None
            order = Order(
                facility=facility,
                accession_number=accession_number,
                received_at=at,
                status=status or Order.Status.NEW,
                patient=patient,
            )
            _order_values(order, values)
            try:
                with transaction.atomic():
                    order.save()
                created = True
            except IntegrityError:
                order = Order.objects.select_for_update(of=("self",)).get(
                    facility=facility, accession_number=accession_number
                )
        changed: dict[str, list[Any]] = {}
        if not created:
            if order.status == Order.Status.CANCELLED:
                raise Conflict(
                    f"Order {accession_number} was cancelled; a new order needs a new "
                    "accession number.",
                    code="order_cancelled",
                )
            given = dict(values)
            if status:
                given["status"] = status
            if patient is not None:
                given["patient"] = patient.pk
            changed = _order_values(order, given)
        study, linked = _order_study(order=order, studies=studies)
        if created or changed or linked:
            order.save()
            audit_record(
                actor=None,
                action=AuditEvent.Action.CREATE if created else AuditEvent.Action.UPDATE,
                obj=order,
                patient_id=patient.patient_id if patient is not None else "",
                detail={
                    "accession_number": accession_number,
                    **({"changed": sorted(changed)} if changed else {}),
                    **({"linked_study": study.pk} if linked and study is not None else {}),
                },
            )
        raised = moved = False
        if study is not None:
            raised, moved = _order_to_study(study=study, order=order)
        return OrderApplied(
            order=order,
            created=created,
            changed=sorted(changed),
            study_id=study.pk if study is not None else None,
            study_status=study.status if study is not None else None,
            linked=linked,
            priority_raised=raised,
            jurisdiction_changed=moved,
            order_held=study is not None
            and study.status == states.StudyStatus.READY
            and study.order_hold_until is not None,
        )


def _order_study(*, order: Order, studies: list[Study]) -> tuple[Study | None, bool]:
    """The order's study (locked) and whether it is linked now: the oldest of the
    accession's studies when the order has none yet."""
    if order.study_id is None:
        if not studies:
            return None, False
        order.study = studies[0]
        return studies[0], True
    found = next((s for s in studies if s.pk == order.study_id), None)
    if found is None:  # its accession number changed since: still the order's study
        found = (
            Study.objects.select_for_update(of=("self",))
            .select_related("facility")
            .get(pk=order.study_id)
        )
    return found, False


def order_cancel_record(
    *,
    facility: Facility,
    accession_number: str,
    at: dt.datetime,
    reason: str,
    values: dict[str, Any] | None = None,
    patient: Patient | None = None,
) -> OrderApplied | None:
    """Mark the facility's order of ``accession_number`` cancelled (audited), linking
    its study if the images came first; when only the study is known (its order was
    never sent), the order is recorded, cancelled, from ``values``.  None when
    neither is known.  The study itself is cancelled by the caller, which withdraws
    its offers and ends its claim.  Cancelling a cancelled order changes nothing."""
    with transaction.atomic():
        studies = _accession_studies(facility_id=facility.pk, accession_number=accession_number)
        order = (
            Order.objects.select_for_update(of=("self",))
            .filter(facility=facility, accession_number=accession_number)
            .first()
        )
        if order is None and not studies:
            return None
        created = order is None
        if order is None:
            order = Order(
                facility=facility,
                accession_number=accession_number,
                received_at=at,
                patient=patient,
            )
            _order_values(order, values or {})
        was = order.status
        study, linked = _order_study(order=order, studies=studies)
        if was != Order.Status.CANCELLED or linked:
            order.status = Order.Status.CANCELLED
            order.cancelled_at = order.cancelled_at or at
            order.save()
            audit_record(
                actor=None,
                action=AuditEvent.Action.CREATE if created else AuditEvent.Action.UPDATE,
                obj=order,
                patient_id=patient.patient_id if patient is not None else "",
                detail={
                    "accession_number": accession_number,
                    "status": [None if created else was, Order.Status.CANCELLED],
                    "reason": reason[:200],
                    **({"linked_study": study.pk} if linked and study is not None else {}),
                },
            )
        return OrderApplied(
            order=order,
            created=created,
            changed=["status"] if was != Order.Status.CANCELLED else [],
            study_id=study.pk if study is not None else None,
            study_status=study.status if study is not None else None,
            linked=linked,
            priority_raised=False,
            jurisdiction_changed=False,
            order_held=False,
        )


def patient_update(
    *,
    facility: Facility,
    patient_id: str,
    issuer: str = "",
    values: dict[str, Any] | None = None,
) -> Patient:
    """The patient record (found or created as ``patient_for`` does, a merged one
    standing for its survivor) with the demographics in ``values`` set: the
    facility's HL7 feed is the current record of its patients.  Audited when
    something changed; the same values again change nothing."""
    values = values or {}
    with transaction.atomic():
        found = patient_for(facility=facility, patient_id=patient_id, issuer=issuer)
        patient = Patient.objects.select_for_update().get(pk=found.pk)
        changed: dict[str, list[Any]] = {}
        for name, value in values.items():
            column = Patient._meta.get_field(name)
            max_length = getattr(column, "max_length", None)
            if isinstance(value, str) and max_length:
                value = value[:max_length]
            before = getattr(patient, name)
            if before != value:
                changed[name] = [str(before) if before is not None else None, str(value)]
                setattr(patient, name, value)
        if changed:
            patient.save()
            audit_record(
                actor=None,
                action=AuditEvent.Action.UPDATE,
                obj=patient,
                patient_id=patient.patient_id,
                detail={"demographics": sorted(changed)},
            )
    return patient


def patients_merge(
    *,
    facility: Facility,
    prior_id: str,
    survivor_id: str,
    at: dt.datetime,
    prior_issuer: str = "",
    survivor_issuer: str = "",
) -> PatientsMerged | None:
    """Merge the prior patient record into the survivor (HL7 ADT^A40): the prior's
    studies and orders (and records merged into it before) move to the survivor,
    and the prior points at it (``merged_into``, ``merged_at``), audited on both.
    None when the prior patient is unknown; Conflict when it was merged into another
    patient already or is the survivor itself.  The same merge again changes
    nothing.  Merged records point one hop to a survivor that is not merged."""
    with transaction.atomic():
        prior = Patient.objects.filter(
            reading_group_id=facility.reading_group_id,
            issuer=(prior_issuer or facility.patient_issuer)[:64],
            patient_id=prior_id[:64],
        ).first()
        if prior is None:
            return None
        survivor = patient_for(facility=facility, patient_id=survivor_id, issuer=survivor_issuer)
        locked = {
            p.pk: p
            for p in Patient.objects.select_for_update()
            .filter(pk__in=[prior.pk, survivor.pk])
            .order_by("pk")
        }
        prior, survivor = locked[prior.pk], locked[survivor.pk]
        if prior.merged_into_id is not None:
            if prior.merged_into_id == survivor.pk:
                return PatientsMerged(survivor, prior, 0, 0)
            raise Conflict(
                f"Patient {prior.patient_id} was merged into another patient already.",
                code="patient_merged",
            )
        if prior.pk == survivor.pk:
            raise Conflict(
                f"Patient {prior.patient_id} cannot be merged into itself.", code="patient_merged"
            )
        studies = Study.objects.filter(patient_record=prior).update(patient_record=survivor)
        orders = Order.objects.filter(patient=prior).update(patient=survivor)
        Patient.objects.filter(merged_into=prior).update(merged_into=survivor, merged_at=at)
        prior.merged_into = survivor
        prior.merged_at = at
        prior.save(update_fields=["merged_into", "merged_at", "updated_at"])
        audit_record(
            actor=None,
            action=AuditEvent.Action.UPDATE,
            obj=prior,
            patient_id=prior.patient_id,
            detail={"merged_into": survivor.pk, "studies": studies, "orders": orders},
        )
        audit_record(
            actor=None,
            action=AuditEvent.Action.UPDATE,
            obj=survivor,
            patient_id=survivor.patient_id,
            detail={"merged_from": prior.pk, "studies": studies, "orders": orders},
        )
    return PatientsMerged(survivor, prior, studies, orders)
