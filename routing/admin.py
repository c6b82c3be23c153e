from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from access.selectors import study_visibility_filter
from audit.admin import AuditedReadsAdmin
from network.admin import GroupScopedAdmin
from routing import services
from routing.eligibility import escalation_problems
from routing.models import FacilityTierPool, ReaderPool, RoutingDecision, RoutingRule
from routing.rules import pattern_problem
from studies.models import Study

# The longest waits at a tier, per priority (the floor may not exceed any).
WAIT_FIELDS = ("wait_stat_seconds", "wait_urgent_seconds", "wait_routine_seconds")


class RoutingConfigAdmin(GroupScopedAdmin):
    """Group-scoped like the network's admin pages, written by routing's services."""

    save_service = staticmethod(services.routing_config_save)
    delete_service = staticmethod(services.routing_config_delete)
    set_related_service = staticmethod(services.routing_config_set_related)

    def scoped_choices(self, request: HttpRequest) -> dict[str, QuerySet[Any]]:
        choices = super().scoped_choices(request)
        choices["pool"] = ReaderPool.objects.filter(reading_group__in=choices["reading_group"])
        return choices


class RoutingRuleForm(forms.ModelForm[RoutingRule]):
    """The admin's rule form refuses the patterns the API refuses (see routing.rules)."""

    class Meta:
        model = RoutingRule
        fields = ["description_pattern", "procedure_code_pattern"]  # the admin adds the rest

    def _pattern(self, name: str) -> str:
        value = str(self.cleaned_data.get(name) or "")
        problem = pattern_problem(value)
        if problem is not None:
            raise forms.ValidationError(problem)
        return value

    def clean_description_pattern(self) -> str:
        return self._pattern("description_pattern")

    def clean_procedure_code_pattern(self) -> str:
        return self._pattern("procedure_code_pattern")

    def clean(self) -> dict[str, Any]:
        # The escalation settings, as the API judges them (each problem on its field).
        cleaned = super().clean() or {}
        fields = ("escalate_fractions", "min_tier_wait_seconds", *WAIT_FIELDS)
        if all(cleaned.get(name) is not None for name in fields):
            problems = escalation_problems(
                fractions=cleaned["escalate_fractions"],
                floor_seconds=cleaned["min_tier_wait_seconds"],
                caps={name: cleaned[name] for name in WAIT_FIELDS},
            )
            for name, problem in problems.items():
                self.add_error(name, problem)
        return cleaned


@admin.register(RoutingRule)
class RoutingRuleAdmin(RoutingConfigAdmin):
    form = RoutingRuleForm
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
class RoutingDecisionAdmin(AuditedReadsAdmin):
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
