"""API plumbing shared by every app: domain errors become clear 4xx answers."""

from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from teleradiology.errors import DomainError


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Map the project's errors to HTTP; fall back to DRF for everything else."""
    if isinstance(exc, DomainError):
        return Response({"detail": exc.message, "code": exc.code}, status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        detail: Any = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        return Response({"detail": detail}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, IntegrityError):
        # A database constraint caught what validation did not: still the
        # client's input, still a 4xx, and nothing was half-written.
        return Response(
            {"detail": "The change conflicts with existing data.", "code": "integrity"},
            status=status.HTTP_409_CONFLICT,
        )
    return drf_exception_handler(exc, context)


def client_ip(request: Any) -> str | None:
    """The caller's address as the web server saw it (proxies are configured upstream)."""
    value = request.META.get("REMOTE_ADDR")
    return str(value) if value else None


def request_actor(request: Any) -> User | None:
    """The signed-in user making the request, typed for services' ``actor``."""
    user = getattr(request, "user", None)
    return user if isinstance(user, User) else None
