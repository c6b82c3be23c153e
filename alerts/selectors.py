"""Reads of alerts, scoped to the reader's reading groups."""

from __future__ import annotations

import datetime as dt

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Q, QuerySet

from alerts.models import Alert
from network.selectors import facilities_staffed, reading_groups_administered


def alert_list_visible(*, user: User | AnonymousUser) -> QuerySet[Alert]:
    """The alerts of the groups this user administers and those addressed to them (to
    them, or to a facility they staff); site operators see every alert (site-wide
    ones, without a group, only they see)."""
    if not user.is_authenticated or not user.is_active:
        return Alert.objects.none()
    if user.is_superuser:
        return Alert.objects.all()
    return Alert.objects.filter(
        Q(reading_group__in=reading_groups_administered(user=user))
        | Q(recipient_id=user.pk)
        | Q(facility__in=facilities_staffed(user=user).values("pk"))
    )


def alert_is_administered_by(*, user: User | AnonymousUser, alert: Alert) -> bool:
    """Whether this user may acknowledge the alert: an admin of its group (or a site
    operator); a recipient outside the group reads it only."""
    if not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser:
        return True
    return (
        alert.reading_group_id is not None
        and reading_groups_administered(user=user).filter(pk=alert.reading_group_id).exists()
    )


def alerts_to_recipient(*, user_id: int, kind: str) -> QuerySet[Alert]:
    """The alerts of ``kind`` addressed to the user (what a reader is told of their own
    cases: late images, an idle claim released), newest first; a subquery for their
    case lists."""
    return Alert.objects.filter(recipient_id=user_id, kind=kind).order_by("-created_at", "-id")


def alert_latest_to(
    *, user_id: int, kind: str, study_id: int, since: dt.datetime | None
) -> Alert | None:
    """The newest alert of ``kind`` to the user about the study raised at or after
    ``since`` (e.g. since they claimed it), or None."""
    alerts = alerts_to_recipient(user_id=user_id, kind=kind).filter(study_id=study_id)
    if since is not None:
        alerts = alerts.filter(created_at__gte=since)
    return alerts.first()
