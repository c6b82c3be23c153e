"""Page sign-in: password, then a second factor when owed; every step audited."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.test import Client
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.models import AuditEvent
from tests.accounts.conftest import PASSWORD, code_for, sign_in

pytestmark = pytest.mark.django_db
A = AuditEvent.Action
T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


def test_without_a_device_the_password_signs_in_and_is_audited(licensed_reader, group_a):
    client = Client()
    response = sign_in(client, "dr_licensed", next_url="/api/v1/me/")
    assert response.status_code == 302 and response["Location"] == "/api/v1/me/"
    assert client.get("/api/v1/me/").status_code == 200
    event = AuditEvent.objects.get(action=A.LOGIN)
    assert event.actor == licensed_reader.user
    assert event.reading_group_id == group_a.pk  # the group's admins see it
    assert event.detail == {"second_factor": None}
    assert event.ip_address == "127.0.0.1"


def test_a_wrong_password_is_refused_and_audited_without_the_password(licensed_reader, group_a):
    client = Client()
    response = sign_in(client, "dr_licensed", password="guess-1234")
    assert response.status_code == 200
    assert b"did not match" in response.content
    assert client.get("/api/v1/me/").status_code in (401, 403)
    event = AuditEvent.objects.get(action=A.LOGIN_FAILED)
    assert event.detail["username"] == "dr_licensed"
    assert event.detail["reason"] == "bad credentials"
    assert event.reading_group_id == group_a.pk
    assert "guess-1234" not in str(event.detail)
    # An unknown username is recorded too, naming no one and no group.
    sign_in(client, "nobody-here", password="x")
    unknown = AuditEvent.objects.filter(action=A.LOGIN_FAILED).order_by("-id").first()
    assert unknown.detail["username"] == "nobody-here" and unknown.reading_group_id is None


def test_an_enrolled_user_must_give_a_totp_code(licensed_reader, totp_device):
    device = totp_device(licensed_reader.user)
    client = Client()
    with time_machine.travel(T0, tick=False) as clock:
        response = sign_in(client, "dr_licensed", next_url="/worklist/")
        assert response.status_code == 302
        assert response["Location"].startswith("/account/verify/")
        # Until the second factor: pages lead to it, the API refuses the session.
        page = client.get("/worklist/")
        assert page.status_code == 302 and page["Location"].startswith("/account/verify/")
        assert client.get("/api/v1/me/").status_code == 403
        assert not AuditEvent.objects.filter(action=A.LOGIN).exists()
        wrong = client.post("/account/verify/", {"otp_token": "000000", "next": "/worklist/"})
        assert wrong.status_code == 200 and b"not valid" in wrong.content
        clock.shift(dt.timedelta(seconds=31))  # past django-otp's throttle after a failure
        right = client.post(
            "/account/verify/", {"otp_token": code_for(device), "next": "/worklist/"}
        )
        assert right.status_code == 302 and right["Location"] == "/worklist/"
        assert client.get("/api/v1/me/").status_code == 200
    events = list(
        AuditEvent.objects.filter(actor=licensed_reader.user)
        .order_by("id")
        .values_list("action", "detail")
    )
    assert events == [
        (A.MFA, {"event": "verify_failed", "via": "page"}),
        (A.MFA, {"event": "verified", "device": "totp"}),
        (A.LOGIN, {"second_factor": "totp"}),
    ]


def test_enrolment_scan_confirm_then_recovery_codes_each_used_once(licensed_reader):
    client = Client()
    with time_machine.travel(T0, tick=False) as clock:
        sign_in(client, "dr_licensed")
        page = client.get("/account/security/")
        assert page.status_code == 200 and b"Add an authenticator app" in page.content
        started = client.post("/account/security/", {"action": "totp_start"})
        device = started.context["pending"]
        assert b"<svg" in started.content  # the QR code, inline SVG, no script
        assert started.context["secret"]
        confirmed = client.post(
            "/account/security/",
            {"action": "totp_confirm", "device": device.pk, "otp_token": code_for(device)},
        )
        assert confirmed.status_code == 200 and confirmed.context["enrolled"]
        assert TOTPDevice.objects.get(pk=device.pk).confirmed
        codes = client.post("/account/security/", {"action": "recovery"}).context["codes"]
        assert len(codes) == 10 and len(set(codes)) == 10
        client.post("/logout/")

        # A recovery code stands in for the app's code, once.
        clock.shift(dt.timedelta(minutes=1))
        sign_in(client, "dr_licensed")
        used = client.post("/account/verify/", {"otp_token": codes[0]})
        assert used.status_code == 302
        client.post("/logout/")
        sign_in(client, "dr_licensed")
        again = client.post("/account/verify/", {"otp_token": codes[0]})
        assert again.status_code == 200 and b"not valid" in again.content
    assert StaticDevice.objects.get(user=licensed_reader.user).token_set.count() == 9
    mfa = [e.detail["event"] for e in AuditEvent.objects.filter(action=A.MFA).order_by("id")]
    assert mfa[:3] == ["enrolled", "recovery_codes_generated", "verified"]
    login = AuditEvent.objects.filter(action=A.LOGIN).order_by("id").last()
    assert login.detail == {"second_factor": "recovery_code"}


def test_a_device_cannot_be_added_or_removed_before_the_second_factor(licensed_reader, totp_device):
    device = totp_device(licensed_reader.user)
    client = Client()
    sign_in(client, "dr_licensed")
    response = client.post(
        "/account/security/", {"action": "remove", "device": device.persistent_id}
    )
    assert response.status_code == 302 and response["Location"].startswith("/account/verify/")
    assert client.post("/account/security/", {"action": "totp_start"}).status_code == 302
    assert TOTPDevice.objects.filter(user=licensed_reader.user).count() == 1


def test_sign_out_is_audited_and_ends_the_session(licensed_reader):
    client = Client()
    sign_in(client, "dr_licensed")
    response = client.post("/logout/")
    assert response.status_code == 302 and response["Location"] == "/login/"
    assert client.get("/api/v1/me/").status_code in (401, 403)
    event = AuditEvent.objects.get(action=A.LOGOUT)
    assert event.actor == licensed_reader.user and event.detail == {"via": "page"}
    assert client.get("/logout/").status_code == 405  # a link cannot sign anyone out


def test_the_admin_and_browsable_api_sign_in_on_this_page(licensed_reader):
    client = Client()
    assert client.get("/admin/login/?next=/admin/")["Location"] == "/login/?next=%2Fadmin%2F"
    posted = client.post("/admin/login/", {"username": "dr_licensed", "password": PASSWORD})
    assert posted.status_code == 302 and posted["Location"].startswith("/login/")
    assert client.get("/api/v1/me/").status_code in (401, 403)  # nobody signed in
    assert client.get("/api-auth/login/")["Location"].startswith("/login/")


def test_the_pages_load_their_scripts_from_files_and_passkey_registration_begins(
    licensed_reader,
):
    client = Client()
    sign_in(client, "dr_licensed")
    page = client.get("/account/security/")
    html = page.content.decode()
    assert 'src="/static/django_otp_webauthn/otp_webauthn_register.js"' in html
    # No inline script: only the configuration as JSON data, and scripts by src.
    for tag in html.split("<script")[1:]:
        head = tag.split(">", 1)[0]
        assert "src=" in head or 'type="application/json"' in head, head
    assert "onclick=" not in html
    begun = client.post(
        "/account/webauthn/registration/begin/", content_type="application/json", data={}
    )
    assert begun.status_code == 200
    assert begun.json()["rp"]["id"] == "localhost"
