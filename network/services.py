"""Writes to the reading network; each change is validated and audited."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.conf import settings
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
    Leave,
    License,
    Radiologist,
    ReadingGroup,
    Rota,
    Shift,
)
from network.roles import GROUP_ADMINS
from network.signals import aging_changed_send, eligibility_changed_send
from teleradiology.audited import audited_delete, audited_save, related_set, snapshot

M = TypeVar("M", bound=models.Model)


def network_object_save(
    *,
    actor: User | None,
    instance: M,
    before: dict[str, Any] | None = None,
    ip_address: str | None = None,
) -> M:
    """Validate (model rules and constraints) and save a network object, audited; a
    reading group's new aging step re-keys its worklists, and a change that may change
    who may read (a license, privilege, shift, a reader's standing, availability or
    group, a facility's time zone) withdraws the offers it makes ineligible, in the
    same transaction (``eligibility_changed``)."""
    with transaction.atomic():
        saved = audited_save(
            actor=actor,
            instance=instance,
            before=before,
            ip_address=ip_address,
            check=_shift_check_overlap,
        )
        if (
            isinstance(saved, ReadingGroup)
            and before is not None
            and before.get("worklist_aging_minutes") != saved.worklist_aging_minutes
        ):
            aging_changed_send(
                reading_group_id=saved.pk,
                step=dt.timedelta(minutes=saved.worklist_aging_minutes),
            )
        eligibility_changed_send(
            radiologist_ids=_readers_concerned(saved, before), at=timezone.now()
        )
    return saved


# What of a reader decides eligibility (network.signals.eligibility_changed), or is
# kept in its history (network.history: the cap, home region and name too); the rows
# of licenses, privileges and shifts decide it whatever changes in them.
_READER_ELIGIBILITY_FIELDS = (
    "is_active",
    "is_available",
    "paused_until",
    "reading_group_id",
    "workload_cap",
    "home_region_id",
    "display_name",
)


def _readers_concerned(instance: models.Model, before: dict[str, Any] | None) -> list[int]:
    """The readers whose eligibility a save or delete of ``instance`` may change
    (``before``: its fields before an update; None for a creation or a delete)."""
    if isinstance(instance, License | FacilityPrivilege | Shift):
        ids = [instance.radiologist_id]
        if before is not None and before.get("radiologist_id") not in (None, *ids):
            ids.append(before["radiologist_id"])  # moved to another reader: both
        return ids
    if isinstance(instance, Radiologist):
        if before is None or any(
            before.get(name) != getattr(instance, name) for name in _READER_ELIGIBILITY_FIELDS
        ):
            return [instance.pk]
        return []
    # A facility's privileges are judged in its time zone, and its readers are its
    # group's; deleted, it takes its privileges with it.
    if isinstance(instance, Facility) and (
        before is None
        or before.get("timezone") != instance.timezone
        or before.get("reading_group_id") != instance.reading_group_id
    ):
        return list(
            FacilityPrivilege.objects.filter(facility_id=instance.pk).values_list(
                "radiologist_id", flat=True
            )
        )
    return []


def network_object_delete(
    *, actor: User | None, instance: models.Model, ip_address: str | None = None
) -> None:
    """Delete a network object, audited; PROTECT foreign keys refuse it when in use.
    A license, privilege or shift deleted withdraws the offers its reader may no
    longer keep, in the same transaction."""
    with transaction.atomic():
        concerned = _readers_concerned(instance, None)
        audited_delete(actor=actor, instance=instance, ip_address=ip_address)
        eligibility_changed_send(radiologist_ids=concerned, at=timezone.now())


def network_object_set_related(
    *,
    instance: models.Model,
    name: str,
    values: Iterable[Any],
    actor: User | None = None,
    ip_address: str | None = None,
) -> None:
    """Replace a network object's many-to-many members (e.g. a reader's subspecialties);
    a reader's new subspecialties are judged against their offers in the same
    transaction."""
    with transaction.atomic():
        related_set(instance=instance, name=name, values=values, actor=actor, ip_address=ip_address)
        if isinstance(instance, Radiologist) and name == "subspecialties":
            eligibility_changed_send(radiologist_ids=[instance.pk], at=timezone.now())


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
        message = "This shift overlaps another shift of the reader."
        if overlapping.filter(rota__isnull=False).exists():
            # A generated shift deleted by hand comes back with the next generation
            # (unless it was under way); leave or a rota change is how it goes for good.
            message += (
                " It was generated from their weekly rota: add leave for that day or "
                "change the rota first (no rota shift is then generated over this one)."
            )
        raise ValidationError({"starts_at": message})


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
        # A row that ends at a time of day on ``end`` does not cover that whole day.
        covering = next(
            (
                r
                for r in touching
                if r.valid_from <= start
                and (r.valid_to > end or (r.valid_to == end and r.valid_until_time is None))
            ),
            None,
        )
        if covering is not None:
            result.unchanged.append(covering)
            continue
        row = touching[0]  # the one that ends last
        before[row.pk] = snapshot(row)
        row.valid_from = min(row.valid_from, start)
        if end >= row.valid_to:
            row.valid_until_time = None  # now to the end of the day asked for
        row.valid_to = max(row.valid_to, end)
        result.extended.append(row)
    # One INSERT and one UPDATE whatever the number of readers (bulk_create sets the
    # new rows' ids on PostgreSQL and SQLite alike).
    FacilityPrivilege.objects.bulk_create(result.created)
    FacilityPrivilege.objects.bulk_update(
        result.extended, ["valid_from", "valid_to", "valid_until_time"]
    )
    eligibility_changed_send(
        radiologist_ids=[row.radiologist_id for row in (*result.created, *result.extended)],
        at=timezone.now(),
    )
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
                        for name in ("valid_from", "valid_to", "valid_until_time")
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
        saved = audited_save(actor=actor, instance=locked, before=before, ip_address=ip_address)
        eligibility_changed_send(radiologist_ids=[saved.pk], at=now)
        return saved


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
        saved = audited_save(actor=actor, instance=locked, before=before, ip_address=ip_address)
        eligibility_changed_send(radiologist_ids=[saved.pk], at=timezone.now())
        return saved


def pauses_end(*, now: dt.datetime) -> list[int]:
    """End every pause whose time is up (``paused_until`` at or before ``now``), so the
    row says what eligibility already judged (a pause over is available); each reader
    audited as ``reader_resume`` audits, rows a concurrent change holds are left to the
    next sweep.  Returns the ids of the readers whose pause ended.

    Sends no ``eligibility_changed``: nobody's eligibility changes here (a pause is
    over at ``paused_until`` whether or not this has run, and the readers' history
    already says so: network.history reads a pause run out as none)."""
    with transaction.atomic():
        ended = list(
            Radiologist.objects.select_for_update(no_key=True, skip_locked=True)
            .filter(paused_until__lte=now)
            .order_by("pk")
            .values_list("pk", "is_available", "paused_until", "pause_reason")
        )
        if not ended:
            return []
        ids = [pk for pk, *_ in ended]
        Radiologist.objects.filter(pk__in=ids).update(
            is_available=True, paused_until=None, pause_reason="", updated_at=now
        )
        audit_record_each(
            actor=None,
            action=AuditEvent.Action.UPDATE,
            object_type=Radiologist._meta.label_lower,
            items=[
                (
                    str(pk),
                    "",
                    {
                        "changed": {
                            "is_available": [str(available), "True"],
                            "paused_until": [str(until), "None"],
                            "pause_reason": [reason, ""],
                        },
                        "pause_ended": "time up",
                    },
                )
                for pk, available, until, reason in ended
            ],
        )
    return ids


# --- Weekly rotas and leave ------------------------------------------------------
# A rota's shifts are generated ahead (``rota_shifts_generate``, hourly from beat, and
# at once when a rota or a leave is saved through the services below).  What is
# generated is reconciled with what should be, reader by reader:
# - a slot is one rota's weekday from its start to its end, local times in the reader's
#   time zone (overnight when the end is at or before the start), made real with
#   zoneinfo, so that 08:00-16:00 stays 08:00-16:00 on the clock across a change of
#   daylight-saving time and a night across the change lasts 7 or 9 real hours; a
#   slot whose local times do not exist that day (inside the spring gap) and so lasts
#   no time is skipped;
# - no slot is generated on a day of leave (the local day the slot starts on) or over
#   any other shift of the reader (a manual one, or another rota's);
# - a generated shift that has not started and no longer applies (the rota changed or
#   went, leave was added, a manual shift covers it) is removed; a shift under way or
#   past is never touched: it is what happened.
ONE_DAY = dt.timedelta(days=1)
# Readers reconciled per transaction by the beat task (each locked meanwhile).
ROTA_READERS_PER_TRANSACTION = 200


@dataclass
class RotaShifts:
    """What a reconciliation did: the generated shifts it made and those it removed."""

    created: list[Shift] = field(default_factory=list)
    removed: list[Shift] = field(default_factory=list)

    def add(self, other: RotaShifts) -> None:
        self.created.extend(other.created)
        self.removed.extend(other.removed)


def _rota_slot(
    rota: Rota, day: dt.date, zone: zoneinfo.ZoneInfo
) -> tuple[dt.datetime, dt.datetime]:
    """The rota's slot starting on the local ``day``, in UTC.  Each end is placed on the
    clock of its own day, so the real length follows that night's daylight-saving
    change (fold 0: an ambiguous local time is its first occurrence, and one inside the
    spring gap counts on the clock before the change)."""
    start = dt.datetime.combine(day, rota.starts_at, tzinfo=zone)
    end_day = day if rota.ends_at > rota.starts_at else day + ONE_DAY
    end = dt.datetime.combine(end_day, rota.ends_at, tzinfo=zone)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def _rota_slots(
    rota: Rota,
    *,
    zone: zoneinfo.ZoneInfo,
    first: dt.date,
    last: dt.date,
    leave: list[tuple[dt.date, dt.date]],
) -> list[tuple[dt.date, dt.datetime, dt.datetime]]:
    """The rota's slots (local day, start, end) starting on the local days ``first``
    to ``last``, within its validity and outside the reader's leave."""
    slots = []
    day = first + dt.timedelta(days=(rota.weekday - first.weekday()) % 7)
    while day <= last:
        valid = rota.valid_from <= day and (rota.valid_to is None or day <= rota.valid_to)
        away = any(start <= day <= end for start, end in leave)
        if valid and not away:
            start, end = _rota_slot(rota, day, zone)
            if end > start:
                slots.append((day, start, end))
        day += dt.timedelta(days=7)
    return slots


def _overlaps(
    start: dt.datetime, end: dt.datetime, taken: list[tuple[dt.datetime, dt.datetime]]
) -> bool:
    return any(start < other_end and other_start < end for other_start, other_end in taken)


def _rota_shifts_sync(
    *,
    reader_ids: Iterable[int],
    now: dt.datetime,
    horizon_days: int,
    actor: User | None = None,
    ip_address: str | None = None,
    under_way_rota_ids: frozenset[int] = frozenset(),
    under_way_days: frozenset[dt.date] = frozenset(),
    excluded_rota_ids: frozenset[int] = frozenset(),
) -> RotaShifts:
    """Reconcile these readers' generated shifts with their rotas and leave (see above),
    in the caller's transaction: the readers' rows are locked first, in id order, so
    two reconciliations of one reader run one after the other.

    New slots are made up to ``horizon_days`` ahead, once they have not started; a slot
    already under way only when the change that calls made it due: one of the rotas
    ``under_way_rota_ids`` (saved mid-shift), or starting on one of the local days
    ``under_way_days`` (leave taken back).  Otherwise a shift deleted by hand while
    under way would come back.  ``excluded_rota_ids``: rotas about to be deleted (their
    future shifts go).  Every shift made or removed is audited; the readers concerned
    are named to ``eligibility_changed``."""
    result = RotaShifts()
    readers = dict(
        Radiologist.objects.select_for_update(no_key=True)
        .filter(pk__in=sorted(set(reader_ids)))
        .order_by("pk")
        .values_list("pk", "timezone")
    )
    if not readers:
        return result
    horizon_end = now + dt.timedelta(days=horizon_days)
    rotas: dict[int, list[Rota]] = {pk: [] for pk in readers}
    for rota in (
        Rota.objects.filter(radiologist_id__in=list(readers))
        .exclude(pk__in=excluded_rota_ids)
        .order_by("pk")
    ):
        rotas[rota.radiologist_id].append(rota)
    # Every shift a slot could overlap or collide with: those not over, and those that
    # started in the last three days (a slot lasts under two days, so one made now
    # started at most two days ago, and its rota's earlier row may have ended).
    shifts: dict[int, list[Shift]] = {pk: [] for pk in readers}
    for shift in (
        Shift.objects.filter(radiologist_id__in=list(readers))
        .filter(models.Q(starts_at__gt=now - 3 * ONE_DAY) | models.Q(ends_at__gt=now))
        .order_by("starts_at", "pk")
    ):
        shifts[shift.radiologist_id].append(shift)
    latest = max(
        (s.starts_at for rows in shifts.values() for s in rows if s.rota_id is not None),
        default=horizon_end,
    )
    plan_end = max(horizon_end, latest)
    leave: dict[int, list[tuple[dt.date, dt.date]]] = {pk: [] for pk in readers}
    for reader_id, starts_on, ends_on in Leave.objects.filter(
        radiologist_id__in=list(readers),
        ends_on__gte=(now - 3 * ONE_DAY).date(),
        starts_on__lte=(plan_end + ONE_DAY).date(),
    ).values_list("radiologist_id", "starts_on", "ends_on"):
        leave[reader_id].append((starts_on, ends_on))
    for reader_id, zone_name in readers.items():
        zone = zoneinfo.ZoneInfo(zone_name)
        first = (now - 2 * ONE_DAY).astimezone(zone).date()
        last = plan_end.astimezone(zone).date()
        planned: dict[tuple[int, dt.datetime], tuple[dt.datetime, dt.date]] = {}
        for rota in rotas[reader_id]:
            for day, start, end in _rota_slots(
                rota, zone=zone, first=first, last=last, leave=leave[reader_id]
            ):
                planned[rota.pk, start] = (end, day)
        # What stays whatever the plan: manual shifts, and generated ones under way or past.
        taken = [
            (s.starts_at, s.ends_at)
            for s in shifts[reader_id]
            if s.rota_id is None or s.starts_at <= now
        ]
        existing = {(s.rota_id, s.starts_at) for s in shifts[reader_id] if s.rota_id is not None}
        for shift in shifts[reader_id]:
            if shift.rota_id is None or shift.starts_at <= now:
                continue
            plan = planned.get((shift.rota_id, shift.starts_at))
            if (
                plan is not None
                and plan[0] == shift.ends_at
                and not _overlaps(shift.starts_at, shift.ends_at, taken)
            ):
                taken.append((shift.starts_at, shift.ends_at))
            else:
                result.removed.append(shift)
        removed = {(s.rota_id, s.starts_at) for s in result.removed}
        for (rota_id, start), (end, day) in sorted(
            planned.items(), key=lambda item: (item[0][1], item[0][0])
        ):
            if start >= horizon_end or end <= now:
                continue
            if start <= now and rota_id not in under_way_rota_ids and day not in under_way_days:
                continue
            if (rota_id, start) in existing - removed or _overlaps(start, end, taken):
                continue
            taken.append((start, end))
            result.created.append(
                Shift(radiologist_id=reader_id, rota_id=rota_id, starts_at=start, ends_at=end)
            )
    label = Shift._meta.label_lower
    # Recorded before the rows go, so that each event finds its reading group.
    audit_record_each(
        actor=actor,
        action=AuditEvent.Action.DELETE,
        object_type=label,
        items=[
            (str(s.pk), "", {"deleted": str(s), "rota": s.rota_id, "generated": True})
            for s in result.removed
        ],
        ip_address=ip_address,
    )
    Shift.objects.filter(pk__in=[s.pk for s in result.removed]).delete()
    Shift.objects.bulk_create(result.created)
    audit_record_each(
        actor=actor,
        action=AuditEvent.Action.CREATE,
        object_type=label,
        items=[
            (
                str(s.pk),
                "",
                {"created": {k: str(v) for k, v in snapshot(s).items()}, "generated": True},
            )
            for s in result.created
        ],
        ip_address=ip_address,
    )
    eligibility_changed_send(
        radiologist_ids=[s.radiologist_id for s in (*result.created, *result.removed)], at=now
    )
    return result


def rota_shifts_generate(*, now: dt.datetime, horizon_days: int | None = None) -> RotaShifts:
    """Generate every rota's shifts up to ``horizon_days`` (``ROTA_HORIZON_DAYS``) ahead
    of ``now`` in each reader's time zone, and remove generated shifts that have not
    started and no longer apply.  Idempotent (one shift per rota and start, a unique
    constraint); a reader's shifts never overlap; shifts under way or past are never
    touched.  Readers are reconciled in batches, one transaction each."""
    days = settings.ROTA_HORIZON_DAYS if horizon_days is None else horizon_days
    reader_ids = sorted(
        set(Rota.objects.values_list("radiologist_id", flat=True))
        | set(
            Shift.objects.filter(rota__isnull=False, starts_at__gt=now).values_list(
                "radiologist_id", flat=True
            )
        )
    )
    result = RotaShifts()
    for i in range(0, len(reader_ids), ROTA_READERS_PER_TRANSACTION):
        with transaction.atomic():
            result.add(
                _rota_shifts_sync(
                    reader_ids=reader_ids[i : i + ROTA_READERS_PER_TRANSACTION],
                    now=now,
                    horizon_days=days,
                )
            )
    return result


def _readers_of(instance: Rota | Leave, before: dict[str, Any] | None) -> set[int]:
    """The reader of a rota or a leave, and the one it belonged to before an update."""
    ids = {instance.radiologist_id}
    if before is not None and before.get("radiologist_id") is not None:
        ids.add(int(before["radiologist_id"]))
    return ids


def _leave_days(leave: Leave) -> frozenset[dt.date]:
    """The days of a leave on which a slot may be under way now (a slot under way
    started at most two days ago, on a local day at most a day off the UTC one)."""
    today = timezone.now().date()
    first = max(leave.starts_on, today - 3 * ONE_DAY)
    last = min(leave.ends_on, today + ONE_DAY)
    return frozenset(first + n * ONE_DAY for n in range((last - first).days + 1))


def rota_save(
    *,
    actor: User | None,
    instance: Rota,
    before: dict[str, Any] | None = None,
    ip_address: str | None = None,
) -> Rota:
    """Save a reader's weekly rota (validated, audited) and reconcile the reader's
    generated shifts with it at once (``_rota_shifts_sync``), its slot under way
    included: a rota that starts today puts its reader on shift now."""
    now = timezone.now()
    with transaction.atomic():
        audited_save(actor=actor, instance=instance, before=before, ip_address=ip_address)
        _rota_shifts_sync(
            reader_ids=_readers_of(instance, before),
            now=now,
            horizon_days=settings.ROTA_HORIZON_DAYS,
            under_way_rota_ids=frozenset({instance.pk}),
            actor=actor,
            ip_address=ip_address,
        )
    return instance


def rota_delete(*, actor: User | None, instance: Rota, ip_address: str | None = None) -> None:
    """Delete a rota (audited) with its generated shifts that have not started; those
    under way or past stay, as plain shifts (what happened)."""
    now = timezone.now()
    with transaction.atomic():
        _rota_shifts_sync(
            reader_ids=[instance.radiologist_id],
            now=now,
            horizon_days=settings.ROTA_HORIZON_DAYS,
            actor=actor,
            ip_address=ip_address,
            excluded_rota_ids=frozenset({instance.pk}),
        )
        audited_delete(actor=actor, instance=instance, ip_address=ip_address)


def leave_save(
    *,
    actor: User | None,
    instance: Leave,
    before: dict[str, Any] | None = None,
    ip_address: str | None = None,
) -> Leave:
    """Save a reader's leave (validated, audited) and reconcile their generated shifts:
    those not started that fall in it are removed, and days no longer on leave get
    their rota's shifts back (one under way included)."""
    now = timezone.now()
    days = _leave_days(instance)
    if before is not None:
        days |= _leave_days(Leave(starts_on=before["starts_on"], ends_on=before["ends_on"]))
    with transaction.atomic():
        audited_save(actor=actor, instance=instance, before=before, ip_address=ip_address)
        _rota_shifts_sync(
            reader_ids=_readers_of(instance, before),
            now=now,
            horizon_days=settings.ROTA_HORIZON_DAYS,
            under_way_days=days,
            actor=actor,
            ip_address=ip_address,
        )
    return instance


def leave_delete(*, actor: User | None, instance: Leave, ip_address: str | None = None) -> None:
    """Delete a reader's leave (audited); its days get their rota's shifts back."""
    now = timezone.now()
    days = _leave_days(instance)
    with transaction.atomic():
        reader_id = instance.radiologist_id
        audited_delete(actor=actor, instance=instance, ip_address=ip_address)
        _rota_shifts_sync(
            reader_ids=[reader_id],
            now=now,
            horizon_days=settings.ROTA_HORIZON_DAYS,
            under_way_days=days,
            actor=actor,
            ip_address=ip_address,
        )
