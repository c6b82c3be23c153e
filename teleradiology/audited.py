"""Audited save and delete of one model object: how an owner app's services write
plain configuration (the network, routing rules).  The owner's service is the
writer and decides what may be written; this module only says how, the same way
for every such table: validated, saved and audited in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from django.contrib.auth.models import User
from django.db import models, transaction

from audit.models import AuditEvent
from audit.services import audit_record

M = TypeVar("M", bound=models.Model)


def snapshot(instance: models.Model) -> dict[str, Any]:
    """The field values of an object before an update, for the audit diff."""
    return {f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields}


def _changes(instance: models.Model, before: dict[str, Any] | None) -> dict[str, Any]:
    after = snapshot(instance)
    if before is None:
        return {"created": {k: str(v) for k, v in after.items()}}
    return {
        "changed": {k: [str(before.get(k)), str(v)] for k, v in after.items() if before.get(k) != v}
    }


def audited_save(
    *,
    actor: User | None,
    instance: M,
    before: dict[str, Any] | None = None,
    ip_address: str | None = None,
    check: Callable[[M], None] | None = None,
) -> M:
    """Validate (model rules, constraints, then ``check``) and save, audited."""
    creating = instance._state.adding
    instance.full_clean()
    if check is not None:
        check(instance)
    with transaction.atomic():
        instance.save()
        audit_record(
            actor=actor,
            action=AuditEvent.Action.CREATE if creating else AuditEvent.Action.UPDATE,
            obj=instance,
            ip_address=ip_address,
            detail=_changes(instance, None if creating else before),
        )
    return instance


def audited_delete(
    *, actor: User | None, instance: models.Model, ip_address: str | None = None
) -> None:
    """Delete, audited; PROTECT foreign keys refuse it when in use."""
    with transaction.atomic():
        audit_record(
            actor=actor,
            action=AuditEvent.Action.DELETE,
            obj=instance,
            ip_address=ip_address,
            detail={"deleted": str(instance)},
        )
        instance.delete()


def related_set(
    *,
    instance: models.Model,
    name: str,
    values: Iterable[Any],
    actor: User | None = None,
    ip_address: str | None = None,
) -> None:
    """Replace the members of a many-to-many field (inside the caller's save); a
    change is audited with the members' ids before and after."""
    manager = getattr(instance, name)
    wanted = list(values)
    with transaction.atomic():
        before = sorted(manager.values_list("pk", flat=True))
        manager.set(wanted)
        after = sorted(manager.values_list("pk", flat=True))
        if before != after:
            audit_record(
                actor=actor,
                action=AuditEvent.Action.UPDATE,
                obj=instance,
                ip_address=ip_address,
                detail={"changed": {name: [before, after]}},
            )
