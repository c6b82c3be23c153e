"""Is a received object whole and well-formed?  Decided before it is acknowledged.

pydicom reads leniently (that is its job: show what it can of a damaged file), so
a data set cut inside an element, a length that swallows the pixel data, or native
pixel data labelled JPEG all read "fine" through it.  The gateway must not answer
Success to those: the sender deletes its only copy.  So this module walks the data
set as PS3.5 defines it, under the presentation context's transfer syntax, and
refuses at the first defect with a precise reason:

- every element header is complete; every defined length is even and stays inside
  its data set (or item); undefined lengths only where PS3.5 allows them;
- tags ascend strictly within each data set (a second StudyInstanceUID is caught
  here); sequences and items are delimited; nesting is bounded;
- fixed-size VRs have whole values; UIDs have the UID syntax; IS values are
  integers in 32-bit range (the database columns' range); text decodes under
  the declared Specific Character Set;
- native pixel data has exactly the length Rows x Columns x samples x bits x
  frames implies; encapsulated pixel data has a basic offset table item,
  well-formed fragments (at least one per frame) and a sequence delimiter, and
  its first fragment starts as the transfer syntax's codec says it must;
- the C-STORE request's SOP Class and Instance UIDs are the data set's.

Streaming, in bounded memory: values are skipped with a seek unless they are
checked, and checked values larger than ``VALUE_READ_LIMIT`` are read in chunks.
Pure: a path in, a ``Checked`` or a ``Refused`` (with its DIMSE status) out; no
Django import, so it is tested fast and run anywhere.  The DICOM conformance
statement (docs/dicom-conformance.md) lists each refusal and its status.
"""

from __future__ import annotations

import codecs
import itertools
import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from pydicom.charset import python_encoding
from pydicom.datadict import dictionary_VR
from pydicom.uid import UID

from ingest import status

# Sequences nested deeper than this are refused (real objects use a handful; a
# deeper one is a parser bomb, not an image).
MAX_SEQUENCE_DEPTH = 16
# Checked values up to this size are read whole; larger ones in chunks.
VALUE_READ_LIMIT = 1 << 16
# A deflated data set may inflate to at most this much (a decompression bomb).
DEFLATED_LIMIT = 4 << 30
UNDEFINED = 0xFFFFFFFF

ITEM = (0xFFFE, 0xE000)
ITEM_END = (0xFFFE, 0xE00D)
SEQUENCE_END = (0xFFFE, 0xE0DD)
PIXEL_DATA = (0x7FE0, 0x0010)
SPECIFIC_CHARACTER_SET = (0x0008, 0x0005)

# PS3.5 Table 7.1-1: VRs with a 2-byte reserved field and a 4-byte length.
LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
SHORT_VRS = frozenset(
    {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "PN", "SH"}
    | {"SL", "SS", "ST", "TM", "UI", "UL", "US"}
)
KNOWN_VRS = LONG_VRS | SHORT_VRS
FIXED_SIZE = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "AT": 4, "FD": 8}
FIXED_SIZE.update({"OW": 2, "OL": 4, "OF": 4, "OD": 8, "OV": 8, "SV": 8, "UV": 8})
# Text decoded with the data set's character set; the rest of the string VRs are
# the default repertoire whatever the character set.
CHARSET_TEXT = frozenset({"SH", "LO", "PN", "ST", "LT", "UT", "UC"})
ASCII_TEXT = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UR"})

UID_COMPONENTS = re.compile(rb"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
IS_VALUE = re.compile(rb"^ *[+-]?[0-9]{1,12} *$")
INT32 = (-(2**31), 2**31 - 1)

# Identifying elements: single-valued, present, and read for the checks below.
REQUIRED_UIDS = {
    (0x0008, 0x0016): "SOPClassUID",
    (0x0008, 0x0018): "SOPInstanceUID",
    (0x0020, 0x000D): "StudyInstanceUID",
    (0x0020, 0x000E): "SeriesInstanceUID",
}
IMAGE_PIXEL = {
    (0x0028, 0x0002): "SamplesPerPixel",
    (0x0028, 0x0004): "PhotometricInterpretation",
    (0x0028, 0x0008): "NumberOfFrames",
    (0x0028, 0x0010): "Rows",
    (0x0028, 0x0011): "Columns",
    (0x0028, 0x0100): "BitsAllocated",
}

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
NATIVE_SYNTAXES = frozenset({IMPLICIT_LE, EXPLICIT_LE, DEFLATED_LE, EXPLICIT_BE})
# The first bytes of the first fragment, per family of encapsulated syntax.
JPEG_SOI = b"\xff\xd8"
J2K_CODESTREAM = b"\xff\x4f\xff\x51"
JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  "
RLE_LOSSLESS = "1.2.840.10008.1.2.5"


def _codec_family(transfer_syntax: str) -> str:
    if transfer_syntax == RLE_LOSSLESS:
        return "rle"
    if transfer_syntax.startswith("1.2.840.10008.1.2.4.9") or transfer_syntax.startswith(
        "1.2.840.10008.1.2.4.20"
    ):
        return "jpeg2000"  # JPEG 2000 (.90-.93) and HTJ2K (.201-.203)
    if transfer_syntax.startswith("1.2.840.10008.1.2.4."):
        if transfer_syntax in {"1.2.840.10008.1.2.4.100", "1.2.840.10008.1.2.4.101"}:
            return "mpeg"
        return "jpeg"  # JPEG baseline, extended, lossless, JPEG-LS
    return "other"


class Refused(Exception):
    """The object must not be acknowledged: ``status`` to answer, ``reason`` to keep."""

    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status_code
        self.reason = reason
        # The object's Study Instance UID when the walk read a valid one before the
        # defect (so the study can be flagged as missing an object), else "".
        self.study_uid = ""


def _structure(reason: str) -> Refused:
    return Refused(status.CANNOT_UNDERSTAND, reason)


def _value(reason: str) -> Refused:
    return Refused(status.INVALID_VALUE, reason)


def _pixels(reason: str) -> Refused:
    return Refused(status.PIXEL_DATA_INVALID, reason)


@dataclass
class Checked:
    """What the walk learned on the way: the top level's identifying values."""

    transfer_syntax: str
    values: dict[str, bytes] = field(default_factory=dict)
    fragments: int = 0


# --- Sources: the data set's bytes, from the file or inflated -------------------
class _FileSource:
    """The data set as it lies in the file: skips are seeks, checked against the end."""

    def __init__(self, fh: BinaryIO, start: int, end: int) -> None:
        self._fh = fh
        self.pos = start
        self.end = end
        fh.seek(start)

    def read(self, count: int) -> bytes:
        data = self._fh.read(min(count, max(0, self.end - self.pos)))
        self.pos += len(data)
        return data

    def skip(self, count: int) -> None:
        self.pos += count
        self._fh.seek(self.pos)


class _InflateSource:
    """A deflated data set, inflated as it is walked (never held whole)."""

    def __init__(self, fh: BinaryIO, start: int) -> None:
        fh.seek(start)
        self._fh = fh
        self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        self._buffer = bytearray()
        self.pos = 0
        self.end = DEFLATED_LIMIT  # not known ahead: reads simply come up short
        self._done = False

    def _fill(self, count: int) -> None:
        while len(self._buffer) < count and not self._done:
            chunk = self._fh.read(1 << 16)
            if not chunk:
                self._buffer += self._inflater.flush()
                self._done = True
                break
            try:
                self._buffer += self._inflater.decompress(chunk, 1 << 20)
                while self._inflater.unconsumed_tail and len(self._buffer) < count:
                    self._buffer += self._inflater.decompress(
                        self._inflater.unconsumed_tail, 1 << 20
                    )
            except zlib.error as exc:
                raise _structure(f"the deflated data set does not inflate: {exc}") from exc
            if self.pos + len(self._buffer) > DEFLATED_LIMIT:
                raise _structure(f"the deflated data set inflates beyond {DEFLATED_LIMIT} bytes")

    def read(self, count: int) -> bytes:
        self._fill(count)
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        self.pos += len(data)
        return data

    def skip(self, count: int) -> None:
        while count > 0:
            step = min(count, 1 << 20)
            got = len(self.read(step))
            if got < step:
                # The end of an inflated data set is only known when it is reached,
                # so a length running past it is caught here, not by _within.
                raise _structure(
                    f"a value of {count} bytes runs past the end of the inflated data set "
                    f"at offset {self.pos}"
                )
            count -= step

    def at_end(self) -> bool:
        self._fill(1)
        if self._buffer:
            return False
        # Every inflated byte is walked: the stream itself must have ended properly
        # (a cut-off stream inflates "fine" as far as it goes), with nothing after it.
        if not self._inflater.eof:
            raise _structure("the deflated data set is cut short (its stream never ends)")
        if self._inflater.unused_data.rstrip(b"\0") or self._fh.read(1).strip(b"\0"):
            raise _structure("bytes follow the end of the deflated data set")
        return True


# --- The walk --------------------------------------------------------------------
@dataclass
class _Level:
    """One data set being walked: the top level, or an item's."""

    depth: int
    end: int | None  # absolute end for a defined length; None until a delimiter
    encoding: str | None  # Python codec of its text (None: not judged)
    where: str  # for messages: "the data set" or "item 2 of (0040,0275)"


class _Walker:
    def __init__(self, source: _FileSource | _InflateSource, transfer_syntax: str) -> None:
        self.src = source
        self.ts = transfer_syntax
        self.explicit = transfer_syntax != IMPLICIT_LE
        self.little = transfer_syntax != EXPLICIT_BE
        self.encapsulated = transfer_syntax not in NATIVE_SYNTAXES
        self.u16 = struct.Struct("<H" if self.little else ">H").unpack
        self.u32 = struct.Struct("<I" if self.little else ">I").unpack
        self.tag_struct = struct.Struct("<HH" if self.little else ">HH").unpack
        self.checked = Checked(transfer_syntax=transfer_syntax)

    # -- reading helpers
    def _need(self, count: int, what: str) -> bytes:
        data = self.src.read(count)
        if len(data) < count:
            raise _structure(f"the data set ends inside {what} at offset {self.src.pos}")
        return data

    def _within(self, level: _Level, length: int, tag: tuple[int, int]) -> None:
        limit = level.end if level.end is not None else self.src.end
        if self.src.pos + length > limit:
            raise _structure(
                f"element {_tag(tag)} length {length} runs past the end of {level.where} "
                f"at offset {self.src.pos}"
            )

    def _read_value(self, length: int, tag: tuple[int, int]) -> bytes:
        return self._need(length, f"the value of {_tag(tag)}")

    # -- data sets
    def walk_top(self) -> Checked:
        top = _Level(depth=0, end=None, encoding="ascii", where="the data set")
        self._dataset(top)
        self._check_top()
        return self.checked

    def _at_end(self, level: _Level) -> bool:
        if level.end is not None:
            return self.src.pos >= level.end
        if level.depth == 0:
            if isinstance(self.src, _InflateSource):
                return self.src.at_end()
            return self.src.pos >= self.src.end
        return False

    def _dataset(self, level: _Level) -> None:
        previous = (-1, -1)
        while not self._at_end(level):
            raw = self.src.read(4)
            if len(raw) < 4:
                raise _structure(
                    f"the data set ends inside an element tag at offset {self.src.pos}"
                )
            tag = self.tag_struct(raw)
            if tag == ITEM_END and level.depth > 0 and level.end is None:
                if self.u32(self._need(4, "an item delimiter"))[0] != 0:
                    raise _structure(f"an item delimiter with a non-zero length in {level.where}")
                return
            if tag[0] == 0xFFFE:
                raise _structure(
                    f"delimiter {_tag(tag)} where an element was expected in {level.where} "
                    f"at offset {self.src.pos - 4}"
                )
            if tag <= previous:
                raise _structure(
                    f"element {_tag(tag)} follows {_tag(previous)} in {level.where}: tags must "
                    "ascend (a repeated or out-of-order element)"
                )
            previous = tag
            self._element(level, tag)
        if level.depth > 0 and level.end is None:
            raise _structure(f"{level.where} has no item delimiter")
        if level.end is not None and self.src.pos != level.end:
            raise _structure(f"{level.where} overruns its length")

    def _header(self, tag: tuple[int, int]) -> tuple[str, int]:
        if self.explicit:
            vr_bytes = self._need(2, f"the header of {_tag(tag)}")
            try:
                vr = vr_bytes.decode("ascii")
            except UnicodeDecodeError:
                vr = "?"
            if vr not in KNOWN_VRS:
                raise _structure(
                    f"element {_tag(tag)} has no valid VR ({vr_bytes!r}) at offset "
                    f"{self.src.pos - 2}: not explicit VR data"
                )
            if vr in LONG_VRS:
                self._need(2, f"the header of {_tag(tag)}")
                return vr, self.u32(self._need(4, f"the header of {_tag(tag)}"))[0]
            return vr, self.u16(self._need(2, f"the header of {_tag(tag)}"))[0]
        length = self.u32(self._need(4, f"the header of {_tag(tag)}"))[0]
        return _implicit_vr(tag, length), length

    def _element(self, level: _Level, tag: tuple[int, int]) -> None:
        vr, length = self._header(tag)
        if tag == PIXEL_DATA and level.depth == 0:
            self._pixel_data(level, vr, length)
            return
        if vr == "SQ" or (vr == "UN" and length == UNDEFINED):
            self._sequence(level, tag, length)
            return
        if length == UNDEFINED:
            raise _structure(f"element {_tag(tag)} ({vr}) has an undefined length")
        if length % 2:
            raise _structure(f"element {_tag(tag)} has an odd length ({length})")
        self._within(level, length, tag)
        size = FIXED_SIZE.get(vr)
        if size and length % size:
            raise _structure(f"element {_tag(tag)} ({vr}) length {length} is not whole values")
        if tag[0] % 2 and length > self.private_limit:
            raise Refused(
                status.TOO_LARGE,
                f"private element {_tag(tag)} is {length} bytes (limit {self.private_limit})",
            )
        if vr == "UI" or vr == "IS" or tag in IMAGE_PIXEL or tag == SPECIFIC_CHARACTER_SET:
            value = self._read_value(length, tag)
            self._check_value(level, tag, vr, value)
        elif vr in CHARSET_TEXT or vr in ASCII_TEXT:
            self._check_text(level, tag, vr, length)
        else:
            self.src.skip(length)

    private_limit = 16 << 20

    def _sequence(self, level: _Level, tag: tuple[int, int], length: int) -> None:
        depth = level.depth + 1
        if depth > MAX_SEQUENCE_DEPTH:
            raise _structure(
                f"sequence {_tag(tag)} is nested {depth} deep (at most {MAX_SEQUENCE_DEPTH})"
            )
        end = None
        if length != UNDEFINED:
            if length % 2:
                raise _structure(f"sequence {_tag(tag)} has an odd length ({length})")
            self._within(level, length, tag)
            end = self.src.pos + length
        number = 0
        while True:
            if end is not None and self.src.pos >= end:
                if self.src.pos != end:
                    raise _structure(f"sequence {_tag(tag)} overruns its length")
                return
            item_tag = self.tag_struct(self._need(4, f"an item of sequence {_tag(tag)}"))
            item_length = self.u32(self._need(4, f"an item of sequence {_tag(tag)}"))[0]
            if item_tag == SEQUENCE_END and end is None:
                if item_length != 0:
                    raise _structure(f"sequence {_tag(tag)}'s delimiter has a non-zero length")
                return
            if item_tag != ITEM:
                raise _structure(
                    f"sequence {_tag(tag)} holds {_tag(item_tag)} where an item was expected "
                    f"(an undelimited or corrupt sequence)"
                )
            number += 1
            where = f"item {number} of sequence {_tag(tag)}"
            item_end = None
            if item_length != UNDEFINED:
                if item_length % 2:
                    raise _structure(f"{where} has an odd length ({item_length})")
                limit = end if end is not None else (level.end or self.src.end)
                if self.src.pos + item_length > limit:
                    raise _structure(f"{where} length {item_length} runs past its sequence")
                item_end = self.src.pos + item_length
            self._dataset(_Level(depth=depth, end=item_end, encoding=level.encoding, where=where))

    # -- values
    def _check_value(self, level: _Level, tag: tuple[int, int], vr: str, value: bytes) -> None:
        if vr == "UI":
            _check_uids(tag, value)
        elif vr == "IS":
            _check_integers(tag, value)
        if tag == SPECIFIC_CHARACTER_SET:
            level.encoding = _encoding(value)
        if level.depth == 0:
            name = REQUIRED_UIDS.get(tag) or IMAGE_PIXEL.get(tag)
            if name is not None:
                self.checked.values[name] = value

    def _check_text(self, level: _Level, tag: tuple[int, int], vr: str, length: int) -> None:
        encoding = "ascii" if vr in ASCII_TEXT else level.encoding
        if encoding is None:
            self.src.skip(length)
            return
        decoder = codecs.getincrementaldecoder(encoding)("strict")
        remaining = length
        try:
            while remaining:
                chunk = self._read_value(min(remaining, VALUE_READ_LIMIT), tag)
                remaining -= len(chunk)
                decoder.decode(chunk, final=remaining == 0)
        except UnicodeDecodeError as exc:
            raise _value(
                f"element {_tag(tag)} ({vr}) is not valid {encoding} text, the character set "
                f"the data set declares ({exc.reason} at byte {exc.start})"
            ) from exc

    # -- pixel data
    def _pixel_data(self, level: _Level, vr: str, length: int) -> None:
        if self.encapsulated:
            if length != UNDEFINED:
                raise _pixels(
                    f"transfer syntax {self.ts} is encapsulated (compressed) but the pixel data "
                    f"has a defined length of {length}: native pixel data under a compressed label"
                )
            self._fragments(level)
            return
        if length == UNDEFINED:
            raise _pixels(
                f"transfer syntax {self.ts} is native (uncompressed) but the pixel data is "
                "encapsulated (undefined length)"
            )
        expected = self._native_length()
        if length == 0:
            raise _pixels("the pixel data is empty")
        if expected is not None and length != expected:
            raise _pixels(
                f"the pixel data is {length} bytes; Rows, Columns, samples, bits and frames "
                f"imply {expected}"
            )
        self._within(level, length, PIXEL_DATA)
        self.src.skip(length)
        self.checked.values["PixelData"] = b"native"

    def _native_length(self) -> int | None:
        values = self.checked.values
        try:
            rows = int(self.u16(values["Rows"])[0])
            columns = int(self.u16(values["Columns"])[0])
            bits = int(self.u16(values["BitsAllocated"])[0])
        except (KeyError, struct.error) as exc:
            raise _pixels(f"pixel data without a usable {exc}") from exc
        samples = int(self.u16(values["SamplesPerPixel"])[0]) if "SamplesPerPixel" in values else 1
        frames = _frames(values)
        if 0 in (rows, columns, bits, samples):
            raise _pixels("pixel data with zero Rows, Columns, BitsAllocated or SamplesPerPixel")
        photometric = values.get("PhotometricInterpretation", b"").strip(b" \0")
        if photometric == b"YBR_FULL_422":
            samples = 2  # two samples per pixel on average (PS3.3 C.7.6.3.1.2)
        total_bits: int = rows * columns * samples * frames * bits
        size = (total_bits + 7) // 8
        return size + size % 2

    def _fragments(self, level: _Level) -> None:
        first = True
        fragments = 0
        while True:
            tag = self.tag_struct(self._need(4, "the encapsulated pixel data"))
            length = self.u32(self._need(4, "the encapsulated pixel data"))[0]
            if tag == SEQUENCE_END:
                if length:
                    raise _pixels("the pixel data's sequence delimiter has a non-zero length")
                break
            if tag != ITEM or length == UNDEFINED:
                raise _pixels(f"the encapsulated pixel data holds {_tag(tag)}, not an item")
            if length % 2:
                raise _pixels(f"a pixel data fragment has an odd length ({length})")
            self._within(level, length, PIXEL_DATA)
            if first:  # the basic offset table: one 4-byte offset per frame, or empty
                if length % 4:
                    raise _pixels(f"the basic offset table's length {length} is not 4 x frames")
                if length and length // 4 != _frames(self.checked.values):
                    raise _pixels(
                        f"the basic offset table has {length // 4} offsets for "
                        f"{_frames(self.checked.values)} frames"
                    )
                self.src.skip(length)
                first = False
                continue
            if fragments == 0:
                head = self._need(min(length, 64), "the first pixel data fragment")
                self._check_codec(head, length)
                self.src.skip(length - len(head))
            else:
                self.src.skip(length)
            fragments += 1
        if first:
            raise _pixels("the encapsulated pixel data has no basic offset table item")
        frames = _frames(self.checked.values)
        if fragments < frames:
            raise _pixels(f"the pixel data has {fragments} fragment(s) for {frames} frames")
        self.checked.fragments = fragments
        self.checked.values["PixelData"] = b"encapsulated"

    def _check_codec(self, head: bytes, length: int) -> None:
        family = _codec_family(self.ts)
        if family == "jpeg" and not head.startswith(JPEG_SOI):
            raise _pixels(f"transfer syntax {self.ts} is JPEG but the first fragment is not")
        if family == "jpeg2000" and not (
            head.startswith(J2K_CODESTREAM) or head.startswith(JP2_SIGNATURE)
        ):
            raise _pixels(f"transfer syntax {self.ts} is JPEG 2000 but the first fragment is not")
        if family == "rle":
            if len(head) < 64:
                raise _pixels("the RLE fragment is shorter than its 64-byte header")
            offsets = struct.unpack("<16I", head[:64])
            segments = offsets[0]
            used = offsets[1 : segments + 1]
            values = self.checked.values
            # PS3.5 G.2: one segment per byte of each sample.
            expected = (
                (int(self.u16(values["SamplesPerPixel"])[0]) if "SamplesPerPixel" in values else 1)
                * ((int(self.u16(values["BitsAllocated"])[0]) + 7) // 8)
                if "BitsAllocated" in values
                else segments
            )
            if segments != expected:
                raise _pixels(
                    f"the RLE fragment has {segments} segment(s); SamplesPerPixel and "
                    f"BitsAllocated imply {expected}"
                )
            plausible = (
                1 <= segments <= 15
                and used[0] == 64
                and all(a < b for a, b in itertools.pairwise(used))
                and used[-1] < length
            )
            if not plausible:
                raise _pixels("the RLE fragment's header is not a valid RLE header")

    # -- after the walk
    def _check_top(self) -> None:
        values = self.checked.values
        for name in REQUIRED_UIDS.values():
            if name not in values or not values[name].strip(b"\0 "):
                raise _value(f"missing {name}")


def _implicit_vr(tag: tuple[int, int], length: int) -> str:
    if tag[1] == 0x0000:
        return "UL"  # group length
    if tag[0] % 2 and tag[1] < 0x0100:
        return "LO"  # private creator
    try:
        vr = str(dictionary_VR((tag[0] << 16) | tag[1]))
    except KeyError:
        return "SQ" if length == UNDEFINED else "UN"
    if vr in KNOWN_VRS:
        return vr
    # Ambiguous dictionary VRs ("US or SS", "OB or OW"...): the size rules of the
    # first both accept; pixel-ish data is OW, the rest US.
    return "OW" if "OW" in vr else "US"


def _valid_uid(value: bytes | None) -> str:
    text = (value or b"").rstrip(b"\0").decode("ascii", "replace")
    return text if len(text) <= 64 and UID_COMPONENTS.match(text.encode()) else ""


def _frames(values: dict[str, bytes]) -> int:
    raw = values.get("NumberOfFrames", b"").strip(b" \0")
    return int(raw) if raw else 1


def _tag(tag: tuple[int, int]) -> str:
    return f"({tag[0]:04X},{tag[1]:04X})"


def _check_uids(tag: tuple[int, int], value: bytes) -> None:
    # PS3.5 9.1: one trailing NUL pads an odd-length UID; nothing else may pad it.
    text = value[:-1] if value.endswith(b"\0") else value
    parts = text.split(b"\\")
    if tag in REQUIRED_UIDS and len(parts) != 1:
        raise _value(f"{REQUIRED_UIDS[tag]} {_tag(tag)} has {len(parts)} values; it takes one")
    for part in parts:
        if not part and tag not in REQUIRED_UIDS:
            continue
        if len(part) > 64 or UID_COMPONENTS.match(part) is None:
            raise _value(f"element {_tag(tag)} holds an invalid UID {part[:80]!r}")


def _check_integers(tag: tuple[int, int], value: bytes) -> None:
    for part in value.split(b"\\"):
        if not part.strip(b" "):
            continue
        if IS_VALUE.match(part) is None:
            raise _value(f"element {_tag(tag)} (IS) holds {part[:40]!r}, not an integer")
        number = int(part)
        if not INT32[0] <= number <= INT32[1]:
            raise _value(f"element {_tag(tag)} (IS) holds {number}, outside the 32-bit range")
    if tag == (0x0028, 0x0008) and value.strip(b" \0") and int(value) < 1:
        raise _value("NumberOfFrames is below 1")


def _encoding(value: bytes) -> str | None:
    """The Python codec of a Specific Character Set value; None when not judged
    (ISO 2022 code extensions, several values, or an unknown term)."""
    terms = [t.strip(b" \0").decode("ascii", "replace") for t in value.split(b"\\")]
    if len(terms) == 1 and not terms[0]:
        return "ascii"
    if len(terms) != 1 or terms[0].startswith("ISO 2022"):
        return None
    if terms[0] == "ISO_IR 6":
        return "ascii"
    return python_encoding.get(terms[0])


# --- Entry point -------------------------------------------------------------------
def _meta(fh: BinaryIO) -> tuple[int, str]:
    """(offset of the data set, transfer syntax) from the file meta group the network
    layer wrote in front of the received data set."""
    fh.seek(128)
    if fh.read(4) != b"DICM":
        raise _structure("not a DICOM file (no DICM prefix)")
    head = fh.read(12)
    if len(head) < 12 or head[:6] != b"\x02\x00\x00\x00UL":
        raise _structure("file meta information has no group length")
    group_length = struct.unpack("<I", head[8:12])[0]
    meta = fh.read(group_length)
    if len(meta) < group_length:
        raise _structure("the file meta information is cut short")
    ts = ""
    pos = 0
    while pos + 8 <= len(meta):
        group, element = struct.unpack("<HH", meta[pos : pos + 4])
        vr = meta[pos + 4 : pos + 6].decode("ascii", "replace")
        if vr in LONG_VRS:
            length = struct.unpack("<I", meta[pos + 8 : pos + 12])[0]
            pos += 12
        else:
            length = struct.unpack("<H", meta[pos + 6 : pos + 8])[0]
            pos += 8
        if (group, element) == (0x0002, 0x0010):
            ts = meta[pos : pos + length].rstrip(b"\0 ").decode("ascii", "replace")
        pos += length
    if not ts:
        raise _structure("the file meta information names no transfer syntax")
    return 144 + group_length, ts


def check_object(
    path: Path,
    *,
    request_sop_class: str,
    request_sop_instance: str,
    private_element_limit: int = 16 << 20,
) -> Checked:
    """Walk a staged object; raise ``Refused`` at its first defect.  Bounded memory:
    only checked values are read, the rest is skipped."""
    with path.open("rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        start, transfer_syntax = _meta(fh)
        source: _FileSource | _InflateSource
        if transfer_syntax == DEFLATED_LE:
            source = _InflateSource(fh, start)
        else:
            source = _FileSource(fh, start, size)
        walker = _Walker(source, transfer_syntax)
        walker.private_limit = private_element_limit
        try:
            checked = walker.walk_top()
        except Refused as refused:
            refused.study_uid = _valid_uid(walker.checked.values.get("StudyInstanceUID"))
            _explain(refused, fh, start=start, end=size, transfer_syntax=transfer_syntax)
            raise
    _check_request(checked, request_sop_class, request_sop_instance)
    return checked


def _plausible_start(head: bytes, transfer_syntax: str) -> bool:
    """Whether a data set could start with these bytes: an element of a data set
    group (0008 to 7FE0, or a private group) under either byte order, and, in an
    explicit VR syntax, a VR after it."""
    if len(head) < 4:
        return False
    if transfer_syntax != IMPLICIT_LE and head[4:6].decode("ascii", "replace") not in KNOWN_VRS:
        return False
    for fmt in ("<HH", ">HH"):
        group, _ = struct.unpack(fmt, head[:4])
        if 0x0008 <= group <= 0x7FE0 or (group % 2 and 0x0009 <= group < 0xFFFE):
            return True
    return False


def _walks_cleanly(walker: _Walker) -> bool:
    """Whether the whole data set reads without a defect."""
    try:
        walker.walk_top()
    except Refused:
        return False
    return True


def _explain(refused: Refused, fh: BinaryIO, *, start: int, end: int, transfer_syntax: str) -> None:
    """Say what was wrong with the whole object when the first defect found hides it:
    a data set in explicit VR sent under an implicit VR context (its elements'
    lengths then read as nonsense), or bytes that are no data set at all."""
    fh.seek(start)
    head = fh.read(16)
    if transfer_syntax == IMPLICIT_LE and head[4:6].decode("ascii", "replace") in KNOWN_VRS:
        walker = _Walker(_FileSource(fh, start, end), EXPLICIT_LE)
        walker.private_limit = 1 << 62  # judged again only for its encoding
        if _walks_cleanly(walker):
            refused.status = status.CANNOT_UNDERSTAND
            refused.reason = (
                "the data set is encoded in explicit VR little endian, but it was sent "
                f"under implicit VR little endian (as its file meta says); read as sent, "
                f"{refused.reason}"
            )
            refused.args = (refused.reason,)
            return
    if transfer_syntax != DEFLATED_LE and not _plausible_start(head, transfer_syntax):
        shown = " ".join(f"{b:02x}" for b in head[:8])
        refused.reason = (
            f"not a DICOM data set: it starts with bytes {shown or '(none)'}, which begin no "
            f"data element; {refused.reason}"
        )
    refused.args = (refused.reason,)


def _unpad(value: str | bytes) -> str:
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    return text[:-1] if text.endswith(("\0", " ")) else text


def _check_request(checked: Checked, sop_class: str, sop_instance: str) -> None:
    data_class = _unpad(checked.values["SOPClassUID"])
    data_instance = _unpad(checked.values["SOPInstanceUID"])
    if sop_class and _unpad(sop_class) != data_class:
        raise Refused(
            status.DATASET_MISMATCH,
            f"the C-STORE request's SOP Class {_unpad(sop_class)} is not the data set's "
            f"({data_class}, {UID(data_class).name})",
        )
    if _unpad(sop_instance) != data_instance:
        raise Refused(
            status.DATASET_MISMATCH,
            f"the C-STORE request's SOP Instance UID {_unpad(sop_instance)[:80]} is not the "
            f"data set's ({data_instance})",
        )
