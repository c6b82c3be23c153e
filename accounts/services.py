"""Sign-in, second factors, lockouts and API tokens: every write, each audited in its
own transaction.

The sign-in has two steps.  The password step (``sign_in_password``) goes through
``django.contrib.auth.authenticate``, whose first backend is django-axes: a locked-out
username or address is refused before any password is checked, and every failure is
counted.  A user who must give a second factor (one who enrolled a device, or anyone
when ``MFA_REQUIRED``) is then signed in with the session marked as owing it
(``MFA_PENDING``): ``accounts.middleware`` lets such a session reach only the sign-in
pages until ``second_factor_verify`` (a TOTP or recovery code) or a passkey verifies
it.  A wrong code counts as a failed sign-in for axes too.  ``LOGIN`` is audited when
the session becomes usable, not before.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib.auth import authenticate, login, logout
from django.contrib.auth.models import User
from django.contrib.auth.signals import user_login_failed
from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone
from django_otp import login as otp_login
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import ApiToken
from accounts.selectors import (
    session_is_verified,
    user_devices,
    user_has_second_factor,
    user_reading_group_id,
)
from alerts.models import Alert
from alerts.services import alert_raise
from audit.models import AuditEvent
from audit.services import audit_record
from network.models import ReadingGroup

MFA_PENDING = "accounts_mfa_pending"
USER = User._meta.label_lower
API_TOKEN_TYPE = ApiToken._meta.label_lower  # audit object type
# A token's last use is recorded at most this often (one UPDATE a minute, not one a request).
LAST_USED_RESOLUTION = dt.timedelta(seconds=60)


class SignInRefused(Exception):
    """The credentials were refused (``locked``: by the lockout)."""

    def __init__(self, message: str, *, locked: bool = False) -> None:
        super().__init__(message)
        self.locked = locked


class SecondFactorRequired(Exception):
    """The user must give a second factor (``enrol``: they have none yet)."""

    def __init__(self, message: str, *, enrol: bool = False) -> None:
        super().__init__(message)
        self.enrol = enrol


def _ip(request: HttpRequest | None) -> str | None:
    if request is None:
        return None
    value = request.META.get("REMOTE_ADDR")
    return str(value) if value else None


def _user_event(
    *,
    request: HttpRequest | None,
    actor: User | None,
    subject: User | None,
    action: str,
    detail: dict[str, Any],
    ip_address: str | None = None,
) -> None:
    audit_record(
        actor=actor,
        action=action,
        object_type=USER,
        object_id=str(subject.pk) if subject is not None else "",
        ip_address=ip_address if ip_address is not None else _ip(request),
        detail=detail,
        reading_group_id=user_reading_group_id(user=subject) if subject is not None else None,
    )


def second_factor_owed(*, user: User) -> bool:
    """Whether this user must give a second factor to sign in (policy or enrolment)."""
    return bool(settings.MFA_REQUIRED) or user_has_second_factor(user=user)


# --- Sign-in ------------------------------------------------------------------
@dataclass(frozen=True)
class SignIn:
    user: User
    second_factor: bool  # the session owes a second factor
    enrol: bool  # ... and the user has no device yet (MFA_REQUIRED)


def sign_in_failed_record(*, request: HttpRequest, username: str, reason: str, via: str) -> None:
    """Audit a refused sign-in (the username tried, never the password)."""
    subject = User.objects.filter(username=username).first() if username else None
    with transaction.atomic():
        _user_event(
            request=request,
            actor=None,
            subject=subject,
            action=AuditEvent.Action.LOGIN_FAILED,
            detail={"username": username[:150], "reason": reason, "via": via},
        )


def _refusal(request: HttpRequest) -> str:
    """Why authenticate() refused: a wrong password (counted; it may have started a
    lockout), or a lockout already running (refused before the password was checked)."""
    checked = getattr(request, "axes_failures_since_start", None) is not None
    if getattr(request, "axes_locked_out", False) and not checked:
        return "locked out"
    return "bad credentials"


def sign_in_password(*, request: HttpRequest, username: str, password: str) -> SignIn:
    """Check the password (through the lockout) and sign the session in, owing a second
    factor when the user must give one; raises ``SignInRefused``."""
    user = authenticate(request, username=username, password=password)
    if user is None:
        locked = bool(getattr(request, "axes_locked_out", False))
        sign_in_failed_record(
            request=request, username=username, reason=_refusal(request), via="page"
        )
        raise SignInRefused("Your username and password did not match.", locked=locked)
    assert isinstance(user, User)  # noqa: S101 - ModelBackend's users
    owed = second_factor_owed(user=user)
    enrol = owed and not user_has_second_factor(user=user)
    login(request, user)
    if owed:
        request.session[MFA_PENDING] = True
    else:
        sign_in_complete(request=request, user=user, detail={"second_factor": None})
    return SignIn(user=user, second_factor=owed, enrol=enrol)


def sign_in_complete(*, request: HttpRequest, user: User, detail: dict[str, Any]) -> None:
    """Audit the sign-in once the session is usable (after its second factor, if owed)."""
    request.session.pop(MFA_PENDING, None)
    with transaction.atomic():
        _user_event(
            request=request, actor=user, subject=user, action=AuditEvent.Action.LOGIN, detail=detail
        )


def sign_out(*, request: HttpRequest) -> None:
    """End the page session (audited).  API tokens live on: they are separate
    credentials, revoked through the API (``api_token_revoke``) or when they expire."""
    user = request.user
    if isinstance(user, User) and user.is_authenticated:
        with transaction.atomic():
            _user_event(
                request=request,
                actor=user,
                subject=user,
                action=AuditEvent.Action.LOGOUT,
                detail={"via": "page"},
            )
    logout(request)


def device_kind(device: Device) -> str:
    if isinstance(device, TOTPDevice):
        return "totp"
    if isinstance(device, StaticDevice):
        return "recovery_code"
    return "passkey"


def _code_matches(*, user: User, code: str) -> Device | None:
    """The TOTP or recovery-code device that accepts ``code`` (each verification is
    django-otp's, with its throttling and single use), or None."""
    code = "".join(code.split())
    if not code or len(code) > 16:
        return None
    for model in (TOTPDevice, StaticDevice):
        with transaction.atomic():
            for device in model.objects.devices_for_user(user, confirmed=True).select_for_update():
                if device.verify_token(code):
                    return device
    return None


def _second_factor_failed(*, request: HttpRequest, user: User, via: str) -> bool:
    """Audit a wrong code and count it as a failed sign-in for the lockout; whether the
    user or address is now locked out."""
    with transaction.atomic():
        _user_event(
            request=request,
            actor=user,
            subject=user,
            action=AuditEvent.Action.MFA,
            detail={"event": "verify_failed", "via": via},
        )
    user_login_failed.send(
        sender=__name__, credentials={"username": user.get_username()}, request=request
    )
    return bool(getattr(request, "axes_locked_out", False))


def second_factor_verify(*, request: HttpRequest, code: str) -> Device:
    """Verify the signed-in session's second factor with a TOTP or recovery code and
    complete the sign-in; raises ``SignInRefused`` (``locked``: the session was ended)."""
    user = request.user
    assert isinstance(user, User)  # noqa: S101 - the middleware lets only users here
    credentials = {"username": user.get_username()}
    if not AxesProxyHandler.is_allowed(request, credentials):
        request.axes_locked_out = True  # type: ignore[attr-defined]
        logout(request)
        raise SignInRefused("Locked out.", locked=True)
    device = _code_matches(user=user, code=code)
    if device is None:
        if _second_factor_failed(request=request, user=user, via="page"):
            logout(request)
            raise SignInRefused("Locked out.", locked=True)
        raise SignInRefused("That code is not valid. Try the current code from your app.")
    otp_login(request, device)
    kind = device_kind(device)
    detail: dict[str, Any] = {"event": "verified", "device": kind}
    if isinstance(device, StaticDevice):
        detail["recovery_codes_left"] = device.token_set.count()
    with transaction.atomic():
        _user_event(
            request=request, actor=user, subject=user, action=AuditEvent.Action.MFA, detail=detail
        )
    sign_in_complete(request=request, user=user, detail={"second_factor": kind})
    return device


def second_factor_passkey_verified(*, request: HttpRequest, device: Device) -> None:
    """Complete a sign-in whose second factor was a passkey (django-otp-webauthn
    verified it and marked the session)."""
    user = request.user
    assert isinstance(user, User)  # noqa: S101
    with transaction.atomic():
        _user_event(
            request=request,
            actor=user,
            subject=user,
            action=AuditEvent.Action.MFA,
            detail={"event": "verified", "device": "passkey"},
        )
    sign_in_complete(request=request, user=user, detail={"second_factor": "passkey"})


def second_factor_passkey_failed(*, request: HttpRequest) -> bool:
    """A passkey the browser offered was refused: audited and counted like a wrong code
    (only as a second factor: a session already verified is not signing in)."""
    user = request.user
    if not isinstance(user, User) or session_is_verified(user=user):
        return False
    locked = _second_factor_failed(request=request, user=user, via="passkey")
    if locked:
        logout(request)
    return locked


# --- Enrolment ------------------------------------------------------------------
def totp_device_start(*, user: User) -> TOTPDevice:
    """A new, unconfirmed TOTP device for the user to scan (replaces an earlier
    unconfirmed one)."""
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user, confirmed=False).delete()
        return TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False)


def totp_device_confirm(*, request: HttpRequest, device_id: int, code: str) -> TOTPDevice | None:
    """Confirm the user's pending TOTP device with a code from their app (audited); the
    session is verified by it.  None when the code is wrong."""
    user = request.user
    assert isinstance(user, User)  # noqa: S101
    with transaction.atomic():
        device = (
            TOTPDevice.objects.select_for_update()
            .filter(user=user, pk=device_id, confirmed=False)
            .first()
        )
        if device is None or not device.verify_token("".join(code.split())):
            return None
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        _user_event(
            request=request,
            actor=user,
            subject=user,
            action=AuditEvent.Action.MFA,
            detail={"event": "enrolled", "device": "totp"},
        )
    second_factor_enrolled(request=request, device=device)
    return device


def second_factor_enrolled(*, request: HttpRequest, device: Device) -> None:
    """After a device is enrolled: it verifies this session if nothing did, and a
    sign-in that waited for the enrolment (``MFA_REQUIRED``) is complete."""
    user = request.user
    assert isinstance(user, User)  # noqa: S101
    if not session_is_verified(user=user):
        otp_login(request, device)
    if request.session.get(MFA_PENDING):
        sign_in_complete(
            request=request,
            user=user,
            detail={"second_factor": device_kind(device), "enrolled": True},
        )


def passkey_enrolled_record(*, request: HttpRequest, device: Device) -> None:
    """Audit a passkey registered through django-otp-webauthn."""
    user = request.user
    assert isinstance(user, User)  # noqa: S101
    with transaction.atomic():
        _user_event(
            request=request,
            actor=user,
            subject=user,
            action=AuditEvent.Action.MFA,
            detail={"event": "enrolled", "device": "passkey"},
        )
    second_factor_enrolled(request=request, device=device)


def recovery_codes_generate(*, request: HttpRequest) -> list[str]:
    """Replace the user's recovery codes with ``MFA_RECOVERY_CODES`` new single-use
    codes, returned once (only they are shown them)."""
    user = request.user
    assert isinstance(user, User)  # noqa: S101
    with transaction.atomic():
        device, _ = StaticDevice.objects.get_or_create(
            user=user, name="Recovery codes", defaults={"confirmed": True}
        )
        device.token_set.all().delete()
        codes = [StaticToken.random_token() for _ in range(settings.MFA_RECOVERY_CODES)]
        StaticToken.objects.bulk_create([StaticToken(device=device, token=c) for c in codes])
        _user_event(
            request=request,
            actor=user,
            subject=user,
            action=AuditEvent.Action.MFA,
            detail={"event": "recovery_codes_generated", "count": len(codes)},
        )
    return codes


def device_remove(*, request: HttpRequest, persistent_id: str) -> bool:
    """Remove one of the signed-in user's own devices (audited)."""
    user = request.user
    assert isinstance(user, User)  # noqa: S101
    with transaction.atomic():
        for device in user_devices(user=user, confirmed=None):
            if device.persistent_id == persistent_id:
                kind = device_kind(device)
                device.delete()
                _user_event(
                    request=request,
                    actor=user,
                    subject=user,
                    action=AuditEvent.Action.MFA,
                    detail={"event": "removed", "device": kind},
                )
                return True
    return False


def second_factor_reset(*, actor: User, user: User, ip_address: str | None) -> int:
    """Remove every second-factor device of ``user`` (an admin's reset for a user who
    lost theirs; the caller checked the admin may manage the user).  Audited with who
    reset it; returns how many devices were removed."""
    with transaction.atomic():
        devices = user_devices(user=user, confirmed=None)
        kinds = sorted({device_kind(d) for d in devices})
        for device in devices:
            device.delete()
        _user_event(
            request=None,
            actor=actor,
            subject=user,
            action=AuditEvent.Action.MFA,
            ip_address=ip_address,
            detail={
                "event": "reset",
                "user": user.get_username(),
                "by": actor.get_username(),
                "devices_removed": len(devices),
                "kinds": kinds,
            },
        )
    return len(devices)


# --- Lockouts -------------------------------------------------------------------
def lockout_record_from_signal(
    sender: Any, request: HttpRequest, username: str | None, ip_address: str | None, **_: Any
) -> None:
    """django-axes' ``user_locked_out``: audit the lockout when a failure starts one
    (not for each try refused during it), and alert on repeated lockouts."""
    if getattr(request, "axes_failures_since_start", None) is None:
        return  # a try refused during the lockout: recorded as a failed sign-in
    lockout_record(username=username or "", ip_address=ip_address)


def lockout_record(*, username: str, ip_address: str | None) -> None:
    """Audit a lockout of ``username`` / ``ip_address``; the ``LOCKOUT_ALERT_COUNT``-th
    lockout of one account or address within an hour alerts the account's group
    admins (the site operators for an unknown account)."""
    subject = User.objects.filter(username=username).first() if username else None
    group_id = user_reading_group_id(user=subject) if subject is not None else None
    now = timezone.now()
    with transaction.atomic():
        audit_record(
            actor=None,
            action=AuditEvent.Action.LOCKOUT,
            object_type=USER,
            object_id=str(subject.pk) if subject is not None else "",
            ip_address=ip_address,
            detail={
                "username": username[:150],
                "failures": settings.AXES_FAILURE_LIMIT,
                "cool_off_minutes": int(settings.AXES_COOLOFF_TIME.total_seconds() // 60),
            },
            reading_group_id=group_id,
        )
        recent = AuditEvent.objects.filter(
            action=AuditEvent.Action.LOCKOUT, at__gte=now - dt.timedelta(hours=1)
        )
        same = Q(detail__username=username[:150]) if username else Q(pk__in=[])
        if ip_address:
            same |= Q(ip_address=ip_address)
        count = recent.filter(same).count()
        if count < settings.LOCKOUT_ALERT_COUNT:
            return
        group = ReadingGroup.objects.filter(pk=group_id).first() if group_id else None
        who = f"account {username!r}" if username else "sign-ins"
        where = f" from {ip_address}" if ip_address else ""
        alert_raise(
            kind=Alert.Kind.REPEATED_LOCKOUT,
            # One alert an hour per account and address.
            dedupe_key=f"lockout:{username[:80]}:{ip_address or ''}:{now:%Y%m%d%H}",
            message=(
                f"Repeated sign-in lockouts: {who}{where} locked out {count} times in "
                "the last hour (wrong passwords or codes)."
            ),
            reading_group=group,
        )


# --- API tokens -------------------------------------------------------------------
def api_token_issue(
    *, user: User, actor: User | None, ip_address: str | None, via: str
) -> tuple[ApiToken, str]:
    """Issue an API token for ``user`` lasting ``REST_KNOX["TOKEN_TTL"]`` (the secret is
    returned once; only its digest is kept), dropping the user's expired tokens."""
    ttl = settings.REST_KNOX["TOKEN_TTL"]
    with transaction.atomic():
        ApiToken.objects.filter(user=user, expiry__lte=timezone.now()).delete()
        token, key = ApiToken.objects.create(user=user, expiry=ttl)
        audit_record(
            actor=actor,
            action=AuditEvent.Action.TOKEN_ISSUE,
            object_type=API_TOKEN_TYPE,
            object_id=str(token.pk),
            ip_address=ip_address,
            detail={"user": user.get_username(), "expiry": token.expiry.isoformat(), "via": via},
            reading_group_id=user_reading_group_id(user=user),
        )
    return token, key


def api_token_issue_with_password(
    *, request: HttpRequest, username: str, password: str, otp: str
) -> tuple[ApiToken, str]:
    """Issue a token to a user who proves who they are: the password (through the
    lockout) and, when they owe one, a second-factor code.  Raises ``SignInRefused``
    or ``SecondFactorRequired``."""
    user = authenticate(request, username=username, password=password)
    if user is None:
        locked = bool(getattr(request, "axes_locked_out", False))
        sign_in_failed_record(
            request=request, username=username, reason=_refusal(request), via="api"
        )
        raise SignInRefused("Unable to sign in with the credentials given.", locked=locked)
    assert isinstance(user, User)  # noqa: S101
    if second_factor_owed(user=user):
        if not user_has_second_factor(user=user):
            raise SecondFactorRequired(
                "Multi-factor authentication is required: enrol a device at "
                "/account/security/ first.",
                enrol=True,
            )
        if not otp.strip():
            raise SecondFactorRequired("A code from your authenticator app is required (otp).")
        device = _code_matches(user=user, code=otp)
        if device is None:
            locked = _second_factor_failed(request=request, user=user, via="api")
            raise SignInRefused("Unable to sign in with the credentials given.", locked=locked)
        via = f"password+{device_kind(device)}"
    else:
        via = "password"
    return api_token_issue(user=user, actor=user, ip_address=_ip(request), via=via)


def api_token_rotate(*, token: ApiToken, ip_address: str | None) -> tuple[ApiToken, str]:
    """Issue the token's owner a new token and revoke this one, in one transaction."""
    with transaction.atomic():
        new = api_token_issue(
            user=token.user, actor=token.user, ip_address=ip_address, via="rotate"
        )
        api_token_revoke(actor=token.user, token=token, ip_address=ip_address, reason="rotated")
    return new


def api_token_revoke(*, actor: User, token: ApiToken, ip_address: str | None, reason: str) -> None:
    """Revoke (delete) a token; audited with whose it was and why."""
    with transaction.atomic():
        token_id = token.pk
        owner = token.user
        ApiToken.objects.filter(pk=token_id).delete()
        audit_record(
            actor=actor,
            action=AuditEvent.Action.TOKEN_REVOKE,
            object_type=API_TOKEN_TYPE,
            object_id=str(token_id),
            ip_address=ip_address,
            detail={"user": owner.get_username(), "reason": reason},
            reading_group_id=user_reading_group_id(user=owner),
        )


def api_token_touch(*, token: ApiToken, now: dt.datetime) -> None:
    """Record that the token was used, at most once a ``LAST_USED_RESOLUTION``."""
    if token.last_used is not None and now - token.last_used < LAST_USED_RESOLUTION:
        return
    ApiToken.objects.filter(pk=token.pk).update(last_used=now)
    token.last_used = now
