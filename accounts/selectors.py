"""Reads for sign-in and tokens: whose people a user is, whose tokens and second
factors an admin may manage, and a user's devices."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User
from django.contrib.contenttypes.models import ContentType
from django.db.models import Q, QuerySet
from django.utils import timezone
from django_otp import devices_for_user
from django_otp.models import Device
from guardian.models import UserObjectPermission

from accounts.models import ApiToken
from network.models import Facility, ReadingGroup
from network.selectors import (
    facilities_staffed,
    facility_list_administered,
    radiologist_for_user,
    reading_groups_administered,
)

AnyUser = User | AnonymousUser


def user_reading_group_id(*, user: User) -> int | None:
    """The reading group whose people this user is (their reader profile's group, else
    the group they administer, else their facility's group); None for a site operator
    or a user with no grant, whose events only site operators see."""
    if user.is_superuser:
        return None
    reader = radiologist_for_user(user=user)
    if reader is not None:
        return reader.reading_group_id
    group = reading_groups_administered(user=user).values_list("pk", flat=True).first()
    if group is not None:
        return int(group)
    facility_group = facilities_staffed(user=user).values_list("reading_group_id", flat=True)
    first = facility_group.first()
    return int(first) if first is not None else None


def users_managed(*, user: AnyUser) -> QuerySet[User]:
    """The users whose API tokens and second factors ``user`` may manage: every user
    for a site operator; for a group admin, the readers, admins and facility staff of
    the groups they administer (never a site operator); nobody else."""
    if not user.is_authenticated or not user.is_active:
        return User.objects.none()
    if user.is_superuser:
        return User.objects.all()
    groups = [str(pk) for pk in reading_groups_administered(user=user).values_list("pk", flat=True)]
    if not groups:
        return User.objects.none()
    facilities = [
        str(pk) for pk in facility_list_administered(user=user).values_list("pk", flat=True)
    ]
    # Grants are guardian rows keyed by content type (the network's own selectors
    # read them the same way); the classes only name the types.
    types = ContentType.objects.get_for_models(ReadingGroup, Facility)
    group_type, facility_type = types[ReadingGroup], types[Facility]
    grants = UserObjectPermission.objects.filter(
        Q(
            content_type=group_type,
            permission__codename="administer_readinggroup",
            object_pk__in=groups,
        )
        | Q(
            content_type=facility_type,
            permission__codename="access_facility",
            object_pk__in=facilities,
        )
    ).values("user_id")
    return User.objects.filter(
        Q(radiologist__reading_group_id__in=[int(g) for g in groups]) | Q(pk__in=grants),
        is_superuser=False,
    ).distinct()


def api_tokens_of(*, owner: User) -> QuerySet[ApiToken]:
    """The owner's live tokens, newest first."""
    tokens: QuerySet[ApiToken] = ApiToken.objects.filter(
        Q(expiry__isnull=True) | Q(expiry__gt=timezone.now()), user=owner
    ).select_related("user")
    return tokens


def api_token_get_managed(*, user: AnyUser, token_id: int) -> ApiToken | None:
    """A live token of the caller or of a user the caller manages, or None (404)."""
    if not user.is_authenticated:
        return None
    owners = Q(user_id=user.pk) | Q(user__in=users_managed(user=user))
    token: ApiToken | None = (
        ApiToken.objects.filter(owners, pk=token_id)
        .filter(Q(expiry__isnull=True) | Q(expiry__gt=timezone.now()))
        .select_related("user")
        .first()
    )
    return token


def user_devices(*, user: User, confirmed: bool | None = True) -> list[Device]:
    """The user's second-factor devices (TOTP, recovery codes, passkeys)."""
    return list(devices_for_user(user, confirmed=confirmed))


def user_has_second_factor(*, user: User) -> bool:
    """Whether the user enrolled any confirmed second-factor device."""
    return bool(user_devices(user=user))


def session_is_verified(*, user: AnyUser) -> bool:
    """Whether a second factor verified this session (django-otp's middleware adds
    ``is_verified`` to the request's user)."""
    check = getattr(user, "is_verified", None)
    return bool(user.is_authenticated and check is not None and check())
