"""Routing configuration for group admins, and why a study went where it went."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from access.selectors import study_get_visible, study_is_administered_by
from audit.models import AuditEvent
from audit.services import audit_record
from network.api import NetworkViewSet
from network.models import Priority, Subspecialty
from network.selectors import reading_groups_administered
from network.serializers import ScopedRelatedFieldsMixin
from routing import selectors, services
from routing.eligibility import escalation_problems
from routing.models import RoutingDecision, RoutingRule, default_escalate_fractions
from routing.rules import pattern_problem
from teleradiology.api import client_ip, request_actor
from teleradiology.converters import query_id

WEEK = 7 * 24 * 3600  # seconds
WAIT_FIELDS = ("wait_stat_seconds", "wait_urgent_seconds", "wait_routine_seconds")


def _upper_words(value: list[Any], *, limit: int) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise serializers.ValidationError("A list of non-empty strings.")
    if any(len(v) > limit for v in value):
        raise serializers.ValidationError(f"Each value is at most {limit} characters.")
    return sorted({v.strip().upper() for v in value})


class RoutingRuleSerializer(ScopedRelatedFieldsMixin, serializers.ModelSerializer[RoutingRule]):
    subspecialties = serializers.SlugRelatedField(
        slug_field="code", many=True, queryset=Subspecialty.objects.all(), allow_empty=False
    )
    # At most a week: longer means never, and past 2**31 the column refuses it (a 500).
    # The waits are the longest a study waits at one tier; the SLA decides the rest
    # (routing.eligibility.escalation_wait).
    wait_stat_seconds = serializers.IntegerField(min_value=1, max_value=WEEK, default=180)
    wait_urgent_seconds = serializers.IntegerField(min_value=1, max_value=WEEK, default=3600)
    wait_routine_seconds = serializers.IntegerField(min_value=1, max_value=WEEK, default=21600)
    min_tier_wait_seconds = serializers.IntegerField(min_value=1, max_value=WEEK, default=60)
    escalate_fractions = serializers.ListField(
        child=serializers.FloatField(),
        min_length=2,
        max_length=2,
        default=default_escalate_fractions,
        help_text="Fractions of the turnaround target at which to widen to the regional "
        "and the global tier: two increasing numbers between 0 and 1.",
    )
    accept_timeout_seconds = serializers.IntegerField(min_value=1, max_value=WEEK, default=120)
    relative_value = serializers.DecimalField(
        max_digits=6, decimal_places=2, min_value=Decimal("0.01"), default=Decimal(1)
    )

    class Meta:
        model = RoutingRule
        fields = [
            "id",
            "reading_group",
            "name",
            "position",
            "is_active",
            "is_default",
            "facilities",
            "modalities",
            "body_parts",
            "description_pattern",
            "procedure_code_pattern",
            "priorities",
            "flags",
            "subspecialties",
            "allow_general",
            "allow_preliminary",
            "bypass_cap_for_stat",
            "relative_value",
            "delivery",
            "accept_timeout_seconds",
            "next_case_only",
            "escalate_fractions",
            "widest_tier",
            "min_tier_wait_seconds",
            "wait_stat_seconds",
            "wait_urgent_seconds",
            "wait_routine_seconds",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]

    def get_fields(self) -> dict[str, Any]:
        return self.scope_related_fields(super().get_fields())

    def _pattern(self, value: str) -> str:
        # Checked with the engine that matches it (RE2, linear time): what it
        # refuses, such as backreferences and lookaround, is refused here.
        problem = pattern_problem(value)
        if problem is not None:
            raise serializers.ValidationError(problem)
        return value

    def validate_description_pattern(self, value: str) -> str:
        return self._pattern(value)

    def validate_procedure_code_pattern(self, value: str) -> str:
        return self._pattern(value)

    def validate_modalities(self, value: list[Any]) -> list[str]:
        return _upper_words(value, limit=16)

    def validate_body_parts(self, value: list[Any]) -> list[str]:
        return _upper_words(value, limit=64)

    def validate_flags(self, value: list[Any]) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise serializers.ValidationError("A list of non-empty strings.")
        return sorted(set(value))

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # A partial update is judged with the rule's other settings as they stand.
        def current(name: str) -> Any:
            if name in attrs:
                return attrs[name]
            if self.instance is not None:
                return getattr(self.instance, name)
            return self.fields[name].get_default()

        problems = escalation_problems(
            fractions=current("escalate_fractions"),
            floor_seconds=current("min_tier_wait_seconds"),
            caps={name: current(name) for name in WAIT_FIELDS},
        )
        if problems:
            raise serializers.ValidationError(problems)
        return attrs

    def validate_priorities(self, value: list[Any]) -> list[int]:
        if not isinstance(value, list) or not all(v in Priority.values for v in value):
            raise serializers.ValidationError(
                f"A list of priorities from {sorted(Priority.values)} (1 = STAT)."
            )
        return sorted(set(value))


class RoutingRuleViewSet(NetworkViewSet):
    """Ordered routing rules of the reading groups the caller administers; changes audited."""

    serializer_class = RoutingRuleSerializer
    save_service = staticmethod(services.routing_config_save)
    delete_service = staticmethod(services.routing_config_delete)
    set_related_service = staticmethod(services.routing_config_set_related)
    filterset_fields = ["reading_group", "is_active", "is_default", "delivery"]
    ordering_fields = ["position"]

    def get_queryset(self) -> QuerySet[RoutingRule]:
        return (
            RoutingRule.objects.filter(
                reading_group__in=reading_groups_administered(user=self.request.user)
            )
            .prefetch_related("facilities", "subspecialties")
            .order_by("reading_group", "is_default", "position", "id")
        )


class RoutingDecisionSerializer(serializers.ModelSerializer[RoutingDecision]):
    class Meta:
        model = RoutingDecision
        fields = [
            "id",
            "created_at",
            "rule",
            "rule_name",
            "tier",
            "outcome",
            "reason",
            "offered_to",
            "verdicts",
        ]


class StudyRoutingApi(APIView):
    """Why a study went where it went: every decision with each candidate's verdict;
    ``?radiologist=ID`` adds the verdict for any reader, computed now."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        parameters=[OpenApiParameter("radiologist", int, required=False)],
        responses={200: dict},
    )
    def get(self, request: Request, study_id: int) -> Response:
        study = study_get_visible(user=request.user, study_id=study_id)
        if not study_is_administered_by(user=request.user, study=study):
            raise NotFound("No such study.")
        routing = selectors.study_routing(study=study)
        body: dict[str, Any] = {
            "study": study.pk,
            "status": study.status,
            "tier": routing.tier if routing else None,
            "rule": routing.rule_id if routing else None,
            "next_escalation_at": routing.next_escalation_at if routing else None,
            "unroutable_reason": routing.unroutable_reason if routing else "",
            "decisions": RoutingDecisionSerializer(
                selectors.decisions_for_study(study=study), many=True
            ).data,
        }
        reader = request.query_params.get("radiologist")
        if reader:
            reader_id = query_id(reader, field="radiologist", message="A radiologist id.")
            verdict = selectors.why_not(study=study, radiologist_id=reader_id)
            if verdict is None:
                raise NotFound("No such radiologist in this study's reading group.")
            body["radiologist_verdict"] = verdict.as_dict()
        with transaction.atomic():
            audit_record(
                actor=request.user,
                action=AuditEvent.Action.READ,
                obj=study,
                patient_id=study.patient_id,
                ip_address=client_ip(request),
                detail={"view": "routing", "query": request.GET.urlencode()[:300]},
            )
        return Response(body)


class TriageSerializer(serializers.Serializer[Any]):
    priority = serializers.ChoiceField(choices=Priority.choices, required=False)
    flags = serializers.ListField(
        child=serializers.CharField(max_length=50), required=False, max_length=20
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:
            raise serializers.ValidationError("Give a priority, flags, or both.")
        return attrs


class StudyTriageApi(APIView):
    """Change a study's priority or triage flags (group admins); it is re-routed if waiting."""

    permission_classes = [IsAuthenticated]

    @extend_schema(request=TriageSerializer, responses={200: dict})
    def post(self, request: Request, study_id: int) -> Response:
        study = study_get_visible(user=request.user, study_id=study_id)
        if not study_is_administered_by(user=request.user, study=study):
            raise NotFound("No such study.")
        data = TriageSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        updated = services.study_change_triage(
            study_id=study.pk,
            actor=request_actor(request),
            priority=data.validated_data.get("priority"),
            flags=data.validated_data.get("flags"),
            ip_address=client_ip(request),
        )
        return Response(
            {
                "id": updated.pk,
                "priority": updated.priority,
                "flags": updated.flags,
                "sla_due_at": updated.sla_due_at,
            }
        )
