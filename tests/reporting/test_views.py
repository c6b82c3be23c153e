"""The report editor page and its htmx endpoints, through Django's test client: who may
see and write what, and that each control reaches the services as typed values."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client

from audit.models import AuditEvent
from reporting.models import CriticalCommunication, Report
from reporting.services.macros import macro_save
from studies.models import Study
from tests.reporting.conftest import NOW

pytestmark = pytest.mark.django_db


def signed_in(user):
    client = Client()
    client.force_login(user)
    return client


def editor_url(study, tail=""):
    return f"/studies/{study.pk}/report/{tail}"


COMPLETE_FORM = {
    "v.indication": "Fall, head strike.",
    "v.technique": "Axial CT without contrast.",
    "v.haemorrhage": "no",
    "v.acute_infarct": "no",
    "v.brain": "No mass effect.",
    "impression": "No acute intracranial finding.",
    "critical_severity": "none",
}


@pytest.fixture
def started(claimed, reader, ct_head):
    client = signed_in(reader.user)
    response = client.post(editor_url(claimed, "start/"), {"template": ct_head.pk})
    assert response.status_code == 302 and response.url == editor_url(claimed)
    return Report.objects.get(study=claimed)


def test_the_holder_starts_a_report_from_a_fitting_template(claimed, reader, ct_head):
    client = signed_in(reader.user)
    page = client.get(editor_url(claimed))
    assert page.status_code == 200
    assert f'<option value="{ct_head.pk}">CT head without contrast (v1)</option>'.encode() in (
        page.content
    )
    client.post(editor_url(claimed, "start/"), {"template": ct_head.pk})
    report = Report.objects.get(study=claimed)
    assert report.author == reader and report.values["brain"].startswith("Grey-white")
    page = client.get(editor_url(claimed))
    assert b'id="report-form"' in page.content and b"Grey-white matter" in page.content
    assert b"Ctrl+Enter" in page.content and b"Ctrl+S" in page.content  # shortcuts documented
    assert AuditEvent.objects.filter(
        action="read", object_type="reporting.report", object_id=str(report.pk)
    ).exists()
    assert AuditEvent.objects.filter(
        action="read", object_type="studies.study", object_id=str(claimed.pk)
    ).exists()


def test_the_study_page_links_to_the_editor(claimed, reader):
    page = signed_in(reader.user).get(f"/studies/{claimed.pk}/")
    assert f'href="{editor_url(claimed)}"'.encode() in page.content
    assert b"Write the report" in page.content


def test_autosave_turns_every_control_into_typed_values(started, claimed, reader):
    form = {
        **COMPLETE_FORM,
        "v.haemorrhage": "yes",
        "v.haemorrhage_type": ["subdural", "subarachnoid"],
        "v.midline_shift": "3.5",
        "v.ventricles": "",
        "critical_severity": "urgent",
    }
    response = signed_in(reader.user).post(editor_url(claimed, "save/"), form)
    assert response.status_code == 200
    assert b'data-state="saved"' in response.content and b"Saved at" in response.content
    report = Report.objects.get(pk=started.pk)
    assert report.version == 2 and report.critical_severity == "urgent"
    assert report.values == {
        "indication": "Fall, head strike.",
        "technique": "Axial CT without contrast.",
        "haemorrhage": True,
        "haemorrhage_type": ["subdural", "subarachnoid"],
        "midline_shift": 3.5,
        "acute_infarct": False,
        "brain": "No mass effect.",
    }
    assert report.impression == "No acute intracranial finding."
    assert AuditEvent.objects.filter(
        action="update", object_type="reporting.report", object_id=str(report.pk)
    ).exists()


def test_a_refused_save_shows_the_services_sentence(started, claimed, reader):
    form = {**COMPLETE_FORM, "v.midline_shift": "a lot"}
    response = signed_in(reader.user).post(editor_url(claimed, "save/"), form)
    assert response.status_code == 400
    assert b'data-state="error"' in response.content
    assert b"&#x27;Midline shift&#x27; must be a number in mm." in response.content
    assert Report.objects.get(pk=started.pk).version == 1


def test_the_readers_macros_are_offered_in_text_fields(started, claimed, reader, tiered):
    macro_save(radiologist=reader, name="Normal brain", text="No acute abnormality.")
    macro_save(radiologist=tiered["regional"], name="Not mine", text="Someone else's.")
    page = signed_in(reader.user).get(editor_url(claimed)).content
    assert b'data-text="No acute abnormality."' in page
    assert b'data-target="f-impression"' in page and b'data-target="f-indication"' in page
    assert b"Not mine" not in page


def test_who_may_see_and_write(started, claimed, reader, tiered, group_admin, staff_a, staff_b):
    # Anonymous: to the sign-in page.
    assert Client().get(editor_url(claimed)).status_code == 302
    # Another reader of the group never had the study: 404 to read and to write.
    other = signed_in(tiered["regional"].user)
    assert other.get(editor_url(claimed)).status_code == 404
    assert other.post(editor_url(claimed, "save/"), COMPLETE_FORM).status_code == 404
    assert other.post(editor_url(claimed, "sign/"), {"status": "final"}).status_code == 404
    # The group admin reads the draft, read-only, and may not write or sign.
    admin = signed_in(group_admin)
    page = admin.get(editor_url(claimed))
    assert page.status_code == 200 and b'id="report-form"' not in page.content
    assert b"Grey-white matter" in page.content
    assert admin.post(editor_url(claimed, "save/"), COMPLETE_FORM).status_code == 403
    refused = admin.post(editor_url(claimed, "sign/"), {**COMPLETE_FORM, "status": "final"})
    assert refused.status_code == 403
    assert Report.objects.get(pk=started.pk).version == 1
    # Facility staff see no draft; staff of another facility not even the study.
    page = signed_in(staff_a).get(editor_url(claimed))
    assert page.status_code == 200 and b"No report to show" in page.content
    assert b"Grey-white" not in page.content
    assert signed_in(staff_b).get(editor_url(claimed)).status_code == 404


def test_critical_finding_sign_refused_until_communicated_then_locked(
    started, claimed, reader, staff_a
):
    client = signed_in(reader.user)
    form = {**COMPLETE_FORM, "critical_severity": "critical", "impression": "Acute subdural."}
    refused = client.post(editor_url(claimed, "sign/"), {**form, "status": "final"})
    assert refused.status_code == 400 and refused["HX-Retarget"] == "#sign-result"
    assert b"must be communicated" in refused.content
    report = Report.objects.get(pk=started.pk)
    assert report.status == "draft" and report.impression == "Acute subdural."  # words kept
    clock = client.get(editor_url(claimed)).content
    assert b'id="critical-clock"' in clock and b"the group's admins are alerted" in clock

    when = (NOW - dt.timedelta(minutes=2)).isoformat()
    dialog = {
        "recipient_name": "Dr Rivera",
        "recipient_role": "Emergency physician",
        "method": "phone",
        "communicated_at": when,
        "read_back_confirmed": "on",
    }
    missing = client.post(
        editor_url(claimed, "critical-communications/"), {**dialog, "recipient_name": ""}
    )
    assert missing.status_code == 400 and b"Say who was told." in missing.content
    assert missing["HX-Retarget"] == "#critical-error"
    recorded = client.post(editor_url(claimed, "critical-communications/"), dialog)
    assert recorded.status_code == 200 and b"Dr Rivera (Emergency physician)" in recorded.content
    record = CriticalCommunication.objects.get(report=report)
    assert record.read_back_confirmed and record.communicated_at == NOW - dt.timedelta(minutes=2)

    signed = client.post(
        editor_url(claimed, "sign/"), {**form, "status": "final"}, HTTP_HX_REQUEST="true"
    )
    assert signed.status_code == 200 and signed["HX-Redirect"] == editor_url(claimed)
    report = Report.objects.get(pk=started.pk)
    assert report.status == "final" and report.signed_by == reader
    assert Study.objects.get(pk=claimed.pk).status == "final"
    page = client.get(editor_url(claimed)).content
    assert b'id="report-form"' not in page and b'id="report-locked"' in page
    assert b"Acute subdural." in page and b'id="addendum-form"' in page
    locked = client.post(editor_url(claimed, "save/"), form)
    assert locked.status_code == 409 and b"final and locked" in locked.content

    added = client.post(editor_url(claimed, "addenda/"), {"text": "Also a small fracture."})
    assert added.status_code == 302
    assert report.addenda.get().text == "Also a small fracture."
    assert b"Also a small fracture." in client.get(editor_url(claimed)).content
    # Facility staff now read the final, without the addendum form.
    page = signed_in(staff_a).get(editor_url(claimed)).content
    assert b"Acute subdural." in page and b'id="addendum-form"' not in page


def test_preliminary_then_final(started, claimed, reader):
    client = signed_in(reader.user)
    response = client.post(editor_url(claimed, "sign/"), {**COMPLETE_FORM, "status": "preliminary"})
    assert response.status_code == 302
    assert Report.objects.get(pk=started.pk).status == "preliminary"
    page = client.get(editor_url(claimed)).content
    assert b'id="report-form"' in page and b'data-status="preliminary"' in page
    client.post(editor_url(claimed, "sign/"), {**COMPLETE_FORM, "status": "final"})
    assert Report.objects.get(pk=started.pk).status == "final"


def test_a_missing_required_field_refuses_the_signature(started, claimed, reader):
    form = {**COMPLETE_FORM, "v.indication": ""}
    refused = signed_in(reader.user).post(editor_url(claimed, "sign/"), {**form, "status": "final"})
    assert refused.status_code == 400
    assert b"&#x27;Indication&#x27; is required before signing." in refused.content


def test_marking_critical_shows_the_alert_clock_at_once(started, claimed, reader, settings):
    settings.CRITICAL_RESULT_COMMUNICATION_MINUTES = 20
    client = signed_in(reader.user)
    response = client.post(
        editor_url(claimed, "save/"), {**COMPLETE_FORM, "critical_severity": "critical"}
    )
    body = response.content.decode()
    assert 'id="critical-clock-slot" hx-swap-oob="true"' in body
    marked = Report.objects.get(pk=started.pk).critical_marked_at
    due = marked + dt.timedelta(minutes=20)
    assert f"by {due:%H:%M} UTC, the group's admins are alerted" in body
    response = client.post(editor_url(claimed, "save/"), COMPLETE_FORM)
    assert "critical-clock-slot" in response.content.decode()
    assert "admins are alerted" not in response.content.decode()  # no longer critical


def test_only_templates_that_fit_the_study_are_offered(claimed, reader, templates):
    page = signed_in(reader.user).get(editor_url(claimed)).content.decode()
    assert "CT head without contrast" in page
    for other in ("MRI knee", "MRI brain", "Chest radiograph", "Mammography screening"):
        assert other not in page
    assert "Other templates" not in page
