"""The quarantine, for group admins: what arrived but could not be filed, and why."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet
from rest_framework import permissions, serializers, viewsets
from rest_framework.request import Request

from ingest import selectors
from ingest.models import QuarantinedObject
from network.selectors import is_group_admin


class IsGroupAdmin(permissions.BasePermission):
    message = "Only group admins see the quarantine."

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and request.user.is_authenticated) and (
            bool(request.user.is_superuser) or is_group_admin(user=request.user)
        )


class QuarantinedObjectSerializer(serializers.ModelSerializer[QuarantinedObject]):
    facility_name = serializers.CharField(source="facility.name", default="", read_only=True)

    class Meta:
        model = QuarantinedObject
        fields = [
            "id",
            "received_at",
            "calling_ae",
            "peer_address",
            "facility",
            "facility_name",
            "reason",
            "size_bytes",
            "sha256",
            "sop_instance_uid",
            "study_instance_uid",
            "storage_key",
            "resolved_at",
        ]


class QuarantineFilter(django_filters.FilterSet):
    received_after = django_filters.IsoDateTimeFilter(field_name="received_at", lookup_expr="gte")
    received_before = django_filters.IsoDateTimeFilter(field_name="received_at", lookup_expr="lt")
    unresolved = django_filters.BooleanFilter(field_name="resolved_at", lookup_expr="isnull")

    class Meta:
        model = QuarantinedObject
        fields = ["facility", "calling_ae"]


class QuarantineViewSet(viewsets.ReadOnlyModelViewSet[QuarantinedObject]):
    serializer_class = QuarantinedObjectSerializer
    permission_classes = [IsGroupAdmin]
    filterset_class = QuarantineFilter
    ordering_fields = ["received_at"]

    def get_queryset(self) -> QuerySet[QuarantinedObject]:
        return selectors.quarantine_list_visible(user=self.request.user).order_by(
            "-received_at", "-id"
        )
