"""The study API: scoped reads, each one audited."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db import models, transaction
from django.db.models import Count, Prefetch
from django.utils import timezone
from rest_framework import mixins, serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from access import selectors
from audit.models import AuditEvent
from audit.services import audit_record, audit_record_many
from network.models import Priority, Radiologist
from studies.models import Order, Series, Study, StudyTransition
from studies.states import StudyStatus
from teleradiology.api import client_ip


class StudyTransitionSerializer(serializers.ModelSerializer[StudyTransition]):
    class Meta:
        model = StudyTransition
        fields = ["from_status", "to_status", "at", "reason"]


class StudyOrderSerializer(serializers.ModelSerializer[Order]):
    """What the facility's order says about the study (HL7 ORC/OBR/PV1)."""

    priority = serializers.ChoiceField(choices=Priority.choices, allow_null=True)

    class Meta:
        model = Order
        fields = [
            "placer_order_number",
            "filler_order_number",
            "reason_for_exam",
            "clinical_history",
            "ordering_provider",
            "patient_class",
            "patient_location",
            "priority",
            "status",
        ]
        read_only_fields = fields


class StudyListSerializer(serializers.ModelSerializer[Study]):
    facility_name = serializers.CharField(source="facility.name", read_only=True)
    patient_jurisdiction = serializers.CharField(source="patient_jurisdiction.code")
    priority = serializers.ChoiceField(choices=Priority.choices)
    priority_label = serializers.CharField(source="get_priority_display", read_only=True)
    assigned_radiologist = serializers.PrimaryKeyRelatedField[Radiologist](
        read_only=True, allow_null=True
    )
    # The study's order (null until one is received), joined in by the view's query.
    order = StudyOrderSerializer(read_only=True, allow_null=True)

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
            "order",
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
        # The order is a reverse one-to-one: joined, so no query per row.
        qs = selectors.study_list_visible(user=self.request.user).select_related("order")
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


class OrderListSerializer(serializers.ModelSerializer[Order]):
    """One order as the facility and its group see it, with its study when linked."""

    facility_name = serializers.CharField(source="facility.name", read_only=True)
    priority = serializers.ChoiceField(choices=Priority.choices, allow_null=True)
    patient_id = serializers.CharField(source="patient.patient_id", allow_null=True)
    patient_name = serializers.CharField(source="patient.name", allow_null=True)
    study = serializers.PrimaryKeyRelatedField[Study](read_only=True, allow_null=True)
    expected_until = serializers.DateTimeField(
        read_only=True,
        help_text="Until when the order is listed as expected while it has no images "
        "(received_at + the facility's order_expected_hours).",
    )
    expected = serializers.BooleanField(
        source="is_expected",
        read_only=True,
        help_text="No study yet, not cancelled and within the facility's expected hours.",
    )

    class Meta:
        model = Order
        fields = [
            "id",
            "facility",
            "facility_name",
            "accession_number",
            "placer_order_number",
            "filler_order_number",
            "status",
            "priority",
            "reason_for_exam",
            "clinical_history",
            "ordering_provider",
            "patient_class",
            "patient_location",
            "procedure_code",
            "procedure_description",
            "patient_id",
            "patient_name",
            "study",
            "ordered_at",
            "received_at",
            "cancelled_at",
            "expected_until",
            "expected",
        ]
        read_only_fields = fields


class OrderFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=Order.Status.choices)
    accession_number = django_filters.CharFilter()
    # A choice rather than django-filter's BooleanFilter, which reads a value it
    # does not know ("yes") as no filter at all: a typo must be a 400, not every order.
    # is_expected: annotated by access.selectors.order_list_visible.
    expected = django_filters.TypedChoiceFilter(
        field_name="is_expected",
        choices=[("true", "true"), ("false", "false")],
        coerce=lambda value: value == "true",
        label="true: orders still waiting for their images (no study yet, not cancelled, "
        "received within the facility's order_expected_hours); false: the others.",
    )

    class Meta:
        model = Order
        fields = ["facility", "status", "accession_number"]


class OrderViewSet(mixins.ListModelMixin, viewsets.GenericViewSet[Order]):
    """The facility's HL7 orders: its staff see their facilities', group admins their
    groups'; each row names its study when images arrived.  Audited like study lists."""

    serializer_class = OrderListSerializer
    filterset_class = OrderFilter
    ordering_fields = ["received_at", "ordered_at"]

    def get_queryset(self) -> models.QuerySet[Order]:
        return selectors.order_list_visible(user=self.request.user, now=timezone.now())

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        rows = list(page if page is not None else queryset)
        # The orders' patients and accession numbers left the building.
        audit_record_many(
            actor=request.user,
            action=AuditEvent.Action.LIST,
            object_type="studies.order",
            items=[(str(o.pk), o.patient.patient_id if o.patient else "") for o in rows],
            ip_address=client_ip(request),
            detail={"query": request.GET.urlencode()[:500]},
        )
        data = self.get_serializer(rows, many=True).data
        return self.get_paginated_response(data) if page is not None else Response(data)
