"""The OHIF viewer in a real browser, against our own /dicomweb/: a reader claims the
case from the worklist, clicks "Open images" and sees its first image and every series
in the viewer's window; a reader it was not offered to sees none.

The study is filed through the gateway's own service (as the DICOM listener files
it) and routed; the viewer is the prepared bundle ``make install`` made.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from pydicom.uid import generate_uid

from ingest.services import studies_mark_ready
from ingest.storage import default_storage
from ingest.synthetic import StudySpec, make_instance
from routing.models import RoutingRule
from studies.models import Series, Study
from tests import factories as f
from tests.ingest.staged import receive
from tests.routing.conftest import make_reader
from viewer.views import prepared_root
from worklist.services.claims import study_claim

pytestmark = pytest.mark.browser

PASSWORD = "pw-for-tests-1"
AE_TITLE = "VWR_CT"
SERIES = {"CT HEAD AXIAL": 4, "CT HEAD BONE": 3}

# Draws every viewport canvas into a 2D canvas and counts the pixels that are not
# black (cornerstone3D copies its WebGL rendering onto these canvases).
COUNT_LIT_PIXELS = """() => {
  let best = 0;
  for (const canvas of document.querySelectorAll('[data-cy="viewport-grid"] canvas')) {
    if (!canvas.width || !canvas.height) continue;
    const copy = document.createElement('canvas');
    copy.width = canvas.width;
    copy.height = canvas.height;
    const ctx = copy.getContext('2d');
    ctx.drawImage(canvas, 0, 0);
    const data = ctx.getImageData(0, 0, copy.width, copy.height).data;
    let lit = 0;
    for (let i = 0; i < data.length; i += 4) {
      if (data[i] + data[i + 1] + data[i + 2] > 30) lit++;
    }
    best = Math.max(best, lit);
  }
  return best;
}"""
THUMBNAILS = '[data-cy="study-browser-thumbnail"], [data-cy="study-browser-thumbnail-no-image"]'


@pytest.fixture
def viewer_prepared() -> Path:
    root = prepared_root()
    if root is None:
        pytest.fail("the OHIF viewer is not prepared: run `make install` (python -m viewer.build)")
    return root


def _file_study(facility: Any, folder: Path) -> str:
    """A CT study of two series with real geometry, filed as the listener files it."""
    spec = StudySpec(
        modality="CT",
        body_part="HEAD",
        description="CT HEAD WO CONTRAST",
        patient_id="VIEW-1",
        accession="VIEWACC1",
        priority="STAT",
    )
    folder.mkdir(parents=True)
    storage = default_storage()
    for series_number, (description, count) in enumerate(SERIES.items(), start=1):
        series_uid = str(generate_uid())
        for number in range(1, count + 1):
            ds = make_instance(spec, series_uid=series_uid, number=number, rows=256, columns=256)
            ds.SeriesNumber = series_number
            ds.SeriesDescription = description
            ds.ImagePositionPatient = [-64.0, -64.0, 2.5 * number]
            ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
            ds.PixelSpacing = [0.5, 0.5]
            ds.SliceThickness = 2.5
            path = folder / f"{ds.SOPInstanceUID}.dcm"
            ds.save_as(path, enforce_file_format=True)
            result = receive(storage, path, facility, aet=AE_TITLE)
            assert result.outcome == "stored", result
    return spec.study_uid


@pytest.fixture
def claimed_study(transactional_db: Any, settings: Any, tmp_path: Path) -> dict[str, Any]:
    """A filed CT study, offered to dr_viewer (who claims it in the test); dr_elsewhere is a
    reader of the same group it was never offered to (no privilege at the facility)."""
    settings.DICOM_STORAGE_ROOT = tmp_path / "dicom"
    group = f.ReadingGroupFactory(name="Viewer group")
    region = f.RegionFactory(code="us-tx-north")
    facility = f.FacilityFactory(reading_group=group, region=region, ae_titles=[AE_TITLE])
    now = timezone.now()
    readers = {}
    for name, privileged in (("dr_viewer", True), ("dr_elsewhere", False)):
        reader = make_reader(group, facility, name=name, region=region, privileged=privileged)
        # On shift now, with credentials valid whatever the date the suite runs.
        reader.shifts.update(
            starts_at=now - dt.timedelta(hours=1), ends_at=now + dt.timedelta(hours=3)
        )
        today = now.date()
        for credentials in (reader.licenses, reader.privileges):
            credentials.update(
                valid_from=today - dt.timedelta(days=30), valid_to=today + dt.timedelta(days=365)
            )
        reader.user.set_password(PASSWORD)
        reader.user.save()
        readers[name] = reader
    rule = RoutingRule.objects.create(reading_group=group, name="All", is_default=True)
    rule.subspecialties.set([f.subspecialty("neuro")])

    study_uid = _file_study(facility, tmp_path / "files")
    study = Study.objects.get(study_instance_uid=study_uid)
    # Ready as beat's sweep declares it: routed and its DICOM JSON built (tasks run
    # inline here), so the viewer's metadata requests find it.
    assert studies_mark_ready(quiet_seconds=0) == [study.pk]
    assert Study.objects.get(pk=study.pk).status == "offered"
    return {
        "id": study.pk,
        "uid": study_uid,
        "series": Series.objects.filter(study=study).count(),
        "readers": readers,
    }


@dataclass
class Viewer:
    context: Any
    page: Any
    dicomweb: list[tuple[int, str]] = field(default_factory=list)  # (status, url) answered
    requested: list[str] = field(default_factory=list)  # every URL the page asked for


def _open_viewer(browser: Any, base: str, username: str, uid: str) -> Viewer:
    """Sign in through the login page, then open the study's viewer address."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    viewer = Viewer(context, context.new_page())
    page = viewer.page
    page.goto(f"{base}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/worklist/")

    page.on("request", lambda r: viewer.requested.append(r.url))
    page.on(
        "response",
        lambda r: viewer.dicomweb.append((r.status, r.url)) if "/dicomweb/" in r.url else None,
    )
    page.goto(f"{base}/viewer/?StudyInstanceUIDs={uid}")
    page.wait_for_url(f"{base}/viewer/viewer?StudyInstanceUIDs={uid}")
    return viewer


def test_the_reader_claims_from_the_worklist_and_sees_every_series_with_one_click(
    webgl_browser: Any, live_server: Any, claimed_study: dict[str, Any], viewer_prepared: Path
) -> None:
    base, study_id = live_server.url, claimed_study["id"]
    context = webgl_browser.new_context(viewport={"width": 1400, "height": 900})
    worklist = context.new_page()
    worklist.goto(f"{base}/login/")
    worklist.fill("input[name=username]", "dr_viewer")
    worklist.fill("input[name=password]", PASSWORD)
    worklist.click("button[type=submit]")
    worklist.wait_for_url(f"{base}/worklist/")
    # Claim the case from its worklist row: the study page opens.
    worklist.click(f'tr[data-study="{study_id}"] button.claim')
    worklist.wait_for_url(f"{base}/studies/{study_id}/")
    assert Study.objects.get(pk=study_id).assigned_radiologist.user.username == "dr_viewer"
    # One click on "Open images": the viewer opens in its own window on this study.
    with worklist.expect_popup() as opened:
        worklist.click(f"#open-images-{study_id}")
    viewer = Viewer(context, opened.value)
    page, dicomweb = viewer.page, viewer.dicomweb
    page.on("request", lambda r: viewer.requested.append(r.url))
    page.on(
        "response",
        lambda r: dicomweb.append((r.status, r.url)) if "/dicomweb/" in r.url else None,
    )
    try:
        page.wait_for_url(f"{base}/viewer/viewer?StudyInstanceUIDs={claimed_study['uid']}")
        page.wait_for_selector('[data-cy="viewport-grid"] canvas', timeout=30_000)
        page.wait_for_function(f"({COUNT_LIT_PIXELS})() > 1000", timeout=60_000)
        assert page.evaluate(f"({COUNT_LIT_PIXELS})()") > 1000

        thumbnails = page.locator(THUMBNAILS)
        thumbnails.first.wait_for(timeout=30_000)
        page.wait_for_function(
            f"document.querySelectorAll({THUMBNAILS!r}).length >= {claimed_study['series']}",
            timeout=30_000,
        )
        assert thumbnails.count() == claimed_study["series"] == len(SERIES)
        # Everything came from our own server: the QIDO and WADO requests answered.
        assert dicomweb and all(status < 400 for status, _ in dicomweb), dicomweb
        assert all(url.startswith(f"{live_server.url}/dicomweb/") for _, url in dicomweb)
        # Nothing was fetched from anywhere else: the bundle is served by the app.
        elsewhere = [
            url
            for url in viewer.requested
            if not url.startswith((f"{live_server.url}/", "data:", "blob:"))
        ]
        assert elsewhere == []
    finally:
        context.close()


def test_a_reader_it_was_not_offered_to_gets_no_pixels(
    webgl_browser: Any, live_server: Any, claimed_study: dict[str, Any], viewer_prepared: Path
) -> None:
    study_claim(study_id=claimed_study["id"], radiologist=claimed_study["readers"]["dr_viewer"])
    viewer = _open_viewer(webgl_browser, live_server.url, "dr_elsewhere", claimed_study["uid"])
    page, dicomweb = viewer.page, viewer.dicomweb
    try:
        uid = claimed_study["uid"]
        page.wait_for_selector('[data-cy="study-not-found-message"]', timeout=30_000)
        # The study's series answer 404, as for a study that does not exist; the only
        # other request is the study search, which finds nothing.
        base = f"{live_server.url}/dicomweb/studies"
        assert (404, f"{base}/{uid}/series") in [(s, u.split("?")[0]) for s, u in dicomweb]
        for status, url in dicomweb:
            assert status == 404 or (status == 200 and url.startswith(f"{base}?")), dicomweb
        found = page.evaluate(
            "uid => fetch(`/dicomweb/studies?StudyInstanceUID=${uid}`).then(r => r.text())", uid
        )
        assert found.strip() in ("", "[]")
        assert page.locator(THUMBNAILS).count() == 0
        assert page.evaluate(f"({COUNT_LIT_PIXELS})()") == 0
    finally:
        viewer.context.close()
