"""The audit trail is kept per reading group: every event names its group, a group's
admin reads only their groups' events (and those of their groups' people), site
operators read all; reading the trail is itself audited."""

from __future__ import annotations

import csv
import io

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from alerts.services import alert_raise
from audit.models import AuditEvent
from audit.services import audit_record, audit_record_many, group_path, reading_group_of
from reporting.models import Report
from studies.models import Study
from tests import factories as f

pytestmark = pytest.mark.django_db


def grant_audit(user):
    user.user_permissions.add(Permission.objects.get(codename="view_auditevent"))
    return user


@pytest.fixture
def auditor_a(group_admin):
    return grant_audit(group_admin)


@pytest.fixture
def auditor_c(other_admin):
    return grant_audit(other_admin)


@pytest.fixture
def study_a(facility_a):
    return f.StudyFactory(facility=facility_a, patient_id="PAT-A")


@pytest.fixture
def study_c(facility_c):
    return f.StudyFactory(facility=facility_c, patient_id="PAT-C")


def test_each_event_names_the_reading_group_of_its_object(study_a, group_a, licensed_reader):
    event = audit_record(actor=None, action="read", obj=study_a, patient_id="PAT-A")
    assert event.reading_group_id == group_a.pk
    # From the object's relations, whatever the model: a reader's license, a group.
    assert reading_group_of(licensed_reader.licenses.get()) == group_a.pk
    assert reading_group_of(group_a) == group_a.pk
    assert group_path(Report) == "study__facility__reading_group_id"
    # And for a list, by the objects' ids (one query).
    audit_record_many(
        actor=None,
        action="list",
        object_type="studies.study",
        items=[(str(study_a.pk), "PAT-A")],
    )
    listed = AuditEvent.objects.filter(action="list").get()
    assert listed.reading_group_id == group_a.pk
    # Anything the trail cannot place stays site-wide (site operators only).
    assert audit_record(actor=None, action="read", object_type="x.y").reading_group_id is None


def test_the_services_audit_with_the_group(api, group_admin, group_a):
    response = api(group_admin).post(
        "/api/v1/facilities/",
        {
            "name": "New",
            "reading_group": group_a.pk,
            "jurisdiction": f.JurisdictionFactory().code,
            "region": f.RegionFactory().code,
            "timezone": "UTC",
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    created = AuditEvent.objects.get(action="create", object_type="network.facility")
    assert created.reading_group_id == group_a.pk


def test_a_group_admin_reads_only_their_groups_trail(api, auditor_a, study_a, study_c):
    audit_record(actor=None, action="read", obj=study_a, patient_id="PAT-A")
    audit_record(actor=None, action="read", obj=study_c, patient_id="PAT-C")
    body = api(auditor_a).get("/api/v1/audit-events/").json()
    patients = {row["patient_id"] for row in body["results"]}
    assert "PAT-A" in patients and "PAT-C" not in patients
    export = api(auditor_a).get("/api/v1/audit-events/export/")
    rows = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert "PAT-A" in {r[6] for r in rows} and "PAT-C" not in {r[6] for r in rows}
    other = AuditEvent.objects.get(patient_id="PAT-C", action="read")
    assert api(auditor_a).get(f"/api/v1/audit-events/{other.pk}/").status_code == 404


def test_a_group_admin_reads_their_members_events_elsewhere(api, auditor_a, staff_a):
    # A sign-in of one of group A's people, site-wide (no object of a group).
    audit_record(actor=staff_a, action="login", object_type="auth.user")
    body = api(auditor_a).get("/api/v1/audit-events/", {"action": "login"}).json()
    assert [row["actor_username"] for row in body["results"]] == ["staff_a"]


def test_site_operators_read_the_whole_trail(api, study_a, study_c):
    operator = f.UserFactory(username="operator", is_superuser=True, is_staff=True)
    audit_record(actor=None, action="read", obj=study_a, patient_id="PAT-A")
    audit_record(actor=None, action="read", obj=study_c, patient_id="PAT-C")
    body = api(operator).get("/api/v1/audit-events/", {"action": "read"}).json()
    assert {row["patient_id"] for row in body["results"]} >= {"PAT-A", "PAT-C"}


def test_reading_the_trail_is_audited(api, auditor_a, study_a, group_a):
    audit_record(actor=None, action="read", obj=study_a, patient_id="PAT-A")
    api(auditor_a).get("/api/v1/audit-events/")
    read = AuditEvent.objects.get(
        actor=auditor_a, object_type="audit.auditevent", action="list", patient_id="PAT-A"
    )
    assert read.reading_group_id == group_a.pk


def test_the_django_admin_trail_is_scoped_and_audited(auditor_a, study_a, study_c):
    audit_record(actor=None, action="read", obj=study_a, patient_id="PAT-A")
    audit_record(actor=None, action="read", obj=study_c, patient_id="PAT-C")
    client = Client()
    client.force_login(auditor_a)
    page = client.get("/admin/audit/auditevent/")
    assert page.status_code == 200
    assert "PAT-A" in page.content.decode() and "PAT-C" not in page.content.decode()
    assert AuditEvent.objects.filter(
        actor=auditor_a, object_type="audit.auditevent", patient_id="PAT-A"
    ).exists()


def test_many_to_many_changes_are_in_the_diff(api, group_admin, licensed_reader):
    f.subspecialty("msk")
    response = api(group_admin).patch(
        f"/api/v1/radiologists/{licensed_reader.pk}/",
        {"subspecialties": ["neuro", "msk"]},
        format="json",
    )
    assert response.status_code == 200, response.json()
    change = AuditEvent.objects.filter(
        object_type="network.radiologist", detail__changed__has_key="subspecialties"
    ).get()
    before, after = change.detail["changed"]["subspecialties"]
    assert len(before) == 1 and len(after) == 2 and set(before) < set(after)


def test_reads_of_patient_data_in_the_django_admin_are_audited(group_admin, study_a, study_c):
    client = Client()
    client.force_login(group_admin)
    assert client.get("/admin/studies/study/").status_code == 200
    listed = AuditEvent.objects.filter(actor=group_admin, action="list")
    assert set(listed.values_list("patient_id", flat=True)) == {"PAT-A"}
    assert client.get(f"/admin/studies/study/{study_a.pk}/change/").status_code == 200
    read = AuditEvent.objects.get(actor=group_admin, action="read", object_id=str(study_a.pk))
    assert read.patient_id == "PAT-A" and read.detail["view"] == "admin change"
    # Another group's study is not there to read, and nothing is recorded of it.
    client.get(f"/admin/studies/study/{study_c.pk}/change/")
    assert not AuditEvent.objects.filter(actor=group_admin, patient_id="PAT-C").exists()


def test_my_cases_routing_and_operations_reads_are_audited(
    api, licensed_reader, group_admin, facility_a, group_a
):
    study = f.StudyFactory(facility=facility_a, patient_id="PAT-MINE")
    Study.objects.filter(pk=study.pk).update(status="claimed", assigned_radiologist=licensed_reader)
    assert api(licensed_reader.user).get("/api/v1/me/cases/").status_code == 200
    assert AuditEvent.objects.filter(
        actor=licensed_reader.user, action="list", patient_id="PAT-MINE"
    ).exists()
    assert api(group_admin).get(f"/api/v1/studies/{study.pk}/routing/").status_code == 200
    assert AuditEvent.objects.filter(
        actor=group_admin, action="read", patient_id="PAT-MINE", detail__view="routing"
    ).exists()
    # The operations picture names the study (its open alert): that read is audited too.
    alert_raise(kind="sla", dedupe_key="t", message="at risk", reading_group=group_a, study=study)
    assert api(group_admin).get("/api/v1/operations/").status_code == 200
    assert AuditEvent.objects.filter(
        actor=group_admin, patient_id="PAT-MINE", detail__view="operations"
    ).exists()
