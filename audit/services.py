"""Writing the audit trail: the one way any feature records an access."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.db import models

from audit.models import AuditEvent


def audit_record(
    *,
    actor: User | AnonymousUser | None,
    action: str,
    obj: models.Model | None = None,
    object_type: str = "",
    object_id: str = "",
    patient_id: str = "",
    ip_address: str | None = None,
    detail: dict[str, Any] | None = None,
    reading_group_id: int | None = None,
) -> AuditEvent:
    """Append one audit event; call inside the transaction of the change it records."""
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or str(obj.pk)
    user = actor if isinstance(actor, User) else None
    return AuditEvent.objects.create(
        actor=user,
        actor_username=user.get_username() if user is not None else "",
        action=action,
        object_type=object_type,
        object_id=object_id,
        patient_id=patient_id or "",
        ip_address=ip_address,
        detail=detail or {},
        reading_group_id=reading_group_id,
    )


def audit_record_many(
    *,
    actor: User | AnonymousUser | None,
    action: str,
    object_type: str,
    items: list[tuple[str, str]],
    ip_address: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one event per (object id, patient id) in a single INSERT (list pages)."""
    audit_record_each(
        actor=actor,
        action=action,
        object_type=object_type,
        items=[(object_id, patient_id, detail or {}) for object_id, patient_id in items],
        ip_address=ip_address,
    )


def audit_record_each(
    *,
    actor: User | AnonymousUser | None,
    action: str,
    object_type: str,
    items: list[tuple[str, str, dict[str, Any]]],
    ip_address: str | None = None,
) -> None:
    """Append one event per (object id, patient id, detail) in a single INSERT (a
    batch of changes, each with its own detail)."""
    user = actor if isinstance(actor, User) else None
    AuditEvent.objects.bulk_create(
        [
            AuditEvent(
                actor=user,
                actor_username=user.get_username() if user is not None else "",
                action=action,
                object_type=object_type,
                object_id=object_id,
                patient_id=patient_id or "",
                ip_address=ip_address,
                detail=detail,
            )
            for object_id, patient_id, detail in items
        ]
    )
