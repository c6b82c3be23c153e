"""The study API: scoped reads, each one audited."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db import models, transaction
from django.db.models import Count, Prefetch
from rest_framework import serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from access import selectors
from audit.models import AuditEvent
from audit.services import audit_record, audit_record_many
from network.models import Priority, Radiologist
from studies.models import Series, Study, StudyTransition
from studies.states import StudyStatus
from teleradiology.api import client_ip


class StudyTransitionSerializer(serializers.ModelSerializer[StudyTransition]):
    class Meta:
        model = StudyTransition
        fields = ["from_status", "to_status", "at", "reason"]


class StudyListSerializer(serializers.ModelSerializer[Study]):
    facility_name = serializers.CharField(source="facility.name", read_only=True)
    patient_jurisdiction = serializers.CharField(source="patient_jurisdiction.code")
    priority = serializers.ChoiceField(choices=Priority.choices)
    priority_label = serializers.CharField(source="get_priority_display", read_only=True)
    assigned_radiologist = serializers.PrimaryKeyRelatedField[Radiologist](
        read_only=True, allow_null=True
    )

    class Meta:
        model = Study
        fields = [
            "id",
            "study_instance_uid",
            "accession_number",
            "facility",
            "facility_name",
            "patient_id",
            "patient_name",
            "patient_birth_date",
            "patient_sex",
            "patient_jurisdiction",
            "modality",
            "body_part",
            "study_description",
            "procedure_code",
            "priority",
            "priority_label",
            "status",
            "assigned_radiologist",
            "received_at",
            "sla_due_at",
        ]


class SeriesSerializer(serializers.ModelSerializer[Series]):
    instance_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Series
        fields = [
            "id",
            "series_instance_uid",
            "modality",
            "series_number",
            "series_description",
            "body_part",
            "instance_count",
        ]


class StudyDetailSerializer(StudyListSerializer):
    transitions = StudyTransitionSerializer(many=True, read_only=True)
    series = SeriesSerializer(many=True, read_only=True)
    series_count = serializers.SerializerMethodField()
    instance_count = serializers.SerializerMethodField()

    def get_series_count(self, study: Study) -> int:
        return len(study.series.all())

    def get_instance_count(self, study: Study) -> int:
        return sum(s.instance_count for s in study.series.all())  # type: ignore[attr-defined]

    class Meta(StudyListSerializer.Meta):
        fields = [
            *StudyListSerializer.Meta.fields,
            "study_date",
            "referring_physician",
            "flags",
            "last_instance_at",
            "ready_at",
            "offered_at",
            "claimed_at",
            "preliminary_at",
            "finalized_at",
            "cancelled_at",
            "late_instance_count",
            "refused_instance_count",
            "series_count",
            "instance_count",
            "series",
            "transitions",
        ]


class StudyFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=StudyStatus.choices)
    priority = django_filters.MultipleChoiceFilter(choices=Priority.choices)
    modality = django_filters.CharFilter(lookup_expr="iexact")
    received_after = django_filters.IsoDateTimeFilter(field_name="received_at", lookup_expr="gte")
    received_before = django_filters.IsoDateTimeFilter(field_name="received_at", lookup_expr="lt")
    accession_number = django_filters.CharFilter()

    class Meta:
        model = Study
        fields = ["facility", "status", "priority", "modality", "accession_number"]


class StudyViewSet(viewsets.ReadOnlyModelViewSet[Study]):
    """Studies the caller may see (see access.selectors); every read is audited."""

    filterset_class = StudyFilter
    ordering_fields = ["received_at", "sla_due_at", "priority"]

    def get_queryset(self) -> models.QuerySet[Study]:
        qs = selectors.study_list_visible(user=self.request.user)
        if self.action == "retrieve":
            qs = qs.prefetch_related(
                "transitions",
                Prefetch(
                    "series",
                    queryset=Series.objects.annotate(instance_count=Count("instances")).order_by(
                        "series_number", "id"
                    ),
                ),
            )
        return qs.order_by("priority", "sla_due_at", "id")

    def get_serializer_class(self) -> type[serializers.BaseSerializer[Study]]:
        return StudyDetailSerializer if self.action == "retrieve" else StudyListSerializer

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        rows = list(page if page is not None else queryset)
        # Patient identifiers left the building: one audit row per study shown.
        audit_record_many(
            actor=request.user,
            action=AuditEvent.Action.LIST,
            object_type="studies.study",
            items=[(str(s.pk), s.patient_id) for s in rows],
            ip_address=client_ip(request),
            detail={"query": request.GET.urlencode()[:500]},
        )
        data = self.get_serializer(rows, many=True).data
        return self.get_paginated_response(data) if page is not None else Response(data)

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        study = self.get_object()
        with transaction.atomic():
            audit_record(
                actor=request.user,
                action=AuditEvent.Action.READ,
                obj=study,
                patient_id=study.patient_id,
                ip_address=client_ip(request),
            )
        return Response(self.get_serializer(study).data)
