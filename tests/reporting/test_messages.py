"""Result messages built from plain data: the HL7 ORU^R01 parses back with the right
segments and values, the FHIR DiagnosticReport validates, ACKs are read right.
No database."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt

import pytest
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from hl7apy.parser import parse_message

from reporting import messages as m

SIGNED = dt.datetime(2026, 6, 1, 14, 30, 5, tzinfo=dt.UTC)
RECEIVED = dt.datetime(2026, 6, 1, 13, 55, tzinfo=dt.UTC)

SCHEMA = {
    "sections": [
        {
            "key": "clinical",
            "title": "Clinical information",
            "fields": [{"key": "indication", "label": "Indication", "type": "text"}],
        },
        {
            "key": "findings",
            "title": "Findings",
            "fields": [
                {"key": "brain", "label": "Brain", "type": "text"},
                {"key": "bleed", "label": "Haemorrhage", "type": "yes_no"},
                {"key": "shift", "label": "Midline shift", "type": "number", "unit": "mm"},
                {"key": "mass", "label": "Mass", "type": "measurement", "unit": "mm"},
                {"key": "signs", "label": "Signs", "type": "multi_choice", "choices": ["a", "b"]},
                {"key": "empty", "label": "Empty", "type": "text"},
            ],
        },
        {
            "key": "unused",
            "title": "Unused",
            "fields": [{"key": "x", "label": "X", "type": "text"}],
        },
    ]
}
VALUES = {
    "indication": "Fall | head strike ^ 2h ago",
    "brain": "Normal grey-white\ndifferentiation.",
    "bleed": False,
    "shift": 2.5,
    "mass": [12, 8.5],
    "signs": ["a", "b"],
    "empty": "  ",
}


def facts(**changes: object) -> m.ReportFacts:
    base = m.ReportFacts(
        report_id=42,
        control_id="R42V3",
        created_at=SIGNED,
        sending_application="TELERAD",
        sending_facility="Group A & Partners",
        receiving_application="RIS",
        receiving_facility="FAC_A",
        patient_id="PID00001",
        patient_id_authority="FAC_A",
        patient_name="DOE^JANE^Q",
        patient_birth_date=dt.date(1970, 1, 2),
        patient_sex="F",
        accession_number="ACC000001",
        study_instance_uid="1.2.826.0.1.3680043.8.498.1",
        procedure_code="CTHEAD",
        study_description="CT head without contrast",
        modality="CT",
        observed_at=RECEIVED,
        signed_at=SIGNED,
        signer_id=7,
        signer_name="Dr Local",
        impression="No acute intracranial finding.\nNo mass effect.",
        findings=m.report_sections(SCHEMA, VALUES),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


ADDENDUM = m.AddendumFacts(
    number=1,
    text="Correction: small & old lacunar infarct.",
    signed_at=SIGNED + dt.timedelta(hours=1),
    signed_by="Dr Local",
)


def test_sections_render_the_filled_fields_readably():
    sections = m.report_sections(SCHEMA, VALUES)
    assert [s.key for s in sections] == ["clinical", "findings"]  # empty sections dropped
    assert sections[0].text == "Fall | head strike ^ 2h ago"  # a lone field: its text alone
    assert sections[1].text.splitlines() == [
        "Brain: Normal grey-white",
        "differentiation.",
        "Haemorrhage: No",
        "Midline shift: 2.5 mm",
        "Mass: 12 x 8.5 mm",
        "Signs: a, b",
    ]


def parse(text: str):  # type: ignore[no-untyped-def]
    assert text.endswith("\r") and "\n" not in text
    return parse_message(text.rstrip("\r"), find_groups=False)


def test_hl7_final_parses_back_with_msh_pid_obr_obx():
    text = m.build_hl7(facts())
    message = parse(text)
    assert [s.name for s in message.children][:3] == ["MSH", "PID", "OBR"]
    msh = message.msh
    assert msh.msh_9.value == "ORU^R01^ORU_R01"
    assert msh.msh_10.value == "R42V3"
    assert msh.msh_12.value == "2.5.1"
    assert msh.msh_3.value == "TELERAD"
    assert msh.msh_4.value == "Group A \\T\\ Partners"  # the & escaped
    assert m.hl7_unescape(msh.msh_4.value) == "Group A & Partners"
    assert (msh.msh_5.value, msh.msh_6.value) == ("RIS", "FAC_A")
    assert msh.msh_7.value == "20260601143005+0000"

    pid = message.pid
    assert pid.pid_3.pid_3_1.value == "PID00001"
    assert pid.pid_3.pid_3_4.value == "FAC_A"
    assert pid.pid_5.pid_5_1.value == "DOE" and pid.pid_5.pid_5_2.value == "JANE"
    assert pid.pid_7.value == "19700102" and pid.pid_8.value == "F"

    obr = message.obr
    assert obr.obr_3.value == "ACC000001"
    assert obr.obr_4.obr_4_1.value == "CTHEAD"
    assert obr.obr_4.obr_4_2.value == "CT head without contrast"
    assert obr.obr_7.value == "20260601135500+0000"
    assert obr.obr_25.value == "F"

    obx = message.obx
    assert all(o.obx_11.value == "F" for o in obx)
    assert [o.obx_1.value for o in obx] == [str(n) for n in range(1, len(obx) + 1)]
    assert obx[0].obx_2.value == "HD" and obx[0].obx_5.value == "1.2.826.0.1.3680043.8.498.1"
    assert obx[0].obx_3.obx_3_1.value == "113014"  # DICOM Study (IHE)
    by_section: dict[str, list[str]] = {}
    for o in obx[1:]:
        assert o.obx_2.value == "TX"
        by_section.setdefault(o.obx_3.obx_3_1.value, []).append(m.hl7_unescape(o.obx_5.value))
    assert by_section["CLINICAL"] == ["Fall | head strike ^ 2h ago"]
    assert by_section["FINDINGS"][:2] == ["Brain: Normal grey-white", "differentiation."]
    assert by_section["IMP"] == ["No acute intracranial finding.", "No mass effect."]
    assert "ADD" not in by_section


def test_hl7_addendum_is_a_correction_carrying_the_final_and_the_addendum():
    message = parse(m.build_hl7(facts(control_id="R42A1", addenda=[ADDENDUM])))
    assert message.msh.msh_10.value == "R42A1"
    assert message.obr.obr_25.value == "C"
    assert {o.obx_11.value for o in message.obx} == {"C"}
    lines = {o.obx_3.obx_3_1.value: m.hl7_unescape(o.obx_5.value) for o in message.obx}
    assert lines["ADD"] == "Correction: small & old lacunar infarct."
    assert lines["IMP"]  # the final's impression is still there
    assert message.obr.obr_22.value == "20260601153005+0000"  # the addendum's signature


def test_hl7_unknown_sex_and_missing_birth_date():
    message = parse(m.build_hl7(facts(patient_sex="", patient_birth_date=None)))
    assert message.pid.pid_8.value == "U"
    assert message.pid.pid_7.value == ""


@pytest.mark.parametrize("text", ["a|b^c&d~e\\f", "\\F\\ literally", "line\nbreak", "", "plain"])
def test_hl7_escaping_round_trips(text):
    escaped = m.hl7_escape(text)
    assert not set("|^&~\r\n") & set(escaped)
    assert m.hl7_unescape(escaped) == text.replace("\n", " ")


def test_fhir_final_validates_with_the_study_and_the_impression():
    resource = m.build_fhir(facts())
    report = DiagnosticReport.model_validate(resource)
    assert report.status == "final"
    assert report.id == "R42V3"
    assert report.conclusion == "No acute intracranial finding.\nNo mass effect."
    study = report.imagingStudy[0]
    assert study.identifier.system == "urn:dicom:uid"
    assert study.identifier.value == "urn:oid:1.2.826.0.1.3680043.8.498.1"
    assert report.code.coding[0].code == "CTHEAD"
    assert {i.value for i in report.identifier} == {"42", "ACC000001"}
    assert resource["subject"] == {"reference": "#patient", "display": "JANE Q DOE"}
    patient = resource["contained"][0]
    assert patient["birthDate"] == "1970-01-02" and patient["gender"] == "female"
    assert patient["identifier"][0]["value"] == "PID00001"
    assert report.resultsInterpreter[0].display == "Dr Local"
    assert resource["effectiveDateTime"].startswith("2026-06-01T13:55:00")
    assert resource["issued"].startswith("2026-06-01T14:30:05")
    text = base64.b64decode(resource["presentedForm"][0]["data"]).decode()
    assert "FINDINGS:\nBrain: Normal grey-white" in text
    assert "IMPRESSION:\nNo acute intracranial finding." in text


def test_fhir_addendum_is_appended_and_issued_at_the_addendum():
    resource = m.build_fhir(facts(control_id="R42A1", addenda=[ADDENDUM]))
    DiagnosticReport.model_validate(resource)
    assert resource["status"] == "appended"
    assert resource["issued"].startswith("2026-06-01T15:30:05")
    text = base64.b64decode(resource["presentedForm"][0]["data"]).decode()
    assert "ADDENDUM 1:\nCorrection: small & old lacunar infarct." in text


def test_fhir_without_a_name_or_procedure_code_still_validates():
    resource = m.build_fhir(facts(patient_name="", procedure_code="", patient_sex="X"))
    DiagnosticReport.model_validate(resource)
    assert "display" not in resource["subject"]
    assert "coding" not in resource["code"]
    assert resource["contained"][0]["gender"] == "unknown"


def test_acks_are_read_from_the_msa():
    message = m.build_hl7(facts())
    ack = m.parse_ack(m.build_hl7_ack(message))
    assert (ack.code, ack.control_id, ack.accepted, ack.rejected) == ("AA", "R42V3", True, False)
    nak = m.parse_ack(m.build_hl7_ack(message, code="AE", text="busy | later"))
    assert not nak.accepted and not nak.rejected
    assert m.hl7_unescape(nak.text) == "busy | later"
    assert m.parse_ack(m.build_hl7_ack(message, code="AR")).rejected
    assert m.parse_ack("MSH|^~\\&|X\nMSA|CA|R1").accepted  # LF separators, short MSA
    with pytest.raises(ValueError, match="no MSA"):
        m.parse_ack("MSH|^~\\&|X\r")
