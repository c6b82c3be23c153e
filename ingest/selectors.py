"""Reads of the gateway's records, scoped to what the user administers."""

from __future__ import annotations

from django.db.models import QuerySet

from ingest.models import QuarantinedObject
from network.selectors import AnyUser, reading_groups_administered


def quarantine_list_visible(*, user: AnyUser) -> QuerySet[QuarantinedObject]:
    """Quarantined objects of the facilities the user's reading groups serve."""
    qs = QuarantinedObject.objects.select_related("facility")
    if getattr(user, "is_superuser", False) and user.is_active:
        return qs
    return qs.filter(facility__reading_group__in=reading_groups_administered(user=user))
