"""The reporting API's result documents: a report's latest HL7 v2 and FHIR messages
(those delivered to the facility) and its PDF, for whoever may read the report; every
download audited."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.models import AuditEvent
from audit.services import audit_record
from reporting import pdf, selectors
from reporting.api._common import _audit_read
from reporting.models import ReportMessage
from reporting.states import ReportStatus
from teleradiology.api import client_ip


class HL7Renderer(BaseRenderer):
    """An HL7 v2 message as text, segments ending in carriage returns; errors as JSON text."""

    media_type = "text/plain"
    format = "hl7"
    charset = "utf-8"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        text = data if isinstance(data, str) else json.dumps(data, default=str)
        return text.encode(self.charset)


class FhirJsonRenderer(JSONRenderer):
    media_type = "application/fhir+json"
    format = "fhir"


def _latest_message(request: Request, report_id: int, kind: str) -> ReportMessage:
    report = selectors.report_get_visible(user=request.user, report_id=report_id)
    message = selectors.report_message_latest(report=report, kind=kind)
    _audit_read(request, report)
    return message


class PdfRenderer(BaseRenderer):
    """A PDF document as is; errors as JSON text."""

    media_type = "application/pdf"
    format = "pdf"
    charset = None
    render_style = "binary"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        if isinstance(data, bytes):
            return data
        return json.dumps(data, default=str).encode("utf-8")


class ReportPdfApi(APIView):
    """The signed report (final, with its addenda) as a PDF for people, for whoever may
    read the report; every download audited."""

    permission_classes = [IsAuthenticated]
    # JSON first: refusals (404) answer as JSON; the document itself is returned as is.
    renderer_classes = [JSONRenderer, PdfRenderer]

    @extend_schema(responses={(200, "application/pdf"): OpenApiTypes.BINARY})
    def get(self, request: Request, report_id: int) -> HttpResponse:
        report = selectors.report_get_visible(user=request.user, report_id=report_id)
        if report.status != ReportStatus.FINAL:
            raise NotFound("No PDF yet: the report is not final.")
        facts = selectors.report_pdf_facts(report=report, now=timezone.now())
        with transaction.atomic():
            audit_record(
                actor=request.user,
                action=AuditEvent.Action.EXPORT,
                obj=report,
                patient_id=report.study.patient_id,
                ip_address=client_ip(request),
                detail={"format": "pdf", "addenda": len(facts.addenda)},
            )
        name = report.study.accession_number or f"report-{report.pk}"
        return HttpResponse(
            pdf.report_pdf(facts),
            content_type="application/pdf",
            headers={"Content-Disposition": f'inline; filename="{name}.pdf"'},
        )


class ReportHl7Api(APIView):
    """The report's latest HL7 v2.5.1 ORU^R01 (of its final or its last addendum), for
    whoever may read the report."""

    permission_classes = [IsAuthenticated]
    renderer_classes = [HL7Renderer, JSONRenderer]

    @extend_schema(responses={(200, "text/plain"): OpenApiTypes.STR})
    def get(self, request: Request, report_id: int) -> Response:
        message = _latest_message(request, report_id, ReportMessage.Kind.HL7)
        return Response(message.payload, headers={"X-Message-Control-Id": message.control_id})


class ReportFhirApi(APIView):
    """The report's latest FHIR R4 DiagnosticReport (final, or appended after an
    addendum), for whoever may read the report."""

    permission_classes = [IsAuthenticated]
    renderer_classes = [FhirJsonRenderer, JSONRenderer]

    @extend_schema(responses={(200, "application/fhir+json"): OpenApiTypes.OBJECT})
    def get(self, request: Request, report_id: int) -> Response:
        message = _latest_message(request, report_id, ReportMessage.Kind.FHIR)
        return Response(
            json.loads(message.payload), headers={"X-Message-Control-Id": message.control_id}
        )
