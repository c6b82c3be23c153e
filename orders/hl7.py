"""HL7 v2 messages in and acknowledgements out: pure functions, no database.

What arrives is a frame's bytes; what leaves is an ACK's text.  Between them:

- **decoding**: MSH-18 names the character set when the sender gives one (``ASCII``,
  ``8859/1``, ``UNICODE UTF-8``); bytes that are not in it are refused (AR).
  Without MSH-18 the bytes are read as UTF-8 and, when they are not UTF-8, as
  ISO 8859-1 (every byte is a character there, so a latin-1 sender's accented names
  arrive intact).  The MSH segment is ASCII in all of them, so it is read before the
  character set is known.
- **segments**: ends of segments are CR; CR LF and LF (files edited on other
  systems) are read as CR.
- **the header** is read by splitting MSH ourselves, so an answer can be built for
  any input, even one hl7apy cannot parse: wrong encoding characters, an
  unsupported version or message type, a missing control id (MSH-10) or message
  type (MSH-9) are refused (AR) before the message is parsed.
- **parsing**: hl7apy, ``find_groups=False`` and tolerant validation: the apply step
  reads segments by name and decides what is missing itself (AE with the field).
- **the ACK**: MSH with sender and receiver swapped, MSA (AA / AE / AR and the
  control id), and for AE/AR an ERR segment naming the segment and field (ERR-2,
  ERR-3, ERR-4 from v2.5 on; ERR-1 in 2.3 and 2.4).  It is built as plain text with
  the standard encoding characters, so any receiver (python-hl7 included) reads it.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

SB = b"\x0b"  # MLLP start block
EB = b"\x1c"  # MLLP end block
CR = b"\r"

SUPPORTED_VERSIONS = ("2.3", "2.3.1", "2.4", "2.5", "2.5.1")
SUPPORTED_TYPES = ("ORM^O01", "OMI^O23", "ADT^A08", "ADT^A40")
# MSH-18 value -> Python codec.  "UNICODE" alone is how some senders name UTF-8.
CHARSETS = {
    "ASCII": "ascii",
    "8859/1": "latin-1",
    "UNICODE UTF-8": "utf-8",
    "UNICODE": "utf-8",
}
STANDARD_ENCODING_CHARACTERS = "^~\\&"
CONTROL_ID_MAX = 199  # MSH-10's length in v2.7; earlier versions allow 20
# The answer's version when the message's own is unknown or unsupported.
DEFAULT_ACK_VERSION = "2.5.1"

# HL7 table 0357 (message error condition codes) used in ERR.
ERR_SEGMENT_SEQUENCE = "100"
ERR_REQUIRED_FIELD_MISSING = "101"
ERR_DATA_TYPE = "102"
ERR_TABLE_VALUE = "103"
ERR_UNSUPPORTED_MESSAGE_TYPE = "200"
ERR_UNSUPPORTED_EVENT = "201"
ERR_UNSUPPORTED_VERSION = "203"
ERR_UNKNOWN_KEY = "204"
ERR_INTERNAL = "207"
ERR_TEXT = {
    ERR_SEGMENT_SEQUENCE: "Segment sequence error",
    ERR_REQUIRED_FIELD_MISSING: "Required field missing",
    ERR_DATA_TYPE: "Data type error",
    ERR_TABLE_VALUE: "Table value not found",
    ERR_UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    ERR_UNSUPPORTED_EVENT: "Unsupported event code",
    ERR_UNSUPPORTED_VERSION: "Unsupported version id",
    ERR_UNKNOWN_KEY: "Unknown key identifier",
    ERR_INTERNAL: "Application internal error",
}

_FIELD_RE = re.compile(r"^([A-Z][A-Z0-9]{2})-(\d{1,3})")
# Control characters that never belong in an ER7 message (CR, LF and TAB do).
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class Problem:
    """Why a message is not accepted: the ACK code, the reason, the field."""

    code: str  # "AE" or "AR"
    text: str
    field: str = ""  # e.g. "MSH-12", "ORC-1"
    error_code: str = ""  # HL7 table 0357; derived from the field when empty


@dataclass
class Header:
    """The MSH fields an answer and the message store need, as sent."""

    field_separator: str = "|"
    encoding_characters: str = ""
    sending_application: str = ""
    sending_facility: str = ""  # MSH-4 as sent (all components)
    receiving_application: str = ""
    receiving_facility: str = ""
    control_id: str = ""
    message_type: str = ""  # "ORM^O01" (message code ^ trigger event)
    processing_id: str = ""
    version: str = ""
    charset: str = ""  # MSH-18 as sent

    @property
    def sending_facility_id(self) -> str:
        """MSH-4's first component (the namespace id), which names the facility."""
        return self.sending_facility.split(self._component, 1)[0].strip()

    @property
    def _component(self) -> str:
        return self.encoding_characters[:1] or "^"

    @property
    def trigger_event(self) -> str:
        parts = self.message_type.split("^")
        return parts[1] if len(parts) > 1 else ""


@dataclass
class Inbound:
    """One frame, read: its text (whole, decoded), header and hl7apy message, or the
    problem that stops it.  ``message`` is None whenever ``problem`` is set."""

    raw: str
    encoding: str = ""  # the codec the bytes were read with
    header: Header = field(default_factory=Header)
    message: Any = None  # hl7apy.core.Message
    problem: Problem | None = None
    patient_id: str = ""  # PID-3's first id, for the audit trail


def decode(data: bytes) -> tuple[str, str, Problem | None]:
    """The frame's text, the codec used and, when the bytes are not in the declared
    character set, the problem (the text is then read as latin-1, to be kept)."""
    declared = _msh_fields(data.decode("latin-1"))
    charset = declared[17].strip() if declared is not None and len(declared) > 17 else ""
    if charset:
        charset = charset.split("~", 1)[0].strip().upper()
        codec = CHARSETS.get(charset)
        if codec is None:
            return (
                data.decode("latin-1"),
                "latin-1",
                Problem("AR", f"character set {charset!r} (MSH-18) is not supported", "MSH-18"),
            )
        try:
            return data.decode(codec), codec, None
        except UnicodeDecodeError as exc:
            return (
                data.decode("latin-1"),
                "latin-1",
                Problem(
                    "AR",
                    f"bytes not in the declared character set {charset} (MSH-18): "
                    f"byte 0x{data[exc.start]:02x} at offset {exc.start}",
                    "MSH-18",
                ),
            )
    try:
        return data.decode("utf-8"), "utf-8", None
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1", None


def normalise_segments(text: str) -> str:
    """CR LF and LF read as CR; surrounding blank lines dropped."""
    return text.replace("\r\n", "\r").replace("\n", "\r").strip("\r \t")


def _msh_fields(text: str) -> list[str] | None:
    """MSH split into fields, numbered as HL7 does (index 0 is MSH-1, the field
    separator itself); None when the text does not start with MSH."""
    text = text.lstrip("\r\n \t")
    if not text.startswith("MSH") or len(text) < 4:
        return None
    separator = text[3]
    segment = re.split(r"\r\n|\r|\n", text, maxsplit=1)[0]
    return [separator, *segment[4:].split(separator)]


def read_header(text: str) -> tuple[Header, Problem | None]:
    """The MSH fields (what could be read) and the first reason to refuse the message."""
    fields = _msh_fields(text)
    header = Header()
    if fields is None:
        return header, Problem("AR", "not an HL7 v2 message: no MSH segment first", "MSH-1")

    def get(number: int) -> str:
        return fields[number - 1].strip() if len(fields) >= number else ""

    header.field_separator = fields[0]
    header.encoding_characters = fields[1] if len(fields) > 1 else ""
    header.sending_application = get(3)
    header.sending_facility = get(4)
    header.receiving_application = get(5)
    header.receiving_facility = get(6)
    header.control_id = get(10)
    header.processing_id = get(11)
    component = header.encoding_characters[:1] or "^"
    header.version = get(12).split(component, 1)[0].strip()
    header.charset = get(18)
    type_parts = [p.strip() for p in get(9).split(component)]
    header.message_type = "^".join(type_parts[:2]) if type_parts and type_parts[0] else ""

    if fields[0] != "|":
        return header, Problem("AR", f"field separator {fields[0]!r} is not '|'", "MSH-1")
    if header.encoding_characters not in (STANDARD_ENCODING_CHARACTERS, "^~\\&#"):
        return header, Problem(
            "AR",
            f"encoding characters {header.encoding_characters!r} are not '^~\\&'",
            "MSH-2",
        )
    if not header.message_type:
        return header, Problem("AR", "message type (MSH-9) is missing", "MSH-9")
    if not header.control_id:
        return header, Problem("AR", "message control id (MSH-10) is missing", "MSH-10")
    if len(header.control_id) > CONTROL_ID_MAX:
        return header, Problem(
            "AR",
            f"message control id (MSH-10) is longer than {CONTROL_ID_MAX} characters",
            "MSH-10",
            ERR_DATA_TYPE,
        )
    if not header.version:
        return header, Problem(
            "AR", "version (MSH-12) is missing", "MSH-12", ERR_REQUIRED_FIELD_MISSING
        )
    if header.version not in SUPPORTED_VERSIONS:
        return header, Problem(
            "AR",
            f"version {header.version!r} is not supported ({', '.join(SUPPORTED_VERSIONS)})",
            "MSH-12",
            ERR_UNSUPPORTED_VERSION,
        )
    if header.message_type not in SUPPORTED_TYPES:
        code = header.message_type.split("^", 1)[0]
        known_code = any(t.startswith(code + "^") for t in SUPPORTED_TYPES)
        return header, Problem(
            "AR",
            f"message type {header.message_type!r} is not supported ({', '.join(SUPPORTED_TYPES)})",
            "MSH-9",
            ERR_UNSUPPORTED_EVENT if known_code else ERR_UNSUPPORTED_MESSAGE_TYPE,
        )
    if not header.sending_facility_id:
        return header, Problem("AR", "sending facility (MSH-4) is missing", "MSH-4")
    return header, None


def patient_id_of(text: str) -> str:
    """PID-3's first identifier (its first component), or ""."""
    for segment in text.split("\r"):
        if segment.startswith("PID|"):
            fields = segment.split("|")
            if len(fields) > 3:
                return fields[3].split("~", 1)[0].split("^", 1)[0].strip()[:64]
    return ""


def read(data: bytes, *, problem: Problem | None = None) -> Inbound:
    """Read one frame's bytes: decode, check the header, parse with hl7apy.
    ``problem`` is a framing fault found by the transport (kept as the answer)."""
    text, codec, decode_problem = decode(data)
    return read_text(text, encoding=codec, problem=problem or decode_problem)


def read_text(text: str, *, encoding: str = "utf-8", problem: Problem | None = None) -> Inbound:
    """Read a decoded message (a replay reads its stored text here)."""
    inbound = Inbound(raw=text, encoding=encoding)
    normalised = normalise_segments(text)
    header, header_problem = read_header(normalised)
    inbound.header = header
    inbound.patient_id = patient_id_of(normalised)
    if problem is None and not normalised:
        problem = Problem("AR", "empty message", "MSH-1")
    match = _CONTROL_RE.search(normalised) if problem is None else None
    if match is not None:
        problem = Problem(
            "AR",
            f"control character 0x{ord(match.group()):02x} inside the message "
            f"(offset {match.start()})",
            "MSH-1",
        )
    inbound.problem = problem or header_problem
    if inbound.problem is not None:
        return inbound
    inbound.message, inbound.problem = parse(normalised)
    return inbound


def parse(text: str) -> tuple[Any, Problem | None]:
    """hl7apy's message, or why it cannot be parsed (AR)."""
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.parser import parse_message

    try:
        message = parse_message(text, find_groups=False, validation_level=VALIDATION_LEVEL.TOLERANT)
    except Exception as exc:  # hl7apy raises many types (and bare ones) on bad input
        reason = f"cannot parse the message: {type(exc).__name__}: {exc}"[:500]
        return None, Problem("AR", reason, error_code=ERR_DATA_TYPE)
    return message, None


# --- The acknowledgement ------------------------------------------------------
_ESCAPES = {"\\": "\\E\\", "|": "\\F\\", "^": "\\S\\", "~": "\\R\\", "&": "\\T\\"}


def escape(value: str, *, limit: int = 200) -> str:
    """A value made safe for one ER7 field: delimiters escaped, control characters
    (CR included) turned to spaces, and cut to ``limit`` characters."""
    value = _CONTROL_RE.sub(" ", value.replace("\r", " ").replace("\n", " "))[:limit]
    return "".join(_ESCAPES.get(c, c) for c in value)


def _location(field_name: str) -> tuple[str, str]:
    match = _FIELD_RE.match(field_name or "")
    return (match.group(1), match.group(2)) if match else ("", "")


def ack_control_id() -> str:
    """A new control id for an answer (MSH-10 of the ACK)."""
    return "A" + uuid.uuid4().hex[:19]


def build_ack(
    header: Header,
    *,
    code: str,
    text: str = "",
    field: str = "",
    error_code: str = "",
    sending_application: str = "TELERAD",
    now: dt.datetime | None = None,
    control_id: str | None = None,
) -> str:
    """The ACK for a message with this header (any header: a garbage frame's empty
    one gets a synthesized MSH), segments separated by CR."""
    now = now or dt.datetime.now(dt.UTC)
    version = header.version if header.version in SUPPORTED_VERSIONS else DEFAULT_ACK_VERSION
    trigger = header.trigger_event if header.message_type in SUPPORTED_TYPES else ""
    msh = [
        "MSH",
        "^~\\&",
        escape(header.receiving_application or sending_application, limit=180),
        escape(header.receiving_facility, limit=180),
        escape(header.sending_application, limit=180),
        escape(header.sending_facility, limit=180),
        now.strftime("%Y%m%d%H%M%S"),
        "",
        f"ACK^{escape(trigger, limit=3)}^ACK" if trigger else "ACK",
        control_id or ack_control_id(),
        escape(header.processing_id, limit=3) or "P",
        version,
    ]
    if header.charset and header.charset.upper() in CHARSETS:
        msh += ["", "", "", "", "", escape(header.charset, limit=16)]
    msa = ["MSA", code, escape(header.control_id, limit=199)]
    if code != "AA" and text:
        msa.append(escape(text, limit=80))
    segments = ["|".join(msh), "|".join(msa)]
    if code != "AA":
        segment, position = _location(field)
        err_code = error_code or _default_error_code(field, text)
        err_text = ERR_TEXT.get(err_code, "")
        if version in ("2.3", "2.3.1", "2.4"):
            # ERR-1: error code and location (segment^sequence^field^code&text&table).
            eld = f"{segment}^1^{position}^{err_code}&{err_text}&HL70357" if segment else ""
            if not segment:
                eld = f"^^^{err_code}&{err_text}&HL70357"
            segments.append(f"ERR|{eld}")
        else:
            location = f"{segment}^1^{position}" if segment else ""
            segments.append(
                f"ERR||{location}|{err_code}^{err_text}^HL70357|E||||{escape(text, limit=250)}"
            )
    return "\r".join(segments) + "\r"


_UNKNOWN_RE = re.compile(r"\b(unknown|no such|not found)\b", re.IGNORECASE)


def _default_error_code(field_name: str, text: str = "") -> str:
    """Table 0357's code for a problem the apply step names by field only: an
    identifier that names nothing (an unknown accession) is 204, else 101."""
    segment, _ = _location(field_name)
    if field_name in ("MSH-1", "MSH-2"):
        return ERR_DATA_TYPE
    if field_name == "MSH-4":
        return ERR_UNKNOWN_KEY
    if field_name == "MSH-18":
        return ERR_TABLE_VALUE
    if _UNKNOWN_RE.search(text):
        return ERR_UNKNOWN_KEY
    if segment:
        return ERR_REQUIRED_FIELD_MISSING
    return ERR_INTERNAL
