"""The turnaround API: a study's timeline, facility figures (JSON or CSV), and the
operations view with what admins do from it (the readers a study may be reassigned
to, re-route, acknowledge an alert; reassign, triage and a reader's pause have their
own endpoints under studies and radiologists)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import BaseRenderer, BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from alerts.services import alert_acknowledge
from audit.models import AuditEvent
from audit.services import audit_record, audit_record_many
from network.models import Priority
from studies.states import StudyStatus
from teleradiology.api import client_ip, request_actor
from teleradiology.converters import MAX_ID
from teleradiology.errors import Conflict
from turnaround import operations, selectors
from turnaround.services import study_reroute_by_admin

MAX_RANGE_DAYS = 366
DEFAULT_RANGE_DAYS = 30


# --- Timeline ---------------------------------------------------------------
class TimelineEventSerializer(serializers.Serializer[Any]):
    at = serializers.DateTimeField()
    event = serializers.CharField()
    detail = serializers.CharField()


class EscalationSerializer(serializers.Serializer[Any]):
    at = serializers.DateTimeField()
    tier = serializers.IntegerField()
    reason = serializers.CharField()


class AddendumTimeSerializer(serializers.Serializer[Any]):
    number = serializers.IntegerField()
    signed_at = serializers.DateTimeField()


class MeasuresSerializer(serializers.Serializer[Any]):
    received_to_final = serializers.FloatField(allow_null=True, help_text="seconds")
    ready_to_claimed = serializers.FloatField(allow_null=True, help_text="seconds")
    claimed_to_final = serializers.FloatField(allow_null=True, help_text="seconds")


class TimelineSerializer(serializers.Serializer[Any]):
    study = serializers.IntegerField(source="study.pk")
    facility = serializers.IntegerField(source="study.facility_id")
    priority = serializers.ChoiceField(source="study.priority", choices=Priority.choices)
    modality = serializers.CharField(source="study.modality")
    status = serializers.ChoiceField(source="study.status", choices=StudyStatus.choices)
    received_at = serializers.DateTimeField(source="study.received_at")
    ready_at = serializers.DateTimeField(source="study.ready_at", allow_null=True)
    first_offered_at = serializers.DateTimeField(allow_null=True)
    escalations = EscalationSerializer(many=True)
    claimed_at = serializers.DateTimeField(source="study.claimed_at", allow_null=True)
    preliminary_at = serializers.DateTimeField(source="study.preliminary_at", allow_null=True)
    finalized_at = serializers.DateTimeField(source="study.finalized_at", allow_null=True)
    addenda = AddendumTimeSerializer(many=True)
    sla_due_at = serializers.DateTimeField(source="study.sla_due_at")
    within_target = serializers.BooleanField(allow_null=True)
    measures = MeasuresSerializer()
    events = TimelineEventSerializer(many=True)


class StudyTimelineApi(APIView):
    """A study's life in order and its turnaround measures (seconds); the same
    visibility as the study itself, so a study out of reach is a 404."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: TimelineSerializer})
    def get(self, request: Request, study_id: int) -> Response:
        timeline = selectors.study_timeline(user=request.user, study_id=study_id)
        study = timeline.study
        with transaction.atomic():
            audit_record(
                actor=request.user,
                action=AuditEvent.Action.READ,
                obj=study,
                patient_id=study.patient_id,
                ip_address=client_ip(request),
                detail={"view": "timeline"},
            )
        return Response(TimelineSerializer(timeline).data)


# --- Facility figures -------------------------------------------------------
ROW_FIELDS = [
    "key",
    "name",
    "studies",
    "finalized",
    "received_to_final_count",
    "received_to_final_median_seconds",
    "received_to_final_p90_seconds",
    "within_target_met",
    "within_target_due",
    "within_target_share",
    "ready_to_claimed_count",
    "ready_to_claimed_median_seconds",
    "ready_to_claimed_p90_seconds",
    "claimed_to_final_count",
    "claimed_to_final_median_seconds",
    "claimed_to_final_p90_seconds",
]


class TurnaroundQuerySerializer(serializers.Serializer[Any]):
    facility = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    priority = serializers.ChoiceField(
        choices=Priority.choices,
        required=False,
        error_messages={"invalid_choice": "priority must be 1 (STAT), 2 (urgent) or 3 (routine)."},
    )
    group_by = serializers.ChoiceField(
        choices=selectors.GROUP_BY_CHOICES,
        default="priority",
        error_messages={"invalid_choice": "group_by must be priority, modality or day."},
    )

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        # "from" is a Python keyword, so these two cannot be class attributes.
        fields = super().get_fields()
        bad_date = "Use a date as YYYY-MM-DD."
        fields["from"] = serializers.DateField(
            required=False, input_formats=["iso-8601"], error_messages={"invalid": bad_date}
        )
        fields["to"] = serializers.DateField(
            required=False, input_formats=["iso-8601"], error_messages={"invalid": bad_date}
        )
        return fields

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        today = timezone.now().date()
        date_to = attrs.get("to") or today
        date_from = attrs.get("from") or date_to - dt.timedelta(days=DEFAULT_RANGE_DAYS - 1)
        if date_from > date_to:
            raise serializers.ValidationError({"to": "to must be on or after from."})
        if (date_to - date_from).days >= MAX_RANGE_DAYS:
            raise serializers.ValidationError(
                {"to": f"The range may span at most {MAX_RANGE_DAYS} days."}
            )
        return {**attrs, "from": date_from, "to": date_to}


class TurnaroundRowSerializer(serializers.Serializer[Any]):
    key = serializers.CharField(help_text="priority number, modality or day (YYYY-MM-DD)")
    name = serializers.CharField(help_text="readable group name (e.g. STAT)")
    studies = serializers.IntegerField(help_text="received in the range, not cancelled")
    finalized = serializers.IntegerField()
    received_to_final_count = serializers.IntegerField()
    received_to_final_median_seconds = serializers.FloatField(allow_null=True)
    received_to_final_p90_seconds = serializers.FloatField(allow_null=True)
    within_target_met = serializers.IntegerField(help_text="finalised by sla_due_at")
    within_target_due = serializers.IntegerField(help_text="finalised, or open past sla_due_at")
    within_target_share = serializers.FloatField(allow_null=True)
    ready_to_claimed_count = serializers.IntegerField()
    ready_to_claimed_median_seconds = serializers.FloatField(allow_null=True)
    ready_to_claimed_p90_seconds = serializers.FloatField(allow_null=True)
    claimed_to_final_count = serializers.IntegerField()
    claimed_to_final_median_seconds = serializers.FloatField(allow_null=True)
    claimed_to_final_p90_seconds = serializers.FloatField(allow_null=True)


class TurnaroundSerializer(serializers.Serializer[Any]):
    facility = serializers.IntegerField(source="facility.pk", allow_null=True, default=None)
    timezone = serializers.CharField(help_text="days and the date range are in this zone")
    priority = serializers.IntegerField(allow_null=True)
    group_by = serializers.CharField()
    percentile = serializers.CharField(default=selectors.PERCENTILE_DEFINITION)
    groups = TurnaroundRowSerializer(many=True, source="rows")

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        fields = super().get_fields()
        fields["from"] = serializers.DateField(source="date_from")
        fields["to"] = serializers.DateField(source="date_to")
        return fields


def _csv_cell(value: Any) -> Any:
    # Spreadsheet formula injection: modality and other keys come from DICOM headers.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


class TurnaroundCSVRenderer(BaseRenderer):
    """The groups as CSV, one row each (``?format=csv``); errors as one ``error`` cell."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out)
        if isinstance(data, dict) and "groups" in data:
            writer.writerow(ROW_FIELDS)
            for row in data["groups"]:
                writer.writerow([_csv_cell(row[name]) for name in ROW_FIELDS])
        else:
            writer.writerow(["error"])
            writer.writerow([json.dumps(data, default=str)])
        return out.getvalue().encode(self.charset)


class TurnaroundApi(APIView):
    """Turnaround of the caller's facilities per priority, modality or day: count,
    median and 90th percentile of received→final, share within the contracted
    target, ready→claimed and claimed→final.  Percentiles interpolate linearly
    between nearest ranks (as percentile_cont).  ``?format=csv`` exports the groups."""

    permission_classes = [IsAuthenticated]
    renderer_classes = [JSONRenderer, BrowsableAPIRenderer, TurnaroundCSVRenderer]

    @extend_schema(
        parameters=[
            OpenApiParameter("facility", int, required=False),
            OpenApiParameter(
                "from", OpenApiTypes.DATE, required=False, description="default: 30 days ago"
            ),
            OpenApiParameter(
                "to", OpenApiTypes.DATE, required=False, description="inclusive; default today"
            ),
            OpenApiParameter("priority", int, required=False, enum=Priority.values),
            OpenApiParameter(
                "group_by", str, required=False, enum=list(selectors.GROUP_BY_CHOICES)
            ),
        ],
        responses={200: TurnaroundSerializer},
    )
    def get(self, request: Request) -> Response:
        query = TurnaroundQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        summary = selectors.turnaround_summary(
            user=request.user,
            facility_id=params.get("facility"),
            date_from=params["from"],
            date_to=params["to"],
            priority=params.get("priority"),
            group_by=params["group_by"],
            now=timezone.now(),
        )
        response = Response(TurnaroundSerializer(summary).data)
        renderer = getattr(request, "accepted_renderer", None)
        if renderer is not None and renderer.format == "csv":
            name = f"turnaround-{summary.date_from}-{summary.date_to}-{summary.group_by}.csv"
            response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response


# --- Operations (group admins) ----------------------------------------------
class QueueRowSerializer(serializers.Serializer[Any]):
    reading_group = serializers.IntegerField()
    tier = serializers.IntegerField(allow_null=True)
    tier_name = serializers.CharField()
    priority = serializers.IntegerField()
    priority_name = serializers.CharField()
    studies = serializers.IntegerField(help_text="offered, unclaimed")
    overdue = serializers.IntegerField(help_text="of which past their due time")
    next_due_at = serializers.DateTimeField()
    oldest_received_at = serializers.DateTimeField()


class AtRiskSerializer(serializers.Serializer[Any]):
    study = serializers.IntegerField(source="pk")
    accession_number = serializers.CharField()
    facility = serializers.IntegerField(source="facility_id")
    facility_name = serializers.CharField(source="facility.name")
    reading_group = serializers.IntegerField(source="facility.reading_group_id")
    priority = serializers.IntegerField()
    modality = serializers.CharField()
    status = serializers.CharField()
    tier = serializers.IntegerField(allow_null=True)
    received_at = serializers.DateTimeField()
    sla_due_at = serializers.DateTimeField()
    target_used = serializers.FloatField(help_text="elapsed / target; 1.0 = due now")
    overdue = serializers.SerializerMethodField()

    def get_overdue(self, study: Any) -> bool:
        return bool(study.target_used >= 1)


class UnroutableSerializer(serializers.Serializer[Any]):
    study = serializers.IntegerField(source="study_id")
    accession_number = serializers.CharField(source="study.accession_number")
    facility = serializers.IntegerField(source="study.facility_id")
    facility_name = serializers.CharField(source="study.facility.name")
    reading_group = serializers.IntegerField(source="study.facility.reading_group_id")
    priority = serializers.IntegerField(source="study.priority")
    modality = serializers.CharField(source="study.modality")
    tier = serializers.IntegerField()
    unroutable_since = serializers.DateTimeField(source="unroutable_at")
    reason = serializers.CharField(source="unroutable_reason")
    sla_due_at = serializers.DateTimeField(source="study.sla_due_at")


class ReaderLoadSerializer(serializers.Serializer[Any]):
    radiologist = serializers.IntegerField(source="radiologist_id")
    name = serializers.CharField()
    reading_group = serializers.IntegerField(source="reading_group_id")
    on_shift = serializers.BooleanField()
    shift_started_at = serializers.DateTimeField(allow_null=True)
    available = serializers.BooleanField()
    paused_until = serializers.DateTimeField(
        allow_null=True, help_text="when the reader's pause ends by itself"
    )
    pause_reason = serializers.CharField(allow_blank=True)
    workload_cap = serializers.IntegerField()
    open_claims = serializers.IntegerField(
        help_text="studies claimed or preliminary now, and review cases claimed, not answered"
    )
    recent_claims = serializers.IntegerField(help_text="claimed in the work window")
    recent_work = serializers.FloatField(help_text="sum of relative values, work window")
    shift_work = serializers.FloatField(help_text="sum of relative values since shift start")


class FairnessSerializer(serializers.Serializer[Any]):
    reading_group = serializers.IntegerField(source="reading_group_id")
    readers_on_shift = serializers.IntegerField()
    total_work = serializers.FloatField()
    mean_work = serializers.FloatField(allow_null=True)
    max_work = serializers.FloatField(allow_null=True)
    coefficient_of_variation = serializers.FloatField(
        allow_null=True, help_text="population std dev / mean of shift work; 0 = even"
    )
    max_over_mean = serializers.FloatField(allow_null=True)


class GroupSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField(source="pk")
    name = serializers.CharField()


class OpenAlertSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    kind_name = serializers.CharField(source="get_kind_display")
    reading_group = serializers.IntegerField(source="reading_group_id")
    study = serializers.IntegerField(source="study_id", allow_null=True)
    message = serializers.CharField()
    created_at = serializers.DateTimeField()


class OperationsSerializer(serializers.Serializer[Any]):
    generated_at = serializers.DateTimeField()
    groups = GroupSerializer(many=True)
    at_risk_fraction = serializers.FloatField(
        help_text="an unclaimed study is at risk once it used this share of its target"
    )
    work_hours = serializers.FloatField(help_text="the window of recent_claims / recent_work")
    queue = QueueRowSerializer(many=True)
    at_risk_total = serializers.IntegerField()
    at_risk = AtRiskSerializer(many=True)
    unroutable_total = serializers.IntegerField()
    unroutable = UnroutableSerializer(many=True)
    load = ReaderLoadSerializer(many=True)
    fairness = FairnessSerializer(many=True)
    alerts = OpenAlertSerializer(many=True)


class OperationsQuerySerializer(serializers.Serializer[Any]):
    group = serializers.IntegerField(required=False, min_value=1)


class OperationsApi(APIView):
    """The live picture for group admins, over the groups they administer (or
    ``?group=``): the offered queue by tier and priority, studies at risk (unclaimed
    past the first SLA warning fraction), unroutable studies with their reasons,
    each reader's load and the current shift's fairness (coefficient of variation
    of on-shift readers' weighted work since their shift began).  403 for users
    who administer no group."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        parameters=[OpenApiParameter("group", int, required=False)],
        responses={200: OperationsSerializer},
    )
    def get(self, request: Request) -> Response:
        query = OperationsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        snapshot = operations.operations_snapshot(
            user=request.user, group_id=query.validated_data.get("group"), now=timezone.now()
        )
        operations_read_record(request=request, snapshot=snapshot, view="operations")
        return Response(OperationsSerializer(snapshot).data)


def operations_read_record(
    *, request: Any, snapshot: operations.OperationsSnapshot, view: str
) -> None:
    """Audit the studies the operations picture names (at risk, unroutable, alerts):
    one LIST event per study, with its patient, as every list of studies is."""
    studies = {study.pk: study.patient_id for study in snapshot.at_risk}
    studies.update((row.study_id, row.study.patient_id) for row in snapshot.unroutable)
    studies.update(
        (alert.study_id, alert.study.patient_id)
        for alert in snapshot.alerts
        if alert.study_id is not None and alert.study is not None
    )
    audit_record_many(
        actor=request.user,
        action=AuditEvent.Action.LIST,
        object_type="studies.study",
        items=[(str(pk), patient) for pk, patient in studies.items()],
        ip_address=client_ip(request),
        detail={"view": view},
    )


# --- Acting on the operations view ---------------------------------------------
class ReassignChoiceSerializer(serializers.Serializer[Any]):
    radiologist = serializers.IntegerField(source="radiologist_id")
    name = serializers.CharField()
    eligible = serializers.BooleanField(help_text="may be handed the study now")
    why_not = serializers.CharField(help_text="the claim policy's reasons; empty if eligible")
    tier = serializers.CharField(source="tier_name", help_text="for the study's facility")
    open_claims = serializers.IntegerField()
    workload_cap = serializers.IntegerField()


class ReassignChoicesSerializer(serializers.Serializer[Any]):
    study = serializers.IntegerField()
    reassignable = serializers.BooleanField(help_text="on offer or claimed")
    readers = ReassignChoiceSerializer(many=True)


class ReassignChoicesApi(APIView):
    """The readers of the study's group an admin may reassign it to
    (``POST /api/v1/studies/{id}/reassign/``): the eligible first, in routing's order,
    then the others with the reasons the claim policy gives.  Group admins of the
    study's group; 403 for others who see the study, 404 for the rest."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: ReassignChoicesSerializer})
    def get(self, request: Request, study_id: int) -> Response:
        study = operations.study_for_action(user=request.user, study_id=study_id)
        with transaction.atomic():
            audit_record(
                actor=request.user,
                action=AuditEvent.Action.READ,
                obj=study,
                patient_id=study.patient_id,
                ip_address=client_ip(request),
                detail={"view": "operations: reassign choices"},
            )
        body = {
            "study": study.pk,
            "reassignable": study.status in operations.REASSIGNABLE,
            "readers": operations.reassign_choices(study=study, now=timezone.now()),
        }
        return Response(ReassignChoicesSerializer(body).data)


class RerouteResultSerializer(serializers.Serializer[Any]):
    study = serializers.IntegerField()
    status = serializers.ChoiceField(choices=StudyStatus.choices)


class RerouteApi(APIView):
    """Route a waiting study afresh (its open offers withdrawn, its rules applied
    now); audited.  409 when it is no longer waiting for a reader."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=None,
        responses={
            200: RerouteResultSerializer,
            409: OpenApiResponse(description="The study is claimed or final."),
        },
    )
    def post(self, request: Request, study_id: int) -> Response:
        study = operations.study_for_action(user=request.user, study_id=study_id)
        if not study_reroute_by_admin(
            study=study, actor=request_actor(request), ip_address=client_ip(request)
        ):
            raise Conflict("The study is no longer waiting for a reader.", code="not_waiting")
        study.refresh_from_db(fields=["status"])
        return Response(RerouteResultSerializer({"study": study.pk, "status": study.status}).data)


class AlertAcknowledgedSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    acknowledged_at = serializers.DateTimeField()


class AlertAcknowledgeApi(APIView):
    """Acknowledge an alert of a group the caller administers (it leaves the
    operations view); audited.  400 when it was already acknowledged."""

    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses={200: AlertAcknowledgedSerializer})
    def post(self, request: Request, alert_id: int) -> Response:
        alert = operations.alert_for_action(user=request.user, alert_id=alert_id)
        if alert.acknowledged_at is not None:
            raise ValidationError({"detail": "That alert was already acknowledged."})
        alert = alert_acknowledge(
            alert=alert, acknowledged_at=timezone.now(), actor=request_actor(request)
        )
        return Response(AlertAcknowledgedSerializer(alert).data)
