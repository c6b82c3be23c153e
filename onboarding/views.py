"""The facility checklist page for group admins, with a connection test button per
peer (htmx posts it and swaps in the result)."""

from __future__ import annotations

from types import SimpleNamespace

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_POST
from rest_framework.exceptions import NotFound, PermissionDenied

from onboarding import selectors, services
from teleradiology.api import client_ip, request_actor
from teleradiology.converters import parse_id
from teleradiology.throttling import ScopedRateThrottle


def _refused(request: HttpRequest, refusal: Exception, *, partial: bool) -> HttpResponse:
    status = 404 if isinstance(refusal, NotFound) else 403
    if partial:
        return HttpResponse(str(refusal), status=status, content_type="text/plain")
    return render(request, "turnaround/refused.html", {"message": str(refusal)}, status=status)


@login_required
def checklist_page(request: HttpRequest, id: int) -> HttpResponse:
    try:
        facility = selectors.facility_administered_get(user=request.user, facility_id=id)
    except (PermissionDenied, NotFound) as refusal:
        return _refused(request, refusal, partial=False)
    checklist = selectors.facility_checklist(facility=facility, now=timezone.now())
    return render(request, "onboarding/checklist.html", {"checklist": checklist})


# The API's throttle, asked by the page too: one budget per user for both.
_THROTTLE_VIEW = SimpleNamespace(throttle_scope="connection-test")


@login_required
@require_POST
def checklist_test(request: HttpRequest, id: int) -> HttpResponse:
    """One connection test (POST peer=pacs|endpoint); answers the result fragment."""
    try:
        facility = selectors.facility_administered_get(user=request.user, facility_id=id)
    except (PermissionDenied, NotFound) as refusal:
        return _refused(request, refusal, partial=True)
    throttle = ScopedRateThrottle()
    if not throttle.allow_request(request, _THROTTLE_VIEW):  # type: ignore[arg-type]
        wait = throttle.wait()
        response = render(
            request,
            "onboarding/_test_result.html",
            {"error": "Too many connection tests: wait a minute and try again."},
            status=429,
        )
        if wait is not None:
            response["Retry-After"] = str(int(wait) + 1)
        return response
    peer = request.POST.get("peer", "")
    try:
        result = services.facility_peer_test(
            actor=request_actor(request),
            facility=facility,
            peer=peer,
            endpoint_id=parse_id(request.POST.get("endpoint", "")),
            ip_address=client_ip(request),
        )
    except ValidationError as exc:
        return render(
            request, "onboarding/_test_result.html", {"error": " ".join(exc.messages)}, status=400
        )
    return render(request, "onboarding/_test_result.html", {"result": result, "peer": peer})
