"""The idle-logoff clock of a page session, for the page's own script
(``static/idle-logoff.js``): how long is left, and "stay signed in"."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.shortcuts import resolve_url
from django.views.decorators.http import require_http_methods

from teleradiology.middleware import session_idle_remaining


@require_http_methods(["GET", "POST"])
def session_keepalive(request: HttpRequest) -> JsonResponse:
    """GET (sent as a background request): the seconds left before the session ends
    for inactivity.  POST ("Stay signed in"): a request of the user's own, so the
    middleware has just restarted the clock.  Signed out: ``signed_in`` is false."""
    if not request.user.is_authenticated:
        return JsonResponse(
            {"signed_in": False, "remaining": 0, "login_url": resolve_url(settings.LOGIN_URL)}
        )
    return JsonResponse(
        {
            "signed_in": True,
            "remaining": round(session_idle_remaining(request), 1),
            "login_url": resolve_url(settings.LOGIN_URL),
        }
    )


def idle_logoff(request: HttpRequest) -> dict[str, dict[str, object]]:
    """Template context: the idle-logoff clock's settings, for base.html's meta tag."""
    return {
        "idle_logoff": {
            "timeout": settings.SESSION_IDLE_TIMEOUT,
            "warning": min(settings.SESSION_IDLE_WARNING, settings.SESSION_IDLE_TIMEOUT),
            "login_url": resolve_url(settings.LOGIN_URL),
        }
    }
