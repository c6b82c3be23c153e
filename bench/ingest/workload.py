"""The ingest benchmark's workload: synthetic CT instances (512x512, 16-bit,
``ingest.synthetic``), one study of N for one association and four studies of
N/4 for four, and how a stored file is compared with the file sent."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_LONG_VRS = {
    b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV",
}  # fmt: skip


def dataset_part(data: bytes) -> bytes:
    """The bytes after the preamble, "DICM" and the file meta group (0002)."""
    if len(data) < 132 or data[128:132] != b"DICM":
        raise ValueError("no DICOM preamble")
    pos = 132
    while pos + 8 <= len(data) and int.from_bytes(data[pos : pos + 2], "little") == 0x0002:
        vr = data[pos + 4 : pos + 6]  # file meta is always explicit VR little endian
        if vr in _LONG_VRS:
            pos += 12 + int.from_bytes(data[pos + 8 : pos + 12], "little")
        else:
            pos += 8 + int.from_bytes(data[pos + 6 : pos + 8], "little")
    return data[pos:]


@dataclass
class StudySet:
    """One study's files in one folder (one association sends one of these)."""

    study_uid: str
    folder: Path
    files: dict[str, Path]  # SOP instance UID -> file

    @property
    def count(self) -> int:
        return len(self.files)


@dataclass
class Workload:
    one: StudySet
    four: list[StudySet]
    warmup: StudySet
    instance_bytes: int


def generate(root: Path, instances: int, warmup: int) -> Workload:
    from ingest.synthetic import StudySpec, write_series

    def study(name: str, count: int, n: int) -> StudySet:
        spec = StudySpec(
            patient_id=f"BENCH-{n:04d}",
            patient_name=f"BENCH^{name.upper()}",
            accession=f"BENCH{n:04d}{os.getpid() % 10000:04d}",
            description="CT CHEST WO CONTRAST",
            body_part="CHEST",
            procedure_code="71250",
        )
        paths = write_series(spec, root / name, count=count)
        return StudySet(spec.study_uid, root / name, {p.stem: p for p in paths})

    one = study("one", instances, 1)
    sizes = [instances // 4 + (1 if i < instances % 4 else 0) for i in range(4)]
    four = [study(f"four-{i + 1}", size, 2 + i) for i, size in enumerate(sizes)]
    warm = study("warmup", warmup, 9)
    size = next(iter(one.files.values())).stat().st_size
    return Workload(one, four, warm, size)


def facts(workload: Workload) -> dict[str, int | list[int]]:
    """What the report says of the workload."""
    return {
        "one": workload.one.count,
        "four": [s.count for s in workload.four],
        "warmup": workload.warmup.count,
        "instance_bytes": workload.instance_bytes,
    }
