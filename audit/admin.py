"""The audit trail in the Django admin (read-only, scoped to the admin's reading
groups), and the mixin every admin screen of patient data uses so that reading it
there is audited like everywhere else."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.http import HttpRequest, HttpResponse

from audit.models import AuditEvent
from audit.selectors import audit_event_list_visible
from audit.services import (
    GROUP_PATH_PREFERENCE,
    audit_record,
    audit_record_many,
    audit_trail_read_record,
)
from network.selectors import reading_group_oversight

_PATIENT_PATHS: dict[str, str | None] = {}


def _patient_path(model: type[models.Model], depth: int = 0) -> str | None:
    """The ORM path from ``model`` to the patient id of the study it concerns."""
    own = next((f for f in model._meta.get_fields() if f.name == "patient_id"), None)
    if own is not None and own.concrete and not own.is_relation:
        return "patient_id"
    if depth >= 5:
        return None
    for name in GROUP_PATH_PREFERENCE:
        try:
            field = model._meta.get_field(name)
        except FieldDoesNotExist:
            continue
        related = field.related_model
        if not (field.concrete and (field.many_to_one or field.one_to_one)) or not isinstance(
            related, type
        ):
            continue
        rest = _patient_path(related, depth + 1)
        if rest is not None:
            return f"{name}__{rest}"
    return None


def patient_path(model: type[models.Model]) -> str | None:
    label = model._meta.label_lower
    if label not in _PATIENT_PATHS:
        _PATIENT_PATHS[label] = _patient_path(model)
    return _PATIENT_PATHS[label]


class AuditedReadsAdmin(admin.ModelAdmin[Any]):
    """An admin screen of patient data: its list (LIST, one event per row shown, with
    the row's patient) and its object pages (change, history, delete confirmation:
    READ) are audited as the API's reads are."""

    def _audit_rows(self, request: HttpRequest, rows: list[models.Model], view: str) -> None:
        model = self.model
        path = patient_path(model)
        patients: dict[Any, str] = {}
        if path is not None and rows:
            patients = dict(
                model._default_manager.filter(pk__in=[row.pk for row in rows]).values_list(
                    "pk", path
                )
            )
        audit_record_many(
            actor=request.user,
            action=AuditEvent.Action.LIST,
            object_type=model._meta.label_lower,
            items=[(str(row.pk), patients.get(row.pk) or "") for row in rows],
            ip_address=request.META.get("REMOTE_ADDR") or None,
            detail={"view": f"admin {view}", "query": request.GET.urlencode()[:300]},
        )

    def _audit_read(self, request: HttpRequest, object_id: str, view: str) -> None:
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            return
        path = patient_path(self.model)
        patient = ""
        if path is not None:
            patient = (
                self.model._default_manager.filter(pk=obj.pk).values_list(path, flat=True).first()
                or ""
            )
        audit_record(
            actor=request.user,
            action=AuditEvent.Action.READ,
            obj=obj,
            patient_id=str(patient),
            ip_address=request.META.get("REMOTE_ADDR") or None,
            detail={"view": f"admin {view}"},
        )

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        changelist = (getattr(response, "context_data", None) or {}).get("cl")
        if response.status_code == 200 and changelist is not None:
            self._audit_rows(request, list(changelist.result_list), "list")
        return response

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        response = super().change_view(request, object_id, form_url, extra_context)
        if response.status_code == 200:
            self._audit_read(request, object_id, "change")
        return response

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        response = super().history_view(request, object_id, extra_context)
        if response.status_code == 200:
            self._audit_read(request, object_id, "history")
        return response

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        response = super().delete_view(request, object_id, extra_context)
        if response.status_code == 200:
            self._audit_read(request, object_id, "delete")
        return response


@admin.register(AuditEvent)
class AuditEventAdmin(AuditedReadsAdmin):
    """The trail is read-only here as everywhere, and scoped as in the API: the events
    of the admin's reading groups and of their members (site operators: all)."""

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

    def get_queryset(self, request: HttpRequest) -> models.QuerySet[AuditEvent]:
        group_ids, member_ids = reading_group_oversight(user=request.user)
        return audit_event_list_visible(reading_group_ids=group_ids, member_ids=member_ids)

    def _audit_rows(self, request: HttpRequest, rows: list[models.Model], view: str) -> None:
        group_ids, _ = reading_group_oversight(user=request.user)
        one_group = group_ids[0] if group_ids is not None and len(group_ids) == 1 else None
        audit_trail_read_record(
            actor=request.user,
            rows=[row for row in rows if isinstance(row, AuditEvent)],
            ip_address=request.META.get("REMOTE_ADDR") or None,
            reading_group_id=one_group,
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
