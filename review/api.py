"""The review API: second opinions and peer reviews.

- ``/api/v1/reports/{id}/second-opinions/``: facility staff of the study's facility or
  the group's admins ask (POST) and read the answers (GET);
- ``/api/v1/reports/{id}/peer-reviews/``: group admins send a report to peer review;
- ``/api/v1/second-opinions/``, ``/api/v1/peer-reviews/``: a reader's review list
  (``?role=offered`` or ``claimed``), claim, answer / score;
- ``/api/v1/peer-reviews/summary/``: per-radiologist RADPEER figures, group admins only;
- ``/api/v1/peer-review-policies/``: the sample rate per reading group (group admins).

Reads go through review.selectors (404 outside one's reach) and are audited row by row,
as the worklist is; writes go through review.services.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import models, transaction
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.models import AuditEvent
from audit.services import audit_record, audit_record_many
from network.models import Radiologist, ReadingGroup, Subspecialty
from network.selectors import (
    facilities_staffed,
    radiologist_for_user,
    reading_groups_administered,
)
from reporting.models import Report
from reporting.selectors import report_get_visible
from review import selectors, services
from review.models import Opinion, PeerReviewPolicy, ReviewCase, ReviewKind, ReviewStatus
from teleradiology.api import client_ip, request_actor
from teleradiology.converters import query_id


def _reader(request: Request) -> Radiologist:
    reader = radiologist_for_user(user=request.user)
    if reader is None:
        raise PermissionDenied("Only radiologists take review cases.")
    return reader


# --- Serializers ------------------------------------------------------------------
class ReviewStudySerializer(serializers.Serializer[Any]):
    """The study under review, with the patient identifiers the worklist shows."""

    id = serializers.IntegerField()
    accession_number = serializers.CharField()
    facility = serializers.IntegerField(source="facility_id")
    facility_name = serializers.CharField(source="facility.name")
    patient_id = serializers.CharField()
    patient_name = serializers.CharField()
    patient_sex = serializers.CharField()
    patient_birth_date = serializers.DateField(allow_null=True)
    modality = serializers.CharField()
    body_part = serializers.CharField()
    study_description = serializers.CharField()
    priority = serializers.IntegerField()


class ReviewAddendumSerializer(serializers.Serializer[Any]):
    number = serializers.IntegerField()
    text = serializers.CharField()
    signed_at = serializers.DateTimeField()


class ReviewedReportSerializer(serializers.Serializer[Any]):
    """The final report under review: what it says, not who signed it."""

    id = serializers.IntegerField()
    template_code = serializers.CharField(source="template.code")
    template_version = serializers.IntegerField(source="template.version")
    values = serializers.JSONField()
    impression = serializers.CharField()
    critical_severity = serializers.CharField()
    signed_at = serializers.DateTimeField()
    addenda = ReviewAddendumSerializer(many=True, source="addenda.all")


class ReviewCaseSerializer(serializers.ModelSerializer[ReviewCase]):
    """A review case.  Its reader never sees whose report it is (a blind review); the
    answer and the report's text are shown to whoever may see the case once it is
    claimed, but not to readers it is merely offered to."""

    study = ReviewStudySerializer(source="report.study")
    required_subspecialty: serializers.SlugRelatedField[Subspecialty] = (
        serializers.SlugRelatedField(slug_field="code", read_only=True)
    )
    assigned_radiologist_name = serializers.CharField(
        source="assigned_radiologist.display_name", allow_null=True, default=None
    )
    reviewed_radiologist = serializers.SerializerMethodField()
    reviewed_radiologist_name = serializers.SerializerMethodField()
    report_content = serializers.SerializerMethodField()

    class Meta:
        model = ReviewCase
        fields = [
            "id",
            "kind",
            "status",
            "report",
            "study",
            "required_subspecialty",
            "question",
            "created_at",
            "routed_at",
            "unroutable_reason",
            "assigned_radiologist",
            "assigned_radiologist_name",
            "claimed_at",
            "answered_at",
            "opinion",
            "score",
            "clinically_significant",
            "comments",
            "cancelled_at",
            "cancel_reason",
            "reviewed_radiologist",
            "reviewed_radiologist_name",
            "report_content",
        ]
        read_only_fields = fields

    def _requester_side(self, review: ReviewCase) -> bool:
        """The caller asked for it or oversees it (admins; staff for second opinions)."""
        admin_groups: set[int] = self.context.get("admin_groups", set())
        staffed: set[int] = self.context.get("staffed", set())
        if self.context.get("superuser") or review.facility.reading_group_id in admin_groups:
            return True
        return review.kind == ReviewKind.SECOND_OPINION and review.facility_id in staffed

    def get_reviewed_radiologist(self, review: ReviewCase) -> int | None:
        return review.reviewed_radiologist_id if self._requester_side(review) else None

    def get_reviewed_radiologist_name(self, review: ReviewCase) -> str | None:
        if not self._requester_side(review):
            return None
        return review.reviewed_radiologist.display_name

    @extend_schema_field(ReviewedReportSerializer(allow_null=True))
    def get_report_content(self, review: ReviewCase) -> dict[str, Any] | None:
        reader_id = self.context.get("reader_id")
        if review.assigned_radiologist_id == reader_id and reader_id is not None:
            return dict(ReviewedReportSerializer(review.report).data)
        if self._requester_side(review):
            return dict(ReviewedReportSerializer(review.report).data)
        return None


def _context(request: Request) -> dict[str, Any]:
    user = request.user
    reader = radiologist_for_user(user=user)
    return {
        "request": request,
        "superuser": bool(getattr(user, "is_superuser", False)),
        "admin_groups": set(reading_groups_administered(user=user).values_list("pk", flat=True)),
        "staffed": set(facilities_staffed(user=user).values_list("pk", flat=True)),
        "reader_id": reader.pk if reader is not None else None,
    }


def _audit_rows(request: Request, rows: list[ReviewCase], view: str) -> None:
    audit_record_many(
        actor=request.user,
        action=AuditEvent.Action.LIST,
        object_type="review.reviewcase",
        items=[(str(r.pk), r.report.study.patient_id) for r in rows],
        ip_address=client_ip(request),
        detail={"view": view},
    )


def _audit_read(request: Request, review: ReviewCase) -> None:
    with transaction.atomic():
        audit_record(
            actor=request.user,
            action=AuditEvent.Action.READ,
            obj=review,
            patient_id=review.report.study.patient_id,
            ip_address=client_ip(request),
        )


def _respond(request: Request, review: ReviewCase, code: int = status.HTTP_200_OK) -> Response:
    return Response(ReviewCaseSerializer(review, context=_context(request)).data, status=code)


class SecondOpinionRequestSerializer(serializers.Serializer[Any]):
    subspecialty = serializers.CharField(
        required=False,
        allow_blank=True,
        allow_null=True,
        max_length=30,
        help_text="Code of the subspecialty the second reader must hold (e.g. 'neuro').",
    )
    question = serializers.CharField(
        required=False, allow_blank=True, max_length=services.QUESTION_MAX
    )


class SecondOpinionAnswerSerializer(serializers.Serializer[Any]):
    opinion = serializers.ChoiceField(choices=Opinion.choices)
    comments = serializers.CharField(
        required=False, allow_blank=True, max_length=services.COMMENTS_MAX
    )


class PeerReviewScoreSerializer(serializers.Serializer[Any]):
    score = serializers.IntegerField(help_text="RADPEER score: 1 concur; 2, 3, 4 discrepancies.")
    clinically_significant = serializers.BooleanField(
        required=False, allow_null=True, default=None, help_text="Required for scores 2-4."
    )
    comments = serializers.CharField(
        required=False, allow_blank=True, max_length=services.COMMENTS_MAX
    )


class ReviewReleaseSerializer(serializers.Serializer[Any]):
    """Why a case is released (by its claimer) or cancelled (by the requester side)."""

    reason = serializers.CharField(max_length=300)


class PeerReviewSummaryRowSerializer(serializers.Serializer[Any]):
    radiologist = serializers.IntegerField()
    radiologist_name = serializers.CharField()
    reading_group = serializers.IntegerField()
    reviewed = serializers.IntegerField(help_text="Answered peer reviews of their reports.")
    scores = serializers.DictField(child=serializers.IntegerField(), help_text="'1'..'4'.")
    clinically_significant = serializers.IntegerField()
    open = serializers.IntegerField(help_text="Peer reviews not yet answered.")


class PeerReviewPolicySerializer(serializers.Serializer[Any]):
    reading_group = serializers.IntegerField(read_only=True)
    reading_group_name = serializers.CharField(read_only=True)
    sample_percent = serializers.DecimalField(
        max_digits=5, decimal_places=2, min_value=0, max_value=100
    )


# --- Review lists and actions ----------------------------------------------------------
ROLES = ("offered", "claimed")


class _ReviewCaseViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[ReviewCase]
):
    kind: str = ""
    cancel_refusal = ""
    serializer_class = ReviewCaseSerializer
    permission_classes = [IsAuthenticated]
    filter_backends: list[Any] = []

    def get_serializer_context(self) -> dict[str, Any]:
        if getattr(self, "swagger_fake_view", False):
            return dict(super().get_serializer_context())
        return {**super().get_serializer_context(), **_context(self.request)}

    def get_queryset(self) -> models.QuerySet[ReviewCase]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return ReviewCase.objects.none()
        user = self.request.user
        qs: models.QuerySet[ReviewCase]
        role = self.request.query_params.get("role", "") if self.action == "list" else ""
        if role:
            if role not in ROLES:
                raise ValidationError({"role": [f"One of: {', '.join(ROLES)}."]})
            qs = (
                selectors.reviews_offered_to(radiologist=_reader(self.request), kind=self.kind)
                if role == "offered"
                else selectors.reviews_claimed_by(radiologist=_reader(self.request), kind=self.kind)
            )
        else:
            qs = selectors.review_list_visible(user=user, kind=self.kind).order_by(
                "-created_at", "-id"
            )
        wanted = self.request.query_params.get("status", "") if self.action == "list" else ""
        if wanted:
            if wanted not in ReviewStatus.values:
                raise ValidationError({"status": [f"One of: {', '.join(ReviewStatus.values)}."]})
            qs = qs.filter(status=wanted)
        return qs.prefetch_related("report__template", "report__addenda")

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "role", str, enum=list(ROLES), description="offered to me, or claimed by me"
            ),
            OpenApiParameter("status", str, enum=list(ReviewStatus.values)),
        ]
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        queryset = self.get_queryset()
        page = self.paginate_queryset(queryset)
        rows = list(page if page is not None else queryset)
        _audit_rows(request, rows, view=f"{self.kind} list")
        data = self.get_serializer(rows, many=True).data
        return self.get_paginated_response(data) if page is not None else Response(data)

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        review = self._visible()
        _audit_read(request, review)
        return _respond(request, review)

    def _visible(self) -> ReviewCase:
        pk = str(self.kwargs["pk"])
        if not pk.isdigit():
            raise ValidationError({"id": ["A review case id."]})
        return selectors.review_get_visible(
            user=self.request.user, kind=self.kind, review_id=int(pk)
        )

    @extend_schema(request=None, responses=ReviewCaseSerializer)
    @action(detail=True, methods=["post"])
    def claim(self, request: Request, pk: str | None = None, **kwargs: Any) -> Response:
        """Claim a case on my review list: 200 for exactly one caller, 409 for the others."""
        review = self._visible()
        claimed = services.review_claim(
            review_id=review.pk,
            radiologist=_reader(request),
            actor=request_actor(request),
            ip_address=client_ip(request),
        )
        return _respond(
            request,
            selectors.review_get_visible(user=request.user, kind=self.kind, review_id=claimed.pk),
        )

    @extend_schema(request=ReviewReleaseSerializer, responses=ReviewCaseSerializer)
    @action(detail=True, methods=["post"])
    def release(self, request: Request, pk: str | None = None, **kwargs: Any) -> Response:
        """Give a case I claimed back, with a reason: it is offered afresh."""
        review = self._visible()
        body = ReviewReleaseSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        released = services.review_release(
            review_id=review.pk,
            radiologist=_reader(request),
            reason=body.validated_data["reason"],
            actor=request_actor(request),
            ip_address=client_ip(request),
        )
        return _respond(request, released)

    @extend_schema(request=ReviewReleaseSerializer, responses=ReviewCaseSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None, **kwargs: Any) -> Response:
        """Withdraw a case not yet answered, with a reason (the requester side only)."""
        review = self._visible()
        if not selectors.may_cancel_review(user=request.user, review=review):
            raise PermissionDenied(self.cancel_refusal)
        body = ReviewReleaseSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.review_cancel(
            review_id=review.pk,
            kind=self.kind,
            reason=body.validated_data["reason"],
            actor=request_actor(request),
            ip_address=client_ip(request),
        )
        return _respond(
            request,
            selectors.review_get_visible(user=request.user, kind=self.kind, review_id=review.pk),
        )


class SecondOpinionViewSet(_ReviewCaseViewSet):
    """Second opinions I may see: offered to or claimed by me (reader), asked by my
    facility (staff), or of my groups (admin)."""

    kind = ReviewKind.SECOND_OPINION
    cancel_refusal = "Only the facility's staff or the reading group's admins cancel it."

    @extend_schema(request=SecondOpinionAnswerSerializer, responses=ReviewCaseSerializer)
    @action(detail=True, methods=["post"])
    def answer(self, request: Request, pk: str | None = None, **kwargs: Any) -> Response:
        """Answer a second opinion I claimed: agree, minor or major discrepancy, with comments."""
        review = self._visible()
        body = SecondOpinionAnswerSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        answered = services.second_opinion_answer(
            review_id=review.pk,
            radiologist=_reader(request),
            opinion=body.validated_data["opinion"],
            comments=body.validated_data.get("comments", ""),
            actor=request_actor(request),
            ip_address=client_ip(request),
        )
        return _respond(request, self._refetch(answered.pk))

    def _refetch(self, pk: int) -> ReviewCase:
        return selectors.review_get_visible(user=self.request.user, kind=self.kind, review_id=pk)


class PeerReviewViewSet(_ReviewCaseViewSet):
    """Peer reviews I may see: offered to or claimed by me (reader), or of my groups
    (admin).  Facility staff never see peer reviews."""

    kind = ReviewKind.PEER_REVIEW
    cancel_refusal = "Only the reading group's admins cancel a peer review."

    @extend_schema(request=PeerReviewScoreSerializer, responses=ReviewCaseSerializer)
    @action(detail=True, methods=["post"])
    def score(self, request: Request, pk: str | None = None, **kwargs: Any) -> Response:
        """Score a peer review I claimed (RADPEER 1-4, clinically significant for 2-4)."""
        review = self._visible()
        body = PeerReviewScoreSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        scored = services.peer_review_score(
            review_id=review.pk,
            radiologist=_reader(request),
            score=body.validated_data["score"],
            clinically_significant=body.validated_data.get("clinically_significant"),
            comments=body.validated_data.get("comments", ""),
            actor=request_actor(request),
            ip_address=client_ip(request),
        )
        return _respond(
            request,
            selectors.review_get_visible(user=request.user, kind=self.kind, review_id=scored.pk),
        )

    @extend_schema(
        parameters=[
            OpenApiParameter("reading_group", int),
            OpenApiParameter("from", str, description="answered on or after (YYYY-MM-DD)"),
            OpenApiParameter("to", str, description="answered before (YYYY-MM-DD)"),
        ],
        responses=PeerReviewSummaryRowSerializer(many=True),
    )
    @action(detail=False, methods=["get"], pagination_class=None)  # one row per reader
    def summary(self, request: Request, **kwargs: Any) -> Response:
        """Per-radiologist RADPEER figures of my reading groups (group admins only)."""
        groups = reading_groups_administered(user=request.user)
        if not groups.exists():
            raise PermissionDenied("Peer review figures are for the reading group's admins only.")
        group_param = request.query_params.get("reading_group", "")
        if group_param:
            group_id = query_id(group_param, field="reading_group", message="A reading group id.")
            groups = groups.filter(pk=group_id)
            if not groups.exists():
                raise PermissionDenied("You do not administer that reading group.")
        bounds: dict[str, dt.datetime | None] = {}
        # A form field, not parse_date: "2026-13-45" has the shape of a date and is
        # none (parse_date raises ValueError on it); the field answers 400 naming it.
        date_field = serializers.DateField(input_formats=["%Y-%m-%d"])
        for name in ("from", "to"):
            raw = request.query_params.get(name, "")
            try:
                day = date_field.run_validation(raw) if raw else None
            except ValidationError as exc:
                raise ValidationError({name: ["A date as YYYY-MM-DD."]}) from exc
            bounds[name] = (
                dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC) if day is not None else None
            )
        group_ids = list(groups.values_list("pk", flat=True))
        rows = selectors.peer_review_summary(
            reading_group_ids=group_ids,
            answered_from=bounds["from"],
            answered_to=bounds["to"],
        )
        with transaction.atomic():
            audit_record(
                actor=request.user,
                action=AuditEvent.Action.READ,
                object_type="review.peer_review_summary",
                ip_address=client_ip(request),
                # One group's figures name it; several groups' stay with their admins
                # through the actor (audit.selectors shows a member's events).
                reading_group_id=group_ids[0] if len(group_ids) == 1 else None,
                detail={"reading_groups": group_ids, "query": request.GET.urlencode()[:300]},
            )
        return Response(PeerReviewSummaryRowSerializer(rows, many=True).data)


# --- On a report -------------------------------------------------------------------
def _report(request: Request, report_id: int) -> Report:
    """The report if the caller may read it (404 otherwise), with its study's facility."""
    report = report_get_visible(user=request.user, report_id=report_id)
    return Report.objects.select_related("study__facility").get(pk=report.pk)


class ReportSecondOpinionsApi(APIView):
    """Second opinions on a final report: facility staff of its facility and the group's
    admins ask for one (POST) and read the answers (GET)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses=ReviewCaseSerializer(many=True))
    def get(self, request: Request, report_id: int) -> Response:
        report = _report(request, report_id)
        rows = list(
            selectors.review_list_visible(user=request.user, kind=ReviewKind.SECOND_OPINION)
            .filter(report=report)
            .prefetch_related("report__template", "report__addenda")
            .order_by("-created_at", "-id")
        )
        _audit_rows(request, rows, view="report second opinions")
        return Response(ReviewCaseSerializer(rows, many=True, context=_context(request)).data)

    @extend_schema(request=SecondOpinionRequestSerializer, responses={201: ReviewCaseSerializer})
    def post(self, request: Request, report_id: int) -> Response:
        report = _report(request, report_id)
        if not selectors.may_request_second_opinion(user=request.user, report=report):
            raise PermissionDenied(
                "Only the facility's staff or the reading group's admins ask for a second opinion."
            )
        body = SecondOpinionRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        review = services.second_opinion_request(
            report_id=report.pk,
            actor=request_actor(request),
            subspecialty_code=body.validated_data.get("subspecialty") or None,
            question=body.validated_data.get("question", ""),
            ip_address=client_ip(request),
        )
        review = selectors.review_get_visible(
            user=request.user, kind=ReviewKind.SECOND_OPINION, review_id=review.pk
        )
        return _respond(request, review, status.HTTP_201_CREATED)


class ReportPeerReviewsApi(APIView):
    """A final report's peer review: its group's admins read it (GET) or send the report
    to peer review outside the random sample (POST).  Nobody else sees it."""

    permission_classes = [IsAuthenticated]

    def _admin_report(self, request: Request, report_id: int) -> Report:
        report = _report(request, report_id)
        if not selectors.administers_group_of(
            user=request.user, reading_group_id=report.study.facility.reading_group_id
        ):
            raise PermissionDenied("Peer reviews are for the reading group's admins only.")
        return report

    @extend_schema(responses=ReviewCaseSerializer(many=True))
    def get(self, request: Request, report_id: int) -> Response:
        report = self._admin_report(request, report_id)
        rows = list(
            selectors.review_list_visible(user=request.user, kind=ReviewKind.PEER_REVIEW)
            .filter(report=report)
            .prefetch_related("report__template", "report__addenda")
        )
        _audit_rows(request, rows, view="report peer reviews")
        return Response(ReviewCaseSerializer(rows, many=True, context=_context(request)).data)

    @extend_schema(request=None, responses={201: ReviewCaseSerializer})
    def post(self, request: Request, report_id: int) -> Response:
        report = self._admin_report(request, report_id)
        review = services.peer_review_request(
            report_id=report.pk, actor=request_actor(request), ip_address=client_ip(request)
        )
        review = selectors.review_get_visible(
            user=request.user, kind=ReviewKind.PEER_REVIEW, review_id=review.pk
        )
        return _respond(request, review, status.HTTP_201_CREATED)


# --- Sample rate -------------------------------------------------------------------
def _policy_rows(group_ids: list[int]) -> list[dict[str, Any]]:
    percents = dict(
        PeerReviewPolicy.objects.filter(reading_group_id__in=group_ids).values_list(
            "reading_group_id", "sample_percent"
        )
    )
    return [
        {
            "reading_group": group.pk,
            "reading_group_name": group.name,
            "sample_percent": percents.get(group.pk, 0),
        }
        for group in ReadingGroup.objects.filter(pk__in=group_ids).order_by("name")
    ]


class PeerReviewPolicyListApi(APIView):
    """The peer review sample rate of each reading group I administer (0 when unset)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses=PeerReviewPolicySerializer(many=True))
    def get(self, request: Request) -> Response:
        group_ids = list(
            reading_groups_administered(user=request.user).values_list("pk", flat=True)
        )
        if not group_ids:
            raise PermissionDenied("Peer review settings are for the reading group's admins.")
        return Response(PeerReviewPolicySerializer(_policy_rows(group_ids), many=True).data)


class PeerReviewPolicyApi(APIView):
    """Read or set one reading group's peer review sample rate (its admins only)."""

    permission_classes = [IsAuthenticated]

    def _group_id(self, request: Request, reading_group_id: int) -> int:
        if not selectors.administers_group_of(user=request.user, reading_group_id=reading_group_id):
            raise PermissionDenied("Only the reading group's admins change its peer review rate.")
        return reading_group_id

    @extend_schema(responses=PeerReviewPolicySerializer)
    def get(self, request: Request, reading_group_id: int) -> Response:
        group_id = self._group_id(request, reading_group_id)
        return Response(PeerReviewPolicySerializer(_policy_rows([group_id])[0]).data)

    @extend_schema(request=PeerReviewPolicySerializer, responses=PeerReviewPolicySerializer)
    def put(self, request: Request, reading_group_id: int) -> Response:
        group_id = self._group_id(request, reading_group_id)
        body = PeerReviewPolicySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.peer_review_policy_set(
            reading_group=ReadingGroup.objects.get(pk=group_id),
            sample_percent=body.validated_data["sample_percent"],
            actor=request_actor(request),
        )
        return Response(PeerReviewPolicySerializer(_policy_rows([group_id])[0]).data)
