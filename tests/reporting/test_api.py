"""The reporting API: who may read and write what, the 4xx answers, and templates."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from reporting.models import Report, ReportTemplate
from tests import factories as f
from tests.reporting.conftest import COMPLETE_VALUES, NOW

pytestmark = pytest.mark.django_db


def save(client, study, **body):
    return client.post(f"/api/v1/studies/{study.pk}/report/", body, format="json")


@pytest.fixture
def drafted(api, claimed, reader, ct_head):
    response = save(
        api(reader.user),
        claimed,
        template=ct_head.pk,
        values=COMPLETE_VALUES,
        impression="No acute intracranial finding.",
    )
    assert response.status_code == 200, response.json()
    return Report.objects.get(pk=response.json()["id"])


@pytest.fixture
def final(api, drafted, reader):
    response = api(reader.user).post(
        f"/api/v1/reports/{drafted.pk}/sign/", {"status": "final"}, format="json"
    )
    assert response.status_code == 200, response.json()
    return Report.objects.get(pk=drafted.pk)


def test_the_claimer_drafts_and_reads_the_report(api, drafted, reader, claimed):
    client = api(reader.user)
    body = client.get(f"/api/v1/studies/{claimed.pk}/report/").json()
    assert body["status"] == "draft" and body["template_code"] == "ct-head-noncontrast"
    assert body["values"]["indication"] == "Fall, head strike."
    assert body["values"]["brain"].startswith("Grey-white")  # the normal text
    update = save(client, claimed, values={**body["values"], "midline_shift": 2}, impression="x")
    assert update.status_code == 200 and update.json()["version"] == 2
    versions = client.get(f"/api/v1/reports/{drafted.pk}/versions/").json()
    assert [v["number"] for v in versions] == [1, 2]
    assert AuditEvent.objects.filter(
        object_type="reporting.report", object_id=str(drafted.pk), action="read"
    ).exists()


def test_invalid_values_are_a_clear_400(api, drafted, reader, claimed):
    response = save(api(reader.user), claimed, values={"midline_shift": "a lot"})
    assert response.status_code == 400
    assert response.json()["detail"] == "'Midline shift' must be a number in mm."
    response = save(api(reader.user), claimed, critical_severity="apocalyptic")
    assert response.status_code == 400 and "critical_severity" in response.json()


def test_only_the_claimer_writes_and_signs(
    api, drafted, claimed, tiered, group_admin, staff_a, unlicensed_reader
):
    # Another reader of the group cannot see the study at all.
    assert save(api(tiered["regional"].user), claimed, impression="x").status_code == 404
    assert (
        api(tiered["regional"].user)
        .post(f"/api/v1/reports/{drafted.pk}/sign/", {"status": "final"}, format="json")
        .status_code
        == 404
    )
    # The group admin may read, but not write or sign.
    assert api(group_admin).get(f"/api/v1/reports/{drafted.pk}/").status_code == 200
    assert save(api(group_admin), claimed, impression="x").status_code == 403
    signed = api(group_admin).post(
        f"/api/v1/reports/{drafted.pk}/sign/", {"status": "final"}, format="json"
    )
    assert signed.status_code == 403
    # Facility staff see no draft.
    assert api(staff_a).get(f"/api/v1/reports/{drafted.pk}/").status_code == 404
    assert api(staff_a).get(f"/api/v1/studies/{claimed.pk}/report/").status_code == 404
    assert Report.objects.get(pk=drafted.pk).status == "draft"


def test_sign_refusals_are_4xx_with_a_message(api, claimed, reader, ct_head):
    client = api(reader.user)
    report_id = save(client, claimed, template=ct_head.pk, values=COMPLETE_VALUES).json()["id"]
    response = client.post(f"/api/v1/reports/{report_id}/sign/", {"status": "final"}, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "detail": "The impression cannot be empty.",
        "code": "incomplete_report",
    }
    save(client, claimed, impression="Bleed.", critical_severity="critical")
    response = client.post(f"/api/v1/reports/{report_id}/sign/", {"status": "final"}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "critical_not_communicated"
    bad = client.post(f"/api/v1/reports/{report_id}/sign/", {"status": "draft"}, format="json")
    assert bad.status_code == 400


def test_critical_communication_then_sign_then_addendum(api, drafted, reader, claimed):
    client = api(reader.user)
    save(client, claimed, critical_severity="critical")
    url = f"/api/v1/reports/{drafted.pk}/critical-communications/"
    record = client.post(
        url,
        {
            "recipient_name": "Dr. Lee",
            "recipient_role": "ED attending",
            "method": "phone",
            "communicated_at": NOW.isoformat(),
            "read_back_confirmed": True,
        },
        format="json",
    )
    assert record.status_code == 201, record.json()
    assert client.get(url).json()[0]["recipient_name"] == "Dr. Lee"
    signed = client.post(f"/api/v1/reports/{drafted.pk}/sign/", {"status": "final"}, format="json")
    assert signed.status_code == 200 and signed.json()["status"] == "final"
    locked = save(client, claimed, impression="Changed my mind.")
    assert locked.status_code == 409 and "addendum" in locked.json()["detail"]
    added = client.post(
        f"/api/v1/reports/{drafted.pk}/addenda/", {"text": "Also a small fracture."}, format="json"
    )
    assert added.status_code == 201 and added.json()["number"] == 1
    body = client.get(f"/api/v1/reports/{drafted.pk}/").json()
    assert body["impression"] == "No acute intracranial finding."
    assert [a["text"] for a in body["addenda"]] == ["Also a small fracture."]


def test_facility_staff_read_only_their_facilitys_finals(api, final, claimed, staff_a, staff_b):
    assert api(staff_a).get(f"/api/v1/reports/{final.pk}/").status_code == 200
    assert api(staff_a).get(f"/api/v1/studies/{claimed.pk}/report/").json()["status"] == "final"
    rows = api(staff_a).get("/api/v1/reports/").json()["results"]
    assert [r["id"] for r in rows] == [final.pk]
    assert api(staff_b).get(f"/api/v1/reports/{final.pk}/").status_code == 404
    assert api(staff_b).get("/api/v1/reports/").json()["results"] == []
    assert api(None).get(f"/api/v1/reports/{final.pk}/").status_code in (401, 403)
    # Staff read; they do not add addenda.
    response = api(staff_a).post(
        f"/api/v1/reports/{final.pk}/addenda/", {"text": "x"}, format="json"
    )
    assert response.status_code == 403


def test_other_groups_admin_sees_nothing(api, final, other_admin):
    assert api(other_admin).get(f"/api/v1/reports/{final.pk}/").status_code == 404
    assert api(other_admin).get("/api/v1/reports/").json()["results"] == []


def test_templates_list_for_readers_and_export_import_round_trip(
    api, templates, reader, group_admin, group_a, staff_a
):
    rows = api(reader.user).get("/api/v1/report-templates/", {"is_active": True}).json()
    assert len(rows["results"]) == 8
    assert api(staff_a).get("/api/v1/report-templates/").json()["results"] == []
    mammo = templates["mg-screening"]
    exported = api(reader.user).get(f"/api/v1/report-templates/{mammo.pk}/export/").json()
    assert exported["code"] == "mg-screening" and exported["version"] == 1
    # A reader may not import or create.
    assert (
        api(reader.user)
        .post("/api/v1/report-templates/import/", exported, format="json")
        .status_code
        == 403
    )
    # An admin imports it under a new code into their group.
    response = api(group_admin).post(
        "/api/v1/report-templates/import/",
        {**exported, "code": "mg-screening-group-a"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    created = ReportTemplate.objects.get(pk=response.json()["id"])
    assert created.reading_group == group_a and created.schema == mammo.schema
    refused = api(reader.user).post("/api/v1/report-templates/", exported, format="json")
    assert refused.status_code == 403
    assert refused.json()["detail"] == "Only group admins add templates."
    # The shared library's code belongs to the library.
    clash = api(group_admin).post("/api/v1/report-templates/", exported, format="json")
    assert clash.status_code == 403


def test_an_invalid_template_is_a_clear_400(api, group_admin, group_a):
    response = api(group_admin).post(
        "/api/v1/report-templates/",
        {"code": "bad", "name": "Bad", "schema": {"sections": []}},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["detail"] == "The schema needs a non-empty 'sections' list."


def test_a_new_version_keeps_old_reports_on_theirs(api, drafted, group_admin, group_a, ct_head):
    # Shared library: only a superuser versions it.
    url = f"/api/v1/report-templates/{ct_head.pk}/new-version/"
    assert api(group_admin).post(url, {"name": "CT head v2"}, format="json").status_code == 403
    root = f.UserFactory(username="root", is_superuser=True, is_staff=True)
    response = api(root).post(url, {"name": "CT head v2"}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["version"] == 2
    ct_head.refresh_from_db()
    assert ct_head.is_active is False
    assert Report.objects.get(pk=drafted.pk).template_id == ct_head.pk


def test_group_admin_creates_and_versions_their_own_template(api, group_admin, group_a):
    schema = {
        "sections": [
            {
                "key": "findings",
                "title": "Findings",
                "fields": [{"key": "hip", "label": "Hip", "type": "text", "required": True}],
            }
        ]
    }
    created = api(group_admin).post(
        "/api/v1/report-templates/",
        {"code": "xr-hip", "name": "Hip radiograph", "modality": "dx", "schema": schema},
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert created.json()["modality"] == "DX" and created.json()["reading_group"] == group_a.pk
    again = api(group_admin).post(
        f"/api/v1/report-templates/{created.json()['id']}/new-version/",
        {"body_parts": ["hip"]},
        format="json",
    )
    assert again.status_code == 201 and again.json()["version"] == 2
    assert again.json()["body_parts"] == ["HIP"]


def test_macros_belong_to_their_radiologist(api, reader, tiered, staff_a):
    client = api(reader.user)
    made = client.post(
        "/api/v1/me/macros/", {"name": "normal head", "text": "No acute finding."}, format="json"
    )
    assert made.status_code == 201, made.json()
    duplicate = client.post("/api/v1/me/macros/", {"name": "normal head", "text": "x"})
    assert duplicate.status_code == 409
    assert [m["name"] for m in client.get("/api/v1/me/macros/").json()["results"]] == [
        "normal head"
    ]
    other = api(tiered["regional"].user)
    assert other.get("/api/v1/me/macros/").json()["results"] == []
    assert other.delete(f"/api/v1/me/macros/{made.json()['id']}/").status_code == 404
    renamed = client.patch(
        f"/api/v1/me/macros/{made.json()['id']}/", {"name": "nml head"}, format="json"
    )
    assert renamed.status_code == 200 and renamed.json()["name"] == "nml head"
    assert client.delete(f"/api/v1/me/macros/{made.json()['id']}/").status_code == 204
    assert api(staff_a).get("/api/v1/me/macros/").status_code == 403


def test_the_report_list_costs_a_fixed_number_of_queries(
    api, final, staff_a, django_assert_max_num_queries
):
    with django_assert_max_num_queries(12):
        response = api(staff_a).get("/api/v1/reports/")
    assert response.status_code == 200 and len(response.json()["results"]) == 1


def test_templates_that_fit_a_study(api, templates, reader, claimed, staff_b):
    rows = api(reader.user).get("/api/v1/report-templates/", {"study": claimed.pk}).json()
    assert [r["code"] for r in rows["results"]] == ["ct-head-noncontrast"]
    assert api(reader.user).get("/api/v1/report-templates/", {"study": "x"}).status_code == 400
    assert api(staff_b).get("/api/v1/report-templates/", {"study": claimed.pk}).status_code == 404


def test_a_template_of_another_group_cannot_be_used(api, claimed, reader, other_admin, group_c):
    from reporting.services.templates import report_template_create

    foreign = report_template_create(
        actor=other_admin,
        reading_group=group_c,
        document={
            "code": "c-only",
            "name": "Group C only",
            "schema": {
                "sections": [
                    {
                        "key": "s",
                        "title": "S",
                        "fields": [{"key": "x", "label": "X", "type": "text"}],
                    }
                ]
            },
        },
    )
    response = save(api(reader.user), claimed, template=foreign.pk)
    assert response.status_code == 400 and response.json()["detail"] == "No such active template."
