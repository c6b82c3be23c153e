"""The reporting API's templates: readers list them; group admins add templates and
versions, export and import them."""

from __future__ import annotations

from typing import Any

from django.db import models
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from access.selectors import study_get_visible
from network.models import ReadingGroup
from network.selectors import reading_groups_administered
from reporting import selectors
from reporting.limits import TEMPLATE_LIST_MAX, TEMPLATE_SCHEMA_MAX, json_size_at_most
from reporting.models import ReportTemplate
from reporting.services.templates import report_template_create, report_template_new_version
from teleradiology.api import request_actor
from teleradiology.converters import MAX_ID, query_id

_SCHEMA_SIZE = json_size_at_most(TEMPLATE_SCHEMA_MAX, "template schema")


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
            "allow_any_study",
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
    body_parts = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, max_length=TEMPLATE_LIST_MAX
    )
    procedure_codes = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, max_length=TEMPLATE_LIST_MAX
    )
    allow_any_study = serializers.BooleanField(
        required=False,
        help_text="Offer and accept the template on any study, whatever its modality, "
        "body part and procedure (an admin's explicit override).",
    )
    schema = serializers.JSONField(validators=[_SCHEMA_SIZE])


class TemplateCreateSerializer(TemplateDocumentSerializer):
    reading_group = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_ID,
        help_text="Owning group; omit for the shared library (superusers).",
    )


class TemplateVersionSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=200, required=False)
    modality = serializers.CharField(max_length=16, required=False, allow_blank=True)
    body_parts = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, max_length=TEMPLATE_LIST_MAX
    )
    procedure_codes = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, max_length=TEMPLATE_LIST_MAX
    )
    allow_any_study = serializers.BooleanField(required=False)
    schema = serializers.JSONField(required=False, validators=[_SCHEMA_SIZE])


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
            study = study_get_visible(
                user=self.request.user,
                study_id=query_id(study_id, field="study", message="A study id."),
            )
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
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        body = TemplateCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        document = dict(body.validated_data)
        group = _owning_group(request, document.pop("reading_group", None))
        template = report_template_create(
            actor=request_actor(request), reading_group=group, document=document
        )
        return Response(ReportTemplateSerializer(template).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=TemplateVersionSerializer, responses={201: ReportTemplateSerializer})
    @action(detail=True, methods=["post"], url_path="new-version")
    def new_version(self, request: Request, pk: str | None = None, **kwargs: Any) -> Response:
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
        created = report_template_new_version(
            template_id=template.pk, actor=request_actor(request), changes=body.validated_data
        )
        return Response(ReportTemplateSerializer(created).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=TemplateDocumentSerializer)
    @action(detail=True, methods=["get"])
    def export(self, request: Request, pk: str | None = None, **kwargs: Any) -> Response:
        return Response(selectors.template_export(template=self.get_object()))

    @extend_schema(request=TemplateCreateSerializer, responses={201: ReportTemplateSerializer})
    @action(detail=False, methods=["post"], url_path="import", url_name="import")
    def import_(self, request: Request, **kwargs: Any) -> Response:
        if not reading_groups_administered(user=request.user).exists():
            raise PermissionDenied("Only group admins import templates.")
        return self.create(request)
