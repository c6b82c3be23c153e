"""A big history of studies for the QIDO-RS search: rows of ``studies_study`` for
the facility the benchmark files its studies from (so the group admin searching
sees every one of them), as the app leaves them once read (final, with their
times and reader), loaded with ``COPY``.  They have no series or instances: a
search by PatientID answers from the study rows (and the instance counts,
which are then zero).  Deterministic for a seed."""

# ruff: noqa: S311
from __future__ import annotations

import datetime as dt
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.pgcopy import Stamp, Table, copy_file

UID_ROOT = "1.2.826.0.1.3680043.10.4244"
STUDY_FIELDS = [
    "id", "study_instance_uid", "accession_number", "facility_id", "patient_id",
    "patient_name", "patient_birth_date", "patient_sex", "patient_jurisdiction_id",
    "modality", "body_part", "study_description", "study_date", "priority", "status",
    "assigned_radiologist_id", "received_at", "last_instance_at", "ready_at", "offered_at",
    "claimed_at", "finalized_at", "sla_due_at", "claim_activity_at", "updated_at",
]  # fmt: skip
TEMPLATES = [
    ("CT", "HEAD", "CT HEAD WO CONTRAST"),
    ("CT", "CHEST", "CT CHEST PE PROTOCOL"),
    ("CT", "ABDOMEN", "CT ABD PELVIS W CONTRAST"),
    ("MR", "BRAIN", "MR BRAIN W WO CONTRAST"),
    ("MR", "KNEE", "MR KNEE WO CONTRAST"),
    ("CR", "CHEST", "XR CHEST 2 VIEWS"),
    ("US", "ABDOMEN", "US ABDOMEN COMPLETE"),
]
STUDIES_PER_PATIENT = 4  # on average (Poisson-like: patients drawn uniformly)


@dataclass
class Loaded:
    studies: int
    patients: int
    seconds: float
    facility_id: int
    sample_patients: list[str]  # patients that have studies, for the searches


def patient_code(n: int) -> str:
    return f"BP{n:08d}"


def load(conn: Any, *, studies: int, work: Path, seed: int, days: float = 730.0) -> Loaded:
    """COPY ``studies`` final studies of St. Mary's into ``studies_study``, spread
    over ``days`` days, for about studies/4 patients; then move the id sequence on."""
    from bench.dicomweb.workload import CALLING_AE
    from network.models import Facility, Radiologist
    from studies.models import Study

    rng = random.Random(seed)
    facility = Facility.objects.get(ae_titles__ae_title=CALLING_AE)
    readers: list[int | None] = [
        *Radiologist.objects.filter(reading_group_id=facility.reading_group_id).values_list(
            "pk", flat=True
        )
    ] or [None]
    first_id = (Study.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1
    patients = max(1, studies // STUDIES_PER_PATIENT)
    table = Table(Study, STUDY_FIELDS)
    stamp = Stamp()
    now = time.time()
    path = work / "studies.copy"
    used: set[int] = set()
    t0 = time.monotonic()
    with path.open("w") as out:
        table.file = out
        for i in range(studies):
            sid = first_id + i
            patient = rng.randrange(patients)
            used.add(patient)
            prng = random.Random(patient)  # a patient's name, birth date and sex stay his
            modality, body_part, description = TEMPLATES[rng.randrange(len(TEMPLATES))]
            received = now - days * 86400.0 * (1 - i / studies) - rng.uniform(0, 60)
            ready = received + rng.uniform(30, 300)
            claimed = ready + rng.uniform(60, 3600)
            final = claimed + rng.uniform(180, 3600)
            priority = rng.choice((1, 2, 3, 3, 3))
            reader = rng.choice(readers)
            birth = dt.date(1930, 1, 1) + dt.timedelta(days=prng.randrange(90 * 365))
            table.write(
                [
                    str(sid),
                    f"{UID_ROOT}.{sid}",
                    f"H{sid:09d}",
                    str(facility.pk),
                    patient_code(patient),
                    f"PATIENT^{patient:08d}",
                    birth.isoformat(),
                    prng.choice("FM"),
                    str(facility.jurisdiction_id),
                    modality,
                    body_part,
                    description,
                    dt.datetime.fromtimestamp(received, dt.UTC).date().isoformat(),
                    str(priority),
                    "final",
                    "\\N" if reader is None else str(reader),
                    stamp(received),
                    stamp(received + rng.uniform(5, 60)),
                    stamp(ready),
                    stamp(ready + 1),
                    stamp(claimed),
                    stamp(final),
                    stamp(received + 86400.0 / priority),
                    stamp(final),
                    stamp(final),
                ]
            )
    copy_file(conn, table, path)
    conn.execute(
        "SELECT setval(pg_get_serial_sequence('studies_study', 'id'), "
        "(SELECT max(id) FROM studies_study))"
    )
    path.unlink()
    sample = sorted(used)
    rng.shuffle(sample)
    return Loaded(
        studies=studies,
        patients=len(used),
        seconds=time.monotonic() - t0,
        facility_id=facility.pk,
        sample_patients=[patient_code(p) for p in sample[:500]],
    )
