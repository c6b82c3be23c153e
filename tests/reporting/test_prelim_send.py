"""Results the facility can rely on, in the messages themselves: a preliminary read is
sent (OBR-25/OBX-11 P, FHIR "preliminary") and the final replaces it (F / final); a
critical finding is flagged (OBX-8 AA, the FHIR impression's interpretation AA); the
order's placer and filler numbers are echoed (ORC-2/3, OBR-2/3, FHIR basedOn).
Delivered to independent peers on the loopback (tests/reporting/result_peers.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation

from reporting.models import FacilityEndpoint, Report, ReportMessage
from reporting.services.critical import critical_communication_record
from reporting.services.reports import report_addendum_add, report_save_draft, report_sign
from tests import factories as f
from tests.reporting.conftest import COMPLETE_VALUES, NOW
from tests.reporting.result_peers import FhirPeer, MllpPeer, segments

pytestmark = pytest.mark.django_db

HL7, FHIR = ReportMessage.Kind.HL7, ReportMessage.Kind.FHIR


@pytest.fixture
def peer() -> Iterator[MllpPeer]:
    listener = MllpPeer()
    yield listener
    listener.close()


@pytest.fixture
def sign(claimed, reader, ct_head, django_capture_on_commit_callbacks):
    """Save the claimed study's report and sign it, running what commits enqueue."""

    def run(status: str, **draft: Any) -> Report:
        if not Report.objects.filter(study=claimed).exists():
            # A new report starts from the template's normal text, then these values.
            draft.update(template_id=ct_head.pk, values=COMPLETE_VALUES)
        report = report_save_draft(
            study_id=claimed.pk,
            radiologist=reader,
            impression=draft.pop("impression", "No acute intracranial finding."),
            **draft,
        )
        if report.critical_severity == "critical":
            critical_communication_record(
                report_id=report.pk,
                radiologist=reader,
                recipient_name="Dr Ward",
                recipient_role="ED physician",
                method="phone",
                communicated_at=NOW,
                read_back_confirmed=True,
            )
        with django_capture_on_commit_callbacks(execute=True):
            report_sign(report_id=report.pk, radiologist=reader, status=status)
        return Report.objects.get(pk=report.pk)

    return run


def _obx(message: str) -> list[list[str]]:
    return segments(message)["OBX"]


def test_preliminary_is_sent_then_the_final_replaces_it(sign, peer, facility_a, reader):
    FacilityEndpoint.objects.create(
        facility=facility_a, kind="mllp", host="127.0.0.1", port=peer.port, timeout_seconds=5
    )
    peer.start(["AA", "AA"])
    report = sign("preliminary", impression="Probable small subdural haematoma.")
    prelim = ReportMessage.objects.get(report=report, kind=HL7)
    assert prelim.result_status == "preliminary"
    assert prelim.delivery_status == "sent"
    assert (prelim.ack_code, prelim.ack_control_id) == ("AA", prelim.control_id)
    assert prelim.ack_at is not None
    assert ReportMessage.objects.get(report=report, kind=FHIR).delivery_status == "stored"
    first = segments(peer.received[0])
    assert first["OBR"][0][25] == "P"
    assert {row[11] for row in first["OBX"]} == {"P"}
    assert first["OBR"][0][32].split("&")[1] == reader.display_name  # the prelim's signer

    report = sign("final", impression="Small subdural haematoma.")
    final = ReportMessage.objects.filter(report=report, kind=HL7).latest("id")
    assert final.result_status == "final" and final.delivery_status == "sent"
    assert final.control_id != prelim.control_id
    second = segments(peer.received[1])
    assert second["OBR"][0][25] == "F"
    assert {row[11] for row in second["OBX"]} == {"F"}
    # Same order numbers in both: the receiver replaces the preliminary by the final.
    assert first["OBR"][0][3] == second["OBR"][0][3] == report.study.accession_number
    impression = [row[5] for row in second["OBX"] if row[3].startswith("IMP^")]
    assert impression == ["Small subdural haematoma."]


def test_preliminary_and_final_over_fhir(sign, facility_a):
    server = FhirPeer([(201, ""), (201, "")])
    try:
        FacilityEndpoint.objects.create(facility=facility_a, kind="fhir_https", url=server.url)
        sign("preliminary")
        report = sign("final")
        statuses = [body["status"] for body in server.received]
        assert statuses == ["preliminary", "final"]
        for body in server.received:
            DiagnosticReport.model_validate(body)
        rows = ReportMessage.objects.filter(report=report, kind=FHIR).order_by("id")
        assert [(m.result_status, m.delivery_status, m.http_status) for m in rows] == [
            ("preliminary", "sent", 201),
            ("final", "sent", 201),
        ]
        assert rows[0].ack_text == "information: Created"
    finally:
        server.close()


def test_an_addendum_after_a_preliminary_and_a_final_is_amended(
    sign, reader, django_capture_on_commit_callbacks
):
    sign("preliminary")
    report = sign("final")
    with django_capture_on_commit_callbacks(execute=True):
        report_addendum_add(report_id=report.pk, radiologist=reader, text="Also: sinusitis.")
    rows = ReportMessage.objects.filter(report=report, kind=HL7).order_by("id")
    assert [m.result_status for m in rows] == ["preliminary", "final", "amended"]
    assert [segments(m.payload)["OBR"][0][25] for m in rows] == ["P", "F", "C"]
    fhir = ReportMessage.objects.filter(report=report, kind=FHIR).order_by("id")
    assert [json.loads(m.payload)["status"] for m in fhir] == ["preliminary", "final", "appended"]


def test_a_critical_finding_is_flagged_on_the_impression(sign):
    report = sign("final", critical_severity="critical", impression="Acute subdural haematoma.")
    hl7 = ReportMessage.objects.get(report=report, kind=HL7).payload
    flags = {(row[3].split("^")[0], row[8]) for row in _obx(hl7)}
    # HL7 table 0078 "AA" on the impression's rows only; the other rows carry none.
    assert ("IMP", "AA") in flags
    assert {flag for code, flag in flags if code != "IMP"} == {""}
    fhir = json.loads(ReportMessage.objects.get(report=report, kind=FHIR).payload)
    DiagnosticReport.model_validate(fhir)
    observation = next(r for r in fhir["contained"] if r["resourceType"] == "Observation")
    Observation.model_validate(observation)
    assert fhir["result"] == [{"reference": f"#{observation['id']}"}]
    coding = observation["interpretation"][0]["coding"][0]
    assert coding["system"] == "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
    assert coding["code"] == "AA"
    assert observation["valueString"] == "Acute subdural haematoma."


def test_no_flag_without_a_critical_finding(sign):
    report = sign("final")
    hl7 = ReportMessage.objects.get(report=report, kind=HL7).payload
    assert {row[8] if len(row) > 8 else "" for row in _obx(hl7)} == {""}
    fhir = json.loads(ReportMessage.objects.get(report=report, kind=FHIR).payload)
    observation = next(r for r in fhir["contained"] if r["resourceType"] == "Observation")
    assert "interpretation" not in observation


def test_the_order_numbers_are_echoed(sign, claimed, facility_a):
    f.OrderFactory(
        facility=facility_a,
        accession_number=claimed.accession_number,
        study=claimed,
        placer_order_number="PLACER-77",
        filler_order_number="FILLER-88",
    )
    report = sign("final")
    parts = segments(ReportMessage.objects.get(report=report, kind=HL7).payload)
    orc, obr = parts["ORC"][0], parts["OBR"][0]
    assert (orc[1], orc[2], orc[3]) == ("RE", "PLACER-77", "FILLER-88")
    assert (obr[2], obr[3]) == ("PLACER-77", "FILLER-88")
    assert list(parts)[:4] == ["MSH", "PID", "ORC", "OBR"]
    fhir = json.loads(ReportMessage.objects.get(report=report, kind=FHIR).payload)
    DiagnosticReport.model_validate(fhir)
    based_on = {
        ref["identifier"]["type"]["coding"][0]["code"]: ref["identifier"]["value"]
        for ref in fhir["basedOn"]
    }
    assert based_on == {"PLAC": "PLACER-77", "FILL": "FILLER-88"}
    assert {ref["type"] for ref in fhir["basedOn"]} == {"ServiceRequest"}


def test_an_order_without_a_filler_number_falls_back_to_the_accession(sign, claimed, facility_a):
    f.OrderFactory(
        facility=facility_a,
        accession_number=claimed.accession_number,
        study=claimed,
        placer_order_number="PLACER-1",
        filler_order_number="",
    )
    report = sign("final")
    parts = segments(ReportMessage.objects.get(report=report, kind=HL7).payload)
    assert (parts["OBR"][0][2], parts["OBR"][0][3]) == ("PLACER-1", claimed.accession_number)
    fhir = json.loads(ReportMessage.objects.get(report=report, kind=FHIR).payload)
    assert [ref["identifier"]["value"] for ref in fhir["basedOn"]] == ["PLACER-1"]


def test_without_an_order_the_message_is_as_before(sign, claimed):
    report = sign("final")
    parts = segments(ReportMessage.objects.get(report=report, kind=HL7).payload)
    assert "ORC" not in parts
    assert (parts["OBR"][0][2], parts["OBR"][0][3]) == ("", claimed.accession_number)
    assert "basedOn" not in json.loads(ReportMessage.objects.get(report=report, kind=FHIR).payload)
