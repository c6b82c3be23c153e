"""The admin: templates added through the service (a known code adds a version), reports
read-only and scoped."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from reporting.models import ReportTemplate
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def root_client():
    client = Client()
    client.force_login(f.UserFactory(username="root", is_superuser=True, is_staff=True))
    return client


def _form(template, **changes):
    data = {
        "reading_group": "",
        "code": template.code,
        "name": template.name,
        "modality": template.modality,
        "body_parts": json.dumps(template.body_parts),
        "procedure_codes": json.dumps(template.procedure_codes),
        "schema": json.dumps(template.schema),
    }
    data.update(changes)
    return data


def test_adding_a_known_code_makes_its_next_version(root_client, ct_head):
    response = root_client.post(
        "/admin/reporting/reporttemplate/add/", _form(ct_head, name="CT head (v2)")
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    versions = ReportTemplate.objects.filter(code=ct_head.code).order_by("version")
    assert [(t.version, t.is_active) for t in versions] == [(1, False), (2, True)]
    assert versions[1].name == "CT head (v2)"


def test_an_invalid_schema_is_shown_on_the_form(root_client, ct_head):
    response = root_client.post(
        "/admin/reporting/reporttemplate/add/",
        _form(ct_head, code="broken", schema=json.dumps({"sections": []})),
    )
    assert response.status_code == 200
    assert "non-empty &#x27;sections&#x27; list" in response.content.decode()
    assert not ReportTemplate.objects.filter(code="broken").exists()


def test_reports_are_read_only_in_the_admin(root_client, claimed, reader, ct_head):
    from reporting.services.reports import report_save_draft

    report = report_save_draft(study_id=claimed.pk, radiologist=reader, template_id=ct_head.pk)
    page = root_client.get(f"/admin/reporting/report/{report.pk}/change/")
    assert page.status_code == 200
    assert root_client.get("/admin/reporting/report/add/").status_code == 403
    assert root_client.get("/admin/reporting/report/").status_code == 200
