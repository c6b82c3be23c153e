"""Result messages for the facility's systems: an HL7 v2.5.1 ORU^R01 and a FHIR R4
DiagnosticReport built from one signed report (and its addenda), and the reading of
an HL7 acknowledgement.

Pure: plain data in, a string or a dict out; no database, no Django.  hl7apy lays
out the segments of the ORU^R01 structure (and checks it); fhir.resources validates
the DiagnosticReport (R4B, whose DiagnosticReport is R4's).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any

from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from hl7apy.core import Message

HL7_VERSION = "2.5.1"
SEGMENT_SEPARATOR = "\r"
# HL7 table 0123 (result status): P preliminary; F final; C correction, used here
# for every addendum, which the receiving system applies on top of the final it
# already has.  Each replaces the last one the receiver has of the same order.
HL7_STATUS_PRELIMINARY = "P"
HL7_STATUS_FINAL = "F"
HL7_STATUS_CORRECTED = "C"
# FHIR DiagnosticReport.status: "appended" is the "amended" of an addendum (new
# content added after final, the existing content unchanged).
FHIR_STATUS_PRELIMINARY = "preliminary"
FHIR_STATUS_FINAL = "final"
FHIR_STATUS_APPENDED = "appended"

# HL7 table 0078 (abnormal flags, OBX-8): "AA" is the flag for a non-numeric result
# beyond the panic limits ("very abnormal" in 2.5.1, "critically abnormal" from 2.7),
# i.e. a critical finding; "A" abnormal, for an urgent one.  FHIR says the same with
# v3-ObservationInterpretation's codes of the same names.
FLAG_CRITICAL = "AA"
FLAG_ABNORMAL = "A"
SYSTEM_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
_INTERPRETATION_DISPLAY = {FLAG_CRITICAL: "Critical abnormal", FLAG_ABNORMAL: "Abnormal"}
# LOINC 19005-8: the impression of an imaging study, as narrative.
SYSTEM_LOINC = "http://loinc.org"
LOINC_IMPRESSION = "19005-8"

# Local identifier systems (a facility maps them; they are stable, not resolvable).
SYSTEM_REPORT = "urn:teleradiology:report"
SYSTEM_PROCEDURE = "urn:teleradiology:procedure-code"
SYSTEM_RADIOLOGIST = "urn:teleradiology:radiologist"
SYSTEM_ACCESSION_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"
SYSTEM_DIAGNOSTIC_SECTION = "http://terminology.hl7.org/CodeSystem/v2-0074"
SYSTEM_DICOM_UID = "urn:dicom:uid"

_SEX_TO_FHIR = {"M": "male", "F": "female", "O": "other"}


@dataclasses.dataclass(frozen=True)
class Section:
    """A titled block of report text (one template section, the impression, an addendum)."""

    key: str
    title: str
    text: str


@dataclasses.dataclass(frozen=True)
class AddendumFacts:
    number: int
    text: str
    signed_at: dt.datetime
    signed_by: str


@dataclasses.dataclass(frozen=True)
class ReportFacts:
    """Everything a result message says about one signed report, as plain data."""

    report_id: int
    control_id: str  # unique per message content: MSH-10 and the FHIR resource id
    created_at: dt.datetime
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    patient_id: str
    patient_id_authority: str
    patient_name: str  # DICOM person name: FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX
    patient_birth_date: dt.date | None
    patient_sex: str  # M, F, O or "" (unknown)
    accession_number: str
    study_instance_uid: str
    procedure_code: str
    study_description: str
    modality: str
    observed_at: dt.datetime
    signed_at: dt.datetime
    signer_id: int
    signer_name: str
    impression: str
    findings: Sequence[Section]
    addenda: Sequence[AddendumFacts] = ()
    # A preliminary read (signed_at and the signer are the preliminary signature's).
    preliminary: bool = False
    # HL7 table 0078 flag of the whole result: FLAG_CRITICAL, FLAG_ABNORMAL or "".
    abnormal_flag: str = ""
    # The facility's order numbers (ORC-2/OBR-2, ORC-3/OBR-3); without an order the
    # filler's number is the accession number, as before orders were kept.
    placer_order_number: str = ""
    filler_order_number: str = ""

    @property
    def is_addendum(self) -> bool:
        return bool(self.addenda)

    @property
    def hl7_status(self) -> str:
        """OBR-25 / OBX-11: P, F, or C for an addendum."""
        if self.is_addendum:
            return HL7_STATUS_CORRECTED
        return HL7_STATUS_PRELIMINARY if self.preliminary else HL7_STATUS_FINAL

    @property
    def fhir_status(self) -> str:
        if self.is_addendum:
            return FHIR_STATUS_APPENDED
        return FHIR_STATUS_PRELIMINARY if self.preliminary else FHIR_STATUS_FINAL

    @property
    def issued_at(self) -> dt.datetime:
        """When this content became what it is: the last addendum's signature, or the final's."""
        return self.addenda[-1].signed_at if self.addenda else self.signed_at


# --- Report text ----------------------------------------------------------------------
def _field_text(field: Mapping[str, Any], value: Any) -> str:
    kind, unit = field.get("type"), field.get("unit", "")
    if value is None or value == [] or (isinstance(value, str) and not value.strip()):
        return ""
    if kind == "yes_no":
        return "Yes" if value else "No"
    if kind == "multi_choice":
        return ", ".join(str(v) for v in value)
    if kind == "measurement":
        return " x ".join(f"{v:g}" for v in value) + (f" {unit}" if unit else "")
    if kind == "number":
        return f"{value:g}" + (f" {unit}" if unit else "")
    return str(value).strip()


def report_sections(schema: Mapping[str, Any], values: Mapping[str, Any]) -> list[Section]:
    """The report's filled fields as readable text, one block per template section
    ("Label: value" lines; a section's lone text field is its text alone)."""
    sections = []
    for section in schema.get("sections", []):
        fields = section.get("fields", [])
        lines = []
        for field in fields:
            text = _field_text(field, values.get(field["key"]))
            if not text:
                continue
            lines.append(text if len(fields) == 1 else f"{field['label']}: {text}")
        if lines:
            sections.append(
                Section(key=section["key"], title=section["title"], text="\n".join(lines))
            )
    return sections


def report_plain_text(facts: ReportFacts) -> str:
    """The whole report as text for humans (the FHIR presentedForm)."""
    parts = [f"{facts.study_description or facts.procedure_code}".strip()]
    parts += [f"{s.title.upper()}:\n{s.text}" for s in facts.findings]
    parts.append(f"IMPRESSION:\n{facts.impression}")
    signed = "Preliminary read, signed" if facts.preliminary else "Signed"
    parts.append(f"{signed} by {facts.signer_name} at {facts.signed_at.isoformat()}")
    for addendum in facts.addenda:
        parts.append(
            f"ADDENDUM {addendum.number}:\n{addendum.text}\n"
            f"Signed by {addendum.signed_by} at {addendum.signed_at.isoformat()}"
        )
    return "\n\n".join(p for p in parts if p)


# --- HL7 v2 ---------------------------------------------------------------------------
_ESCAPES = (("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\"))


def hl7_escape(text: str) -> str:
    """Text safe inside one HL7 component (the escape character first)."""
    for char, sequence in _ESCAPES:
        text = text.replace(char, sequence)
    # A segment ends at a carriage return; line structure is carried by OBX rows.
    return " ".join(text.splitlines())


_UNESCAPE = re.compile(r"\\([EFSTR])\\")
_UNESCAPED = {"E": "\\", "F": "|", "S": "^", "T": "&", "R": "~"}


def hl7_unescape(text: str) -> str:
    """The inverse of hl7_escape for one component (one pass, left to right)."""
    return _UNESCAPE.sub(lambda match: _UNESCAPED[match.group(1)], text)


def _ts(moment: dt.datetime) -> str:
    """HL7 DTM with seconds and the UTC offset (e.g. 20261122143000+0000)."""
    return moment.strftime("%Y%m%d%H%M%S%z")


def _components(*values: str) -> str:
    return "^".join(hl7_escape(v) for v in values).rstrip("^")


def _person_name(dicom_name: str) -> str:
    # A DICOM PN (FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX) is already an XPN's first five components.
    return _components(*dicom_name.split("^")[:5])


def _text_rows(section: Section) -> list[str]:
    lines = [line.rstrip() for line in section.text.splitlines()]
    return lines or [""]


def build_hl7(facts: ReportFacts) -> str:
    """An HL7 v2.5.1 ORU^R01 for the report: MSH, PID, ORC (when the order is known),
    OBR (placer and filler numbers, procedure, status P, F or C), one OBX of the DICOM
    study UID and one TX OBX per line of each section, the impression and every
    addendum; the impression's rows flagged AA/A in OBX-8 for a critical/urgent
    finding.  Segments end with a carriage return."""
    status = facts.hl7_status
    filler = facts.filler_order_number or facts.accession_number
    message = Message("ORU_R01", version=HL7_VERSION)
    msh = message.msh
    msh.msh_3 = _components(facts.sending_application)
    msh.msh_4 = _components(facts.sending_facility)
    msh.msh_5 = _components(facts.receiving_application)
    msh.msh_6 = _components(facts.receiving_facility)
    msh.msh_7 = _ts(facts.created_at)
    msh.msh_9 = "ORU^R01^ORU_R01"
    msh.msh_10 = _components(facts.control_id)
    msh.msh_11 = "P"
    msh.msh_18 = "UNICODE UTF-8"

    result = message.add_group("ORU_R01_PATIENT_RESULT")
    pid = result.add_group("ORU_R01_PATIENT").pid
    pid.pid_1 = "1"
    pid.pid_3 = "^".join(
        [hl7_escape(facts.patient_id), "", "", hl7_escape(facts.patient_id_authority), "MR"]
    )
    pid.pid_5 = _person_name(facts.patient_name)
    if facts.patient_birth_date:
        pid.pid_7 = facts.patient_birth_date.strftime("%Y%m%d")
    pid.pid_8 = facts.patient_sex if facts.patient_sex in ("M", "F", "O") else "U"

    order = result.add_group("ORU_R01_ORDER_OBSERVATION")
    if facts.placer_order_number or facts.filler_order_number:
        # Only with an order: a receiver without orders from us gets what it always got.
        orc = order.add_segment("ORC")
        orc.orc_1 = "RE"  # observations to follow
        if facts.placer_order_number:
            orc.orc_2 = _components(facts.placer_order_number)
        orc.orc_3 = _components(filler)
    obr = order.obr
    obr.obr_1 = "1"
    if facts.placer_order_number:
        obr.obr_2 = _components(facts.placer_order_number)
    obr.obr_3 = _components(filler)
    obr.obr_4 = _components(facts.procedure_code or facts.modality, facts.study_description, "L")
    obr.obr_7 = _ts(facts.observed_at)
    obr.obr_18 = _components(facts.accession_number)
    obr.obr_22 = _ts(facts.issued_at)
    obr.obr_24 = "RAD"
    obr.obr_25 = status
    # NDL: the interpreter's id and name as subcomponents of the first component.
    obr.obr_32 = "&".join([hl7_escape(str(facts.signer_id)), hl7_escape(facts.signer_name)])

    rows: list[tuple[str, str, str, str, str]] = [
        # (value type, observation id, sub-id, value, abnormal flag): IHE's DICOM Study
        # UID observation.
        ("HD", "113014^DICOM Study^DCM", "", hl7_escape(facts.study_instance_uid), ""),
    ]
    impression = Section(key="IMP", title="Impression", text=facts.impression)
    sections = [*facts.findings, impression]
    sections += [
        Section(key="ADD", title=f"Addendum {a.number}", text=a.text) for a in facts.addenda
    ]
    for number, section in enumerate(sections, start=1):
        identifier = _components(section.key.upper(), section.title, "L")
        # The impression carries the flag, as the FHIR impression Observation does.
        flag = facts.abnormal_flag if section is impression else ""
        rows += [
            ("TX", identifier, str(number), hl7_escape(line), flag) for line in _text_rows(section)
        ]
    for set_id, (value_type, identifier, sub_id, value, flag) in enumerate(rows, start=1):
        obx = order.add_group("ORU_R01_OBSERVATION").obx
        obx.obx_1 = str(set_id)
        obx.obx_2 = value_type
        obx.obx_3 = identifier
        if sub_id:
            obx.obx_4 = sub_id
        if value:
            obx.obx_5 = value
        if flag:
            obx.obx_8 = flag
        obx.obx_11 = status
        obx.obx_14 = _ts(facts.issued_at)
    if not message.validate():  # pragma: no cover - hl7apy raises on a bad structure
        raise ValueError("The ORU^R01 does not follow the HL7 2.5.1 structure.")
    return str(message.to_er7()) + SEGMENT_SEPARATOR


@dataclasses.dataclass(frozen=True)
class Ack:
    """What an HL7 acknowledgement said: MSA-1, MSA-2 and MSA-3."""

    code: str
    control_id: str
    text: str

    @property
    def accepted(self) -> bool:
        return self.code in ("AA", "CA")

    @property
    def rejected(self) -> bool:
        """A refusal that sending again will not change (AR/CR); AE/CE may be retried."""
        return self.code in ("AR", "CR")


def parse_ack(text: str) -> Ack:
    """Read the MSA of an ACK; ValueError when there is none.  The text is MSA-3, or
    when that is empty (it is deprecated from 2.5) the first ERR's user message
    (ERR-8) or error code text (ERR-3.2)."""
    msa: list[str] | None = None
    err_text = ""
    for segment in text.replace("\n", "\r").split("\r"):
        separator = segment[3:4] or "|"
        if segment.startswith("MSA") and msa is None:
            msa = segment.split(separator)
            msa += [""] * (4 - len(msa))
        elif segment.startswith("ERR") and not err_text:
            fields = segment.split(separator) + [""] * 9
            err_text = fields[8] or [*fields[3].split("^"), ""][1]
    if msa is None:
        raise ValueError("The acknowledgement has no MSA segment.")
    return Ack(code=msa[1].strip(), control_id=msa[2], text=msa[3] or err_text)


def build_hl7_ack(message: str, *, code: str = "AA", text: str = "") -> str:
    """An original-mode ACK to ``message`` (used by test listeners and by tools)."""
    msh = message.split("\r", 1)[0].split("|")
    msh += [""] * (12 - len(msh))
    control_id = msh[9]
    return (
        SEGMENT_SEPARATOR.join(
            [
                "|".join(
                    [
                        "MSH",
                        "^~\\&",
                        msh[4],
                        msh[5],
                        msh[2],
                        msh[3],
                        msh[6],
                        "",
                        "ACK^R01^ACK",
                        f"ACK{control_id}"[:20],
                        "P",
                        HL7_VERSION,
                    ]
                ),
                f"MSA|{code}|{control_id}|{hl7_escape(text)}",
            ]
        )
        + SEGMENT_SEPARATOR
    )


# --- FHIR R4 ---------------------------------------------------------------------------
def _fhir_instant(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _fhir_patient(facts: ReportFacts) -> dict[str, Any]:
    parts = (facts.patient_name.split("^") + [""] * 5)[:5]
    family, given, middle, prefix, suffix = (p.strip() for p in parts)
    name: dict[str, Any] = {
        "text": " ".join(p for p in (prefix, given, middle, family, suffix) if p)
    }
    if family:
        name["family"] = family
    if given or middle:
        name["given"] = [g for g in (given, middle) if g]
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": "patient",
        "identifier": [
            {
                "type": {"coding": [{"system": SYSTEM_ACCESSION_TYPE, "code": "MR"}]},
                "system": f"urn:teleradiology:patient-id:{facts.patient_id_authority}",
                "value": facts.patient_id or "unknown",
            }
        ],
        "gender": _SEX_TO_FHIR.get(facts.patient_sex, "unknown"),
    }
    if name["text"]:
        patient["name"] = [name]
    if facts.patient_birth_date:
        patient["birthDate"] = facts.patient_birth_date.isoformat()
    return patient


def _fhir_impression(facts: ReportFacts) -> dict[str, Any]:
    """The impression as a contained Observation, its interpretation the result's flag."""
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "id": "impression",
        # An addendum leaves the impression as signed: only the report is appended.
        "status": FHIR_STATUS_PRELIMINARY if facts.preliminary else FHIR_STATUS_FINAL,
        "code": {
            "coding": [
                {
                    "system": SYSTEM_LOINC,
                    "code": LOINC_IMPRESSION,
                    "display": "Radiology Imaging study [Impression] (narrative)",
                }
            ],
            "text": "Impression",
        },
        "subject": {"reference": "#patient"},
        "effectiveDateTime": _fhir_instant(facts.observed_at),
        "issued": _fhir_instant(facts.signed_at),
        "valueString": facts.impression,
    }
    if facts.abnormal_flag:
        observation["interpretation"] = [
            {
                "coding": [
                    {
                        "system": SYSTEM_INTERPRETATION,
                        "code": facts.abnormal_flag,
                        "display": _INTERPRETATION_DISPLAY[facts.abnormal_flag],
                    }
                ],
                "text": "Critical" if facts.abnormal_flag == FLAG_CRITICAL else "Abnormal",
            }
        ]
    return observation


def _fhir_based_on(facts: ReportFacts) -> list[dict[str, Any]]:
    """The order the report answers, by its numbers: a Reference holds one identifier,
    so the placer's (type PLAC) and the filler's (FILL) are one reference each, both
    naming the same ServiceRequest."""
    references = []
    for code, number in (("PLAC", facts.placer_order_number), ("FILL", facts.filler_order_number)):
        if number:
            references.append(
                {
                    "type": "ServiceRequest",
                    "identifier": {
                        "type": {"coding": [{"system": SYSTEM_ACCESSION_TYPE, "code": code}]},
                        "value": number,
                    },
                }
            )
    return references


def build_fhir(facts: ReportFacts) -> dict[str, Any]:
    """A FHIR R4 DiagnosticReport (status preliminary, final, or appended for an
    addendum) with the patient contained, the order it answers as ``basedOn``, the
    imaging study by its DICOM UID, the impression as the conclusion and as a
    contained Observation (the ``result``, whose ``interpretation`` flags a critical
    finding: DiagnosticReport has no interpretation of its own), and the whole report
    as presentedForm; validated by fhir.resources."""
    description = facts.study_description or facts.procedure_code or facts.modality
    code: dict[str, Any] = {"text": description}
    if facts.procedure_code:
        code["coding"] = [
            {"system": SYSTEM_PROCEDURE, "code": facts.procedure_code, "display": description}
        ]
    identifiers: list[dict[str, Any]] = [{"system": SYSTEM_REPORT, "value": str(facts.report_id)}]
    if facts.accession_number:
        identifiers.append(
            {
                "type": {"coding": [{"system": SYSTEM_ACCESSION_TYPE, "code": "ACSN"}]},
                "value": facts.accession_number,
            }
        )
    patient = _fhir_patient(facts)
    impression = _fhir_impression(facts)
    resource: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": facts.control_id,
        "contained": [patient, impression],
        "identifier": identifiers,
        "status": facts.fhir_status,
        "category": [
            {
                "coding": [
                    {"system": SYSTEM_DIAGNOSTIC_SECTION, "code": "RAD", "display": "Radiology"}
                ]
            }
        ],
        "code": code,
        "subject": {"reference": "#patient"},
        "effectiveDateTime": _fhir_instant(facts.observed_at),
        "issued": _fhir_instant(facts.issued_at),
        "result": [{"reference": f"#{impression['id']}"}],
        "resultsInterpreter": [
            {
                "identifier": {"system": SYSTEM_RADIOLOGIST, "value": str(facts.signer_id)},
                "display": facts.signer_name,
            }
        ],
        "imagingStudy": [
            {
                "identifier": {
                    "system": SYSTEM_DICOM_UID,
                    "value": f"urn:oid:{facts.study_instance_uid}",
                },
                "display": description,
            }
        ],
        "conclusion": facts.impression,
        "presentedForm": [
            {
                "contentType": "text/plain; charset=utf-8",
                "language": "en",
                "title": f"Report {facts.accession_number or facts.report_id}",
                "creation": _fhir_instant(facts.issued_at),
                "data": base64.b64encode(report_plain_text(facts).encode()).decode("ascii"),
            }
        ],
    }
    based_on = _fhir_based_on(facts)
    if based_on:
        resource["basedOn"] = based_on
    if patient.get("name"):
        resource["subject"]["display"] = patient["name"][0]["text"]
    validated = DiagnosticReport.model_validate(resource)
    return validated.model_dump(mode="json", by_alias=True, exclude_none=True)
