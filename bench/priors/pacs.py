"""Orthanc as a facility's PACS: its DICOM server on (C-FIND, C-MOVE), a generated
configuration on free ports in a folder of its own, our gateway's priors AE title
registered as a modality through its REST API, prior studies loaded through it.
Used by tests/priors and ``python -m bench.priors``."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.dicomweb.peers import ORTHANC
from bench.supervise import HOST, PROCS, free_port, wait_for_http

PACS_AE_TITLE = "FACILITY_PACS"


@dataclass
class OrthancPacs:
    """A running Orthanc: REST at ``url``, DICOM at ``HOST:dicom_port`` as
    ``ae_title``."""

    proc: subprocess.Popen[bytes]
    http_port: int
    dicom_port: int
    ae_title: str
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _request(self, method: str, path: str, data: bytes | None = None, **headers: str) -> Any:
        request = urllib.request.Request(  # noqa: S310 - a loopback http URL of ours
            self.url + path, data=data, method=method, headers=headers
        )
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            body = response.read()
        return json.loads(body) if body else None

    def modality_add(self, name: str, *, ae_title: str, host: str, port: int) -> None:
        """Tell Orthanc of a DICOM peer (``PUT /modalities/<name>``): a move
        destination, and a caller allowed to query and retrieve."""
        self._request(
            "PUT",
            f"/modalities/{name}",
            json.dumps({"AET": ae_title, "Host": host, "Port": port}).encode(),
            **{"Content-Type": "application/json"},
        )

    def post_instance(self, data: bytes) -> None:
        """Store one Part 10 file (``POST /instances``)."""
        answer = self._request("POST", "/instances", data, **{"Content-Type": "application/dicom"})
        if not isinstance(answer, dict) or answer.get("Status") not in ("Success", "AlreadyStored"):
            raise RuntimeError(f"Orthanc did not store the instance: {answer}")

    def load(self, paths: Iterable[Path]) -> int:
        """Store these files; returns how many."""
        count = 0
        for path in paths:
            self.post_instance(path.read_bytes())
            count += 1
        return count

    def stop(self) -> None:
        PROCS.stop(self.proc, timeout=15)

    def kill(self) -> None:
        """Kill it at once (a PACS that dies mid-retrieval)."""
        PROCS.kill9(self.proc)


def pacs_start(folder: Path, *, ae_title: str = PACS_AE_TITLE) -> OrthancPacs:
    """Orthanc with its DICOM server on free ports, storing under ``folder``, empty
    and answering REST.  Peers are known only through ``modality_add`` (unknown
    callers may not query or retrieve)."""
    http_port, dicom_port = free_port(), free_port()
    while dicom_port == http_port:
        dicom_port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "Name": "facility-pacs",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "StorageCompression": False,
        "Plugins": [],
        "LuaScripts": [],
        "HttpServerEnabled": True,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomServerEnabled": True,
        "DicomAet": ae_title,
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": True,
        "DicomAlwaysAllowFind": False,
        "DicomAlwaysAllowMove": False,
        "DicomModalities": {},
        "DicomModalitiesInDatabase": False,
        "SaveJobs": False,
    }
    path = folder / "orthanc.json"
    path.write_text(json.dumps(config, indent=2))
    log_path = folder / "orthanc.log"
    proc = PROCS.start(
        [ORTHANC, str(path)],
        env={**os.environ, "TCP_NODELAY": "1"},
        log_path=log_path,
        cwd=folder,
    )
    wait_for_http(
        http_port,
        "/system",
        headers={},
        timeout=60,
        what="Orthanc",
        proc=proc,
        log_path=log_path,
    )
    return OrthancPacs(proc, http_port, dicom_port, ae_title, log_path)
