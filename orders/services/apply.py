"""Applying an HL7 message to orders, patients and studies (the domain step after a
message is admitted and stored).

Messages and what they do:

- **ORM^O01 / OMI^O23**, one order per ORC (with the OBR, TQ1, NTE and IPC after
  it); ORC-1 says what to do:

  - ``NW`` (new): the order is created, or updated when it exists (a repeated NW,
    under another control id, is an upsert and changes nothing twice);
  - ``XO`` (change): the fields sent replace the order's; a field sent empty is
    left as it is, one sent as ``""`` is cleared;
  - ``SC`` (status changed): ORC-5 is the order's status (SC scheduled, IP / A in
    progress, CM completed; CA / DC cancel it as a CA does);
  - ``CA`` (cancel) and ``OC`` (cancelled by the filler): the order is cancelled
    and so is its study, unless it is final: its offers are withdrawn, a claim is
    ended and its reader told (an alert to them), its escalation timer cleared.  A
    study still receiving its images is cancelled when they are complete (the
    ready sweep), so that its remaining images are filed as usual; images that
    arrive for an order cancelled before them make a study that is cancelled at
    that moment too, never routed.

  **Out of order**: an XO, SC or CA whose accession number we know neither as an
  order nor as a study is answered AE naming the accession field.  When only the
  study is known (its NW never came), an XO or SC creates the order from what it
  carries and a CA records it cancelled and cancels the study.  NW, XO and SC for
  an order already cancelled are answered AE (ORC-1): a new order needs a new
  accession number.

  **The accession number** (at most 16 characters, as DICOM's): ORM^O01 from
  OBR-18 (placer field 1, where IHE's scheduled workflow puts it), else the filler
  order number ORC-3, else OBR-3; OMI^O23 from IPC-1 (accession identifier), else
  OBR-18.  Missing: AE naming IPC-1 (OMI) or OBR-18 (ORM).

  **What the order keeps**: placer number ORC-2 (else OBR-2), filler number ORC-3
  (else OBR-3), procedure OBR-4 (code, text), reason for exam OBR-31 (each
  repetition's text, else its code), clinical history OBR-13 and the NTE comments
  after the OBR, ordering provider ORC-12 (else OBR-16) as "Family, Given",
  patient class PV1-2, patient location PV1-3 (its components, " / "), priority
  TQ1-9 (else ORC-7.6, else OBR-27.6; S/STAT -> STAT, A/ASAP -> urgent, R ->
  routine, other table 0027/0485 codes as documented in ``orders.fields``; an
  unknown code is AE), ordered at ORC-9 (the facility's local time without an
  offset; an invalid date is AE).  The patient's jurisdiction follows the order when
  the facility says so (``order_jurisdiction_source``): PV1-3's point of care
  through ``order_location_jurisdictions``, or PID-11's country and state as the
  jurisdiction "<country>-<state>" when we have it (a country left out is the
  facility's); otherwise the facility's own.

- **The patient** (PID-3, required for a new order and for ADT): the PID-3
  repetition whose assigning authority (PID-3.4) is the facility's issuer, else the
  first of type MR, else the first; its issuer is PID-3.4, or the facility's when
  none is sent.  A facility that declares no issuer (``patient_id_issuer`` empty)
  keeps every patient in its own namespace, PID-3.4 or not: that is where its
  images' patients are, so that an order, its images and an A40 meet one record.
  Name PID-5, birth date PID-7, sex PID-8, address PID-11 (state, country) update
  the patient record (the feed is its current record).
- **ADT^A08** updates the patient record only: the studies' own patient name,
  birth date and sex stay as their DICOM headers have them (the headers are the
  record of the images; the patient record, which the study links to, is current).
- **ADT^A40** merges MRG-1 (the prior id; MRG-1.4 its issuer) into PID-3 (the
  survivor): studies and orders move to the survivor, the prior record points at it.
  An unknown prior patient is AE on MRG-1.

An order arriving for an existing study links it (and a study arriving for an
existing order links it: ``studies.services.study_create``, with a backstop at ready
time for the two arriving at once).  Applying an order to a study raises its
priority to the order's when more urgent (never lowers it), moves its patient
jurisdiction as above, releases a study held for its order, and re-routes a study
not yet claimed whose priority or jurisdiction changed (a claimed study keeps its
reader: signing checks the reader's license in the new jurisdiction again).

Runs inside the caller's transaction (a savepoint per message): no network I/O;
routing and alerts' mail go out by name after commit.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from alerts.models import Alert
from alerts.services import alert_raise
from network.models import Facility, Jurisdiction
from orders.errors import MessageRejected
from orders.fields import (
    HL7_NULL,
    FieldError,
    Segment,
    birth_date,
    country_code,
    person_name,
    priority,
    provider_name,
    segments,
    timestamp,
)
from routing.services import routing_timer_clear
from studies.models import Order, Patient, Study
from studies.services import (
    OrderApplied,
    order_cancel_record,
    order_upsert,
    patient_update,
    patients_merge,
    study_hold_release,
    study_transition,
)
from studies.states import LIVE_STATES, StudyStatus
from teleradiology.errors import Conflict
from teleradiology.queue import enqueue
from worklist.services.offers import offers_withdraw

logger = logging.getLogger(__name__)

ACCESSION_MAX = 16
NEW, CHANGE, STATUS = "NW", "XO", "SC"
CANCEL = ("CA", "OC")
CONTROLS = (NEW, CHANGE, STATUS, *CANCEL)
# ORC-5 (order status, table 0038) -> our order status; "cancel" cancels.
ORDER_STATUS = {
    "SC": Order.Status.SCHEDULED,
    "HD": Order.Status.SCHEDULED,
    "IP": Order.Status.IN_PROGRESS,
    "A": Order.Status.IN_PROGRESS,
    "CM": Order.Status.COMPLETED,
    "CA": "cancel",
    "DC": "cancel",
}
PATIENT_CLASSES = {c.value for c in Order.PatientClass if c.value}


@dataclass
class _OrderGroup:
    """One order of the message: its ORC and the segments after it."""

    orc: Segment
    obr: Segment | None = None
    tq1: list[Segment] = field(default_factory=list)
    nte: list[Segment] = field(default_factory=list)
    ipc: list[Segment] = field(default_factory=list)


def message_apply(*, facility: Facility, message: Any, raw: str, received_at: dt.datetime) -> str:
    """Apply one admitted HL7 message (ORM^O01, OMI^O23, ADT^A08, ADT^A40) from
    ``facility`` to its orders, patients and studies; returns a short summary.
    Raises MessageRejected (AE and the field) for a message understood but wrong,
    having written nothing (its own savepoint)."""
    segs = segments(message)
    msh = next((s for s in segs if s.name == "MSH"), None)
    kind = _message_type(msh)
    try:
        with transaction.atomic():
            if kind in ("ORM^O01", "OMI^O23"):
                return _orders_apply(facility, segs, kind=kind, at=received_at)
            if kind == "ADT^A08":
                return _patient_apply(facility, segs)
            if kind == "ADT^A40":
                return _merge_apply(facility, segs, at=received_at)
    except FieldError as exc:
        raise MessageRejected(exc.text, field=exc.field) from exc
    raise MessageRejected(f"{kind or 'this message type'} is not applied", code="AR", field="MSH-9")


def _message_type(msh: Segment | None) -> str:
    # hl7apy names MSH's fields by their HL7 numbers (MSH_9: the message type).
    if msh is None:
        return ""
    return f"{msh.text(9, 1) or ''}^{msh.text(9, 2) or ''}".upper()


# -- orders ----------------------------------------------------------------------


def _orders_apply(facility: Facility, segs: list[Segment], *, kind: str, at: dt.datetime) -> str:
    pid = next((s for s in segs if s.name == "PID"), None)
    pv1 = next((s for s in segs if s.name == "PV1"), None)
    groups = _order_groups(segs)
    if not groups:
        raise MessageRejected("the message has no ORC segment", field="ORC-1")
    summaries = []
    patient = _patient(facility, pid) if pid is not None and pid.sent(3) else None
    for group in groups:
        control = (group.orc.text(1) or "").upper()
        if control not in CONTROLS:
            raise MessageRejected(
                f"order control {control or '(empty)'!r} is not one of {', '.join(CONTROLS)}",
                field="ORC-1",
            )
        accession, accession_field = _accession(group, kind=kind)
        if patient is None and control == NEW:
            raise MessageRejected("a new order needs the patient (PID-3)", field="PID-3")
        values = _order_values(facility, group, pid=pid, pv1=pv1)
        status_code = (group.orc.text(5) or "").upper()
        status = ORDER_STATUS.get(status_code) if status_code else None
        if control == STATUS and status is None:
            raise MessageRejected(
                f"order status {status_code or '(empty)'!r} is not one of "
                f"{', '.join(ORDER_STATUS)}",
                field="ORC-5",
            )
        if control in CANCEL or (control == STATUS and status == "cancel"):
            summaries.append(
                _order_cancel(
                    facility,
                    group,
                    control=control,
                    accession=accession,
                    accession_field=accession_field,
                    values=values,
                    patient=patient,
                    at=at,
                )
            )
            continue
        try:
            applied = order_upsert(
                facility=facility,
                accession_number=accession,
                values=values,
                at=at,
                status=None if status == "cancel" else status,
                patient=patient,
                create=control == NEW,
            )
        except Conflict as exc:
            raise MessageRejected(exc.message, field="ORC-1") from exc
        if applied is None:
            raise MessageRejected(
                f"no order or study with accession number {accession} for ORC-1 {control}",
                field=accession_field,
            )
        summaries.append(f"{control} {accession}: {_study_follow_up(applied)}")
    return "; ".join(summaries)


def _order_groups(segs: list[Segment]) -> list[_OrderGroup]:
    groups: list[_OrderGroup] = []
    for seg in segs:
        if seg.name == "ORC":
            groups.append(_OrderGroup(orc=seg))
        elif not groups:
            continue
        elif seg.name == "OBR" and groups[-1].obr is None:
            groups[-1].obr = seg
        elif seg.name == "TQ1":
            groups[-1].tq1.append(seg)
        elif seg.name == "NTE" and groups[-1].obr is not None:
            groups[-1].nte.append(seg)
        elif seg.name == "IPC":
            groups[-1].ipc.append(seg)
    return groups


def _accession(group: _OrderGroup, *, kind: str) -> tuple[str, str]:
    """The order's accession number and the field it came from (see the module)."""
    if kind == "OMI^O23":
        sources = [(s, 1, "IPC-1") for s in group.ipc[:1]]
        sources += [(group.obr, 18, "OBR-18")] if group.obr is not None else []
        missing = "IPC-1"
    else:
        sources = [(group.obr, 18, "OBR-18")] if group.obr is not None else []
        sources.append((group.orc, 3, "ORC-3"))
        sources += [(group.obr, 3, "OBR-3")] if group.obr is not None else []
        missing = "OBR-18"
    for seg, number, name in sources:
        if seg is None:
            continue
        value = seg.text(number)
        if value:
            if len(value) > ACCESSION_MAX:
                raise MessageRejected(
                    f"accession number {value!r} ({name}) is longer than "
                    f"{ACCESSION_MAX} characters",
                    field=name,
                )
            return value, name
    raise MessageRejected("the order has no accession number", field=missing)


def _first(*candidates: tuple[Segment | None, int, int]) -> str | None:
    """The first (segment, field, component) sent, as ``Segment.text`` reads it."""
    for seg, number, component in candidates:
        if seg is not None:
            value = seg.text(number, component)
            if value is not None:
                return value
    return None


def _order_values(
    facility: Facility, group: _OrderGroup, *, pid: Segment | None, pv1: Segment | None
) -> dict[str, Any]:
    """The Order fields the message sends (one not sent is left out: no change)."""
    orc, obr = group.orc, group.obr
    values: dict[str, Any] = {}

    def put(name: str, value: Any) -> None:
        if value is not None:
            values[name] = value

    put("placer_order_number", _first((orc, 2, 1), (obr, 2, 1)))
    put("filler_order_number", _first((orc, 3, 1), (obr, 3, 1)))
    if obr is not None:
        put("procedure_code", obr.text(4, 1))
        put("procedure_description", obr.text(4, 2))
        reasons = [obr.part(r, 2) or obr.part(r, 1) or "" for r in obr.reps(31)]
        if obr.sent(31):
            put("reason_for_exam", "; ".join(r for r in reasons if r))
        history = [obr.text(13)] if obr.sent(13) else []
        history += [n.part(r, 1) for n in group.nte for r in n.reps(3)]
        if history:
            put("clinical_history", "\n".join(h for h in history if h))
    for seg, number in ((orc, 12), (obr, 16)):
        if seg is not None and seg.sent(number):
            raw = seg.reps(number)[0]
            put("ordering_provider", "" if _null(raw) else provider_name(seg.components(raw)))
            break
    code = _priority_code(group)
    if code is not None:
        values["priority"] = priority(code[0], field=code[1]) if code[0] else None
    ordered = orc.text(9)
    if ordered is not None:
        values["ordered_at"] = (
            timestamp(ordered, field="ORC-9", tz=facility.timezone) if ordered else None
        )
    if pv1 is not None:
        patient_class = pv1.text(2)
        if patient_class is not None:
            patient_class = patient_class.upper()
            put("patient_class", patient_class if patient_class in PATIENT_CLASSES else "")
        if pv1.sent(3):
            raw = pv1.reps(3)[0]
            put(
                "patient_location",
                "" if _null(raw) else " / ".join(p for p in pv1.components(raw) if p),
            )
    jurisdiction = _jurisdiction(facility, pid=pid, pv1=pv1)
    if jurisdiction is not False:
        values["jurisdiction"] = jurisdiction
    return values


def _null(raw: str) -> bool:
    """Whether a field is the HL7 null ``""`` (clear the value)."""
    return raw.strip() == HL7_NULL


def _priority_code(group: _OrderGroup) -> tuple[str, str] | None:
    """The priority code sent and its field: TQ1-9, else ORC-7.6, else OBR-27.6."""
    candidates: list[tuple[Segment, int, int, str]] = [(s, 9, 1, "TQ1-9") for s in group.tq1]
    candidates.append((group.orc, 7, 6, "ORC-7.6"))
    if group.obr is not None:
        candidates.append((group.obr, 27, 6, "OBR-27.6"))
    for seg, number, component, name in candidates:
        value = seg.text(number, component)
        if value is not None:
            return value, name
    return None


def _jurisdiction(
    facility: Facility, *, pid: Segment | None, pv1: Segment | None
) -> int | bool | None:
    """The patient jurisdiction's id the order implies (None: the facility's own),
    or False when the message says nothing about it (no change)."""
    source = facility.order_jurisdiction_source
    code: str | None
    if source == Facility.OrderJurisdictionSource.LOCATION:
        if pv1 is None or not pv1.sent(3):
            return False
        point_of_care = (pv1.text(3, 1) or "").upper()
        mapping = {str(k).upper(): str(v) for k, v in facility.order_location_jurisdictions.items()}
        code = mapping.get(point_of_care)
    elif source == Facility.OrderJurisdictionSource.PATIENT_ADDRESS:
        if pid is None or not pid.sent(11):
            return False
        state = (pid.text(11, 4) or "").upper()
        country = country_code(pid.text(11, 6) or "") or facility.jurisdiction.country
        code = f"{country}-{state}" if state else None
    else:
        return False
    if not code:
        return None
    found = Jurisdiction.objects.filter(code=code.upper()).values_list("pk", flat=True).first()
    if found is None:
        logger.info("order jurisdiction %s of facility %s is not a known one", code, facility.pk)
    return found


def _study_follow_up(applied: OrderApplied) -> str:
    """Release a study held for its order, or re-route one not yet claimed whose
    priority or jurisdiction changed; say what happened."""
    done = [
        "order created" if applied.created else "order updated" if applied.changed else "unchanged"
    ]
    study_id = applied.study_id
    if study_id is None:
        done.append("no study yet")
        return ", ".join(done)
    if applied.linked:
        done.append(f"linked to study {study_id}")
    if applied.priority_raised:
        done.append("study priority raised")
    if applied.jurisdiction_changed:
        done.append("patient jurisdiction changed")
    if applied.order_held:
        study_hold_release(study_id=study_id, hold="order")
        done.append("hold released")
    elif (applied.priority_raised or applied.jurisdiction_changed) and applied.study_status in (
        StudyStatus.READY,
        StudyStatus.OFFERED,
    ):
        enqueue("routing.reroute_study", study_id, "its order changed its priority or jurisdiction")
        done.append("re-routed")
    return ", ".join(done)


def _order_cancel(
    facility: Facility,
    group: _OrderGroup,
    *,
    control: str,
    accession: str,
    accession_field: str,
    values: dict[str, Any],
    patient: Patient | None,
    at: dt.datetime,
) -> str:
    reason = group.orc.text(16, 2) or group.orc.text(16, 1) or "cancelled by the facility"
    applied = order_cancel_record(
        facility=facility,
        accession_number=accession,
        at=at,
        reason=reason,
        values=values,
        patient=patient,
    )
    if applied is None:
        raise MessageRejected(
            f"no order or study with accession number {accession} to cancel",
            field=accession_field,
        )
    summary = f"{control} {accession}: order cancelled"
    if applied.study_id is None:
        return f"{summary}, no study yet"
    if applied.study_status in LIVE_STATES:
        _study_cancel(study_id=applied.study_id, reason=reason, at=at)
        return f"{summary}, study {applied.study_id} cancelled"
    if applied.study_status == StudyStatus.RECEIVING:
        return f"{summary}, study {applied.study_id} cancelled once its images are in"
    return f"{summary}, study {applied.study_id} left {applied.study_status}"


def _study_cancel(*, study_id: int, reason: str, at: dt.datetime) -> None:
    """Cancel a live study whose order was cancelled: its offers withdrawn, its
    escalation timer cleared, a claim ended with an alert to its reader."""
    study = (
        Study.objects.select_for_update(of=("self",))
        .select_related("assigned_radiologist__user", "facility__reading_group")
        .get(pk=study_id)
    )
    if study.status not in LIVE_STATES:
        return
    reader = (
        study.assigned_radiologist
        if study.status in (StudyStatus.CLAIMED, StudyStatus.PRELIMINARY)
        else None
    )
    offers_withdraw(study_id=study.pk, at=at, reason=f"order cancelled: {reason}"[:200])
    routing_timer_clear(study_id=study.pk)
    study_transition(
        study_id=study.pk,
        locked=study,
        to_status=StudyStatus.CANCELLED,
        at=at,
        reason=f"order cancelled: {reason}"[:500],
        claim_activity_at=None,
    )
    if reader is not None:
        alert_raise(
            kind=Alert.Kind.STUDY_CANCELLED,
            dedupe_key=f"study-cancelled:{study.pk}",
            message=(
                f"Study {study.accession_number or study.pk}, which {reader.display_name} "
                f"had claimed, was cancelled by its order ({reason[:200]}); the claim has "
                "ended and nothing more is needed."
            ),
            reading_group=study.facility.reading_group,
            study=study,
            recipient=reader.user,
        )


# -- patients ----------------------------------------------------------------------


def _patient_identity(facility: Facility, seg: Segment, number: int) -> tuple[str, str]:
    """(patient id, issuer) of a CX list field (PID-3, MRG-1): see the module."""
    field_name = f"{seg.name}-{number}"
    reps = [r for r in seg.reps(number) if seg.part(r, 1)]
    if not reps:
        raise MessageRejected(f"{field_name} (patient id) is missing", field=field_name)

    def issuer(raw: str) -> str:
        return seg.part(raw, 4, 1) or seg.part(raw, 4, 2) or ""

    own = facility.patient_issuer
    chosen = (
        next((r for r in reps if issuer(r) == own), None)
        or next((r for r in reps if (seg.part(r, 5) or "").upper() == "MR"), None)
        or reps[0]
    )
    # A facility that declares no issuer keeps its patients in its own namespace,
    # where its images' patient ids are too (DICOM sends no issuer we keep): PID-3.4
    # is then not a namespace of ours, or an order's patient and its images' would
    # be two records and an A40 would find neither.
    return seg.part(chosen, 1) or "", issuer(chosen) if facility.patient_id_issuer else ""


def _patient(facility: Facility, pid: Segment) -> Patient:
    """The patient record of PID-3 with PID-5/7/8/11 set."""
    patient_id, issuer = _patient_identity(facility, pid, 3)
    values: dict[str, Any] = {}
    if pid.sent(5):
        raw = pid.reps(5)[0]
        values["name"] = "" if _null(raw) else person_name(pid.components(raw))
    born = pid.text(7)
    if born is not None:
        values["birth_date"] = birth_date(born, field="PID-7") if born else None
    sex = pid.text(8)
    if sex is not None:
        sex = sex.upper()[:1]
        if sex not in ("", "M", "F", "O", "U", "A", "N"):
            raise MessageRejected(f"PID-8 {sex!r} is not a sex code", field="PID-8")
        values["sex"] = "" if sex in ("U", "A", "N") else sex
    if pid.sent(11):
        values["address_state"] = (pid.text(11, 4) or "").upper()
        values["address_country"] = country_code(pid.text(11, 6) or "")[:3]
    return patient_update(facility=facility, patient_id=patient_id, issuer=issuer, values=values)


def _patient_apply(facility: Facility, segs: list[Segment]) -> str:
    pid = next((s for s in segs if s.name == "PID"), None)
    if pid is None:
        raise MessageRejected("the message has no PID segment", field="PID-3")
    patient = _patient(facility, pid)
    return f"A08 patient {patient.patient_id}: demographics updated"


def _merge_apply(facility: Facility, segs: list[Segment], *, at: dt.datetime) -> str:
    pid = next((s for s in segs if s.name == "PID"), None)
    mrg = next((s for s in segs if s.name == "MRG"), None)
    if pid is None:
        raise MessageRejected("the message has no PID segment", field="PID-3")
    if mrg is None:
        raise MessageRejected("the message has no MRG segment", field="MRG-1")
    prior_id, prior_issuer = _patient_identity(facility, mrg, 1)
    survivor = _patient(facility, pid)
    try:
        merged = patients_merge(
            facility=facility,
            prior_id=prior_id,
            prior_issuer=prior_issuer,
            survivor_id=survivor.patient_id,
            survivor_issuer=survivor.issuer,
            at=at,
        )
    except Conflict as exc:
        raise MessageRejected(exc.message, field="MRG-1") from exc
    if merged is None:
        raise MessageRejected(f"no patient {prior_id} to merge (MRG-1)", field="MRG-1")
    return (
        f"A40 patient {prior_id} merged into {merged.survivor.patient_id}: "
        f"{merged.studies} studies, {merged.orders} orders relinked"
    )
