from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from audit.admin import AuditedReadsAdmin
from ingest import selectors
from ingest.models import QuarantinedObject


@admin.register(QuarantinedObject)
class QuarantinedObjectAdmin(AuditedReadsAdmin):
    list_display = ["received_at", "calling_ae", "facility", "reason", "size_bytes", "resolved_at"]
    # Only the facilities of the objects the admin may see (never another group's names).
    list_filter = [("facility", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["calling_ae", "reason", "sop_instance_uid", "study_instance_uid"]
    readonly_fields = [
        "received_at",
        "calling_ae",
        "peer_address",
        "facility",
        "reason",
        "storage_key",
        "size_bytes",
        "sha256",
        "sop_instance_uid",
        "study_instance_uid",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[QuarantinedObject]:
        return selectors.quarantine_list_visible(user=request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
