"""The reporting API: templates, a study's report, signing, addenda, critical communications
and macros.  Reads go through reporting.selectors (404 outside one's reach); writes
go through reporting.services, which check the claim and audit."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django.db import models, transaction
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.models import AuditEvent
from audit.services import audit_record, audit_record_many
from network.models import Radiologist, ReadingGroup
from network.selectors import radiologist_for_user, reading_groups_administered
from reporting import pdf, selectors, services
from reporting.models import (
    Addendum,
    CriticalCommunication,
    CriticalSeverity,
    Macro,
    Report,
    ReportMessage,
    ReportTemplate,
    ReportVersion,
)
from reporting.states import ReportStatus, SignAs
from studies.selectors import study_get_visible
from teleradiology.api import client_ip, request_actor


def _reader(request: Request) -> Radiologist:
    reader = radiologist_for_user(user=request.user)
    if reader is None:
        raise PermissionDenied("Only radiologists write reports.")
    return reader


# --- Templates ------------------------------------------------------------------
class ReportTemplateSerializer(serializers.ModelSerializer[ReportTemplate]):
    class Meta:
        model = ReportTemplate
        fields = [
            "id",
            "reading_group",
            "code",
            "version",
            "name",
            "modality",
            "body_parts",
            "procedure_codes",
            "schema",
            "is_active",
            "created_at",
        ]
        read_only_fields = fields


class TemplateDocumentSerializer(serializers.Serializer[Any]):
    """A template as JSON: what export returns and import, create and new-version take."""

    code = serializers.CharField(max_length=64)
    name = serializers.CharField(max_length=200)
    version = serializers.IntegerField(required=False, read_only=True)
    modality = serializers.CharField(max_length=16, required=False, allow_blank=True)
    body_parts = serializers.ListField(child=serializers.CharField(max_length=64), required=False)
    procedure_codes = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False
    )
    schema = serializers.JSONField()


class TemplateCreateSerializer(TemplateDocumentSerializer):
    reading_group = serializers.IntegerField(
        required=False, help_text="Owning group; omit for the shared library (superusers)."
    )


class TemplateVersionSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=200, required=False)
    modality = serializers.CharField(max_length=16, required=False, allow_blank=True)
    body_parts = serializers.ListField(child=serializers.CharField(max_length=64), required=False)
    procedure_codes = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False
    )
    schema = serializers.JSONField(required=False)


def _owning_group(request: Request, group_id: int | None) -> ReadingGroup | None:
    """The group a new template belongs to, if the caller administers it."""
    administered = reading_groups_administered(user=request.user)
    if not administered.exists():
        raise PermissionDenied("Only group admins add templates.")
    if group_id is None:
        if request.user.is_superuser:
            return None
        groups = list(administered[:2])
        if len(groups) != 1:
            raise PermissionDenied("Say which of your reading groups owns the template.")
        return groups[0]
    group = administered.filter(pk=group_id).first()
    if group is None:
        raise PermissionDenied("You do not administer that reading group.")
    return group


class ReportTemplateViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[ReportTemplate]
):
    """Structured report templates: readers list them; group admins add templates and versions."""

    serializer_class = ReportTemplateSerializer
    permission_classes = [IsAuthenticated]
    filterset_fields = ["code", "modality", "is_active", "reading_group"]

    def get_queryset(self) -> models.QuerySet[ReportTemplate]:
        qs = selectors.template_list_visible(user=self.request.user)
        study_id = self.request.query_params.get("study")
        if self.action == "list" and study_id:
            if not study_id.isdigit():
                raise ValidationError({"study": ["A study id."]})
            study = study_get_visible(user=self.request.user, study_id=int(study_id))
            qs = qs.filter(pk__in=selectors.template_matches(study=study).values("pk"))
        return qs

    @extend_schema(
        parameters=[
            OpenApiParameter("study", int, description="Only active templates that fit this study.")
        ]
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(request=TemplateCreateSerializer, responses={201: ReportTemplateSerializer})
    def create(self, request: Request) -> Response:
        body = TemplateCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        document = dict(body.validated_data)
        group = _owning_group(request, document.pop("reading_group", None))
        template = services.report_template_create(
            actor=request_actor(request), reading_group=group, document=document
        )
        return Response(ReportTemplateSerializer(template).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=TemplateVersionSerializer, responses={201: ReportTemplateSerializer})
    @action(detail=True, methods=["post"], url_path="new-version")
    def new_version(self, request: Request, pk: str | None = None) -> Response:
        template = self.get_object()
        if template.reading_group_id is None:
            allowed = request.user.is_superuser
        else:
            allowed = (
                reading_groups_administered(user=request.user)
                .filter(pk=template.reading_group_id)
                .exists()
            )
        if not allowed:
            raise PermissionDenied("Only the owning group's admins add template versions.")
        body = TemplateVersionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        created = services.report_template_new_version(
            template_id=template.pk, actor=request_actor(request), changes=body.validated_data
        )
        return Response(ReportTemplateSerializer(created).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=TemplateDocumentSerializer)
    @action(detail=True, methods=["get"])
    def export(self, request: Request, pk: str | None = None) -> Response:
        return Response(selectors.template_export(template=self.get_object()))

    @extend_schema(request=TemplateCreateSerializer, responses={201: ReportTemplateSerializer})
    @action(detail=False, methods=["post"], url_path="import", url_name="import")
    def import_(self, request: Request) -> Response:
        if not reading_groups_administered(user=request.user).exists():
            raise PermissionDenied("Only group admins import templates.")
        return self.create(request)


# --- Reports ----------------------------------------------------------------------
class AddendumSerializer(serializers.ModelSerializer[Addendum]):
    signed_by_name = serializers.CharField(source="signed_by.display_name", read_only=True)

    class Meta:
        model = Addendum
        fields = ["id", "number", "text", "signed_by", "signed_by_name", "signed_at"]
        read_only_fields = fields


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
    template = serializers.IntegerField(required=False, help_text="Needed for a new report.")
    values = serializers.DictField(required=False)
    impression = serializers.CharField(required=False, allow_blank=True, max_length=20_000)
    critical_severity = serializers.ChoiceField(choices=CriticalSeverity.choices, required=False)


class SignSerializer(serializers.Serializer[Any]):
    status = serializers.ChoiceField(choices=SignAs.choices)


class AddendumInputSerializer(serializers.Serializer[Any]):
    text = serializers.CharField(max_length=20_000)


def _with_details(qs: models.QuerySet[Report]) -> models.QuerySet[Report]:
    return qs.prefetch_related("addenda__signed_by", "critical_communications")


def _audit_read(request: Request, report: Report) -> None:
    with transaction.atomic():
        audit_record(
            actor=request.user,
            action=AuditEvent.Action.READ,
            obj=report,
            patient_id=report.study.patient_id,
            ip_address=client_ip(request),
        )


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
        report = services.report_save_draft(
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
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[Report]
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

    def _visible(self) -> Report:
        pk = self.kwargs["pk"]
        if not str(pk).isdigit():
            raise NotFound("No such report.")
        return selectors.report_get_visible(user=self.request.user, report_id=int(pk))

    @extend_schema(request=SignSerializer, responses=ReportSerializer)
    @action(detail=True, methods=["post"])
    def sign(self, request: Request, pk: str | None = None) -> Response:
        report = self._visible()
        body = SignSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.report_sign(
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
    def addenda(self, request: Request, pk: str | None = None) -> Response:
        report = self._visible()
        if request.method == "GET":
            _audit_read(request, report)
            rows = selectors.report_addenda(report=report)
            return Response(AddendumSerializer(rows, many=True).data)
        body = AddendumInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        addendum = services.report_addendum_add(
            report_id=report.pk,
            radiologist=_reader(request),
            text=body.validated_data["text"],
            actor=request_actor(request),
            ip_address=client_ip(request),
        )
        return Response(AddendumSerializer(addendum).data, status=status.HTTP_201_CREATED)

    @extend_schema(methods=["GET"], responses=CriticalCommunicationSerializer(many=True))
    @extend_schema(
        methods=["POST"],
        request=CriticalCommunicationSerializer,
        responses={201: CriticalCommunicationSerializer},
    )
    @action(detail=True, methods=["get", "post"], url_path="critical-communications")
    def critical_communications(self, request: Request, pk: str | None = None) -> Response:
        report = self._visible()
        if request.method == "GET":
            _audit_read(request, report)
            rows = selectors.report_communications(report=report)
            return Response(CriticalCommunicationSerializer(rows, many=True).data)
        body = CriticalCommunicationSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        record = services.critical_communication_record(
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

    @extend_schema(responses=ReportVersionSerializer(many=True))
    @action(detail=True, methods=["get"])
    def versions(self, request: Request, pk: str | None = None) -> Response:
        report = self._visible()
        _audit_read(request, report)
        rows = report.versions.order_by("number")
        return Response(ReportVersionSerializer(rows, many=True).data)


# --- Result messages --------------------------------------------------------------
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


# --- Macros -----------------------------------------------------------------------
class MacroSerializer(serializers.ModelSerializer[Macro]):
    class Meta:
        model = Macro
        fields = ["id", "name", "text", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]


class MacroViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet[Macro],
):
    """My named snippets, insertable into any text field of a report."""

    serializer_class = MacroSerializer
    permission_classes = [IsAuthenticated]

    def get_queryset(self) -> models.QuerySet[Macro]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Macro.objects.none()
        return selectors.macro_list_for(radiologist=_reader(self.request))

    def perform_create(self, serializer: serializers.BaseSerializer[Macro]) -> None:
        serializer.instance = services.macro_save(
            radiologist=_reader(self.request),
            name=serializer.validated_data["name"],
            text=serializer.validated_data["text"],
            actor=request_actor(self.request),
        )

    def perform_update(self, serializer: serializers.BaseSerializer[Macro]) -> None:
        instance = serializer.instance
        assert instance is not None  # noqa: S101 - set by get_object
        serializer.instance = services.macro_save(
            radiologist=_reader(self.request),
            macro_id=instance.pk,
            name=serializer.validated_data.get("name", instance.name),
            text=serializer.validated_data.get("text", instance.text),
            actor=request_actor(self.request),
        )

    def perform_destroy(self, instance: Macro) -> None:
        services.macro_delete(
            radiologist=_reader(self.request),
            macro_id=instance.pk,
            actor=request_actor(self.request),
        )
