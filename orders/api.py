"""The HL7 message store for admins: what each facility sent, how it was answered, and
a replay once its cause is fixed.  A message holds patient data: every read is audited."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db import transaction
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from audit.models import AuditEvent
from audit.services import audit_record, audit_record_many
from network.selectors import is_group_admin
from orders import selectors
from orders.models import Hl7Message
from orders.services.messages import message_replay
from teleradiology.api import client_ip, request_actor


class IsGroupAdmin(permissions.BasePermission):
    message = "Only group admins see the HL7 messages."

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and request.user.is_authenticated) and (
            bool(request.user.is_superuser) or is_group_admin(user=request.user)
        )


class Hl7MessageSerializer(serializers.ModelSerializer[Hl7Message]):
    facility_name = serializers.CharField(source="facility.name", default="", read_only=True)

    class Meta:
        model = Hl7Message
        fields = [
            "id",
            "received_at",
            "facility",
            "facility_name",
            "sending_facility",
            "peer_address",
            "message_type",
            "version",
            "control_id",
            "patient_id",
            "outcome",
            "error_text",
            "error_field",
            "summary",
            "size_bytes",
            "encoding",
            "charset",
            "raw_truncated",
            "duplicate_of",
            "replay_of",
            "replayed_at",
            "replay_count",
        ]
        read_only_fields = fields


class Hl7MessageDetailSerializer(Hl7MessageSerializer):
    """One message with its text as received and the ACK sent."""

    class Meta(Hl7MessageSerializer.Meta):
        fields = [*Hl7MessageSerializer.Meta.fields, "raw", "ack"]
        read_only_fields = fields


class Hl7MessageFilter(django_filters.FilterSet):
    received_after = django_filters.IsoDateTimeFilter(field_name="received_at", lookup_expr="gte")
    received_before = django_filters.IsoDateTimeFilter(field_name="received_at", lookup_expr="lt")
    unknown_facility = django_filters.BooleanFilter(field_name="facility", lookup_expr="isnull")

    class Meta:
        model = Hl7Message
        fields = ["facility", "outcome", "message_type", "control_id"]


class Hl7MessageViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[Hl7Message]
):
    """HL7 messages of the facilities of the caller's reading groups (messages from an
    unknown sender: site operators only); every read audited."""

    permission_classes = [IsGroupAdmin]
    filterset_class = Hl7MessageFilter
    ordering_fields = ["received_at", "id"]

    def get_serializer_class(self) -> type[serializers.BaseSerializer[Hl7Message]]:
        if self.action == "list":
            return Hl7MessageSerializer
        return Hl7MessageDetailSerializer

    def get_queryset(self) -> QuerySet[Hl7Message]:
        return selectors.message_list_visible(user=self.request.user).order_by(
            "-received_at", "-id"
        )

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        rows = list(page if page is not None else queryset)
        audit_record_many(
            actor=request.user,
            action=AuditEvent.Action.LIST,
            object_type=Hl7Message._meta.label_lower,
            items=[(str(row.pk), row.patient_id) for row in rows],
            ip_address=client_ip(request),
            detail={"query": request.GET.urlencode()[:500]},
        )
        data = self.get_serializer(rows, many=True).data
        return self.get_paginated_response(data) if page is not None else Response(data)

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        message = self.get_object()
        with transaction.atomic():
            audit_record(
                actor=request.user,
                action=AuditEvent.Action.READ,
                obj=message,
                patient_id=message.patient_id,
                ip_address=client_ip(request),
            )
        return Response(self.get_serializer(message).data)

    @extend_schema(request=None, responses={201: Hl7MessageDetailSerializer})
    @action(detail=True, methods=["post"])
    def replay(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Apply the message again after its cause was fixed; answers the new stored
        message (its outcome, and the ACK it would have been sent)."""
        message = self.get_object()
        replayed = message_replay(
            message_id=message.pk, actor=request_actor(request), ip_address=client_ip(request)
        )
        replayed = self.get_queryset().get(pk=replayed.pk)
        return Response(Hl7MessageDetailSerializer(replayed).data, status=status.HTTP_201_CREATED)
