from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin[AuditEvent]):
    """The trail is read-only here as everywhere."""

    list_display = [
        "at",
        "actor_username",
        "action",
        "object_type",
        "object_id",
        "patient_id",
        "ip_address",
    ]
    list_filter = ["action", "object_type"]
    search_fields = ["actor_username", "patient_id", "object_id"]
    date_hierarchy = "at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
