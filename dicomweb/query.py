"""QIDO-RS query parameters (PS3.18 8.3.4), parsed and checked.  Pure: no Django.

Attributes are named by keyword or by tag (``PatientID`` or ``00100020``).  Which
attributes each level matches and returns is declared here, with how they match:
single value, list of UIDs, wildcard (``*`` and ``?``) or date range.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from studies.validators import is_valid_uid


class Level(Enum):
    STUDY = "study"
    SERIES = "series"
    INSTANCE = "instance"


class BadQuery(Exception):
    """A malformed query (400), with the message to answer."""


class Match(Enum):
    EXACT = "exact"  # single value, wildcards allowed
    UIDS = "uids"  # a list of UIDs
    DATE = "date"  # a date or a range
    LIST = "list"  # any of a list (ModalitiesInStudy)
    NUMBER = "number"
    TIME = "time"  # a time of day or a range


@dataclass(frozen=True)
class Key:
    tag: str  # 8 hex digits
    level: Level
    match: Match
    # Matched case-insensitively (person names, as Orthanc and most PACS do).
    fold_case: bool = False


def _k(keyword: str, level: Level, match: Match, fold_case: bool = False) -> tuple[str, Key]:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise LookupError(keyword)
    return keyword, Key(f"{tag:08X}", level, match, fold_case)


# The attributes a query may match on at each level (PS3.18 Table 10.6.1-5 and the
# ones the database keeps); a key not here is ignored with a warning, as 10.6.1.2.2
# allows, except that a key of no known attribute is a bad request.
MATCHING: dict[str, Key] = dict(
    [
        _k("StudyInstanceUID", Level.STUDY, Match.UIDS),
        _k("StudyDate", Level.STUDY, Match.DATE),
        _k("StudyTime", Level.STUDY, Match.TIME),
        _k("StudyID", Level.STUDY, Match.EXACT),
        _k("AccessionNumber", Level.STUDY, Match.EXACT),
        _k("ModalitiesInStudy", Level.STUDY, Match.LIST),
        _k("ReferringPhysicianName", Level.STUDY, Match.EXACT, fold_case=True),
        _k("PatientName", Level.STUDY, Match.EXACT, fold_case=True),
        _k("PatientID", Level.STUDY, Match.EXACT),
        _k("PatientBirthDate", Level.STUDY, Match.DATE),
        _k("PatientSex", Level.STUDY, Match.EXACT),
        _k("StudyDescription", Level.STUDY, Match.EXACT, fold_case=True),
        _k("SeriesInstanceUID", Level.SERIES, Match.UIDS),
        _k("Modality", Level.SERIES, Match.EXACT),
        _k("SeriesNumber", Level.SERIES, Match.NUMBER),
        _k("SeriesDescription", Level.SERIES, Match.EXACT, fold_case=True),
        _k("BodyPartExamined", Level.SERIES, Match.EXACT),
        _k("SOPInstanceUID", Level.INSTANCE, Match.UIDS),
        _k("SOPClassUID", Level.INSTANCE, Match.UIDS),
        _k("InstanceNumber", Level.INSTANCE, Match.NUMBER),
    ]
)
BY_TAG = {key.tag: name for name, key in MATCHING.items()}

RESERVED = {"limit", "offset", "includefield", "fuzzymatching"}
MAX_LIMIT = 1000
DEFAULT_LIMIT = 200


@dataclass
class Query:
    level: Level
    # keyword -> values (a list for UIDs and lists; one value otherwise)
    filters: dict[str, list[str]] = field(default_factory=dict)
    dates: dict[str, tuple[dt.date | None, dt.date | None]] = field(default_factory=dict)
    times: dict[str, tuple[dt.time | None, dt.time | None]] = field(default_factory=dict)
    include_all: bool = False
    include: set[str] = field(default_factory=set)  # tags (8 hex digits)
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    ignored: list[str] = field(default_factory=list)  # keys we do not match on
    fuzzy: bool = False


def attribute_tag(name: str) -> str:
    """The tag (8 upper-case hex digits) of a keyword or tag; BadQuery if neither.
    A sequence path (``a.b``) names its first attribute."""
    head = name.split(".", 1)[0].strip()
    if re.fullmatch(r"[0-9A-Fa-f]{8}", head):
        return head.upper()
    tag = tag_for_keyword(head)
    if tag is None:
        raise BadQuery(f"{name!r} is not a DICOM attribute keyword or tag")
    return f"{tag:08X}"


def keyword_of(tag: str) -> str:
    try:
        return keyword_for_tag(int(tag, 16)) or tag
    except ValueError:
        return tag


def vr_of(tag: str) -> str:
    try:
        return str(dictionary_VR(int(tag, 16)))
    except (KeyError, ValueError):
        return "UN"


def _date(text: str, name: str) -> dt.date:
    try:
        return dt.datetime.strptime(text, "%Y%m%d").date()  # noqa: DTZ007 - a calendar date
    except ValueError:
        raise BadQuery(f"{name}: {text!r} is not a date (YYYYMMDD)") from None


def _date_range(value: str, name: str) -> tuple[dt.date | None, dt.date | None]:
    value = value.strip().replace(".", "")
    if "-" not in value:
        day = _date(value, name)
        return day, day
    low, _, high = value.partition("-")
    if not low and not high:
        raise BadQuery(f"{name}: '-' is not a date range")
    start = _date(low, name) if low else None
    end = _date(high, name) if high else None
    if start and end and start > end:
        raise BadQuery(f"{name}: the range {value!r} ends before it starts")
    return start, end


def _time(text: str, name: str, *, end: bool) -> dt.time:
    """A TM value (HH, HHMM, HHMMSS[.FFFFFF]); as the end of a range, the hour or
    minute it names is covered whole."""
    digits, _, fraction = text.replace(":", "").partition(".")
    if not digits.isdigit() or len(digits) not in (2, 4, 6) or not (fraction or "0").isdigit():
        raise BadQuery(f"{name}: {text!r} is not a time (HHMMSS)")
    parts = [int(digits[i : i + 2]) for i in range(0, len(digits), 2)]
    parts += [59 if end else 0] * (3 - len(parts))
    micro = int((fraction + "000000")[:6]) if fraction else (999999 if end else 0)
    try:
        return dt.time(parts[0], parts[1], parts[2], micro)
    except ValueError:
        raise BadQuery(f"{name}: {text!r} is not a time (HHMMSS)") from None


def _time_range(value: str, name: str) -> tuple[dt.time | None, dt.time | None]:
    value = value.strip()
    if "-" not in value:
        return _time(value, name, end=False), _time(value, name, end=True)
    low, _, high = value.partition("-")
    if not low and not high:
        raise BadQuery(f"{name}: '-' is not a time range")
    start = _time(low, name, end=False) if low else None
    stop = _time(high, name, end=True) if high else None
    if start and stop and start > stop:
        raise BadQuery(f"{name}: the range {value!r} ends before it starts")
    return start, stop


def _count(value: str, name: str, *, most: int | None = None) -> int:
    if not re.fullmatch(r"\d{1,9}", value.strip()):
        raise BadQuery(f"{name} must be a non-negative integer, not {value!r}")
    number = int(value)
    return min(number, most) if most is not None else number


def parse_query(params: Iterable[tuple[str, str]], *, level: Level) -> Query:
    """Parse QIDO-RS parameters for a search at ``level``; BadQuery if malformed."""
    query = Query(level=level)
    for raw_name, raw_value in params:
        name = raw_name.strip()
        lowered = name.lower()
        if lowered == "limit":
            query.limit = _count(raw_value, "limit", most=MAX_LIMIT)
            continue
        if lowered == "offset":
            query.offset = _count(raw_value, "offset")
            continue
        if lowered == "fuzzymatching":
            if raw_value.strip().lower() not in ("true", "false"):
                raise BadQuery("fuzzymatching must be true or false")
            query.fuzzy = raw_value.strip().lower() == "true"
            if query.fuzzy:
                query.ignored.append("fuzzymatching")
            continue
        if lowered == "includefield":
            for item in raw_value.split(","):
                item = item.strip()
                if not item:
                    continue
                if item.lower() == "all":
                    query.include_all = True
                else:
                    query.include.add(attribute_tag(item))
            continue
        tag = attribute_tag(name)
        keyword = BY_TAG.get(tag)
        if keyword is None:
            query.ignored.append(keyword_of(tag))
            continue
        key = MATCHING[keyword]
        value = raw_value.strip()
        if not value:
            continue  # universal matching: the attribute is returned, nothing filtered
        if key.match is Match.UIDS:
            uids = [u.strip() for u in re.split(r"[,\\]", value) if u.strip()]
            for uid in uids:
                if not is_valid_uid(uid):
                    raise BadQuery(f"{keyword}: {uid[:80]!r} is not a valid UID")
            query.filters[keyword] = uids
        elif key.match is Match.DATE:
            query.dates[keyword] = _date_range(value, keyword)
        elif key.match is Match.TIME:
            query.times[keyword] = _time_range(value, keyword)
        elif key.match is Match.LIST:
            query.filters[keyword] = [v.strip() for v in re.split(r"[,\\]", value) if v.strip()]
        elif key.match is Match.NUMBER:
            if not re.fullmatch(r"-?\d{1,9}", value):
                raise BadQuery(f"{keyword} must be an integer, not {value!r}")
            query.filters[keyword] = [value]
        else:
            if len(value) > 200:
                raise BadQuery(f"{keyword}: a value of at most 200 characters")
            query.filters[keyword] = [value]
        query.include.add(key.tag)
    return query


def wildcard_regex(value: str) -> str | None:
    """A regular expression for a value with ``*``/``?`` wildcards (None if it has none)."""
    if "*" not in value and "?" not in value:
        return None
    out = ["^"]
    for ch in value:
        out.append(".*" if ch == "*" else "." if ch == "?" else re.escape(ch))
    out.append("$")
    return "".join(out)
