"""Reading the fields of a parsed HL7 v2 message: pure functions, no database.

hl7apy (``find_groups=False``, tolerant validation) gives the segments in order and,
in each, its fields and their repetitions as elements named ``PID_3``; their
components and subcomponents are read here from each repetition's ER7 text with
the message's own encoding characters, so a field reads the same whatever the
version's data type for it (2.3 to 2.5.1) and whether or not hl7apy knew it.

A field that is empty was not sent: "no change" for an update.  The HL7 null
``""`` is sent to clear a value; readers return None for the former and "" for the
latter.  Escape sequences (``\\F\\``, ``\\S\\``, ``\\T\\``, ``\\R\\``, ``\\E\\``,
``\\.br\\``, ``\\Xhh..\\``) are decoded; highlighting is dropped.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass
from typing import Any

HL7_NULL = '""'

# HL7 tables 0027 (priority) and 0485 (extended priority codes), and the words
# senders use: S/STAT -> STAT, A/ASAP -> urgent, R -> routine; timing-critical
# codes are urgent, pre-op, callback and "as needed" ones routine.
STAT, URGENT, ROUTINE = 1, 2, 3  # network.models.Priority
PRIORITY_CODES = {
    "S": STAT,
    "STAT": STAT,
    "A": URGENT,
    "ASAP": URGENT,
    "URGENT": URGENT,
    "T": URGENT,
    "TS": URGENT,
    "TM": URGENT,
    "TH": URGENT,
    "TD": URGENT,
    "TW": URGENT,
    "R": ROUTINE,
    "ROUTINE": ROUTINE,
    "P": ROUTINE,
    "C": ROUTINE,
    "CR": ROUTINE,
    "CS": ROUTINE,
    "CM": ROUTINE,
    "PRN": ROUTINE,
}

# ISO 3166 alpha-3 -> alpha-2 for the countries a PID-11 address names by three
# letters most often; a two-letter country is taken as it is.
COUNTRY_ALPHA3 = {
    "USA": "US",
    "CAN": "CA",
    "MEX": "MX",
    "GBR": "GB",
    "IRL": "IE",
    "AUS": "AU",
    "NZL": "NZ",
    "IND": "IN",
    "DEU": "DE",
    "FRA": "FR",
    "ESP": "ES",
    "ITA": "IT",
    "NLD": "NL",
    "BEL": "BE",
    "CHE": "CH",
    "AUT": "AT",
    "SWE": "SE",
    "NOR": "NO",
    "DNK": "DK",
    "BRA": "BR",
    "ZAF": "ZA",
    "SGP": "SG",
    "ARE": "AE",
    "PHL": "PH",
}

_TS_RE = re.compile(
    r"^(?P<year>\d{4})(?P<month>\d{2})?(?P<day>\d{2})?"
    r"(?:(?P<hour>\d{2})(?P<minute>\d{2})?(?P<second>\d{2})?(?:\.(?P<fraction>\d{1,4}))?)?"
    r"(?P<offset>[+-]\d{4})?$"
)


class FieldError(ValueError):
    """A field whose value is not what its type allows (a date, a code)."""

    def __init__(self, field: str, text: str) -> None:
        super().__init__(text)
        self.field = field
        self.text = text


@dataclass(frozen=True)
class Separators:
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @classmethod
    def of(cls, message: Any) -> Separators:
        chars = getattr(message, "encoding_chars", None) or {}
        return cls(
            component=chars.get("COMPONENT", "^"),
            repetition=chars.get("REPETITION", "~"),
            escape=chars.get("ESCAPE", "\\"),
            subcomponent=chars.get("SUBCOMPONENT", "&"),
        )


class Segment:
    """One segment's fields: ``reps(3)`` is PID-3's repetitions (ER7 text, escaped)."""

    def __init__(self, element: Any, separators: Separators) -> None:
        self.name: str = str(element.name).upper()
        self.separators = separators
        self._fields: dict[int, list[str]] = {}
        for child in element.children:
            _, _, number = str(child.name).rpartition("_")
            if number.isdigit():
                self._fields.setdefault(int(number), []).append(child.to_er7())

    def reps(self, number: int) -> list[str]:
        """The field's repetitions as sent (empty ones left out)."""
        return [r for r in self._fields.get(number, []) if r.strip()]

    def sent(self, number: int) -> bool:
        return bool(self.reps(number))

    def text(self, number: int, component: int = 1, sub: int = 1, rep: int = 0) -> str | None:
        """One (sub)component of one repetition, decoded and stripped: None when the
        field is empty (not sent), "" when it is the HL7 null ``""``."""
        reps = self.reps(number)
        if len(reps) <= rep:
            return None
        return self.part(reps[rep], component, sub)

    def part(self, raw: str, component: int = 1, sub: int = 1) -> str | None:
        """A (sub)component of one repetition's ER7 text (see ``text``)."""
        if raw.strip() == HL7_NULL:
            return ""
        components = raw.split(self.separators.component)
        if len(components) < component:
            return None
        subs = components[component - 1].split(self.separators.subcomponent)
        if len(subs) < sub:
            return None
        value = unescape(subs[sub - 1], self.separators).strip()
        if value == HL7_NULL:
            return ""
        return value or None

    def components(self, raw: str) -> list[str]:
        """Every component of one repetition, decoded (first subcomponents)."""
        return [
            unescape(c.split(self.separators.subcomponent)[0], self.separators).strip()
            for c in raw.split(self.separators.component)
        ]


def segments(message: Any) -> list[Segment]:
    """The message's segments in order (the message is parsed without groups)."""
    separators = Separators.of(message)
    return [Segment(child, separators) for child in message.children]


def unescape(text: str, separators: Separators) -> str:
    """Decode HL7 escape sequences."""
    esc = separators.escape
    if not esc or esc not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == esc:
            end = text.find(esc, i + 1)
            if end == -1:
                out.append(text[i:])
                break
            out.append(_escape_value(text[i + 1 : end], separators))
            i = end + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _escape_value(code: str, separators: Separators) -> str:
    simple = {
        "F": "|",
        "S": separators.component,
        "T": separators.subcomponent,
        "R": separators.repetition,
        "E": separators.escape,
        ".br": "\n",
    }
    if code in simple:
        return simple[code]
    if code[:1] == "X" and len(code) > 1:
        try:
            return bytes.fromhex(code[1:]).decode("utf-8", errors="replace")
        except ValueError:
            return ""
    return ""  # highlighting (\H\, \N\) and character-set switches: dropped


def timestamp(text: str, *, field: str, tz: str) -> dt.datetime:
    """An HL7 DTM/TS (``YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]``) as an aware
    datetime; without an offset it is the facility's local time (``tz``)."""
    match = _TS_RE.match(text.strip())
    if match is None:
        raise FieldError(field, f"{field} {text!r} is not an HL7 date/time")
    parts = match.groupdict()
    try:
        when = dt.datetime(
            int(parts["year"]),
            int(parts["month"] or 1),
            int(parts["day"] or 1),
            int(parts["hour"] or 0),
            int(parts["minute"] or 0),
            int(parts["second"] or 0),
            int((parts["fraction"] or "0").ljust(6, "0")[:6]),
            tzinfo=dt.UTC,  # replaced below by the offset sent or the facility's zone
        )
    except ValueError as exc:
        raise FieldError(field, f"{field} {text!r} is not a valid date/time") from exc
    offset = parts["offset"]
    if offset:
        minutes = int(offset[1:3]) * 60 + int(offset[3:5])
        if minutes >= 24 * 60:
            raise FieldError(field, f"{field} {text!r} has an invalid time zone offset")
        sign = -1 if offset[0] == "-" else 1
        return when.replace(tzinfo=dt.timezone(sign * dt.timedelta(minutes=minutes)))
    try:
        zone: dt.tzinfo = zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = dt.UTC
    return when.replace(tzinfo=zone)


def birth_date(text: str, *, field: str) -> dt.date | None:
    """A date of birth (a DT/TS): the date; None for a partial one (year or month
    only), which a DICOM-style date cannot hold."""
    match = _TS_RE.match(text.strip())
    if match is None:
        raise FieldError(field, f"{field} {text!r} is not an HL7 date")
    parts = match.groupdict()
    if not parts["month"] or not parts["day"]:
        return None
    try:
        return dt.date(int(parts["year"]), int(parts["month"]), int(parts["day"]))
    except ValueError as exc:
        raise FieldError(field, f"{field} {text!r} is not a valid date") from exc


def priority(text: str, *, field: str) -> int:
    """An order priority code as our priority (1 STAT, 2 urgent, 3 routine)."""
    code = text.strip().upper()
    if code not in PRIORITY_CODES:
        raise FieldError(field, f"{field} {text!r} is not a priority code (S, A, R, ...)")
    return PRIORITY_CODES[code]


def person_name(parts: list[str]) -> str:
    """An XPN (family^given^middle^suffix^prefix) as a DICOM-style name
    (family^given^middle), trailing empty parts dropped."""
    return "^".join(parts[:3]).rstrip("^")


def provider_name(parts: list[str]) -> str:
    """An XCN (id^family^given^middle^suffix^prefix^degree) readable: "Family, Given
    Middle, Degree", or the id alone when no name is given."""
    padded = [*parts, *[""] * 7]
    ident, family, given, middle, _suffix, _prefix, degree = padded[:7]
    first = " ".join(p for p in (given, middle) if p)
    name = ", ".join(p for p in (family, first) if p)
    if name and degree:
        name = f"{name}, {degree}"
    return name or ident


def country_code(text: str) -> str:
    """A PID-11 country as ISO alpha-2 (alpha-3 codes we know are mapped)."""
    code = text.strip().upper()
    return COUNTRY_ALPHA3.get(code, code)
