"""The Django admin for the network, scoped so a group admin sees only their group."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from network import selectors, services
from network.models import (
    Facility,
    FacilityAETitle,
    FacilityPrivilege,
    Jurisdiction,
    Leave,
    License,
    Radiologist,
    ReadingGroup,
    Region,
    Rota,
    Shift,
    Subspecialty,
)
from network.validators import (
    AGING_MINUTES_MAX,
    AGING_MINUTES_MIN,
    PAUSE_MINUTES_MAX,
    PAUSE_MINUTES_MIN,
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
    set_related_service = staticmethod(services.network_object_set_related)

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

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        # The changelist's bulk delete goes through the service one by one: audited,
        # and a deleted license, privilege or shift withdraws its reader's offers.
        for obj in queryset.order_by("pk"):
            self.delete_model(request, obj)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        # Many-to-many fields (a reader's subspecialties) through the service, not the
        # form's save_m2m: audited, and judged against the reader's offers.
        for field in form.instance._meta.many_to_many:
            if field.name in form.cleaned_data:
                self.set_related_service(
                    instance=form.instance,
                    name=field.name,
                    values=form.cleaned_data[field.name],
                    actor=request_actor(request),
                    ip_address=request.META.get("REMOTE_ADDR"),
                )
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)


# --- Privileges in bulk: intermediate forms of two changelist actions ------------
class _DateInput(forms.DateInput):
    input_type = "date"  # the browser's own picker: no script under the CSP


class PrivilegeGrantForm(forms.Form):
    facility = forms.ModelChoiceField(queryset=Facility.objects.none())
    valid_from = forms.DateField(widget=_DateInput)
    valid_to = forms.DateField(widget=_DateInput)

    def __init__(self, *args: Any, facilities: QuerySet[Facility], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["facility"].queryset = facilities.order_by("name")  # type: ignore[attr-defined]


class PrivilegeCopyForm(forms.Form):
    from_facility = forms.ModelChoiceField(
        queryset=Facility.objects.none(),
        help_text="Readers privileged there today get privileges at the selected facilities.",
    )
    valid_from = forms.DateField(
        widget=_DateInput, required=False, help_text="Empty: each source privilege's start."
    )
    valid_to = forms.DateField(
        widget=_DateInput, required=False, help_text="Empty: each source privilege's end."
    )

    def __init__(self, *args: Any, facilities: QuerySet[Facility], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["from_facility"].queryset = facilities.order_by("name")  # type: ignore[attr-defined]


def _action_page(
    model_admin: admin.ModelAdmin[Any],
    request: HttpRequest,
    *,
    queryset: QuerySet[Any],
    form: forms.Form,
    action: str,
    title: str,
) -> TemplateResponse:
    """The intermediate page of a changelist action: the selected objects and a form
    posted back to the same action with ``apply``."""
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "objects": queryset,
        "form": form,
        "action": action,
        "opts": model_admin.model._meta,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "admin/network/privileges_action.html", context)


def _grant_message(result: services.PrivilegeGrant, where: str) -> str:
    return (
        f"{where}: {len(result.created)} privilege(s) created, {len(result.extended)} "
        f"extended, {len(result.unchanged)} already covered."
    )


class FacilityAETitleInline(admin.TabularInline[FacilityAETitle, Facility]):
    model = FacilityAETitle
    extra = 1


@admin.register(Facility)
class FacilityAdmin(GroupScopedAdmin):
    list_display = [
        "name",
        "reading_group",
        "jurisdiction",
        "region",
        "timezone",
        "is_active",
        "checklist",
    ]
    list_filter = ["is_active", "reading_group", "jurisdiction__country"]
    search_fields = ["name", "ae_titles__ae_title"]
    inlines = [FacilityAETitleInline]
    actions = ["copy_privileges"]

    @admin.display(description="Onboarding")
    def checklist(self, obj: Facility) -> str:
        # The page lives in the onboarding app, named here by its URL (no import).
        return format_html(
            '<a href="{}">checklist</a>', reverse("facility-checklist-page", args=[obj.pk])
        )

    @admin.action(description="Copy privileges from another facility…", permissions=["change"])
    def copy_privileges(
        self, request: HttpRequest, queryset: QuerySet[Facility]
    ) -> TemplateResponse | None:
        """Each selected facility gets the privileges of the readers privileged at the
        chosen facility today (one transaction per selected facility)."""
        form = PrivilegeCopyForm(
            request.POST if "apply" in request.POST else None,
            facilities=selectors.facility_list_administered(user=request.user),
        )
        if form.is_bound and form.is_valid():
            source = form.cleaned_data["from_facility"]
            for target in queryset.order_by("name"):
                try:
                    result = services.privileges_copy(
                        actor=request_actor(request),
                        source=source,
                        target=target,
                        on=timezone.localdate(),
                        valid_from=form.cleaned_data["valid_from"],
                        valid_to=form.cleaned_data["valid_to"],
                        ip_address=request.META.get("REMOTE_ADDR"),
                    )
                except ValidationError as exc:
                    self.message_user(
                        request, f"{target}: {' '.join(exc.messages)}", messages.ERROR
                    )
                    continue
                self.message_user(request, _grant_message(result, f"{target} from {source}"))
            return None
        return _action_page(
            self,
            request,
            queryset=queryset,
            form=form,
            action="copy_privileges",
            title="Copy privileges from another facility",
        )


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
        "paused_until",
    ]
    list_filter = ["is_active", "is_available", "subspecialties", "reading_group"]
    search_fields = ["display_name", "user__username"]
    filter_horizontal = ["subspecialties"]
    # A timed pause is taken and ended through the services (the reader's worklist,
    # the API, the action below), never typed in here.
    readonly_fields = ["paused_until", "pause_reason"]
    actions = ["grant_privileges", "resume"]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        # Availability set by hand replaces a timed pause (as in the API).
        if "is_available" in form.changed_data:
            obj.paused_until = None
            obj.pause_reason = ""
        super().save_model(request, obj, form, change)

    @admin.action(
        description="Resume (end the pause of) the selected readers", permissions=["change"]
    )
    def resume(self, request: HttpRequest, queryset: QuerySet[Radiologist]) -> None:
        for reader in queryset.order_by("pk"):
            services.reader_resume(
                radiologist=reader,
                actor=request_actor(request),
                ip_address=request.META.get("REMOTE_ADDR"),
            )
        self.message_user(request, f"{queryset.count()} reader(s) available.")

    @admin.action(description="Grant privileges at a facility…", permissions=["change"])
    def grant_privileges(
        self, request: HttpRequest, queryset: QuerySet[Radiologist]
    ) -> TemplateResponse | None:
        """The selected readers get active privileges at the chosen facility (one
        transaction; an overlapping privilege is extended, not duplicated)."""
        form = PrivilegeGrantForm(
            request.POST if "apply" in request.POST else None,
            facilities=selectors.facility_list_administered(user=request.user),
        )
        if form.is_bound and form.is_valid():
            facility = form.cleaned_data["facility"]
            try:
                result = services.privileges_grant(
                    actor=request_actor(request),
                    facility=facility,
                    radiologist_ids=list(queryset.values_list("pk", flat=True)),
                    valid_from=form.cleaned_data["valid_from"],
                    valid_to=form.cleaned_data["valid_to"],
                    ip_address=request.META.get("REMOTE_ADDR"),
                )
            except ValidationError as exc:
                self.message_user(request, " ".join(exc.messages), messages.ERROR)
                return None
            self.message_user(request, _grant_message(result, str(facility)))
            return None
        return _action_page(
            self,
            request,
            queryset=queryset,
            form=form,
            action="grant_privileges",
            title="Grant privileges at a facility",
        )


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
        "valid_until_time",
    ]
    list_filter = ["status", "scope", "jurisdiction__country"]
    search_fields = ["number", "radiologist__display_name"]


@admin.register(FacilityPrivilege)
class FacilityPrivilegeAdmin(GroupScopedAdmin):
    group_path = "radiologist__reading_group"
    list_display = [
        "radiologist",
        "facility",
        "status",
        "valid_from",
        "valid_to",
        "valid_until_time",
    ]
    list_filter = ["status", "facility"]


@admin.register(Shift)
class ShiftAdmin(GroupScopedAdmin):
    group_path = "radiologist__reading_group"
    list_display = ["radiologist", "starts_at", "ends_at", "rota"]
    date_hierarchy = "starts_at"
    # Set by rota generation only: a shift added here is a manual one.
    readonly_fields = ["rota"]


class RotaServicesAdmin(GroupScopedAdmin):
    """Rotas and leave: saved and deleted through their services, which regenerate the
    reader's shifts; the changelist's bulk delete goes through them one by one."""

    group_path = "radiologist__reading_group"

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for obj in queryset.order_by("pk"):
            self.delete_model(request, obj)


@admin.register(Rota)
class RotaAdmin(RotaServicesAdmin):
    list_display = ["radiologist", "weekday", "starts_at", "ends_at", "valid_from", "valid_to"]
    list_filter = ["weekday", "radiologist"]
    search_fields = ["radiologist__display_name"]
    # Typed for its own model (the base's are generic over any network object).
    save_service = staticmethod(services.rota_save)  # type: ignore[assignment]
    delete_service = staticmethod(services.rota_delete)  # type: ignore[assignment]


@admin.register(Leave)
class LeaveAdmin(RotaServicesAdmin):
    list_display = ["radiologist", "starts_on", "ends_on", "reason"]
    list_filter = ["radiologist"]
    search_fields = ["radiologist__display_name", "reason"]
    date_hierarchy = "starts_on"
    # Typed for its own model (the base's are generic over any network object).
    save_service = staticmethod(services.leave_save)  # type: ignore[assignment]
    delete_service = staticmethod(services.leave_delete)  # type: ignore[assignment]


class ReadingGroupForm(forms.ModelForm[ReadingGroup]):
    worklist_aging_minutes = forms.IntegerField(
        min_value=AGING_MINUTES_MIN,
        max_value=AGING_MINUTES_MAX,
        initial=60,
        help_text="A waiting study rises one priority level per this many minutes "
        f"({AGING_MINUTES_MIN}-{AGING_MINUTES_MAX}).",
    )
    max_pause_minutes = forms.IntegerField(
        min_value=PAUSE_MINUTES_MIN,
        max_value=PAUSE_MINUTES_MAX,
        initial=120,
        help_text="The longest a reader may pause themselves "
        f"({PAUSE_MINUTES_MIN}-{PAUSE_MINUTES_MAX} minutes).",
    )

    class Meta:
        model = ReadingGroup
        fields = ["name", "worklist_aging_minutes", "max_pause_minutes"]


@admin.register(ReadingGroup)
class ReadingGroupAdmin(admin.ModelAdmin[ReadingGroup]):
    form = ReadingGroupForm
    list_display = ["name", "worklist_aging_minutes", "max_pause_minutes"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ReadingGroup]:
        return selectors.reading_groups_administered(user=request.user)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        # Through the audited service: a new aging step re-keys the group's worklists.
        before = snapshot(ReadingGroup.objects.get(pk=obj.pk)) if change and obj.pk else None
        services.network_object_save(
            actor=request_actor(request),
            instance=obj,
            before=before,
            ip_address=request.META.get("REMOTE_ADDR"),
        )


@admin.register(Jurisdiction)
class JurisdictionAdmin(admin.ModelAdmin[Jurisdiction]):
    list_display = ["code", "name", "country", "timezone"]
    search_fields = ["code", "name"]


@admin.register(Region)
class RegionAdmin(admin.ModelAdmin[Region]):
    list_display = ["code", "name", "country"]


@admin.register(Subspecialty)
class SubspecialtyAdmin(admin.ModelAdmin[Subspecialty]):
    list_display = ["code", "name"]
