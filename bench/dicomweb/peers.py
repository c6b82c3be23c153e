"""The two DICOMweb servers measured: ours (gunicorn with the product's
configuration, production settings, PostgreSQL) and Orthanc with its DICOMweb
plugin (generated configuration, loopback clients only)."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from bench.host import tool_version
from bench.servers import SERVER_CONFIG, gunicorn_argv
from bench.supervise import PROCS, free_port, wait_for_http

ORTHANC = "/usr/sbin/Orthanc"
ORTHANC_DICOMWEB = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
ORTHANC_ROOT = "/dicom-web"
OUR_ROOT = "/dicomweb"


@dataclass
class Server:
    """A running DICOMweb server as the clients see it."""

    key: str  # "ours", "orthanc"
    label: str
    port: int
    root: str  # the DICOMweb root path, no trailing slash
    headers: dict[str, str]  # sent with every request (authentication)
    proc: subprocess.Popen[bytes]
    log_path: Path
    description: str = ""
    notes: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"{self.root}/{path.lstrip('/')}"

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: gunicorn's workers (the master's
        children), or Orthanc's one process."""
        children = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                children.append(int(entry.name))
        return sorted(children) or [self.proc.pid]

    def stop(self) -> None:
        PROCS.stop(self.proc, timeout=15)


# --- Orthanc -------------------------------------------------------------------------


def orthanc_config(folder: Path, http_port: int) -> Path:
    """Orthanc with its DICOMweb plugin at /dicom-web/, as the Debian packages ship
    it otherwise (defaults kept: HTTP compression, keep-alive, 50 HTTP threads,
    the plugin's full metadata read from the stored files); no DICOM server."""
    config = {
        "Name": "bench-dicomweb",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "StorageCompression": False,
        "Plugins": [ORTHANC_DICOMWEB],
        "LuaScripts": [],
        "HttpServerEnabled": True,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomServerEnabled": False,
        "SaveJobs": False,
        "DicomWeb": {"Enable": True, "Root": ORTHANC_ROOT + "/"},
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "orthanc.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def orthanc_start(folder: Path) -> Server:
    port = free_port()
    config = orthanc_config(folder, port)
    log_path = folder / "orthanc.log"
    proc = PROCS.start(
        [ORTHANC, str(config)],
        env={**os.environ, "TCP_NODELAY": "1"},
        log_path=log_path,
        cwd=folder,
    )
    wait_for_http(
        port,
        ORTHANC_ROOT + "/studies",
        headers={"Accept": "application/dicom+json"},
        timeout=60,
        what="Orthanc's DICOMweb plugin",
        proc=proc,
        log_path=log_path,
    )
    return Server(
        key="orthanc",
        label="Orthanc + DICOMweb plugin",
        port=port,
        root=ORTHANC_ROOT,
        headers={},
        proc=proc,
        log_path=log_path,
        description=(
            f"Orthanc {orthanc_version()} with its DICOMweb plugin "
            f"{orthanc_plugin_version(log_path)} (Debian packages), default settings "
            "(HTTP compression on, 50 HTTP threads, full metadata read from the files), "
            "SQLite index, files on the same disk"
        ),
    )


def orthanc_version() -> str:
    return tool_version([ORTHANC, "--version"], r"Orthanc\S*\s+(\d[\w.+-]*)")


def orthanc_plugin_version(log_path: Path) -> str:
    import re

    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    found = re.search(r"Registering plugin 'dicom-web' \(version ([^)]+)\)", text)
    return found.group(1) if found else "?"


# --- ours ----------------------------------------------------------------------------


def ours_start(folder: Path, env: dict[str, str], token: str) -> Server:
    """gunicorn as the Procfile runs it (``-c gunicorn.conf.py``: gthread, one worker
    per core and at least 2, 8 threads each, reuse_port), bound to a free port."""
    port = free_port()
    log_path = folder / "gunicorn.log"
    folder.mkdir(parents=True, exist_ok=True)
    proc = PROCS.start(gunicorn_argv(port, config=SERVER_CONFIG), env=env, log_path=log_path)
    headers = {"Authorization": f"Token {token}", "X-Forwarded-Proto": "https"}
    wait_for_http(
        port,
        OUR_ROOT + "/studies?limit=1",
        headers={**headers, "Accept": "application/dicom+json"},
        timeout=90,
        what="gunicorn",
        proc=proc,
        log_path=log_path,
    )
    workers = int(env.get("WEB_CONCURRENCY") or max(2, os.cpu_count() or 1))
    threads = int(env.get("GUNICORN_THREADS") or 8)
    return Server(
        key="ours",
        label="ours (gunicorn)",
        port=port,
        root=OUR_ROOT,
        headers=headers,
        proc=proc,
        log_path=log_path,
        description=(
            f"gunicorn -c {SERVER_CONFIG} ({workers} workers x {threads} threads, gthread), "
            "production settings (DEBUG off), PostgreSQL, DRF token of a group admin"
        ),
    )
