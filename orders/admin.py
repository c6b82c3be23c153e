"""HL7 messages in the admin: read-only (the listener writes them), scoped to the admin's
facilities, every read audited; a replay action for messages whose cause was fixed."""

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from audit.admin import AuditedReadsAdmin
from orders import selectors
from orders.models import Hl7Message
from orders.services.messages import message_replay
from teleradiology.api import request_actor
from teleradiology.errors import DomainError


@admin.register(Hl7Message)
class Hl7MessageAdmin(AuditedReadsAdmin):
    list_display = [
        "received_at",
        "facility",
        "sending_facility",
        "message_type",
        "control_id",
        "outcome",
        "error_text",
        "summary",
        "replay_count",
    ]
    # Only the facilities of the messages the admin may see (never another group's names).
    list_filter = [("facility", admin.RelatedOnlyFieldListFilter), "outcome", "message_type"]
    search_fields = ["control_id", "sending_facility", "patient_id"]
    date_hierarchy = "received_at"
    actions = ["replay"]
    readonly_fields = [
        "received_at",
        "facility",
        "peer_address",
        "sending_facility",
        "message_type",
        "version",
        "control_id",
        "patient_id",
        "outcome",
        "error_text",
        "error_field",
        "summary",
        "encoding",
        "charset",
        "size_bytes",
        "raw_truncated",
        "raw",
        "ack",
        "duplicate_of",
        "replay_of",
        "replayed_at",
        "replay_count",
        "replayed_by",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Hl7Message]:
        return selectors.message_list_visible(user=request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Replay the selected messages (after fixing their cause)")
    def replay(self, request: HttpRequest, queryset: QuerySet[Hl7Message]) -> None:
        actor = request_actor(request)
        outcomes: dict[str, int] = {}
        for message in queryset.exclude(outcome=Hl7Message.Outcome.AA).order_by("received_at"):
            try:
                replayed = message_replay(
                    message_id=message.pk,
                    actor=actor,
                    ip_address=request.META.get("REMOTE_ADDR") or None,
                )
            except DomainError as exc:
                self.message_user(request, f"{message}: {exc.message}", messages.WARNING)
                continue
            outcomes[replayed.outcome] = outcomes.get(replayed.outcome, 0) + 1
        done = ", ".join(f"{n} {code}" for code, n in sorted(outcomes.items())) or "none"
        self.message_user(request, f"Replayed: {done}.")
