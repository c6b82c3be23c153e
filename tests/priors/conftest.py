"""Orthanc as the facility's PACS, our listener as a real process, and priors
written as the PACS would hold them."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import generate_uid

from bench.dicomweb.peers import ORTHANC
from bench.priors.pacs import OrthancPacs, pacs_start
from ingest.synthetic import StudySpec, make_instance
from tests.processes import Listener, start_listener, stop_listener


def write_prior(
    spec: StudySpec,
    folder: Path,
    *,
    study_date: dt.date,
    count: int,
    body_part: str | None = None,
    size: int = 32,
) -> list[Path]:
    """``count`` small instances of one series of ``spec``'s study, dated ``study_date``."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = str(generate_uid())
    paths = []
    for number in range(1, count + 1):
        ds = make_instance(spec, series_uid=series_uid, number=number, rows=size, columns=size)
        ds.StudyDate = study_date.strftime("%Y%m%d")
        if body_part is not None:
            ds.BodyPartExamined = body_part
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


@pytest.fixture
def pacs(tmp_path: Path) -> Iterator[OrthancPacs]:
    if not os.access(ORTHANC, os.X_OK):
        pytest.skip(f"Orthanc is not installed ({ORTHANC}; Debian package 'orthanc')")
    server = pacs_start(tmp_path / "orthanc")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def listener(transactional_db: Any, tmp_path: Path) -> Iterator[Listener]:
    """Our DICOM gateway as a real process (the C-MOVE destination)."""
    (tmp_path / "listener").mkdir()
    running = start_listener(tmp_path / "listener")
    try:
        yield running
    finally:
        stop_listener(running)
