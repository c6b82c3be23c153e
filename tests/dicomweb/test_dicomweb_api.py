"""DICOMweb as each kind of user reaches it: who sees which study on every route,
what is audited, the standard answers to bad requests, pixels as stored and
decoded, and STOW-RS through the gateway's filing service."""

from __future__ import annotations

import gzip
import io
import json
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

import numpy as np
import pydicom
import pytest
from django.utils import timezone
from PIL import Image
from pydicom.uid import RLELossless, generate_uid

from audit.models import AuditEvent
from ingest.models import QuarantinedObject
from ingest.synthetic import StudySpec, make_instance
from studies.models import Instance, Study
from tests import factories as f
from tests.dicomweb.conftest import StoredStudy, store_study
from worklist.services.offers import offer_open

pytestmark = pytest.mark.django_db(transaction=True)

JSON = "application/dicom+json"
FRAMES_AS_STORED = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'


def body(response: Any) -> bytes:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content)
    return bytes(response.content)


def parts(response: Any) -> list[tuple[str, bytes]]:
    """The (content type, content) of each part of a multipart/related response."""
    head = f"Content-Type: {response['Content-Type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + body(response))
    return [(p.get_content_type(), p.get_payload(decode=True) or b"") for p in message.iter_parts()]


@pytest.fixture
def stored(dicom_store, facility_a, tmp_path) -> StoredStudy:
    return store_study(dicom_store, facility_a, tmp_path / "a")


@pytest.fixture
def other_group_study(dicom_store, facility_c, tmp_path) -> StoredStudy:
    spec = StudySpec(patient_id="PAT-C", accession="ACCC", patient_name="OTHER^GROUP")
    return store_study(dicom_store, facility_c, tmp_path / "c", spec=spec)


def _routes(s: StoredStudy) -> dict[str, str]:
    study = s.study.study_instance_uid
    series = s.series_uids[0]
    sop = pydicom.dcmread(s.files[0], stop_before_pixels=True).SOPInstanceUID
    inst = f"/dicomweb/studies/{study}/series/{series}/instances/{sop}"
    return {
        "study series search": f"/dicomweb/studies/{study}/series",
        "study instances search": f"/dicomweb/studies/{study}/instances",
        "series instances search": f"/dicomweb/studies/{study}/series/{series}/instances",
        "retrieve study": f"/dicomweb/studies/{study}",
        "retrieve series": f"/dicomweb/studies/{study}/series/{series}",
        "retrieve instance": inst,
        "study metadata": f"/dicomweb/studies/{study}/metadata",
        "series metadata": f"/dicomweb/studies/{study}/series/{series}/metadata",
        "instance metadata": f"{inst}/metadata",
        "frames": f"{inst}/frames/1",
        "bulk": f"{inst}/bulk/7FE00010",
        "rendered": f"{inst}/rendered",
        "frame rendered": f"{inst}/frames/1/rendered",
        "study thumbnail": f"/dicomweb/studies/{study}/thumbnail",
        "series thumbnail": f"/dicomweb/studies/{study}/series/{series}/thumbnail",
        "instance thumbnail": f"{inst}/thumbnail",
    }


ROUTE_NAMES = [
    "study series search",
    "study instances search",
    "series instances search",
    "retrieve study",
    "retrieve series",
    "retrieve instance",
    "study metadata",
    "series metadata",
    "instance metadata",
    "frames",
    "bulk",
    "rendered",
    "frame rendered",
    "study thumbnail",
    "series thumbnail",
    "instance thumbnail",
]


@pytest.fixture
def offered_reader(licensed_reader, stored) -> Any:
    offer_open(
        study=stored.study,
        radiologist_id=licensed_reader.pk,
        tier=1,
        rule_id=None,
        at=timezone.now(),
    )
    return licensed_reader.user


@pytest.fixture
def users(group_admin, other_admin, staff_a, offered_reader, unlicensed_reader) -> dict[str, Any]:
    staff_c = f.UserFactory(username="staff_c")
    return {
        "group admin": group_admin,
        "facility staff": staff_a,
        "offered reader": offered_reader,
        "reader not offered": unlicensed_reader.user,
        "other group's admin": other_admin,
        "other facility's staff": staff_c,
    }


REACH = {
    "group admin": True,
    "facility staff": True,
    "offered reader": True,
    "reader not offered": False,
    "other group's admin": False,
    "other facility's staff": False,
}


def test_every_route_answers_only_those_who_may_see_the_study(stored, users, facility_c, api):
    from network.services import facility_staff_grant

    facility_staff_grant(actor=None, user=users["other facility's staff"], facility=facility_c)
    answers = {}
    for route in ROUTE_NAMES:
        url = _routes(stored)[route]
        for who in REACH:
            response = api(users[who]).get(url, HTTP_ACCEPT="*/*")
            body(response)
            answers[route, who] = response.status_code
        answers[route, "anonymous"] = api(None).get(url).status_code
    expected = {
        (route, who): (200 if allowed else 404)
        for route in ROUTE_NAMES
        for who, allowed in REACH.items()
    }
    expected.update({(route, "anonymous"): 401 for route in ROUTE_NAMES})
    assert answers == expected


def test_searches_list_only_reachable_studies(stored, other_group_study, users, api):
    def found(user: Any, url: str) -> set[str]:
        response = api(user).get(url, HTTP_ACCEPT=JSON)
        assert response.status_code == 200
        return {r["0020000D"]["Value"][0] for r in json.loads(body(response))}

    mine = stored.study.study_instance_uid
    for url in ("/dicomweb/studies", "/dicomweb/series", "/dicomweb/instances"):
        assert found(users["group admin"], url) == {mine}
        assert found(users["offered reader"], url) == {mine}
        assert found(users["reader not offered"], url) == set()
        assert found(users["other group's admin"], url) == {
            other_group_study.study.study_instance_uid
        }
    # Another group's study named by UID: as unknown as a study that does not exist.
    other = other_group_study.study.study_instance_uid
    response = api(users["group admin"]).get(f"/dicomweb/studies/{other}/series")
    assert response.status_code == 404


def test_each_retrieval_is_audited_once_and_frames_once_per_reader_and_study(
    stored, offered_reader, api
):
    client = api(offered_reader)
    routes = _routes(stored)
    before = AuditEvent.objects.count()
    body(client.get(routes["series metadata"]))
    body(client.get(routes["retrieve study"]))
    events = list(
        AuditEvent.objects.filter(action="read", object_id=str(stored.study.pk)).order_by("id")
    )
    assert [e.detail["what"] for e in events] == ["metadata", "retrieve"]
    assert events[0].actor == offered_reader and events[0].patient_id == stored.study.patient_id
    for _ in range(5):
        body(client.get(routes["frames"], HTTP_ACCEPT=FRAMES_AS_STORED))
    frame_events = AuditEvent.objects.filter(detail__what="frames")
    assert frame_events.count() == 1
    assert AuditEvent.objects.count() == before + 3
    # A search is audited with the studies it returned.
    body(client.get("/dicomweb/studies?PatientID=PAT-0001"))
    search = AuditEvent.objects.filter(action="list").get()
    assert search.object_id == str(stored.study.pk) and search.detail["what"] == "search studies"


def test_metadata_comes_from_the_stored_json_gzip_compressed_with_absolute_bulk_uris(
    stored, group_admin, api, dicom_store
):
    client = api(group_admin)
    url = _routes(stored)["series metadata"]
    response = client.get(url, HTTP_ACCEPT_ENCODING="gzip, deflate")
    assert response["Content-Encoding"] == "gzip" and response["Content-Type"] == JSON
    items = json.loads(gzip.decompress(body(response)))
    assert len(items) == 3
    first = pydicom.dcmread(stored.files[0], stop_before_pixels=True)
    assert items[0]["00080018"]["Value"] == [first.SOPInstanceUID]
    assert items[0]["00100010"]["Value"] == [{"Alphabetic": "TEST^PATIENT"}]
    uri = items[0]["7FE00010"]["BulkDataURI"]
    assert uri.startswith("http://testserver/dicomweb/studies/") and uri.endswith("/bulk/7FE00010")
    pixels = parts(client.get(uri.removeprefix("http://testserver"), HTTP_ACCEPT=FRAMES_AS_STORED))
    assert pixels[0][1] == pydicom.dcmread(stored.files[0]).PixelData
    # Built from the database, not the files: the files are not opened.
    for path in dicom_store.root.rglob("*.dcm"):
        path.chmod(0)
    try:
        again = json.loads(body(client.get(url)))
    finally:
        for path in dicom_store.root.rglob("*.dcm"):
            path.chmod(0o644)
    assert again == items


def test_metadata_of_instances_whose_json_is_not_built_yet_is_read_from_the_file(
    dicom_store, facility_a, group_admin, api, tmp_path
):
    s = store_study(dicom_store, facility_a, tmp_path / "n", build_json=False)
    assert set(Instance.objects.values_list("dicom_json", flat=True)) == {""}
    items = json.loads(body(api(group_admin).get(_routes(s)["study metadata"])))
    assert len(items) == 5 and all("00280010" in i for i in items)
    # ... and a build is handed to the worker (eager in tests): next time from the row.
    assert "" not in set(Instance.objects.values_list("dicom_json", flat=True))


def test_frames_as_stored_and_decoded_from_a_compressed_object(
    dicom_store, facility_a, group_admin, api, tmp_path
):
    spec = StudySpec()
    ds = make_instance(spec, series_uid=str(generate_uid()), number=1, rows=32, columns=32)
    ds.NumberOfFrames = 3
    frames = np.arange(3 * 32 * 32, dtype=np.uint16).reshape(3, 32, 32)
    ds.PixelData = frames.tobytes()
    ds.compress(RLELossless, encoding_plugin="pydicom")
    path = tmp_path / "rle.dcm"
    ds.save_as(path, enforce_file_format=True)
    from tests.ingest.staged import receive

    assert receive(dicom_store, path, facility_a).outcome == "stored"
    url = (
        f"/dicomweb/studies/{spec.study_uid}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}/frames/2,3"
    )
    client = api(group_admin)
    stored_frames = client.get(url, HTTP_ACCEPT=FRAMES_AS_STORED)
    assert f"transfer-syntax={RLELossless}" in stored_frames["Content-Type"]
    got = parts(stored_frames)
    assert [len(p) for _, p in got] == [
        len(x) for x in pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=3)
    ][1:]
    decoded = client.get(url, HTTP_ACCEPT='multipart/related; type="application/octet-stream"')
    assert "transfer-syntax=1.2.840.10008.1.2.1" in decoded["Content-Type"]
    assert [p for _, p in parts(decoded)] == [frames[1].tobytes(), frames[2].tobytes()]
    # Frame 4 does not exist; frame "0" or "x" is malformed.
    assert client.get(url.replace("2,3", "4"), HTTP_ACCEPT=FRAMES_AS_STORED).status_code == 404
    assert client.get(url.replace("2,3", "0")).status_code == 400
    # The whole instance in explicit VR little endian: decoded, same pixels.
    inst = url.rsplit("/frames/", 1)[0]
    whole = parts(
        client.get(
            inst,
            HTTP_ACCEPT='multipart/related; type="application/dicom"; '
            "transfer-syntax=1.2.840.10008.1.2.1",
        )
    )
    decoded_ds = pydicom.dcmread(io.BytesIO(whole[0][1]))
    assert decoded_ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert np.array_equal(decoded_ds.pixel_array, frames)


def test_rendered_and_thumbnail_are_pictures_windowed_as_asked(stored, group_admin, api):
    client = api(group_admin)
    routes = _routes(stored)
    jpeg = client.get(routes["rendered"], HTTP_ACCEPT="image/jpeg")
    assert jpeg["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(jpeg.content)).size == (64, 64)
    png = client.get(routes["rendered"] + "?window=100,50", HTTP_ACCEPT="image/png")
    assert Image.open(io.BytesIO(png.content)).format == "PNG"
    thumb = client.get(routes["series thumbnail"] + "?viewport=32,32")
    assert Image.open(io.BytesIO(thumb.content)).size == (32, 32)
    assert client.get(routes["rendered"] + "?window=abc").status_code == 400
    assert client.get(routes["rendered"] + "?viewport=0,0").status_code == 400


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("/dicomweb/studies?StudyDate=2026-13-45", 400),
        ("/dicomweb/studies?StudyDate=20261345", 400),
        ("/dicomweb/studies?limit=-1", 400),
        ("/dicomweb/studies?offset=abc", 400),
        ("/dicomweb/studies?NoSuchKeyword=1", 400),
        ("/dicomweb/studies?StudyInstanceUID=1.2.abc", 400),
        ("/dicomweb/studies?includefield=NotAnAttribute", 400),
        ("/dicomweb/studies?fuzzymatching=maybe", 400),
        ("/dicomweb/studies/1.2..3/series", 400),
        ("/dicomweb/studies/not-a-uid", 400),
        ("/dicomweb/studies/1.2.3.4.5", 404),
        ("/dicomweb/studies/1.2.3.4.5/series/1.2.3/metadata", 404),
    ],
)
def test_bad_requests_get_the_standard_answer_with_a_message(url, code, stored, group_admin, api):
    response = api(group_admin).get(url)
    assert response.status_code == code
    assert json.loads(response.content)["detail"]


def test_unacceptable_media_types_are_406(stored, group_admin, api):
    client = api(group_admin)
    routes = _routes(stored)
    assert client.get("/dicomweb/studies", HTTP_ACCEPT="text/html").status_code == 406
    assert client.get(routes["rendered"], HTTP_ACCEPT="image/gif").status_code == 406
    weird = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50'
    assert client.get(routes["retrieve instance"], HTTP_ACCEPT=weird).status_code == 406


def test_ignored_matching_keys_are_named_in_a_warning(stored, group_admin, api):
    response = api(group_admin).get("/dicomweb/studies?SeriesDate=20240101&fuzzymatching=true")
    assert response.status_code == 200
    assert "SeriesDate" in response["Warning"] and "fuzzymatching" in response["Warning"]


# -- STOW-RS ------------------------------------------------------------------


def _multipart(parts_: list[tuple[str, bytes]], boundary: str = "b0undary") -> tuple[bytes, str]:
    out = b""
    for content_type, content in parts_:
        out += f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode() + content
        out += b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, f'multipart/related; type="application/dicom"; boundary={boundary}'


def _dicom_bytes(spec: StudySpec, series_uid: str, number: int) -> bytes:
    ds = make_instance(spec, series_uid=series_uid, number=number, rows=16, columns=16)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_stow_files_each_part_through_the_gateway_and_answers_per_part(
    dicom_store, staff_a, facility_a, api
):
    spec = StudySpec(accession="STOW1")
    series = str(generate_uid())
    good = [_dicom_bytes(spec, series, n) for n in (1, 2)]
    broken = good[0][:300]  # cut off inside the data set
    payload, content_type = _multipart(
        [
            ("application/dicom", good[0]),
            ("application/dicom", good[1]),
            ("application/dicom", broken),
            ("text/plain", b"hello"),
        ]
    )
    response = api(staff_a).post("/dicomweb/studies", payload, content_type=content_type)
    assert response.status_code == 202, response.content
    answer = json.loads(response.content)
    assert len(answer["00081199"]["Value"]) == 2
    failed = answer["00081198"]["Value"]
    assert len(failed) == 2 and all(item["00081197"]["Value"][0] for item in failed)
    study = Study.objects.get(study_instance_uid=spec.study_uid)
    assert study.facility == facility_a and study.accession_number == "STOW1"
    assert Instance.objects.filter(series__study=study).count() == 2
    assert answer["00081190"]["Value"] == [f"http://testserver/dicomweb/studies/{spec.study_uid}"]
    # The broken part is kept in quarantine with its reason, not half-stored.
    row = QuarantinedObject.objects.get()
    assert row.facility == facility_a and row.calling_ae == "STOW-RS" and row.reason
    assert dicom_store.exists(row.storage_key)
    # The same upload again: duplicates, stored nothing twice.
    again = api(staff_a).post("/dicomweb/studies", payload, content_type=content_type)
    assert again.status_code == 202
    assert Instance.objects.filter(series__study=study).count() == 2


def test_stow_refusals(dicom_store, staff_a, group_admin, offered_reader, api, settings):
    spec = StudySpec()
    payload, content_type = _multipart(
        [("application/dicom", _dicom_bytes(spec, str(generate_uid()), 1))]
    )
    # Not a facility account: nothing to store it for.
    assert (
        api(offered_reader)
        .post("/dicomweb/studies", payload, content_type=content_type)
        .status_code
        == 403
    )
    # Wrong media type.
    assert (
        api(staff_a).post("/dicomweb/studies", payload, content_type="application/json").status_code
        == 415
    )
    # Too large for one request.
    settings.DICOMWEB_STOW_MAX_BYTES = 100
    assert (
        api(staff_a).post("/dicomweb/studies", payload, content_type=content_type).status_code
        == 413
    )
    settings.DICOMWEB_STOW_MAX_BYTES = 1 << 30
    # No boundary in the body.
    assert (
        api(staff_a).post("/dicomweb/studies", b"garbage", content_type=content_type).status_code
        == 400
    )
    # Into a named study: an object of another study is refused, not stored.
    other = StudySpec()
    payload, content_type = _multipart(
        [("application/dicom", _dicom_bytes(other, str(generate_uid()), 1))]
    )
    response = api(staff_a).post(
        f"/dicomweb/studies/{spec.study_uid}", payload, content_type=content_type
    )
    assert response.status_code == 409
    assert not Study.objects.filter(
        study_instance_uid__in=[other.study_uid, spec.study_uid]
    ).exists()


def test_the_one_study_check_agrees_with_the_visibility_filter(
    stored, other_group_study, users, facility_c, licensed_reader
):
    """``study_is_visible`` (a viewer's many requests for one study) answers what the
    list filter answers, for every kind of user, with the offer open and withdrawn."""
    from access.selectors import study_is_visible, study_list_visible
    from network.services import facility_staff_grant
    from worklist.services.offers import offers_withdraw

    facility_staff_grant(actor=None, user=users["other facility's staff"], facility=facility_c)
    superuser = f.UserFactory(username="root", is_superuser=True)
    inactive = f.UserFactory(username="gone", is_active=False)
    everyone = {**users, "superuser": superuser, "inactive": inactive}

    def agree() -> None:
        for who, user in everyone.items():
            listed = set(study_list_visible(user=user).values_list("pk", flat=True))
            for s in (stored.study, other_group_study.study):
                study = Study.objects.get(pk=s.pk)
                assert study_is_visible(user=user, study=study) == (study.pk in listed), who

    agree()
    offers_withdraw(at=timezone.now(), reason="test", study_id=stored.study.pk)
    assert not study_is_visible(user=users["offered reader"], study=stored.study)
    agree()
