"""Writes to the reading network; each change is validated and audited."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.db import models, transaction
from guardian.shortcuts import assign_perm, get_user_perms, remove_perm

from audit.models import AuditEvent
from audit.services import audit_record
from network.models import Facility, FacilityAETitle, ReadingGroup, Shift
from network.roles import GROUP_ADMINS
from teleradiology.audited import audited_delete, audited_save, related_set

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
