"""What several of the reporting API's modules need: the calling reader, a report the
caller may see, and the audit record of a read."""

from __future__ import annotations

from django.db import transaction
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.request import Request

from audit.models import AuditEvent
from audit.services import audit_record
from network.models import Radiologist
from network.selectors import radiologist_for_user
from reporting import selectors
from reporting.models import Report
from teleradiology.api import client_ip


def _reader(request: Request) -> Radiologist:
    reader = radiologist_for_user(user=request.user)
    if reader is None:
        raise PermissionDenied("Only radiologists write reports.")
    return reader


def _audit_read(request: Request, report: Report) -> None:
    with transaction.atomic():
        audit_record(
            actor=request.user,
            action=AuditEvent.Action.READ,
            obj=report,
            patient_id=report.study.patient_id,
            ip_address=client_ip(request),
        )


def _report_visible(request: Request, pk: str | None) -> Report:
    """The report ``pk`` of the URL, if the caller may read it (404 otherwise)."""
    value = str(pk)
    if not value.isdigit():
        raise NotFound("No such report.")
    return selectors.report_get_visible(user=request.user, report_id=int(value))
