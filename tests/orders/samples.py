"""HL7 v2 messages as a facility's RIS would send them, written out as text here (no
code shared with the listener)."""

from __future__ import annotations

MSH = "MSH|^~\\&|RIS|{facility}|TELERAD|TELERAD|20261207103000||{type}|{control}|P|{version}{msh18}"


def msh(
    *,
    control: str,
    type_: str = "ORM^O01",
    version: str = "2.5.1",
    facility: str = "STMARY",
    charset: str = "",
) -> str:
    msh18 = f"||||||{charset}" if charset else ""
    return MSH.format(facility=facility, type=type_, control=control, version=version, msh18=msh18)


def segment(name: str, fields: dict[int, str]) -> str:
    """A segment from its fields by number (the others empty)."""
    last = max(fields)
    return "|".join([name, *(fields.get(n, "") for n in range(1, last + 1))])


def pid(patient_id: str = "PID100", name: str = "DOE^JOHN^Q") -> str:
    return f"PID|1||{patient_id}^^^STMARY^MR||{name}||19600101|M|||1 Main St^^Austin^TX^78701^USA"


def orm(
    *,
    control: str,
    accession: str,
    order_control: str = "NW",
    version: str = "2.5.1",
    facility: str = "STMARY",
    patient_id: str = "PID100",
    name: str = "DOE^JOHN^Q",
    charset: str = "",
) -> str:
    """ORM^O01: an order (NW new, CA cancel, XO change, SC status)."""
    return (
        "\r".join(
            [
                msh(control=control, version=version, facility=facility, charset=charset),
                pid(patient_id, name),
                "PV1|1|E|ED^01^A",
                f"ORC|{order_control}|PL{accession}|FL{accession}||SC||^^^20261207103000^^S"
                "||20261207103000|||1234^WELBY^MARCUS",
                segment(
                    "OBR",
                    {
                        1: "1",
                        2: f"PL{accession}",
                        3: f"FL{accession}",
                        4: "70450^CT HEAD WO CONTRAST^CPT",
                        7: "20261207103000",
                        13: "Fall from standing",
                        16: "1234^WELBY^MARCUS",
                        18: accession,
                        27: "^^^^^S",
                        31: "^Headache after fall",
                    },
                ),
            ]
        )
        + "\r"
    )


def omi(*, control: str, accession: str, patient_id: str = "PID200") -> str:
    """OMI^O23 (v2.5.1): an imaging order, the accession in IPC-1."""
    return (
        "\r".join(
            [
                msh(control=control, type_="OMI^O23^OMI_O23"),
                pid(patient_id, "ROE^JANE"),
                "PV1|1|I|WARD3^12^B",
                f"ORC|NW|PL{accession}|FL{accession}||SC||||20261207103000|||1234^WELBY^MARCUS",
                "TQ1|1||||||||R",
                segment(
                    "OBR",
                    {
                        1: "1",
                        2: f"PL{accession}",
                        3: f"FL{accession}",
                        4: "71046^XR CHEST 2 VIEWS^CPT",
                        16: "1234^WELBY^MARCUS",
                        31: "^Cough",
                    },
                ),
                f"IPC|{accession}|RP{accession}|1.2.826.0.1.3680043.8.498.{len(accession)}|SPS1|CR",
            ]
        )
        + "\r"
    )


def adt_a08(*, control: str, patient_id: str = "PID100", name: str = "DOE^JONATHAN^Q") -> str:
    return (
        "\r".join(
            [
                msh(control=control, type_="ADT^A08^ADT_A01"),
                "EVN|A08|20261207103000",
                pid(patient_id, name),
                "PV1|1|O",
            ]
        )
        + "\r"
    )


def adt_a40(*, control: str, survivor: str, prior: str) -> str:
    return (
        "\r".join(
            [
                msh(control=control, type_="ADT^A40^ADT_A39"),
                "EVN|A40|20261207103000",
                pid(survivor, "DOE^JOHN^Q"),
                f"MRG|{prior}^^^STMARY^MR",
            ]
        )
        + "\r"
    )
