"""A study's relevant priors: what was chosen from the facility's PACS, why, and
whether it has arrived.  Same reach as the study; every read is audited."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from access.selectors import study_get_visible
from audit.models import AuditEvent
from audit.services import audit_record
from priors import selectors
from priors.models import PriorFetch, PriorStudy
from teleradiology.api import client_ip


class PriorStudySerializer(serializers.ModelSerializer[PriorStudy]):
    reason = serializers.CharField(
        read_only=True, help_text="Why it failed (empty unless status is failed)."
    )
    relevance = serializers.CharField(read_only=True, help_text="Why it was judged relevant.")
    relevance_code = serializers.ChoiceField(
        choices=["region_modality", "region", "modality"],
        read_only=True,
        help_text="region_modality: same body region and modality class; region: same "
        "body region; modality: same modality class.",
    )
    prior_study = serializers.IntegerField(
        source="prior_id",
        read_only=True,
        allow_null=True,
        help_text="The study id of the prior stored with us, once retrieved "
        "(GET /api/v1/studies/{id}/, the viewer).",
    )

    class Meta:
        model = PriorStudy
        fields = [
            "study_instance_uid",
            "study_date",
            "modality",
            "description",
            "body_part",
            "accession_number",
            "status",
            "reason",
            "relevance",
            "relevance_code",
            "instances_retrieved",
            "prior_study",
        ]
        read_only_fields = fields


class PriorFetchSerializer(serializers.ModelSerializer[PriorFetch]):
    class Meta:
        model = PriorFetch
        fields = [
            "status",
            "attempts",
            "next_attempt_at",
            "started_at",
            "finished_at",
            "last_error",
        ]
        read_only_fields = fields


class StudyPriorsSerializer(serializers.Serializer[Any]):
    study = serializers.IntegerField(help_text="The current study.")
    fetch = PriorFetchSerializer(
        allow_null=True, help_text="The fetch from the facility's PACS; null if none started."
    )
    priors_hold_until = serializers.DateTimeField(
        allow_null=True,
        help_text="The study is not offered before this unless its priors are in first "
        "(null: not held for priors).",
    )
    priors = PriorStudySerializer(many=True)


class StudyPriorsApi(APIView):
    """The relevant priors of a study the caller may see."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: StudyPriorsSerializer}, operation_id="study_priors")
    def get(self, request: Request, study_id: int) -> Response:
        study = study_get_visible(user=request.user, study_id=study_id)
        body = {
            "study": study.pk,
            "fetch": selectors.prior_fetch_of(study=study),
            "priors_hold_until": study.priors_hold_until,
            "priors": list(selectors.prior_studies_of(study=study)),
        }
        with transaction.atomic():
            audit_record(
                actor=request.user,
                action=AuditEvent.Action.READ,
                obj=study,
                patient_id=study.patient_id,
                ip_address=client_ip(request),
                detail={"view": "priors"},
            )
        return Response(StudyPriorsSerializer(body).data)
