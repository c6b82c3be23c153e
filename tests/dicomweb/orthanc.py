"""Orthanc with its DICOMweb plugin as a reference peer for the DICOMweb tests.

Started by the DICOMweb benchmark's launcher (``bench.dicomweb.peers.orthanc_start``:
a generated configuration on a free port in a folder of its own, TCP_NODELAY, the
benchmarks' process supervision, waiting until the plugin answers), so the tests
and the benchmark run the same Orthanc.  Orthanc listens on every interface
whatever it is told; only loopback clients talk to it here (FIELD-NOTES, "Orthanc
as a reference peer").
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.dicomweb.peers import ORTHANC, ORTHANC_DICOMWEB, Server, orthanc_start
from bench.supervise import HOST


def missing() -> str | None:
    """Why Orthanc cannot run here (None if it can): the only reason to skip."""
    if not os.access(ORTHANC, os.X_OK):
        return f"Orthanc is not installed ({ORTHANC}; Debian package 'orthanc')"
    if not Path(ORTHANC_DICOMWEB).exists():
        return f"Orthanc's DICOMweb plugin is not installed ({ORTHANC_DICOMWEB})"
    return None


@dataclass
class Orthanc:
    """A running Orthanc: its REST API at ``url``, its DICOMweb service at ``dicomweb``."""

    server: Server

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server.port}"

    @property
    def dicomweb(self) -> str:
        return self.url + self.server.root

    def log(self) -> str:
        path = self.server.log_path
        return path.read_text(errors="replace") if path.exists() else ""

    def post_instance(self, data: bytes) -> dict[str, Any]:
        """Store one Part 10 file (``POST /instances``)."""
        request = urllib.request.Request(  # noqa: S310 - a loopback http URL of ours
            self.url + "/instances",
            data=data,
            method="POST",
            headers={"Content-Type": "application/dicom"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            answer: dict[str, Any] = json.loads(response.read())
        if answer.get("Status") not in ("Success", "AlreadyStored"):
            raise RuntimeError(f"Orthanc did not store the instance: {answer}")
        return answer

    def load(self, paths: Iterable[Path]) -> int:
        """Store these files; returns how many."""
        count = 0
        for path in paths:
            self.post_instance(path.read_bytes())
            count += 1
        return count

    def stop(self) -> None:
        """Stop Orthanc (its process group)."""
        self.server.stop()


def start(folder: Path) -> Orthanc:
    """Orthanc storing under ``folder``, empty, up and answering DICOMweb."""
    return Orthanc(orthanc_start(folder))
