"""Application acknowledgements tracked per message, failures told once: against an
independent MLLP peer answering AE/AR or down, and an HTTP FHIR peer answering 4xx/5xx
(tests/reporting/result_peers.py).  HL7 semantics: AE (application error) is retried
with backoff; AR (application reject: the same content would be refused again) fails
at once; so do FHIR 4xx; a message still unanswered after REPORT_DELIVERY_MAX_ATTEMPTS
fails.  A failure alerts the facility's staff and the group's admins, once."""

from __future__ import annotations

import datetime as dt
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import time_machine
from django.core import mail
from django.db import connection

from alerts.models import Alert
from reporting import tasks
from reporting.models import FacilityEndpoint, Report, ReportMessage
from reporting.services.delivery import report_message_deliver, report_message_requeue
from reporting.services.reports import report_save_draft, report_sign
from tests.reporting.conftest import COMPLETE_VALUES, NOW
from tests.reporting.result_peers import FhirPeer, MllpPeer

HL7, FHIR = ReportMessage.Kind.HL7, ReportMessage.Kind.FHIR


@pytest.fixture
def peer() -> Iterator[MllpPeer]:
    listener = MllpPeer()
    yield listener
    listener.close()


@pytest.fixture
def sign_final(claimed, reader, ct_head, django_capture_on_commit_callbacks):
    def sign() -> Report:
        report = report_save_draft(
            study_id=claimed.pk,
            radiologist=reader,
            template_id=ct_head.pk,
            values=COMPLETE_VALUES,
            impression="No acute intracranial finding.",
        )
        with django_capture_on_commit_callbacks(execute=True):
            report_sign(report_id=report.pk, radiologist=reader, status="final")
        return Report.objects.get(pk=report.pk)

    return sign


def mllp(facility: Any, port: int) -> FacilityEndpoint:
    return FacilityEndpoint.objects.create(
        facility=facility, kind="mllp", host="127.0.0.1", port=port, timeout_seconds=5
    )


def at(seconds: float) -> Any:
    return time_machine.travel(NOW + dt.timedelta(seconds=seconds), tick=True)


def sweep_at(seconds: float, django_capture_on_commit_callbacks: Any) -> int:
    with at(seconds), django_capture_on_commit_callbacks(execute=True):
        return tasks.report_messages_sweep.delay().get()


@pytest.mark.django_db
def test_ae_is_retried_with_its_text_and_aa_recorded(
    sign_final, peer, facility_a, django_capture_on_commit_callbacks
):
    mllp(facility_a, peer.port)
    peer.start(["AE", "AA"])
    report = sign_final()
    message = ReportMessage.objects.get(report=report, kind=HL7)
    assert message.delivery_status == "pending"
    assert (message.ack_code, message.ack_control_id) == ("AE", message.control_id)
    assert message.ack_text == "Database busy"  # ERR-8: MSA-3 was empty
    first_answer = message.ack_at
    assert first_answer is not None
    attempt = message.delivery_attempts.get()
    assert (attempt.outcome, attempt.ack_code, attempt.ack_text) == ("nak", "AE", "Database busy")
    assert sweep_at(60, django_capture_on_commit_callbacks) == 1
    message.refresh_from_db()
    assert message.delivery_status == "sent"
    assert (message.ack_code, message.ack_text) == ("AA", "")
    assert message.ack_at > first_answer
    assert not Alert.objects.exists()


@pytest.mark.django_db
def test_ar_fails_at_once_and_alerts_the_facility_and_the_admins_once(
    sign_final, peer, facility_a, staff_a, staff_b, group_admin, other_admin,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    mllp(facility_a, peer.port)
    peer.start(["AR"])
    report = sign_final()
    message = ReportMessage.objects.get(report=report, kind=HL7)
    assert message.delivery_status == "failed" and message.attempts == 1
    assert (message.ack_code, message.ack_text) == ("AR", "Unknown patient")
    assert message.failure_alerted_at is not None
    alert = Alert.objects.get()
    assert alert.kind == "delivery_failed"
    assert (alert.facility, alert.study, alert.reading_group) == (
        facility_a,
        report.study,
        facility_a.reading_group,
    )
    assert "Unknown patient" in alert.message and report.study.accession_number in alert.message
    assert report.study.patient_name not in alert.message  # mailed: no patient name
    assert len(mail.outbox) == 1
    assert set(mail.outbox[0].to) == {staff_a.email, group_admin.email}
    # Not retried, however often it is swept or enqueued: nothing more is told.
    assert sweep_at(7200, django_capture_on_commit_callbacks) == 0
    with at(7200), django_capture_on_commit_callbacks(execute=True):
        assert tasks.deliver_message.delay(message.pk).get() == "skipped"
    assert len(peer.received) == 1 and Alert.objects.count() == 1 and len(mail.outbox) == 1


@pytest.mark.django_db
def test_an_endpoint_down_fails_after_the_retries_and_alerts_once(
    sign_final, facility_a, staff_a, group_admin, settings, django_capture_on_commit_callbacks
):
    settings.REPORT_DELIVERY_MAX_ATTEMPTS = 3
    with socket.socket() as probe:  # a port with nothing behind it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mllp(facility_a, port)
    report = sign_final()
    message = ReportMessage.objects.get(report=report, kind=HL7)
    assert sweep_at(40, django_capture_on_commit_callbacks) == 1  # attempt 2
    message.refresh_from_db()
    assert message.delivery_status == "pending" and not Alert.objects.exists()
    assert (message.ack_code, message.http_status, message.ack_at) == ("", None, None)
    assert sweep_at(120, django_capture_on_commit_callbacks) == 1  # attempt 3: the last
    message.refresh_from_db()
    assert message.delivery_status == "failed" and message.attempts == 3
    assert message.last_error.startswith("Gave up after 3 attempts.")
    assert "ConnectionRefusedError" in message.last_error
    assert Alert.objects.filter(kind="delivery_failed").count() == 1
    assert len(mail.outbox) == 1 and set(mail.outbox[0].to) == {staff_a.email, group_admin.email}
    assert sweep_at(9000, django_capture_on_commit_callbacks) == 0
    assert Alert.objects.count() == 1

    # Someone fixes it and sends it again: a fresh budget of tries.
    with at(9000), django_capture_on_commit_callbacks(execute=True):
        report_message_requeue(message_id=message.pk, actor=group_admin)
    message.refresh_from_db()
    assert message.delivery_status == "pending" and message.attempts == 4
    assert message.attempts_at_queue == 3


@pytest.mark.django_db
def test_fhir_5xx_is_retried_and_4xx_fails_with_the_operation_outcome(
    sign_final, facility_a, staff_a, django_capture_on_commit_callbacks
):
    server = FhirPeer([(503, "Service warming up"), (422, "Unknown patient identifier")])
    try:
        FacilityEndpoint.objects.create(facility=facility_a, kind="fhir_https", url=server.url)
        report = sign_final()
        message = ReportMessage.objects.get(report=report, kind=FHIR)
        assert message.delivery_status == "pending"
        assert message.http_status == 503
        assert message.ack_text == "error: Service warming up"
        assert sweep_at(60, django_capture_on_commit_callbacks) == 1
        message.refresh_from_db()
        assert message.delivery_status == "failed"
        assert message.http_status == 422 and message.ack_code == ""
        assert message.ack_text == "error: Unknown patient identifier"
        attempts = list(message.delivery_attempts.order_by("number"))
        assert [(a.outcome, a.http_status) for a in attempts] == [
            ("nak", 503),
            ("rejected", 422),
        ]
        alert = Alert.objects.get(kind="delivery_failed")
        assert "Unknown patient identifier" in alert.message
        assert staff_a.email in mail.outbox[0].to
    finally:
        server.close()


@pytest.mark.django_db
def test_the_api_lists_each_message_with_its_acks(
    api, sign_final, peer, facility_a, staff_a, staff_b, group_admin, other_admin,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    mllp(facility_a, peer.port)
    peer.start(["AE", "AA"])
    report = sign_final()
    sweep_at(60, django_capture_on_commit_callbacks)
    url = f"/api/v1/reports/{report.pk}/messages/"
    for user in (staff_a, group_admin):
        response = api(user).get(url)
        assert response.status_code == 200, response.content
    rows = {row["kind"]: row for row in response.json()}
    hl7 = rows["hl7"]
    assert hl7["result_status"] == "final" and hl7["delivery_status"] == "sent"
    assert (hl7["ack_code"], hl7["ack_control_id"]) == ("AA", hl7["control_id"])
    assert hl7["ack_at"] is not None and hl7["attempts"] == 2
    assert [(a["number"], a["outcome"], a["ack_code"]) for a in hl7["delivery_attempts"]] == [
        (1, "nak", "AE"),
        (2, "accepted", "AA"),
    ]
    assert hl7["delivery_attempts"][0]["ack_text"] == "Database busy"
    assert rows["fhir"]["delivery_status"] == "stored" and "payload" not in rows["fhir"]
    for outsider in (staff_b, other_admin):
        assert api(outsider).get(url).status_code == 404
    assert api(None).get(url).status_code in (401, 403)
    schema = api(group_admin).get("/api/schema/", HTTP_ACCEPT="application/json").json()
    assert "/api/v1/reports/{report_id}/messages/" in schema["paths"]


@pytest.mark.django_db
def test_the_api_shows_a_preliminary_to_readers_and_admins_not_to_facility_staff(
    api, claimed, reader, ct_head, staff_a, group_admin
):
    report = report_save_draft(
        study_id=claimed.pk,
        radiologist=reader,
        template_id=ct_head.pk,
        values=COMPLETE_VALUES,
        impression="Prelim.",
    )
    report_sign(report_id=report.pk, radiologist=reader, status="preliminary")
    url = f"/api/v1/reports/{report.pk}/messages/"
    statuses = {row["result_status"] for row in api(group_admin).get(url).json()}
    assert statuses == {"preliminary"}
    assert api(reader.user).get(url).status_code == 200
    assert api(staff_a).get(url).status_code == 404  # staff read final reports only


# --- Concurrent senders (PostgreSQL, real threads) ------------------------------------
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_senders_whose_leases_overlap_fail_and_alert_once(
    claimed, reader, ct_head, facility_a, peer, staff_a
):
    """Sender 1 holds the message past its lease while the peer keeps it waiting;
    sender 2 takes it over; both get AR.  The failure is one conditional update: one
    alert, one e-mail."""
    from django.utils import timezone

    report = report_save_draft(
        study_id=claimed.pk,
        radiologist=reader,
        template_id=ct_head.pk,
        values=COMPLETE_VALUES,
        impression="No acute intracranial finding.",
    )
    # Signed before the endpoint exists (so no sender starts on commit), then queued.
    report_sign(report_id=report.pk, radiologist=reader, status="final")
    mllp(facility_a, peer.port)
    peer.start(["hold", "AR"])
    message = ReportMessage.objects.get(report=report, kind=HL7)
    ReportMessage.objects.filter(pk=message.pk).update(
        delivery_status="pending", next_attempt_at=timezone.now()
    )
    results: list[str] = []

    def send() -> None:
        try:
            results.append(report_message_deliver(message_id=message.pk))
        finally:
            connection.close()

    first = threading.Thread(target=send)
    first.start()
    assert peer.holding.acquire(timeout=30)  # sender 1 is waiting for its answer
    # Its lease ran out (a worker presumed dead): due again, sender 2 takes it.
    ReportMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    second = threading.Thread(target=send)
    second.start()
    second.join(timeout=60)
    peer.release.set()
    first.join(timeout=60)
    assert sorted(results) == ["rejected", "rejected"]
    message.refresh_from_db()
    assert message.delivery_status == "failed" and message.attempts == 2
    assert message.delivery_attempts.count() == 2
    assert Alert.objects.filter(kind="delivery_failed").count() == 1
    assert [m.to for m in mail.outbox] == [[staff_a.email]]
