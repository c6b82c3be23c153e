"""Reading the audit trail: for compliance officers, never writable."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import Any

import django_filters
from django.db import models
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import DjangoModelPermissions
from rest_framework.request import Request
from rest_framework.response import Response

from audit.models import AuditEvent
from audit.selectors import audit_event_list_visible
from audit.services import audit_record, audit_trail_read_record
from network.selectors import reading_group_oversight
from teleradiology.api import client_ip


class AuditViewPermission(DjangoModelPermissions):
    """Holders of ``audit.view_auditevent`` (a compliance grant) read the trail."""

    perms_map = {
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": [],
    }


class AuditEventSerializer(serializers.ModelSerializer[AuditEvent]):
    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "at",
            "actor_username",
            "action",
            "object_type",
            "object_id",
            "patient_id",
            "ip_address",
            "detail",
        ]


class AuditEventFilter(django_filters.FilterSet):
    at_after = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="gte")
    at_before = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ["actor_username", "action", "object_type", "object_id", "patient_id"]


class _Echo:
    def write(self, value: str) -> str:
        return value


CSV_COLUMNS = AuditEventSerializer.Meta.fields


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet[AuditEvent]):
    queryset = AuditEvent.objects.all()
    serializer_class = AuditEventSerializer
    permission_classes = [AuditViewPermission]
    filterset_class = AuditEventFilter
    ordering_fields = ["at", "id"]

    def get_queryset(self) -> models.QuerySet[AuditEvent]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return AuditEvent.objects.none()
        group_ids, member_ids = reading_group_oversight(user=self.request.user)
        return audit_event_list_visible(
            reading_group_ids=group_ids, member_ids=member_ids
        ).order_by("-id")

    def _own_group(self) -> int | None:
        group_ids, _ = reading_group_oversight(user=self.request.user)
        return group_ids[0] if group_ids is not None and len(group_ids) == 1 else None

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The trail, newest first; reading it is audited (it shows patient ids): one
        event per patient shown, naming the events read."""
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        rows = list(page if page is not None else queryset)
        audit_trail_read_record(
            actor=request.user,
            rows=rows,
            ip_address=client_ip(request),
            reading_group_id=self._own_group(),
        )
        data = self.get_serializer(rows, many=True).data
        return self.get_paginated_response(data) if page is not None else Response(data)

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        event = self.get_object()
        audit_record(
            actor=request.user,
            action=AuditEvent.Action.READ,
            object_type="audit.auditevent",
            object_id=str(event.pk),
            patient_id=event.patient_id,
            ip_address=client_ip(request),
            reading_group_id=event.reading_group_id,
        )
        return Response(self.get_serializer(event).data)

    @extend_schema(responses={(200, "text/csv"): OpenApiTypes.STR})
    @action(detail=False, methods=["get"], url_path="export")
    def export(self, request: Request, **kwargs: Any) -> StreamingHttpResponse:
        """The filtered trail as CSV, streamed; the export itself is audited."""
        queryset = self.filter_queryset(self.get_queryset())
        audit_record(
            actor=request.user,
            action=AuditEvent.Action.EXPORT,
            object_type="audit.auditevent",
            ip_address=client_ip(request),
            detail={"query": request.GET.urlencode()[:500]},
            reading_group_id=self._own_group(),
        )
        writer = csv.writer(_Echo())

        def rows() -> Iterator[Any]:
            yield writer.writerow(CSV_COLUMNS)
            for event in queryset.iterator(chunk_size=2000):
                yield writer.writerow(
                    [
                        event.id,
                        event.at.isoformat(),
                        event.actor_username,
                        event.action,
                        event.object_type,
                        event.object_id,
                        event.patient_id,
                        event.ip_address or "",
                        event.detail,
                    ]
                )

        response = StreamingHttpResponse(rows(), content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="audit-events.csv"'
        return response
