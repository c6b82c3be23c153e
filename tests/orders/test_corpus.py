"""A corpus of bad (and awkward but valid) HL7 frames sent to the real listener: each
is answered with the expected ACK code, stored with that outcome, and the listener
answers good messages after all of them."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import pytest

from orders.models import Hl7Message
from studies.models import Order
from tests import factories as f
from tests.orders.listener import (
    CR,
    EB,
    SB,
    ack_code,
    parse_ack,
    raw_exchange,
    send,
    start_hl7_listener,
    stop_hl7_listener,
)
from tests.orders.samples import adt_a40, msh, orm, pid, segment

pytestmark = pytest.mark.worker

LIMIT = 65536  # HL7_MAX_MESSAGE_BYTES of the listener under test


@dataclass
class Case:
    name: str
    wire: bytes  # exactly what goes on the connection
    code: str  # the ACK code expected (MSA-1)
    field: str = ""  # ERR-2 expected, e.g. "MSH^1^12" (v2.5) or "" not checked
    stored: bool = True


def framed(text: str | bytes, encoding: str = "utf-8") -> bytes:
    data = text.encode(encoding) if isinstance(text, str) else text
    return SB + data + EB + CR


def good(control: str, **kwargs: Any) -> str:
    return orm(control=control, accession=f"A{control}"[:16], **kwargs)


def replace_msh(control: str, number: int, value: str) -> str:
    """A valid order whose MSH-``number`` is replaced by ``value``."""
    text = good(control)
    first, rest = text.split("\r", 1)
    fields = first.split("|")
    while len(fields) <= number:
        fields.append("")
    fields[number] = value
    return "|".join(fields) + "\r" + rest


def corpus() -> list[Case]:
    rng = random.Random(17)  # noqa: S311 -- garbage bytes, not secrets
    garbage = bytes(b for b in rng.randbytes(3000) if b not in (0x0B, 0x1C))
    latin_name = "MÜLLER^JOSÉ"
    cases = [
        Case("empty frame", framed(b""), "AR"),
        Case("blank frame", framed(b"\r\n  \r"), "AR"),
        Case("binary garbage", framed(garbage), "AR"),
        Case("NUL bytes", framed(b"MSH\x00\x00\x00|^~\\&"), "AR"),
        Case("plain text", framed("hello, is this the RIS?"), "AR"),
        Case("JSON", framed('{"resourceType": "ServiceRequest"}'), "AR"),
        Case("truncated in MSH-4", framed(good("T1")[:22]), "AR"),
        Case("truncated before MSH-10", framed(good("T2").split("T2|")[0]), "AR", "MSH^1^10"),
        Case("truncated mid-PID", framed(good("T3")[:140]), "AE"),
        Case("PID first, no MSH", framed(pid() + "\r" + good("T4")), "AR"),
        Case("wrong field separator", framed(good("S1").replace("|", "#")), "AR"),
        Case(
            "wrong encoding characters",
            framed(good("S2").replace("^~\\&", "%~\\&", 1)),
            "AR",
            "MSH^1^2",
        ),
        Case("no encoding characters", framed(good("S3").replace("^~\\&", "", 1)), "AR"),
        Case("missing MSH-10", framed(replace_msh("M1", 9, "")), "AR", "MSH^1^10"),
        Case("missing MSH-9", framed(replace_msh("M2", 8, "")), "AR", "MSH^1^9"),
        Case("missing MSH-4", framed(replace_msh("M3", 3, "")), "AR", "MSH^1^4"),
        Case("unknown facility", framed(good("U1", facility="NOWHERE")), "AR", "MSH^1^4"),
        Case("facility id in other case", framed(good("U2", facility="stmary")), "AR", "MSH^1^4"),
        Case("version 2.2", framed(good("V1", version="2.2")), "AR", "MSH^1^12"),
        Case("version 2.6", framed(good("V2", version="2.6")), "AR", "MSH^1^12"),
        Case("no version", framed(replace_msh("V3", 11, "")), "AR", "MSH^1^12"),
        Case("version garbage", framed(good("V4", version="banana")), "AR", "MSH^1^12"),
        Case(
            "ADT^A01 unsupported", framed(replace_msh("Y1", 8, "ADT^A01^ADT_A01")), "AR", "MSH^1^9"
        ),
        Case("ORU^R01 unsupported", framed(replace_msh("Y2", 8, "ORU^R01")), "AR", "MSH^1^9"),
        Case("message type garbage", framed(replace_msh("Y3", 8, "XYZ")), "AR", "MSH^1^9"),
        Case("control id too long", framed(replace_msh("L1", 9, "X" * 300)), "AR", "MSH^1^10"),
        Case("unknown charset", framed(good("E1", charset="EBCDIC")), "AR", "MSH^1^18"),
        Case(
            "latin-1 bytes declared UTF-8",
            framed(good("E2", name=latin_name, charset="UNICODE UTF-8"), "latin-1"),
            "AR",
            "MSH^1^18",
        ),
        Case(
            "non-ASCII bytes declared ASCII",
            framed(good("E3", name=latin_name, charset="ASCII"), "utf-8"),
            "AR",
            "MSH^1^18",
        ),
        Case("control character", framed(good("K1").replace("DOE", "D\x01OE")), "AR"),
        Case(
            "second start block inside the frame",
            SB + good("B1").encode()[:50] + SB + good("B2").encode() + EB + CR,
            "AR",
        ),
        Case("no start block", good("B3").encode() + EB + CR, "AR"),
        Case("oversize", framed(good("O1") + "NTE|1||" + "x" * (LIMIT + 10) + "\r"), "AR"),
        # Understood, but wrong: the apply step names the field (AE).
        Case(
            "order control unknown",
            framed(good("D1").replace("ORC|NW|", "ORC|ZZ|")),
            "AE",
            "ORC^1^1",
        ),
        Case("no ORC segment", framed(msh(control="D2") + "\r" + pid() + "\r"), "AE", "ORC^1^1"),
        Case(
            "new order without PID",
            framed("\r".join(s for s in good("D3").split("\r") if not s.startswith("PID"))),
            "AE",
            "PID^1^3",
        ),
        Case(
            "cancel of an unknown accession",
            framed(orm(control="D4", accession="NOSUCH1", order_control="CA")),
            "AE",
        ),
        Case(
            "no accession anywhere",
            framed(
                "\r".join(
                    [
                        msh(control="D5"),
                        pid(),
                        "ORC|NW",
                        segment("OBR", {1: "1", 4: "70450^CT HEAD^CPT"}),
                    ]
                )
            ),
            "AE",
            "OBR^1^18",
        ),
        Case(
            "merge of an unknown patient",
            framed(adt_a40(control="D6", survivor="PID100", prior="NOPE9")),
            "AE",
            "MRG^1^1",
        ),
        # Awkward but valid: accepted.
        Case("UTF-8 name, no MSH-18", framed(good("G1", name="MÜLLER^JOSÉ"), "utf-8"), "AA"),
        Case(
            "UTF-8 name, MSH-18 UNICODE UTF-8",
            framed(good("G2", name="ŁUKASZ^ŻÓŁW", charset="UNICODE UTF-8")),
            "AA",
        ),
        Case(
            "latin-1 name, MSH-18 8859/1",
            framed(good("G3", name=latin_name, charset="8859/1"), "latin-1"),
            "AA",
        ),
        Case("latin-1 name, no MSH-18", framed(good("G4", name=latin_name), "latin-1"), "AA"),
        Case("LF line ends", framed(good("G5").replace("\r", "\n")), "AA"),
        Case("CR LF line ends", framed(good("G6").replace("\r", "\r\n")), "AA"),
        Case("version 2.3.1", framed(good("G7", version="2.3.1")), "AA"),
    ]
    return cases


def test_every_frame_of_the_corpus_is_answered_and_stored(transactional_db, tmp_path):
    facility = f.FacilityFactory(name="St Mary", hl7_sending_facility="STMARY")
    listener = start_hl7_listener(tmp_path, HL7_MAX_MESSAGE_BYTES=str(LIMIT))
    try:
        cases = corpus()
        bad = [c for c in cases if c.code != "AA"]
        assert len(bad) >= 30
        answered = {}
        for case in cases:
            before = Hl7Message.objects.count()
            answers = raw_exchange(listener.port, case.wire)
            assert len(answers) == 1, (case.name, answers)
            ack = parse_ack(answers[0])
            answered[case.name] = ack_code(ack)
            assert listener.alive(), (case.name, listener.log())
            if case.field and case.code != "AA":
                err = ack.segment("ERR")
                assert str(err[2]) == case.field, (case.name, str(ack))
            # Stored with the outcome it was answered with.
            assert Hl7Message.objects.count() == before + 1, case.name
            row = Hl7Message.objects.order_by("-id").first()
            assert row.outcome == ack_code(ack), case.name
            if case.code != "AA":
                assert row.error_text, case.name
        wrong = {
            n: c for n, c in answered.items() if c != next(x.code for x in cases if x.name == n)
        }
        assert not wrong, wrong

        # The oversize message is kept cut to the limit, with its real size.
        big = Hl7Message.objects.get(control_id="O1")
        assert big.raw_truncated and len(big.raw.encode()) <= LIMIT and big.size_bytes > LIMIT
        # Non-ASCII names arrive as sent, whatever the encoding (recorded).
        rows = {m.control_id: m for m in Hl7Message.objects.filter(control_id__startswith="G")}
        assert "MÜLLER^JOSÉ" in rows["G1"].raw and rows["G1"].encoding == "utf-8"
        assert "ŁUKASZ^ŻÓŁW" in rows["G2"].raw and rows["G2"].charset == "UNICODE UTF-8"
        assert "MÜLLER^JOSÉ" in rows["G3"].raw and rows["G3"].encoding == "latin-1"
        assert "MÜLLER^JOSÉ" in rows["G4"].raw and rows["G4"].encoding == "latin-1"
        assert Order.objects.filter(facility=facility, accession_number="AG1").exists()

        # Still alive and applying after all of it.
        assert ack_code(send(listener.port, good("LAST"))) == "AA"
        assert listener.alive()
    finally:
        stop_hl7_listener(listener)
