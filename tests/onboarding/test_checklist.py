"""The facility checklist (API and page) and its connection tests against real peers:
dcmtk's storescp as the PACS (it answers C-ECHO), a plain socket MLLP listener and a
plain HTTP server as the FHIR server, both written here (sharing no code with the
app), and a dead port."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from audit.models import AuditEvent
from reporting.models import FacilityEndpoint
from routing.models import RoutingRule
from tests import factories as f
from tests.processes import free_port
from tests.tools import program

pytestmark = pytest.mark.django_db


def checklist_url(facility: Any) -> str:
    return f"/api/v1/facilities/{facility.pk}/checklist/"


def peer_test_url(facility: Any) -> str:
    return f"/api/v1/facilities/{facility.pk}/checklist/test/"


def items_of(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["key"]: item for item in body["items"]}


def configure(facility: Any, *, pacs_port: int = 11112, endpoint: dict[str, Any] | None = None):
    """Everything a facility needs: HL7 id, PACS, result endpoint, a licensed and
    privileged reader, a rule naming it."""
    facility.hl7_sending_facility = f"HIS_{facility.pk}"
    facility.pacs_ae_title = "PACS"
    facility.pacs_host = "127.0.0.1"
    facility.pacs_port = pacs_port
    facility.save()
    FacilityEndpoint.objects.create(
        facility=facility,
        **(endpoint or {"kind": "mllp", "host": "127.0.0.1", "port": 2576}),
    )
    reader = f.RadiologistFactory(
        user=f.UserFactory(username=f"dr_{facility.pk}"), reading_group=facility.reading_group
    )
    f.LicenseFactory(radiologist=reader, jurisdiction=facility.jurisdiction)
    f.PrivilegeFactory(radiologist=reader, facility=facility)
    rule = RoutingRule.objects.create(
        reading_group=facility.reading_group, name=f"CT at {facility.name}", modalities=["CT"]
    )
    rule.facilities.add(facility)
    return reader


# --- The checklist -------------------------------------------------------------------
def test_a_fully_configured_facility_is_all_ok(api, group_admin, facility_a):
    reader = configure(facility_a)
    response = api(group_admin).get(checklist_url(facility_a))
    assert response.status_code == 200, response.content
    body = response.json()
    items = items_of(body)
    assert {k: i["status"] for k, i in items.items()} == {
        "ae_titles": "ok",
        "hl7": "ok",
        "pacs": "ok",
        "result_endpoint": "ok",
        "privileges": "ok",
        "routing_rules": "ok",
        "turnaround": "ok",
    }
    assert body["status"] == "ok"
    assert items["ae_titles"]["facts"]["ae_titles"] == [
        {"ae_title": "FAC_A", "admitted": True, "source": "facility"},
        {"ae_title": "PACS", "admitted": True, "source": "pacs"},
    ]
    assert items["hl7"]["facts"]["hl7_sending_facility"] == f"HIS_{facility_a.pk}"
    assert items["pacs"]["test"] == "pacs" and items["result_endpoint"]["test"] == "endpoint"
    assert items["privileges"]["facts"] == {
        "count": 1,
        "readers": [{"id": reader.pk, "name": reader.display_name, "licensed": True}],
    }
    assert [(r["name"], r["scope"]) for r in items["routing_rules"]["facts"]["rules"]] == [
        ("CT at Facility A", "this facility")
    ]
    assert items["turnaround"]["facts"]["stat_minutes"] == facility_a.tat_stat_minutes


def test_a_new_facility_lists_what_is_missing_and_what_to_do(api, group_admin, group_a):
    facility = f.FacilityFactory(name="Brand new", reading_group=group_a)
    facility.ae_titles.all().delete()
    # Privileged but not licensed in the facility's jurisdiction: a warning, not ok.
    unlicensed = f.RadiologistFactory(
        user=f.UserFactory(username="dr_nolic"), reading_group=group_a
    )
    body = api(group_admin).get(checklist_url(facility)).json()
    items = items_of(body)
    assert {k: i["status"] for k, i in items.items()} == {
        "ae_titles": "missing",
        "hl7": "missing",
        "pacs": "warning",
        "result_endpoint": "missing",
        "privileges": "missing",
        "routing_rules": "missing",
        "turnaround": "ok",
    }
    assert body["status"] == "missing"
    assert all(i["action"] for i in items.values() if i["status"] != "ok")
    assert "bulk-grant" in items["privileges"]["action"]
    assert items["pacs"]["test"] == "" and items["result_endpoint"]["test"] == ""

    f.PrivilegeFactory(radiologist=unlicensed, facility=facility)
    RoutingRule.objects.create(reading_group=group_a, name="Catch-all", is_default=True)
    items = items_of(api(group_admin).get(checklist_url(facility)).json())
    assert items["privileges"]["status"] == "warning"
    assert unlicensed.display_name in items["privileges"]["action"]
    assert items["routing_rules"]["status"] == "warning"  # only the default rule


def test_an_inactive_facility_s_ae_titles_are_not_admitted(api, group_admin, facility_a):
    facility_a.is_active = False
    facility_a.save()
    items = items_of(api(group_admin).get(checklist_url(facility_a)).json())
    assert items["ae_titles"]["status"] == "warning"
    assert items["ae_titles"]["facts"]["ae_titles"] == [
        {"ae_title": "FAC_A", "admitted": False, "source": "facility"}
    ]


def test_the_checklist_reads_a_constant_number_of_statements(api, group_admin, group_a):
    client = api(group_admin)
    counts = []
    for n in (1, 10):
        facility = f.FacilityFactory(reading_group=group_a)
        configure(facility)
        for i in range(n):
            reader = f.RadiologistFactory(
                user=f.UserFactory(username=f"q{facility.pk}_{i}"), reading_group=group_a
            )
            f.PrivilegeFactory(radiologist=reader, facility=facility)
            f.LicenseFactory(radiologist=reader, jurisdiction=facility.jurisdiction)
            rule = RoutingRule.objects.create(reading_group=group_a, name=f"r{facility.pk}_{i}")
            rule.facilities.add(facility)
        client.get(checklist_url(facility))  # warm
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(checklist_url(facility)).status_code == 200
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1], counts
    assert counts[0] <= 16, counts


def test_only_the_facility_group_admins_see_its_checklist(
    api, other_admin, staff_a, licensed_reader, facility_a
):
    assert api(other_admin).get(checklist_url(facility_a)).status_code == 404
    assert api(staff_a).get(checklist_url(facility_a)).status_code == 403
    assert api(licensed_reader.user).get(checklist_url(facility_a)).status_code == 403
    assert api(None).get(checklist_url(facility_a)).status_code in (401, 403)
    for user in (other_admin, staff_a):
        response = api(user).post(peer_test_url(facility_a), {"peer": "pacs"}, format="json")
        assert response.status_code in (403, 404)
    assert not AuditEvent.objects.filter(detail__has_key="connection_test").exists()


def test_the_checklist_page_shows_the_items_for_admins_only(group_admin, staff_a, facility_a):
    configure(facility_a)
    client = Client()
    client.force_login(group_admin)
    page = client.get(f"/facilities/{facility_a.pk}/checklist/")
    assert page.status_code == 200
    text = page.content.decode()
    assert 'data-key="pacs" data-status="ok"' in text
    assert f'hx-post="/facilities/{facility_a.pk}/checklist/test/"' in text
    client.force_login(staff_a)
    assert client.get(f"/facilities/{facility_a.pk}/checklist/").status_code == 403


# --- Real peers ----------------------------------------------------------------------
def _wait_for_port(port: int, process: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"storescp exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("storescp did not open its port within 30 s")


def _storescp(tmp_path: Path, *extra: str) -> Iterator[int]:
    port = free_port()
    env = {**os.environ, "TCP_NODELAY": "1"}
    log = (tmp_path / f"storescp-{port}.log").open("w")
    process = subprocess.Popen(
        [program("/usr/bin/storescp"), "-aet", "PACS", "-od", str(tmp_path), *extra, str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_port(port, process)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


@pytest.fixture
def storescp(tmp_path: Path) -> Iterator[int]:
    """dcmtk's storescp as the facility's PACS, on a free port."""
    yield from _storescp(tmp_path)


@pytest.fixture
def refusing_storescp(tmp_path: Path) -> Iterator[int]:
    """A PACS that refuses every association."""
    yield from _storescp(tmp_path, "--refuse")


class MllpPeer:
    """A bare MLLP listener: answers each framed message with an ACK of the given code,
    built here by hand, and keeps what it received."""

    def __init__(self, code: str = "AA") -> None:
        self.code = code
        self.received: list[str] = []
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(4)
        self.port = int(self.server.getsockname()[1])
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\x1c\r" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                text = data[data.find(b"\x0b") + 1 : data.find(b"\x1c")].decode()
                self.received.append(text)
                msh = text.split("\r")[0].split("|")
                ack = (
                    f"MSH|^~\\&|PEER|PEER|{msh[2]}|{msh[3]}|20270101000000||ACK^R01^ACK|"
                    f"A{msh[9]}|T|2.5.1\rMSA|{self.code}|{msh[9]}|peer says {self.code}\r"
                )
                conn.sendall(b"\x0b" + ack.encode() + b"\x1c\r")

    def close(self) -> None:
        self.server.close()
        self.thread.join(timeout=5)


@pytest.fixture
def mllp_peer() -> Iterator[MllpPeer]:
    peer = MllpPeer()
    yield peer
    peer.close()


class _FhirHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path != "/fhir/metadata":
            self.send_error(404)
            return
        body = json.dumps(
            {"resourceType": "CapabilityStatement", "status": "active", "fhirVersion": "4.0.1"}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read the requests, not the server's log."""


@pytest.fixture
def fhir_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FhirHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _tested(event_peer: str) -> AuditEvent:
    return AuditEvent.objects.filter(detail__connection_test__peer=event_peer).latest("id")


# Connection tests refuse to run inside a transaction: these tests commit.
live = pytest.mark.django_db(transaction=True)


@live
def test_c_echo_to_a_real_pacs_succeeds_and_is_audited(api, group_admin, facility_a, storescp):
    configure(facility_a, pacs_port=storescp)
    response = api(group_admin).post(peer_test_url(facility_a), {"peer": "pacs"}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["ok"] is True and body["code"] == "0x0000", body
    assert f"127.0.0.1:{storescp}" in body["detail"]
    event = _tested("pacs")
    assert event.actor == group_admin and event.object_id == str(facility_a.pk)
    assert event.reading_group_id == facility_a.reading_group_id
    assert event.detail["connection_test"]["ok"] is True
    assert event.detail["connection_test"]["target"] == f"PACS@127.0.0.1:{storescp}"


@live
def test_c_echo_to_a_pacs_that_refuses_says_so(api, group_admin, facility_a, refusing_storescp):
    configure(facility_a, pacs_port=refusing_storescp)
    body = api(group_admin).post(peer_test_url(facility_a), {"peer": "pacs"}, format="json").json()
    # storescp sends its A-ASSOCIATE-RJ and closes at once; on a busy machine the close
    # can reach us as a reset before the RJ is read, which pynetdicom reports as an
    # abort.  Either way: not ok, and said so, naming the PACS.
    assert body["ok"] is False and body["code"] in ("rejected", "aborted"), body
    assert f"PACS at 127.0.0.1:{refusing_storescp}" in body["detail"]


@live
def test_c_echo_to_a_dead_port_fails_clearly_and_quickly(api, group_admin, facility_a):
    configure(facility_a, pacs_port=free_port())
    start = time.monotonic()
    body = api(group_admin).post(peer_test_url(facility_a), {"peer": "pacs"}, format="json").json()
    assert time.monotonic() - start < 10
    assert body["ok"] is False and body["code"] == "network", body
    assert "ConnectionRefusedError" in body["detail"], body
    assert _tested("pacs").detail["connection_test"]["ok"] is False


@live
def test_a_test_oru_reaches_a_real_mllp_peer_marked_as_a_test(
    api, group_admin, facility_a, mllp_peer
):
    configure(facility_a, endpoint={"kind": "mllp", "host": "127.0.0.1", "port": mllp_peer.port})
    endpoint = FacilityEndpoint.objects.get(facility=facility_a)
    response = api(group_admin).post(
        peer_test_url(facility_a), {"peer": "endpoint", "endpoint": endpoint.pk}, format="json"
    )
    body = response.json()
    assert body["ok"] is True and body["code"] == "AA", body
    [message] = mllp_peer.received
    msh = message.split("\r")[0].split("|")
    assert msh[8] == "ORU^R01^ORU_R01"
    assert msh[10] == "T"  # processing id: test
    assert "TEST^CONNECTION" in message
    assert _tested("endpoint").detail["connection_test"]["code"] == "AA"


@live
def test_a_peer_that_answers_ae_is_reported_with_its_code(api, group_admin, facility_a):
    peer = MllpPeer(code="AE")
    try:
        configure(facility_a, endpoint={"kind": "mllp", "host": "127.0.0.1", "port": peer.port})
        body = (
            api(group_admin)
            .post(peer_test_url(facility_a), {"peer": "endpoint"}, format="json")
            .json()
        )
    finally:
        peer.close()
    assert body["ok"] is False and body["code"] == "AE", body
    assert "peer says AE" in body["detail"]


@live
def test_an_mllp_endpoint_on_a_dead_port_fails_clearly(api, group_admin, facility_a):
    configure(facility_a, endpoint={"kind": "mllp", "host": "127.0.0.1", "port": free_port()})
    body = (
        api(group_admin).post(peer_test_url(facility_a), {"peer": "endpoint"}, format="json").json()
    )
    assert body["ok"] is False and body["code"] == "network", body
    assert "ConnectionRefusedError" in body["detail"]


@live
def test_a_fhir_endpoint_is_tested_with_its_capability_statement(
    api, group_admin, facility_a, fhir_server
):
    url = f"http://127.0.0.1:{fhir_server}/fhir/DiagnosticReport"
    configure(facility_a, endpoint={"kind": "fhir_https", "url": url})
    body = (
        api(group_admin).post(peer_test_url(facility_a), {"peer": "endpoint"}, format="json").json()
    )
    assert body["ok"] is True and body["code"] == "200", body
    assert "FHIR 4.0.1" in body["detail"]


@live
def test_a_fhir_endpoint_the_transport_refuses_is_not_contacted(api, group_admin, facility_a):
    configure(facility_a, endpoint={"kind": "fhir_https", "url": "http://fhir.example.test/fhir"})
    items = items_of(api(group_admin).get(checklist_url(facility_a)).json())
    assert items["result_endpoint"]["status"] == "warning"
    body = (
        api(group_admin).post(peer_test_url(facility_a), {"peer": "endpoint"}, format="json").json()
    )
    assert body["ok"] is False and body["code"] == "refused", body


@live
def test_testing_a_peer_the_facility_lacks_is_a_400(api, group_admin, facility_a):
    response = api(group_admin).post(peer_test_url(facility_a), {"peer": "pacs"}, format="json")
    assert response.status_code == 400
    response = api(group_admin).post(peer_test_url(facility_a), {"peer": "endpoint"}, format="json")
    assert response.status_code == 400
    response = api(group_admin).post(peer_test_url(facility_a), {"peer": "ftp"}, format="json")
    assert response.status_code == 400


@live
def test_connection_tests_are_rate_limited_on_the_api_and_the_page(
    settings, api, group_admin, facility_a
):
    configure(facility_a, pacs_port=free_port())
    rest = dict(settings.REST_FRAMEWORK)
    rest["DEFAULT_THROTTLE_RATES"] = {**rest["DEFAULT_THROTTLE_RATES"], "connection-test": "2/min"}
    settings.REST_FRAMEWORK = rest
    cache.clear()
    client = api(group_admin)
    assert (
        client.post(peer_test_url(facility_a), {"peer": "pacs"}, format="json").status_code == 200
    )
    page = Client()
    page.force_login(group_admin)
    url = f"/facilities/{facility_a.pk}/checklist/test/"
    answer = page.post(url, {"peer": "pacs"}, HTTP_HX_REQUEST="true")
    assert answer.status_code == 200 and b'data-ok="false"' in answer.content
    throttled = client.post(peer_test_url(facility_a), {"peer": "pacs"}, format="json")
    assert throttled.status_code == 429
    assert page.post(url, {"peer": "pacs"}).status_code == 429
    cache.clear()


@live
def test_the_page_runs_a_test_and_shows_the_result(group_admin, facility_a, storescp):
    configure(facility_a, pacs_port=storescp)
    client = Client()
    client.force_login(group_admin)
    answer = client.post(
        f"/facilities/{facility_a.pk}/checklist/test/", {"peer": "pacs"}, HTTP_HX_REQUEST="true"
    )
    assert answer.status_code == 200
    assert b'data-ok="true"' in answer.content and b"0x0000" in answer.content


def test_a_connection_test_inside_a_transaction_is_refused(group_admin, facility_a):
    from onboarding.services import facility_peer_test

    with pytest.raises(RuntimeError, match="outside a transaction"):
        facility_peer_test(actor=group_admin, facility=facility_a, peer="pacs")
