"""A radiologist writes, autosaves, communicates a critical result, signs and adds an
addendum in a real browser."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from reporting.models import CriticalCommunication, Report
from reporting.services.macros import macro_save
from reporting.services.templates import report_templates_seed
from routing.models import RoutingRule
from studies.models import Series, Study
from studies.services import study_transition
from tests import factories as f
from tests.browser.test_worklist_browser import _sign_in
from tests.routing.conftest import make_reader

pytestmark = pytest.mark.browser


@pytest.fixture
def claimed(transactional_db):
    group = f.ReadingGroupFactory(name="Browser group")
    region = f.RegionFactory(code="us-tx-north")
    facility = f.FacilityFactory(reading_group=group, region=region, ae_titles=["BRW"])
    reader = make_reader(group, facility, name="dr_amy", region=region)
    now = timezone.now()
    reader.shifts.update(starts_at=now - dt.timedelta(hours=1), ends_at=now + dt.timedelta(hours=3))
    RoutingRule.objects.create(reading_group=group, name="All", is_default=True)
    report_templates_seed()
    macro_save(radiologist=reader, name="Bleed", text="Acute left subdural haematoma.")
    study = f.StudyFactory(
        facility=facility, priority=1, modality="CT", body_part="HEAD", study_description="CT HEAD"
    )
    study_transition(study_id=study.pk, to_status="ready")
    study_transition(study_id=study.pk, to_status="offered")
    study_transition(
        study_id=study.pk, to_status="claimed", assigned_radiologist=reader, claim_activity_at=now
    )
    return reader, Study.objects.get(pk=study.pk)


def _expect_save(page, action):
    """Do ``action`` and wait until the page says the autosave that follows succeeded."""
    page.evaluate("document.getElementById('save-state').dataset.state = 'before'")
    action()
    page.wait_for_selector("#save-state[data-state=saved]", timeout=10_000)


def test_write_autosave_critical_dialog_and_sign(browser, live_server, claimed):
    reader, study = claimed
    context = browser.new_context()
    try:
        page = _sign_in(context, live_server.url, reader.user.username)
        page.goto(f"{live_server.url}/studies/{study.pk}/")
        page.click("#open-report")
        page.wait_for_url(f"{live_server.url}/studies/{study.pk}/report/")
        page.click("#start-report")
        page.wait_for_selector("#report-form")
        assert "Grey-white matter" in page.input_value("#f-brain")  # the template's normal text

        _expect_save(page, lambda: page.fill("#f-indication", "Fall from a ladder."))
        assert "Saved at" in page.inner_text("#save-state")
        report = Report.objects.get(study=study)
        assert report.values["indication"] == "Fall from a ladder."

        # Typed key by key into the impression, then a macro at the cursor, then the
        # finding marked critical: each reaches the database.
        page.click("#f-impression")
        _expect_save(page, lambda: page.keyboard.type("Findings: "))
        _expect_save(
            page,
            lambda: page.select_option('select.macro[data-target="f-impression"]', label="Bleed"),
        )
        _expect_save(page, lambda: page.check("#f-haemorrhage-yes"))
        _expect_save(page, lambda: page.fill("#f-midline_shift", "4"))
        _expect_save(page, lambda: page.select_option("#f-critical-severity", "critical"))
        report.refresh_from_db()
        assert report.impression == "Findings: Acute left subdural haematoma."
        assert report.values["haemorrhage"] is True and report.values["midline_shift"] == 4
        assert report.critical_severity == "critical" and report.status == "draft"

        # Signing is refused until the communication is recorded.
        page.click("#sign-final")
        page.wait_for_selector("#sign-final-dialog[open]")
        page.click("#confirm-sign-final")
        page.wait_for_selector("#sign-result [role=alert]")
        assert not page.is_visible("#sign-final-dialog")
        assert "must be communicated" in page.inner_text("#sign-result")
        assert Report.objects.get(pk=report.pk).status == "draft"

        page.keyboard.press("Alt+c")  # the dialog's shortcut
        page.wait_for_selector("#critical-dialog[open]")
        page.fill("#c-name", "Dr Rivera")
        page.fill("#c-role", "Emergency physician")
        page.select_option("#c-method", "phone")
        page.check("#c-readback")
        page.click("#record-critical")
        page.wait_for_selector("#communications li")
        page.wait_for_selector("#critical-dialog", state="hidden")  # closed on success
        assert "Dr Rivera (Emergency physician)" in page.inner_text("#communications")
        record = CriticalCommunication.objects.get(report=report)
        assert record.read_back_confirmed and record.method == "phone"
        assert abs((timezone.now() - record.communicated_at).total_seconds()) < 120

        # Ctrl+Enter on this STAT report asks once, on the confirm button: Esc goes
        # back to the report unsigned, Enter signs.
        sign_posts = []
        page.on(
            "request",
            lambda request: sign_posts.append(request.url) if "/sign/" in request.url else None,
        )
        page.focus("#f-brain")
        page.keyboard.press("Control+Enter")
        page.wait_for_selector("#sign-final-dialog[open]")
        assert "STAT" in page.inner_text("#sign-final-dialog")
        assert page.evaluate("document.activeElement.id") == "confirm-sign-final"
        page.keyboard.press("Escape")
        page.wait_for_selector("#sign-final-dialog", state="hidden")
        # Back in the field the reader was typing in.
        page.wait_for_function("document.activeElement.id === 'f-brain'", timeout=2000)
        page.wait_for_timeout(300)  # time enough for a request, had one been sent
        assert sign_posts == []
        assert Report.objects.get(pk=report.pk).status == "draft"

        page.focus("#f-brain")
        page.keyboard.press("Control+Enter")
        page.wait_for_selector("#sign-final-dialog[open]")
        page.keyboard.press("Enter")  # sign final
        page.wait_for_selector("#report-locked")
        assert len(sign_posts) == 1
        assert page.inner_text("#report-status") == "Final"
        assert "Acute left subdural haematoma." in page.inner_text("#report-impression")
        assert page.locator("#report-form").count() == 0
        report.refresh_from_db()
        assert report.status == "final" and report.signed_by == reader
        assert Study.objects.get(pk=study.pk).status == "final"

        # Later words go in a signed addendum; the final stays as signed.
        page.fill("#addendum-text", "Also a non-displaced skull fracture.")
        page.click("#sign-addendum")
        page.wait_for_selector("#addendum-1")
        assert "non-displaced skull fracture" in page.inner_text("#addendum-1")
        assert "skull fracture" not in page.inner_text("#report-impression")
        assert report.addenda.get().text == "Also a non-displaced skull fracture."
        assert page.get_attribute("#report-pdf", "href") == f"/api/v1/reports/{report.pk}/pdf"
    finally:
        context.close()


def test_the_images_open_in_the_viewer_window_beside_the_editor(browser, live_server, claimed):
    reader, study = claimed
    viewer = f"{live_server.url}/viewer/?StudyInstanceUIDs={study.study_instance_uid}"
    context = browser.new_context()
    try:
        series = Series.objects.create(
            study=study,
            series_instance_uid=f"{study.study_instance_uid}.1",
            modality="CT",
            series_number=1,
            series_description="Axial",
        )
        page = _sign_in(context, live_server.url, reader.user.username)
        page.goto(f"{live_server.url}/studies/{study.pk}/")
        # A series with no images has no thumbnail: its caption stays, the image goes.
        page.wait_for_selector(f"#series-{series.pk}.thumb-missing")
        assert not page.is_visible(f"#series-{series.pk} img")
        assert "No preview" in page.inner_text(f"#series-{series.pk}")
        assert "Axial" in page.inner_text(f"#series-{series.pk}")
        # One click on the study page (the viewer itself may not be there yet: only
        # the window and its address are the point).
        with page.expect_popup() as opened:
            page.click(f"#open-images-{study.pk}")
        popup = opened.value
        popup.wait_for_load_state()
        # /viewer/?StudyInstanceUIDs=… (the viewer app may redirect to its study route).
        assert popup.url.startswith(f"{live_server.url}/viewer/")
        assert popup.url.endswith(f"?StudyInstanceUIDs={study.study_instance_uid}")
        assert popup.evaluate("window.name") == "telerad-viewer", (
            "the viewer window lost its name: a page served with Cross-Origin-Opener-Policy "
            "and Cross-Origin-Embedder-Policy unlike the opener's starts a new browsing "
            "context group, so the next 'Open images' cannot find the window"
        )

        # The editor's Alt+I, typed in a field, reuses that same window.
        page.goto(f"{live_server.url}/studies/{study.pk}/report/")
        page.click("#start-report")
        page.wait_for_selector("#report-form")
        assert page.get_attribute(f"#open-images-{study.pk}", "title") == (
            "Open the images in the viewer window (Alt+I)"
        )
        page.focus("#f-indication")
        with popup.expect_request(viewer):  # the same window loads the study again
            page.keyboard.press("Alt+i")
        assert len(context.pages) == 2  # no second viewer window
        assert page.input_value("#f-indication") == ""  # nothing typed into the field
    finally:
        context.close()
