"""Reads of the audit trail, scoped to the reader's reading groups."""

from __future__ import annotations

from collections.abc import Collection

from django.db.models import Q, QuerySet

from audit.models import AuditEvent


def audit_event_list_visible(
    *, reading_group_ids: Collection[int] | None, member_ids: Collection[int] = ()
) -> QuerySet[AuditEvent]:
    """The events of these reading groups, and those whose actor belongs to one of
    them (a member's sign-ins, their reads elsewhere); ``None`` for site operators,
    who see every event.  No group: nothing."""
    if reading_group_ids is None:
        return AuditEvent.objects.all()
    if not reading_group_ids:
        return AuditEvent.objects.none()
    scope = Q(reading_group_id__in=list(reading_group_ids))
    if member_ids:
        scope |= Q(actor_id__in=list(member_ids))
    return AuditEvent.objects.filter(scope)
