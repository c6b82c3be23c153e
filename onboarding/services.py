"""Connection tests of a facility's peers, run for its group admins and audited.

Network I/O, so never inside a transaction: the test runs first, then its outcome
is written (one audit event, autocommitted)."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit_record
from network.models import Facility
from onboarding import peers
from onboarding.selectors import PEER_ENDPOINT, PEER_PACS, facility_endpoint_of
from reporting.models import FacilityEndpoint

# Each network step of a C-ECHO (connect, associate, echo): a test answers within
# a few seconds or says why not.
PACS_ECHO_TIMEOUT_SECONDS = 5.0


def facility_peer_test(
    *,
    actor: User | None,
    facility: Facility,
    peer: str,
    endpoint_id: int | None = None,
    ip_address: str | None = None,
) -> peers.PeerResult:
    """Test one peer of the facility ("pacs": a C-ECHO from our AE title; "endpoint":
    a test ORU^R01 (MSH-11 "T") to its MLLP listener, or a GET of its FHIR server's
    CapabilityStatement), then audit who tested what and the outcome.  Never inside
    a transaction (a peer's silence would hold it open)."""
    if transaction.get_connection().in_atomic_block:
        raise RuntimeError("A connection test does network I/O: call it outside a transaction.")
    if peer == PEER_PACS:
        if not facility.has_pacs or facility.pacs_port is None:
            raise ValidationError({"peer": "The facility has no PACS configured."})
        target = f"{facility.pacs_ae_title}@{facility.pacs_host}:{facility.pacs_port}"
        result = peers.dicom_echo(
            calling_ae=settings.DICOM_AE_TITLE,
            called_ae=facility.pacs_ae_title,
            host=facility.pacs_host,
            port=facility.pacs_port,
            timeout=PACS_ECHO_TIMEOUT_SECONDS,
        )
    elif peer == PEER_ENDPOINT:
        endpoint = facility_endpoint_of(facility=facility)
        if endpoint is None or (endpoint_id is not None and endpoint.pk != endpoint_id):
            raise ValidationError({"endpoint": "No such result endpoint of this facility."})
        target, result = _endpoint_test(facility, endpoint)
    else:
        raise ValidationError({"peer": f"Unknown peer {peer!r}: pacs or endpoint."})
    audit_record(
        actor=actor,
        action=AuditEvent.Action.READ,
        obj=facility,
        ip_address=ip_address,
        detail={"connection_test": {"peer": peer, "target": target, **result.as_dict()}},
    )
    return result


def _endpoint_test(facility: Facility, endpoint: FacilityEndpoint) -> tuple[str, peers.PeerResult]:
    if endpoint.kind == FacilityEndpoint.Kind.FHIR_HTTPS:
        return endpoint.url, peers.fhir_metadata(
            url=endpoint.url, timeout=float(endpoint.timeout_seconds)
        )
    if endpoint.port is None:
        raise ValidationError({"endpoint": "The MLLP endpoint has no port."})
    control_id = "TEST" + secrets.token_hex(8)  # 20 characters: MSH-10's length
    message = peers.build_test_oru(
        control_id=control_id,
        sending_application=settings.HL7_SENDING_APPLICATION,
        sending_facility=facility.reading_group.name,
        receiving_application=endpoint.receiving_application,
        receiving_facility=endpoint.receiving_facility,
        now=timezone.now(),
    )
    result = peers.mllp_test(
        host=endpoint.host,
        port=endpoint.port,
        message=message,
        control_id=control_id,
        timeout=float(endpoint.timeout_seconds),
    )
    return f"{endpoint.host}:{endpoint.port}", result
