"""The report editor in the reading flow: the images one click (or Alt+I) away in the
viewer window, a final signature that asks once, and a clock that stops when final."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import time_machine
from django.test import Client

from reporting.services.reports import report_save_draft, report_sign
from studies.models import Study
from tests.reporting.conftest import COMPLETE_VALUES, NOW

pytestmark = pytest.mark.django_db


def signed_in(user):
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


def _editor(client, study):
    return client.get(f"/studies/{study.pk}/report/")


def _viewer_link(study):
    return f'href="/viewer/?StudyInstanceUIDs={study.study_instance_uid}" target="telerad-viewer"'


def _tag(page, element_id):
    """The opening tag of the element with ``element_id``."""
    found = re.search(rf"<[a-z]+ [^>]*id=\"{element_id}\"[^>]*>", page)
    assert found, element_id
    return found.group(0)


def test_the_editor_links_to_the_images_with_its_shortcut(claimed, reader, ct_head):
    report_save_draft(study_id=claimed.pk, radiologist=reader, template_id=ct_head.pk)
    page = _editor(signed_in(reader.user), claimed).content.decode()
    assert _viewer_link(claimed) in page
    assert 'title="Open the images in the viewer window (Alt+I)"' in page
    assert 'aria-keyshortcuts="Alt+I"' in page and "<kbd>Alt+I</kbd>" in page


def test_who_sees_the_images_link_in_the_editor(claimed, reader, staff_a, staff_b, tiered):
    # Facility staff of the study's facility see the study (read-only), so its images.
    assert _viewer_link(claimed) in _editor(signed_in(staff_a), claimed).content.decode()
    for outsider in (staff_b, tiered["regional"].user):
        response = _editor(signed_in(outsider), claimed)
        assert response.status_code == 404 and b"/viewer/" not in response.content


def test_signing_final_asks_once_in_a_dialog(claimed, reader, ct_head):
    report_save_draft(study_id=claimed.pk, radiologist=reader, template_id=ct_head.pk)
    page = _editor(signed_in(reader.user), claimed).content.decode()
    button = _tag(page, "sign-final")
    # The button (and Ctrl+Enter) only opens the dialog: it posts nothing itself.
    assert "hx-post" not in button and 'aria-controls="sign-final-dialog"' in button
    assert '<dialog id="sign-final-dialog"' in page
    confirm = page.split('id="confirm-sign-final"', 1)[1].split(">", 1)[0]
    assert '/report/sign/"' in confirm and '"status": "final"' in confirm
    assert "Cancel <kbd>Esc</kbd>" in page
    # Signing preliminary is unchanged: straight from its button.
    preliminary = page.split('id="sign-preliminary"', 1)[1].split(">", 1)[0]
    assert '"status": "preliminary"' in preliminary


def test_the_editor_clock_counts_down_then_stops_at_final(claimed, reader, ct_head):
    client = signed_in(reader.user)
    Study.objects.filter(pk=claimed.pk).update(
        received_at=NOW - dt.timedelta(hours=1), sla_due_at=NOW - dt.timedelta(minutes=10)
    )
    with time_machine.travel(NOW, tick=False):
        page = _editor(client, claimed).content.decode()
    assert ">overdue by 10m</span>" in page and 'class="sla overdue"' in page
    report = report_save_draft(
        study_id=claimed.pk,
        radiologist=reader,
        template_id=ct_head.pk,
        values=COMPLETE_VALUES,
        impression="No acute intracranial finding.",
    )
    report_sign(report_id=report.pk, radiologist=reader, status="final")
    page = _editor(client, claimed).content.decode()
    assert "Final</p>" in page
    assert "data-due" not in page and "due in" not in page and "overdue by" not in page


def test_the_editor_shows_the_patients_age(claimed, reader):
    Study.objects.filter(pk=claimed.pk).update(
        patient_birth_date=dt.date(2026, 5, 20), study_date=dt.date(2026, 6, 1)
    )
    page = _editor(signed_in(reader.user), claimed).content.decode()
    assert '(<span id="patient-age">12 d</span>)' in page
