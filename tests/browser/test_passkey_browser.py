"""A passkey as the second factor, in a real browser with a virtual authenticator
(Chrome DevTools' WebAuthn domain): registered on the security page, then asked for
after the password."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from django_otp_webauthn.models import WebAuthnCredential

from audit.models import AuditEvent
from tests import factories as f

pytestmark = pytest.mark.browser
PASSWORD = "pw-for-tests-1"


def _wait(what: str, probe: Any, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _sign_in(page: Any, base: str) -> None:
    page.goto(f"{base}/login/")
    page.fill("input[name=username]", "dr_passkey")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")


def test_a_passkey_is_registered_then_asked_for(browser, live_server, settings, transactional_db):
    base = live_server.url  # http://localhost:<port>: a host name, as WebAuthn needs
    settings.OTP_WEBAUTHN_ALLOWED_ORIGINS = [base]
    group = f.ReadingGroupFactory(name="Passkey group")
    reader = f.RadiologistFactory(user=f.UserFactory(username="dr_passkey"), reading_group=group)
    context = browser.new_context()
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
            }
        },
    )
    _sign_in(page, base)
    page.wait_for_url(re.compile(r".*/worklist/$"))
    page.goto(f"{base}/account/security/")
    page.click("#passkey-register-button")
    _wait("the passkey", lambda: WebAuthnCredential.objects.filter(user=reader.user).exists())

    page.goto(f"{base}/account/security/")
    page.click("button:has-text('Sign out')")
    page.wait_for_url(re.compile(r".*/login/$"))
    _sign_in(page, base)
    page.wait_for_url(re.compile(r".*/account/verify/.*"))
    page.click("#passkey-verification-button")
    page.wait_for_url(re.compile(r".*/worklist/$"))
    context.close()

    events = [
        (e.action, e.detail.get("event"), e.detail.get("device") or e.detail.get("second_factor"))
        for e in AuditEvent.objects.filter(actor=reader.user).order_by("id")
        if e.action in ("mfa", "login")
    ]
    assert events == [
        ("login", None, None),
        ("mfa", "enrolled", "passkey"),
        ("mfa", "verified", "passkey"),
        ("login", None, "passkey"),
    ]
