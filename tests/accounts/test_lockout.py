"""Lockout (django-axes) on every sign-in path: the page, the admin's (which is the
page), the token endpoint and the second-factor step; audited; repeated lockouts alert
the group's admins."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.test import Client
from rest_framework.test import APIClient

from alerts.models import Alert
from audit.models import AuditEvent
from tests.accounts.conftest import PASSWORD, code_for, sign_in

pytestmark = pytest.mark.django_db
A = AuditEvent.Action
T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
LIMIT = 5  # AXES_FAILURE_LIMIT's default
COOL_OFF = dt.timedelta(minutes=15)


def _fail_until_locked(client: Client, username: str) -> None:
    for attempt in range(1, LIMIT + 1):
        response = sign_in(client, username, password=f"wrong-{attempt}")
        assert response.status_code == (429 if attempt == LIMIT else 200), attempt


def test_the_login_page_locks_after_n_failures_until_the_cool_off(licensed_reader, group_a):
    client = Client()
    with time_machine.travel(T0, tick=False) as clock:
        _fail_until_locked(client, "dr_licensed")
        locked = sign_in(client, "dr_licensed")  # the right password
        assert locked.status_code == 429
        assert b"locked for 15 minutes" in locked.content
        assert locked["Retry-After"] == str(int(COOL_OFF.total_seconds()))
        assert client.get("/api/v1/me/").status_code in (401, 403)
        clock.shift(COOL_OFF - dt.timedelta(seconds=30))
        assert sign_in(client, "dr_licensed").status_code == 429  # not extended by tries
        clock.shift(dt.timedelta(seconds=31))
        assert sign_in(client, "dr_licensed").status_code == 302
    lockout = AuditEvent.objects.get(action=A.LOCKOUT)
    assert lockout.detail["username"] == "dr_licensed"
    assert lockout.reading_group_id == group_a.pk and lockout.ip_address == "127.0.0.1"
    refused = AuditEvent.objects.filter(action=A.LOGIN_FAILED, detail__reason="locked out")
    assert refused.count() == 2


def test_one_address_trying_many_usernames_is_locked_too(licensed_reader):
    client = Client()
    with time_machine.travel(T0, tick=False):
        for n in range(LIMIT):
            sign_in(client, f"someone-{n}", password="x")
        assert sign_in(client, "dr_licensed").status_code == 429
    # ... while the same account from another address is not (locked by address only).
    other = Client(REMOTE_ADDR="10.9.8.7")
    with time_machine.travel(T0, tick=False):
        assert sign_in(other, "dr_licensed").status_code == 302


def test_the_admin_sign_in_is_the_locked_page(licensed_reader):
    client = Client()
    with time_machine.travel(T0, tick=False):
        _fail_until_locked(client, "dr_licensed")
        # /admin/login/ leads to the same page, which refuses.
        assert client.get("/admin/login/")["Location"].startswith("/login/")
        assert sign_in(client, "dr_licensed", next_url="/admin/").status_code == 429


def test_the_token_endpoint_locks_with_a_json_429(licensed_reader):
    api = APIClient()

    def issue(password: str) -> object:
        return api.post(
            "/api/v1/auth/tokens/",
            {"username": "dr_licensed", "password": password},
            format="json",
        )

    with time_machine.travel(T0, tick=False) as clock:
        for attempt in range(1, LIMIT):
            response = issue(f"wrong-{attempt}")
            assert response.status_code == 400
            assert response.json()["detail"] == "Unable to sign in with the credentials given."
        locked = issue("wrong-last")
        assert locked.status_code == 429
        assert "locked for 15 minutes" in locked.json()["detail"]
        assert locked["Retry-After"] == "900"
        assert issue(PASSWORD).status_code == 429
        clock.shift(COOL_OFF + dt.timedelta(seconds=1))
        assert issue(PASSWORD).status_code == 201
    via = set(
        AuditEvent.objects.filter(action=A.LOGIN_FAILED).values_list("detail__via", flat=True)
    )
    assert via == {"api"}
    assert AuditEvent.objects.filter(action=A.LOCKOUT).count() == 1


def test_wrong_second_factor_codes_lock_out_and_end_the_session(licensed_reader, totp_device):
    device = totp_device(licensed_reader.user)
    client = Client()
    with time_machine.travel(T0, tick=False) as clock:
        sign_in(client, "dr_licensed")
        for attempt in range(1, LIMIT + 1):
            clock.shift(dt.timedelta(seconds=40))  # django-otp's own throttle aside
            response = client.post("/account/verify/", {"otp_token": "000000"})
            assert response.status_code == (429 if attempt == LIMIT else 200), attempt
        # The session is gone; the password and the right code are refused until the cool-off.
        assert client.get("/api/v1/me/").status_code in (401, 403)
        assert sign_in(client, "dr_licensed").status_code == 429
        clock.shift(COOL_OFF + dt.timedelta(seconds=1))
        assert sign_in(client, "dr_licensed").status_code == 302
        assert client.post("/account/verify/", {"otp_token": code_for(device)}).status_code == 302
    assert AuditEvent.objects.filter(action=A.LOCKOUT).count() == 1
    failed = AuditEvent.objects.filter(action=A.MFA, detail__event="verify_failed")
    assert failed.count() == LIMIT


def test_repeated_lockouts_alert_the_groups_admins(licensed_reader, group_a):
    client = Client()
    with time_machine.travel(T0, tick=False) as clock:
        for round_ in range(3):
            _fail_until_locked(client, "dr_licensed")
            assert not Alert.objects.exists() or round_ == 2
            clock.shift(COOL_OFF + dt.timedelta(seconds=1))
    alert = Alert.objects.get()
    assert alert.kind == Alert.Kind.REPEATED_LOCKOUT
    assert alert.reading_group == group_a
    assert "dr_licensed" in alert.message and "3 times" in alert.message
    assert AuditEvent.objects.filter(action=A.LOCKOUT).count() == 3
