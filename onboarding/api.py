"""The facility checklist and its connection tests, for the facility's group admins."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from onboarding import selectors, services
from onboarding.selectors import PEER_ENDPOINT, PEER_PACS
from teleradiology.api import client_ip, request_actor

STATUSES = selectors.ItemStatus.choices


class ChecklistItemSerializer(serializers.Serializer[Any]):
    key = serializers.CharField(
        help_text="ae_titles, hl7, pacs, result_endpoint, privileges, routing_rules, turnaround"
    )
    title = serializers.CharField()
    status = serializers.ChoiceField(choices=STATUSES)
    summary = serializers.CharField(help_text="What was found.")
    action = serializers.CharField(help_text="What to do about it (empty when ok).")
    facts = serializers.DictField(source="data", help_text="The facts behind the item.")
    test = serializers.CharField(
        help_text='The peer a connection test reaches ("pacs", "endpoint"), or empty.'
    )


class ChecklistSerializer(serializers.Serializer[Any]):
    facility = serializers.IntegerField(source="facility.pk")
    name = serializers.CharField(source="facility.name")
    status = serializers.ChoiceField(choices=STATUSES, help_text="The worst item's status.")
    items = ChecklistItemSerializer(many=True)


class PeerTestSerializer(serializers.Serializer[Any]):
    peer = serializers.ChoiceField(
        choices=[PEER_PACS, PEER_ENDPOINT],
        help_text="pacs: a C-ECHO from our AE title to the facility's PACS; endpoint: a "
        'test ORU^R01 (MSH-11 "T") to its MLLP result endpoint, or for a FHIR endpoint a '
        "GET of [base]/metadata (the CapabilityStatement; nothing is written there).",
    )
    endpoint = serializers.IntegerField(
        required=False, min_value=1, help_text="The result endpoint's id (optional check)."
    )


class PeerResultSerializer(serializers.Serializer[Any]):
    ok = serializers.BooleanField()
    code = serializers.CharField(
        help_text="DICOM status (0x0000), HL7 ACK code (AA, AE, AR), HTTP status, or "
        '"network" / "rejected" / "refused" when the peer could not be reached.'
    )
    detail = serializers.CharField(help_text="The peer's answer or the network error.")
    elapsed_ms = serializers.IntegerField()


class ChecklistApi(APIView):
    """A facility's onboarding checklist."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses={
            200: ChecklistSerializer,
            403: OpenApiResponse(description="Not an admin of the facility's reading group."),
            404: OpenApiResponse(description="No such facility."),
        },
        summary="What a facility still needs",
        description="AE titles (admitted by the gateway?), HL7 sending facility, PACS, "
        "result endpoint, readers privileged now, routing rules that match it and its "
        "turnaround targets: each ok, missing or warning, with what to do.  For the "
        "admins of the facility's reading group.",
    )
    def get(self, request: Request, id: int) -> Response:
        facility = selectors.facility_administered_get(user=request.user, facility_id=id)
        checklist = selectors.facility_checklist(facility=facility, now=timezone.now())
        return Response(ChecklistSerializer(checklist).data)


class ChecklistTestApi(APIView):
    """One connection test of a facility's peer."""

    permission_classes = [IsAuthenticated]
    throttle_scope = "connection-test"

    @extend_schema(
        request=PeerTestSerializer,
        responses={
            200: PeerResultSerializer,
            400: OpenApiResponse(description="No such peer configured for the facility."),
            403: OpenApiResponse(description="Not an admin of the facility's reading group."),
            404: OpenApiResponse(description="No such facility."),
        },
        summary="Test the connection to a facility's PACS or result endpoint",
        description="Network I/O with bounded timeouts, outside any transaction; the "
        "outcome is answered with 200 whether the peer answered well (`ok`) or not, and "
        "audited (who tested what, the outcome).  Rate-limited per user "
        "(`API_THROTTLE_CONNECTION_TEST`).",
    )
    def post(self, request: Request, id: int) -> Response:
        facility = selectors.facility_administered_get(user=request.user, facility_id=id)
        data = PeerTestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = services.facility_peer_test(
            actor=request_actor(request),
            facility=facility,
            peer=data.validated_data["peer"],
            endpoint_id=data.validated_data.get("endpoint"),
            ip_address=client_ip(request),
        )
        return Response(PeerResultSerializer(result.as_dict()).data)
