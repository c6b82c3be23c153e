"""The reporting API's result documents: a report's latest HL7 v2 and FHIR messages
(those delivered to the facility), where each message's delivery stands (with the
facility's acknowledgements), and its PDF, for whoever may read the report; every
read audited."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
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
from reporting.models import DeliveryAttempt, ReportMessage
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


class DeliveryAttemptSerializer(serializers.ModelSerializer[DeliveryAttempt]):
    class Meta:
        model = DeliveryAttempt
        fields = [
            "number",
            "started_at",
            "finished_at",
            "outcome",
            "ack_code",
            "ack_text",
            "http_status",
            "detail",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "ack_code": {"help_text": "MSA-1 of the HL7 acknowledgement (AA/AE/AR, CA/CE/CR)."},
            "ack_text": {"help_text": "MSA-3 (or the ERR's text), or the OperationOutcome's."},
            "http_status": {"help_text": "FHIR: the HTTP status of the answer."},
        }


class ReportMessageSerializer(serializers.ModelSerializer[ReportMessage]):
    """One result message and where its delivery to the facility stands."""

    delivery_attempts = DeliveryAttemptSerializer(many=True, read_only=True)

    class Meta:
        model = ReportMessage
        fields = [
            "id",
            "kind",
            "result_status",
            "control_id",
            "addendum",
            "created_at",
            "delivery_status",
            "attempts",
            "next_attempt_at",
            "sent_at",
            "ack_code",
            "ack_control_id",
            "ack_text",
            "http_status",
            "ack_at",
            "last_error",
            "failure_alerted_at",
            "delivery_attempts",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "result_status": {
                "help_text": "What the message says of the result: preliminary (OBR-25 P), "
                "final (F) or amended (C, an addendum; FHIR 'appended')."
            },
            "delivery_status": {
                "help_text": "stored: not for delivery (the facility's endpoint takes the "
                "other kind, or none is configured); pending; sent (acknowledged AA/CA or "
                "HTTP 2xx); failed (refused AR/CR or HTTP 4xx, or retries exhausted)."
            },
            "ack_code": {"help_text": "MSA-1 of the last HL7 acknowledgement."},
            "ack_control_id": {"help_text": "MSA-2: the control id it acknowledged."},
            "ack_text": {"help_text": "MSA-3 (or the ERR's text), or the OperationOutcome's."},
            "http_status": {"help_text": "FHIR: the HTTP status of the last answer."},
            "ack_at": {"help_text": "When the last answer came."},
            "failure_alerted_at": {
                "help_text": "When the failure was told to the facility's staff and the "
                "group's admins."
            },
        }


class ReportMessagesApi(APIView):
    """The report's result messages (preliminary, final, addenda; HL7 v2 and FHIR) and
    where each one's delivery to the facility stands: attempts, the facility's
    acknowledgement (MSA code and text, or HTTP status and OperationOutcome), the
    failure reason; for whoever may read the report (payloads: the hl7/fhir routes)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses=ReportMessageSerializer(many=True))
    def get(self, request: Request, report_id: int) -> Response:
        report = selectors.report_get_visible(user=request.user, report_id=report_id)
        rows = selectors.report_messages_with_attempts(report=report)
        _audit_read(request, report)
        return Response(ReportMessageSerializer(rows, many=True).data)
