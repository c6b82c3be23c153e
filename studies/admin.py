from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from access.selectors import study_list_visible
from audit.admin import AuditedReadsAdmin
from studies.models import Study, StudyTransition


class StudyTransitionInline(admin.TabularInline[StudyTransition, Study]):
    model = StudyTransition
    extra = 0
    can_delete = False
    readonly_fields = ["from_status", "to_status", "at", "actor", "reason"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Study)
class StudyAdmin(AuditedReadsAdmin):
    """Read-only: studies change only through their services (ingest, routing, claims)."""

    list_display = [
        "accession_number",
        "facility",
        "modality",
        "priority",
        "status",
        "received_at",
        "sla_due_at",
    ]
    list_filter = ["status", "priority", "modality"]
    search_fields = ["accession_number", "study_instance_uid", "patient_id"]
    inlines = [StudyTransitionInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Study]:
        return study_list_visible(user=request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
