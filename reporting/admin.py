"""Reporting in the admin: templates scoped to the admin's groups, reports read-only
(reports change only through their services, which check the claim and audit)."""

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from audit.admin import AuditedReadsAdmin
from network.models import Facility
from network.selectors import reading_groups_administered
from reporting import transport
from reporting.models import (
    Addendum,
    CriticalCommunication,
    DeliveryAttempt,
    FacilityEndpoint,
    Report,
    ReportMessage,
    ReportTemplate,
    ReportVersion,
)
from reporting.selectors import report_list_visible
from reporting.services.delivery import (
    facility_endpoint_delete,
    facility_endpoint_save,
    report_message_requeue,
)
from reporting.services.templates import report_template_clean, report_template_create
from teleradiology.api import request_actor
from teleradiology.errors import DomainError


class _ReadOnly:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReportTemplateForm(forms.ModelForm[ReportTemplate]):
    """Adds a template (or the next version of its code) through the service's checks."""

    class Meta:
        model = ReportTemplate
        fields = [
            "reading_group",
            "code",
            "name",
            "modality",
            "body_parts",
            "procedure_codes",
            "allow_any_study",
            "schema",
        ]

    def validate_unique(self) -> None:
        # A known code is a new version, numbered by the service, not a duplicate.
        return None

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        document = {k: data.get(k) for k in self.Meta.fields if k != "reading_group"}
        document = {k: v for k, v in document.items() if v is not None}
        try:
            report_template_clean(document)
        except DomainError as exc:
            raise forms.ValidationError(exc.message) from exc
        group = data.get("reading_group")
        owners = set(
            ReportTemplate.objects.filter(code=data.get("code", "")).values_list(
                "reading_group_id", flat=True
            )
        )
        if owners - {getattr(group, "pk", None)}:
            raise forms.ValidationError("That code belongs to another owner's template.")
        return data


@admin.register(ReportTemplate)
class ReportTemplateAdmin(admin.ModelAdmin[ReportTemplate]):
    """Templates of the admin's groups and the shared library.  Adding with a known code
    makes its next version; saved templates never change (reports point at them)."""

    form = ReportTemplateForm
    list_display = [
        "code",
        "version",
        "name",
        "modality",
        "reading_group",
        "allow_any_study",
        "is_active",
    ]
    list_filter = [
        "is_active",
        "allow_any_study",
        "modality",
        ("reading_group", admin.RelatedOnlyFieldListFilter),
    ]
    search_fields = ["code", "name"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ReportTemplate]:
        qs = super().get_queryset(request)
        if request.user.is_superuser:
            return qs
        groups = reading_groups_administered(user=request.user)
        return qs.filter(Q(reading_group__in=groups) | Q(reading_group__isnull=True))

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "reading_group" and not request.user.is_superuser:
            kwargs["queryset"] = reading_groups_administered(user=request.user)
            kwargs["required"] = True
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(
        self, request: HttpRequest, obj: ReportTemplate, form: Any, change: bool
    ) -> None:
        document = {k: v for k, v in form.cleaned_data.items() if k != "reading_group"}
        created = report_template_create(
            actor=request_actor(request),
            reading_group=form.cleaned_data.get("reading_group"),
            document=document,
        )
        obj.pk = created.pk


class ReportVersionInline(_ReadOnly, admin.TabularInline[ReportVersion, Report]):
    model = ReportVersion
    extra = 0
    fields = ["number", "status", "impression", "critical_severity", "saved_by", "saved_at"]
    readonly_fields = [
        "number",
        "status",
        "impression",
        "critical_severity",
        "saved_by",
        "saved_at",
    ]


class AddendumInline(_ReadOnly, admin.TabularInline[Addendum, Report]):
    model = Addendum
    extra = 0
    readonly_fields = ["number", "text", "signed_by", "signed_at"]


class CriticalCommunicationInline(_ReadOnly, admin.TabularInline[CriticalCommunication, Report]):
    model = CriticalCommunication
    extra = 0
    readonly_fields = [
        "recipient_name",
        "recipient_role",
        "method",
        "communicated_at",
        "read_back_confirmed",
        "recorded_by",
        "recorded_at",
    ]


@admin.register(Report)
class ReportAdmin(_ReadOnly, AuditedReadsAdmin):
    """Read-only record of reports the admin may read, with every version and addendum."""

    list_display = ["study", "template", "author", "status", "critical_severity", "updated_at"]
    list_filter = ["status", "critical_severity"]
    search_fields = ["study__accession_number", "study__patient_id"]
    inlines = [ReportVersionInline, AddendumInline, CriticalCommunicationInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Report]:
        return report_list_visible(user=request.user)


class FacilityEndpointForm(forms.ModelForm[FacilityEndpoint]):
    url = forms.URLField(max_length=500, required=False, assume_scheme="https")

    class Meta:
        model = FacilityEndpoint
        fields = [
            "facility",
            "kind",
            "host",
            "port",
            "url",
            "receiving_application",
            "receiving_facility",
            "timeout_seconds",
            "active",
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("kind")
        if kind == FacilityEndpoint.Kind.MLLP and not (data.get("host") and data.get("port")):
            raise forms.ValidationError("An MLLP endpoint needs a host and a port.")
        if kind == FacilityEndpoint.Kind.FHIR_HTTPS:
            refusal = transport.fhir_url_refusal(data.get("url") or "")
            if refusal:
                raise forms.ValidationError(refusal)
        return data


@admin.register(FacilityEndpoint)
class FacilityEndpointAdmin(admin.ModelAdmin[FacilityEndpoint]):
    """Where each facility receives its results (one endpoint per facility): a group
    admin sees and sets those of their groups' facilities; saves are audited."""

    form = FacilityEndpointForm
    list_display = ["facility", "kind", "host", "port", "url", "active"]
    list_filter = ["kind", "active"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[FacilityEndpoint]:
        qs = super().get_queryset(request).select_related("facility")
        if request.user.is_superuser:
            return qs
        groups = reading_groups_administered(user=request.user)
        return qs.filter(facility__reading_group__in=groups)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "facility" and not request.user.is_superuser:
            groups = reading_groups_administered(user=request.user)
            kwargs["queryset"] = Facility.objects.filter(reading_group__in=groups)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(
        self, request: HttpRequest, obj: FacilityEndpoint, form: Any, change: bool
    ) -> None:
        facility_endpoint_save(
            endpoint=obj,
            actor=request_actor(request),
            ip_address=request.META.get("REMOTE_ADDR"),
        )

    def delete_model(self, request: HttpRequest, obj: FacilityEndpoint) -> None:
        facility_endpoint_delete(
            endpoint=obj,
            actor=request_actor(request),
            ip_address=request.META.get("REMOTE_ADDR"),
        )

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[FacilityEndpoint]) -> None:
        for endpoint in queryset:  # one audited delete each, like delete_model
            self.delete_model(request, endpoint)


class DeliveryAttemptInline(_ReadOnly, admin.TabularInline[DeliveryAttempt, ReportMessage]):
    model = DeliveryAttempt
    extra = 0
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


@admin.register(ReportMessage)
class ReportMessageAdmin(_ReadOnly, AuditedReadsAdmin):
    """Result messages of the reports the admin may read, and every delivery attempt."""

    list_display = [
        "control_id",
        "kind",
        "result_status",
        "report",
        "delivery_status",
        "ack_code",
        "attempts",
        "next_attempt_at",
        "sent_at",
    ]
    list_filter = ["kind", "result_status", "delivery_status", "ack_code"]
    search_fields = ["control_id", "report__study__accession_number"]
    inlines = [DeliveryAttemptInline]
    actions = ["requeue"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ReportMessage]:
        return ReportMessage.objects.filter(
            report__in=report_list_visible(user=request.user).values("pk")
        )

    @admin.action(description="Send the selected failed messages again")
    def requeue(self, request: HttpRequest, queryset: QuerySet[ReportMessage]) -> None:
        actor = request_actor(request)
        done = 0
        for message in queryset.filter(delivery_status=ReportMessage.Delivery.FAILED):
            report_message_requeue(message_id=message.pk, actor=actor)
            done += 1
        self.message_user(request, f"{done} message(s) queued for delivery again.")
