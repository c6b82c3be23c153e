"""MFA_REQUIRED (the production profile): no page, admin or API token before the
second factor; a user with no device is led to enrol one."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.test import Client, override_settings
from rest_framework.test import APIClient

from audit.models import AuditEvent
from tests import factories as f
from tests.accounts.conftest import PASSWORD, code_for, sign_in

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("_mfa_required")]
T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def _mfa_required():
    with override_settings(MFA_REQUIRED=True):
        yield


def _issue(username: str, otp: str = "") -> object:
    return APIClient().post(
        "/api/v1/auth/tokens/",
        {"username": username, "password": PASSWORD, "otp": otp},
        format="json",
    )


def test_a_user_without_a_device_must_enrol_before_anything_else(licensed_reader):
    client = Client()
    with time_machine.travel(T0, tick=False):
        response = sign_in(client, "dr_licensed", next_url="/worklist/")
        assert response["Location"].startswith("/account/security/")
        for path in ("/worklist/", "/admin/", "/viewer/"):
            blocked = client.get(path)
            assert blocked.status_code == 302, path
            assert blocked["Location"].startswith("/account/verify/"), path
        # The verify page sends a user with nothing to verify to enrolment.
        assert client.get("/account/verify/")["Location"].startswith("/account/security/")
        assert client.get("/api/v1/me/").status_code == 403
        # Recovery codes alone would not be a second factor of their own choosing.
        refused = client.post("/account/security/", {"action": "recovery"})
        assert "codes" not in refused.context
        assert _issue("dr_licensed").status_code == 403  # enrol first

        device = client.post("/account/security/", {"action": "totp_start"}).context["pending"]
        client.post(
            "/account/security/",
            {"action": "totp_confirm", "device": device.pk, "otp_token": code_for(device)},
        )
        assert client.get("/api/v1/me/").status_code == 200
    login = AuditEvent.objects.get(action=AuditEvent.Action.LOGIN)
    assert login.detail == {"second_factor": "totp", "enrolled": True}


def test_the_admin_asks_for_the_second_factor(totp_device):
    operator = f.UserFactory(username="operator", is_superuser=True, is_staff=True)
    device = totp_device(operator)
    client = Client()
    with time_machine.travel(T0, tick=False):
        sign_in(client, "operator", next_url="/admin/")
        response = client.get("/admin/")
        assert response.status_code == 302 and response["Location"].startswith("/account/verify/")
        client.post("/account/verify/", {"otp_token": code_for(device)})
        assert client.get("/admin/").status_code == 200


def test_a_token_is_issued_only_with_the_second_factor(licensed_reader, totp_device):
    device = totp_device(licensed_reader.user)
    with time_machine.travel(T0, tick=False):
        missing = _issue("dr_licensed")
        assert missing.status_code == 400 and missing.json()["otp"] == ["required"]
        issued = _issue("dr_licensed", otp=code_for(device))
    assert issued.status_code == 201, issued.content
    body = issued.json()
    assert set(body) == {"id", "token", "expiry"}
    event = AuditEvent.objects.get(action=AuditEvent.Action.TOKEN_ISSUE)
    assert event.detail["via"] == "password+totp"
    assert body["token"] not in str(event.detail)


def test_force_logged_in_sessions_are_held_too(licensed_reader, client):
    client.force_login(licensed_reader.user)
    assert client.get("/worklist/").status_code == 302
    assert client.get("/login/").status_code == 200  # sign-in pages stay reachable
