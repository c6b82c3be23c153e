"""Review in the admin: the sample rate is edited here (through the audited service);
review cases are read-only (they change through their services)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from audit.admin import AuditedReadsAdmin
from network.models import ReadingGroup
from network.selectors import reading_groups_administered
from review import services
from review.models import PeerReviewPolicy, ReviewCase
from teleradiology.api import request_actor


def _administers_a_group(request: HttpRequest) -> bool:
    return bool(request.user.is_active) and reading_groups_administered(user=request.user).exists()


class _GroupAdminsOnly:
    """Open to the admins of a reading group (guardian grant), scoped to their groups,
    without a model permission to hand out: the grant is what makes a group admin."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return _administers_a_group(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _administers_a_group(request)


@admin.register(PeerReviewPolicy)
class PeerReviewPolicyAdmin(_GroupAdminsOnly, admin.ModelAdmin[PeerReviewPolicy]):
    list_display = ["reading_group", "sample_percent", "updated_at"]
    fields = ["reading_group", "sample_percent"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return _administers_a_group(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _administers_a_group(request)

    def get_queryset(self, request: HttpRequest) -> QuerySet[PeerReviewPolicy]:
        groups = reading_groups_administered(user=request.user)
        return super().get_queryset(request).filter(reading_group__in=groups)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "reading_group":
            kwargs["queryset"] = reading_groups_administered(user=request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["reading_group"] if obj is not None else []

    def save_model(
        self, request: HttpRequest, obj: PeerReviewPolicy, form: Any, change: bool
    ) -> None:
        group = ReadingGroup.objects.get(pk=obj.reading_group_id)
        if not reading_groups_administered(user=request.user).filter(pk=group.pk).exists():
            return  # the form's choices are already scoped; never write another group's
        saved = services.peer_review_policy_set(
            reading_group=group,
            sample_percent=obj.sample_percent,
            actor=request_actor(request),
        )
        obj.pk = saved.pk

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ReviewCase)
class ReviewCaseAdmin(_GroupAdminsOnly, AuditedReadsAdmin):
    list_display = [
        "id",
        "kind",
        "status",
        "facility",
        "reviewed_radiologist",
        "assigned_radiologist",
        "score",
        "opinion",
        "created_at",
    ]
    list_filter = ["kind", "status"]
    readonly_fields = [f.name for f in ReviewCase._meta.fields]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ReviewCase]:
        groups = reading_groups_administered(user=request.user)
        return super().get_queryset(request).filter(facility__reading_group__in=groups)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
