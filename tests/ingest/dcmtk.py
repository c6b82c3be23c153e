"""Driving dcmtk's command-line peers (Debian package dcmtk, installed by ``make install``)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from tests.tools import program

# pynetdicom installs scripts of the same names; dcmtk's are called by full path.
STORESCU = "/usr/bin/storescu"
ECHOSCU = "/usr/bin/echoscu"
# Debian's dcmtk leaves Nagle's algorithm on for DICOM unless told otherwise.
ENV = {**os.environ, "TCP_NODELAY": "1"}


def echoscu(port: int, *, aet: str, aec: str = "TELERAD") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [program(ECHOSCU), "-v", "-aet", aet, "-aec", aec, "127.0.0.1", str(port)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def storescu(
    port: int, files: Sequence[Path], *, aet: str, aec: str = "TELERAD"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            program(STORESCU),
            "-v",
            "-aet",
            aet,
            "-aec",
            aec,
            "127.0.0.1",
            str(port),
            *map(str, files),
        ],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def dataset_bytes(path: Path) -> bytes:
    """The bytes after the file meta group: what actually travelled over DICOM."""
    data = path.read_bytes()
    assert data[128:132] == b"DICM"
    # (0002,0000) UL, explicit VR: tag(4) VR(2) len(2) value(4) = group length
    group_length = int.from_bytes(data[140:144], "little")
    return data[144 + group_length :]
