"""Response headers every page and API answer carries, and the idle logoff of page
sessions.

- ``Permissions-Policy`` turns off the browser features the product never uses
  (camera, microphone, geolocation, payment, USB, ...) and keeps WebAuthn for passkeys
  on this origin only.
- ``Cache-Control: no-store`` on every response that may carry patient data: every
  answer under ``/api/`` and ``/dicomweb/`` and every answer to a signed-in user,
  so that no browser or proxy keeps a copy.  Static files keep their caching, and so
  does a response its view declared ``public`` (the viewer's OHIF bundle, the same
  for everyone and free of patient data).
- Idle logoff: a page session unused for ``SESSION_IDLE_TIMEOUT`` seconds is ended.
  Requests that pages send by themselves (the worklist's and the operations page's
  polling, marked with ``X-Background: 1``) do not count as use; the keep-alive
  endpoint (``teleradiology.keepalive``) does.  An htmx request whose session has
  ended is answered with ``HX-Redirect`` to the sign-in page, so that the page goes
  there rather than swapping the sign-in form into a table row.  Token-authenticated
  API calls carry no session and are not affected.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import BACKEND_SESSION_KEY, logout
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import resolve_url

PERMISSIONS_POLICY = ", ".join(
    [
        "accelerometer=()",
        "autoplay=()",
        "camera=()",
        "display-capture=()",
        "geolocation=()",
        "gyroscope=()",
        "hid=()",
        "magnetometer=()",
        "microphone=()",
        "midi=()",
        "payment=()",
        "serial=()",
        "usb=()",
        "xr-spatial-tracking=()",
        # Passkeys (WebAuthn) on our own pages only.
        "publickey-credentials-create=(self)",
        "publickey-credentials-get=(self)",
    ]
)

# Answers under these paths carry patient data whoever asks (a token-authenticated
# API client has no session, so the "signed-in user" rule alone would miss it).
NO_STORE_PREFIXES = ("/api/", "/dicomweb/")

# The session key holding the time (seconds since the epoch) of the last request the
# user made themselves.
LAST_ACTIVITY_KEY = "idle_last_activity"
BACKGROUND_HEADER = "HTTP_X_BACKGROUND"
# Requests for files a page loads (not requests of the user's own).
FILE_SUFFIXES = (".js", ".mjs", ".css", ".wasm", ".woff", ".woff2", ".ttf", ".map", ".ico")


def _static_prefix() -> str:
    return "/" + settings.STATIC_URL.lstrip("/") if settings.STATIC_URL else "/static/"


class SecurityHeadersMiddleware:
    """Permissions-Policy on every response; no-store where patient data may be."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        response.headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        if _may_carry_patient_data(request, response):
            response["Cache-Control"] = "no-store"
        return response


def _may_carry_patient_data(request: HttpRequest, response: HttpResponseBase) -> bool:
    path = request.path_info
    if path.startswith(_static_prefix()):
        return False
    declared = response.get("Cache-Control", "").lower()
    if "public" in [part.strip() for part in declared.split(",")]:
        return False
    if path.startswith(NO_STORE_PREFIXES):
        return True
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated)


def is_background(request: HttpRequest) -> bool:
    """Whether the page sent this request by itself (polling), not the user."""
    return request.META.get(BACKGROUND_HEADER) == "1"


def idle_timeout() -> int:
    """Seconds of inactivity after which a page session ends (0: never)."""
    return int(settings.SESSION_IDLE_TIMEOUT)


def session_idle_remaining(request: HttpRequest, *, now: float | None = None) -> float:
    """Seconds left before the request's session ends for inactivity."""
    last = request.session.get(LAST_ACTIVITY_KEY)
    now = time.time() if now is None else now
    if not isinstance(last, int | float):
        return float(idle_timeout())
    return max(float(idle_timeout()) - (now - last), 0.0)


def session_touch(request: HttpRequest, *, now: float | None = None) -> None:
    """Record user activity now.  Written at most every thirtieth of the timeout (at
    most every 30 s), so that a busy page does not rewrite its session every request."""
    now = time.time() if now is None else now
    last = request.session.get(LAST_ACTIVITY_KEY)
    granularity = min(30.0, idle_timeout() / 30)
    if not isinstance(last, int | float) or now - last >= granularity:
        request.session[LAST_ACTIVITY_KEY] = now


def _login_redirect(request: HttpRequest) -> HttpResponse:
    """Where an htmx request of an ended session sends its page: the sign-in page,
    coming back to the page (not the fragment) afterwards."""
    page = urlsplit(request.headers.get("HX-Current-URL", ""))
    back = page.path + (f"?{page.query}" if page.query else "") if page.path else "/"
    response = HttpResponse(status=200)
    response["HX-Redirect"] = f"{resolve_url(settings.LOGIN_URL)}?{urlencode({'next': back})}"
    return response


class IdleSessionMiddleware:
    """Ends a session-authenticated user's session after SESSION_IDLE_TIMEOUT seconds
    without a request of their own; keeps htmx pages from swapping in the sign-in page."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        timeout = idle_timeout()
        user = getattr(request, "user", None)
        if (
            timeout > 0
            and _may_have_a_session(request)
            and user is not None
            and user.is_authenticated
            and BACKEND_SESSION_KEY in request.session
        ):
            now = time.time()
            if session_idle_remaining(request, now=now) <= 0:
                minutes = max(round(timeout / 60), 1)
                logout(request)
                messages.info(request, f"You were signed out after {minutes} min without activity.")
            elif not is_background(request):
                session_touch(request, now=now)
            elif LAST_ACTIVITY_KEY not in request.session:
                # A first request of a new session counts, even a background one.
                session_touch(request, now=now)
        response = self.get_response(request)
        if request.headers.get("HX-Request") == "true" and _is_login_redirect(response):
            return _login_redirect(request)
        return response


def _may_have_a_session(request: HttpRequest) -> bool:
    """Whether to look at the session at all: not without a session cookie, and not
    for files (static files, the viewer's bundle), whose public answers must not
    vary by cookie (reading the session would add ``Vary: Cookie``)."""
    if settings.SESSION_COOKIE_NAME not in request.COOKIES:
        return False
    path = request.path_info
    return not (path.startswith(_static_prefix()) or path.lower().endswith(FILE_SUFFIXES))


def _is_login_redirect(response: HttpResponseBase) -> bool:
    if response.status_code not in (301, 302, 303, 307, 308):
        return False
    location = urlsplit(response.get("Location", ""))
    return location.path == resolve_url(settings.LOGIN_URL)
