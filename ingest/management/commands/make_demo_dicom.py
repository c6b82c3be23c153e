"""Write a synthetic study as DICOM files, to send to the gateway with storescu."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from ingest.synthetic import MATRIX, StudySpec, write_series


class Command(BaseCommand):
    help = "Write one synthetic study (noise pixels, realistic header) as DICOM files."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", default=str(Path(settings.VAR_DIR) / "demo-dicom"))
        parser.add_argument("--modality", default="CT", choices=sorted(MATRIX))
        parser.add_argument("--count", type=int, default=20)
        parser.add_argument("--body-part", default="HEAD")
        parser.add_argument("--description", default="CT HEAD WO CONTRAST")
        parser.add_argument("--priority", default=None, help="STAT, HIGH or ROUTINE")
        parser.add_argument("--patient-id", default="DEMO-PAT-1")
        parser.add_argument("--accession", default="DEMOACC1")

    def handle(self, *args: Any, **options: Any) -> None:
        spec = StudySpec(
            modality=options["modality"],
            body_part=options["body_part"],
            description=options["description"],
            priority=options["priority"],
            patient_id=options["patient_id"],
            accession=options["accession"],
        )
        folder = Path(options["out"]) / spec.study_uid
        paths = write_series(spec, folder, count=options["count"])
        self.stdout.write(
            f"{len(paths)} files in {folder}\n"
            f"accession number: {spec.accession}\n"
            f"study instance UID: {spec.study_uid}"
        )
