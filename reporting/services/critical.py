"""Critical results: who was told of an actionable finding, how and when (with
read-back), and the alert when nobody was told within the limit."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from alerts.models import Alert
from alerts.services import alert_raise
from audit.models import AuditEvent
from audit.services import audit_record
from network.models import Radiologist
from reporting.models import CriticalCommunication, CriticalSeverity, Report
from reporting.selectors import reports_critical_overdue
from teleradiology.errors import Conflict, DomainError, NotPermitted


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
