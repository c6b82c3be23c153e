"""The signed report as a PDF: who may fetch it, that it parses, and what it prints."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from pypdf import PdfReader

from audit.models import AuditEvent
from reporting.models import Report
from reporting.pdf import report_pdf
from reporting.selectors import report_pdf_facts
from reporting.services.critical import critical_communication_record
from reporting.services.reports import report_addendum_add, report_save_draft, report_sign
from tests.reporting.conftest import COMPLETE_VALUES, NOW

pytestmark = pytest.mark.django_db

# Markup characters in a report's words must print as themselves.
IMPRESSION = "Acute left subdural haematoma <5 mm> & no midline shift."


def text_of(document: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(document)).pages)


@pytest.fixture
def draft(claimed, reader, ct_head):
    return report_save_draft(
        study_id=claimed.pk,
        radiologist=reader,
        template_id=ct_head.pk,
        values={**COMPLETE_VALUES, "haemorrhage": True, "midline_shift": 0},
        impression=IMPRESSION,
        critical_severity="critical",
    )


@pytest.fixture
def final(draft, reader):
    critical_communication_record(
        report_id=draft.pk,
        radiologist=reader,
        recipient_name="Dr Rivera",
        recipient_role="Emergency physician",
        method="phone",
        communicated_at=NOW - dt.timedelta(minutes=1),
        read_back_confirmed=True,
    )
    report_sign(report_id=draft.pk, radiologist=reader, status="final")
    report_addendum_add(report_id=draft.pk, radiologist=reader, text="Also a skull fracture.")
    return Report.objects.get(pk=draft.pk)


def test_the_reader_downloads_a_readable_pdf_and_it_is_audited(api, final, reader, claimed):
    response = api(reader.user).get(f"/api/v1/reports/{final.pk}/pdf")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert f'filename="{claimed.accession_number}.pdf"' in response["Content-Disposition"]
    assert response.content.startswith(b"%PDF")
    text = text_of(response.content)
    for expected in (
        "Facility A",  # header: the facility
        claimed.patient_id,
        "Intracranial haemorrhage",  # a section's field and its value
        IMPRESSION,
        "Actionable finding: Critical",
        "Dr Rivera (Emergency physician) by telephone, read-back confirmed",
        f"Electronically signed (final) by {reader.display_name}",
        "Addendum 1",
        "Also a skull fracture.",
    ):
        assert expected in text, expected
    event = AuditEvent.objects.get(action="export", object_type="reporting.report")
    assert event.object_id == str(final.pk) and event.patient_id == claimed.patient_id
    assert event.detail == {"format": "pdf", "addenda": 1}


def test_same_reach_as_the_hl7_and_fhir_results(
    api, final, claimed, tiered, group_admin, other_admin, staff_a, staff_b
):
    url = f"/api/v1/reports/{final.pk}/pdf"
    for user in (group_admin, staff_a):
        assert api(user).get(url).status_code == 200
        assert api(user).get(f"/api/v1/reports/{final.pk}/hl7").status_code == 200
    for user in (staff_b, other_admin, tiered["regional"].user):
        assert api(user).get(url).status_code == 404
        assert api(user).get(f"/api/v1/reports/{final.pk}/hl7").status_code == 404
    assert api(None).get(url).status_code in (401, 403)
    assert AuditEvent.objects.filter(action="export", object_type="reporting.report").count() == 2


def test_no_pdf_before_the_report_is_final(api, draft, reader, staff_a):
    response = api(reader.user).get(f"/api/v1/reports/{draft.pk}/pdf")
    assert response.status_code == 404
    assert response.json()["detail"] == "No PDF yet: the report is not final."
    assert api(staff_a).get(f"/api/v1/reports/{draft.pk}/pdf").status_code == 404


def test_a_copy_without_the_patients_identity_and_uncompressed(final, claimed):
    facts = report_pdf_facts(report=final, now=NOW, identified=False)
    document = report_pdf(facts, compress=False)
    assert document.startswith(b"%PDF") and b"/FlateDecode" not in document
    text = text_of(document)
    assert "Patient details withheld in this copy." in text
    assert claimed.patient_id not in text and IMPRESSION in text


def test_the_editor_and_study_pages_link_to_the_pdf(final, reader, claimed):
    from django.test import Client

    client = Client()
    client.force_login(reader.user)
    link = f'href="/api/v1/reports/{final.pk}/pdf"'.encode()
    assert link in client.get(f"/studies/{claimed.pk}/report/").content
    assert link in client.get(f"/studies/{claimed.pk}/").content
    # Session authentication: the link works from the page.
    assert client.get(f"/api/v1/reports/{final.pk}/pdf").content.startswith(b"%PDF")
