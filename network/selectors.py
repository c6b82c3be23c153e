"""Reads of the reading network, and who a user is in it (their roles).

A user's reach comes from a few grants, never from per-study rows:
- group admin: guardian's ``administer_readinggroup`` on a ReadingGroup;
- facility staff: guardian's ``access_facility`` on a Facility;
- radiologist: a Radiologist profile linked to the user.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.contrib.auth.models import AnonymousUser, User
from django.contrib.contenttypes.models import ContentType
from django.db.models import Q, QuerySet
from guardian.models import GroupObjectPermission, UserObjectPermission
from guardian.shortcuts import get_objects_for_user

from network.models import (
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

AnyUser = User | AnonymousUser


def _is_superuser(user: AnyUser) -> bool:
    return bool(getattr(user, "is_superuser", False)) and user.is_active


def reading_groups_administered(*, user: AnyUser) -> QuerySet[ReadingGroup]:
    """The reading groups this user administers (all of them for a superuser)."""
    if not user.is_authenticated or not user.is_active:
        return ReadingGroup.objects.none()
    if _is_superuser(user):
        return ReadingGroup.objects.all()
    return get_objects_for_user(
        user,
        "network.administer_readinggroup",
        klass=ReadingGroup,
        accept_global_perms=False,
        with_superuser=False,
    )


def facilities_staffed(*, user: AnyUser) -> QuerySet[Facility]:
    """The facilities whose studies this user sees as facility staff."""
    if not user.is_authenticated or not user.is_active:
        return Facility.objects.none()
    return get_objects_for_user(
        user,
        "network.access_facility",
        klass=Facility,
        accept_global_perms=False,
        with_superuser=False,
    )


def user_reaches_facility(*, user: AnyUser, facility: Facility) -> bool:
    """Whether the user is staff of this facility or administers its reading group:
    the grants ``facilities_staffed`` and ``reading_groups_administered`` read, asked
    of one facility (a superuser reaches every one).  Two small reads of guardian's
    tables (the user's own grants, then their groups'), for requests that name one
    study many times over."""
    if not user.is_authenticated or not user.is_active:
        return False
    if _is_superuser(user):
        return True
    types = ContentType.objects.get_for_models(Facility, ReadingGroup)
    grants = Q(
        content_type=types[Facility],
        object_pk=str(facility.pk),
        permission__codename="access_facility",
    ) | Q(
        content_type=types[ReadingGroup],
        object_pk=str(facility.reading_group_id),
        permission__codename="administer_readinggroup",
    )
    if UserObjectPermission.objects.filter(grants, user_id=user.pk).exists():
        return True
    return GroupObjectPermission.objects.filter(grants, group__user=user.pk).exists()


# The reverse side of Radiologist.user (``user.radiologist``).
_PROFILE = Radiologist._meta.get_field("user").remote_field


def radiologist_for_user(*, user: AnyUser) -> Radiologist | None:
    """The user's radiologist profile, if they are a reader (read with the user when
    it was: API token authentication joins it, sparing a statement a request)."""
    if not user.is_authenticated or not user.is_active:
        return None
    if _PROFILE.is_cached(user):
        cached = _PROFILE.get_cached_value(user)
        return cached if isinstance(cached, Radiologist) else None
    return Radiologist.objects.filter(user_id=user.pk).first()


def user_roles(*, user: AnyUser) -> list[str]:
    """The roles a user holds, for the API and the pages."""
    roles = []
    if reading_groups_administered(user=user).exists():
        roles.append("group_admin")
    if radiologist_for_user(user=user) is not None:
        roles.append("radiologist")
    if facilities_staffed(user=user).exists():
        roles.append("facility_staff")
    return roles


def is_group_admin(*, user: AnyUser) -> bool:
    return reading_groups_administered(user=user).exists()


# --- Scoped querysets for the network API -----------------------------------
def facility_list_visible(*, user: AnyUser) -> QuerySet[Facility]:
    """Facilities the user may see: their group's, their own, or where they read."""
    if _is_superuser(user):
        return Facility.objects.all()
    reach = Q(reading_group__in=reading_groups_administered(user=user)) | Q(
        pk__in=facilities_staffed(user=user).values("pk")
    )
    reader = radiologist_for_user(user=user)
    if reader is not None:
        reach |= Q(pk__in=FacilityPrivilege.objects.filter(radiologist=reader).values("facility"))
    return Facility.objects.filter(reach)


def facility_list_administered(*, user: AnyUser) -> QuerySet[Facility]:
    return Facility.objects.filter(reading_group__in=reading_groups_administered(user=user))


def radiologist_list_visible(*, user: AnyUser) -> QuerySet[Radiologist]:
    """Readers the user may see: their group's as admin, or themselves."""
    if _is_superuser(user):
        return Radiologist.objects.all()
    return Radiologist.objects.filter(
        Q(reading_group__in=reading_groups_administered(user=user)) | Q(user_id=user.pk)
    )


def _credential_scope(user: AnyUser) -> Q:
    if _is_superuser(user):
        return Q()
    return Q(radiologist__reading_group__in=reading_groups_administered(user=user)) | Q(
        radiologist__user_id=user.pk
    )


def license_list_visible(*, user: AnyUser) -> QuerySet[License]:
    return License.objects.filter(_credential_scope(user)).select_related(
        "jurisdiction", "radiologist"
    )


def privilege_list_visible(*, user: AnyUser) -> QuerySet[FacilityPrivilege]:
    return FacilityPrivilege.objects.filter(_credential_scope(user)).select_related(
        "facility", "radiologist"
    )


def shift_list_visible(*, user: AnyUser) -> QuerySet[Shift]:
    return Shift.objects.filter(_credential_scope(user)).select_related("radiologist")


def rota_list_visible(*, user: AnyUser) -> QuerySet[Rota]:
    """Weekly rotas the user may see: their groups' readers' as admin, or their own."""
    return Rota.objects.filter(_credential_scope(user)).select_related("radiologist")


def leave_list_visible(*, user: AnyUser) -> QuerySet[Leave]:
    """Leave the user may see: their groups' readers' as admin, or their own."""
    return Leave.objects.filter(_credential_scope(user)).select_related("radiologist")


def shift_list_on_duty(*, at: dt.datetime) -> QuerySet[Shift]:
    """Shifts running at ``at``: one range query on the shift window index."""
    return Shift.objects.filter(starts_at__lte=at, ends_at__gt=at)


@dataclass(frozen=True)
class ReaderPresence:
    """Whether a reader is offered work now, and if not, why and until when."""

    on_shift: bool
    is_available: bool
    is_active: bool
    shift_ends_at: dt.datetime | None
    next_shift_starts_at: dt.datetime | None
    # A pause under way: when it ends by itself (None: until someone resumes) and why.
    paused_until: dt.datetime | None = None
    pause_reason: str = ""

    @property
    def receives_offers(self) -> bool:
        return self.on_shift and self.is_available and self.is_active


def reader_is_available(*, radiologist: Radiologist, at: dt.datetime) -> bool:
    """Accepting cases at ``at``: not paused, or paused by a pause that has run out
    (routing.selectors.READER_AVAILABLE says the same in SQL)."""
    ended = radiologist.paused_until is not None and radiologist.paused_until <= at
    return radiologist.is_available or ended


def reader_presence(*, radiologist: Radiologist, at: dt.datetime) -> ReaderPresence:
    """The reader's shift state at ``at``: the running shift's end, else the next start
    (two index probes on the reader's shifts), and their pause."""
    shifts = Shift.objects.filter(radiologist=radiologist)
    running = shifts.filter(starts_at__lte=at, ends_at__gt=at).order_by("-ends_at").first()
    upcoming = (
        None
        if running is not None
        else shifts.filter(starts_at__gt=at).order_by("starts_at").first()
    )
    available = reader_is_available(radiologist=radiologist, at=at)
    return ReaderPresence(
        on_shift=running is not None,
        is_available=available,
        is_active=radiologist.is_active,
        shift_ends_at=running.ends_at if running else None,
        next_shift_starts_at=upcoming.starts_at if upcoming else None,
        paused_until=None if available else radiologist.paused_until,
        pause_reason="" if available else radiologist.pause_reason,
    )


def facility_for_ae_title(*, ae_title: str) -> Facility | None:
    """The active facility that sends from this AE title, if any."""
    row = (
        FacilityAETitle.objects.select_related("facility")
        .filter(ae_title=ae_title, facility__is_active=True)
        .first()
    )
    return row.facility if row is not None else None


# --- Tenants: who belongs to a reading group, whom an admin may enrol -----------
def _granted_user_ids(*, model: type[Facility] | type[ReadingGroup], codename: str) -> Q:
    """Users holding ``codename`` on some object of ``model``, directly or through an
    auth group (guardian's two tables), as a filter on User."""
    content_type = ContentType.objects.get_for_model(model)
    direct = UserObjectPermission.objects.filter(
        content_type=content_type, permission__codename=codename
    ).values("user_id")
    via_group = GroupObjectPermission.objects.filter(
        content_type=content_type, permission__codename=codename
    ).values("group__user")
    return Q(pk__in=direct) | Q(pk__in=via_group)


def reading_group_member_ids(*, group_ids: list[int]) -> set[int]:
    """The users who belong to these reading groups: their readers, their admins and
    the staff of their facilities (the people whose actions the groups' admins
    oversee)."""
    if not group_ids:
        return set()
    members: set[int] = set(
        Radiologist.objects.filter(reading_group_id__in=group_ids).values_list("user_id", flat=True)
    )
    grants = (
        (ReadingGroup, "administer_readinggroup", [str(pk) for pk in group_ids]),
        (
            Facility,
            "access_facility",
            [
                str(pk)
                for pk in Facility.objects.filter(reading_group_id__in=group_ids).values_list(
                    "pk", flat=True
                )
            ],
        ),
    )
    for model, codename, object_pks in grants:
        content_type = ContentType.objects.get_for_model(model)
        members.update(
            UserObjectPermission.objects.filter(
                content_type=content_type,
                permission__codename=codename,
                object_pk__in=object_pks,
            ).values_list("user_id", flat=True)
        )
        members.update(
            uid
            for uid in GroupObjectPermission.objects.filter(
                content_type=content_type,
                permission__codename=codename,
                object_pk__in=object_pks,
            ).values_list("group__user", flat=True)
            if uid is not None
        )
    return members


def users_enrolable(*, user: AnyUser) -> QuerySet[User]:
    """The users this admin may enrol as a reader of their group: active accounts
    with no role anywhere yet (not a reader, not staff of a facility, not an admin of
    a group, not a site operator or Django staff).  A superuser may enrol any user who
    is not a reader yet.  Other users: none."""
    if not user.is_authenticated or not user.is_active:
        return User.objects.none()
    not_a_reader = User.objects.filter(is_active=True).exclude(
        pk__in=Radiologist.objects.values("user_id")
    )
    if _is_superuser(user):
        return not_a_reader
    if not reading_groups_administered(user=user).exists():
        return User.objects.none()
    return (
        not_a_reader.filter(is_superuser=False, is_staff=False)
        .exclude(_granted_user_ids(model=ReadingGroup, codename="administer_readinggroup"))
        .exclude(_granted_user_ids(model=Facility, codename="access_facility"))
    )


def reading_group_oversight(*, user: AnyUser) -> tuple[list[int] | None, set[int]]:
    """What of the audit trail a user oversees: the reading groups they administer
    and those groups' members (None and nothing for a site operator, who sees all)."""
    if _is_superuser(user):
        return None, set()
    group_ids = list(reading_groups_administered(user=user).values_list("pk", flat=True))
    return group_ids, reading_group_member_ids(group_ids=group_ids)
