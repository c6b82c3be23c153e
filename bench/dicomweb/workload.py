"""The studies the DICOMweb benchmark serves: synthetic CT and MR studies
(``ingest.synthetic``) written once as files, then filed into our app through the
gateway's filing service and loaded into Orthanc with ``POST /instances``, the
same bytes into both."""

from __future__ import annotations

import hashlib
import http.client
import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.supervise import HOST

CALLING_AE = "STMARY_CT"  # a demo facility's AE title (seed_demo): St. Mary's
FACILITY_NAME = "St. Mary's Regional Medical Center"


@dataclass
class Instance:
    sop_uid: str
    series_uid: str
    number: int
    path: Path | None  # None once filed when the file is not kept (the big study)
    frame_bytes: int
    sha256: str = ""
    size: int = 0


@dataclass
class Study:
    """One synthetic study: its UIDs, its series and its instances (in series, then
    instance-number order) and where its files are."""

    key: str  # "ct", "mr", "big"
    label: str
    study_uid: str
    patient_id: str
    series: list[tuple[str, int]]  # (series UID, series number)
    instances: list[Instance] = field(default_factory=list)
    rows: int = 0
    columns: int = 0
    per_series: int = 0
    spec: Any = None  # its ingest.synthetic.StudySpec

    @property
    def bytes(self) -> int:
        return sum(i.size for i in self.instances)

    @property
    def frame_bytes(self) -> int:
        return sum(i.frame_bytes for i in self.instances)

    def facts(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "study_uid": self.study_uid,
            "patient_id": self.patient_id,
            "series": len(self.series),
            "instances": len(self.instances),
            "matrix": f"{self.rows}x{self.columns}",
            "bytes": self.bytes,
            "frame_bytes": self.frame_bytes,
        }


def _sha256(path: Path) -> tuple[str, int]:
    sha, size = hashlib.sha256(), 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            sha.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), size


def make_study(
    key: str,
    label: str,
    *,
    modality: str,
    series: int,
    per_series: int,
    rows: int,
    columns: int,
    patient_id: str,
    accession: str,
    description: str,
    body_part: str,
) -> Study:
    """A study's UIDs and layout (its files are written by ``write_files``)."""
    from pydicom.uid import generate_uid

    from ingest.synthetic import StudySpec

    spec = StudySpec(
        modality=modality,
        body_part=body_part,
        description=description,
        patient_id=patient_id,
        patient_name=f"BENCH^{key.upper()}",
        accession=accession,
    )
    return Study(
        key=key,
        label=label,
        study_uid=spec.study_uid,
        patient_id=patient_id,
        series=[(str(generate_uid()), n + 1) for n in range(series)],
        rows=rows,
        columns=columns,
        per_series=per_series,
        spec=spec,
    )


def datasets(study: Study) -> Iterator[tuple[Any, str, int]]:
    """Each instance's data set, as a scanner would send it: the synthetic header and
    noise pixels of ``ingest.synthetic``, with the geometry a viewer reads (position,
    orientation, spacing, window) so the metadata has a realistic shape."""
    from pydicom.uid import generate_uid

    from ingest.synthetic import make_instance

    spec = study.spec
    frame_of_reference = str(generate_uid())
    for series_uid, series_number in study.series:
        for number in range(1, study.per_series + 1):
            ds = make_instance(
                spec,
                series_uid=series_uid,
                number=number,
                rows=study.rows,
                columns=study.columns,
                seed=series_number * 100_000 + number,
            )
            ds.SeriesNumber = series_number
            ds.SeriesDescription = f"{spec.description} series {series_number}"
            ds.FrameOfReferenceUID = frame_of_reference
            ds.ImagePositionPatient = [-125.0, -125.0, -float(number) * 1.25]
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.PixelSpacing = [0.488, 0.488]
            ds.SliceThickness = 1.25
            ds.SliceLocation = -float(number) * 1.25
            ds.WindowCenter, ds.WindowWidth = 40, 400
            ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
            ds.Manufacturer = "BENCH"
            yield ds, series_uid, number


def write_files(study: Study, folder: Path) -> None:
    """Write the study's files under ``folder`` (kept: both servers get these bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    frame = study.rows * study.columns * 2
    for ds, series_uid, number in datasets(study):
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        sha, size = _sha256(path)
        study.instances.append(
            Instance(str(ds.SOPInstanceUID), series_uid, number, path, frame, sha, size)
        )


# --- our app: the gateway's filing service -----------------------------------------


@dataclass
class Filed:
    instances: int = 0
    seconds: float = 0.0
    json_seconds: float = 0.0
    json_built: int = 0
    mismatches: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


def _request(facility: Any, sop_class: str, sop: str) -> Any:
    from ingest.services import Request

    return Request(
        facility_id=facility.pk,
        calling_ae=CALLING_AE,
        peer_address=HOST,
        sop_class_uid=sop_class,
        sop_instance_uid=sop,
        max_object_bytes=facility.dicom_max_object_bytes,
    )


def file_study(
    study: Study, *, keep_files: bool, staging_dir: Callable[[], Path] | None = None
) -> Filed:
    """File every instance of the study through ``ingest.services.instance_receive``,
    as the DICOM listener does once an object has arrived in the staging folder.
    With ``keep_files`` the study's files (already written) are copied to staging;
    without, each data set is written straight into staging (the big study: its
    bytes are needed only in our storage)."""
    from ingest.services import instance_receive
    from ingest.storage import default_storage
    from network.models import Facility

    storage = default_storage()
    facility = Facility.objects.get(ae_titles__ae_title=CALLING_AE)
    stage = staging_dir or storage.staging_dir
    out = Filed()
    t0 = time.monotonic()

    def receive(staged: Path, sop_class: str, sop: str) -> None:
        result = instance_receive(
            storage=storage, staged_path=staged, request=_request(facility, sop_class, sop)
        )
        out.outcomes[result.outcome] = out.outcomes.get(result.outcome, 0) + 1
        if result.outcome != "stored":
            raise RuntimeError(f"filing {sop} answered {result}")
        out.instances += 1

    if keep_files:
        for inst in study.instances:
            assert inst.path is not None  # noqa: S101 - written by write_files
            staged = stage() / f"{inst.sop_uid}.part"
            shutil.copyfile(inst.path, staged)
            sop_class = _sop_class(inst.path)
            receive(staged, sop_class, inst.sop_uid)
    else:
        frame = study.rows * study.columns * 2
        for ds, series_uid, number in datasets(study):
            staged = stage() / f"{ds.SOPInstanceUID}.part"
            ds.save_as(staged, enforce_file_format=True)
            sha, size = _sha256(staged)
            study.instances.append(
                Instance(str(ds.SOPInstanceUID), series_uid, number, None, frame, sha, size)
            )
            receive(staged, str(ds.SOPClassUID), str(ds.SOPInstanceUID))
    out.seconds = time.monotonic() - t0
    return out


def _sop_class(path: Path) -> str:
    from pydicom.filereader import read_file_meta_info

    return str(read_file_meta_info(path).MediaStorageSOPClassUID)


def mark_ready_and_build(studies: list[Study], filed: dict[str, Filed]) -> list[int]:
    """What happens once a study has gone quiet, as production does it: the beat
    sweep's service ``studies_mark_ready`` (quiet period 0 here: every study has
    been filed) moves each study to ready and enqueues ``ingest.studies_dicom_json_build``
    after commit; no Celery worker runs here, so that task's body,
    ``instances_dicom_json_build``, is called as the task calls it, study by study."""
    from ingest.services import instances_dicom_json_build, studies_mark_ready
    from ingest.storage import default_storage
    from studies.models import Study as StudyRow

    ids = {s.key: StudyRow.objects.get(study_instance_uid=s.study_uid).pk for s in studies}
    ready = set(studies_mark_ready(quiet_seconds=0.0, batch_size=1000))
    missing = [key for key, pk in ids.items() if pk not in ready]
    if missing:
        raise RuntimeError(f"studies_mark_ready did not mark {missing} ready")
    for study in studies:
        t0 = time.monotonic()
        built = instances_dicom_json_build(storage=default_storage(), study_ids=[ids[study.key]])
        filed[study.key].json_seconds = time.monotonic() - t0
        filed[study.key].json_built = built
        if built != len(study.instances):
            raise RuntimeError(
                f"{study.key}: DICOM JSON built for {built} of {len(study.instances)}"
            )
    return list(ids.values())


def check_stored(study: Study) -> int:
    """Every stored file byte-identical to the one sent (sha256): mismatches."""
    from ingest.storage import default_storage
    from studies.models import Instance as InstanceRow

    storage = default_storage()
    rows = dict(
        InstanceRow.objects.filter(series__study__study_instance_uid=study.study_uid).values_list(
            "sop_instance_uid", "storage_key"
        )
    )
    bad = 0
    for inst in study.instances:
        key = rows.get(inst.sop_uid)
        if key is None or _sha256(storage.path(key)) != (inst.sha256, inst.size):
            bad += 1
    return bad


# --- Orthanc -----------------------------------------------------------------------


def orthanc_load(port: int, study: Study) -> float:
    """POST each file to Orthanc's ``/instances`` on one keep-alive connection;
    seconds taken."""
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    t0 = time.monotonic()
    try:
        for inst in study.instances:
            assert inst.path is not None  # noqa: S101 - kept for Orthanc
            conn.request(
                "POST",
                "/instances",
                body=inst.path.read_bytes(),
                headers={"Content-Type": "application/dicom"},
            )
            response = conn.getresponse()
            body = response.read()
            if response.status != 200 or json.loads(body).get("Status") != "Success":
                raise RuntimeError(
                    f"Orthanc refused {inst.sop_uid}: {response.status} {body[:200]!r}"
                )
    finally:
        conn.close()
    return time.monotonic() - t0
