"""HL7 v2 message text for the apply tests, written field by field so that each
field's position is explicit (``segment("OBR", {18: "ACC1"})`` is OBR-18), and
parsed by hl7apy exactly as the listener parses it."""

from __future__ import annotations

from typing import Any

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message


def segment(name: str, fields: dict[int, str]) -> str:
    """A segment's text with ``fields`` at their positions (the rest empty)."""
    last = max(fields) if fields else 0
    return "|".join([name, *(fields.get(i, "") for i in range(1, last + 1))])


def msh(*, type_: str, control: str = "MSG1", version: str = "2.5.1") -> str:
    return f"MSH|^~\\&|RIS|STMARY|TELERAD|TELERAD|20261207103000||{type_}|{control}|P|{version}"


def message(*segments: str) -> str:
    return "\r".join(segments) + "\r"


def parse(raw: str) -> Any:
    return parse_message(raw, find_groups=False, validation_level=VALIDATION_LEVEL.TOLERANT)


def pid(
    patient_id: str = "MRN100",
    *,
    issuer: str = "",
    name: str = "DOE^JOHN^Q",
    born: str = "19600102",
    sex: str = "M",
    address: str = "1 Main St^^Austin^TX^78701^USA",
) -> str:
    return segment(
        "PID",
        {1: "1", 3: f"{patient_id}^^^{issuer}^MR", 5: name, 7: born, 8: sex, 11: address},
    )


def orm(
    *,
    accession: str = "ACC1001",
    control: str = "NW",
    version: str = "2.5.1",
    msg: str = "MSG1",
    priority: str = "S",
    patient: str | None = None,
    patient_class: str = "E",
    location: str = "ED^BAY3^1",
    orc: dict[int, str] | None = None,
    obr: dict[int, str] | None = None,
    extra: tuple[str, ...] = (),
) -> str:
    """ORM^O01 as a RIS sends it: ORC/OBR with the accession in OBR-18, the order
    priority in ORC-7.6 and OBR-27.6, a comment (NTE) after the OBR."""
    orc_fields = {
        1: control,
        2: f"PL{accession}^RIS",
        3: f"FL{accession}^RAD",
        5: "SC",
        7: f"^^^^^{priority}",
        9: "20261207101200",
        12: "5678^JONES^ROBERT^^^DR^MD",
        **(orc or {}),
    }
    obr_fields = {
        1: "1",
        2: f"PL{accession}^RIS",
        3: f"FL{accession}^RAD",
        4: "CTHEAD^CT head without contrast^L",
        13: "Fall from standing",
        16: "5678^JONES^ROBERT",
        18: accession,
        27: f"^^^^^{priority}",
        31: "^Head trauma, rule out bleed",
        **(obr or {}),
    }
    return message(
        msh(type_="ORM^O01", control=msg, version=version),
        patient if patient is not None else pid(),
        segment("PV1", {1: "1", 2: patient_class, 3: location}),
        segment("ORC", orc_fields),
        segment("OBR", obr_fields),
        segment("NTE", {1: "1", 3: "On anticoagulants"}),
        *extra,
    )


def omi(
    *,
    accession: str = "ACC2001",
    control: str = "NW",
    msg: str = "MSG2",
    priority: str = "A",
    ipc: bool = True,
) -> str:
    """OMI^O23 (v2.5.1): ORC, TQ1 (priority in TQ1-9), OBR, IPC (accession in IPC-1)."""
    return message(
        msh(type_="OMI^O23^OMI_O23", control=msg),
        pid("MRN200", name="ROE^JANE", sex="F"),
        segment("PV1", {1: "1", 2: "I", 3: "WARD3^12^B"}),
        segment(
            "ORC",
            {1: control, 2: f"PL{accession}", 3: f"FL{accession}", 9: "20261207101500"},
        ),
        segment("TQ1", {1: "1", 9: f"{priority}^ASAP^HL70485"}),
        segment(
            "OBR",
            {
                1: "1",
                2: f"PL{accession}",
                3: f"FL{accession}",
                4: "71046^XR chest 2 views^CPT",
                16: "1234^WELBY^MARCUS",
                31: "^Cough, fever",
            },
        ),
        *(
            [
                segment(
                    "IPC",
                    {
                        1: accession,
                        2: f"RP{accession}",
                        3: "1.2.826.0.1.3680043.8.498.77",
                        4: "SPS1",
                        5: "CR",
                    },
                )
            ]
            if ipc
            else []
        ),
    )


def adt_a08(*, patient: str, msg: str = "MSG3") -> str:
    return message(
        msh(type_="ADT^A08^ADT_A01", control=msg),
        segment("EVN", {1: "A08", 2: "20261207103000"}),
        patient,
        segment("PV1", {1: "1", 2: "O"}),
    )


def adt_a40(*, survivor: str, prior: str, msg: str = "MSG4", version: str = "2.5.1") -> str:
    return message(
        msh(type_="ADT^A40^ADT_A39", control=msg, version=version),
        segment("EVN", {1: "A40", 2: "20261207103000"}),
        pid(survivor),
        segment("MRG", {1: f"{prior}^^^^MR"}),
    )
