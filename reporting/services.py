"""Writes to reports and templates: drafts, signatures, addenda, critical communications,
and the result messages (HL7 v2, FHIR) of finals and addenda with their delivery.

Every service locks the study row first, then the report row (the same order
everywhere, so two writers cannot deadlock), checks that the caller holds the
claim, writes, keeps a version, and audits in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F, Max
from django.utils import timezone

from alerts.models import Alert
from alerts.services import alert_raise
from audit.models import AuditEvent
from audit.services import audit_record
from network.models import Radiologist, ReadingGroup
from reporting import messages, states, transport
from reporting import templates_schema as ts
from reporting.models import (
    Addendum,
    CriticalCommunication,
    CriticalSeverity,
    DeliveryAttempt,
    FacilityEndpoint,
    Macro,
    Report,
    ReportMessage,
    ReportTemplate,
    ReportVersion,
)
from reporting.selectors import reports_critical_overdue, sign_scope
from reporting.states import ReportStatus
from routing.services import study_reroute
from studies.models import Study
from studies.services import study_transition
from studies.states import StudyStatus
from teleradiology.errors import Conflict, DomainError, InvalidTransition, NotPermitted
from teleradiology.queue import enqueue
from worklist.models import Offer

LIBRARY_DIR = Path(__file__).resolve().parent / "template_library"


def _invalid(errors: list[str], *, code: str = "invalid_report") -> DomainError:
    return DomainError(" ".join(errors), code=code)


# --- Templates ------------------------------------------------------------------
_TEMPLATE_KEYS = {"code", "name", "version", "modality", "body_parts", "procedure_codes", "schema"}


def report_template_clean(document: Any) -> dict[str, Any]:
    """Check a template document (API body, admin form or imported JSON) and normalise it;
    DomainError lists every problem."""
    if not isinstance(document, dict):
        raise DomainError("A template must be a JSON object.", code="invalid_template")
    errors = []
    unknown = set(document) - _TEMPLATE_KEYS
    if unknown:
        errors.append(f"Unknown template properties: {', '.join(sorted(unknown))}.")
    code, name = document.get("code"), document.get("name")
    if not isinstance(code, str) or not code.strip() or len(code) > 64:
        errors.append("'code' must be a non-empty string of at most 64 characters.")
    elif not all(c.isalnum() or c in "-_" for c in code):
        errors.append("'code' may hold only letters, digits, '-' and '_'.")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        errors.append("'name' must be a non-empty string of at most 200 characters.")
    modality = document.get("modality", "")
    if not isinstance(modality, str) or len(modality) > 16:
        errors.append("'modality' must be a string of at most 16 characters.")
    lists = {}
    for key in ("body_parts", "procedure_codes"):
        value = document.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            errors.append(f"'{key}' must be a list of non-empty strings.")
        else:
            lists[key] = value
    errors.extend(ts.validate_schema(document.get("schema")))
    if errors:
        raise DomainError(" ".join(errors), code="invalid_template")
    return {
        "code": str(code).strip(),
        "name": str(name).strip(),
        "modality": str(modality).strip().upper(),
        "body_parts": sorted({v.strip().upper() for v in lists["body_parts"]}),
        "procedure_codes": sorted({v.strip() for v in lists["procedure_codes"]}),
        "schema": document["schema"],
    }


def _template_write(
    *, fields: dict[str, Any], reading_group: ReadingGroup | None, actor: User | None
) -> ReportTemplate:
    """Insert ``fields`` as the next version of its code, retiring the active one."""
    code = fields["code"]
    existing = list(ReportTemplate.objects.select_for_update().filter(code=code))
    if existing and any(t.reading_group_id != getattr(reading_group, "pk", None) for t in existing):
        raise NotPermitted(
            f"Template code '{code}' belongs to another owner; choose another code.",
            code="template_owner",
        )
    version = max((t.version for t in existing), default=0) + 1
    ReportTemplate.objects.filter(code=code, is_active=True).update(is_active=False)
    template = ReportTemplate.objects.create(
        reading_group=reading_group, version=version, created_by=actor, **fields
    )
    audit_record(
        actor=actor,
        action=AuditEvent.Action.CREATE,
        obj=template,
        detail={"code": code, "version": version},
    )
    return template


def report_template_create(
    *, actor: User | None, reading_group: ReadingGroup | None, document: Any
) -> ReportTemplate:
    """Create a template (or, if its code exists, its next version) from a JSON document."""
    fields = report_template_clean(document)
    with transaction.atomic():
        return _template_write(fields=fields, reading_group=reading_group, actor=actor)


def report_template_new_version(
    *, template_id: int, actor: User | None, changes: dict[str, Any]
) -> ReportTemplate:
    """The next version of a template with ``changes`` applied; reports keep their version."""
    with transaction.atomic():
        current = ReportTemplate.objects.select_for_update().get(pk=template_id)
        document = {
            "code": current.code,
            "name": current.name,
            "modality": current.modality,
            "body_parts": current.body_parts,
            "procedure_codes": current.procedure_codes,
            "schema": current.schema,
        }
        if "code" in changes and changes["code"] != current.code:
            raise DomainError("A new version keeps the template's code.", code="invalid_template")
        document.update({k: v for k, v in changes.items() if k != "version"})
        fields = report_template_clean(document)
        return _template_write(fields=fields, reading_group=current.reading_group, actor=actor)


def report_template_import(
    *, actor: User | None, reading_group: ReadingGroup | None, document: Any
) -> ReportTemplate:
    """Import an exported template: a new code starts at version 1, a known one adds a version."""
    if isinstance(document, dict):
        document = {k: v for k, v in document.items() if k != "version"}
    return report_template_create(actor=actor, reading_group=reading_group, document=document)


def report_templates_seed() -> int:
    """Load the starter library (shared templates) once; returns how many were created."""
    created = 0
    for path in sorted(LIBRARY_DIR.glob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        if ReportTemplate.objects.filter(code=document["code"]).exists():
            continue
        report_template_import(actor=None, reading_group=None, document=document)
        created += 1
    return created


# --- Reports --------------------------------------------------------------------
def _lock_study(study_id: int) -> Study:
    return (
        Study.objects.select_for_update(of=("self",))
        .select_related("facility__reading_group", "patient_jurisdiction")
        .get(pk=study_id)
    )


def _check_claim(study: Study, radiologist: Radiologist) -> None:
    if study.assigned_radiologist_id != radiologist.pk:
        raise NotPermitted(
            "Only the radiologist holding the claim on this study may write its report.",
            code="not_claimer",
        )
    if study.status == StudyStatus.FINAL:
        raise InvalidTransition(
            "The report is final and locked; add an addendum instead.", code="report_locked"
        )
    if study.status not in (StudyStatus.CLAIMED, StudyStatus.PRELIMINARY):
        raise InvalidTransition(
            f"The study is {study.status}; its report cannot be changed.", code="study_not_claimed"
        )


def _usable_template(template_id: int, study: Study) -> ReportTemplate:
    """An active template of the shared library or of the study's reading group."""
    template = ReportTemplate.objects.filter(pk=template_id, is_active=True).first()
    if template is None or template.reading_group_id not in (
        None,
        study.facility.reading_group_id,
    ):
        raise DomainError("No such active template.", code="invalid_report")
    return template


def _keep_version(report: Report, *, by: Radiologist, at: dt.datetime) -> ReportVersion:
    return ReportVersion.objects.create(
        report=report,
        number=report.version,
        template_id=report.template_id,
        status=report.status,
        values=report.values,
        impression=report.impression,
        critical_severity=report.critical_severity,
        saved_by=by,
        saved_at=at,
    )


def report_save_draft(
    *,
    study_id: int,
    radiologist: Radiologist,
    actor: User | None = None,
    template_id: int | None = None,
    values: dict[str, Any] | None = None,
    impression: str | None = None,
    critical_severity: str | None = None,
    ip_address: str | None = None,
) -> Report:
    """Create or update the report of a claimed study (autosave); every save is a version.

    Only the reader holding the claim writes, and only while the report is not final.
    The save counts as claim activity, so the stale-claim sweep leaves the claim alone.
    """
    now = timezone.now()
    if critical_severity is not None and critical_severity not in CriticalSeverity.values:
        raise DomainError(
            f"'critical_severity' must be one of {', '.join(CriticalSeverity.values)}.",
            code="invalid_report",
        )
    with transaction.atomic():
        study = _lock_study(study_id)
        _check_claim(study, radiologist)
        report = Report.objects.select_for_update().filter(study=study).first()
        creating = report is None
        if report is None:
            if template_id is None:
                raise DomainError("Choose a template for the new report.", code="invalid_report")
            template = _usable_template(template_id, study)
            report = Report(
                study=study,
                template=template,
                author=radiologist,
                values=ts.defaults(template.schema),
            )
        else:
            refusal = states.edit_refusal(report.status)
            if refusal is not None:
                raise InvalidTransition(refusal, code="report_locked")
            if template_id is not None and template_id != report.template_id:
                if report.status != ReportStatus.DRAFT:
                    raise InvalidTransition(
                        "A signed preliminary report keeps its template.", code="report_locked"
                    )
                report.template = _usable_template(template_id, study)
                if values is None:
                    # Another template's fields: start again from its normal text.
                    report.values = ts.defaults(report.template.schema)
            report.version += 1
        if values is not None:
            # A new report starts from the template's normal text; later saves send
            # the whole state (autosave), so they replace it.
            report.values = {**report.values, **values} if creating else values
        if impression is not None:
            report.impression = impression
        if critical_severity is not None:
            if critical_severity != report.critical_severity or creating:
                # The overdue-communication clock starts when the finding becomes critical.
                report.critical_marked_at = (
                    now if critical_severity == CriticalSeverity.CRITICAL else None
                )
            report.critical_severity = critical_severity
        errors = ts.validate_values(report.template.schema, report.values)
        if errors:
            raise _invalid(errors)
        report.save()
        _keep_version(report, by=radiologist, at=now)
        Study.objects.filter(pk=study.pk).update(claim_activity_at=now)
        audit_record(
            actor=actor,
            action=AuditEvent.Action.CREATE if creating else AuditEvent.Action.UPDATE,
            obj=report,
            patient_id=study.patient_id,
            ip_address=ip_address,
            detail={"study": study.pk, "version": report.version, "status": report.status},
        )
    return report


def report_sign(
    *,
    report_id: int,
    radiologist: Radiologist,
    status: str,
    actor: User | None = None,
    ip_address: str | None = None,
) -> Report:
    """Sign a report preliminary or final; final locks it, moves the study to final and
    withdraws every open offer of the study.

    Refused unless the signer holds the claim, required fields and the impression are
    filled, a critical finding has a read-back-confirmed communication record, and the
    signer's license allows this kind of read in the patient's jurisdiction today.
    """
    if status not in (ReportStatus.PRELIMINARY, ReportStatus.FINAL):
        raise DomainError("Sign as 'preliminary' or 'final'.", code="invalid_status")
    now = timezone.now()
    with transaction.atomic():
        study_id = Report.objects.values_list("study_id", flat=True).get(pk=report_id)
        study = _lock_study(study_id)
        report = Report.objects.select_for_update().select_related("template").get(pk=report_id)
        _check_claim(study, radiologist)
        refusal = states.transition_refusal(report.status, status)
        if refusal is not None:
            raise InvalidTransition(refusal, code="invalid_transition")
        errors = ts.validate_values(
            report.template.schema, report.values, impression=report.impression, for_sign=True
        )
        if errors:
            raise _invalid(errors, code="incomplete_report")
        if (
            report.critical_severity == CriticalSeverity.CRITICAL
            and not report.critical_communications.filter(read_back_confirmed=True).exists()
        ):
            raise DomainError(
                "A critical finding must be communicated (with read-back confirmed) "
                "and recorded before the report is signed.",
                code="critical_not_communicated",
            )
        scope, reasons = sign_scope(study=study, radiologist=radiologist, now=now)
        if not scope:
            raise NotPermitted(f"You cannot sign this report: {'; '.join(reasons)}.", code="scope")
        if status == ReportStatus.FINAL and scope != "final":
            raise NotPermitted(
                "Your license in the patient's jurisdiction allows preliminary reads only; "
                "sign as preliminary.",
                code="preliminary_only",
            )
        report.status = status
        if status == ReportStatus.FINAL:
            report.signed_at, report.signed_by = now, radiologist
        else:
            report.preliminary_signed_at, report.preliminary_signed_by = now, radiologist
        report.version += 1
        report.save()
        version = _keep_version(report, by=radiologist, at=now)
        if status == ReportStatus.FINAL:
            _report_messages_create(report=report, study=study, version=version, now=now)
            # The peer review sample draws once per final (review/), after commit; if
            # the broker loses it, review's sweep draws for the final within the day.
            enqueue("review.peer_review_consider", report.pk)
        target = StudyStatus.FINAL if status == ReportStatus.FINAL else StudyStatus.PRELIMINARY
        if study.status != target:
            study_transition(
                study_id=study.pk,
                to_status=target,
                actor=actor,
                at=now,
                locked=study,
                ip_address=ip_address,
                reason=f"report signed {status} by {radiologist.display_name}",
            )
        handed_over = status == ReportStatus.PRELIMINARY and scope != "final"
        if handed_over:
            _final_read_route(study, radiologist, actor=actor, now=now, ip_address=ip_address)
        withdrawn = 0
        if status == ReportStatus.FINAL:
            # A final study is history: nothing of it may linger on any worklist.
            withdrawn = Offer.objects.filter(study=study, withdrawn_at__isnull=True).update(
                withdrawn_at=now, withdrawn_reason="study reported final"
            )
        audit_record(
            actor=actor,
            action=AuditEvent.Action.TRANSITION,
            obj=report,
            patient_id=study.patient_id,
            ip_address=ip_address,
            detail={
                "study": study.pk,
                "to": status,
                "version": report.version,
                "offers_withdrawn": withdrawn,
                "final_read_routed": handed_over,
            },
        )
    return report


def _final_read_route(
    study: Study,
    radiologist: Radiologist,
    *,
    actor: User | None,
    now: dt.datetime,
    ip_address: str | None,
) -> None:
    """A preliminary read signed on a preliminary-only license: the reader's claim
    ends and the study is routed afresh, in the same transaction, for the final
    read, which only a reader licensed for final reads in the patient's
    jurisdiction may claim (routing's facts say so once the study has a
    preliminary).  The report stays preliminary for the final reader to revise."""
    study_transition(
        study_id=study.pk,
        locked=study,
        to_status=StudyStatus.OFFERED,
        actor=actor,
        at=now,
        assigned_radiologist=None,
        claim_activity_at=None,
        ip_address=ip_address,
        reason=(
            f"preliminary read by {radiologist.display_name} (preliminary-only license): "
            "the final read is routed to a reader licensed for final reads"
        ),
    )
    study_reroute(
        study_id=study.pk,
        reason="the final read needs a reader licensed for final reads",
        now=now,
    )


def report_save_and_sign(
    *,
    study_id: int,
    radiologist: Radiologist,
    status: str,
    values: dict[str, Any] | None = None,
    impression: str | None = None,
    critical_severity: str | None = None,
    actor: User | None = None,
    ip_address: str | None = None,
) -> Report:
    """Save the editor's last state as a version, then sign it (the editor's sign button).

    Two transactions on purpose: a refused signature (a required field, an
    uncommunicated critical finding) must not lose the words just typed.
    """
    report = report_save_draft(
        study_id=study_id,
        radiologist=radiologist,
        actor=actor,
        values=values,
        impression=impression,
        critical_severity=critical_severity,
        ip_address=ip_address,
    )
    return report_sign(
        report_id=report.pk,
        radiologist=radiologist,
        status=status,
        actor=actor,
        ip_address=ip_address,
    )


def report_addendum_add(
    *,
    report_id: int,
    radiologist: Radiologist,
    text: str,
    actor: User | None = None,
    ip_address: str | None = None,
) -> Addendum:
    """Append a signed addendum to a final report; the final's own text never changes."""
    if not text.strip():
        raise DomainError("An addendum needs text.", code="invalid_addendum")
    now = timezone.now()
    with transaction.atomic():
        report = Report.objects.select_for_update().select_related("study").get(pk=report_id)
        if report.status != ReportStatus.FINAL:
            raise InvalidTransition(
                "Addenda are for final reports; edit the draft instead.", code="not_final"
            )
        if radiologist.pk not in (report.signed_by_id, report.study.assigned_radiologist_id):
            raise NotPermitted(
                "Only the radiologist who signed the report may add an addendum.",
                code="not_signer",
            )
        number = (report.addenda.aggregate(n=Max("number"))["n"] or 0) + 1
        addendum = Addendum.objects.create(
            report=report, number=number, text=text.strip(), signed_by=radiologist, signed_at=now
        )
        final = report.versions.filter(status=ReportStatus.FINAL).order_by("-number").first()
        if final is not None:
            _report_messages_create(
                report=report, study=report.study, version=final, addendum=addendum, now=now
            )
        audit_record(
            actor=actor,
            action=AuditEvent.Action.CREATE,
            obj=addendum,
            patient_id=report.study.patient_id,
            ip_address=ip_address,
            detail={"report": report.pk, "number": number},
        )
    return addendum


def critical_communication_record(
    *,
    report_id: int,
    radiologist: Radiologist,
    recipient_name: str,
    recipient_role: str,
    method: str,
    communicated_at: dt.datetime,
    read_back_confirmed: bool,
    notes: str = "",
    actor: User | None = None,
    ip_address: str | None = None,
) -> CriticalCommunication:
    """Record who was told of an actionable finding, how and when, and whether they read back."""
    now = timezone.now()
    errors = []
    if not recipient_name.strip():
        errors.append("Say who was told.")
    if not recipient_role.strip():
        errors.append("Say the recipient's role (e.g. referring physician, charge nurse).")
    if method not in CriticalCommunication.Method.values:
        errors.append(f"'method' must be one of {', '.join(CriticalCommunication.Method.values)}.")
    if communicated_at > now + dt.timedelta(minutes=1):
        errors.append("The communication cannot be in the future.")
    if errors:
        raise DomainError(" ".join(errors), code="invalid_communication")
    with transaction.atomic():
        report = Report.objects.select_for_update().select_related("study").get(pk=report_id)
        allowed = {report.study.assigned_radiologist_id, report.signed_by_id} - {None}
        if radiologist.pk not in allowed:
            raise NotPermitted(
                "Only the reporting radiologist records the communication.", code="not_claimer"
            )
        if report.critical_severity == CriticalSeverity.NONE:
            raise Conflict(
                "Mark the report's finding as critical, urgent or incidental first.",
                code="no_finding",
            )
        record = CriticalCommunication.objects.create(
            report=report,
            recipient_name=recipient_name.strip(),
            recipient_role=recipient_role.strip(),
            method=method,
            communicated_at=min(communicated_at, now),
            read_back_confirmed=read_back_confirmed,
            notes=notes,
            recorded_by=radiologist,
            recorded_at=now,
        )
        audit_record(
            actor=actor,
            action=AuditEvent.Action.CREATE,
            obj=record,
            patient_id=report.study.patient_id,
            ip_address=ip_address,
            detail={
                "report": report.pk,
                "severity": report.critical_severity,
                "method": method,
                "read_back_confirmed": read_back_confirmed,
            },
        )
    return record


# A sweep alerts for at most this many reports; the next sweep takes the rest.
CRITICAL_OVERDUE_BATCH = 500


def critical_overdue_alerts_raise(*, now: dt.datetime | None = None) -> list[Alert]:
    """Alert the study's reading group's admins (and the reader) of each critical finding
    with no read-back-confirmed communication record within
    ``CRITICAL_RESULT_COMMUNICATION_MINUTES`` of being marked; once per report, kept by
    the alert's unique dedupe key ``critical_overdue:{report}``."""
    now = now or timezone.now()
    minutes = settings.CRITICAL_RESULT_COMMUNICATION_MINUTES
    raised = []
    for report in reports_critical_overdue(now=now, minutes=minutes)[:CRITICAL_OVERDUE_BATCH]:
        study = report.study
        assert report.critical_marked_at is not None  # noqa: S101 - the selector's filter
        name = study.accession_number or study.study_instance_uid
        waited = int((now - report.critical_marked_at).total_seconds() // 60)
        message = (
            f"Critical finding on {study.modality} study {name} from {study.facility.name} "
            f"(read by {report.author.display_name}): no read-back-confirmed communication "
            f"recorded {waited} minutes after it was marked critical "
            f"({report.critical_marked_at:%Y-%m-%d %H:%M} UTC; the limit is {minutes} minutes)."
        )
        # alert_raise commits on its own and mails after commit; a concurrent sweep
        # that got there first makes this a no-op (None).
        alert = alert_raise(
            kind=Alert.Kind.CRITICAL_UNCOMMUNICATED,
            dedupe_key=f"critical_overdue:{report.pk}",
            message=message,
            reading_group=study.facility.reading_group,
            study=study,
            recipient=report.author.user,
        )
        if alert is not None:
            raised.append(alert)
    return raised


# --- Macros -----------------------------------------------------------------------
def macro_save(
    *,
    radiologist: Radiologist,
    name: str,
    text: str,
    macro_id: int | None = None,
    actor: User | None = None,
) -> Macro:
    """Create or rename/rewrite one of the radiologist's own macros (names are unique)."""
    if not name.strip() or not text.strip():
        raise DomainError("A macro needs a name and text.", code="invalid_macro")
    with transaction.atomic():
        if macro_id is None:
            macro = Macro(radiologist=radiologist)
        else:
            macro = Macro.objects.select_for_update().get(pk=macro_id, radiologist=radiologist)
        if (
            Macro.objects.filter(radiologist=radiologist, name=name.strip())
            .exclude(pk=macro.pk)
            .exists()
        ):
            raise Conflict(f"You already have a macro named '{name.strip()}'.", code="duplicate")
        creating = macro.pk is None
        macro.name, macro.text = name.strip(), text
        macro.save()
        audit_record(
            actor=actor,
            action=AuditEvent.Action.CREATE if creating else AuditEvent.Action.UPDATE,
            obj=macro,
            detail={"name": macro.name},
        )
    return macro


def macro_delete(*, radiologist: Radiologist, macro_id: int, actor: User | None = None) -> None:
    """Delete one of the radiologist's own macros."""
    with transaction.atomic():
        macro = Macro.objects.get(pk=macro_id, radiologist=radiologist)
        audit_record(
            actor=actor, action=AuditEvent.Action.DELETE, obj=macro, detail={"name": macro.name}
        )
        macro.delete()


# --- Facilities' result endpoints ---------------------------------------------------
def facility_endpoint_save(
    *,
    endpoint: FacilityEndpoint,
    actor: User | None,
    ip_address: str | None = None,
) -> FacilityEndpoint:
    """Validate and save where a facility receives its results, audited with the changes."""
    creating = endpoint._state.adding
    endpoint.full_clean()
    with transaction.atomic():
        before = (
            None
            if creating
            else FacilityEndpoint.objects.select_for_update().filter(pk=endpoint.pk).first()
        )
        endpoint.save()
        changes = {
            f.attname: [getattr(before, f.attname), getattr(endpoint, f.attname)]
            for f in FacilityEndpoint._meta.concrete_fields
            if before is not None
            and f.attname != "updated_at"
            and getattr(before, f.attname) != getattr(endpoint, f.attname)
        }
        audit_record(
            actor=actor,
            action=AuditEvent.Action.CREATE if creating else AuditEvent.Action.UPDATE,
            obj=endpoint,
            ip_address=ip_address,
            detail={"facility": endpoint.facility_id, **changes},
        )
    return endpoint


def facility_endpoint_delete(
    *, endpoint: FacilityEndpoint, actor: User | None, ip_address: str | None = None
) -> None:
    """Remove a facility's result endpoint (its pending messages wait for a new one), audited."""
    with transaction.atomic():
        audit_record(
            actor=actor,
            action=AuditEvent.Action.DELETE,
            obj=endpoint,
            ip_address=ip_address,
            detail={"facility": endpoint.facility_id, "deleted": str(endpoint)},
        )
        endpoint.delete()


# --- Result messages and their delivery ------------------------------------------------
# A sender holds a message this long; longer than the delivery task's hard time limit,
# so a message whose worker died is tried again, and never by two senders at once.
DELIVERY_LEASE = dt.timedelta(seconds=120)
_DELIVERED_KIND: dict[str, str] = {
    FacilityEndpoint.Kind.MLLP: ReportMessage.Kind.HL7,
    FacilityEndpoint.Kind.FHIR_HTTPS: ReportMessage.Kind.FHIR,
}


def delivery_backoff(attempts: int) -> dt.timedelta:
    """How long to wait after ``attempts`` failed tries: doubling from the base, capped."""
    base = float(settings.REPORT_DELIVERY_RETRY_BASE_SECONDS)
    cap = float(settings.REPORT_DELIVERY_RETRY_MAX_SECONDS)
    return dt.timedelta(seconds=min(base * 2 ** max(attempts - 1, 0), cap))


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
    signer = report.signed_by
    assert signer is not None and report.signed_at is not None  # noqa: S101 - a final report
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
        signed_at=report.signed_at,
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
    )


def _report_messages_create(
    *,
    report: Report,
    study: Study,
    version: ReportVersion,
    now: dt.datetime,
    addendum: Addendum | None = None,
) -> list[ReportMessage]:
    """Build and store the HL7 and FHIR messages of a final (or of an addendum to it),
    inside the caller's transaction; those the facility's endpoint takes are sent
    after commit."""
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
    created = [
        ReportMessage.objects.create(
            report=report,
            kind=kind,
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


def _attempt(message: ReportMessage, endpoint: FacilityEndpoint | None) -> transport.Outcome:
    if endpoint is None or _DELIVERED_KIND.get(endpoint.kind) != message.kind:
        return transport.Outcome(
            accepted=False,
            retry=True,
            kind=DeliveryAttempt.Outcome.ERROR,
            detail="The facility has no active endpoint for this kind of message; kept queued.",
        )
    if endpoint.kind == FacilityEndpoint.Kind.MLLP:
        assert endpoint.port is not None  # noqa: S101 - a database constraint
        return transport.mllp_send(
            host=endpoint.host,
            port=endpoint.port,
            message=message.payload,
            control_id=message.control_id,
            timeout=endpoint.timeout_seconds,
        )
    return transport.fhir_post(
        url=endpoint.url, body=message.payload, timeout=endpoint.timeout_seconds
    )


def report_message_deliver(*, message_id: int) -> str:
    """Make one attempt at sending a pending message to its facility's endpoint and
    record it: sent on an acknowledgement, failed on a refusal, otherwise pending
    again after a backoff.

    Idempotent: the attempt starts with a conditional update that only a due pending
    message passes, so a sent message is never sent again and two workers never send
    the same message at once.  The network call runs outside any transaction.
    """
    started = timezone.now()
    claimed = ReportMessage.objects.filter(
        pk=message_id,
        delivery_status=ReportMessage.Delivery.PENDING,
        next_attempt_at__lte=started,
    ).update(next_attempt_at=started + DELIVERY_LEASE, attempts=F("attempts") + 1)
    if claimed != 1:
        return "skipped"  # sent, refused, not yet due, or another sender holds it
    message = ReportMessage.objects.select_related("report__study").get(pk=message_id)
    endpoint = FacilityEndpoint.objects.filter(
        facility_id=message.report.study.facility_id, active=True
    ).first()
    outcome = _attempt(message, endpoint)
    finished = timezone.now()
    with transaction.atomic():
        DeliveryAttempt.objects.create(
            message=message,
            number=message.attempts,
            started_at=started,
            finished_at=finished,
            outcome=outcome.kind,
            detail=outcome.detail,
        )
        # Conditional on still pending: a sender whose lease ran out must not undo
        # what a later sender recorded.
        still_pending = ReportMessage.objects.filter(
            pk=message.pk, delivery_status=ReportMessage.Delivery.PENDING
        )
        if outcome.accepted:
            still_pending.update(
                delivery_status=ReportMessage.Delivery.SENT,
                sent_at=finished,
                next_attempt_at=None,
                acknowledgement=outcome.detail,
                last_error="",
            )
        elif outcome.retry:
            still_pending.update(
                next_attempt_at=finished + delivery_backoff(message.attempts),
                last_error=outcome.detail,
            )
        else:
            still_pending.update(
                delivery_status=ReportMessage.Delivery.FAILED,
                next_attempt_at=None,
                last_error=outcome.detail,
            )
        if not outcome.retry:
            audit_record(
                actor=None,
                action=AuditEvent.Action.EXPORT,
                obj=message,
                patient_id=message.report.study.patient_id,
                detail={
                    "report": message.report_id,
                    "kind": message.kind,
                    "control_id": message.control_id,
                    "attempt": message.attempts,
                    "outcome": outcome.kind,
                    "endpoint": str(endpoint) if endpoint else "",
                },
            )
    return outcome.kind


def report_messages_sweep(*, now: dt.datetime | None = None, limit: int = 500) -> int:
    """Enqueue a delivery for every pending message whose next attempt is due: the
    durable timer behind retries, so a lost task or a restarted worker loses nothing."""
    now = now or timezone.now()
    due = list(
        ReportMessage.objects.filter(
            delivery_status=ReportMessage.Delivery.PENDING, next_attempt_at__lte=now
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    _enqueue_deliveries(due, after_commit=False)  # a read: nothing to wait for
    return len(due)


def report_message_requeue(*, message_id: int, actor: User | None = None) -> ReportMessage:
    """Send a refused (failed) message again, once someone has fixed the cause."""
    now = timezone.now()
    with transaction.atomic():
        message = (
            ReportMessage.objects.select_for_update()
            .select_related("report__study")
            .get(pk=message_id)
        )
        if message.delivery_status != ReportMessage.Delivery.FAILED:
            raise InvalidTransition(
                f"Only a failed message is sent again (this one is {message.delivery_status}).",
                code="not_failed",
            )
        message.delivery_status = ReportMessage.Delivery.PENDING
        message.next_attempt_at = now
        message.save(update_fields=["delivery_status", "next_attempt_at"])
        audit_record(
            actor=actor,
            action=AuditEvent.Action.UPDATE,
            obj=message,
            patient_id=message.report.study.patient_id,
            detail={"requeued": True, "control_id": message.control_id},
        )
        _enqueue_deliveries([message.pk])
    return message
