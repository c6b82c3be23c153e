"""The media of DICOMweb (PS3.18 8.7): Accept negotiation and multipart/related
bodies, written as streams and read as streams.  Pure: no Django, no database."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
ANY_TRANSFER_SYNTAX = "*"


class NotAcceptable(Exception):
    """No representation the client accepts can be given (406)."""


class BadBody(Exception):
    """A request body that is not the multipart/related it says it is (400)."""


class BodyTooLarge(Exception):
    """A request body went past the limit while it was read (413)."""


class CappedStream:
    """A stream that raises ``BodyTooLarge`` once more than ``limit`` bytes were read
    (a chunked upload has no Content-Length to refuse it by beforehand)."""

    def __init__(self, stream: Any, limit: int) -> None:
        self._stream = stream
        self._left = limit

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._stream.read(size)
        self._left -= len(data)
        if self._left < 0:
            raise BodyTooLarge()
        return data


@dataclass(frozen=True)
class MediaRange:
    """One entry of an Accept header: ``type/subtype`` with its parameters."""

    media_type: str
    params: dict[str, str] = field(default_factory=dict)
    quality: float = 1.0

    def matches(self, media_type: str) -> bool:
        if self.media_type in ("*/*", media_type):
            return True
        major = media_type.split("/", 1)[0]
        return self.media_type == f"{major}/*"


_PARAM = re.compile(r';\s*([^=;\s]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,]*)')


def _split_ranges(header: str) -> list[str]:
    """Split an Accept header on the commas outside quoted strings."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in header:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def parse_accept(header: str | None) -> list[MediaRange]:
    """The media ranges of an Accept header, most preferred first (``*/*`` if none)."""
    if not header or not header.strip():
        return [MediaRange("*/*")]
    ranges = []
    for index, part in enumerate(_split_ranges(header)):
        media_type = part.split(";", 1)[0].strip().lower()
        params = {}
        for name, value in _PARAM.findall(part):
            value = value.strip()
            if value.startswith('"') and value.endswith('"'):
                value = value[1:-1]
            params[name.lower()] = value
        try:
            quality = float(params.pop("q", "1"))
        except ValueError:
            quality = 1.0
        if "/" not in media_type:
            continue
        ranges.append((quality, -index, MediaRange(media_type, params, quality)))
    ranges.sort(key=lambda r: (r[0], r[1]), reverse=True)
    return [r for q, _, r in ranges if q > 0]


def parse_content_type(header: str | None) -> MediaRange:
    ranges = parse_accept(header or "")
    if not header or not ranges:
        return MediaRange("")
    return ranges[0]


@dataclass(frozen=True)
class Choice:
    """What a response will be: its media type and, for DICOM or pixel data, the
    transfer syntax ('' when the stored one is kept as it is)."""

    media_type: str
    transfer_syntax: str = ""
    multipart: bool = True


def choose_dicom(accept: list[MediaRange], *, stored_syntaxes: set[str]) -> Choice:
    """The representation of whole instances (PS3.18 8.7.3.5.2): application/dicom in
    a multipart/related body, in the stored transfer syntax unless the client asks
    for explicit VR little endian (which is then decoded) or accepts any ('*')."""
    for r in accept:
        if r.media_type in ("*/*", "multipart/*"):
            return Choice("application/dicom", ANY_TRANSFER_SYNTAX)
        if r.media_type == "multipart/related":
            inner = r.params.get("type", "application/dicom").lower()
            if inner not in ("application/dicom", "application/*", "*/*"):
                continue
            ts = r.params.get("transfer-syntax", "")
            if ts in ("", ANY_TRANSFER_SYNTAX) or stored_syntaxes <= {ts}:
                return Choice("application/dicom", ANY_TRANSFER_SYNTAX)
            if ts == EXPLICIT_VR_LITTLE_ENDIAN:
                return Choice("application/dicom", EXPLICIT_VR_LITTLE_ENDIAN)
    raise NotAcceptable(
        'only multipart/related; type="application/dicom" is offered, in the stored '
        f"transfer syntax (transfer-syntax=*) or in {EXPLICIT_VR_LITTLE_ENDIAN}"
    )


def choose_frames(accept: list[MediaRange], *, stored_syntax: str, compressed: bool) -> Choice:
    """The representation of frames or pixel bulk data (PS3.18 8.7.3.5.3-4):
    application/octet-stream parts in the stored transfer syntax when the client
    accepts it (``transfer-syntax=*`` or that UID), otherwise uncompressed explicit VR
    little endian (the default of application/octet-stream).  A compressed stored
    syntax may also be asked for by its image media type (e.g. image/jp2)."""
    for r in accept:
        if r.media_type in ("*/*", "multipart/*"):
            return Choice("application/octet-stream", EXPLICIT_VR_LITTLE_ENDIAN)
        if r.media_type == "multipart/related":
            inner = r.params.get("type", "application/octet-stream").lower()
            ts = r.params.get("transfer-syntax", "")
            if inner in ("application/octet-stream", "application/*", "*/*"):
                if ts == ANY_TRANSFER_SYNTAX or (ts and ts == stored_syntax):
                    return Choice("application/octet-stream", stored_syntax)
                if ts in ("", EXPLICIT_VR_LITTLE_ENDIAN):
                    return Choice("application/octet-stream", EXPLICIT_VR_LITTLE_ENDIAN)
            elif compressed and ts in ("", ANY_TRANSFER_SYNTAX, stored_syntax):
                media = IMAGE_MEDIA_TYPES.get(stored_syntax)
                if media and (inner == media or inner == "image/*"):
                    return Choice(media, stored_syntax)
        if r.media_type == "application/octet-stream":
            ts = r.params.get("transfer-syntax", "")
            if ts == ANY_TRANSFER_SYNTAX or (ts and ts == stored_syntax):
                return Choice("application/octet-stream", stored_syntax, multipart=False)
            if ts in ("", EXPLICIT_VR_LITTLE_ENDIAN):
                return Choice(
                    "application/octet-stream", EXPLICIT_VR_LITTLE_ENDIAN, multipart=False
                )
    raise NotAcceptable(
        'frames are offered as multipart/related; type="application/octet-stream" in '
        f"the stored transfer syntax ({stored_syntax}, or transfer-syntax=*) or in "
        f"{EXPLICIT_VR_LITTLE_ENDIAN}"
    )


def choose_json(accept: list[MediaRange]) -> str:
    """application/dicom+json (or application/json) for searches and metadata."""
    for r in accept:
        for media in ("application/dicom+json", "application/json"):
            if r.matches(media):
                return "application/dicom+json" if r.media_type != media else media
    raise NotAcceptable("searches and metadata are offered as application/dicom+json")


def choose_rendered(accept: list[MediaRange]) -> str:
    for r in accept:
        for media in ("image/jpeg", "image/png"):
            if r.matches(media):
                return media
    raise NotAcceptable("rendered images are offered as image/jpeg or image/png")


# The image media types of compressed transfer syntaxes (PS3.18 Table 8.7.3-5).
IMAGE_MEDIA_TYPES = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.5": "image/x-dicom-rle",
}


# -- writing ------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """One body part: its headers and its content as a stream of chunks."""

    content_type: str
    chunks: Iterable[bytes]
    location: str = ""


def new_boundary() -> str:
    return f"telerad-{uuid.uuid4().hex}"


def multipart_stream(parts: Iterable[Part], boundary: str) -> Iterator[bytes]:
    """A multipart/related body, one chunk at a time (nothing is held whole)."""
    for part in parts:
        head = f"--{boundary}\r\nContent-Type: {part.content_type}\r\n"
        if part.location:
            head += f"Content-Location: {part.location}\r\n"
        yield (head + "\r\n").encode("ascii")
        yield from part.chunks
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode("ascii")


def multipart_content_type(inner: str, boundary: str, transfer_syntax: str = "") -> str:
    value = f'multipart/related; type="{inner}"; boundary={boundary}'
    if transfer_syntax and transfer_syntax != ANY_TRANSFER_SYNTAX:
        value += f"; transfer-syntax={transfer_syntax}"
    return value


def file_chunks(fh: BinaryIO, *, size: int = 1 << 16, length: int | None = None) -> Iterator[bytes]:
    """A file's content (or ``length`` bytes of it from where it is), in chunks; the
    file is closed at the end, or when the consumer stops early."""
    try:
        left = length
        while left is None or left > 0:
            chunk = fh.read(size if left is None else min(size, left))
            if not chunk:
                break
            if left is not None:
                left -= len(chunk)
            yield chunk
    finally:
        fh.close()


# -- reading ------------------------------------------------------------------


class Sink(Protocol):
    def write(self, data: bytes) -> object: ...


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def read_multipart(
    stream: Readable,
    boundary: str,
    *,
    open_part: Callable[[dict[str, str]], Sink],
    close_part: Callable[[Sink, bool], None],
    chunk_size: int = 1 << 16,
    max_header_bytes: int = 16384,
) -> int:
    """Read a multipart body from ``stream`` part by part, writing each part's
    content to the sink ``open_part(headers)`` gives, then calling
    ``close_part(sink, complete)``; a part cut off by the end of the body is closed
    with ``complete=False``.  Holds at most two chunks in memory.  Returns the
    number of complete parts; ``BadBody`` when no boundary is found."""
    if not boundary or len(boundary) > 200:
        raise BadBody("the multipart body has no usable boundary parameter")
    delimiter = b"--" + boundary.encode("latin-1")
    buf = b""
    eof = False

    def fill() -> bool:
        nonlocal buf, eof
        if eof:
            return False
        chunk = stream.read(chunk_size)
        if not chunk:
            eof = True
            return False
        buf += chunk
        return True

    # Preamble: up to the first delimiter.
    while True:
        at = buf.find(delimiter)
        if at >= 0 and (at == 0 or buf[at - 2 : at] == b"\r\n"):
            buf = buf[at + len(delimiter) :]
            break
        if len(buf) > len(delimiter) + 2:
            buf = buf[-(len(delimiter) + 2) :]
        if not fill():
            raise BadBody(f"the body holds no part delimited by the boundary {boundary!r}")

    complete = 0
    closing = b"\r\n" + delimiter
    while True:
        while len(buf) < 2 and not eof:
            fill()
        if buf.startswith(b"--") or (eof and not buf.strip()):
            return complete  # the close delimiter (or a body that stops after one)
        # Transport padding, then CRLF, then the part's headers up to a blank line.
        while b"\r\n\r\n" not in buf and len(buf) <= max_header_bytes and not eof:
            fill()
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            raise BadBody("a body part's headers are not terminated (or are too long)")
        head = buf[:end].split(b"\r\n", 1)
        headers = _headers(head[1] if len(head) > 1 else b"")
        buf = buf[end + 4 :]
        sink = open_part(headers)
        ok = False
        try:
            while True:
                at = buf.find(closing)
                if at >= 0:
                    sink.write(buf[:at])
                    buf = buf[at + len(closing) :]
                    ok = True
                    break
                keep = len(closing) - 1
                if len(buf) > keep:
                    sink.write(buf[:-keep])
                    buf = buf[-keep:]
                if not fill():
                    break
        finally:
            close_part(sink, ok)
        if not ok:
            return complete
        complete += 1


def _headers(raw: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in raw.decode("latin-1").split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            out[name.strip().lower()] = value.strip()
    return out
