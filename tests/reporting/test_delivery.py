"""Result messages of finals and addenda: stored, served to whoever may read the report,
and delivered to the facility's endpoint (a real MLLP listener or HTTP server on the
loopback) with every attempt recorded, retried with backoff by the sweep."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import time_machine
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from hl7apy.parser import parse_message

from audit.models import AuditEvent
from reporting import messages, tasks
from reporting.models import DeliveryAttempt, FacilityEndpoint, Report, ReportMessage
from reporting.services.delivery import DELIVERY_LEASE, report_message_requeue
from reporting.services.reports import report_addendum_add, report_save_draft, report_sign
from reporting.transport import END_BLOCK, START_BLOCK
from teleradiology.errors import InvalidTransition
from tests.reporting.conftest import COMPLETE_VALUES, NOW

pytestmark = pytest.mark.django_db

HL7, FHIR = ReportMessage.Kind.HL7, ReportMessage.Kind.FHIR


# --- Peers on the loopback --------------------------------------------------------------
class MllpListener:
    """A facility's HL7 listener: bound at once (so connections are refused) and
    accepting once ``start`` is called, answering each message as scripted
    ("AA", "AE", "AR", or "close" to hang up without an answer)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[str] = []
        self.answers: list[str] = []
        self.thread: threading.Thread | None = None

    def start(self, answers: list[str]) -> None:
        self.answers = list(answers)
        self.sock.listen(5)
        self.sock.settimeout(10)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.answers:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                while END_BLOCK not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                text = data[data.find(START_BLOCK) + 1 : data.find(END_BLOCK)].decode()
                self.received.append(text)
                answer = self.answers.pop(0)
                if answer != "close":
                    ack = messages.build_hl7_ack(text, code=answer, text=f"{answer} from test")
                    conn.sendall(START_BLOCK + ack.encode() + END_BLOCK)

    def close(self) -> None:
        self.sock.close()
        if self.thread is not None:
            self.thread.join(timeout=10)


@pytest.fixture
def listener() -> Iterator[MllpListener]:
    peer = MllpListener()
    yield peer
    peer.close()


class FhirServer:
    """A facility's FHIR server: answers each POST with the next scripted status."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = list(statuses)
        self.received: list[tuple[str, str, dict[str, Any]]] = []
        peer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                peer.received.append((self.path, self.headers["Content-Type"], json.loads(body)))
                status = peer.statuses.pop(0)
                self.send_response(status)
                if status == 201:
                    self.send_header("Location", f"{self.path}/1/_history/1")
                self.send_header("Content-Type", "application/fhir+json")
                self.end_headers()
                self.wfile.write(b'{"resourceType": "OperationOutcome"}')

            def log_message(self, *args: Any) -> None:
                """Keep the test output clean: no access log on stderr."""

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/fhir/DiagnosticReport"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


# --- Reports ------------------------------------------------------------------------------
@pytest.fixture
def sign_final(claimed, reader, ct_head, django_capture_on_commit_callbacks):
    """Draft and sign the claimed study's report final, running what commits enqueue."""

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


@pytest.fixture
def add_addendum(reader, django_capture_on_commit_callbacks):
    def add(report: Report, text: str = "Also: old lacunar infarct.") -> None:
        with django_capture_on_commit_callbacks(execute=True):
            report_addendum_add(report_id=report.pk, radiologist=reader, text=text)

    return add


def mllp_endpoint(facility: Any, port: int) -> FacilityEndpoint:
    return FacilityEndpoint.objects.create(
        facility=facility, kind="mllp", host="127.0.0.1", port=port, timeout_seconds=5
    )


def at(seconds: float) -> Any:
    """The clock ``seconds`` after the test's NOW (ticking)."""
    return time_machine.travel(NOW + dt.timedelta(seconds=seconds), tick=True)


def sweep() -> int:
    return tasks.report_messages_sweep.delay().get()


# --- Stored messages --------------------------------------------------------------------
def test_final_stores_an_hl7_and_a_fhir_message(sign_final, claimed):
    report = sign_final()
    rows = {m.kind: m for m in ReportMessage.objects.filter(report=report)}
    assert set(rows) == {HL7, FHIR}
    final = report.versions.get(status="final")
    for message in rows.values():
        assert message.report_version == final and message.addendum is None
        assert message.control_id == f"R{report.pk}V{final.number}"
        assert message.delivery_status == "stored"  # no endpoint: served on request only
        assert message.next_attempt_at is None
    hl7 = parse_message(rows[HL7].payload.rstrip("\r"), find_groups=False)
    assert hl7.msh.msh_9.value == "ORU^R01^ORU_R01"
    assert hl7.pid.pid_3.pid_3_1.value == claimed.patient_id
    assert hl7.pid.pid_3.pid_3_4.value == "FAC_A"  # the facility's AE title
    assert hl7.obr.obr_3.value == claimed.accession_number
    assert hl7.obr.obr_25.value == "F"
    assert hl7.obx[0].obx_5.value == claimed.study_instance_uid
    obx = {o.obx_3.obx_3_1.value: o.obx_5.value for o in hl7.obx}
    assert obx["IMP"] == "No acute intracranial finding."
    assert obx["CLINICAL"] == "Fall, head strike."
    fhir = DiagnosticReport.model_validate_json(rows[FHIR].payload)
    assert fhir.status == "final" and fhir.conclusion == "No acute intracranial finding."
    assert fhir.imagingStudy[0].identifier.value == f"urn:oid:{claimed.study_instance_uid}"
    assert not DeliveryAttempt.objects.exists()


def test_a_preliminary_signature_makes_a_preliminary_pair(claimed, reader, ct_head):
    # Preliminary reads are sent too (tests/reporting/test_prelim_send.py: the delivery).
    report = report_save_draft(
        study_id=claimed.pk,
        radiologist=reader,
        template_id=ct_head.pk,
        values=COMPLETE_VALUES,
        impression="Prelim.",
    )
    report_sign(report_id=report.pk, radiologist=reader, status="preliminary")
    rows = {m.kind: m for m in ReportMessage.objects.all()}
    assert set(rows) == {HL7, FHIR}
    assert {m.result_status for m in rows.values()} == {"preliminary"}
    assert parse_message(rows[HL7].payload.rstrip("\r"), find_groups=False).obr.obr_25.value == "P"
    assert json.loads(rows[FHIR].payload)["status"] == "preliminary"


def test_each_addendum_adds_a_corrected_and_appended_pair(sign_final, add_addendum):
    report = sign_final()
    add_addendum(report)
    add_addendum(report, "Second thought.")
    rows = ReportMessage.objects.filter(report=report).order_by("id")
    assert [(m.kind, m.control_id) for m in rows] == [
        (HL7, f"R{report.pk}V2"),
        (FHIR, f"R{report.pk}V2"),
        (HL7, f"R{report.pk}A1"),
        (FHIR, f"R{report.pk}A1"),
        (HL7, f"R{report.pk}A2"),
        (FHIR, f"R{report.pk}A2"),
    ]
    last_hl7 = parse_message(rows[4].payload.rstrip("\r"), find_groups=False)
    assert last_hl7.obr.obr_25.value == "C"
    added = [o.obx_5.value for o in last_hl7.obx if o.obx_3.obx_3_1.value == "ADD"]
    assert added == ["Also: old lacunar infarct.", "Second thought."]
    assert json.loads(rows[5].payload)["status"] == "appended"


# --- Serving them ------------------------------------------------------------------------
def test_hl7_and_fhir_are_served_to_whoever_may_read_the_report(
    api, sign_final, add_addendum, reader, staff_a, staff_b, group_admin, other_admin
):
    report = sign_final()
    hl7_url, fhir_url = f"/api/v1/reports/{report.pk}/hl7", f"/api/v1/reports/{report.pk}/fhir"
    for user in (reader.user, staff_a, group_admin):
        response = api(user).get(hl7_url)
        assert response.status_code == 200, (user, response.content)
        assert response["Content-Type"].startswith("text/plain")
        assert response["X-Message-Control-Id"] == f"R{report.pk}V2"
        assert response.content.decode().startswith("MSH|^~\\&|")
        response = api(user).get(fhir_url)
        assert response.status_code == 200
        assert response["Content-Type"].startswith("application/fhir+json")
        assert DiagnosticReport.model_validate(response.json()).status == "final"
    for outsider in (staff_b, other_admin):
        assert api(outsider).get(hl7_url).status_code == 404
        assert api(outsider).get(fhir_url).status_code == 404
    assert api(None).get(hl7_url).status_code in (401, 403)
    assert api(None).get(fhir_url).status_code in (401, 403)
    assert AuditEvent.objects.filter(
        actor=staff_a, action="read", object_type="reporting.report", object_id=str(report.pk)
    ).exists()

    add_addendum(report)
    response = api(staff_a).get(hl7_url)
    assert response["X-Message-Control-Id"] == f"R{report.pk}A1"
    assert "|C|" in response.content.decode().split("\r")[2]  # OBR-25
    assert api(staff_a).get(fhir_url).json()["status"] == "appended"


def test_no_message_before_the_report_is_final(api, claimed, reader, ct_head, group_admin):
    report = report_save_draft(study_id=claimed.pk, radiologist=reader, template_id=ct_head.pk)
    for kind in ("hl7", "fhir"):
        response = api(group_admin).get(f"/api/v1/reports/{report.pk}/{kind}")
        assert response.status_code == 404
    assert api(group_admin).get("/api/v1/reports/999999/hl7").status_code == 404


# --- Delivery -------------------------------------------------------------------------------
def test_mllp_delivery_is_retried_until_acknowledged(sign_final, listener, facility_a):
    mllp_endpoint(facility_a, listener.port)  # bound, not listening: connections refused
    report = sign_final()
    message = ReportMessage.objects.get(report=report, kind=HL7)
    assert ReportMessage.objects.get(report=report, kind=FHIR).delivery_status == "stored"

    # Attempt 1 ran after commit and was refused: the message waits, 30 s on.
    message.refresh_from_db()
    assert message.delivery_status == "pending" and message.attempts == 1
    assert "ConnectionRefusedError" in message.last_error
    assert message.next_attempt_at >= NOW + dt.timedelta(seconds=30)
    assert sweep() == 0  # not due yet

    listener.start(["AE", "AA"])
    with at(45):
        assert sweep() == 1  # attempt 2: a NAK, so 60 s more
    message.refresh_from_db()
    assert message.delivery_status == "pending" and message.attempts == 2
    assert "MSA|AE" in message.last_error
    with at(70):
        assert sweep() == 0
    with at(120):
        assert sweep() == 1  # attempt 3: acknowledged
    message.refresh_from_db()
    assert message.delivery_status == "sent" and message.sent_at is not None
    assert message.next_attempt_at is None
    assert f"MSA|AA|{message.control_id}" in message.acknowledgement
    attempts = list(message.delivery_attempts.order_by("number"))
    assert [(a.number, a.outcome) for a in attempts] == [(1, "error"), (2, "nak"), (3, "accepted")]
    assert all(a.finished_at >= a.started_at for a in attempts)

    # The listener got the message itself, twice (the refused try never reached it).
    assert listener.received == [message.payload] * 2
    # A sent message is never sent again, however often it is enqueued.
    with at(4000):
        assert sweep() == 0
        assert tasks.deliver_message.delay(message.pk).get() == "skipped"
    assert len(listener.received) == 2
    assert AuditEvent.objects.filter(
        object_type="reporting.reportmessage", object_id=str(message.pk), action="export"
    ).exists()


def test_endpoint_down_keeps_the_message_queued_with_growing_backoff(sign_final, facility_a):
    with socket.socket() as probe:  # a port with nothing behind it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mllp_endpoint(facility_a, port)
    report = sign_final()
    message = ReportMessage.objects.get(report=report, kind=HL7)
    waits = []
    for clock in (40, 120, 300, 600):
        message.refresh_from_db()
        last = message.delivery_attempts.order_by("number").last()
        assert last is not None
        waits.append(round((message.next_attempt_at - last.finished_at).total_seconds()))
        with at(clock):
            assert sweep() == 1
    message.refresh_from_db()
    assert waits == [30, 60, 120, 240]
    assert message.delivery_status == "pending" and message.attempts == 5
    assert set(message.delivery_attempts.values_list("outcome", flat=True)) == {"error"}


def test_an_inactive_endpoint_keeps_messages_queued_until_it_is_back(
    sign_final, listener, facility_a
):
    endpoint = mllp_endpoint(facility_a, listener.port)
    listener.start(["AA"])
    endpoint.active = False
    endpoint.save()
    # Made while the endpoint was off: stored, not queued.
    report = sign_final()
    assert set(ReportMessage.objects.values_list("delivery_status", flat=True)) == {"stored"}
    # Queued, then the endpoint switched off: kept queued, tried again when back.
    endpoint.active = True
    endpoint.save()
    message = ReportMessage.objects.get(report=report, kind=HL7)
    message.delivery_status, message.next_attempt_at = "pending", NOW
    message.save()
    endpoint.active = False
    endpoint.save()
    assert sweep() == 1
    message.refresh_from_db()
    assert message.delivery_status == "pending" and "no active endpoint" in message.last_error
    endpoint.active = True
    endpoint.save()
    with at(60):
        assert sweep() == 1
    message.refresh_from_db()
    assert message.delivery_status == "sent"


def test_a_rejection_fails_the_message_until_someone_requeues_it(
    sign_final, listener, facility_a, group_admin, django_capture_on_commit_callbacks
):
    mllp_endpoint(facility_a, listener.port)
    listener.start(["AR", "AA"])
    report = sign_final()
    message = ReportMessage.objects.get(report=report, kind=HL7)
    assert message.delivery_status == "failed" and "MSA|AR" in message.last_error
    with at(4000):
        assert sweep() == 0  # a refusal is not retried by itself
    with django_capture_on_commit_callbacks(execute=True):
        report_message_requeue(message_id=message.pk, actor=group_admin)
    message.refresh_from_db()
    assert message.delivery_status == "sent" and message.attempts == 2
    with pytest.raises(InvalidTransition):
        report_message_requeue(message_id=message.pk)


def test_a_hang_up_without_an_ack_is_retried(sign_final, listener, facility_a):
    mllp_endpoint(facility_a, listener.port)
    listener.start(["close", "AA"])
    report = sign_final()
    message = ReportMessage.objects.get(report=report, kind=HL7)
    assert (
        message.delivery_status == "pending" and "No framed acknowledgement" in message.last_error
    )
    with at(60):
        sweep()
    message.refresh_from_db()
    assert message.delivery_status == "sent"


def test_addenda_are_delivered_too(sign_final, add_addendum, listener, facility_a):
    mllp_endpoint(facility_a, listener.port)
    listener.start(["AA", "AA"])
    report = sign_final()
    add_addendum(report)
    sent = ReportMessage.objects.filter(kind=HL7, delivery_status="sent").order_by("id")
    assert [m.control_id for m in sent] == [f"R{report.pk}V2", f"R{report.pk}A1"]
    assert [t.split("\r")[0].split("|")[9] for t in listener.received] == [
        f"R{report.pk}V2",
        f"R{report.pk}A1",
    ]


def test_fhir_delivery_posts_the_diagnostic_report_and_retries_5xx(sign_final, facility_a):
    server = FhirServer([503, 201])
    try:
        FacilityEndpoint.objects.create(facility=facility_a, kind="fhir_https", url=server.url)
        report = sign_final()
        message = ReportMessage.objects.get(report=report, kind=FHIR)
        assert ReportMessage.objects.get(report=report, kind=HL7).delivery_status == "stored"
        message.refresh_from_db()
        assert message.delivery_status == "pending" and "HTTP 503" in message.last_error
        with at(60):
            assert sweep() == 1
        message.refresh_from_db()
        assert message.delivery_status == "sent"
        assert message.acknowledgement.startswith("HTTP 201 /fhir/DiagnosticReport/1/_history/1")
        path, content_type, body = server.received[-1]
        assert path == "/fhir/DiagnosticReport"
        assert content_type.startswith("application/fhir+json")
        assert DiagnosticReport.model_validate(body).id == message.control_id
        assert [a.outcome for a in message.delivery_attempts.order_by("number")] == [
            "nak",
            "accepted",
        ]
    finally:
        server.close()


def test_plain_http_to_another_host_is_refused(sign_final, facility_a):
    FacilityEndpoint.objects.create(
        facility=facility_a, kind="fhir_https", url="http://fhir.example.org/DiagnosticReport"
    )
    report = sign_final()
    message = ReportMessage.objects.get(report=report, kind=FHIR)
    assert message.delivery_status == "failed"
    assert "https" in message.last_error


def test_a_message_another_sender_holds_is_left_alone_until_its_lease_ends(
    sign_final, listener, facility_a
):
    mllp_endpoint(facility_a, listener.port)  # refused: the first attempt fails
    report = sign_final()
    message = ReportMessage.objects.get(report=report, kind=HL7)
    # A sender took it at NOW + 40 s and died before recording anything.
    ReportMessage.objects.filter(pk=message.pk).update(
        next_attempt_at=NOW + dt.timedelta(seconds=40) + DELIVERY_LEASE
    )
    listener.start(["AA"])
    with at(60):
        assert tasks.deliver_message.delay(message.pk).get() == "skipped"
        assert sweep() == 0
    with at(40 + DELIVERY_LEASE.total_seconds() + 5):
        assert sweep() == 1
    message.refresh_from_db()
    assert message.delivery_status == "sent" and len(listener.received) == 1


# --- Admin ---------------------------------------------------------------------------------
@pytest.fixture
def root_client():
    from django.test import Client

    from tests import factories as f

    client = Client()
    client.force_login(f.UserFactory(username="root", is_superuser=True, is_staff=True))
    return client


def test_admin_endpoint_form_refuses_plain_http_to_another_host(root_client, facility_a):
    data = {
        "facility": facility_a.pk,
        "kind": "fhir_https",
        "url": "http://fhir.example.org/DiagnosticReport",
        "timeout_seconds": 10,
        "active": "on",
    }
    response = root_client.post("/admin/reporting/facilityendpoint/add/", data)
    assert response.status_code == 200 and "must be an https:// URL" in response.content.decode()
    data["url"] = "https://fhir.example.org/DiagnosticReport"
    response = root_client.post("/admin/reporting/facilityendpoint/add/", data)
    assert response.status_code == 302
    data = {"facility": facility_a.pk, "kind": "mllp", "timeout_seconds": 10}
    response = root_client.post("/admin/reporting/facilityendpoint/add/", data)
    assert "needs a host and a port" in response.content.decode()


def test_admin_lists_messages_and_requeues_failed_ones(
    root_client, sign_final, listener, facility_a, django_capture_on_commit_callbacks
):
    mllp_endpoint(facility_a, listener.port)
    listener.start(["AR", "AA"])
    report = sign_final()
    message = ReportMessage.objects.get(report=report, kind=HL7)
    assert message.delivery_status == "failed"
    assert root_client.get("/admin/reporting/reportmessage/").status_code == 200
    page = root_client.get(f"/admin/reporting/reportmessage/{message.pk}/change/")
    assert page.status_code == 200 and "MSA|AR" in page.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = root_client.post(
            "/admin/reporting/reportmessage/",
            {"action": "requeue", "_selected_action": [message.pk]},
        )
    assert response.status_code == 302
    message.refresh_from_db()
    assert message.delivery_status == "sent"


def test_the_schema_lists_the_message_endpoints(api, group_admin):
    paths = api(group_admin).get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"]
    assert "/api/v1/reports/{report_id}/hl7" in paths
    assert "/api/v1/reports/{report_id}/fhir" in paths
