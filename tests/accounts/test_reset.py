"""An admin's reset of a user's second factors: scoped to their group, audited."""

from __future__ import annotations

import pytest
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.models import AuditEvent
from tests import factories as f

pytestmark = pytest.mark.django_db


def test_the_group_admin_resets_a_readers_devices(
    api, licensed_reader, group_admin, group_a, totp_device
):
    user = licensed_reader.user
    totp_device(user)
    StaticDevice.objects.create(user=user, name="Recovery codes")
    response = api(group_admin).post(f"/api/v1/auth/users/{user.pk}/mfa-reset/")
    assert response.status_code == 200 and response.json() == {"devices_removed": 2}
    assert not TOTPDevice.objects.filter(user=user).exists()
    event = AuditEvent.objects.get(action=AuditEvent.Action.MFA)
    assert event.actor == group_admin and event.reading_group_id == group_a.pk
    assert event.detail["event"] == "reset"
    assert event.detail["by"] == "admin_a" and event.detail["user"] == "dr_licensed"


def test_another_groups_admin_and_a_reader_get_404(
    api, licensed_reader, other_admin, staff_a, totp_device
):
    totp_device(licensed_reader.user)
    url = f"/api/v1/auth/users/{licensed_reader.user_id}/mfa-reset/"
    assert api(other_admin).post(url).status_code == 404
    assert api(staff_a).post(url).status_code == 404
    assert api(other_admin).post("/api/v1/auth/users/99999999/mfa-reset/").status_code == 404
    assert TOTPDevice.objects.filter(user=licensed_reader.user).exists()
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.MFA).exists()


def test_a_site_operator_resets_anyone(api, other_admin, totp_device):
    operator = f.UserFactory(username="operator", is_superuser=True)
    totp_device(other_admin)
    response = api(operator).post(f"/api/v1/auth/users/{other_admin.pk}/mfa-reset/")
    assert response.json() == {"devices_removed": 1}
