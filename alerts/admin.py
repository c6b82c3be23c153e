from django.contrib import admin

from alerts.models import Alert


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin[Alert]):
    list_display = ["created_at", "kind", "reading_group", "study", "message", "acknowledged_at"]
    list_filter = ["kind", "reading_group"]
    readonly_fields = ["kind", "reading_group", "study", "message", "dedupe_key", "created_at"]
