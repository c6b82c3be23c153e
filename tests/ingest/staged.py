"""Filing a file through the gateway's service as the listener would: staged, with
the request's UIDs taken from the object unless a test says otherwise."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pydicom

from ingest.services import ReceiveResult, Request, instance_receive
from ingest.storage import FileSystemStorage


def receive(
    storage: FileSystemStorage,
    path: Path,
    facility: Any,
    *,
    aet: str = "FAC_A",
    sop_class: str | None = None,
    sop_instance: str | None = None,
) -> ReceiveResult:
    if sop_class is None or sop_instance is None:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        sop_class = str(ds.SOPClassUID) if sop_class is None else sop_class
        sop_instance = str(ds.SOPInstanceUID) if sop_instance is None else sop_instance
    staged = storage.staging_dir() / f"{path.name}.part"
    shutil.copy(path, staged)
    return instance_receive(
        storage=storage,
        staged_path=staged,
        request=Request(
            facility_id=facility.pk,
            calling_ae=aet,
            sop_class_uid=sop_class,
            sop_instance_uid=sop_instance,
            max_object_bytes=facility.dicom_max_object_bytes,
        ),
    )
