from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from alerts.models import Alert
from alerts.selectors import alert_is_administered_by, alert_list_visible
from alerts.services import alert_acknowledge
from audit.admin import AuditedReadsAdmin
from teleradiology.api import request_actor


@admin.register(Alert)
class AlertAdmin(AuditedReadsAdmin):
    """The alerts of the admin's reading groups (site operators: all); only the group's
    admins acknowledge them.  An alert names a study, so reading it is audited."""

    list_display = ["created_at", "kind", "reading_group", "study", "message", "acknowledged_at"]
    list_filter = ["kind"]
    readonly_fields = ["kind", "reading_group", "study", "message", "dedupe_key", "created_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Alert]:
        return alert_list_visible(user=request.user).select_related("reading_group", "study")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if not super().has_change_permission(request, obj):
            return False
        return obj is None or alert_is_administered_by(user=request.user, alert=obj)

    def save_model(self, request: HttpRequest, obj: Alert, form: Any, change: bool) -> None:
        # Only the acknowledgement is editable here (the other fields are read-only).
        alert_acknowledge(
            alert=obj, acknowledged_at=obj.acknowledged_at, actor=request_actor(request)
        )
