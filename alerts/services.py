"""Raising alerts: once per cause, recorded in the database, mailed after commit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import cast

from django.conf import settings
from django.contrib.auth.models import User
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from guardian.shortcuts import get_users_with_perms

from alerts.models import Alert
from audit.models import AuditEvent
from audit.services import audit_record
from network.models import Facility, ReadingGroup
from studies.models import Study


def alert_raise(
    *,
    kind: str,
    dedupe_key: str,
    message: str,
    reading_group: ReadingGroup | None = None,
    study: Study | None = None,
    recipient: User | None = None,
    facility: Facility | None = None,
) -> Alert | None:
    """Record an alert unless one with ``dedupe_key`` exists; mail the group's admins
    (and the recipient, and the facility's staff when given) after commit.  Returns
    the new alert, or None when it was already raised."""
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                kind=kind,
                dedupe_key=dedupe_key,
                message=message,
                reading_group=reading_group,
                study=study,
                recipient=recipient,
                facility=facility,
            )
    except IntegrityError:
        return None
    transaction.on_commit(lambda: alert_send_email(alert=alert))
    return alert


def alert_recipients(*, reading_group: ReadingGroup | None) -> list[str]:
    """E-mail addresses of the group's admins (the superusers' when no group)."""
    users: Iterable[User]
    if reading_group is None:
        users = User.objects.filter(is_superuser=True, is_active=True)
    else:
        users = cast(
            "Iterable[User]",
            get_users_with_perms(
                reading_group,
                only_with_perms_in=["administer_readinggroup"],
                with_superusers=False,
            ),
        )
    return sorted({u.email for u in users if u.email and u.is_active})


def facility_contacts(*, facility: Facility) -> list[str]:
    """E-mail addresses of the facility's staff (guardian ``access_facility`` on it,
    directly or through an auth group): its contacts for what concerns it."""
    users = cast(
        "Iterable[User]",
        get_users_with_perms(
            facility, only_with_perms_in=["access_facility"], with_superusers=False
        ),
    )
    return sorted({u.email for u in users if u.email and u.is_active})


def alert_send_email(*, alert: Alert) -> None:
    """Mail an alert; runs after commit, outside any transaction."""
    recipients = alert_recipients(reading_group=alert.reading_group)
    if alert.recipient is not None and alert.recipient.email:
        recipients = sorted({*recipients, alert.recipient.email})
    if alert.facility is not None:
        recipients = sorted({*recipients, *facility_contacts(facility=alert.facility)})
    if recipients:
        send_mail(
            subject=f"[Teleradiology] {alert.get_kind_display()}",
            message=alert.message,
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=recipients,
            fail_silently=True,
        )


def alert_acknowledge(
    *, alert: Alert, acknowledged_at: dt.datetime | None, actor: User | None
) -> Alert:
    """Record that an admin saw the alert (or clear it), audited; who may is decided
    by the caller (alerts.selectors.alert_is_administered_by)."""
    with transaction.atomic():
        before = Alert.objects.values_list("acknowledged_at", flat=True).get(pk=alert.pk)
        Alert.objects.filter(pk=alert.pk).update(acknowledged_at=acknowledged_at)
        alert.acknowledged_at = acknowledged_at
        audit_record(
            actor=actor,
            action=AuditEvent.Action.UPDATE,
            obj=alert,
            detail={
                "changed": {
                    "acknowledged_at": [
                        before.isoformat() if before else None,
                        acknowledged_at.isoformat() if acknowledged_at else None,
                    ]
                }
            },
        )
    return alert
