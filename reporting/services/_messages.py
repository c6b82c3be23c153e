"""The result messages (HL7 v2, FHIR) of a preliminary or final signature or of an
addendum to the final, built and stored inside the signing transaction and handed
to delivery after commit.

Private to ``reporting.services``: ``reports`` creates them, ``delivery`` sends them
(and both hand the pending ones to the delivery task by name).
"""

from __future__ import annotations

import datetime as dt
import json

from django.conf import settings

from reporting import messages
from reporting.models import (
    Addendum,
    CriticalSeverity,
    FacilityEndpoint,
    Report,
    ReportMessage,
    ReportVersion,
)
from reporting.states import ReportStatus
from studies.models import Order, Study
from teleradiology.queue import enqueue

# The result flag (HL7 table 0078, OBX-8; FHIR interpretation) of each severity: a
# critical finding is "AA" (critically abnormal), an urgent one "A" (abnormal);
# incidental findings and none carry no flag.
_ABNORMAL_FLAG: dict[str, str] = {
    CriticalSeverity.CRITICAL: messages.FLAG_CRITICAL,
    CriticalSeverity.URGENT: messages.FLAG_ABNORMAL,
}

# The kind of message each kind of endpoint takes; the other kind is only stored.
_DELIVERED_KIND: dict[str, str] = {
    FacilityEndpoint.Kind.MLLP: ReportMessage.Kind.HL7,
    FacilityEndpoint.Kind.FHIR_HTTPS: ReportMessage.Kind.FHIR,
}


def _message_facts(
    *,
    report: Report,
    study: Study,
    version: ReportVersion,
    addenda: list[Addendum],
    control_id: str,
    endpoint: FacilityEndpoint | None,
    now: dt.datetime,
) -> messages.ReportFacts:
    facility = study.facility
    # The facility's name for itself in its own systems: its first DICOM AE title.
    ae_title = facility.ae_titles.order_by("ae_title").values_list("ae_title", flat=True).first()
    facility_code = ae_title or f"FACILITY-{facility.pk}"
    preliminary = version.status == ReportStatus.PRELIMINARY
    if preliminary:
        signer, signed_at = report.preliminary_signed_by, report.preliminary_signed_at
    else:
        signer, signed_at = report.signed_by, report.signed_at
    assert signer is not None and signed_at is not None  # noqa: S101 - a signed version
    # The order the study answers, if the facility sent one (matched by accession).
    placer, filler = Order.objects.filter(study_id=study.pk).values_list(
        "placer_order_number", "filler_order_number"
    ).first() or ("", "")
    return messages.ReportFacts(
        report_id=report.pk,
        control_id=control_id,
        created_at=now,
        sending_application=settings.HL7_SENDING_APPLICATION,
        sending_facility=facility.reading_group.name,
        receiving_application=(endpoint.receiving_application if endpoint else "") or "RIS",
        receiving_facility=(endpoint.receiving_facility if endpoint else "") or facility_code,
        patient_id=study.patient_id,
        patient_id_authority=facility_code,
        patient_name=study.patient_name,
        patient_birth_date=study.patient_birth_date,
        patient_sex=study.patient_sex,
        accession_number=study.accession_number,
        study_instance_uid=study.study_instance_uid,
        procedure_code=study.procedure_code,
        study_description=study.study_description,
        modality=study.modality,
        observed_at=study.received_at,
        signed_at=signed_at,
        signer_id=signer.pk,
        signer_name=signer.display_name,
        impression=version.impression,
        findings=messages.report_sections(version.template.schema, version.values),
        addenda=[
            messages.AddendumFacts(
                number=a.number,
                text=a.text,
                signed_at=a.signed_at,
                signed_by=a.signed_by.display_name,
            )
            for a in addenda
        ],
        preliminary=preliminary,
        abnormal_flag=_ABNORMAL_FLAG.get(version.critical_severity, ""),
        placer_order_number=placer,
        filler_order_number=filler,
    )


def _report_messages_create(
    *,
    report: Report,
    study: Study,
    version: ReportVersion,
    now: dt.datetime,
    addendum: Addendum | None = None,
) -> list[ReportMessage]:
    """Build and store the HL7 and FHIR messages of a signed version, preliminary or
    final (or of an addendum to the final), inside the caller's transaction; those
    the facility's endpoint takes are sent after commit."""
    study = Study.objects.select_related("facility__reading_group").get(pk=study.pk)
    endpoint = FacilityEndpoint.objects.filter(facility_id=study.facility_id, active=True).first()
    addenda = []
    if addendum is not None:
        addenda = list(
            report.addenda.filter(number__lte=addendum.number)
            .select_related("signed_by")
            .order_by("number")
        )
    control_id = (
        f"R{report.pk}V{version.number}" if addendum is None else f"R{report.pk}A{addendum.number}"
    )
    facts = _message_facts(
        report=report,
        study=study,
        version=version,
        addenda=addenda,
        control_id=control_id,
        endpoint=endpoint,
        now=now,
    )
    payloads = {
        ReportMessage.Kind.HL7: messages.build_hl7(facts),
        ReportMessage.Kind.FHIR: json.dumps(messages.build_fhir(facts), ensure_ascii=False),
    }
    delivered = _DELIVERED_KIND.get(endpoint.kind) if endpoint is not None else None
    if addendum is not None:
        result_status = ReportMessage.ResultStatus.AMENDED
    elif facts.preliminary:
        result_status = ReportMessage.ResultStatus.PRELIMINARY
    else:
        result_status = ReportMessage.ResultStatus.FINAL
    created = [
        ReportMessage.objects.create(
            report=report,
            kind=kind,
            result_status=result_status,
            report_version=version,
            addendum=addendum,
            control_id=control_id,
            payload=payload,
            created_at=now,
            delivery_status=(
                ReportMessage.Delivery.PENDING
                if kind == delivered
                else ReportMessage.Delivery.STORED
            ),
            next_attempt_at=now if kind == delivered else None,
        )
        for kind, payload in payloads.items()
    ]
    pending = [m.pk for m in created if m.delivery_status == ReportMessage.Delivery.PENDING]
    if pending:
        _enqueue_deliveries(pending)
    return created


def _enqueue_deliveries(message_ids: list[int], *, after_commit: bool = True) -> None:
    # If the broker loses one of these, the delivery sweep finds the message due.
    for message_id in message_ids:
        enqueue("reporting.deliver_message", message_id, after_commit=after_commit)
