"""The Django admin for the network, scoped so a group admin sees only their group."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.models import User
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest

from network import selectors, services
from network.models import (
    Facility,
    FacilityAETitle,
    FacilityPrivilege,
    Jurisdiction,
    License,
    Radiologist,
    ReadingGroup,
    Region,
    Shift,
    Subspecialty,
)
from teleradiology.api import request_actor
from teleradiology.audited import snapshot


def related_only_filters(model: type[models.Model], filters: Any) -> list[Any]:
    """The admin's list filters, with each one on a related object offering only the
    objects the (scoped) list refers to: Django's plain filter lists every row of the
    related table, other reading groups' names included."""
    result: list[Any] = []
    for entry in filters:
        if isinstance(entry, str) and "__" not in entry:
            field = model._meta.get_field(entry)
            if field.is_relation:
                entry = (entry, admin.RelatedOnlyFieldListFilter)
        result.append(entry)
    return result


class GroupScopedAdmin(admin.ModelAdmin[Any]):
    """Shows and edits only the objects of the reading groups the user administers;
    saves and deletes go through the audited services."""

    group_path = "reading_group"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        qs = super().get_queryset(request)
        if request.user.is_superuser:
            return qs
        groups = selectors.reading_groups_administered(user=request.user)
        return qs.filter(**{f"{self.group_path}__in": groups})

    def scoped_choices(self, request: HttpRequest) -> dict[str, QuerySet[Any]]:
        """What each related field may point at: the objects of the admin's groups (and,
        for a reader's account, users with no role elsewhere or already this group's
        readers); subclasses add their own."""
        groups = selectors.reading_groups_administered(user=request.user)
        readers = Radiologist.objects.filter(reading_group__in=groups)
        return {
            "reading_group": groups,
            "facility": Facility.objects.filter(reading_group__in=groups),
            "facilities": Facility.objects.filter(reading_group__in=groups),
            "radiologist": readers,
            "radiologists": readers,
            "user": selectors.users_enrolable(user=request.user)
            | User.objects.filter(pk__in=readers.values("user_id")),
        }

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if not request.user.is_superuser:
            scoped = self.scoped_choices(request)
            if db_field.name in scoped:
                kwargs["queryset"] = scoped[db_field.name]
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if not request.user.is_superuser:
            scoped = self.scoped_choices(request)
            if db_field.name in scoped:
                kwargs["queryset"] = scoped[db_field.name]
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def get_list_filter(self, request: HttpRequest) -> Any:
        return related_only_filters(self.model, super().get_list_filter(request))

    # The services of the app that owns the model (one owner per table).
    save_service = staticmethod(services.network_object_save)
    delete_service = staticmethod(services.network_object_delete)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        before = None
        if change and obj.pk:
            before = snapshot(type(obj).objects.get(pk=obj.pk))
        self.save_service(
            actor=request_actor(request),
            instance=obj,
            before=before,
            ip_address=request.META.get("REMOTE_ADDR"),
        )

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        self.delete_service(actor=request_actor(request), instance=obj)


class FacilityAETitleInline(admin.TabularInline[FacilityAETitle, Facility]):
    model = FacilityAETitle
    extra = 1


@admin.register(Facility)
class FacilityAdmin(GroupScopedAdmin):
    list_display = ["name", "reading_group", "jurisdiction", "region", "timezone", "is_active"]
    list_filter = ["is_active", "reading_group", "jurisdiction__country"]
    search_fields = ["name", "ae_titles__ae_title"]
    inlines = [FacilityAETitleInline]


@admin.register(Radiologist)
class RadiologistAdmin(GroupScopedAdmin):
    list_display = [
        "display_name",
        "reading_group",
        "home_region",
        "timezone",
        "workload_cap",
        "is_active",
        "is_available",
    ]
    list_filter = ["is_active", "is_available", "subspecialties", "reading_group"]
    search_fields = ["display_name", "user__username"]
    filter_horizontal = ["subspecialties"]


@admin.register(License)
class LicenseAdmin(GroupScopedAdmin):
    group_path = "radiologist__reading_group"
    list_display = [
        "radiologist",
        "jurisdiction",
        "number",
        "scope",
        "status",
        "valid_from",
        "valid_to",
    ]
    list_filter = ["status", "scope", "jurisdiction__country"]
    search_fields = ["number", "radiologist__display_name"]


@admin.register(FacilityPrivilege)
class FacilityPrivilegeAdmin(GroupScopedAdmin):
    group_path = "radiologist__reading_group"
    list_display = ["radiologist", "facility", "status", "valid_from", "valid_to"]
    list_filter = ["status", "facility"]


@admin.register(Shift)
class ShiftAdmin(GroupScopedAdmin):
    group_path = "radiologist__reading_group"
    list_display = ["radiologist", "starts_at", "ends_at"]
    date_hierarchy = "starts_at"


@admin.register(ReadingGroup)
class ReadingGroupAdmin(admin.ModelAdmin[ReadingGroup]):
    list_display = ["name"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ReadingGroup]:
        return selectors.reading_groups_administered(user=request.user)


@admin.register(Jurisdiction)
class JurisdictionAdmin(admin.ModelAdmin[Jurisdiction]):
    list_display = ["code", "name", "country"]
    search_fields = ["code", "name"]


@admin.register(Region)
class RegionAdmin(admin.ModelAdmin[Region]):
    list_display = ["code", "name", "country"]


@admin.register(Subspecialty)
class SubspecialtyAdmin(admin.ModelAdmin[Subspecialty]):
    list_display = ["code", "name"]
