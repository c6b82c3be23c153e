"""A radiologist's own macros: named snippets insertable into any text field of a report."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction

from audit.models import AuditEvent
from audit.services import audit_record
from network.models import Radiologist
from reporting.models import Macro
from teleradiology.errors import Conflict, DomainError


def macro_save(
    *,
    radiologist: Radiologist,
    name: str,
    text: str,
    macro_id: int | None = None,
    actor: User | None = None,
) -> Macro:
    """Create or rename/rewrite one of the radiologist's own macros (names are unique)."""
    if not name.strip() or not text.strip():
        raise DomainError("A macro needs a name and text.", code="invalid_macro")
    with transaction.atomic():
        if macro_id is None:
            macro = Macro(radiologist=radiologist)
        else:
            macro = Macro.objects.select_for_update().get(pk=macro_id, radiologist=radiologist)
        if (
            Macro.objects.filter(radiologist=radiologist, name=name.strip())
            .exclude(pk=macro.pk)
            .exists()
        ):
            raise Conflict(f"You already have a macro named '{name.strip()}'.", code="duplicate")
        creating = macro.pk is None
        macro.name, macro.text = name.strip(), text
        macro.save()
        audit_record(
            actor=actor,
            action=AuditEvent.Action.CREATE if creating else AuditEvent.Action.UPDATE,
            obj=macro,
            detail={"name": macro.name},
        )
    return macro


def macro_delete(*, radiologist: Radiologist, macro_id: int, actor: User | None = None) -> None:
    """Delete one of the radiologist's own macros."""
    with transaction.atomic():
        macro = Macro.objects.get(pk=macro_id, radiologist=radiologist)
        audit_record(
            actor=actor, action=AuditEvent.Action.DELETE, obj=macro, detail={"name": macro.name}
        )
        macro.delete()
