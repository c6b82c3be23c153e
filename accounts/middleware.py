"""Sessions that owe a second factor reach only the sign-in pages."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import reverse

from accounts.selectors import session_is_verified
from accounts.services import MFA_PENDING

# Reachable before the second factor: signing in and out, giving or enrolling the
# second factor (and the passkey ceremony's endpoints), and static files.
OPEN_PREFIXES = (
    "/login/",
    "/logout/",
    "/account/verify/",
    "/account/security/",
    "/account/webauthn/",
    "/admin/login/",
    "/admin/logout/",
    "/api-auth/",
    "/healthz",
)
API_PREFIXES = ("/api/", "/dicomweb/", "/metrics")


class MfaRequiredMiddleware:
    """A signed-in session that is not verified by a second factor, when one is owed
    (``MFA_REQUIRED``, or the user enrolled a device and signed in with a password),
    is sent to the second-factor page (or, with no device yet, to enrolment); API
    calls made with such a session are answered 403.  Token-authenticated API calls
    never reach this check: tokens are issued only after the second factor."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # No session cookie, no session to hold (and reading it would add "Vary: Cookie"
        # to every answer, the static and the viewer's included).
        if settings.SESSION_COOKIE_NAME not in request.COOKIES:
            return self.get_response(request)
        if (settings.MFA_REQUIRED or request.session.get(MFA_PENDING)) and self._owes(request):
            path = request.path_info
            static = "/" + settings.STATIC_URL.lstrip("/")
            if not path.startswith((*OPEN_PREFIXES, static)):
                if path.startswith(API_PREFIXES):
                    return JsonResponse(
                        {"detail": "Multi-factor verification is required for this session."},
                        status=403,
                    )
                return HttpResponseRedirect(
                    reverse("account-verify") + "?" + urlencode({"next": request.get_full_path()})
                )
        return self.get_response(request)

    @staticmethod
    def _owes(request: HttpRequest) -> bool:
        return request.user.is_authenticated and not session_is_verified(user=request.user)
