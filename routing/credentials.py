"""Credential hygiene: warn admins before a license or privilege lapses."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from alerts.models import Alert
from alerts.services import alert_raise
from network.models import CredentialStatus, FacilityPrivilege, License

EXPIRY_WARNING = dt.timedelta(days=30)


def _ends(valid_to: dt.date, until: dt.time | None, zone_name: str) -> str:
    """When a credential ends, in the words of its own time zone."""
    if until is None:
        return f"at the end of {valid_to:%Y-%m-%d} ({zone_name})"
    return f"at {until:%H:%M} on {valid_to:%Y-%m-%d} ({zone_name})"


def credentials_alert_expiring(*, today: dt.date | None = None) -> int:
    """Raise one alert per active credential ending within 30 days (once per expiry date)."""
    today = today or timezone.now().date()
    horizon = today + EXPIRY_WARNING
    raised = 0
    licenses = License.objects.filter(
        status=CredentialStatus.ACTIVE, valid_to__gte=today, valid_to__lte=horizon
    ).select_related("radiologist__reading_group", "jurisdiction")
    for lic in licenses:
        raised += (
            alert_raise(
                kind=Alert.Kind.CREDENTIAL_EXPIRY,
                dedupe_key=f"license-expiry:{lic.pk}:{lic.valid_to.isoformat()}",
                message=(
                    f"{lic.radiologist.display_name}'s license {lic.number} in "
                    f"{lic.jurisdiction.code} expires "
                    f"{_ends(lic.valid_to, lic.valid_until_time, lic.jurisdiction.timezone)}."
                ),
                reading_group=lic.radiologist.reading_group,
            )
            is not None
        )
    privileges = FacilityPrivilege.objects.filter(
        status=CredentialStatus.ACTIVE, valid_to__gte=today, valid_to__lte=horizon
    ).select_related("radiologist__reading_group", "facility")
    for priv in privileges:
        raised += (
            alert_raise(
                kind=Alert.Kind.CREDENTIAL_EXPIRY,
                dedupe_key=f"privilege-expiry:{priv.pk}:{priv.valid_to.isoformat()}",
                message=(
                    f"{priv.radiologist.display_name}'s privileges at {priv.facility.name} "
                    f"expire {_ends(priv.valid_to, priv.valid_until_time, priv.facility.timezone)}."
                ),
                reading_group=priv.radiologist.reading_group,
            )
            is not None
        )
    return raised
