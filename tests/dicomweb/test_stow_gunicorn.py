"""STOW-RS through the production web server: uploads sent with chunked transfer
encoding (no Content-Length; dicomweb-client does this for bodies over 1 MB) are
read part by part, and held to the request limit as they are read."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from pydicom.uid import generate_uid

from accounts.models import ApiToken
from ingest.synthetic import StudySpec, make_instance
from studies.models import Instance
from tests.processes import start_web, stop_web

pytestmark = pytest.mark.django_db(transaction=True)


def _part10(spec: StudySpec, series_uid: str, number: int) -> bytes:
    ds = make_instance(spec, series_uid=series_uid, number=number, rows=256, columns=256)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _chunked_body(parts: list[bytes], boundary: str) -> Iterator[bytes]:
    """A multipart body as a generator: requests sends it chunked, with no length."""
    for part in parts:
        yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        for start in range(0, len(part), 10_000):
            yield part[start : start + 10_000]
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


@pytest.fixture
def web_for(tmp_path: Path) -> Iterator[Any]:
    started = []

    def start(**env: str) -> Any:
        web = start_web(tmp_path / f"web{len(started)}", **env)
        started.append(web)
        return web

    yield start
    for web in started:
        stop_web(web)


def test_a_chunked_upload_is_filed_part_by_part(staff_a: Any, web_for: Any) -> None:
    web = web_for()
    _, key = ApiToken.objects.create(user=staff_a)
    spec = StudySpec(accession="CHUNKED")
    series = str(generate_uid())
    parts = [_part10(spec, series, n) for n in (1, 2, 3)]
    response = requests.post(
        f"{web.url}/dicomweb/studies",
        data=_chunked_body(parts, "chunky"),
        headers={
            "Authorization": f"Token {key}",
            "Content-Type": 'multipart/related; type="application/dicom"; boundary=chunky',
            "Accept": "application/dicom+json",
        },
        timeout=60,
    )
    assert response.status_code == 200, (response.text, web.log_path.read_text()[-2000:])
    assert "Content-Length" not in response.request.headers
    assert len(response.json()["00081199"]["Value"]) == 3
    assert Instance.objects.filter(series__study__accession_number="CHUNKED").count() == 3


def test_a_chunked_upload_past_the_limit_is_413(staff_a: Any, web_for: Any) -> None:
    web = web_for(DICOMWEB_STOW_MAX_BYTES="200000")
    _, key = ApiToken.objects.create(user=staff_a)
    spec = StudySpec(accession="TOOBIG")
    series = str(generate_uid())
    parts = [_part10(spec, series, n) for n in (1, 2, 3)]  # ~130 KB each
    response = requests.post(
        f"{web.url}/dicomweb/studies",
        data=_chunked_body(parts, "chunky"),
        headers={
            "Authorization": f"Token {key}",
            "Content-Type": 'multipart/related; type="application/dicom"; boundary=chunky',
        },
        timeout=60,
    )
    assert response.status_code == 413, response.text
    assert "larger than 200000 bytes" in response.json()["detail"]
    # The part that arrived whole before the limit is filed; nothing is half-stored.
    assert Instance.objects.filter(series__study__accession_number="TOOBIG").count() == 1
