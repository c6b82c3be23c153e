"""A structural checker for DICOM data sets, written from PS3.5 and reading raw bytes.

It is the fuzzer's judge, so it must not share code with what it judges: it does
not use pydicom's parser (only its data dictionary, to learn the VR of an
element in an implicit VR data set) and nothing from ``ingest``.  It reads the
data set as it travels in a C-STORE (the bytes after the file meta group) under
the negotiated transfer syntax and lists what is wrong with it, each defect
tagged with a category so a test can tell a request mismatch from a broken
encoding.

What it checks (PS3.5 sections in brackets):

- element headers, defined lengths, even lengths, explicit VRs and where an
  undefined length may be used [7.1, 7.1.1-7.1.3, 6.2];
- ascending tags within each data set level, which also catches a duplicated
  element [7.1];
- sequences and items: item tags, item and sequence delimiters and their zero
  lengths, and no more than 16 levels of nesting [7.5];
- fixed-size VRs, UI values (digits and dots, no leading zeros, 64 characters,
  one trailing NUL pad) [6.2, 9.1], IS values in the 32-bit range [6.2], and
  text that decodes under (0008,0005) Specific Character Set [6.1];
- native pixel data of exactly Rows x Columns x Samples x Bits/8 x Frames bytes
  (padded to even) [8.1.1]; encapsulated pixel data as a basic offset table,
  fragments and a delimiter, the first fragment starting as its transfer syntax
  says [A.4, Annex G];
- the four identifying UIDs present with one value each, and equal to the
  C-STORE request's where the request names them [PS3.4 B.2.3, PS3.7 9.1.1].

A deflated data set is inflated first (raw deflate, bounded) [A.5].
"""

from __future__ import annotations

import enum
import itertools
import re
import zlib
from dataclasses import dataclass, field

from pydicom.datadict import dictionary_VR


class Category(enum.StrEnum):
    """What kind of defect: a test treats request mismatches apart from the rest."""

    STRUCTURE = "structure"  # headers, lengths, VRs, order, items, delimiters, nesting
    VALUE = "value"  # UI, IS, text, fixed-size values; the identifying UIDs
    PIXELS = "pixels"  # pixel data size or encapsulation
    REQUEST = "request"  # the C-STORE request itself, or the data set against it


@dataclass(frozen=True)
class Defect:
    category: Category
    message: str

    def __str__(self) -> str:
        return f"{self.category}: {self.message}"


def category_of(defect: str) -> Category:
    """The category of a defect string returned by ``check``."""
    return Category(defect.split(":", 1)[0])


@dataclass(frozen=True)
class Syntax:
    """How a transfer syntax encodes a data set (PS3.5 Section 10 and Annex A)."""

    uid: str
    name: str
    implicit: bool = False
    little: bool = True
    deflated: bool = False
    family: str = ""  # encapsulated pixel data: "jpeg", "jpeg-ls", "j2k" or "rle"

    @property
    def encapsulated(self) -> bool:
        return bool(self.family)


IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.57"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JPEG_LS_NEAR = "1.2.840.10008.1.2.4.81"
JPEG2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG2000 = "1.2.840.10008.1.2.4.91"
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
HTJ2K_LOSSLESS_RPCL = "1.2.840.10008.1.2.4.202"
HTJ2K = "1.2.840.10008.1.2.4.203"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"

SYNTAXES: dict[str, Syntax] = {
    s.uid: s
    for s in (
        Syntax(IMPLICIT_LE, "Implicit VR Little Endian", implicit=True),
        Syntax(EXPLICIT_LE, "Explicit VR Little Endian"),
        Syntax(DEFLATED_LE, "Deflated Explicit VR Little Endian", deflated=True),
        Syntax(EXPLICIT_BE, "Explicit VR Big Endian", little=False),
        Syntax(JPEG_BASELINE, "JPEG Baseline", family="jpeg"),
        Syntax(JPEG_EXTENDED, "JPEG Extended", family="jpeg"),
        Syntax(JPEG_LOSSLESS, "JPEG Lossless", family="jpeg"),
        Syntax(JPEG_LOSSLESS_SV1, "JPEG Lossless SV1", family="jpeg"),
        Syntax(JPEG_LS_LOSSLESS, "JPEG-LS Lossless", family="jpeg-ls"),
        Syntax(JPEG_LS_NEAR, "JPEG-LS Near-Lossless", family="jpeg-ls"),
        Syntax(JPEG2000_LOSSLESS, "JPEG 2000 Lossless", family="j2k"),
        Syntax(JPEG2000, "JPEG 2000", family="j2k"),
        Syntax(HTJ2K_LOSSLESS, "HTJ2K Lossless", family="j2k"),
        Syntax(HTJ2K_LOSSLESS_RPCL, "HTJ2K Lossless RPCL", family="j2k"),
        Syntax(HTJ2K, "HTJ2K", family="j2k"),
        Syntax(RLE_LOSSLESS, "RLE Lossless", family="rle"),
    )
}

ITEM = 0xFFFEE000
ITEM_DELIMITER = 0xFFFEE00D
SEQUENCE_DELIMITER = 0xFFFEE0DD
UNDEFINED = 0xFFFFFFFF
MAX_SEQUENCE_DEPTH = 16  # PS3.5 7.5: sequences nest no deeper than this in practice
_FOLLOW_DEPTH = 200  # beyond this the walk stops rather than recurse on
MAX_UID_LENGTH = 64

SPECIFIC_CHARACTER_SET = 0x00080005
SOP_CLASS_UID = 0x00080016
SOP_INSTANCE_UID = 0x00080018
STUDY_INSTANCE_UID = 0x0020000D
SERIES_INSTANCE_UID = 0x0020000E
SAMPLES_PER_PIXEL = 0x00280002
NUMBER_OF_FRAMES = 0x00280008
ROWS = 0x00280010
COLUMNS = 0x00280011
BITS_ALLOCATED = 0x00280100
PIXEL_DATA = 0x7FE00010

REQUIRED_UIDS = {
    SOP_CLASS_UID: "SOPClassUID",
    SOP_INSTANCE_UID: "SOPInstanceUID",
    STUDY_INSTANCE_UID: "StudyInstanceUID",
    SERIES_INSTANCE_UID: "SeriesInstanceUID",
}
# Top-level values the checks need later (their first occurrence is kept).
_KEPT = {
    SPECIFIC_CHARACTER_SET,
    *REQUIRED_UIDS,
    SAMPLES_PER_PIXEL,
    NUMBER_OF_FRAMES,
    ROWS,
    COLUMNS,
    BITS_ALLOCATED,
}

VRS = frozenset(
    {
        "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB", "OD", "OF",
        "OL", "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN",
        "UR", "US", "UT", "UV",
    }
)  # fmt: skip
# VRs with a 2-byte reserved field and a 4-byte length in explicit VR (PS3.5 7.1.2).
LONG_VRS = frozenset(["OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"])
FIXED_SIZE = {
    "US": 2,
    "SS": 2,
    "UL": 4,
    "SL": 4,
    "FL": 4,
    "AT": 4,
    "OF": 4,
    "OL": 4,
    "FD": 8,
    "OD": 8,
    "OV": 8,
    "SV": 8,
    "UV": 8,
}
# Always the default repertoire, whatever (0008,0005) says (PS3.5 6.2).
ASCII_VRS = frozenset(["CS", "AE", "AS", "DA", "TM", "DT"])
# Decoded with the data set's character set.
TEXT_VRS = frozenset(["SH", "LO", "PN", "ST", "LT", "UT", "UC"])
CODECS = {"": "ascii", "ISO_IR 6": "ascii", "ISO_IR 192": "utf-8", "ISO_IR 100": "latin-1"}

_UID_VALUE = re.compile(rb"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
_INTEGER = re.compile(r"[+-]?[0-9]+")


def tag_str(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def dictionary_vr(tag: int) -> str:
    """The VR an implicit VR data set implies for ``tag``; "UN" when unknown or ambiguous
    in a way that matters (an ambiguous VR whose forms share a size keeps that size)."""
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        if tag & 0xFFFF == 0:
            return "UL"  # group length
        if (tag >> 16) % 2 and 0x10 <= tag & 0xFFFF <= 0xFF:
            return "LO"  # private creator
        return "UN"
    forms = vr.split(" or ")
    if len(forms) == 1:
        return forms[0]
    sizes = {FIXED_SIZE.get(f) for f in forms}
    if len(sizes) == 1 and None not in sizes:
        return forms[0]
    return "OB or OW" if set(forms) <= {"OB", "OW"} else "UN"


@dataclass(frozen=True)
class Element:
    """Where one element lies in the (inflated) data set bytes."""

    tag: int
    vr: str
    offset: int  # first byte of the header
    header_size: int  # 8 or 12
    length: int  # as encoded; UNDEFINED for an undefined length
    length_at: int  # offset of the length field
    length_size: int  # 2 or 4
    vr_at: int | None  # offset of the explicit VR, None in implicit VR
    end: int  # first byte after the element (after its delimiter, if any)
    depth: int  # sequence levels above it: 0 at the top level
    little: bool

    @property
    def value_offset(self) -> int:
        return self.offset + self.header_size


@dataclass(frozen=True)
class Marker:
    """An item, item delimiter or sequence delimiter (also inside encapsulated pixel data)."""

    kind: str  # "item", "item-delimiter" or "sequence-delimiter"
    offset: int
    length: int
    depth: int
    little: bool


@dataclass
class Walk:
    """What a walk over a data set found."""

    defects: list[Defect] = field(default_factory=list)
    elements: list[Element] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    top: dict[int, bytes] = field(default_factory=dict)  # kept top-level values
    complete: bool = False  # the data set was followed to its end
    inflated: bytes | None = None  # the inflated bytes of a deflated data set


class _Lost(Exception):
    """The walk cannot know where the next element starts."""


@dataclass(frozen=True)
class _Level:
    implicit: bool
    little: bool
    depth: int  # sequence levels above this data set
    codec: str | None  # None: the character set is not judged
    region: str  # what ends this data set, for messages


@dataclass(frozen=True)
class _Header:
    tag: int
    vr: str
    length: int
    header_size: int
    length_at: int
    length_size: int
    vr_at: int | None


class _Walker:
    def __init__(self, data: bytes, syntax: Syntax, walk: Walk, where: str) -> None:
        self.data = data
        self.syntax = syntax
        self.walk = walk
        self.where = where  # "offset" or "inflated offset"
        self.too_deep = False

    # --- small helpers ---------------------------------------------------------

    def defect(self, category: Category, message: str) -> None:
        self.walk.defects.append(Defect(category, message))

    def at(self, pos: int) -> str:
        return f"{self.where} {pos}"

    def uint(self, pos: int, size: int, little: bool) -> int:
        return int.from_bytes(self.data[pos : pos + size], "little" if little else "big")

    def tag_at(self, pos: int, little: bool) -> int:
        return (self.uint(pos, 2, little) << 16) | self.uint(pos + 2, 2, little)

    # --- data sets, elements, sequences --------------------------------------------

    def header(self, pos: int, end: int, level: _Level) -> _Header:
        left = end - pos
        if left < 8:
            self.defect(
                Category.STRUCTURE,
                f"element header cut short at {self.at(pos)}: {left} of at least 8 bytes "
                f"before the end of the {level.region}",
            )
            raise _Lost
        little = level.little
        tag = self.tag_at(pos, little)
        if tag in (ITEM, ITEM_DELIMITER, SEQUENCE_DELIMITER) or level.implicit:
            vr = "" if tag >> 16 == 0xFFFE else dictionary_vr(tag)
            return _Header(tag, vr, self.uint(pos + 4, 4, little), 8, pos + 4, 4, None)
        raw_vr = self.data[pos + 4 : pos + 6]
        vr = raw_vr.decode("latin-1")
        if vr not in VRS:
            self.defect(
                Category.STRUCTURE,
                f"explicit VR bytes {raw_vr!r} of element {tag_str(tag)} at {self.at(pos)} "
                "are not a known VR",
            )
            raise _Lost
        if vr in LONG_VRS:
            if left < 12:
                self.defect(
                    Category.STRUCTURE,
                    f"element header of {tag_str(tag)} ({vr}) cut short at {self.at(pos)}: "
                    f"{left} of 12 bytes before the end of the {level.region}",
                )
                raise _Lost
            return _Header(tag, vr, self.uint(pos + 8, 4, little), 12, pos + 8, 4, pos + 4)
        return _Header(tag, vr, self.uint(pos + 6, 2, little), 8, pos + 6, 2, pos + 4)

    def dataset(self, pos: int, end: int, level: _Level, *, delimited: bool) -> int:
        """Walk one data set level from ``pos``; an undefined-length item (``delimited``)
        ends at its item delimiter, anything else at ``end``.  Returns where it ended."""
        previous = -1
        codec = level.codec
        while True:
            if pos >= end:
                if delimited:
                    self.defect(
                        Category.STRUCTURE,
                        f"item ending at {self.at(pos)} has no item delimiter (FFFE,E00D) "
                        f"before the end of the {level.region}",
                    )
                    raise _Lost
                return pos
            head = self.header(pos, end, level)
            tag = head.tag
            if tag == ITEM_DELIMITER:
                self.walk.markers.append(
                    Marker("item-delimiter", pos, head.length, level.depth, level.little)
                )
                if head.length != 0:
                    self.defect(
                        Category.STRUCTURE,
                        f"item delimiter at {self.at(pos)} has length {head.length} (must be 0)",
                    )
                if delimited:
                    return pos + 8
                self.defect(
                    Category.STRUCTURE,
                    f"item delimiter (FFFE,E00D) at {self.at(pos)} outside an "
                    "undefined-length item",
                )
                pos += 8
                continue
            if tag == SEQUENCE_DELIMITER:
                if delimited:
                    self.defect(
                        Category.STRUCTURE,
                        f"item has no item delimiter: a sequence delimiter comes first at "
                        f"{self.at(pos)}",
                    )
                    return pos  # the sequence takes its delimiter
                self.walk.markers.append(
                    Marker("sequence-delimiter", pos, head.length, level.depth, level.little)
                )
                self.defect(
                    Category.STRUCTURE,
                    f"sequence delimiter (FFFE,E0DD) at {self.at(pos)} outside a sequence",
                )
                pos += 8
                continue
            if tag == ITEM:
                self.defect(
                    Category.STRUCTURE,
                    f"item tag (FFFE,E000) at {self.at(pos)} where a data element was expected",
                )
                raise _Lost
            if tag == previous:
                self.defect(
                    Category.STRUCTURE,
                    f"element {tag_str(tag)} at {self.at(pos)} appears twice in one data set",
                )
            elif tag < previous:
                self.defect(
                    Category.STRUCTURE,
                    f"element {tag_str(tag)} at {self.at(pos)} follows {tag_str(previous)}: "
                    "tags are not in ascending order",
                )
            previous = tag
            pos = self.element(head, pos, end, level, codec)
            if tag == SPECIFIC_CHARACTER_SET:
                codec = self.codec_of(head, pos)

    def codec_of(self, head: _Header, end_of_element: int) -> str | None:
        """The codec (0008,0005) names for the rest of this data set and its items."""
        if head.length in (0, UNDEFINED):
            return "ascii"
        raw = self.data[end_of_element - head.length : end_of_element]
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            return None  # reported as a CS value that is not ASCII
        terms = [t.strip(" ") for t in text.rstrip("\0 ").split("\\")]
        if len(terms) > 1:
            return None  # ISO 2022 code extensions: not judged
        return CODECS.get(terms[0])

    def element(self, head: _Header, pos: int, end: int, level: _Level, codec: str | None) -> int:
        tag, vr, length = head.tag, head.vr, head.length
        value_at = pos + head.header_size
        top = level.depth == 0
        if length == UNDEFINED:
            if vr == "SQ" or (level.implicit and vr == "UN"):
                after = self.sequence(tag, pos, value_at, end, level, codec, defined=False)
            elif vr == "UN":
                # Explicit UN of undefined length holds a sequence in implicit VR little
                # endian (PS3.5 6.2.2).
                inner = _Level(True, True, level.depth, codec, level.region)
                after = self.sequence(tag, pos, value_at, end, inner, codec, defined=False)
            elif tag == PIXEL_DATA and vr in ("OB", "OW", "OB or OW"):
                judged = top and self.syntax.encapsulated
                if not self.syntax.encapsulated:
                    self.defect(
                        Category.PIXELS,
                        f"pixel data (7FE0,0010) at {self.at(pos)} has undefined length in "
                        f"the native transfer syntax {self.syntax.name}",
                    )
                after = self.fragments(pos, value_at, end, level, judged=judged)
            else:
                self.defect(
                    Category.STRUCTURE,
                    f"element {tag_str(tag)} at {self.at(pos)} has undefined length, which "
                    f"VR {vr} may not have",
                )
                raise _Lost
            self.record(head, pos, after, level)
            return after
        if value_at + length > end:
            self.defect(
                Category.STRUCTURE,
                f"element {tag_str(tag)} length {length} runs past the end of the "
                f"{level.region} at {self.at(pos)}",
            )
            raise _Lost
        if length % 2:
            self.defect(
                Category.STRUCTURE,
                f"element {tag_str(tag)} at {self.at(pos)} has odd length {length}",
            )
        after = value_at + length
        if vr == "SQ":
            self.sequence(tag, pos, value_at, after, level, codec, defined=True)
        else:
            if vr in FIXED_SIZE or vr in ASCII_VRS or vr in TEXT_VRS or vr in ("UI", "IS"):
                self.values(tag, vr, self.data[value_at:after], pos, codec)
            if top and tag in _KEPT and tag not in self.walk.top:
                self.walk.top[tag] = self.data[value_at:after]
            if tag == PIXEL_DATA and top:
                if self.syntax.encapsulated:
                    self.defect(
                        Category.PIXELS,
                        f"pixel data (7FE0,0010) at {self.at(pos)} has a defined length in "
                        f"the encapsulated transfer syntax {self.syntax.name}",
                    )
                else:
                    self.native_pixels(pos, length, level.little)
        self.record(head, pos, after, level)
        return after

    def record(self, head: _Header, pos: int, after: int, level: _Level) -> None:
        self.walk.elements.append(
            Element(
                tag=head.tag,
                vr=head.vr,
                offset=pos,
                header_size=head.header_size,
                length=head.length,
                length_at=head.length_at,
                length_size=head.length_size,
                vr_at=head.vr_at,
                end=after,
                depth=level.depth,
                little=level.little,
            )
        )

    def sequence(
        self,
        tag: int,
        pos: int,
        start: int,
        end: int,
        level: _Level,
        codec: str | None,
        *,
        defined: bool,
    ) -> int:
        """Walk a sequence's items; returns the offset after it (and its delimiter)."""
        depth = level.depth + 1
        if depth > MAX_SEQUENCE_DEPTH and not self.too_deep:
            self.too_deep = True
            self.defect(
                Category.STRUCTURE,
                f"sequence {tag_str(tag)} at {self.at(pos)} is nested {depth} levels deep "
                f"(more than {MAX_SEQUENCE_DEPTH})",
            )
        if depth > _FOLLOW_DEPTH:
            raise _Lost
        region = "sequence" if defined else level.region
        little = level.little
        item_level = _Level(level.implicit, little, depth, codec, "item")
        at = start
        while True:
            if at >= end:
                if defined:
                    return at
                self.defect(
                    Category.STRUCTURE,
                    f"sequence {tag_str(tag)} at {self.at(pos)} has no sequence delimiter "
                    f"(FFFE,E0DD) before the end of the {region}",
                )
                raise _Lost
            if end - at < 8:
                self.defect(
                    Category.STRUCTURE,
                    f"item header cut short at {self.at(at)} in sequence {tag_str(tag)}: "
                    f"{end - at} of 8 bytes before the end of the {region}",
                )
                raise _Lost
            item_tag, item_length = self.tag_at(at, little), self.uint(at + 4, 4, little)
            if item_tag == SEQUENCE_DELIMITER:
                self.walk.markers.append(
                    Marker("sequence-delimiter", at, item_length, depth, little)
                )
                if item_length != 0:
                    self.defect(
                        Category.STRUCTURE,
                        f"sequence delimiter at {self.at(at)} has length {item_length} (must be 0)",
                    )
                if not defined:
                    return at + 8
                self.defect(
                    Category.STRUCTURE,
                    f"sequence delimiter at {self.at(at)} inside the defined-length sequence "
                    f"{tag_str(tag)}",
                )
                at += 8
                continue
            if item_tag != ITEM:
                self.defect(
                    Category.STRUCTURE,
                    f"item in sequence {tag_str(tag)} at {self.at(at)} has tag "
                    f"{tag_str(item_tag)}, not (FFFE,E000)",
                )
                raise _Lost
            self.walk.markers.append(Marker("item", at, item_length, depth, little))
            if item_length == UNDEFINED:
                inner = _Level(level.implicit, little, depth, codec, region)
                at = self.dataset(at + 8, end, inner, delimited=True)
                continue
            if at + 8 + item_length > end:
                self.defect(
                    Category.STRUCTURE,
                    f"item length {item_length} runs past the end of the {region} at {self.at(at)}",
                )
                raise _Lost
            if item_length % 2:
                self.defect(
                    Category.STRUCTURE, f"item at {self.at(at)} has odd length {item_length}"
                )
            self.dataset(at + 8, at + 8 + item_length, item_level, delimited=False)
            at += 8 + item_length

    # --- values ----------------------------------------------------------------------

    def values(self, tag: int, vr: str, value: bytes, pos: int, codec: str | None) -> None:
        size = FIXED_SIZE.get(vr)
        if size is not None:
            if len(value) % size:
                self.defect(
                    Category.VALUE,
                    f"element {tag_str(tag)} at {self.at(pos)} is {vr} with length "
                    f"{len(value)}, not a multiple of {size}",
                )
            return
        if vr == "UI":
            self.uids(tag, value, pos)
            return
        if vr == "IS":
            self.integers(tag, value, pos)
            return
        name = "ASCII" if vr in ASCII_VRS else codec
        if name is None:
            return  # a character set the oracle does not judge
        try:
            value.decode("ascii" if vr in ASCII_VRS else name)
        except UnicodeDecodeError as exc:
            self.defect(
                Category.VALUE,
                f"{vr} value of {tag_str(tag)} at {self.at(pos)} is not valid {name}: "
                f"byte 0x{value[exc.start]:02X} at value offset {exc.start}",
            )

    def uids(self, tag: int, value: bytes, pos: int) -> None:
        text = value[:-1] if value.endswith(b"\0") else value  # the one NUL pad
        if not text:
            return
        where = f"{tag_str(tag)} at {self.at(pos)}"
        for part in text.split(b"\\"):
            shown = part.decode("latin-1")
            if not part:
                self.defect(Category.VALUE, f"UI value of {where} has an empty value")
                continue
            stray = sorted({b for b in part if b not in b"0123456789."})
            if stray:
                names = ", ".join("NUL" if b == 0 else repr(chr(b)) for b in stray[:4])
                self.defect(
                    Category.VALUE,
                    f"UI value {shown!r} of {where} contains {names} (only digits and dots)",
                )
            elif not _UID_VALUE.fullmatch(part):
                self.defect(
                    Category.VALUE,
                    f"UI value {shown!r} of {where} has an empty component or a "
                    "component with a leading zero",
                )
            if len(part) > MAX_UID_LENGTH:
                self.defect(
                    Category.VALUE,
                    f"UI value of {where} is {len(part)} characters (more than {MAX_UID_LENGTH})",
                )

    def integers(self, tag: int, value: bytes, pos: int) -> None:
        where = f"{tag_str(tag)} at {self.at(pos)}"
        try:
            text = value.decode("ascii")
        except UnicodeDecodeError:
            self.defect(Category.VALUE, f"IS value of {where} is not ASCII")
            return
        for part in text.split("\\"):
            number = part.strip(" ")
            if not number:
                continue
            if not _INTEGER.fullmatch(number):
                self.defect(Category.VALUE, f"IS value {number!r} of {where} is not an integer")
                continue
            n = int(number)
            if not -(2**31) <= n <= 2**31 - 1:
                self.defect(
                    Category.VALUE, f"IS value {number} of {where} is outside [-2^31, 2^31-1]"
                )
            elif tag == NUMBER_OF_FRAMES and n < 1:
                self.defect(
                    Category.VALUE, f"NumberOfFrames {tag_str(tag)} at {self.at(pos)} is {n}"
                )

    # --- pixel data ------------------------------------------------------------------

    def top_us(self, tag: int, little: bool) -> int | None:
        value = self.walk.top.get(tag)
        if value is None or len(value) < 2:
            return None
        return int.from_bytes(value[:2], "little" if little else "big")

    def frames(self) -> int | None:
        """NumberOfFrames (1 when absent); None when it is not a usable integer."""
        value = self.walk.top.get(NUMBER_OF_FRAMES)
        if value is None:
            return 1
        first = value.decode("latin-1").split("\\")[0].strip(" ")
        if not first:
            return 1
        if not _INTEGER.fullmatch(first) or not 1 <= int(first) <= 2**31 - 1:
            return None
        return int(first)

    def native_pixels(self, pos: int, length: int, little: bool) -> None:
        if length == 0:
            self.defect(Category.PIXELS, f"pixel data (7FE0,0010) at {self.at(pos)} is empty")
            return
        rows, columns = self.top_us(ROWS, little), self.top_us(COLUMNS, little)
        bits = self.top_us(BITS_ALLOCATED, little)
        missing = [
            name
            for name, v in (("Rows", rows), ("Columns", columns), ("BitsAllocated", bits))
            if not v
        ]
        if missing:
            self.defect(
                Category.PIXELS,
                f"pixel data (7FE0,0010) at {self.at(pos)} cannot be sized: "
                f"{', '.join(missing)} missing or zero",
            )
            return
        assert rows and columns and bits
        samples = self.top_us(SAMPLES_PER_PIXEL, little)
        samples = 1 if SAMPLES_PER_PIXEL not in self.walk.top else samples
        if not samples:
            self.defect(Category.PIXELS, "SamplesPerPixel (0028,0002) is missing or zero")
            return
        frames = self.frames()
        if frames is None:
            return  # already a value defect; the size cannot be known
        if bits != 1 and bits % 8:
            self.defect(Category.PIXELS, f"BitsAllocated {bits} is neither 1 nor a multiple of 8")
            return
        count = rows * columns * samples * frames
        expected = (count + 7) // 8 if bits == 1 else count * (bits // 8)
        padded = expected + expected % 2
        if length != padded:
            even = f" ({padded} padded to even)" if padded != expected else ""
            self.defect(
                Category.PIXELS,
                f"pixel data (7FE0,0010) at {self.at(pos)} is {length} bytes; Rows {rows} x "
                f"Columns {columns} x SamplesPerPixel {samples} x BitsAllocated {bits}/8 x "
                f"NumberOfFrames {frames} = {expected}{even}",
            )

    def fragments(self, pos: int, start: int, end: int, level: _Level, *, judged: bool) -> int:
        """Walk encapsulated pixel data: offset table, fragments, delimiter (PS3.5 A.4)."""
        little = level.little
        at = start
        items = 0  # the offset table is item 1
        first: bytes | None = None
        first_at = 0
        while True:
            if end - at < 8:
                if at >= end:
                    self.defect(
                        Category.PIXELS,
                        f"encapsulated pixel data at {self.at(pos)} has no sequence "
                        f"delimiter before the end of the {level.region}",
                    )
                else:
                    self.defect(
                        Category.STRUCTURE,
                        f"item header cut short at {self.at(at)} in encapsulated pixel data: "
                        f"{end - at} of 8 bytes before the end of the {level.region}",
                    )
                raise _Lost
            item_tag, length = self.tag_at(at, little), self.uint(at + 4, 4, little)
            if item_tag == SEQUENCE_DELIMITER:
                self.walk.markers.append(
                    Marker("sequence-delimiter", at, length, level.depth + 1, little)
                )
                if length != 0:
                    self.defect(
                        Category.STRUCTURE,
                        f"sequence delimiter at {self.at(at)} has length {length} (must be 0)",
                    )
                if items == 0:
                    self.defect(
                        Category.PIXELS,
                        f"encapsulated pixel data at {self.at(pos)} has no basic offset table "
                        "item and no fragment",
                    )
                elif items == 1:
                    self.defect(
                        Category.PIXELS,
                        f"encapsulated pixel data at {self.at(pos)} has no fragment after its "
                        "basic offset table",
                    )
                break
            if item_tag != ITEM:
                self.defect(
                    Category.PIXELS,
                    f"item in encapsulated pixel data at {self.at(at)} has tag "
                    f"{tag_str(item_tag)}, not (FFFE,E000)",
                )
                raise _Lost
            if length == UNDEFINED:
                self.defect(
                    Category.PIXELS, f"pixel data item at {self.at(at)} has undefined length"
                )
                raise _Lost
            if at + 8 + length > end:
                self.defect(
                    Category.STRUCTURE,
                    f"pixel data item length {length} runs past the end of the "
                    f"{level.region} at {self.at(at)}",
                )
                raise _Lost
            self.walk.markers.append(Marker("item", at, length, level.depth + 1, little))
            if length % 2:
                self.defect(
                    Category.PIXELS, f"pixel data item at {self.at(at)} has odd length {length}"
                )
            if items == 0 and length % 4:
                self.defect(
                    Category.PIXELS,
                    f"basic offset table at {self.at(at)} has length {length}, not a multiple of 4",
                )
            elif items == 1:
                first, first_at = self.data[at + 8 : at + 8 + length], at
            items += 1
            at += 8 + length
        if judged and first is not None:
            self.signature(first, first_at)
        return at + 8

    def signature(self, fragment: bytes, at: int) -> None:
        """The first fragment starts as the transfer syntax's codec says it must."""
        family, name = self.syntax.family, self.syntax.name
        if family in ("jpeg", "jpeg-ls"):
            if not fragment.startswith(b"\xff\xd8"):
                self.defect(
                    Category.PIXELS,
                    f"first fragment at {self.at(at)} starts {fragment[:4].hex(' ')}, not "
                    f"a JPEG start of image (ff d8) as {name} requires",
                )
        elif family == "j2k":
            if not fragment.startswith((b"\xff\x4f\xff\x51", b"\0\0\0\x0cjP  ")):
                self.defect(
                    Category.PIXELS,
                    f"first fragment at {self.at(at)} starts {fragment[:8].hex(' ')}, "
                    f"neither a JPEG 2000 codestream (ff 4f ff 51) nor a JP2 signature box "
                    f"as {name} requires",
                )
        elif family == "rle":
            self.rle_header(fragment, at)

    def rle_header(self, fragment: bytes, at: int) -> None:
        where = f"RLE header of the fragment at {self.at(at)}"
        if len(fragment) < 64:
            self.defect(
                Category.PIXELS,
                f"{where}: the fragment is {len(fragment)} bytes, shorter than its 64-byte header",
            )
            return
        count = int.from_bytes(fragment[:4], "little")
        offsets = [int.from_bytes(fragment[4 + 4 * i : 8 + 4 * i], "little") for i in range(15)]
        if not 1 <= count <= 15:
            self.defect(Category.PIXELS, f"{where} declares {count} segments (1 to 15 allowed)")
            return
        used = offsets[:count]
        problems = []
        if used[0] != 64:
            problems.append(f"the first segment starts at {used[0]}, not 64")
        if any(b <= a for a, b in itertools.pairwise(used)):
            problems.append("segment offsets do not increase")
        if any(o >= len(fragment) for o in used):
            problems.append(f"a segment starts beyond the fragment's {len(fragment)} bytes")
        if any(offsets[count:]):
            problems.append("offsets of unused segments are not zero")
        bits = self.top_us(BITS_ALLOCATED, True)
        samples = self.top_us(SAMPLES_PER_PIXEL, True) or 1
        if bits and bits % 8 == 0 and count != samples * bits // 8:
            problems.append(
                f"{count} segments for SamplesPerPixel {samples} x BitsAllocated {bits}/8"
            )
        for problem in problems:
            self.defect(Category.PIXELS, f"{where}: {problem}")


def _inflate(raw: bytes, limit: int, walk: Walk) -> bytes | None:
    """Inflate a deflated data set (raw deflate, PS3.5 A.5), at most ``limit`` bytes."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        out = inflater.decompress(raw, limit)
    except zlib.error as exc:
        walk.defects.append(
            Defect(Category.STRUCTURE, f"deflated data set does not inflate: {exc}")
        )
        return None
    if inflater.unconsumed_tail:
        walk.defects.append(
            Defect(
                Category.STRUCTURE,
                f"deflated data set inflates beyond {limit} bytes (not followed further)",
            )
        )
        return None
    if not inflater.eof:
        walk.defects.append(
            Defect(
                Category.STRUCTURE,
                f"deflated data set ends inside its deflate stream ({len(raw)} bytes, "
                f"{len(out)} inflated)",
            )
        )
    trailing = inflater.unused_data
    if len(trailing) > 1 or trailing.strip(b"\0"):
        walk.defects.append(
            Defect(
                Category.STRUCTURE,
                f"{len(trailing)} bytes follow the end of the deflate stream",
            )
        )
    return out


def walk(dataset_bytes: bytes, *, transfer_syntax: str, inflate_limit: int = 64 << 20) -> Walk:
    """Walk a data set under ``transfer_syntax``: its defects (request aside), and where
    each element, item and delimiter lies (in the inflated bytes, when deflated)."""
    result = Walk()
    syntax = SYNTAXES.get(transfer_syntax)
    if syntax is None:
        result.defects.append(
            Defect(Category.STRUCTURE, f"transfer syntax {transfer_syntax!r} is not one known")
        )
        return result
    data = dataset_bytes
    where = "offset"
    if syntax.deflated:
        inflated = _inflate(dataset_bytes, inflate_limit, result)
        if inflated is None:
            return result
        data, where = inflated, "inflated offset"
        result.inflated = inflated
    walker = _Walker(data, syntax, result, where)
    level = _Level(syntax.implicit, syntax.little, 0, "ascii", "data set")
    try:
        walker.dataset(0, len(data), level, delimited=False)
    except _Lost:
        return result
    result.complete = True
    for tag, keyword in REQUIRED_UIDS.items():
        value = result.top.get(tag)
        if value is None:
            result.defects.append(Defect(Category.VALUE, f"{keyword} {tag_str(tag)} is missing"))
            continue
        text = value[:-1] if value.endswith(b"\0") else value
        if not text.strip(b" "):
            result.defects.append(Defect(Category.VALUE, f"{keyword} {tag_str(tag)} is empty"))
        elif b"\\" in text:
            count = text.count(b"\\") + 1
            result.defects.append(
                Defect(
                    Category.VALUE,
                    f"{keyword} {tag_str(tag)} has {count} values (exactly one is required)",
                )
            )
    return result


def _unpad(uid: str) -> str:
    """A UID without the one trailing NUL or space pad it may carry."""
    return uid[:-1] if uid.endswith(("\0", " ")) else uid


def request_defects(
    found: Walk, *, request_sop_class: str, request_sop_instance: str
) -> list[Defect]:
    """The C-STORE request's own UIDs, and the data set's against them."""
    defects = []
    if not request_sop_instance:
        defects.append(Defect(Category.REQUEST, "the request's Affected SOP Instance UID is empty"))
    elif not request_sop_instance.strip(" \0"):
        defects.append(Defect(Category.REQUEST, "the request's Affected SOP Instance UID is blank"))
    elif len(request_sop_instance) > MAX_UID_LENGTH:
        defects.append(
            Defect(
                Category.REQUEST,
                f"the request's Affected SOP Instance UID is {len(request_sop_instance)} "
                f"characters (more than {MAX_UID_LENGTH})",
            )
        )
    for tag, keyword, requested in (
        (SOP_CLASS_UID, "SOPClassUID", request_sop_class),
        (SOP_INSTANCE_UID, "SOPInstanceUID", request_sop_instance),
    ):
        value = found.top.get(tag)
        if value is None:
            continue  # missing: a value defect, or the walk never reached it
        mine, theirs = _unpad(value.decode("latin-1")), _unpad(requested)
        if mine != theirs:
            defects.append(
                Defect(
                    Category.REQUEST,
                    f"the data set's {keyword} {mine[:80]!r} differs from the request's "
                    f"{theirs[:80]!r}",
                )
            )
    return defects


def inspect(
    dataset_bytes: bytes,
    *,
    transfer_syntax: str,
    request_sop_class: str,
    request_sop_instance: str,
) -> list[Defect]:
    """Every defect of a C-STORE: the data set's, then the request's."""
    found = walk(dataset_bytes, transfer_syntax=transfer_syntax)
    return found.defects + request_defects(
        found, request_sop_class=request_sop_class, request_sop_instance=request_sop_instance
    )


def check(
    dataset_bytes: bytes,
    *,
    transfer_syntax: str,
    request_sop_class: str,
    request_sop_instance: str,
) -> list[str]:
    """Defect descriptions of a C-STORE ("<category>: <what, where>"); empty when
    the data set and request are well-formed."""
    return [
        str(d)
        for d in inspect(
            dataset_bytes,
            transfer_syntax=transfer_syntax,
            request_sop_class=request_sop_class,
            request_sop_instance=request_sop_instance,
        )
    ]
