"""Synthetic DICOM objects for tests, the demo and the ingest benchmark.

Realistic headers (patient, accession, procedure code, priority tags) and pixel
data of the right size and depth; the pixels are noise, not anatomy.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

SOP_CLASSES = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "CR": "1.2.840.10008.5.1.4.1.1.1",
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",
    "US": "1.2.840.10008.5.1.4.1.1.6.1",
    "MG": "1.2.840.10008.5.1.4.1.1.1.2",
}
MATRIX = {
    "CT": (512, 512),
    "MR": (256, 256),
    "CR": (1024, 1024),
    "DX": (1024, 1024),
    "US": (480, 640),
    "MG": (1024, 768),
}


@dataclass
class StudySpec:
    modality: str = "CT"
    body_part: str = "HEAD"
    description: str = "CT HEAD WO CONTRAST"
    procedure_code: str = "70450"
    patient_id: str = "PAT-0001"
    patient_name: str = "TEST^PATIENT"
    birth_date: str = "19600101"
    sex: str = "F"
    accession: str = "ACC0001"
    priority: str | None = None  # e.g. "STAT", put in Requested Procedure Priority
    study_uid: str = field(default_factory=lambda: str(generate_uid()))


def make_instance(
    spec: StudySpec,
    *,
    series_uid: str,
    number: int,
    rows: int | None = None,
    columns: int | None = None,
    seed: int = 0,
    phantom: tuple[int, int] | None = None,
) -> Dataset:
    """One instance of ``spec``'s study, with pixel data of the modality's size:
    noise, or with ``phantom=(slice, slices)`` that slice of a head-like phantom
    (ellipses of skull, brain, ventricles and a lesion; CT numbers through a rescale)
    with the geometry a viewer stacks slices by."""
    modality = spec.modality
    default_rows, default_cols = MATRIX.get(modality, (512, 512))
    rows, columns = rows or default_rows, columns or default_cols
    sop_uid = str(generate_uid())

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(SOP_CLASSES[modality])
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SOP_CLASSES[modality]
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = spec.study_uid
    ds.SeriesInstanceUID = series_uid
    ds.Modality = modality
    ds.BodyPartExamined = spec.body_part
    ds.StudyDescription = spec.description
    ds.SeriesDescription = f"{spec.description} series"
    ds.SeriesNumber = 1
    ds.InstanceNumber = number
    ds.PatientID = spec.patient_id
    ds.PatientName = spec.patient_name
    ds.PatientBirthDate = spec.birth_date
    ds.PatientSex = spec.sex
    ds.AccessionNumber = spec.accession
    today = dt.datetime.now(tz=dt.UTC)
    ds.StudyDate = today.strftime("%Y%m%d")
    ds.StudyTime = today.strftime("%H%M%S")
    ds.ReferringPhysicianName = "REFERRER^ROSA"
    code = Dataset()
    code.CodeValue = spec.procedure_code
    code.CodingSchemeDesignator = "CPT"
    code.CodeMeaning = spec.description
    ds.ProcedureCodeSequence = Sequence([code])
    if spec.priority:
        ds.RequestedProcedurePriority = spec.priority
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    if phantom is not None:
        index, slices = phantom
        ds.PixelData = phantom_slice(rows, columns, index=index, slices=slices).tobytes()
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.PixelSpacing = [0.5, 0.5]
        ds.SliceThickness = 2.5
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-columns / 4, -rows / 4, 2.5 * index]
        ds.SliceLocation = 2.5 * index
        ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[spec.study_uid, "frame"])
        return ds
    rng = random.Random(seed or number)  # noqa: S311 - test pixels, not security
    ds.PixelData = rng.randbytes(rows * columns * 2)
    return ds


# (centre x, centre y, semi-axis x, semi-axis y, CT number) in a unit square; drawn
# in order, each over the last.
_PHANTOM = [
    (0.0, 0.0, 0.72, 0.92, 1000.0),  # skull
    (0.0, -0.02, 0.66, 0.86, 35.0),  # brain
    (-0.16, 0.05, 0.09, 0.26, 8.0),  # ventricles
    (0.16, 0.05, 0.09, 0.26, 8.0),
    (0.28, -0.42, 0.07, 0.07, 75.0),  # a lesion
    (0.0, 0.55, 0.05, 0.05, 60.0),
]


def phantom_slice(rows: int, columns: int, *, index: int, slices: int) -> Any:
    """A slice (``index`` of ``slices``) of the head phantom as unsigned 16-bit stored
    values (CT number + 1024); the head narrows towards both ends."""
    import numpy as np

    z = (2.0 * (index + 0.5) / max(slices, 1)) - 1.0  # -1 .. 1 through the head
    scale = max(0.05, (1.0 - 0.85 * z * z)) ** 0.5
    y, x = np.mgrid[-1 : 1 : rows * 1j, -1 : 1 : columns * 1j]
    image = np.full((rows, columns), -1000.0)
    for cx, cy, ax, ay, value in _PHANTOM:
        inside = ((x - cx) / (ax * scale)) ** 2 + ((y - cy) / (ay * scale)) ** 2 <= 1.0
        image[inside] = value
    texture = np.sin(x * 40 + index) * np.cos(y * 37) * 6.0  # so that it is not flat
    return np.clip(image + texture + 1024, 0, 4095).astype(np.uint16)


def write_series(
    spec: StudySpec,
    folder: Path,
    *,
    count: int,
    rows: int | None = None,
    columns: int | None = None,
) -> list[Path]:
    """Write ``count`` instances of one series of ``spec``'s study as DICOM files."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = str(generate_uid())
    paths = []
    for number in range(1, count + 1):
        ds = make_instance(spec, series_uid=series_uid, number=number, rows=rows, columns=columns)
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
