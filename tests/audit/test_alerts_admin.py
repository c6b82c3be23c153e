"""Alerts in the Django admin are kept per reading group: an admin lists and
acknowledges only their groups' alerts; site operators see all."""

from __future__ import annotations

import pytest
from django.test import Client

from alerts.models import Alert
from alerts.services import alert_raise

pytestmark = pytest.mark.django_db


@pytest.fixture
def alerts(group_a, group_c):
    mine = alert_raise(kind="sla", dedupe_key="a", message="Alert of A", reading_group=group_a)
    theirs = alert_raise(kind="sla", dedupe_key="c", message="Alert of C", reading_group=group_c)
    return mine, theirs


def test_an_admin_sees_and_acknowledges_only_their_groups_alerts(group_admin, alerts):
    mine, theirs = alerts
    client = Client()
    client.force_login(group_admin)
    page = client.get("/admin/alerts/alert/").content.decode()
    assert "Alert of A" in page and "Alert of C" not in page
    assert "Group C" not in page  # nor the other group's name, in a filter
    # Another group's alert is not there to read or change.
    assert client.get(f"/admin/alerts/alert/{theirs.pk}/change/").status_code == 302
    client.post(
        f"/admin/alerts/alert/{theirs.pk}/change/",
        {"acknowledged_at_0": "2026-01-01", "acknowledged_at_1": "00:00:00"},
    )
    assert Alert.objects.get(pk=theirs.pk).acknowledged_at is None
    # Their own: acknowledged.
    response = client.post(
        f"/admin/alerts/alert/{mine.pk}/change/",
        {"acknowledged_at_0": "2026-01-01", "acknowledged_at_1": "00:00:00"},
    )
    assert response.status_code == 302
    assert Alert.objects.get(pk=mine.pk).acknowledged_at is not None


def test_a_site_operator_sees_every_alert(alerts):
    from tests import factories as f

    operator = f.UserFactory(username="operator", is_superuser=True, is_staff=True)
    client = Client()
    client.force_login(operator)
    page = client.get("/admin/alerts/alert/").content.decode()
    assert "Alert of A" in page and "Alert of C" in page
