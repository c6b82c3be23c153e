"""Studies stored through the gateway's filing service, for the DICOMweb tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import generate_uid

from ingest.services import instances_dicom_json_build
from ingest.storage import FileSystemStorage
from ingest.synthetic import StudySpec, make_instance
from studies.models import Study
from tests.dicomweb import orthanc as orthanc_peer
from tests.ingest.staged import receive


@pytest.fixture(autouse=True)
def _audit_repeat_cache_cleared() -> None:
    """Per-frame reads are audited once per user and study per hour (in the cache);
    ids are reused between tests, so each test starts with an empty cache."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def dicom_store(settings: Any, tmp_path: Path) -> FileSystemStorage:
    settings.DICOM_STORAGE_ROOT = str(tmp_path / "store")
    return FileSystemStorage(tmp_path / "store")


@dataclass
class StoredStudy:
    study: Study
    files: list[Path]  # as sent, in series then instance order
    series_uids: list[str]


def store_study(
    storage: FileSystemStorage,
    facility: Any,
    folder: Path,
    *,
    spec: StudySpec | None = None,
    series: tuple[tuple[str, int], ...] = (("CT", 3), ("CT", 2)),
    rows: int = 64,
    columns: int = 64,
    build_json: bool = True,
    aet: str | None = None,
) -> StoredStudy:
    """File a study of the given series (modality, instances) as the gateway would."""
    spec = spec or StudySpec()
    folder.mkdir(parents=True, exist_ok=True)
    files, series_uids = [], []
    for series_number, (modality, count) in enumerate(series, start=1):
        series_uid = str(generate_uid())
        series_uids.append(series_uid)
        for number in range(1, count + 1):
            ds = make_instance(
                spec,
                series_uid=series_uid,
                number=number,
                rows=rows,
                columns=columns,
                seed=number,
            )
            ds.Modality = modality
            ds.SeriesNumber = series_number
            ds.SeriesDescription = f"{modality} series {series_number}"
            ds.WindowCenter, ds.WindowWidth = 40, 400
            path = folder / f"{ds.SOPInstanceUID}.dcm"
            ds.save_as(path, enforce_file_format=True)
            result = receive(
                storage, path, facility, aet=aet or facility.ae_titles.first().ae_title
            )
            assert result.outcome == "stored", result
            files.append(path)
    study = Study.objects.get(study_instance_uid=spec.study_uid)
    if build_json:
        instances_dicom_json_build(storage=storage, study_ids=[study.pk])
    return StoredStudy(study, files, series_uids)


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[orthanc_peer.Orthanc]:
    """Orthanc with its DICOMweb plugin, empty, for one test module (a reference
    peer: see tests/dicomweb/orthanc.py).  Fails if Orthanc is not installed
    (make install installs it)."""
    reason = orthanc_peer.missing()
    if reason:
        # make install (scripts/system-packages) installs it: missing is a broken
        # install, not a reason to compare with nothing.
        pytest.fail(f"{reason}: run make install")
    server = orthanc_peer.start(tmp_path_factory.mktemp("orthanc"))
    try:
        yield server
    finally:
        server.stop()
