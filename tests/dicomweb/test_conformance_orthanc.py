"""Our DICOMweb service side by side with Orthanc's DICOMweb plugin, on the same
studies: byte-identical files filed through the gateway's filing service (ours,
served by the live server) and stored with ``POST /instances`` (Orthanc).

For each QIDO-RS query of the table, both must find the same studies, series or
instances (by UID, the order aside), and return the same values for the
attributes both return; each way in which Orthanc and we legitimately differ is
listed below with its reason, as docs/dicomweb-conformance.md states it, and
nothing else may differ.  WADO-RS metadata is compared instance by instance and
attribute by attribute, retrieved instances byte by byte after their file meta,
frames byte by byte.

Every answer is fetched once, when the module's fixture has the data set in the
database (see ``peers``), and the tests compare the answers.
"""

from __future__ import annotations

import fnmatch
import http.client
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import pydicom
import pytest
from django.core.management import call_command
from django.test import override_settings
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.uid import UID, generate_uid

from accounts.models import ApiToken
from ingest.services import instances_dicom_json_build
from ingest.storage import FileSystemStorage
from ingest.synthetic import StudySpec, make_instance
from network.services import reading_group_admin_grant
from studies.models import Study
from teleradiology.celery import app as celery_app
from tests import factories as f
from tests.dicomweb.orthanc import Orthanc
from tests.ingest.staged import receive

# The data set lives in the test database (filed once, see ``peers``); the tests
# themselves only compare answers.
# The module's data set is filed once and emptied by one flush: see ``peers``.
pytestmark = [pytest.mark.django_db, pytest.mark.flushes_database]

JSON = "application/dicom+json"
INSTANCE_AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'
FRAMES_AS_STORED = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'


# -- the data set ----------------------------------------------------------------


def uid(name: str) -> str:
    """A UID of its own for each name, the same on every run (readable test ids)."""
    return str(generate_uid(entropy_srcs=["telerad-dicomweb-conformance", name]))


@dataclass(frozen=True)
class SeriesDef:
    modality: str
    number: int
    description: str
    instances: int
    frames: int = 1


@dataclass(frozen=True)
class StudyDef:
    key: str
    patient_name: str
    patient_id: str
    accession: str
    date: str
    time: str
    description: str
    series: tuple[SeriesDef, ...]
    study_id: str = ""
    body_part: str = "HEAD"
    referring: str = "REFERRER^ROSA"
    birth_date: str = "19600101"
    sex: str = "F"
    charset: str | None = None


STUDIES = (
    StudyDef(
        "smith", "Smith^John Paul", "PAT-1001", "ACC1001", "20240115", "083000",
        "CT HEAD WO CONTRAST",
        (SeriesDef("CT", 1, "AXIAL 5mm", 3), SeriesDef("CT", 2, "CORONAL", 2)),
        study_id="1001", sex="M", birth_date="19711102",
    ),
    StudyDef(
        "smith_jane", "SMITH^JANE", "PAT-1002", "ACC1002", "20240220", "101500.25",
        "MR BRAIN W WO",
        (
            SeriesDef("MR", 1, "T1 AX", 2),
            SeriesDef("MR", 2, "T2 FLAIR", 1, frames=2),
            SeriesDef("MR", 3, "DWI", 2),
        ),
        study_id="1002",
    ),
    StudyDef(
        "obrien", "O'Brien^Mary^Ann", "PAT-2001", "X-77/2", "20240331", "235959",
        "CR CHEST PA AND LAT",
        (SeriesDef("CR", 1, "PA", 1), SeriesDef("CR", 2, "LAT", 1)),
        body_part="CHEST",
    ),
    StudyDef(
        "vanderberg", "van der Berg^Hans", "NL 55501", "ACC2002", "20240410", "120000",
        "TRAUMA SERIES",
        (SeriesDef("CT", 1, "C-SPINE", 2), SeriesDef("CR", 2, "PELVIS AP", 1)),
        sex="M", body_part="CSPINE",
    ),
    StudyDef(
        "lee", "Lee^Min", "XYZ9", "", "20231231", "000001", "MR KNEE",
        (SeriesDef("MR", 5, "PD FS", 3),),
        body_part="KNEE", referring="",  # empty values: encoded alike?
    ),
    StudyDef(
        "smith_lower", "smith^john", "PAT-1003", "ACC1003", "20240501", "070000", "CT CHEST",
        (SeriesDef("CT", 1, "LUNG", 2),),
        body_part="CHEST",
    ),
    StudyDef(
        "muller", "Müller^Jürgen", "DE-77", "ACC3001", "20240229", "151617", "CT ABDOMEN",
        (SeriesDef("CT", 1, "PORTAL VENOUS", 1),),
        body_part="ABDOMEN", charset="ISO_IR 192",
    ),
)  # fmt: skip

SERIES_KEYS = [f"{s.key}/{se.number}" for s in STUDIES for se in s.series]
INSTANCE_KEYS = [
    f"{s.key}/{se.number}/{n}"
    for s in STUDIES
    for se in s.series
    for n in range(1, se.instances + 1)
]
UIDS = {key: uid(key) for key in [s.key for s in STUDIES] + SERIES_KEYS + INSTANCE_KEYS}
KEY_OF = {value: key for key, value in UIDS.items()}


def build_instance(study: StudyDef, series: SeriesDef, number: int) -> Dataset:
    """One instance of the data set: ingest.synthetic's, with this study's attributes."""
    spec = StudySpec(
        modality=series.modality,
        body_part=study.body_part,
        description=study.description,
        patient_id=study.patient_id,
        patient_name=study.patient_name,
        birth_date=study.birth_date,
        sex=study.sex,
        accession=study.accession,
        study_uid=UIDS[study.key],
    )
    ds = make_instance(
        spec,
        series_uid=UIDS[f"{study.key}/{series.number}"],
        number=number,
        rows=16,
        columns=12,
        seed=number + 10 * series.number,
    )
    sop = UIDS[f"{study.key}/{series.number}/{number}"]
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = UID(sop)
    if study.charset:
        ds.SpecificCharacterSet = study.charset
    ds.StudyDate, ds.StudyTime = study.date, study.time
    ds.SeriesDate, ds.SeriesTime = study.date, study.time
    ds.ReferringPhysicianName = study.referring
    if study.study_id:
        ds.StudyID = study.study_id
    ds.SeriesNumber = series.number
    ds.SeriesDescription = series.description
    # Multi-valued strings and decimal strings, to compare their JSON encoding.
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SliceThickness = "1.25"
    ds.PixelSpacing = ["0.5", "0.4"]
    ds.ImagePositionPatient = ["-125", "-125.5", f"{number * 1.25:g}"]
    ds.WindowCenter, ds.WindowWidth = "40", "400"
    if series.modality == "CT":
        ds.RescaleIntercept, ds.RescaleSlope = "-1024", "1"
    if series.frames > 1:
        ds.NumberOfFrames = series.frames
        ds.PixelData = bytes(ds.PixelData) * series.frames
    return ds


# -- differences kept (docs/dicomweb-conformance.md, "Differences from Orthanc") ---

# Query matching.
NO_PERCENT_DECODING = (
    "Orthanc 1.10.1 with its DICOMweb plugin 1.7 does not percent-decode QIDO-RS query "
    "values: a value with a space (which must be sent as %20) matches nothing there; "
    "Orthanc is asked the same with '?' in place of each space"
)
ORTHANC_FOLDS_CASE = (
    "Orthanc matches every string attribute case-insensitively; we fold case only for "
    "person names and descriptions: PS3.4 C.2.2.2.1/C.2.2.2.4 match other attributes "
    "(PatientID, AccessionNumber, Modality) case-sensitively"
)
NO_INCLUDED_SEQUENCES = (
    "Orthanc's plugin returns no sequence asked for with includefield "
    "(ProcedureCodeSequence here); we return it as stored"
)
UID_PARAMETER_SCOPES = (
    "Orthanc answers /series?StudyInstanceUID=... as it answers /studies/{study}/series, "
    "without the study attributes PS3.18 10.6.3.3 asks for in a search across studies"
)
NO_BACKSLASH_LISTS = (
    "Orthanc's plugin reads a ModalitiesInStudy list only comma-separated; we also take "
    "the backslash of DICOM multiple values"
)

# Attributes returned: tag -> reason, by route.
CHARSET = (
    "Specific Character Set: Orthanc answers its DefaultEncoding (ISO_IR 100) whatever "
    "the objects say; we answer the objects' own value, and none when they declare none "
    "(the JSON is UTF-8 either way)"
)
AVAILABILITY = "Instance Availability (Table 10.6.3-3/4/5): Orthanc does not return it"
SCOPED_UPPER = (
    "Orthanc also returns study (and series) attributes in searches scoped to a study "
    "or series; PS3.18 10.6.3.3 asks for them only in searches across studies (series)"
)
COMPUTED_UPPER = (
    "Searches across studies (series) must include the study (series) level attributes "
    "(PS3.18 10.6.3.3): we include the computed ones (Modalities in Study, Number of "
    "Study/Series Related Series/Instances); Orthanc does not"
)
SERIES_DATE = "We return Series Date and Series Time with the series attributes; Orthanc does not"
FRAMES = (
    "We return Number of Frames for every instance (1 for a single-frame object without "
    "the attribute, from the instance's record); Orthanc only when the object has it"
)
INCLUDE_ALL = (
    "Orthanc's plugin 1.7 returns nothing more for includefield=all; we add the patient, "
    "study and series modules at those levels and every non-bulk attribute at the "
    "instance level, all as stored in the objects"
)
TRANSFER_SYNTAX_META = (
    "Our metadata keeps the Transfer Syntax UID (0002,0010) of the stored object; "
    "Orthanc's leaves the file meta out"
)

METADATA_ONLY_OURS = {"00020010": TRANSFER_SYNTAX_META}

# What Orthanc returns of the study and series levels (but the character set).
STUDY_MODULE = {
    "00080020", "00080030", "00080050", "00080090", "00100010", "00100020", "00100030",
    "00100040", "0020000D", "00200010",
}  # fmt: skip
SERIES_MODULE = {"00080060", "0008103E", "0020000E", "00200011"}

ONLY_OURS: dict[str, dict[str, str]] = {
    "studies": {"00080056": AVAILABILITY},
    "series": {
        "00080056": AVAILABILITY,
        **dict.fromkeys(("00080061", "00201206", "00201208"), COMPUTED_UPPER),
        **dict.fromkeys(("00080021", "00080031"), SERIES_DATE),
    },
    "study-series": {
        "00080056": AVAILABILITY,
        **dict.fromkeys(("00080021", "00080031"), SERIES_DATE),
    },
    "instances": {
        "00080056": AVAILABILITY,
        **dict.fromkeys(("00080061", "00201206", "00201208", "00201209"), COMPUTED_UPPER),
        **dict.fromkeys(("00080021", "00080031"), SERIES_DATE),
        "00280008": FRAMES,
    },
    "study-instances": {
        "00080056": AVAILABILITY,
        "00201209": COMPUTED_UPPER,
        **dict.fromkeys(("00080021", "00080031"), SERIES_DATE),
        "00280008": FRAMES,
    },
    "series-instances": {"00080056": AVAILABILITY, "00280008": FRAMES},
}
ONLY_ORTHANC: dict[str, dict[str, str]] = {route: {"00080005": CHARSET} for route in ONLY_OURS}
ONLY_ORTHANC["study-series"].update(dict.fromkeys(STUDY_MODULE, SCOPED_UPPER))
ONLY_ORTHANC["study-instances"].update(dict.fromkeys(STUDY_MODULE, SCOPED_UPPER))
ONLY_ORTHANC["series-instances"].update(dict.fromkeys(STUDY_MODULE | SERIES_MODULE, SCOPED_UPPER))
VALUES_DIFFER = {"00080005": CHARSET}

# The attributes PS3.18 Tables 10.6.3-3/4/5 require (those our objects have), by level.
REQUIRED_STUDY = {
    "00080020", "00080030", "00080050", "00080056", "00080061", "00080090", "00081190",
    "00100010", "00100020", "00100030", "00100040", "0020000D", "00201206", "00201208",
}  # fmt: skip
REQUIRED_SERIES = {"00080056", "00080060", "0008103E", "00081190", "0020000E", "00200011",
                   "00201209"}  # fmt: skip
REQUIRED_INSTANCE = {
    "00080016", "00080018", "00080056", "00081190", "00200013", "00280008", "00280010",
    "00280011", "00280100",
}  # fmt: skip
# Searches across studies include the study level; across series, the series level.
REQUIRED = {
    "studies": REQUIRED_STUDY,
    "series": REQUIRED_STUDY | REQUIRED_SERIES,
    "study-series": REQUIRED_SERIES,
    "instances": REQUIRED_STUDY | REQUIRED_SERIES | REQUIRED_INSTANCE,
    "study-instances": REQUIRED_SERIES | REQUIRED_INSTANCE,
    "series-instances": REQUIRED_INSTANCE,
}
KEY_TAG = {"study": "0020000D", "series": "0020000E", "instance": "00080018"}


# -- the query table -------------------------------------------------------------


@dataclass(frozen=True)
class OrthancDiffers:
    """How Orthanc's answer to a query is expected to differ, and why."""

    reason: str
    path: str | None = None  # what Orthanc is asked instead
    expect: str | None = None  # what Orthanc finds instead
    lacks: frozenset[str] = frozenset()  # tags we return and Orthanc does not


@dataclass(frozen=True)
class Query:
    id: str
    path: str  # {key} stands for that key's UID; sent as written but for spaces
    expect: str  # the keys of what matches (fnmatch patterns, space-separated)
    orthanc: OrthancDiffers | None = None
    ignored: str = ""  # a key we do not match on: ours must say so in a Warning


ALL = "*"
Q = Query
QUERIES = [
    # /studies
    Q("studies-all", "/studies", ALL),
    Q("studies-uid", "/studies?StudyInstanceUID={smith}", "smith"),
    Q("studies-uid-list", "/studies?StudyInstanceUID={smith},{lee},{muller}", "smith lee muller"),
    Q("studies-uid-list-by-tag", "/studies?0020000D={obrien},{vanderberg}", "obrien vanderberg"),
    Q("patient-id-exact", "/studies?PatientID=PAT-1002", "smith_jane"),
    Q("patient-id-star", "/studies?PatientID=PAT-1*", "smith smith_jane smith_lower"),
    Q("patient-id-question", "/studies?PatientID=PAT-100?", "smith smith_jane smith_lower"),
    Q("patient-id-two-questions", "/studies?PatientID=PAT-?00?",
      "smith smith_jane smith_lower obrien"),
    Q(
        "patient-id-with-space", "/studies?PatientID=NL 55501", "vanderberg",
        OrthancDiffers(NO_PERCENT_DECODING, path="/studies?PatientID=NL?55501"),
    ),
    Q(
        "patient-id-other-case", "/studies?PatientID=pat-1001", "",
        OrthancDiffers(ORTHANC_FOLDS_CASE, expect="smith"),
    ),
    Q("patient-name-caret-star", "/studies?PatientName=SMITH^J*", "smith smith_jane smith_lower"),
    Q("patient-name-lower-star", "/studies?PatientName=smith*", "smith smith_jane smith_lower"),
    Q("patient-name-exact", "/studies?PatientName=Lee^Min", "lee"),
    Q("patient-name-exact-other-case", "/studies?PatientName=LEE^MIN", "lee"),
    Q("patient-name-question", "/studies?PatientName=?ee^M?n", "lee"),
    Q("patient-name-three-components", "/studies?PatientName=O'Brien^Mary^*", "obrien"),
    Q(
        "patient-name-with-spaces", "/studies?PatientName=van der Berg^Hans", "vanderberg",
        OrthancDiffers(NO_PERCENT_DECODING, path="/studies?PatientName=van?der?Berg^Hans"),
    ),
    Q(
        "patient-name-star-space", "/studies?PatientName=*John Paul", "smith",
        OrthancDiffers(NO_PERCENT_DECODING, path="/studies?PatientName=*John?Paul"),
    ),
    Q("patient-name-non-ascii-study", "/studies?PatientName=M*", "muller"),
    Q("patient-birth-date", "/studies?PatientBirthDate=19711102", "smith"),
    Q("patient-sex", "/studies?PatientSex=M", "smith vanderberg"),
    Q("accession-exact-slash", "/studies?AccessionNumber=X-77/2", "obrien"),
    Q("accession-star", "/studies?AccessionNumber=ACC100*", "smith smith_jane smith_lower"),
    Q(
        "accession-other-case", "/studies?AccessionNumber=acc1001", "",
        OrthancDiffers(ORTHANC_FOLDS_CASE, expect="smith"),
    ),
    Q("study-date-single", "/studies?StudyDate=20240229", "muller"),
    Q("study-date-range", "/studies?StudyDate=20240101-20240229", "smith smith_jane muller"),
    Q("study-date-open-end", "/studies?StudyDate=20240301-", "obrien vanderberg smith_lower"),
    Q("study-date-open-start", "/studies?StudyDate=-20240131", "lee smith"),
    Q("study-date-across-years", "/studies?StudyDate=20231201-20240131", "lee smith"),
    Q("study-time-single", "/studies?StudyTime=083000", "smith"),
    Q("study-time-range", "/studies?StudyTime=100000-120000", "smith_jane vanderberg"),
    Q("study-time-open-start", "/studies?StudyTime=-080000", "lee smith_lower"),
    Q("study-time-open-end", "/studies?StudyTime=150000-", "obrien muller"),
    Q("study-id-exact", "/studies?StudyID=1001", "smith"),
    Q("study-id-star", "/studies?StudyID=100*", "smith smith_jane"),
    Q("modalities-one", "/studies?ModalitiesInStudy=CR", "obrien vanderberg"),
    Q("modalities-other-case", "/studies?ModalitiesInStudy=cr", "",
      OrthancDiffers(ORTHANC_FOLDS_CASE, expect="obrien vanderberg")),
    Q("modalities-comma-list", "/studies?ModalitiesInStudy=CR,MR",
      "obrien vanderberg smith_jane lee"),
    Q(
        "modalities-backslash-list", "/studies?ModalitiesInStudy=CR\\MR",
        "obrien vanderberg smith_jane lee",
        OrthancDiffers(NO_BACKSLASH_LISTS, expect=""),
    ),
    Q("study-description-lower-star", "/studies?StudyDescription=ct*", "smith smith_lower muller"),
    Q("study-description-other-case", "/studies?StudyDescription=mr knee", "lee",
      OrthancDiffers(NO_PERCENT_DECODING, path="/studies?StudyDescription=mr?knee")),
    Q("referring-physician-star", "/studies?ReferringPhysicianName=referrer*",
      "smith smith_jane obrien vanderberg smith_lower muller"),
    Q("name-and-date", "/studies?PatientName=SMITH*&StudyDate=20240201-", "smith_jane smith_lower"),
    Q("modality-and-date", "/studies?ModalitiesInStudy=CT&StudyDate=20240101-20240331",
      "smith muller"),
    Q("includefield-keyword", "/studies?includefield=StudyDescription", ALL),
    Q("includefield-tags", "/studies?PatientID=PAT-1*&includefield=00081030,00081032",
      "smith smith_jane smith_lower",
      OrthancDiffers(NO_INCLUDED_SEQUENCES, lacks=frozenset({"00081032"}))),
    Q("includefield-all-studies", "/studies?StudyInstanceUID={smith_jane}&includefield=all",
      "smith_jane"),
    Q("studies-limit", "/studies?limit=3", "3 of *"),
    # /series and /studies/{study}/series
    Q("series-all", "/series", ALL),
    Q("study-series", "/studies/{smith_jane}/series", "smith_jane/*"),
    Q("series-modality", "/series?Modality=CR", "obrien/* vanderberg/2"),
    Q("series-modality-other-case", "/series?Modality=cr", "",
      OrthancDiffers(ORTHANC_FOLDS_CASE, expect="obrien/* vanderberg/2")),
    Q("series-body-part", "/series?BodyPartExamined=CHEST", "obrien/* smith_lower/1"),
    Q("study-series-other-patient", "/studies/{smith}/series?PatientID=XYZ9", ""),
    Q("study-series-same-patient", "/studies/{smith}/series?PatientID=PAT-1001", "smith/*"),
    Q("study-series-other-date", "/studies/{smith}/series?StudyDate=20240220", ""),
    Q("study-series-modality", "/studies/{vanderberg}/series?Modality=CT", "vanderberg/1"),
    Q("series-number", "/series?SeriesNumber=2", "smith/2 smith_jane/2 obrien/2 vanderberg/2"),
    Q("study-series-number", "/studies/{smith_jane}/series?SeriesNumber=3", "smith_jane/3"),
    Q("series-uid-list", "/series?SeriesInstanceUID={smith/1},{lee/5}", "smith/1 lee/5"),
    Q("series-by-study-uid", "/series?StudyInstanceUID={obrien}", "obrien/*",
      OrthancDiffers(UID_PARAMETER_SCOPES, lacks=frozenset(STUDY_MODULE - {"0020000D"}))),
    Q("series-by-patient-id", "/series?PatientID=PAT-1002", "smith_jane/*"),
    Q("series-by-study-date", "/series?StudyDate=20240331-", "obrien/* vanderberg/* smith_lower/*"),
    Q("series-description-question", "/series?SeriesDescription=T?*", "smith_jane/1 smith_jane/2"),
    Q("series-includefield", "/series?Modality=MR&includefield=BodyPartExamined,00081030",
      "smith_jane/* lee/5"),
    Q("study-series-includefield-all", "/studies/{lee}/series?includefield=all", "lee/5"),
    # /instances, /studies/{study}/instances, /studies/{study}/series/{series}/instances
    Q("instances-all", "/instances", ALL),
    Q("series-instances", "/studies/{smith}/series/{smith/1}/instances", "smith/1/*"),
    Q("study-instances", "/studies/{vanderberg}/instances", "vanderberg/*"),
    Q("series-instance-number", "/studies/{smith}/series/{smith/1}/instances?InstanceNumber=2",
      "smith/1/2"),
    Q("series-instances-other-modality",
      "/studies/{smith}/series/{smith/1}/instances?Modality=MR", ""),
    Q("series-instances-same-modality",
      "/studies/{smith}/series/{smith/1}/instances?Modality=CT", "smith/1/*"),
    Q("series-instances-other-patient",
      "/studies/{smith}/series/{smith/1}/instances?PatientID=XYZ9", ""),
    Q("study-instances-other-patient", "/studies/{smith}/instances?PatientID=XYZ9", ""),
    Q("study-instances-modality", "/studies/{vanderberg}/instances?Modality=CR", "vanderberg/2/*"),
    Q("instance-number", "/instances?InstanceNumber=3", "smith/1/3 lee/5/3"),
    Q("instance-sop-uid", "/instances?SOPInstanceUID={lee/5/2}", "lee/5/2"),
    Q("study-instances-sop-list",
      "/studies/{smith}/instances?SOPInstanceUID={smith/1/1},{smith/2/2}", "smith/1/1 smith/2/2"),
    Q("instances-by-patient-name", "/instances?PatientName=Lee*", "lee/*/*"),
    Q("instances-modality", "/instances?Modality=CR", "obrien/*/* vanderberg/2/*"),
    Q("instances-patient-and-series-number", "/instances?PatientID=PAT-1002&SeriesNumber=2",
      "smith_jane/2/1"),
    Q("instances-sop-class", "/instances?SOPClassUID=1.2.840.10008.5.1.4.1.1.1",
      "obrien/*/* vanderberg/2/*"),
    Q("series-instances-includefield",
      "/studies/{smith}/series/{smith/1}/instances?includefield=00200032&includefield=WindowCenter",
      "smith/1/*"),
    Q("series-instances-includefield-all",
      "/studies/{smith_jane}/series/{smith_jane/2}/instances?includefield=all", "smith_jane/2/*"),
    Q("instances-limit", "/instances?limit=5", "5 of *"),
]  # fmt: skip

# Pages of each route: (path, limit).
PAGED = [
    ("/studies", 2),
    ("/series", 5),
    ("/instances", 4),
    ("/studies/{smith_jane}/series", 2),
    ("/studies/{smith}/instances", 2),
]


def level_of(path: str) -> str:
    route = urlsplit(path).path
    return (
        "instance"
        if route.endswith("/instances")
        else ("series" if route.endswith("/series") else "study")
    )


def route_of(path: str) -> str:
    route = urlsplit(path).path
    if route.endswith("/instances"):
        if "/series/" in route:
            return "series-instances"
        return "study-instances" if route.startswith("/studies/") else "instances"
    if route.endswith("/series"):
        return "study-series" if route.startswith("/studies/") else "series"
    return "studies"


def keys_at(level: str) -> list[str]:
    return {"study": [s.key for s in STUDIES], "series": SERIES_KEYS, "instance": INSTANCE_KEYS}[
        level
    ]


def expected(spec: str, level: str) -> set[str]:
    every = keys_at(level)
    return {k for pattern in spec.split() for k in every if fnmatch.fnmatchcase(k, pattern)}


def wire(path: str) -> str:
    """The request target as sent to both: the UIDs filled in, spaces and anything
    outside ASCII percent-encoded, everything else as written (see NO_PERCENT_DECODING)."""
    filled = path.format(**UIDS)
    return quote(filled, safe="".join(chr(c) for c in range(33, 127) if chr(c) != "%"))


# -- fetching, once ----------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body.strip() else []


@dataclass
class Peer:
    """One DICOMweb server, asked over one keep-alive connection."""

    base: str  # http://host:port/root
    headers: dict[str, str]
    answers: dict[tuple[str, str], Answer] = field(default_factory=dict)

    def fetch(self, path: str, accept: str = JSON) -> Answer:
        parts = urlsplit(self.base)
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
        try:
            connection.request(
                "GET", parts.path + wire(path), headers={"Accept": accept, **self.headers}
            )
            response = connection.getresponse()
            answer = Answer(
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                response.read(),
            )
        finally:
            connection.close()
        self.answers[(path, accept)] = answer
        return answer

    def get(self, path: str, accept: str = JSON) -> Answer:
        try:
            return self.answers[(path, accept)]
        except KeyError:
            raise AssertionError(
                f"{path} ({accept}) was not fetched by the peers fixture"
            ) from None


@dataclass
class Peers:
    ours: Peer
    orthanc: Peer
    files: dict[str, Path]  # by instance key
    file_tags: set[str]  # every top-level tag the objects have


def _fetch_everything(ours: Peer, orthanc: Peer) -> None:
    for q in QUERIES:
        ours.fetch(q.path)
        orthanc.fetch(q.orthanc.path if q.orthanc and q.orthanc.path else q.path)
    for path, limit in PAGED:
        for peer in (ours, orthanc):
            peer.fetch(path)
            for offset in range(0, 100, limit):
                page = peer.fetch(_page(path, limit, offset))
                if page.status != 200 or len(page.json()) < limit:
                    break
    for key in SERIES_KEYS:
        for peer in (ours, orthanc):
            peer.fetch(_series_path(key) + "/metadata")
    for key in RETRIEVED:
        for peer in (ours, orthanc):
            peer.fetch(_instance_path(key), INSTANCE_AS_STORED)
            peer.fetch(_instance_path(key) + "/frames/" + _frames_of(key), FRAMES_AS_STORED)


def _page(path: str, limit: int, offset: int) -> str:
    return f"{path}{'&' if '?' in path else '?'}limit={limit}&offset={offset}"


def _series_path(key: str) -> str:
    study = key.split("/")[0]
    return f"/studies/{{{study}}}/series/{{{key}}}"


def _instance_path(key: str) -> str:
    series = key.rsplit("/", 1)[0]
    return f"{_series_path(series)}/instances/{{{key}}}"


def _frames_of(key: str) -> str:
    study, series, _ = key.split("/")
    frames = next(se.frames for s in STUDIES if s.key == study for se in s.series
                  if se.number == int(series))  # fmt: skip
    return ",".join(str(n) for n in range(1, frames + 1))


# One instance of each kind: CT, multi-frame MR, CR, UTF-8 names, empty values.
RETRIEVED = ["smith/1/1", "smith_jane/2/1", "obrien/1/1", "muller/1/1", "lee/5/2"]


@pytest.fixture(scope="module")
def peers(
    request: pytest.FixtureRequest,
    django_db_setup: Any,
    django_db_blocker: Any,
    orthanc: Orthanc,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Peers]:
    """The data set filed in our database (for the live server) and stored in Orthanc,
    and every answer the tests compare, fetched from both.

    The live server is asked for here, not as an argument: pytest-django makes every
    test that depends on ``live_server`` transactional, flushing the database after
    each (seconds on SQLite); this way only the first test of the module is, and its
    flush removes the data set once all has been fetched."""
    live_server = request.getfixturevalue("live_server")
    root = tmp_path_factory.mktemp("conformance")
    storage = FileSystemStorage(root / "store")
    files: dict[str, Path] = {}
    file_tags: set[str] = set()
    eager = celery_app.conf.task_always_eager
    # Module-scoped: the function-scoped settings and Celery fixtures are not yet set up.
    celery_app.conf.task_always_eager = True
    try:
        with (
            override_settings(DICOM_STORAGE_ROOT=str(root / "store")),
            django_db_blocker.unblock(),
        ):
            group = f.ReadingGroupFactory(name="Conformance")
            facility = f.FacilityFactory(
                name="Conformance", reading_group=group, ae_titles=["CONFORM"]
            )
            admin = f.UserFactory(username="conformance_admin")
            reading_group_admin_grant(actor=None, user=admin, group=group)
            _, token_key = ApiToken.objects.create(user=admin)
            for study in STUDIES:
                for series in study.series:
                    for number in range(1, series.instances + 1):
                        ds = build_instance(study, series, number)
                        key = f"{study.key}/{series.number}/{number}"
                        path = root / "files" / f"{key.replace('/', '-')}.dcm"
                        path.parent.mkdir(exist_ok=True)
                        ds.save_as(path, enforce_file_format=True)
                        result = receive(storage, path, facility, aet="CONFORM")
                        assert result.outcome == "stored", result
                        files[key] = path
                        file_tags |= {f"{e.tag:08X}" for e in ds if e.tag != 0x7FE00010}
            study_ids = list(
                Study.objects.filter(
                    study_instance_uid__in=[UIDS[s.key] for s in STUDIES]
                ).values_list("pk", flat=True)
            )
            instances_dicom_json_build(storage=storage, study_ids=study_ids)
            orthanc.load(files.values())
            ours = Peer(live_server.url + "/dicomweb", {"Authorization": f"Token {token_key}"})
            theirs = Peer(orthanc.dicomweb, {})
            _fetch_everything(ours, theirs)
            yield Peers(ours, theirs, files, file_tags)
            # The first test's flush has removed the data set; if no test was
            # transactional (a later pytest-django), remove it here.
            if Study.objects.filter(pk__in=study_ids).exists():
                call_command("flush", interactive=False, verbosity=0)
    finally:
        celery_app.conf.task_always_eager = eager


# -- comparing ----------------------------------------------------------------------


def _normal(value: Any, base: str) -> Any:
    """A value with the server's own base URL replaced, so Retrieve URLs compare."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return json.loads(text.replace(base, "{base}"))


def _by_key(answer: list[dict[str, Any]], level: str) -> dict[str, dict[str, Any]]:
    out = {}
    for item in answer:
        value = item[KEY_TAG[level]]["Value"][0]
        out[KEY_OF.get(value, value)] = item
    assert len(out) == len(answer), "an entity answered twice"
    return out


def _included(path: str) -> tuple[set[str], bool]:
    """The tags a query asks for with includefield, and whether it asks for all."""
    tags: set[str] = set()
    everything = False
    for name, value in parse_qsl(urlsplit(path).query):
        if name != "includefield":
            continue
        for item in value.split(","):
            if item == "all":
                everything = True
            elif re.fullmatch(r"[0-9A-F]{8}", item):
                tags.add(item)
            else:
                tags.add(f"{tag_for_keyword(item):08X}")
    return tags, everything


def _search_differences(q: Query, peers: Peers) -> list[str]:
    level, route = level_of(q.path), route_of(q.path)
    ours_answer = peers.ours.get(q.path)
    theirs_answer = peers.orthanc.get(q.orthanc.path if q.orthanc and q.orthanc.path else q.path)
    assert ours_answer.status == 200, ours_answer.body[:500]
    assert theirs_answer.status == 200, theirs_answer.body[:500]
    ours = _by_key(ours_answer.json(), level)
    theirs = _by_key(theirs_answer.json(), level)

    problems = []
    warning = ours_answer.headers.get("warning", "")
    if q.ignored and f"ignored: {q.ignored}" not in warning:
        problems.append(f"ours does not warn that {q.ignored} was ignored: {warning!r}")
    if not q.ignored and "ignored" in warning:
        problems.append(f"ours ignored a key: {warning!r}")
    count = re.fullmatch(r"(\d+) of (.*)", q.expect)
    if count:  # a limit: so many of those, whichever
        wanted = int(count.group(1))
        pool = expected(count.group(2), level)
        for name, found in (("ours", ours), ("Orthanc", theirs)):
            if len(found) != wanted or not set(found) <= pool:
                problems.append(f"{name}: {sorted(found)} is not {wanted} of {sorted(pool)}")
    else:
        want = expected(q.expect, level)
        if set(ours) != want:
            problems.append(f"ours found {sorted(ours)}, expected {sorted(want)}")
        want_theirs = (
            expected(q.orthanc.expect, level)
            if q.orthanc and q.orthanc.expect is not None
            else want
        )
        if set(theirs) != want_theirs:
            problems.append(f"Orthanc found {sorted(theirs)}, expected {sorted(want_theirs)}")

    included, everything = _included(q.path)
    only_ours_ok = dict(ONLY_OURS[route])
    if everything:
        only_ours_ok.update(dict.fromkeys(peers.file_tags, INCLUDE_ALL))
    lacks = q.orthanc.lacks if q.orthanc else frozenset()
    only_ours_ok.update(dict.fromkeys(lacks, q.orthanc.reason if q.orthanc else ""))
    only_theirs_ok = ONLY_ORTHANC[route]
    for key in sorted(set(ours) & set(theirs)):
        a = _normal(ours[key], peers.ours.base)
        b = _normal(theirs[key], peers.orthanc.base)
        for tag in sorted(REQUIRED[route] - set(a)):
            problems.append(f"{key}: ours lacks the required {tag}")
        for tag in sorted(included - set(a)):
            problems.append(f"{key}: ours lacks the included {tag}")
        for tag in sorted(included - set(b) - lacks):
            problems.append(f"{key}: Orthanc lacks the included {tag}")
        for tag in sorted(set(a) - set(b) - set(only_ours_ok)):
            problems.append(f"{key}: only ours returns {tag} {a[tag]}")
        for tag in sorted(set(b) - set(a) - set(only_theirs_ok)):
            problems.append(f"{key}: only Orthanc returns {tag} {b[tag]}")
        for tag in sorted(set(a) & set(b)):
            if a[tag] != b[tag] and tag not in VALUES_DIFFER:
                problems.append(f"{key}: {tag} ours {a[tag]} != Orthanc {b[tag]}")
    return problems


@pytest.mark.parametrize("q", QUERIES, ids=[q.id for q in QUERIES])
def test_qido_rs_answers_as_orthanc_does(peers: Peers, q: Query) -> None:
    problems = _search_differences(q, peers)
    assert not problems, "\n".join(problems)


def test_the_query_table_is_large_and_covers_every_search_route() -> None:
    assert len(QUERIES) >= 30
    assert {route_of(q.path) for q in QUERIES} == set(ONLY_OURS)


@pytest.mark.parametrize(("path", "limit"), PAGED, ids=[f"{p} by {n}" for p, n in PAGED])
def test_pages_are_disjoint_and_cover_the_whole(peers: Peers, path: str, limit: int) -> None:
    level = level_of(path)
    found = {}
    for name, peer in (("ours", peers.ours), ("Orthanc", peers.orthanc)):
        whole = set(_by_key(peer.get(path).json(), level))
        seen: set[str] = set()
        for offset in range(0, 100, limit):
            answer = peer.get(_page(path, limit, offset))
            page = set(_by_key(answer.json(), level))
            assert len(page) <= limit, (name, offset)
            assert not page & seen, f"{name}: offset {offset} repeats {sorted(page & seen)}"
            seen |= page
            if name == "ours":
                # We say when there is more (a Warning), so a client knows to go on.
                more = "more results" in answer.headers.get("warning", "")
                assert more == (offset + limit < len(whole)), (offset, answer.headers)
            if len(page) < limit:
                break
        assert seen == whole, f"{name}: the pages miss {sorted(whole - seen)}"
        found[name] = whole
    assert found["ours"] == found["Orthanc"]


# -- WADO-RS ----------------------------------------------------------------------


def _json_differences(
    a: dict[str, Any], b: dict[str, Any], where: str, *, top: bool = True
) -> list[str]:
    """Attribute by attribute: same tags, VRs and values; bulk data only as 'both
    give a BulkDataURI'."""
    problems = []
    for tag in sorted(set(a) | set(b)):
        if tag not in b:
            if not (top and tag in METADATA_ONLY_OURS):
                problems.append(f"{where}{tag}: only ours {a[tag]}")
            continue
        if tag not in a:
            problems.append(f"{where}{tag}: only Orthanc {b[tag]}")
            continue
        x, y = a[tag], b[tag]
        if x.get("vr") != y.get("vr"):
            problems.append(f"{where}{tag}: VR {x.get('vr')} != {y.get('vr')}")
        if "BulkDataURI" in x or "BulkDataURI" in y:
            if not ("BulkDataURI" in x and "BulkDataURI" in y):
                problems.append(f"{where}{tag}: a BulkDataURI on one side only: {x} {y}")
        elif x.get("vr") == "SQ":
            items_x, items_y = x.get("Value", []), y.get("Value", [])
            if len(items_x) != len(items_y):
                problems.append(f"{where}{tag}: {len(items_x)} items != {len(items_y)}")
            for i, (ix, iy) in enumerate(zip(items_x, items_y, strict=False)):
                problems += _json_differences(ix, iy, f"{where}{tag}/{i}/", top=False)
        elif {k: v for k, v in x.items() if k != "vr"} != {k: v for k, v in y.items() if k != "vr"}:
            problems.append(f"{where}{tag}: ours {x} != Orthanc {y}")
    return problems


@pytest.mark.parametrize("series", SERIES_KEYS)
def test_series_metadata_is_orthancs_attribute_by_attribute(peers: Peers, series: str) -> None:
    path = _series_path(series) + "/metadata"
    ours, theirs = peers.ours.get(path), peers.orthanc.get(path)
    assert ours.status == theirs.status == 200, (ours.body[:300], theirs.body[:300])
    a, b = _by_key(ours.json(), "instance"), _by_key(theirs.json(), "instance")
    assert set(a) == set(b) == expected(f"{series}/*", "instance")
    problems = []
    for key in sorted(a):
        problems += _json_differences(a[key], b[key], f"{key}: ")
        assert a[key]["00020010"]["Value"] == [pydicom.uid.ExplicitVRLittleEndian]
    assert not problems, "\n".join(problems)


def _parts(answer: Answer) -> list[tuple[str, bytes]]:
    head = f"Content-Type: {answer.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + answer.body)
    return [(p.get_content_type(), bytes(p.get_payload(decode=True))) for p in message.iter_parts()]


def _data_set_bytes(blob: bytes) -> bytes:
    """The encoded data set of a Part 10 file: what follows its file meta."""
    ds = pydicom.dcmread(io.BytesIO(blob))
    start = 128 + 4 + 12 + int(ds.file_meta.FileMetaInformationGroupLength)
    assert blob[128:132] == b"DICM"
    return blob[start:]


@pytest.mark.parametrize("key", RETRIEVED)
def test_a_retrieved_instance_is_orthancs_byte_for_byte(peers: Peers, key: str) -> None:
    sent = peers.files[key].read_bytes()
    blobs = {}
    for name, peer in (("ours", peers.ours), ("Orthanc", peers.orthanc)):
        answer = peer.get(_instance_path(key), INSTANCE_AS_STORED)
        assert answer.status == 200, (name, answer.body[:300])
        parts = _parts(answer)
        assert [t for t, _ in parts] == ["application/dicom"], name
        blobs[name] = parts[0][1]
    assert _data_set_bytes(blobs["ours"]) == _data_set_bytes(blobs["Orthanc"])
    assert _data_set_bytes(blobs["ours"]) == _data_set_bytes(sent)
    assert pydicom.dcmread(io.BytesIO(blobs["ours"])) == pydicom.dcmread(io.BytesIO(sent))


@pytest.mark.parametrize("key", RETRIEVED)
def test_frames_are_orthancs_byte_for_byte(peers: Peers, key: str) -> None:
    ds = pydicom.dcmread(peers.files[key])
    frames = int(ds.get("NumberOfFrames") or 1)
    size = ds.Rows * ds.Columns * ds.BitsAllocated // 8
    want = [ds.PixelData[i * size : (i + 1) * size] for i in range(frames)]
    for name, peer in (("ours", peers.ours), ("Orthanc", peers.orthanc)):
        answer = peer.get(_instance_path(key) + "/frames/" + _frames_of(key), FRAMES_AS_STORED)
        assert answer.status == 200, (name, answer.body[:300])
        parts = _parts(answer)
        assert [body for _, body in parts] == want, name
        assert {t for t, _ in parts} == {"application/octet-stream"}, name
