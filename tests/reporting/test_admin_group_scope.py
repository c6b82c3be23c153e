"""The reporting admin for group admins: usable, and scoped to their reading groups."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from audit.models import AuditEvent
from reporting.models import FacilityEndpoint, ReportTemplate
from reporting.services.reports import report_save_draft
from reporting.services.templates import report_template_create

pytestmark = pytest.mark.django_db


def signed_in(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def endpoints(facility_a, facility_c):
    return {
        "a": FacilityEndpoint.objects.create(
            facility=facility_a, kind="mllp", host="ris-a.example", port=2575
        ),
        "c": FacilityEndpoint.objects.create(
            facility=facility_c, kind="mllp", host="ris-c.example", port=2575
        ),
    }


@pytest.fixture
def group_c_template(group_c, ct_head):
    document = {
        "code": "group-c-head",
        "name": "Group C head",
        "modality": "CT",
        "schema": ct_head.schema,
    }
    return report_template_create(actor=None, reading_group=group_c, document=document)


def test_group_admin_reads_their_groups_reports_only(
    claimed, reader, ct_head, group_admin, other_admin
):
    report = report_save_draft(study_id=claimed.pk, radiologist=reader, template_id=ct_head.pk)
    mine = signed_in(group_admin)
    listing = mine.get("/admin/reporting/report/")
    assert listing.status_code == 200
    assert f"/admin/reporting/report/{report.pk}/change/".encode() in listing.content
    assert mine.get(f"/admin/reporting/report/{report.pk}/change/").status_code == 200
    assert mine.get("/admin/reporting/report/add/").status_code == 403
    other = signed_in(other_admin)
    assert f"/admin/reporting/report/{report.pk}/".encode() not in (
        other.get("/admin/reporting/report/").content
    )
    assert other.get(f"/admin/reporting/report/{report.pk}/change/").status_code == 302


def test_group_admin_sees_the_shared_library_and_their_own_templates(
    ct_head, group_c_template, group_admin, other_admin
):
    listing = signed_in(group_admin).get("/admin/reporting/reporttemplate/").content.decode()
    assert "ct-head-noncontrast" in listing and "group-c-head" not in listing
    listing = signed_in(other_admin).get("/admin/reporting/reporttemplate/").content.decode()
    assert "ct-head-noncontrast" in listing and "group-c-head" in listing


def test_group_admin_adds_a_template_only_for_their_group(ct_head, group_a, group_c, group_admin):
    client = signed_in(group_admin)
    form = {
        "code": "a-head",
        "name": "Group A head",
        "modality": "CT",
        "body_parts": "[]",
        "procedure_codes": "[]",
        "schema": json.dumps(ct_head.schema),
    }
    refused = client.post(
        "/admin/reporting/reporttemplate/add/", {**form, "reading_group": group_c.pk}
    )
    assert refused.status_code == 200 and not ReportTemplate.objects.filter(code="a-head").exists()
    added = client.post(
        "/admin/reporting/reporttemplate/add/", {**form, "reading_group": group_a.pk}
    )
    assert added.status_code == 302
    assert ReportTemplate.objects.get(code="a-head").reading_group == group_a


def test_group_admin_manages_their_facilities_endpoints_only_and_audited(
    endpoints, facility_a, facility_c, group_admin
):
    client = signed_in(group_admin)
    listing = client.get("/admin/reporting/facilityendpoint/").content.decode()
    assert "ris-a.example" in listing and "ris-c.example" not in listing
    assert (
        client.get(f"/admin/reporting/facilityendpoint/{endpoints['c'].pk}/change/").status_code
        == 302
    )
    page = client.get("/admin/reporting/facilityendpoint/add/")
    choices = [str(c) for c in page.context["adminform"].form.fields["facility"].queryset]
    assert "Facility C" not in choices
    change = {
        "facility": facility_a.pk,
        "kind": "mllp",
        "host": "ris-a2.example",
        "port": "2576",
        "url": "",
        "receiving_application": "RIS",
        "receiving_facility": "",
        "timeout_seconds": "10",
        "active": "on",
    }
    response = client.post(f"/admin/reporting/facilityendpoint/{endpoints['a'].pk}/change/", change)
    assert response.status_code == 302, response.content[:2000]
    endpoints["a"].refresh_from_db()
    assert (endpoints["a"].host, endpoints["a"].port) == ("ris-a2.example", 2576)
    event = AuditEvent.objects.get(
        action="update", object_type="reporting.facilityendpoint", object_id=str(endpoints["a"].pk)
    )
    assert event.actor == group_admin and event.detail["host"] == [
        "ris-a.example",
        "ris-a2.example",
    ]
    # Another group's facility cannot be given an endpoint through the form.
    stolen = client.post(
        "/admin/reporting/facilityendpoint/add/", {**change, "facility": facility_c.pk}
    )
    assert stolen.status_code == 200
    assert FacilityEndpoint.objects.get(facility=facility_c).host == "ris-c.example"
    # The list's bulk delete is audited one by one too.
    response = client.post(
        "/admin/reporting/facilityendpoint/",
        {"action": "delete_selected", "_selected_action": [endpoints["a"].pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert not FacilityEndpoint.objects.filter(facility=facility_a).exists()
    assert AuditEvent.objects.filter(
        action="delete", object_type="reporting.facilityendpoint", object_id=str(endpoints["a"].pk)
    ).exists()


def test_facility_staff_and_readers_have_no_reporting_admin(staff_a, reader):
    for user in (staff_a, reader.user):
        assert signed_in(user).get("/admin/reporting/report/").status_code == 302
