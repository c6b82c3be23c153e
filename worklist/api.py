"""The radiologist's worklist and claims; group admins reassign."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import django_filters
from django.core.exceptions import ObjectDoesNotExist
from django.db.models import F, IntegerField, Q, QuerySet, Value
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import APIException, NotFound, PermissionDenied
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from access.selectors import study_get_visible, study_is_administered_by
from audit.models import AuditEvent
from audit.services import audit_record_many
from network.models import Priority, Radiologist
from network.selectors import radiologist_for_user
from routing.selectors import rules_requiring
from studies.models import Study
from teleradiology.api import client_ip, request_actor
from teleradiology.errors import DomainError, NotPermitted
from worklist import selectors
from worklist.pagination import WorklistKeysetPagination
from worklist.services import claims as services


class IsRadiologist(BasePermission):
    message = "Only radiologists have a worklist."

    def has_permission(self, request: Request, view: Any) -> bool:
        return radiologist_for_user(user=request.user) is not None


def _reader(request: Request) -> Radiologist:
    reader = radiologist_for_user(user=request.user)
    if reader is None:
        raise NotPermitted("Only radiologists claim studies.", code="not_a_reader")
    return reader


@contextmanager
def _unseen_is_not_found(request: Request, study_id: int) -> Iterator[None]:
    """Act on a study the reader was offered or holds; if the action is refused, a
    study the user may not see is a 404 instead (its existence does not leak).

    The visibility query (the user's grants and offers) runs only on a refusal:
    claiming, accepting, declining and releasing succeed only on an open offer to
    the reader or a claim of theirs, either of which makes the study visible to
    them (``study_visibility_filter``), so a success needs no separate check.
    """
    try:
        yield
    except (DomainError, APIException, ObjectDoesNotExist):
        study_get_visible(user=request.user, study_id=study_id)  # raises 404 if unseen
        raise


class WorklistRowSerializer(serializers.ModelSerializer[Study]):
    facility_name = serializers.CharField(source="facility.name")
    priority_label = serializers.CharField(source="get_priority_display")
    tier = serializers.IntegerField(source="offer_tier", allow_null=True)
    relative_value = serializers.DecimalField(max_digits=6, decimal_places=2, allow_null=True)
    rule_name = serializers.CharField(allow_null=True)
    seconds_to_due = serializers.SerializerMethodField()
    reason_for_exam = serializers.CharField(
        source="order.reason_for_exam",
        allow_null=True,
        read_only=True,
        help_text="The order's reason for exam; null until an order is received.",
    )
    patient_class = serializers.CharField(
        source="order.patient_class",
        allow_null=True,
        read_only=True,
        help_text="The order's patient class (E emergency, I inpatient, O outpatient, ...).",
    )
    next_case_only = serializers.BooleanField(
        read_only=True,
        default=False,
        help_text='Taken with "next case" only: a claim of it by id answers 409 next_case_only.',
    )

    class Meta:
        model = Study
        fields = [
            "id",
            "accession_number",
            "facility",
            "facility_name",
            "patient_id",
            "patient_name",
            "patient_sex",
            "patient_birth_date",
            "modality",
            "body_part",
            "study_description",
            "priority",
            "priority_label",
            "status",
            "refused_instance_count",
            "received_at",
            "sla_due_at",
            "seconds_to_due",
            "tier",
            "relative_value",
            "rule_name",
            "reason_for_exam",
            "patient_class",
            "next_case_only",
        ]

    def get_seconds_to_due(self, study: Study) -> int:
        return int((study.sla_due_at - timezone.now()).total_seconds())


WORKLIST_ROW_COLUMNS = (
    "id",
    "accession_number",
    "facility__name",
    "patient_id",
    "patient_name",
    "patient_sex",
    "patient_birth_date",
    "modality",
    "body_part",
    "study_description",
    "priority",
    "status",
    "received_at",
    "sla_due_at",
    "refused_instance_count",
    "order__reason_for_exam",
    "order__patient_class",
)


class WorklistFilter(django_filters.FilterSet):
    # Filters on the offer's copies and on plain columns: no extra joins that would
    # multiply rows (no DISTINCT) or hide the worklist index from the planner.
    priority = django_filters.MultipleChoiceFilter(
        field_name="wl_priority", choices=Priority.choices, distinct=False
    )
    facility = django_filters.NumberFilter(field_name="wl_facility")
    modality = django_filters.CharFilter(method="filter_modality")
    tier = django_filters.NumberFilter(field_name="offer_tier")
    subspecialty = django_filters.CharFilter(method="filter_subspecialty")

    class Meta:
        model = Study
        fields = ["priority", "modality"]

    def filter_modality(self, queryset: QuerySet[Study], name: str, value: str) -> QuerySet[Study]:
        return queryset.filter(modality=value.strip().upper())  # DICOM modalities are upper case

    def filter_subspecialty(
        self, queryset: QuerySet[Study], name: str, value: str
    ) -> QuerySet[Study]:
        # wl_rule: the offer's rule, annotated by worklist.selectors.worklist_for_reader.
        return queryset.filter(Q(wl_rule__in=rules_requiring(subspecialty_code=value)))


class WorklistApi(generics.ListAPIView[Study]):
    """Studies offered to me, most urgent first; each row's patient identifiers are audited."""

    permission_classes = [IsAuthenticated, IsRadiologist]
    serializer_class = WorklistRowSerializer
    filterset_class = WorklistFilter
    pagination_class = WorklistKeysetPagination
    ordering_fields: list[str] = []

    def get_queryset(self) -> QuerySet[Study]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Study.objects.none()
        # Only the columns the rows show: a page of whole study rows is most of
        # what the database sends.
        return selectors.worklist_for_reader(radiologist=_reader(self.request)).only(
            *WORKLIST_ROW_COLUMNS
        )

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().list(request, *args, **kwargs)
        rows = response.data["results"] if isinstance(response.data, dict) else response.data
        audit_record_many(
            actor=request.user,
            action=AuditEvent.Action.LIST,
            object_type="studies.study",
            items=[(str(r["id"]), r["patient_id"]) for r in rows],
            ip_address=client_ip(request),
            detail={"view": "worklist"},
        )
        return response


class MyCaseRowSerializer(WorklistRowSerializer):
    """A worklist row under its own name: my cases are paged by number, the worklist by
    cursor, and the schema's two paginated envelopes must not share a name."""

    late_images_at = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        help_text="When I was last told that new images arrived for it since I claimed "
        "it (null: none did).",
    )

    class Meta(WorklistRowSerializer.Meta):
        fields = [*WorklistRowSerializer.Meta.fields, "late_images_at"]


class MyCasesApi(generics.ListAPIView[Study]):
    """The studies I have claimed and not finalised; each row's patient is audited."""

    permission_classes = [IsAuthenticated, IsRadiologist]
    serializer_class = MyCaseRowSerializer

    def get_queryset(self) -> QuerySet[Study]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Study.objects.none()
        return selectors.cases_for_reader(radiologist=_reader(self.request)).annotate(
            offer_tier=Value(None, output_field=IntegerField()),
            relative_value=F("routing__relative_value"),
            rule_name=F("routing__rule__name"),
        )

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().list(request, *args, **kwargs)
        rows = response.data["results"] if isinstance(response.data, dict) else response.data
        audit_record_many(
            actor=request.user,
            action=AuditEvent.Action.LIST,
            object_type="studies.study",
            items=[(str(r["id"]), r["patient_id"]) for r in rows],
            ip_address=client_ip(request),
            detail={"view": "my cases"},
        )
        return response


class AssignmentSerializer(serializers.ModelSerializer[Study]):
    class Meta:
        model = Study
        fields = ["id", "status", "assigned_radiologist", "claimed_at", "sla_due_at"]


class RefusalSerializer(serializers.Serializer[Any]):
    """A refusal: the reason to show, and its code (teleradiology.api)."""

    detail = serializers.CharField()
    code = serializers.CharField()


CLAIM_REFUSALS = {
    403: OpenApiResponse(
        RefusalSerializer,
        description="Not on my worklist (not_offered), or I may not read it now: "
        "not_eligible or at_cap, with the reasons.",
    ),
    404: OpenApiResponse(description="No such study, or not one I may see."),
    409: OpenApiResponse(
        RefusalSerializer,
        description="Claimed by another reader first (already_claimed), or its routing "
        'rule hands it out with "next case" only (next_case_only): use POST '
        "/api/v1/worklist/next/.",
    ),
}


class ClaimApi(APIView):
    """Claim a study on my worklist: 200 for exactly one caller, 409 for the others,
    and 409 for every claim by id of a study its rule hands out by "next case" only."""

    permission_classes = [IsAuthenticated]
    throttle_scope = "claim"  # claim storms: API_THROTTLE_CLAIM

    @extend_schema(request=None, responses={200: AssignmentSerializer, **CLAIM_REFUSALS})
    def post(self, request: Request, study_id: int) -> Response:
        reader = _reader(request)
        with _unseen_is_not_found(request, study_id):  # 404 if not offered to me
            study = services.study_claim(
                study_id=study_id,
                radiologist=reader,
                actor=request_actor(request),
                ip_address=client_ip(request),
            )
        return Response(AssignmentSerializer(study).data)


class NextCaseApi(APIView):
    """Claim the top of my worklist in one step."""

    permission_classes = [IsAuthenticated]
    throttle_scope = "claim"  # claim storms: API_THROTTLE_CLAIM

    @extend_schema(request=None, responses=AssignmentSerializer)
    def post(self, request: Request) -> Response:
        study = services.study_claim_next(
            radiologist=_reader(request),
            actor=request_actor(request),
            ip_address=client_ip(request),
        )
        if study is None:
            raise NotFound("Nothing on your worklist to claim.")
        return Response(AssignmentSerializer(study).data)


class ReleaseSerializer(serializers.Serializer[Any]):
    reason = serializers.CharField(max_length=300)


class ReleaseApi(APIView):
    """Give my claimed study back to the worklist, with a reason."""

    permission_classes = [IsAuthenticated]
    throttle_scope = "claim"  # claim storms: API_THROTTLE_CLAIM

    @extend_schema(request=ReleaseSerializer, responses=AssignmentSerializer)
    def post(self, request: Request, study_id: int) -> Response:
        reader = _reader(request)
        with _unseen_is_not_found(request, study_id):
            body = ReleaseSerializer(data=request.data)
            body.is_valid(raise_exception=True)
            study = services.study_release(
                study_id=study_id,
                radiologist=reader,
                reason=body.validated_data["reason"],
                actor=request_actor(request),
                ip_address=client_ip(request),
            )
        return Response(AssignmentSerializer(study).data)


class ReassignSerializer(serializers.Serializer[Any]):
    radiologist = serializers.IntegerField()


class ReassignApi(APIView):
    """Group admins hand a study to a named eligible radiologist."""

    permission_classes = [IsAuthenticated]

    @extend_schema(request=ReassignSerializer, responses=AssignmentSerializer)
    def post(self, request: Request, study_id: int) -> Response:
        study = study_get_visible(user=request.user, study_id=study_id)
        if not study_is_administered_by(user=request.user, study=study):
            raise PermissionDenied("Only the group's admins reassign studies.")
        body = ReassignSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        # Only the study's own group's readers: another group's id answers as a missing
        # one, so the field is no oracle of who reads elsewhere.
        target = Radiologist.objects.filter(
            pk=body.validated_data["radiologist"],
            reading_group_id=study.facility.reading_group_id,
        ).first()
        if target is None:
            return Response(
                {"radiologist": ["No such radiologist."]}, status=status.HTTP_400_BAD_REQUEST
            )
        updated = services.study_reassign(
            study_id=study.pk,
            to=target,
            actor=request_actor(request),
            ip_address=client_ip(request),
        )
        return Response(AssignmentSerializer(updated).data)


class AcceptApi(APIView):
    """Accept a study auto-assigned to me (the same as claiming it)."""

    permission_classes = [IsAuthenticated]
    throttle_scope = "claim"  # claim storms: API_THROTTLE_CLAIM

    @extend_schema(request=None, responses={200: AssignmentSerializer, **CLAIM_REFUSALS})
    def post(self, request: Request, study_id: int) -> Response:
        return ClaimApi().post(request, study_id)


class DeclineApi(APIView):
    """Decline a study auto-assigned to me: it goes to the next candidate at once."""

    permission_classes = [IsAuthenticated]
    throttle_scope = "claim"  # claim storms: API_THROTTLE_CLAIM

    @extend_schema(request=ReleaseSerializer, responses={204: None})
    def post(self, request: Request, study_id: int) -> Response:
        reader = _reader(request)
        with _unseen_is_not_found(request, study_id):
            body = ReleaseSerializer(data=request.data)
            body.is_valid(raise_exception=True)
            services.study_decline(
                study_id=study_id,
                radiologist=reader,
                reason=body.validated_data["reason"],
                actor=request_actor(request),
            )
        return Response(status=status.HTTP_204_NO_CONTENT)
