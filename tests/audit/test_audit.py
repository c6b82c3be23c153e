"""The audit trail is append-only and exportable by compliance officers only."""

import csv
import io

import pytest
from django.contrib.auth.models import Permission
from django.db import DatabaseError, connection, transaction

from audit.models import AuditEvent, AuditImmutable
from audit.services import audit_record
from network.services import reading_group_admin_grant
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def event(group_a):
    user = f.UserFactory(username="someone")
    return audit_record(
        actor=user,
        action="read",
        object_type="studies.study",
        object_id="7",
        patient_id="P-7",
        ip_address="192.0.2.1",
        reading_group_id=group_a.pk,
    )


@pytest.fixture
def auditor(group_a):
    """A compliance officer of group A: its admin, granted the audit trail."""
    user = f.UserFactory(username="auditor")
    reading_group_admin_grant(actor=None, user=user, group=group_a)
    user.user_permissions.add(Permission.objects.get(codename="view_auditevent"))
    return user


def test_an_event_cannot_be_changed_through_the_model(event):
    event.patient_id = "OTHER"
    with pytest.raises(AuditImmutable):
        event.save()
    with pytest.raises(AuditImmutable):
        event.delete()


def test_an_event_cannot_be_changed_in_bulk(event):
    with pytest.raises(AuditImmutable):
        AuditEvent.objects.filter(pk=event.pk).update(patient_id="OTHER")
    with pytest.raises(AuditImmutable):
        AuditEvent.objects.all().delete()
    event.refresh_from_db()
    assert event.patient_id == "P-7"


def test_a_user_with_audit_history_cannot_be_deleted(event):
    from django.db.models import ProtectedError

    with pytest.raises(ProtectedError):
        event.actor.delete()


@pytest.mark.postgres
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_auditevent SET patient_id = 'X' WHERE id = %s",
        "DELETE FROM audit_auditevent WHERE id = %s",
    ],
)
def test_postgres_refuses_raw_updates_and_deletes(event, sql):
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql, [event.pk])
    event.refresh_from_db()
    assert event.patient_id == "P-7"


def test_export_requires_the_audit_permission(api, event, group_admin, staff_a):
    assert api(staff_a).get("/api/v1/audit-events/export/").status_code == 403
    assert api(group_admin).get("/api/v1/audit-events/").status_code == 403


def test_export_is_csv_filtered_and_itself_audited(api, event, auditor):
    audit_record(
        actor=None,
        action="create",
        object_type="studies.study",
        patient_id="P-8",
        reading_group_id=event.reading_group_id,
    )
    response = api(auditor).get("/api/v1/audit-events/export/", {"patient_id": "P-7"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:4] == ["id", "at", "actor_username", "action"]
    assert len(rows) == 2
    assert rows[1][2:7] == ["someone", "read", "studies.study", "7", "P-7"]
    assert AuditEvent.objects.filter(action="export", actor=auditor).exists()


def test_audit_api_offers_no_writes(api, event, auditor):
    client = api(auditor)
    assert client.delete(f"/api/v1/audit-events/{event.pk}/").status_code == 405
    assert client.patch(f"/api/v1/audit-events/{event.pk}/", {}).status_code == 405
