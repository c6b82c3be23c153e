"""The reporting API's critical communications: who was told of a report's actionable
finding, listed and recorded through an action of the report views
(``/reports/{id}/critical-communications/``)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from reporting import selectors
from reporting.api._common import _audit_read, _reader, _report_visible
from reporting.limits import CRITICAL_NOTES_MAX
from reporting.models import CriticalCommunication
from reporting.services.critical import critical_communication_record
from teleradiology.api import client_ip, request_actor


class CriticalCommunicationSerializer(serializers.ModelSerializer[CriticalCommunication]):
    class Meta:
        model = CriticalCommunication
        fields = [
            "id",
            "recipient_name",
            "recipient_role",
            "method",
            "communicated_at",
            "read_back_confirmed",
            "notes",
            "recorded_by",
            "recorded_at",
        ]
        read_only_fields = ["id", "recorded_by", "recorded_at"]
        extra_kwargs = {"notes": {"max_length": CRITICAL_NOTES_MAX}}


class CriticalCommunicationActions:
    """The critical-communications action, composed into ``ReportViewSet``."""

    @extend_schema(methods=["GET"], responses=CriticalCommunicationSerializer(many=True))
    @extend_schema(
        methods=["POST"],
        request=CriticalCommunicationSerializer,
        responses={201: CriticalCommunicationSerializer},
    )
    @action(detail=True, methods=["get", "post"], url_path="critical-communications")
    def critical_communications(
        self, request: Request, pk: str | None = None, **kwargs: Any
    ) -> Response:
        report = _report_visible(request, pk)
        if request.method == "GET":
            _audit_read(request, report)
            rows = selectors.report_communications(report=report)
            return Response(CriticalCommunicationSerializer(rows, many=True).data)
        body = CriticalCommunicationSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        record = critical_communication_record(
            report_id=report.pk,
            radiologist=_reader(request),
            recipient_name=data["recipient_name"],
            recipient_role=data["recipient_role"],
            method=data["method"],
            communicated_at=data["communicated_at"],
            read_back_confirmed=data.get("read_back_confirmed", False),
            notes=data.get("notes", ""),
            actor=request_actor(request),
            ip_address=client_ip(request),
        )
        return Response(
            CriticalCommunicationSerializer(record).data, status=status.HTTP_201_CREATED
        )
