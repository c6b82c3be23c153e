"""Liveness for operators and load balancers."""

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.utils import timezone

from health.models import Heartbeat


def healthz(request: HttpRequest) -> JsonResponse:
    """Database reachable, and how long ago a worker last ran a beat task."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        database = "ok"
    except Exception as exc:  # a health check reports, it never raises
        database = f"error: {type(exc).__name__}"
    beat = Heartbeat.objects.filter(name="worker").first() if database == "ok" else None
    age = (timezone.now() - beat.at).total_seconds() if beat else None
    ok = database == "ok"
    return JsonResponse(
        {"database": database, "worker_heartbeat_age_seconds": age}, status=200 if ok else 503
    )
