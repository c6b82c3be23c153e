"""API throttles: DRF's anonymous, per-user and scoped throttles, reading their rates
from the settings on every request (DRF's own classes keep the rates they saw at
import, so a test's ``override_settings`` would not reach them).

The rates (settings ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]``, each from an
``API_THROTTLE_*`` variable) are far above what a reader or an integration sends
and well below what a script in a loop does; the counts live in the default cache,
Redis when ``REDIS_URL`` is set, so every gunicorn worker shares them.

DICOMweb retrievals count under a rate of their own (``dicomweb``): the viewer
fetches a frame per request, hundreds a minute while a reader scrolls a CT.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rest_framework import throttling
from rest_framework.settings import api_settings

if TYPE_CHECKING:  # rest_framework.views imports this module: no cycle at run time
    from rest_framework.request import Request
    from rest_framework.views import APIView

DICOMWEB_PREFIX = "/dicomweb/"


def _rate(scope: str | None) -> str | None:
    rates: dict[str, Any] = api_settings.DEFAULT_THROTTLE_RATES
    rate = rates.get(scope) if scope else None
    return str(rate) if rate is not None else None


class AnonRateThrottle(throttling.AnonRateThrottle):
    """Requests without a signed-in user, per client address (``anon``)."""

    def get_rate(self) -> str | None:
        return _rate(self.scope)


class UserRateThrottle(throttling.UserRateThrottle):
    """Requests of a signed-in user (``user``; under /dicomweb/: ``dicomweb``)."""

    def get_rate(self) -> str | None:
        return _rate(self.scope)

    def allow_request(self, request: Request, view: APIView) -> bool:
        if request.path.startswith(DICOMWEB_PREFIX):
            self.scope = "dicomweb"
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)


class ScopedRateThrottle(throttling.ScopedRateThrottle):
    """Views naming a ``throttle_scope`` ("sign-in", "claim"): per user, else per address."""

    def get_rate(self) -> str | None:
        return _rate(self.scope)


def add_throttled_responses(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular post-processing hook: every operation may answer 429 (with
    Retry-After), so a client and the schema tests know it."""
    components = result.setdefault("components", {})
    components.setdefault("responses", {})["Throttled"] = {
        "description": "Too many requests: wait the Retry-After seconds and try again.",
        "headers": {
            "Retry-After": {
                "schema": {"type": "integer"},
                "description": "Seconds to wait before the next request.",
            }
        },
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"detail": {"type": "string"}},
                    "required": ["detail"],
                }
            }
        },
    }
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            if isinstance(operation, dict) and "responses" in operation:
                operation["responses"].setdefault(
                    "429", {"$ref": "#/components/responses/Throttled"}
                )
    return result
