"""Sign-in pages: password, second factor, security settings (enrolment), sign-out."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urlencode

import qrcode
import qrcode.image.svg
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render, resolve_url
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_otp_webauthn.exceptions import OTPWebAuthnApiError
from django_otp_webauthn.utils import get_credential_model
from django_otp_webauthn.views import (
    CompleteCredentialAuthenticationView,
    CompleteCredentialRegistrationView,
)

from accounts import services
from accounts.selectors import session_is_verified, user_devices, user_has_second_factor


def _next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return resolve_url(settings.LOGIN_REDIRECT_URL)


def _with_next(url: str, target: str) -> str:
    return url + "?" + urlencode({"next": target})


def locked_out(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: Any = None
) -> HttpResponse:
    """django-axes' answer to a locked-out sign-in (``AXES_LOCKOUT_CALLABLE``): 429 with
    Retry-After, as JSON on the API and a page elsewhere."""
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    message = (
        f"Too many failed sign-ins: signing in is locked for {minutes} minutes for this "
        "account or address. Try again later, or ask your group's admin."
    )
    response: HttpResponse
    if request.path_info.startswith("/api/"):
        response = JsonResponse({"detail": message}, status=429)
    else:
        response = render(request, "accounts/locked_out.html", {"message": message}, status=429)
    response["Retry-After"] = str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    return response


@method_decorator([sensitive_post_parameters("password"), csrf_protect, never_cache], "dispatch")
class SignInView(View):
    """The password step (every page sign-in, the admin's included)."""

    template_name = "registration/login.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        if session_is_verified(user=request.user):
            return HttpResponseRedirect(_next(request))
        return render(request, self.template_name, {"next": _next(request)})

    def post(self, request: HttpRequest) -> HttpResponse:
        username = request.POST.get("username", "")[:150]
        password = request.POST.get("password", "")
        target = _next(request)
        try:
            outcome = services.sign_in_password(
                request=request, username=username, password=password
            )
        except services.SignInRefused as refused:
            # A lockout is answered by django-axes' middleware (``locked_out``).
            return render(
                request,
                self.template_name,
                {"next": target, "error": str(refused), "username": username},
                status=200,
            )
        if outcome.enrol:
            return HttpResponseRedirect(_with_next(reverse("account-security"), target))
        if outcome.second_factor:
            return HttpResponseRedirect(_with_next(reverse("account-verify"), target))
        return HttpResponseRedirect(target)


@method_decorator([csrf_protect, never_cache], "dispatch")
class VerifyView(View):
    """The second step: a code from the authenticator app, a recovery code, or a passkey."""

    template_name = "accounts/verify.html"

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        user = request.user
        if not user.is_authenticated:
            return HttpResponseRedirect(_with_next(reverse("login"), _next(request)))
        if session_is_verified(user=user):
            return HttpResponseRedirect(_next(request))
        assert isinstance(user, User)  # noqa: S101
        if not user_has_second_factor(user=user):
            return HttpResponseRedirect(_with_next(reverse("account-security"), _next(request)))
        return super().dispatch(request, *args, **kwargs)

    def _render(self, request: HttpRequest, error: str = "") -> HttpResponse:
        user = request.user
        assert isinstance(user, User)  # noqa: S101
        kinds = {services.device_kind(d) for d in user_devices(user=user)}
        return render(
            request,
            self.template_name,
            {"next": _next(request), "error": error, "passkey": "passkey" in kinds},
        )

    def get(self, request: HttpRequest) -> HttpResponse:
        return self._render(request)

    def post(self, request: HttpRequest) -> HttpResponse:
        try:
            services.second_factor_verify(request=request, code=request.POST.get("otp_token", ""))
        except services.SignInRefused as refused:
            if refused.locked:
                return HttpResponseRedirect(reverse("login"))  # axes answers the lockout
            return self._render(request, error=str(refused))
        return HttpResponseRedirect(_next(request))


def _qr_svg(url: str) -> str:
    image = qrcode.make(url, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    return str(image.to_string(encoding="unicode"))


@method_decorator([login_required, csrf_protect, never_cache], "dispatch")
class SecurityView(View):
    """Second factors of the signed-in user: add an authenticator app (scan the QR code,
    confirm with a code), recovery codes, passkeys; remove a device.  A user who has a
    device must have verified this session to change anything."""

    template_name = "accounts/security.html"

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        user = request.user
        assert isinstance(user, User)  # noqa: S101
        if not session_is_verified(user=user) and user_has_second_factor(user=user):
            return HttpResponseRedirect(_with_next(reverse("account-verify"), request.path))
        return super().dispatch(request, *args, **kwargs)

    def _render(self, request: HttpRequest, **extra: Any) -> HttpResponse:
        user = request.user
        assert isinstance(user, User)  # noqa: S101
        devices = [
            {
                "id": d.persistent_id,
                "name": d.name,
                "kind": services.device_kind(d),
                "left": d.token_set.count() if isinstance(d, StaticDevice) else None,
            }
            for d in user_devices(user=user)
        ]
        context = {
            "devices": devices,
            "has_totp": any(d["kind"] == "totp" for d in devices),
            "verified": session_is_verified(user=user),
            "required": settings.MFA_REQUIRED,
            "next": request.GET.get("next", ""),
            **extra,
        }
        return render(request, self.template_name, context)

    def get(self, request: HttpRequest) -> HttpResponse:
        return self._render(request)

    def post(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        assert isinstance(user, User)  # noqa: S101
        action = request.POST.get("action", "")
        if action == "totp_start":
            return self._render_totp(request, services.totp_device_start(user=user))
        if action == "totp_confirm":
            try:
                device_id = int(request.POST.get("device", ""))
            except ValueError:
                return self._render(request, error="Start again: add an authenticator app.")
            code = request.POST.get("otp_token", "")
            device = services.totp_device_confirm(request=request, device_id=device_id, code=code)
            if device is None:
                pending = TOTPDevice.objects.filter(
                    user=user, pk=device_id, confirmed=False
                ).first()
                if pending is None:
                    return self._render(request, error="Start again: add an authenticator app.")
                return self._render_totp(request, pending, error="That code is not valid.")
            return self._render(request, enrolled=True, next_url=_next(request))
        if not session_is_verified(user=user):
            return self._render(request, error="Add an authenticator app or a passkey first.")
        if action == "recovery":
            return self._render(request, codes=services.recovery_codes_generate(request=request))
        if action == "remove":
            services.device_remove(request=request, persistent_id=request.POST.get("device", ""))
            return HttpResponseRedirect(reverse("account-security"))
        return self._render(request)

    def _render_totp(
        self, request: HttpRequest, device: TOTPDevice, error: str = ""
    ) -> HttpResponse:
        secret = base64.b32encode(device.bin_key).decode()
        return self._render(
            request, pending=device, qr=_qr_svg(device.config_url), secret=secret, error=error
        )


@require_POST
@csrf_protect
def sign_out(request: HttpRequest) -> HttpResponse:
    """End the page session (also the admin's and the browsable API's sign-out)."""
    services.sign_out(request=request)
    return HttpResponseRedirect(resolve_url(settings.LOGOUT_REDIRECT_URL))


def sign_in_redirect(request: HttpRequest) -> HttpResponse:
    """The admin's and the browsable API's sign-in pages: ours, so that every page
    sign-in passes the same lockout, second factor and audit."""
    return HttpResponseRedirect(_with_next(reverse("login"), _next(request)))


# --- Passkeys (django-otp-webauthn's ceremony endpoints, audited) --------------------
class PasskeyRegistrationComplete(CompleteCredentialRegistrationView):
    """Registering a passkey: django-otp-webauthn's view, audited as an enrolment."""

    def post(self, *args: Any, **kwargs: Any) -> JsonResponse:
        response: JsonResponse = super().post(*args, **kwargs)
        device = get_credential_model().objects.get(pk=json.loads(response.content)["id"])
        services.passkey_enrolled_record(request=self.request, device=device)
        return response


class PasskeyAuthenticationComplete(CompleteCredentialAuthenticationView):
    """A passkey as the second factor: django-otp-webauthn's view; the sign-in is then
    completed (audited) and a refused passkey counts as a failed sign-in."""

    def complete_auth(self, device: Any) -> Any:
        super().complete_auth(device)
        services.second_factor_passkey_verified(request=self.request, device=device)

    def handle_exception(self, exc: Exception) -> Any:
        if isinstance(exc, OTPWebAuthnApiError) and services.second_factor_passkey_failed(
            request=self.request
        ):
            return locked_out(self.request)
        return super().handle_exception(exc)
