"""The reporting API's reports: a study's report and its draft, the reports the caller
may read, signing, addenda and versions; every read audited."""

from __future__ import annotations

from typing import Any

from django.db import models
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from access.selectors import study_get_visible
from audit.models import AuditEvent
from audit.services import audit_record_many
from reporting import selectors
from reporting.api._common import _audit_read, _reader, _report_visible
from reporting.api.critical import CriticalCommunicationActions, CriticalCommunicationSerializer
from reporting.limits import REPORT_VALUES_MAX, json_size_at_most
from reporting.models import Addendum, CriticalSeverity, Report, ReportVersion
from reporting.services.reports import report_addendum_add, report_save_draft, report_sign
from reporting.states import SignAs
from teleradiology.api import client_ip, request_actor
from teleradiology.converters import MAX_ID


class AddendumSerializer(serializers.ModelSerializer[Addendum]):
    signed_by_name = serializers.CharField(source="signed_by.display_name", read_only=True)

    class Meta:
        model = Addendum
        fields = ["id", "number", "text", "signed_by", "signed_by_name", "signed_at"]
        read_only_fields = fields


class ReportSerializer(serializers.ModelSerializer[Report]):
    template_code = serializers.CharField(source="template.code", read_only=True)
    template_version = serializers.IntegerField(source="template.version", read_only=True)
    author_name = serializers.CharField(source="author.display_name", read_only=True)
    addenda = AddendumSerializer(many=True, read_only=True)
    critical_communications = CriticalCommunicationSerializer(many=True, read_only=True)

    class Meta:
        model = Report
        fields = [
            "id",
            "study",
            "template",
            "template_code",
            "template_version",
            "author",
            "author_name",
            "status",
            "values",
            "impression",
            "critical_severity",
            "version",
            "preliminary_signed_at",
            "preliminary_signed_by",
            "signed_at",
            "signed_by",
            "created_at",
            "updated_at",
            "addenda",
            "critical_communications",
        ]
        read_only_fields = fields


class ReportVersionSerializer(serializers.ModelSerializer[ReportVersion]):
    class Meta:
        model = ReportVersion
        fields = [
            "number",
            "template",
            "status",
            "values",
            "impression",
            "critical_severity",
            "saved_by",
            "saved_at",
        ]
        read_only_fields = fields


class ReportDraftSerializer(serializers.Serializer[Any]):
    template = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_ID, help_text="Needed for a new report."
    )
    values = serializers.DictField(
        required=False, validators=[json_size_at_most(REPORT_VALUES_MAX, "report")]
    )
    impression = serializers.CharField(required=False, allow_blank=True, max_length=20_000)
    critical_severity = serializers.ChoiceField(choices=CriticalSeverity.choices, required=False)


class SignSerializer(serializers.Serializer[Any]):
    status = serializers.ChoiceField(choices=SignAs.choices)


class AddendumInputSerializer(serializers.Serializer[Any]):
    text = serializers.CharField(max_length=20_000)


def _with_details(qs: models.QuerySet[Report]) -> models.QuerySet[Report]:
    return qs.prefetch_related("addenda__signed_by", "critical_communications")


class StudyReportApi(APIView):
    """The report of a study: read it, or create/update its draft (the claimer only)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses=ReportSerializer)
    def get(self, request: Request, study_id: int) -> Response:
        report = selectors.report_get_for_study(user=request.user, study_id=study_id)
        _audit_read(request, report)
        report = _with_details(Report.objects.select_related("study")).get(pk=report.pk)
        return Response(ReportSerializer(report).data)

    @extend_schema(request=ReportDraftSerializer, responses={200: ReportSerializer})
    def post(self, request: Request, study_id: int) -> Response:
        study_get_visible(user=request.user, study_id=study_id)  # 404 outside one's reach
        reader = _reader(request)
        body = ReportDraftSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        report = report_save_draft(
            study_id=study_id,
            radiologist=reader,
            actor=request_actor(request),
            template_id=data.get("template"),
            values=data.get("values"),
            impression=data.get("impression"),
            critical_severity=data.get("critical_severity"),
            ip_address=client_ip(request),
        )
        report = _with_details(Report.objects.all()).get(pk=report.pk)
        return Response(ReportSerializer(report).data)


class ReportViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    CriticalCommunicationActions,
    viewsets.GenericViewSet[Report],
):
    """Reports the caller may read (facility staff: their own finals); every read audited."""

    serializer_class = ReportSerializer
    permission_classes = [IsAuthenticated]
    filterset_fields = ["study", "status", "critical_severity"]

    def get_queryset(self) -> models.QuerySet[Report]:
        return _with_details(selectors.report_list_visible(user=self.request.user)).order_by(
            "-updated_at", "id"
        )

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        rows = list(page if page is not None else queryset)
        audit_record_many(
            actor=request.user,
            action=AuditEvent.Action.LIST,
            object_type="reporting.report",
            items=[(str(r.pk), r.study.patient_id) for r in rows],
            ip_address=client_ip(request),
            detail={"query": request.GET.urlencode()[:500]},
        )
        data = self.get_serializer(rows, many=True).data
        return self.get_paginated_response(data) if page is not None else Response(data)

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        report = self.get_object()
        _audit_read(request, report)
        return Response(self.get_serializer(report).data)

    @extend_schema(request=SignSerializer, responses=ReportSerializer)
    @action(detail=True, methods=["post"])
    def sign(self, request: Request, pk: str | None = None, **kwargs: Any) -> Response:
        report = _report_visible(request, pk)
        body = SignSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        report_sign(
            report_id=report.pk,
            radiologist=_reader(request),
            status=body.validated_data["status"],
            actor=request_actor(request),
            ip_address=client_ip(request),
        )
        return Response(self.get_serializer(self.get_queryset().get(pk=report.pk)).data)

    @extend_schema(methods=["GET"], responses=AddendumSerializer(many=True))
    @extend_schema(
        methods=["POST"], request=AddendumInputSerializer, responses={201: AddendumSerializer}
    )
    @action(detail=True, methods=["get", "post"])
    def addenda(self, request: Request, pk: str | None = None, **kwargs: Any) -> Response:
        report = _report_visible(request, pk)
        if request.method == "GET":
            _audit_read(request, report)
            rows = selectors.report_addenda(report=report)
            return Response(AddendumSerializer(rows, many=True).data)
        body = AddendumInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        addendum = report_addendum_add(
            report_id=report.pk,
            radiologist=_reader(request),
            text=body.validated_data["text"],
            actor=request_actor(request),
            ip_address=client_ip(request),
        )
        return Response(AddendumSerializer(addendum).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=ReportVersionSerializer(many=True))
    @action(detail=True, methods=["get"])
    def versions(self, request: Request, pk: str | None = None, **kwargs: Any) -> Response:
        report = _report_visible(request, pk)
        _audit_read(request, report)
        rows = report.versions.order_by("number")
        return Response(ReportVersionSerializer(rows, many=True).data)
