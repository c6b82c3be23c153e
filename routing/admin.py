from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from access.selectors import study_visibility_filter
from network.admin import GroupScopedAdmin
from routing import services
from routing.models import FacilityTierPool, ReaderPool, RoutingDecision, RoutingRule
from studies.models import Study


class RoutingConfigAdmin(GroupScopedAdmin):
    """Group-scoped like the network's admin pages, written by routing's services."""

    save_service = staticmethod(services.routing_config_save)
    delete_service = staticmethod(services.routing_config_delete)


@admin.register(RoutingRule)
class RoutingRuleAdmin(RoutingConfigAdmin):
    list_display = [
        "name",
        "reading_group",
        "position",
        "is_active",
        "is_default",
        "delivery",
        "relative_value",
    ]
    list_filter = ["reading_group", "is_active", "delivery"]
    list_editable = ["position", "is_active"]
    filter_horizontal = ["facilities", "subspecialties"]


@admin.register(ReaderPool)
class ReaderPoolAdmin(RoutingConfigAdmin):
    list_display = ["name", "reading_group"]
    filter_horizontal = ["radiologists"]


@admin.register(FacilityTierPool)
class FacilityTierPoolAdmin(RoutingConfigAdmin):
    group_path = "facility__reading_group"
    list_display = ["facility", "tier", "pool"]


@admin.register(RoutingDecision)
class RoutingDecisionAdmin(admin.ModelAdmin[RoutingDecision]):
    """Read-only record of every routing step and each candidate's verdict."""

    list_display = ["created_at", "study", "rule_name", "tier", "outcome", "reason"]
    list_filter = ["outcome", "tier"]
    readonly_fields = [
        "study",
        "rule",
        "rule_name",
        "tier",
        "outcome",
        "reason",
        "offered_to",
        "verdicts",
        "created_at",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[RoutingDecision]:
        qs = super().get_queryset(request)
        reach = study_visibility_filter(user=request.user)
        return qs if reach is None else qs.filter(study__in=Study.objects.filter(reach))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
