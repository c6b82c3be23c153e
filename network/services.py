"""Writes to the reading network; each change is validated and audited."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils import timezone
from guardian.shortcuts import assign_perm, get_user_perms, remove_perm

from audit.models import AuditEvent
from audit.services import audit_record, audit_record_each
from network.models import (
    CredentialStatus,
    Facility,
    FacilityAETitle,
    FacilityPrivilege,
    Radiologist,
    ReadingGroup,
    Shift,
)
from network.roles import GROUP_ADMINS
from teleradiology.audited import audited_delete, audited_save, related_set, snapshot

M = TypeVar("M", bound=models.Model)


def network_object_save(
    *,
    actor: User | None,
    instance: M,
    before: dict[str, Any] | None = None,
    ip_address: str | None = None,
) -> M:
    """Validate (model rules and constraints) and save a network object, audited."""
    return audited_save(
        actor=actor,
        instance=instance,
        before=before,
        ip_address=ip_address,
        check=_shift_check_overlap,
    )


def network_object_delete(
    *, actor: User | None, instance: models.Model, ip_address: str | None = None
) -> None:
    """Delete a network object, audited; PROTECT foreign keys refuse it when in use."""
    audited_delete(actor=actor, instance=instance, ip_address=ip_address)


def network_object_set_related(
    *,
    instance: models.Model,
    name: str,
    values: Iterable[Any],
    actor: User | None = None,
    ip_address: str | None = None,
) -> None:
    """Replace a network object's many-to-many members (e.g. a reader's subspecialties)."""
    related_set(instance=instance, name=name, values=values, actor=actor, ip_address=ip_address)


def _shift_check_overlap(shift: models.Model) -> None:
    """A reader's shifts do not overlap (checked for shifts; other objects pass)."""
    if not isinstance(shift, Shift):
        return
    overlapping = Shift.objects.filter(
        radiologist_id=shift.radiologist_id,
        starts_at__lt=shift.ends_at,
        ends_at__gt=shift.starts_at,
    ).exclude(pk=shift.pk)
    if overlapping.exists():
        raise ValidationError({"starts_at": "This shift overlaps another shift of the reader."})


def facility_set_ae_titles(
    *, actor: User | None, facility: Facility, ae_titles: Iterable[str]
) -> None:
    """Replace a facility's AE titles; a title another facility uses is refused."""
    wanted = list(dict.fromkeys(ae_titles))
    taken = (
        FacilityAETitle.objects.filter(ae_title__in=wanted)
        .exclude(facility=facility)
        .values_list("ae_title", flat=True)
    )
    if taken:
        raise ValidationError(
            {"ae_titles": f"Already used by another facility: {', '.join(sorted(taken))}."}
        )
    with transaction.atomic():
        current = set(facility.ae_titles.values_list("ae_title", flat=True))
        facility.ae_titles.exclude(ae_title__in=wanted).delete()
        for title in wanted:
            if title not in current:
                row = FacilityAETitle(facility=facility, ae_title=title)
                row.full_clean()
                row.save()
        if current != set(wanted):
            audit_record(
                actor=actor,
                action=AuditEvent.Action.UPDATE,
                obj=facility,
                detail={"ae_titles": [sorted(current), sorted(wanted)]},
            )


def facility_staff_grant(*, actor: User | None, user: User, facility: Facility) -> None:
    """Make ``user`` staff of ``facility``: they see its studies and only those (idempotent)."""
    if "access_facility" in get_user_perms(user, facility):
        return
    with transaction.atomic():
        assign_perm("network.access_facility", user, facility)
        audit_record(
            actor=actor,
            action=AuditEvent.Action.UPDATE,
            obj=facility,
            detail={"granted_staff": user.get_username()},
        )


def facility_staff_revoke(*, actor: User | None, user: User, facility: Facility) -> None:
    """Remove ``user``'s staff access to ``facility``."""
    with transaction.atomic():
        remove_perm("network.access_facility", user, facility)
        audit_record(
            actor=actor,
            action=AuditEvent.Action.UPDATE,
            obj=facility,
            detail={"revoked_staff": user.get_username()},
        )


def reading_group_admin_grant(*, actor: User | None, user: User, group: ReadingGroup) -> None:
    """Make ``user`` an admin of ``group`` (network, routing and its studies; idempotent)."""
    if "administer_readinggroup" in get_user_perms(user, group):
        return
    with transaction.atomic():
        assign_perm("network.administer_readinggroup", user, group)
        # The Django admin's screens for the network (scoped to the group there).
        user.groups.add(Group.objects.get(name=GROUP_ADMINS))
        if not user.is_staff:
            user.is_staff = True
            user.save(update_fields=["is_staff"])
        audit_record(
            actor=actor,
            action=AuditEvent.Action.UPDATE,
            obj=group,
            detail={"granted_admin": user.get_username()},
        )


# --- Privileges in bulk ---------------------------------------------------------
@dataclass
class PrivilegeGrant:
    """What a bulk grant did: rows created, rows whose period was extended, and rows
    that already covered the period asked for (nothing written for those)."""

    created: list[FacilityPrivilege] = field(default_factory=list)
    extended: list[FacilityPrivilege] = field(default_factory=list)
    unchanged: list[FacilityPrivilege] = field(default_factory=list)


def _names(ids: Iterable[int]) -> str:
    return ", ".join(str(pk) for pk in sorted(set(ids)))


def _privileges_grant_periods(
    *,
    actor: User | None,
    facility: Facility,
    periods: dict[int, tuple[dt.date, dt.date]],
    ip_address: str | None,
    detail: dict[str, Any],
) -> PrivilegeGrant:
    """Grant each reader (by id) an active privilege at ``facility`` for their period,
    in the caller's transaction, in a constant number of statements.

    Idempotent: an active privilege of the reader at the facility whose period
    overlaps or touches the one asked for (ends the day before it starts, or starts
    the day after it ends) is extended to the union of the two; when several do, the
    one that ends last is.  A period already inside one active privilege writes
    nothing.  Suspended, revoked or pending privileges are left as they are (a grant
    adds an active one beside them)."""
    bad = [pk for pk, (start, end) in periods.items() if end < start]
    if bad:
        raise ValidationError(
            {"valid_to": f"A privilege cannot end before it starts (readers {_names(bad)})."}
        )
    result = PrivilegeGrant()
    if not periods:
        return result
    day = dt.timedelta(days=1)
    earliest = min(start for start, _ in periods.values())
    latest = max(end for _, end in periods.values())
    existing: dict[int, list[FacilityPrivilege]] = {}
    for row in FacilityPrivilege.objects.filter(
        facility=facility,
        radiologist_id__in=list(periods),
        status=CredentialStatus.ACTIVE,
        valid_from__lte=latest + day,
        valid_to__gte=earliest - day,
    ).order_by("-valid_to", "pk"):
        existing.setdefault(row.radiologist_id, []).append(row)
    before: dict[int, dict[str, Any]] = {}
    for reader_id, (start, end) in sorted(periods.items()):
        touching = [
            row
            for row in existing.get(reader_id, [])
            if row.valid_from <= end + day and row.valid_to >= start - day
        ]
        if not touching:
            result.created.append(
                FacilityPrivilege(
                    radiologist_id=reader_id,
                    facility=facility,
                    status=CredentialStatus.ACTIVE,
                    valid_from=start,
                    valid_to=end,
                )
            )
            continue
        covering = next((r for r in touching if r.valid_from <= start and r.valid_to >= end), None)
        if covering is not None:
            result.unchanged.append(covering)
            continue
        row = touching[0]  # the one that ends last
        before[row.pk] = snapshot(row)
        row.valid_from = min(row.valid_from, start)
        row.valid_to = max(row.valid_to, end)
        result.extended.append(row)
    # One INSERT and one UPDATE whatever the number of readers (bulk_create sets the
    # new rows' ids on PostgreSQL and SQLite alike).
    FacilityPrivilege.objects.bulk_create(result.created)
    FacilityPrivilege.objects.bulk_update(result.extended, ["valid_from", "valid_to"])
    label = FacilityPrivilege._meta.label_lower
    group_id = facility.reading_group_id
    # The same events as the single-row API's audited_save, one INSERT per kind.
    audit_record_each(
        actor=actor,
        action=AuditEvent.Action.CREATE,
        object_type=label,
        items=[
            (str(row.pk), "", {"created": {k: str(v) for k, v in snapshot(row).items()}, **detail})
            for row in result.created
        ],
        ip_address=ip_address,
        reading_group_id=group_id,
    )
    audit_record_each(
        actor=actor,
        action=AuditEvent.Action.UPDATE,
        object_type=label,
        items=[
            (
                str(row.pk),
                "",
                {
                    "changed": {
                        name: [str(before[row.pk][name]), str(getattr(row, name))]
                        for name in ("valid_from", "valid_to")
                        if before[row.pk][name] != getattr(row, name)
                    },
                    **detail,
                },
            )
            for row in result.extended
        ],
        ip_address=ip_address,
        reading_group_id=group_id,
    )
    return result


def _facility_locked(facility: Facility) -> Facility:
    """The facility row, locked to the end of the transaction: grants at one facility
    run one at a time, so two concurrent grants cannot both create the same row."""
    return Facility.objects.select_for_update().get(pk=facility.pk)


def privileges_grant(
    *,
    actor: User | None,
    facility: Facility,
    radiologist_ids: Sequence[int],
    valid_from: dt.date,
    valid_to: dt.date,
    ip_address: str | None = None,
) -> PrivilegeGrant:
    """Grant these readers active privileges at ``facility`` from ``valid_from`` to
    ``valid_to``, in one transaction, each created or extended row audited.

    Every reader must belong to the facility's reading group (else nothing is
    written and the error names them); an overlapping active privilege is extended,
    never duplicated (see ``_privileges_grant_periods``)."""
    ids = list(dict.fromkeys(radiologist_ids))
    if valid_to < valid_from:
        raise ValidationError({"valid_to": "A privilege cannot end before it starts."})
    with transaction.atomic():
        facility = _facility_locked(facility)
        found = set(
            Radiologist.objects.filter(
                pk__in=ids, reading_group_id=facility.reading_group_id
            ).values_list("pk", flat=True)
        )
        foreign = [pk for pk in ids if pk not in found]
        if foreign:
            raise ValidationError(
                {
                    "radiologists": "Not readers of this facility's reading group: "
                    f"{_names(foreign)}."
                }
            )
        return _privileges_grant_periods(
            actor=actor,
            facility=facility,
            periods=dict.fromkeys(ids, (valid_from, valid_to)),
            ip_address=ip_address,
            detail={"bulk": "grant"},
        )


def privileges_copy(
    *,
    actor: User | None,
    source: Facility,
    target: Facility,
    on: dt.date,
    valid_from: dt.date | None = None,
    valid_to: dt.date | None = None,
    ip_address: str | None = None,
) -> PrivilegeGrant:
    """Give the readers privileged at ``source`` on the day ``on`` (active, valid that
    day) privileges at ``target``: for the dates given, else their source privilege's
    own (the union of a reader's valid rows there), in one transaction, audited.

    Both facilities belong to one reading group; overlapping active privileges at
    the target are extended, never duplicated."""
    if source.pk == target.pk:
        raise ValidationError({"from_facility": "A facility's privileges cannot be copied to it."})
    if source.reading_group_id != target.reading_group_id:
        raise ValidationError(
            {"from_facility": "The facilities belong to different reading groups."}
        )
    with transaction.atomic():
        target = _facility_locked(target)
        periods: dict[int, tuple[dt.date, dt.date]] = {}
        for reader_id, start, end in FacilityPrivilege.objects.filter(
            facility_id=source.pk,
            status=CredentialStatus.ACTIVE,
            valid_from__lte=on,
            valid_to__gte=on,
            # A reader moved to another group keeps no privileges in this one.
            radiologist__reading_group_id=target.reading_group_id,
        ).values_list("radiologist_id", "valid_from", "valid_to"):
            held = periods.get(reader_id)
            if held is not None:
                start, end = min(start, held[0]), max(end, held[1])
            periods[reader_id] = (start, end)
        periods = {
            pk: (valid_from or start, valid_to or end) for pk, (start, end) in periods.items()
        }
        return _privileges_grant_periods(
            actor=actor,
            facility=target,
            periods=periods,
            ip_address=ip_address,
            detail={"bulk": "copy", "from_facility": source.pk},
        )


def reader_pause(
    *,
    radiologist: Radiologist,
    actor: User | None,
    reason: str,
    minutes: int,
    ip_address: str | None = None,
) -> Radiologist:
    """Pause a reader (they stop being offered and claiming new cases) for at most the
    group's ``max_pause_minutes``; their open offers are held, not withdrawn, and the
    pause ends by itself at ``paused_until``.  Audited with its reason."""
    reason = reason.strip()
    if not reason:
        raise ValidationError({"reason": "Say why you pause."})
    limit = radiologist.reading_group.max_pause_minutes
    if not 1 <= minutes <= limit:
        raise ValidationError({"minutes": f"A pause lasts 1 to {limit} minutes in this group."})
    now = timezone.now()
    with transaction.atomic():
        locked = Radiologist.objects.select_for_update().get(pk=radiologist.pk)
        before = snapshot(locked)
        locked.is_available = False
        locked.paused_until = now + dt.timedelta(minutes=minutes)
        locked.pause_reason = reason[:200]
        return audited_save(actor=actor, instance=locked, before=before, ip_address=ip_address)


def reader_resume(
    *, radiologist: Radiologist, actor: User | None, ip_address: str | None = None
) -> Radiologist:
    """End a reader's pause now (audited); a reader who is not paused is left alone."""
    with transaction.atomic():
        locked = Radiologist.objects.select_for_update().get(pk=radiologist.pk)
        if locked.is_available and locked.paused_until is None:
            return locked
        before = snapshot(locked)
        locked.is_available = True
        locked.paused_until = None
        locked.pause_reason = ""
        return audited_save(actor=actor, instance=locked, before=before, ip_address=ip_address)
