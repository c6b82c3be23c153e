"""An outside DICOMweb client (dicomweb-client, as research tools and pipelines use
it) against the live server with token authentication: searches, retrieval of
studies, series, instances, metadata, frames and rendered images, and STOW-RS by a
facility's staff account."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from accounts.models import ApiToken
from ingest.models import QuarantinedObject
from ingest.synthetic import StudySpec, make_instance
from studies.models import Instance, Series, Study
from tests.dicomweb.conftest import StoredStudy, store_study

pytestmark = pytest.mark.django_db(transaction=True)


class Captured:
    """The bodies of the client's responses, as they came over the wire."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, bytes]] = []  # content type, content

    def __call__(self, response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        # The content is read here and the connection handed back to the session's
        # pool, even if the response outlives the test (in an HTTPError), so that
        # closing the session closes it.
        self.bodies.append((response.headers.get("Content-Type", ""), response.content))
        response.close()
        return response

    def last_parts(self) -> list[tuple[str, bytes]]:
        """The (content type, content) of each part of the last multipart response."""
        content_type, content = self.bodies[-1]
        head = f"Content-Type: {content_type}\r\n\r\n".encode()
        message = BytesParser(policy=HTTP).parsebytes(head + content)
        return [
            (p.get_content_type(), bytes(p.get_payload(decode=True))) for p in message.iter_parts()
        ]


@pytest.fixture
def client_for(live_server: Any) -> Iterator[Callable[[Any], tuple[DICOMwebClient, Captured]]]:
    """A dicomweb-client signed in as ``user`` with an API token, and what it received."""
    sessions: list[requests.Session] = []

    def make(user: Any) -> tuple[DICOMwebClient, Captured]:
        _, key = ApiToken.objects.create(user=user)
        captured = Captured()
        session = requests.Session()
        sessions.append(session)
        client = DICOMwebClient(
            url=f"{live_server.url}/dicomweb",
            session=session,
            headers={"Authorization": f"Token {key}"},
            callback=captured,
        )
        return client, captured

    yield make
    # The live server's thread for a kept-alive connection holds a database
    # connection until the client closes it: PostgreSQL would not drop the test
    # database under it.
    for session in sessions:
        session.close()


@pytest.fixture
def stored(dicom_store: Any, facility_a: Any, tmp_path: Path) -> StoredStudy:
    spec = StudySpec(patient_id="CLIENT-1", patient_name="Client^Test", accession="CL1")
    return store_study(
        dicom_store, facility_a, tmp_path / "in", spec=spec, series=(("CT", 3), ("MR", 2))
    )


def data_set_bytes(blob: bytes) -> bytes:
    """The encoded data set of a Part 10 file: what follows its file meta."""
    assert blob[128:132] == b"DICM"
    ds = pydicom.dcmread(io.BytesIO(blob), stop_before_pixels=True)
    return blob[128 + 4 + 12 + int(ds.file_meta.FileMetaInformationGroupLength) :]


def sop_of(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def uids(results: list[dict[str, Any]], tag: str) -> set[str]:
    return {item[tag]["Value"][0] for item in results}


def test_searches(stored: StoredStudy, group_admin: Any, client_for: Any) -> None:
    client, _ = client_for(group_admin)
    study_uid = stored.study.study_instance_uid
    found = client.search_for_studies(search_filters={"PatientID": "CLIENT-1"})
    assert uids(found, "0020000D") == {study_uid}
    assert found[0]["00201208"]["Value"] == [5]
    assert found[0]["00080061"]["Value"] == ["CT", "MR"]
    described = client.search_for_studies(fields=["StudyDescription"])
    assert described[0]["00081030"]["Value"] == [stored.study.study_description]
    assert client.search_for_studies(search_filters={"PatientName": "client^*"})
    assert client.search_for_studies(search_filters={"PatientID": "OTHER"}) == []

    series = client.search_for_series(study_instance_uid=study_uid)
    assert uids(series, "0020000E") == set(stored.series_uids)
    ct = client.search_for_series(search_filters={"Modality": "CT"})
    assert uids(ct, "0020000E") == {stored.series_uids[0]}

    first_series = client.search_for_instances(
        study_instance_uid=study_uid, series_instance_uid=stored.series_uids[0]
    )
    assert uids(first_series, "00080018") == {sop_of(p) for p in stored.files[:3]}
    # Paged: the client asks again with offset until a page comes back short.
    paged = client.search_for_instances(study_instance_uid=study_uid, limit=2, get_remaining=True)
    assert uids(paged, "00080018") == {sop_of(p) for p in stored.files}
    assert len(paged) == 5
    page = client.search_for_instances(limit=2, offset=4)
    assert len(page) == 1


def test_retrieved_studies_series_and_instances_are_the_files_sent(
    stored: StoredStudy, group_admin: Any, client_for: Any
) -> None:
    client, captured = client_for(group_admin)
    study_uid = stored.study.study_instance_uid
    sent = {sop_of(p): p.read_bytes() for p in stored.files}

    def check(datasets: list[Dataset], expected_sops: set[str]) -> None:
        assert {str(ds.SOPInstanceUID) for ds in datasets} == expected_sops
        for ds in datasets:
            original = pydicom.dcmread(io.BytesIO(sent[str(ds.SOPInstanceUID)]))
            assert ds == original
        # Byte for byte, as received: each part is the stored file.
        parts = captured.last_parts()
        assert {t for t, _ in parts} == {"application/dicom"}
        for _, blob in parts:
            sop = str(pydicom.dcmread(io.BytesIO(blob), stop_before_pixels=True).SOPInstanceUID)
            assert data_set_bytes(blob) == data_set_bytes(sent[sop])

    check(client.retrieve_study(study_uid), set(sent))
    series_uid = stored.series_uids[1]
    check(client.retrieve_series(study_uid, series_uid), {sop_of(p) for p in stored.files[3:]})
    sop = sop_of(stored.files[3])
    check([client.retrieve_instance(study_uid, series_uid, sop)], {sop})


def test_series_metadata_is_the_data_set_without_its_pixels(
    stored: StoredStudy, group_admin: Any, client_for: Any, live_server: Any
) -> None:
    client, _ = client_for(group_admin)
    study_uid, series_uid = stored.study.study_instance_uid, stored.series_uids[0]
    metadata = client.retrieve_series_metadata(study_uid, series_uid)
    assert len(metadata) == 3
    for item in metadata:
        sop = item["00080018"]["Value"][0]
        # Absolute, from the request's Host: dicomweb-client sends the host without
        # its port (as Orthanc's URIs then show too), so only the path is compared.
        uri = urlsplit(item["7FE00010"]["BulkDataURI"])
        assert uri.hostname == urlsplit(live_server.url).hostname
        instance = f"/dicomweb/studies/{study_uid}/series/{series_uid}/instances/{sop}"
        assert uri.path == f"{instance}/bulk/7FE00010"
        item.pop("00020010", None)  # the stored transfer syntax, kept for clients
        ds = Dataset.from_json(item, bulk_data_uri_handler=lambda *_: b"")
        original = pydicom.dcmread(
            next(p for p in stored.files if sop_of(p) == str(ds.SOPInstanceUID)),
            stop_before_pixels=True,
        )
        assert {e.tag for e in ds if e.tag != 0x7FE00010} == {e.tag for e in original}
        for element in original:
            assert ds[element.tag].value == element.value, element.keyword


@pytest.mark.parametrize(
    "media_types",
    [None, (("application/octet-stream", "*"),)],
    ids=["default", "as-stored"],
)
def test_frames_are_the_files_pixel_data(
    stored: StoredStudy, group_admin: Any, client_for: Any, media_types: Any
) -> None:
    client, _ = client_for(group_admin)
    path = stored.files[1]
    ds = pydicom.dcmread(path)
    frames = client.retrieve_instance_frames(
        stored.study.study_instance_uid,
        stored.series_uids[0],
        str(ds.SOPInstanceUID),
        frame_numbers=[1],
        media_types=media_types,
    )
    assert frames == [ds.PixelData]


def test_rendered_instance_is_a_jpeg(
    stored: StoredStudy, group_admin: Any, client_for: Any
) -> None:
    client, _ = client_for(group_admin)
    body = client.retrieve_instance_rendered(
        stored.study.study_instance_uid,
        stored.series_uids[0],
        sop_of(stored.files[0]),
        media_types=("image/jpeg",),
    )
    image = Image.open(io.BytesIO(body))
    assert image.format == "JPEG" and image.size == (64, 64)


def _as_read_from_files(datasets: list[Dataset], folder: Path) -> list[Dataset]:
    """The data sets as a pipeline holds them: read from Part 10 files (with their
    preamble, which dicomweb-client writes back as it is)."""
    folder.mkdir(parents=True, exist_ok=True)
    out: list[Dataset] = []
    for ds in datasets:
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        out.append(pydicom.dcmread(path))
    return out


def test_store_instances_by_facility_staff(
    dicom_store: Any, facility_a: Any, staff_a: Any, client_for: Any, tmp_path: Path
) -> None:
    client, _ = client_for(staff_a)
    spec = StudySpec(patient_id="STOW-CLIENT", accession="STOWC")
    series_uid = str(generate_uid())
    made = [
        make_instance(spec, series_uid=series_uid, number=n, rows=16, columns=16) for n in (1, 2, 3)
    ]
    *good, broken = _as_read_from_files(made, tmp_path / "upload")
    # Broken: a data set that names no study, which cannot be filed anywhere.
    del broken.StudyInstanceUID
    answer = client.store_instances([*good, broken])

    stored_sops = {str(item.ReferencedSOPInstanceUID) for item in answer.ReferencedSOPSequence}
    assert stored_sops == {str(ds.SOPInstanceUID) for ds in good}
    [failed] = answer.FailedSOPSequence
    assert failed.ReferencedSOPInstanceUID == broken.SOPInstanceUID
    assert failed.FailureReason != 0
    # Quarantined with its reason, and nothing of it half-stored.
    row = QuarantinedObject.objects.get()
    assert row.facility == facility_a and row.calling_ae == "STOW-RS" and row.reason
    assert dicom_store.exists(row.storage_key)
    assert not Instance.objects.filter(sop_instance_uid=broken.SOPInstanceUID).exists()
    study = Study.objects.get(study_instance_uid=spec.study_uid)
    assert study.facility == facility_a
    assert Series.objects.filter(study=study).count() == 1
    assert Instance.objects.filter(series__study=study).count() == 2
    assert len(list(Path(dicom_store.path("studies")).rglob("*.dcm"))) == 2

    # Then retrievable, as sent.
    for ds in good:
        back = client.retrieve_instance(spec.study_uid, series_uid, str(ds.SOPInstanceUID))
        assert back == ds
    found = client.search_for_instances(study_instance_uid=spec.study_uid)
    assert uids(found, "00080018") == stored_sops


def test_store_instances_made_in_memory(staff_a: Any, client_for: Any) -> None:
    client, _ = client_for(staff_a)
    spec = StudySpec(patient_id="STOW-MEMORY")
    ds = make_instance(spec, series_uid=str(generate_uid()), number=1, rows=16, columns=16)
    try:
        answer = client.store_instances([ds])
    except requests.HTTPError as refused:
        status = refused.response.status_code if refused.response is not None else None
        answer = None
    assert answer is not None, f"answered {status}"
    # A part with a file meta group but no 128-byte preamble (what pydicom, and so
    # dicomweb-client, writes for a data set made in memory) is stored, framed as a
    # DICOM file; its data set is kept as sent.
    assert [str(i.ReferencedSOPInstanceUID) for i in answer.ReferencedSOPSequence] == [
        str(ds.SOPInstanceUID)
    ]
    item = answer.ReferencedSOPSequence[0]
    assert str(item.RetrieveURL).endswith(
        f"/studies/{spec.study_uid}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    )
    back = client.retrieve_instance(
        spec.study_uid, str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)
    )
    assert back.PixelData == ds.PixelData and back.PatientID == "STOW-MEMORY"


def test_a_user_without_a_token_is_refused(live_server: Any, stored: StoredStudy) -> None:
    with requests.Session() as session:
        client = DICOMwebClient(url=f"{live_server.url}/dicomweb", session=session)
        with pytest.raises(requests.HTTPError) as refused:
            client.search_for_studies()
    assert refused.value.response is not None
    assert refused.value.response.status_code == 401
