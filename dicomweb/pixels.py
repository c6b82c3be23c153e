"""Pixel data of stored objects: frames as stored, decoded, or rendered to a
picture.  Pure over a file path: no Django, no database.

A frame is read from where it lies in the file (the pixel data element's offset,
found without reading the pixel data), so a frame of a large multi-frame object
costs one frame's bytes, not the object's.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.tag import Tag
from pydicom.uid import UID

PIXEL_DATA = 0x7FE00010


class NoSuchFrame(Exception):
    """A frame number outside the object's frames, or an object without pixels."""


class CannotDecode(Exception):
    """The stored pixel data cannot be decoded (no decoder for its syntax, or broken)."""


@dataclass(frozen=True)
class PixelSource:
    """Where an object's pixel data lies in its file, and how it is shaped."""

    path: Path
    transfer_syntax: str
    frames: int
    offset: int  # of the pixel data element's value
    length: int  # of the value (0xFFFFFFFF: encapsulated, undefined length)
    frame_bytes: int  # of one native frame
    direct: bool  # frames can be read from the file where they lie

    @property
    def compressed(self) -> bool:
        return UID(self.transfer_syntax).is_compressed if self.transfer_syntax else False


def pixel_source(path: Path) -> PixelSource:
    """Find the pixel data of a stored object without reading it.  Remembered per
    file: stored files are named by their content's digest and never rewritten, and
    a viewer asks for each frame of an object in a request of its own."""
    return _pixel_source(str(path))


@functools.lru_cache(maxsize=8192)
def _pixel_source(name: str) -> PixelSource:
    path = Path(name)
    ds = dcmread(path, defer_size=1024, specific_tags=None)
    raw = ds._dict.get(Tag(PIXEL_DATA))
    if raw is None:
        raise NoSuchFrame("the object has no pixel data")
    meta = getattr(ds, "file_meta", None)
    syntax = str(getattr(meta, "TransferSyntaxUID", "") or "")
    rows, columns = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    samples = int(ds.get("SamplesPerPixel") or 1)
    bits = int(ds.get("BitsAllocated") or 8)
    frames = max(1, int(str(ds.get("NumberOfFrames") or 1).strip() or 1))
    value_tell = getattr(raw, "value_tell", None)
    length = int(getattr(raw, "length", 0) or 0)
    little = bool(getattr(raw, "is_little_endian", True))
    deflated = syntax == "1.2.840.10008.1.2.1.99"
    direct = value_tell is not None and little and not deflated and bits % 8 == 0
    return PixelSource(
        path=path,
        transfer_syntax=syntax,
        frames=frames,
        offset=int(value_tell or 0),
        length=length,
        frame_bytes=rows * columns * samples * bits // 8,
        direct=direct,
    )


def frame_stored(source: PixelSource, number: int) -> bytes:
    """Frame ``number`` (1-based) as it is stored: native bytes, or the compressed
    frame of an encapsulated object."""
    if not 1 <= number <= source.frames:
        raise NoSuchFrame(f"frame {number} is outside 1..{source.frames}")
    if not source.direct:
        return _frame_via_dataset(source, number)
    with source.path.open("rb") as fh:
        if source.length == 0xFFFFFFFF:
            fh.seek(source.offset)
            try:
                return get_frame(fh, number - 1, number_of_frames=source.frames)
            except (ValueError, OSError) as exc:
                raise CannotDecode(f"cannot read frame {number}: {exc}") from exc
        start = (number - 1) * source.frame_bytes
        if start + source.frame_bytes > source.length:
            raise CannotDecode("the pixel data is shorter than its frames")
        fh.seek(source.offset + start)
        return fh.read(source.frame_bytes)


def _frame_via_dataset(source: PixelSource, number: int) -> bytes:
    ds = dcmread(source.path)
    data = ds.PixelData
    if source.length == 0xFFFFFFFF or UID(source.transfer_syntax).is_encapsulated:
        return bytes(get_frame(data, number - 1, number_of_frames=source.frames))
    start = (number - 1) * source.frame_bytes
    return bytes(data[start : start + source.frame_bytes])


def frame_native(source: PixelSource, number: int) -> bytes:
    """Frame ``number`` as uncompressed little endian bytes (decoded if compressed)."""
    if not source.compressed and source.direct:
        return frame_stored(source, number)
    return bytes(_decoded(source, number).tobytes())


def _decoded(source: PixelSource, number: int) -> Any:
    if not 1 <= number <= source.frames:
        raise NoSuchFrame(f"frame {number} is outside 1..{source.frames}")
    from pydicom.pixels import pixel_array  # type: ignore[attr-defined]

    try:
        return pixel_array(str(source.path), index=number - 1, raw=True)
    except Exception as exc:  # decoders raise many kinds on data they cannot read
        raise CannotDecode(f"cannot decode the stored pixel data: {exc}") from exc


def frames_stream(source: PixelSource, numbers: list[int], *, native: bool) -> Iterator[bytes]:
    for number in numbers:
        yield frame_native(source, number) if native else frame_stored(source, number)


# -- rendering ----------------------------------------------------------------


@dataclass(frozen=True)
class Rendering:
    media_type: str = "image/jpeg"
    window: tuple[float, float] | None = None  # centre, width
    viewport: tuple[int, int] | None = None  # rows, columns (the largest size)
    quality: int = 85


def render(source: PixelSource, number: int, rendering: Rendering) -> bytes:
    """Frame ``number`` as a picture: the modality LUT, then the window (asked for,
    else the object's first, else its range), then the viewport's size."""
    import numpy as np
    from PIL import Image
    from pydicom.pixels import apply_modality_lut  # type: ignore[attr-defined]

    ds = dcmread(source.path, stop_before_pixels=True)
    try:
        from pydicom.pixels import pixel_array  # type: ignore[attr-defined]

        arr = pixel_array(str(source.path), index=number - 1)
    except Exception as exc:
        raise CannotDecode(f"cannot decode the stored pixel data: {exc}") from exc
    photometric = str(ds.get("PhotometricInterpretation") or "MONOCHROME2").upper()
    if arr.ndim == 3 and arr.shape[-1] == 3:
        image = Image.fromarray(arr.astype(np.uint8) if arr.dtype != np.uint8 else arr, "RGB")
    else:
        values = apply_modality_lut(arr, ds).astype(np.float64)
        centre, width = rendering.window or _window_of(ds, values)
        width = max(width, 1.0)
        low = centre - 0.5 - (width - 1) / 2
        scaled = np.clip((values - low) / (width - 1 if width > 1 else 1) * 255.0, 0, 255)
        if photometric == "MONOCHROME1":
            scaled = 255.0 - scaled
        image = Image.fromarray(scaled.astype(np.uint8), "L")
    if rendering.viewport:
        rows, columns = rendering.viewport
        image.thumbnail((max(1, columns), max(1, rows)))
    out = io.BytesIO()
    if rendering.media_type == "image/png":
        image.save(out, format="PNG")
    else:
        image.save(out, format="JPEG", quality=rendering.quality)
    return out.getvalue()


def _first(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(
            value[0] if hasattr(value, "__len__") and not isinstance(value, str) else value
        )
    except (TypeError, ValueError, IndexError):
        return None


def _window_of(ds: Dataset, values: Any) -> tuple[float, float]:
    centre, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if centre is not None and width is not None and width > 0:
        return centre, width
    low, high = float(values.min()), float(values.max())
    return (low + high) / 2, max(high - low, 1.0)


def explicit_little_endian(path: Path) -> bytes:
    """The object as a Part 10 file in explicit VR little endian, its pixel data
    decoded if stored compressed (the client did not accept the stored syntax)."""
    from pydicom.uid import ExplicitVRLittleEndian

    ds = dcmread(path)
    syntax = UID(str(ds.file_meta.get("TransferSyntaxUID", "") or ExplicitVRLittleEndian))
    try:
        if syntax.is_compressed:
            ds.decompress(as_rgb=False)
    except Exception as exc:  # no decoder for this syntax, or broken data
        raise CannotDecode(f"cannot decode the stored pixel data: {exc}") from exc
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = io.BytesIO()
    ds.save_as(out, implicit_vr=False, little_endian=True, enforce_file_format=True)
    return out.getvalue()


def bulk_value(path: Path, tag: int) -> bytes | None:
    """The value of a binary element other than the pixel data (the first with that
    tag, searching sequences too), or None."""
    ds = dcmread(path, stop_before_pixels=True)
    for element in ds.iterall():
        if int(element.tag) == tag and element.VR in BULK_VRS:
            value = element.value
            return bytes(value) if value is not None else b""
    return None


BULK_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN", "OB or OW", "US or OW"}
