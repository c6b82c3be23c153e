"""The viewer under /viewer/: its generated configuration, the study redirect, the
routes (index.html, signed in only), the bundle's files, and a 503 when make install
has not prepared it."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils.http import http_date

from tests.viewer.conftest import APP_BUNDLE, FONT, WASM, WASM_BYTES, WORKER_BUNDLE
from viewer.build import URL_PREFIX
from viewer.config import DICOMWEB_PATH

pytestmark = pytest.mark.django_db

UID = "1.2.826.0.1.3680043.8.498.1"


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _body(response: Any) -> bytes:
    return b"".join(response.streaming_content)


def _config(response: Any) -> dict[str, Any]:
    text = response.content.decode()
    match = re.search(r"window\.config = (\{.*\});\s*$", text, re.S)
    assert match, text
    config: dict[str, Any] = json.loads(match.group(1))
    return config


def test_the_viewer_is_mounted_where_the_bundle_is_rewritten_for() -> None:
    assert reverse("viewer") == URL_PREFIX
    assert reverse("viewer-config") == f"{URL_PREFIX}app-config.js"
    # ... and its data source is where the DICOMweb service is mounted.
    assert reverse("dicomweb:studies") == f"{DICOMWEB_PATH}/studies"


def test_config_needs_a_signed_in_user() -> None:
    response = Client().get("/viewer/app-config.js")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/viewer/app-config.js"


@pytest.mark.parametrize("persona", ["licensed_reader", "staff_a", "group_admin"])
def test_config_points_only_at_our_dicomweb_with_uploads_off(
    persona: str, request: pytest.FixtureRequest
) -> None:
    user = request.getfixturevalue(persona)
    user = getattr(user, "user", user)  # a radiologist's user
    response = signed_in(user).get("/viewer/app-config.js")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/javascript; charset=utf-8"
    assert response["Cache-Control"] == "no-store"

    config = _config(response)
    assert config["routerBasename"] == "/viewer"
    assert config["showStudyList"] is False
    assert config["defaultDataSourceName"] == "dicomweb"
    (source,) = config["dataSources"]
    assert source["namespace"] == "@ohif/extension-default.dataSourcesModule.dicomweb"
    assert source["sourceName"] == "dicomweb"
    settings = source["configuration"]
    for root in ("qidoRoot", "wadoRoot", "wadoUriRoot"):
        assert settings[root] == "http://testserver/dicomweb"
    assert settings["imageRendering"] == settings["thumbnailRendering"] == "wadors"
    assert settings["enableStudyLazyLoad"] is True
    assert settings["supportsFuzzyMatching"] is False
    assert settings["supportsWildcard"] is True
    assert settings["bulkDataURI"] == {"enabled": True}
    assert settings["omitQuotationForMultipartRequest"] is True
    # Nothing uploads, stores or rejects; nothing is configured from a URL.
    assert settings["dicomUploadEnabled"] is False
    assert settings["supportsStow"] is False and settings["supportsReject"] is False
    assert config["investigationalUseDialog"] == {"option": "never"}
    assert config["dangerouslyUseDynamicConfig"] == {"enabled": False}
    for absent in ("oidc", "customizationUrlPrefixes", "httpErrorHandler", "whiteLabeling"):
        assert absent not in config
    assert config["maxNumRequests"] == {"interaction": 100, "thumbnail": 5, "prefetch": 25}
    # No other server is named anywhere in it.
    urls = re.findall(r"[a-z]+://[^\"'\s]*", response.content.decode())
    assert urls and all(u == "http://testserver/dicomweb" for u in urls)


def test_config_follows_the_request_origin(licensed_reader: Any) -> None:
    response = signed_in(licensed_reader.user).get(
        "/viewer/app-config.js", secure=True, HTTP_HOST="localhost:8443"
    )
    source = _config(response)["dataSources"][0]["configuration"]
    assert source["qidoRoot"] == "https://localhost:8443/dicomweb"


def test_a_study_address_goes_to_the_default_modes_route(licensed_reader: Any) -> None:
    response = signed_in(licensed_reader.user).get(f"/viewer/?StudyInstanceUIDs={UID}")
    assert response.status_code == 302
    assert response["Location"] == f"/viewer/viewer?StudyInstanceUIDs={UID}"
    response = signed_in(licensed_reader.user).get(f"/viewer/?studyInstanceUIDs={UID}&x=1")
    assert response["Location"] == f"/viewer/viewer?studyInstanceUIDs={UID}&x=1"
    # Without a study there is nothing to show (no study list): home.
    response = signed_in(licensed_reader.user).get("/viewer/")
    assert response.status_code == 302 and response["Location"] == "/"
    response = Client().get(f"/viewer/?StudyInstanceUIDs={UID}")
    assert response.status_code == 302 and response["Location"].startswith("/login/?next=/viewer/")


@pytest.mark.parametrize(
    "path", [f"/viewer/viewer?StudyInstanceUIDs={UID}", "/viewer/viewer/dicomweb", "/viewer/x"]
)
def test_every_route_is_the_rewritten_index_for_a_signed_in_user(
    path: str, prepared: Path, staff_a: Any
) -> None:
    response = signed_in(staff_a).get(path)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert response["Cache-Control"] == "no-store"
    assert b'window.PUBLIC_URL="/viewer/"' in response.content
    assert b'src="/viewer/app-config.js"' in response.content
    # The page may fetch from its own origin only.
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in response["Content-Security-Policy"].split(";")
    )
    assert policy["default-src"] == policy["base-uri"] == "'self'"
    assert policy["connect-src"] == "'self' data: blob:"
    assert policy["object-src"] == "'none'"


@pytest.mark.parametrize("path", [f"/viewer/viewer?StudyInstanceUIDs={UID}", "/viewer/index.html"])
def test_routes_need_a_signed_in_user(path: str, prepared: Path) -> None:
    response = Client().get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=/viewer/")


@pytest.mark.parametrize(
    ("name", "content_type", "cache"),
    [
        (APP_BUNDLE, "text/javascript; charset=utf-8", "public, max-age=31536000, immutable"),
        (WORKER_BUNDLE, "text/javascript; charset=utf-8", "public, max-age=31536000, immutable"),
        (WASM, "application/wasm", "public, max-age=31536000, immutable"),
        (FONT, "font/woff2", "public, max-age=31536000, immutable"),
        ("app.bundle.css", "text/css; charset=utf-8", "public, max-age=86400"),
        ("manifest.json", "application/json", "public, max-age=86400"),
        ("assets/favicon.ico", "image/x-icon", "public, max-age=86400"),
    ],
)
def test_bundle_files_are_served_with_their_type_and_long_caching(
    name: str, content_type: str, cache: str, prepared: Path
) -> None:
    response = Client().get(f"/viewer/{name}")
    assert response.status_code == 200
    assert response["Content-Type"] == content_type
    assert response["Cache-Control"] == cache
    assert _body(response) == (prepared / name).read_bytes()


@pytest.mark.parametrize(
    ("accept", "compressed"),
    [
        ("gzip, deflate, br, zstd", True),
        ("br;q=1.0, gzip;q=0.8", True),
        ("", False),
        ("gzip;q=0", False),
        ("identity", False),
    ],
)
def test_scripts_are_sent_compressed_to_browsers_that_accept_it(
    accept: str, compressed: bool, prepared: Path
) -> None:
    response = Client().get(f"/viewer/{APP_BUNDLE}", HTTP_ACCEPT_ENCODING=accept)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/javascript; charset=utf-8"
    assert response["Vary"] == "Accept-Encoding"
    assert response.get("Content-Encoding") == ("gzip" if compressed else None)
    body = _body(response)
    assert (gzip.decompress(body) if compressed else body) == (prepared / APP_BUNDLE).read_bytes()


def test_wasm_arrives_intact(prepared: Path) -> None:
    response = Client().get(f"/viewer/{WASM}")
    assert _body(response) == WASM_BYTES


def test_an_unchanged_file_is_not_sent_again(prepared: Path) -> None:
    mtime = (prepared / "app.bundle.css").stat().st_mtime
    response = Client().get("/viewer/app.bundle.css", HTTP_IF_MODIFIED_SINCE=http_date(mtime))
    assert response.status_code == 304
    assert response["Cache-Control"] == "public, max-age=86400"


@pytest.mark.parametrize(
    "path",
    [
        "/viewer/missing.bundle.0000000000000000.js",
        "/viewer/assets/missing.png",
        "/viewer/.prepared.json",
        "/viewer/assets/..%2f..%2fsecret.js",
        "/viewer/app-config.js.map",
    ],
)
def test_files_not_in_the_bundle_are_not_found(path: str, prepared: Path) -> None:
    (prepared.parent / "secret.js").write_text("not the viewer's")
    assert Client().get(path).status_code == 404


def test_a_viewer_not_prepared_answers_503_saying_what_to_run(
    settings: Any, tmp_path: Path, staff_a: Any
) -> None:
    settings.VIEWER_DIR = tmp_path / "never-prepared"
    client = signed_in(staff_a)
    for path in (f"/viewer/viewer?StudyInstanceUIDs={UID}", f"/viewer/{APP_BUNDLE}"):
        response = client.get(path)
        assert response.status_code == 503
        assert b"make install" in response.content
    # Anonymous users are still sent to sign in first.
    assert Client().get("/viewer/viewer").status_code == 302
    # The configuration does not depend on the bundle.
    assert client.get("/viewer/app-config.js").status_code == 200


def test_a_half_copied_folder_is_not_prepared(prepared: Path, staff_a: Any) -> None:
    (prepared / ".prepared.json").unlink()
    assert signed_in(staff_a).get("/viewer/viewer").status_code == 503
