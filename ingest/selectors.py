"""Reads of the gateway's records, scoped to what the user administers."""

from __future__ import annotations

import os
import time
from pathlib import Path

from django.db import DatabaseError, connection
from django.db.models import Count, QuerySet

from ingest.models import FacilityStorageUsage, QuarantinedObject
from ingest.storage import ObjectStorage
from network.models import Facility
from network.selectors import AnyUser, reading_groups_administered


def quarantine_list_visible(*, user: AnyUser) -> QuerySet[QuarantinedObject]:
    """Quarantined objects of the facilities the user's reading groups serve."""
    qs = QuarantinedObject.objects.select_related("facility")
    if getattr(user, "is_superuser", False) and user.is_active:
        return qs
    return qs.filter(facility__reading_group__in=reading_groups_administered(user=user))


def quarantine_counts_by_status() -> dict[int, int]:
    """Objects ever quarantined, by the C-STORE status they were answered (one
    aggregate; rows are kept, never deleted)."""
    rows = QuarantinedObject.objects.values("status").annotate(n=Count("pk")).order_by()
    return {row["status"]: row["n"] for row in rows}


def staging_state(*, storage: ObjectStorage, now: float | None = None) -> tuple[int, float]:
    """(files in staging, age in seconds of the oldest): transfers in progress, and
    partial files of aborted ones until the listener's staging sweep removes them."""
    now = now if now is not None else time.time()
    count, oldest = 0, now
    root = storage.staging_dir()
    # Listener processes stage into folders of their own, one level down.
    folders = [root] + [Path(e.path) for e in os.scandir(root) if e.is_dir()]
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            continue
        for entry in entries:
            try:
                if entry.is_file():
                    count += 1
                    oldest = min(oldest, entry.stat().st_mtime)
            except FileNotFoundError:
                continue
    return count, now - oldest if count else 0.0


def facility_quota_left(facility: Facility) -> int | None:
    """Bytes the facility may still store (None: no quota), from the usage the beat
    sweep last measured; a database error admits (the quota is not a safety limit)."""
    quota = facility.dicom_storage_quota_bytes
    if quota is None:
        return None
    try:
        used = (
            FacilityStorageUsage.objects.filter(facility_id=facility.pk)
            .values_list("stored_bytes", flat=True)
            .first()
        )
    except DatabaseError:
        connection.close()
        return None
    return max(0, quota - (used or 0))
