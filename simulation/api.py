"""The rule simulator's API for group admins: drafts of a group's routing rules,
their diff against the live rules, publishing, and replays (runs).

Only admins of a draft's reading group see it: another group's drafts and runs
are 404, creating in a group one does not administer is a 400 (the group is not
among the choices), and users who administer no group at all get 403."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import models
from django.utils import timezone
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from network.models import Facility, ReadingGroup
from network.selectors import is_group_admin, reading_groups_administered
from routing.api import RoutingRuleSerializer
from routing.models import RoutingRule
from simulation import selectors, services
from simulation.models import RoutingDraft, SimulationRun
from simulation.rulesets import RULE_FIELDS, SCALAR_FIELDS, rule_as_dict
from teleradiology.api import client_ip, request_actor
from teleradiology.converters import MAX_ID

MAX_RULES = 200  # far more than any group keeps; bounds the work of one request
MAX_WINDOW_DAYS = 90
# The earliest a window may start: far before any history kept, and far enough
# from the year 1 that arithmetic on the window (the reading rates are read over
# the 90 days before it) stays in range.
EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


class IsGroupAdmin(permissions.BasePermission):
    message = "Only reading group admins use the rule simulator."

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and request.user.is_authenticated) and is_group_admin(
            user=request.user
        )


class DraftRuleSerializer(RoutingRuleSerializer):
    """A rule of a draft, validated as a live rule is (``RoutingRuleSerializer``: the
    patterns, lists, waits, escalation, the facilities scoped to the caller's
    groups), but for two checks made over the whole draft instead
    (``DraftSerializer.validate_rules``): the group's one default rule (the
    serializer's check compares with the live rules, which the draft replaces) and
    the group itself (the draft's)."""

    id = serializers.IntegerField(
        min_value=1,
        max_value=MAX_ID,
        allow_null=True,
        required=False,
        default=None,
        help_text="The live rule this one edits; null for a rule the draft adds.",
    )

    class Meta(RoutingRuleSerializer.Meta):
        fields = list(RULE_FIELDS)
        read_only_fields = []

    def get_validators(self) -> list[Any]:
        return []


@extend_schema_field(DraftRuleSerializer(many=True))
class DraftRulesField(serializers.ListField):
    """The draft's rules: written and read as a list of rules (``DraftRule``),
    validated one by one by ``DraftSerializer.validate_rules``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(child=serializers.DictField(), max_length=MAX_RULES, **kwargs)


class DraftSerializer(serializers.ModelSerializer[RoutingDraft]):
    rules = DraftRulesField(
        help_text="The whole rule set (replaced as a whole); each rule as the "
        "routing-rules API takes it, without reading_group, id naming the live rule."
    )
    rules_changed_since = serializers.SerializerMethodField(
        help_text="The group's live rules changed since the draft was copied or last "
        "published: publishing needs force."
    )

    class Meta:
        model = RoutingDraft
        fields = [
            "id",
            "reading_group",
            "name",
            "rules",
            "based_on_version",
            "rules_changed_since",
            "created_by",
            "created_at",
            "updated_at",
            "published_at",
            "published_by",
        ]
        read_only_fields = [
            "reading_group",
            "based_on_version",
            "created_by",
            "created_at",
            "updated_at",
            "published_at",
            "published_by",
        ]

    def get_rules_changed_since(self, draft: RoutingDraft) -> bool:
        return draft.reading_group.rules_version != draft.based_on_version

    def validate_rules(self, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each rule as a live rule, then the draft as a whole; the errors keyed by
        the rule's index and field.  Returns the rules in their stored form."""
        draft = self.instance
        if draft is None:  # rules are only written to an existing draft
            raise serializers.ValidationError("Create the draft first.")
        errors: dict[str, Any] = {}
        normalized: list[dict[str, Any]] = []
        for index, rule in enumerate(rules):
            data = DraftRuleSerializer(data=rule, context=self.context)
            if not data.is_valid():
                errors[str(index)] = data.errors
                continue
            normalized.append(_stored(data.validated_data))
        if errors:
            raise serializers.ValidationError(errors)
        problems = _draft_problems(draft.reading_group_id, normalized)
        if problems:
            raise serializers.ValidationError(problems)
        return normalized


def _stored(values: dict[str, Any]) -> dict[str, Any]:
    """A validated rule in the draft representation (``simulation.rulesets``), its
    unset fields at the model's defaults as a live rule created from it would be."""
    scalars = {k: v for k, v in values.items() if k in SCALAR_FIELDS}
    rule = rule_as_dict(
        RoutingRule(**scalars),
        facilities=[f.pk for f in values.get("facilities", [])],
        subspecialties=[s.code for s in values["subspecialties"]],
    )
    rule["id"] = values.get("id")
    return rule


def _draft_problems(group_id: int, rules: list[dict[str, Any]]) -> dict[str, dict[str, list[str]]]:
    """What is wrong with the draft as a whole: a second default rule, an id that is
    no live rule of the group or is used twice, a facility of another group."""
    live = set(RoutingRule.objects.filter(reading_group_id=group_id).values_list("pk", flat=True))
    group_facilities = set(
        Facility.objects.filter(reading_group_id=group_id).values_list("pk", flat=True)
    )
    problems: dict[str, dict[str, list[str]]] = {}
    default_at: int | None = None
    seen: dict[int, int] = {}
    for index, rule in enumerate(rules):
        here: dict[str, list[str]] = {}
        if rule["is_default"]:
            if default_at is not None:
                here["is_default"] = [
                    f"A group has one default rule: rule {default_at} is already the default."
                ]
            else:
                default_at = index
        rule_id = rule["id"]
        if rule_id is not None:
            if rule_id not in live:
                here["id"] = [f"{rule_id} is not a live rule of this group (null: a new rule)."]
            elif rule_id in seen:
                here["id"] = [f"Rule {seen[rule_id]} already edits live rule {rule_id}."]
            else:
                seen[rule_id] = index
        foreign = [f for f in rule["facilities"] if f not in group_facilities]
        if foreign:
            here["facilities"] = [
                f"Not facilities of this draft's reading group: {', '.join(map(str, foreign))}."
            ]
        if here:
            problems[str(index)] = here
    return problems


class DraftCreateSerializer(serializers.Serializer[Any]):
    reading_group = serializers.PrimaryKeyRelatedField(
        queryset=ReadingGroup.objects.none(),
        help_text="A reading group you administer.",
    )
    name = serializers.CharField(max_length=200)
    copy_of = serializers.PrimaryKeyRelatedField(
        queryset=RoutingDraft.objects.none(),
        required=False,
        allow_null=True,
        help_text="A draft of the same group to copy; left out: a copy of the live rules.",
    )

    def get_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = super().get_fields()
        request = self.context.get("request")
        if request is not None:  # the choices: what the caller administers
            fields["reading_group"].queryset = reading_groups_administered(user=request.user)
            fields["copy_of"].queryset = selectors.drafts_visible(user=request.user)
        return fields

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        source = attrs.get("copy_of")
        if source is not None and source.reading_group_id != attrs["reading_group"].pk:
            raise serializers.ValidationError({"copy_of": ["A draft of another reading group."]})
        if RoutingDraft.objects.filter(
            reading_group=attrs["reading_group"], name=attrs["name"]
        ).exists():
            raise serializers.ValidationError({"name": ["The group has a draft of this name."]})
        return attrs


class DiffEntrySerializer(serializers.Serializer[Any]):
    """One change publishing makes (``simulation.selectors.rules_diff``)."""

    change = serializers.ChoiceField(choices=["added", "changed", "removed"])
    id = serializers.IntegerField(
        allow_null=True,
        help_text="The live rule (a rule added: null before publishing, its new id after).",
    )
    name = serializers.CharField()
    after = DraftRuleSerializer(required=False, help_text="The rule added.")
    before = DraftRuleSerializer(required=False, help_text="The rule removed.")


# Declared apart: a class attribute named "fields" would shadow the serializer's own.
DiffEntrySerializer._declared_fields["fields"] = serializers.DictField(
    child=inline_serializer(
        name="DiffFieldChange",
        fields={"before": serializers.JSONField(), "after": serializers.JSONField()},
    ),
    required=False,
    help_text="A rule changed: each changed field's value before and after.",
)


class PublishSerializer(serializers.Serializer[Any]):
    force = serializers.BooleanField(
        default=False,
        help_text="Publish even though the live rules changed since the draft was copied.",
    )


class PublishResultSerializer(serializers.Serializer[Any]):
    diff = DiffEntrySerializer(many=True)
    rules_version = serializers.IntegerField()


class PublishConflictSerializer(serializers.Serializer[Any]):
    detail = serializers.CharField()
    code = serializers.CharField(help_text="rules_changed")
    diff = DiffEntrySerializer(many=True, required=False)


DRAFT_404 = OpenApiResponse(description="No such draft among your reading groups' drafts.")
NOT_ADMIN_403 = OpenApiResponse(description="You administer no reading group.")


@extend_schema_view(
    list=extend_schema(
        summary="Drafts of your reading groups' routing rules",
        responses={200: DraftSerializer(many=True), 403: NOT_ADMIN_403},
    ),
    retrieve=extend_schema(responses={200: DraftSerializer, 403: NOT_ADMIN_403, 404: DRAFT_404}),
    update=extend_schema(
        summary="Rename a draft and replace its rules",
        responses={
            200: DraftSerializer,
            400: OpenApiResponse(description="A rule is invalid: errors by index and field."),
            403: NOT_ADMIN_403,
            404: DRAFT_404,
        },
    ),
    partial_update=extend_schema(
        summary="Rename a draft and/or replace its rules",
        responses={
            200: DraftSerializer,
            400: OpenApiResponse(description="A rule is invalid: errors by index and field."),
            403: NOT_ADMIN_403,
            404: DRAFT_404,
        },
    ),
    destroy=extend_schema(
        summary="Delete a draft and its runs (the live rules are untouched)",
        responses={204: None, 403: NOT_ADMIN_403, 404: DRAFT_404},
    ),
)
class DraftViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet[RoutingDraft],
):
    """Drafts of the routing rules of the reading groups you administer; every
    change audited."""

    permission_classes = [IsGroupAdmin]
    serializer_class = DraftSerializer
    filterset_fields = ["reading_group"]
    ordering_fields = ["updated_at", "name"]

    def get_queryset(self) -> models.QuerySet[RoutingDraft]:
        return (
            selectors.drafts_visible(user=self.request.user)
            .select_related("reading_group")
            .order_by("reading_group", "-updated_at", "id")
        )

    @extend_schema(
        summary="Copy the live rules (or another draft) into a new draft",
        request=DraftCreateSerializer,
        responses={
            201: DraftSerializer,
            400: OpenApiResponse(
                description="Not a group you administer, a name taken, or a bad copy_of."
            ),
            403: NOT_ADMIN_403,
        },
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = DraftCreateSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        draft = services.draft_create(
            actor=request_actor(request),
            reading_group=data.validated_data["reading_group"],
            name=data.validated_data["name"],
            source=data.validated_data.get("copy_of"),
            ip_address=client_ip(request),
        )
        return Response(
            DraftSerializer(draft, context={"request": request}).data,
            status=status.HTTP_201_CREATED,
        )

    def perform_update(self, serializer: serializers.BaseSerializer[RoutingDraft]) -> None:
        draft = serializer.instance
        if draft is None:  # an update always has its object
            raise NotFound("No such draft.")
        serializer.instance = services.draft_save(
            actor=request_actor(self.request),
            draft=draft,
            name=serializer.validated_data.get("name"),
            rules=serializer.validated_data.get("rules"),
            ip_address=client_ip(self.request),
        )

    def perform_destroy(self, instance: RoutingDraft) -> None:
        services.draft_delete(
            actor=request_actor(self.request), draft=instance, ip_address=client_ip(self.request)
        )

    @extend_schema(
        summary="What publishing the draft would change in the live rules now",
        responses={200: DiffEntrySerializer(many=True), 403: NOT_ADMIN_403, 404: DRAFT_404},
    )
    @action(detail=True, methods=["get"], pagination_class=None, filter_backends=[])
    def diff(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(selectors.draft_diff(self.get_object()))

    @extend_schema(
        summary="Replace the group's live rules with the draft's",
        description="One transaction: rules the draft adds are created, rules it drops "
        "deleted, rules it edits updated (each audited), and one audit event records "
        "the publish with the whole diff.  The next study routed uses the published "
        "rules.  If the live rules changed since the draft was copied (or last "
        "published), the answer is 409 `rules_changed` with the diff, unless `force`.",
        request=PublishSerializer,
        responses={
            200: PublishResultSerializer,
            400: OpenApiResponse(
                description="The draft names facilities or subspecialties that are gone."
            ),
            403: NOT_ADMIN_403,
            404: DRAFT_404,
            409: PublishConflictSerializer,
        },
    )
    @action(detail=True, methods=["post"], pagination_class=None, filter_backends=[])
    def publish(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        draft = self.get_object()
        data = PublishSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            diff = services.draft_publish(
                actor=request_actor(request),
                draft=draft,
                force=data.validated_data["force"],
                ip_address=client_ip(request),
            )
        except services.DraftConflict as conflict:
            return Response(
                {"detail": conflict.message, "code": "rules_changed", "diff": conflict.diff},
                status=status.HTTP_409_CONFLICT,
            )
        return Response({"diff": diff, "rules_version": draft.based_on_version})


class RunSerializer(serializers.ModelSerializer[SimulationRun]):
    progress = serializers.SerializerMethodField(
        help_text="Share of the window's studies replayed so far (0 to 1)."
    )
    result = serializers.JSONField(
        read_only=True, help_text="The comparison once done (docs/simulation.md); {} before."
    )

    class Meta:
        model = SimulationRun
        fields = [
            "id",
            "draft",
            "reading_group",
            "window_start",
            "window_end",
            "status",
            "studies_total",
            "studies_done",
            "progress",
            "result",
            "error",
            "requested_by",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_progress(self, run: SimulationRun) -> float:
        if run.status == SimulationRun.Status.DONE:
            return 1.0
        if not run.studies_total:
            return 0.0
        return min(1.0, run.studies_done / run.studies_total)


class RunCreateSerializer(serializers.Serializer[Any]):
    draft = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    days = serializers.IntegerField(
        min_value=1,
        max_value=MAX_WINDOW_DAYS,
        required=False,
        help_text="Replay the last this many days (up to now); or give window_start "
        "and window_end.",
    )
    window_start = serializers.DateTimeField(required=False)
    window_end = serializers.DateTimeField(
        required=False, help_text="Not in the future; at most 90 days after window_start."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        now = timezone.now()
        start, end = attrs.get("window_start"), attrs.get("window_end")
        if "days" in attrs:
            if start is not None or end is not None:
                raise serializers.ValidationError("Give days, or window_start and window_end.")
            attrs["window_end"] = now
            attrs["window_start"] = now - dt.timedelta(days=attrs["days"])
            return attrs
        if start is None or end is None:
            raise serializers.ValidationError(
                "Give days (1-90), or both window_start and window_end."
            )
        if end > now:
            raise serializers.ValidationError({"window_end": ["Not in the future."]})
        if end <= start:
            raise serializers.ValidationError({"window_end": ["After window_start."]})
        if start < EARLIEST:
            raise serializers.ValidationError(
                {"window_start": [f"Not before {EARLIEST.date().isoformat()}."]}
            )
        if end - start > dt.timedelta(days=MAX_WINDOW_DAYS):
            raise serializers.ValidationError(
                {"window_start": [f"A window of at most {MAX_WINDOW_DAYS} days."]}
            )
        return attrs


RUN_404 = OpenApiResponse(description="No such run among your reading groups' runs.")


@extend_schema_view(
    list=extend_schema(
        summary="Replays of your reading groups' drafts, newest first",
        responses={200: RunSerializer(many=True), 403: NOT_ADMIN_403},
    ),
    retrieve=extend_schema(
        summary="A replay: its status, progress and, once done, its result",
        responses={200: RunSerializer, 403: NOT_ADMIN_403, 404: RUN_404},
    ),
)
class RunViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[SimulationRun]
):
    """Replays of past windows against a draft and, beside it, the live rules."""

    permission_classes = [IsGroupAdmin]
    serializer_class = RunSerializer
    filterset_fields = ["draft", "status"]
    ordering_fields = ["created_at"]

    def get_queryset(self) -> models.QuerySet[SimulationRun]:
        return selectors.runs_visible(user=self.request.user).order_by("-created_at", "-id")

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        runs = list(page if page is not None else queryset)
        # A done run's result names studies (by accession number): an audited read.
        services.runs_read_record(
            user=request.user, runs=runs, ip_address=client_ip(request), view="simulation runs"
        )
        data = self.get_serializer(runs, many=True).data
        return self.get_paginated_response(data) if page is not None else Response(data)

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        run = self.get_object()
        services.runs_read_record(
            user=request.user, runs=[run], ip_address=client_ip(request), view="simulation run"
        )
        return Response(self.get_serializer(run).data)

    @extend_schema(
        summary="Replay a past window against a draft (queued)",
        request=RunCreateSerializer,
        responses={
            202: RunSerializer,
            400: OpenApiResponse(description="A bad window."),
            403: NOT_ADMIN_403,
            404: DRAFT_404,
        },
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = RunCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        draft = (
            selectors.drafts_visible(user=request.user)
            .filter(pk=data.validated_data["draft"])
            .first()
        )
        if draft is None:
            raise NotFound("No such draft.")
        run = services.run_request(
            actor=request_actor(request),
            draft=draft,
            window_start=data.validated_data["window_start"],
            window_end=data.validated_data["window_end"],
            ip_address=client_ip(request),
        )
        run.refresh_from_db()  # an eager task (tests, tools) may have run it already
        return Response(
            RunSerializer(run, context={"request": request}).data,
            status=status.HTTP_202_ACCEPTED,
        )
