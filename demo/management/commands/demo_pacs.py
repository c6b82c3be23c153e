"""Run Orthanc as the demo's facility PACS, holding an earlier study of the demo
patient, so a study sent in the demo has a relevant prior to retrieve.

``make demo`` starts it (Procfile ``pacs``): Orthanc (Debian package ``orthanc``) with a
generated configuration under ``var/demo-pacs/``, its DICOM port on 4242 as AE title
``DEMOPACS`` (``seed_demo`` configures St. Mary's PACS to it), our gateway registered as
the move destination (``DICOM_PRIORS_AE_TITLE``) and as a peer allowed to query.  Once
Orthanc answers, a synthetic CT head of ``DEMO-PAT-1`` dated a year ago is loaded
through its REST API (the same patient ``make_demo_dicom`` writes), unless it is there
already.  The command then waits on Orthanc and stops it on SIGINT/SIGTERM, as honcho
expects of a Procfile process.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Any

import pydicom
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from demo.seed import PACS_AE_TITLE, PACS_DICOM_PORT
from ingest.synthetic import StudySpec, write_series

ORTHANC = "/usr/sbin/Orthanc"
PACS_HTTP_PORT = 8042
PRIOR_PATIENT_ID = "DEMO-PAT-1"
PRIOR_ACCESSION = "DEMOPRIOR1"


def orthanc_configuration(folder: Path, *, http_port: int, dicom_port: int) -> dict[str, Any]:
    """Orthanc as a facility PACS: C-FIND/C-MOVE SCP; loopback HTTP only."""
    gateway = ("127.0.0.1", settings.DICOM_PORT)
    return {
        "Name": "demo-facility-pacs",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "Plugins": [],
        "HttpServerEnabled": True,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomServerEnabled": True,
        "DicomAet": PACS_AE_TITLE,
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": False,
        "DicomModalities": {
            # Our gateway queries as DICOM_AE_TITLE and takes priors as the priors AE.
            "telerad": [settings.DICOM_AE_TITLE, *gateway],
            "telerad-priors": [settings.DICOM_PRIORS_AE_TITLE, *gateway],
        },
        "SaveJobs": False,
    }


class Command(BaseCommand):
    help = "Run Orthanc as the demo facility's PACS, holding a prior of the demo patient."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--http-port", type=int, default=PACS_HTTP_PORT)
        parser.add_argument("--dicom-port", type=int, default=PACS_DICOM_PORT)
        parser.add_argument("--folder", default=str(Path(settings.VAR_DIR) / "demo-pacs"))

    def handle(self, *args: Any, **options: Any) -> None:
        if not os.access(ORTHANC, os.X_OK):
            raise CommandError(f"Orthanc is not installed ({ORTHANC}); run `make install`.")
        folder = Path(options["folder"])
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "orthanc.json"
        config.write_text(
            json.dumps(
                orthanc_configuration(
                    folder, http_port=options["http_port"], dicom_port=options["dicom_port"]
                ),
                indent=2,
            )
        )
        proc = subprocess.Popen(  # noqa: S603 - a fixed program and our own file
            [ORTHANC, str(config)], env={**os.environ, "TCP_NODELAY": "1"}
        )

        def stop(signum: int, frame: FrameType | None) -> None:
            proc.terminate()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        base = f"http://127.0.0.1:{options['http_port']}"
        try:
            self._wait_until_up(base, proc)
            loaded = self._load_prior(base)
            self.stdout.write(
                f"demo PACS: AE title {PACS_AE_TITLE} on 127.0.0.1:{options['dicom_port']}, "
                f"{loaded} prior instance(s) of {PRIOR_PATIENT_ID} loaded"
            )
        except BaseException:
            proc.terminate()
            proc.wait(timeout=20)
            raise
        code = proc.wait()
        if code not in (0, -signal.SIGTERM):
            raise CommandError(f"Orthanc exited with {code}")

    @staticmethod
    def _wait_until_up(base: str, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise CommandError(f"Orthanc exited with {proc.returncode} while starting")
            try:
                with urllib.request.urlopen(f"{base}/system", timeout=2):  # noqa: S310 - loopback
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.3)
        raise CommandError("Orthanc did not answer within 60 s")

    @staticmethod
    def _load_prior(base: str) -> int:
        """Load the demo patient's CT head of a year ago, unless Orthanc has it."""
        query = json.dumps(
            {"Level": "Study", "Query": {"AccessionNumber": PRIOR_ACCESSION}}
        ).encode()
        request = urllib.request.Request(  # noqa: S310 - loopback http only
            f"{base}/tools/find", data=query, method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            if json.load(response):
                return 0
        spec = StudySpec(
            modality="CT",
            body_part="HEAD",
            description="CT HEAD WO CONTRAST",
            patient_id=PRIOR_PATIENT_ID,
            patient_name="DEMO^PATIENT",
            accession=PRIOR_ACCESSION,
        )
        year_ago = (timezone.localdate() - dt.timedelta(days=365)).strftime("%Y%m%d")
        with tempfile.TemporaryDirectory() as tmp:
            paths = write_series(spec, Path(tmp), count=20, rows=256, columns=256)
            for path in paths:
                ds = pydicom.dcmread(path)
                ds.StudyDate = ds.SeriesDate = ds.ContentDate = year_ago
                buffer = io.BytesIO()
                ds.save_as(buffer, enforce_file_format=True)
                upload = urllib.request.Request(  # noqa: S310 - loopback http only
                    f"{base}/instances",
                    data=buffer.getvalue(),
                    method="POST",
                    headers={"Content-Type": "application/dicom"},
                )
                with urllib.request.urlopen(upload, timeout=30) as answer:  # noqa: S310
                    answer.read()  # loopback; Orthanc's answer names the stored instance
        return len(paths)
