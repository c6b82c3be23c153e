"""Reads of the HL7 message store: admission of a sender, and who sees which message."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import QuerySet

from network.models import Facility
from network.selectors import reading_groups_administered
from network.validators import address_allowed
from orders.models import Hl7Message

AnyUser = User | AnonymousUser


@dataclass(frozen=True)
class Admission:
    """The facility MSH-4 names (None: none does) and, when the message is refused
    for it, why (inactive, or the address is not on its allow-list)."""

    facility: Facility | None
    refused: str = ""


def hl7_admission(*, sending_facility: str, address: str | None) -> Admission:
    """Which facility a message is admitted for: read from the database for every
    message (no cache), so a change of MSH-4 id or allow-list applies at once."""
    if not sending_facility:
        return Admission(None, "no sending facility (MSH-4)")
    # The whole row: the apply step reads the facility's order settings from it.
    facility = Facility.objects.filter(hl7_sending_facility=sending_facility).first()
    if facility is None:
        return Admission(None, f"sending facility {sending_facility!r} (MSH-4) is not known")
    if not facility.is_active:
        return Admission(facility, f"facility {facility.pk} is inactive")
    if not address_allowed(address or "", facility.hl7_allowed_networks):
        return Admission(
            facility, f"address {address} is not on facility {facility.pk}'s HL7 allow-list"
        )
    return Admission(facility)


def message_applied(*, facility_id: int, control_id: str) -> Hl7Message | None:
    """The applied original (AA, not itself a repeat) of this control id, if any."""
    return (
        Hl7Message.objects.filter(
            facility_id=facility_id,
            control_id=control_id,
            outcome=Hl7Message.Outcome.AA,
            duplicate_of__isnull=True,
        )
        .only("pk", "outcome", "summary")
        .first()
    )


def message_list_visible(*, user: AnyUser) -> QuerySet[Hl7Message]:
    """The messages of the facilities of the groups this user administers; messages
    no facility was found for are seen by site operators (superusers) only."""
    if not user.is_authenticated or not user.is_active:
        return Hl7Message.objects.none()
    qs = Hl7Message.objects.select_related("facility")
    if user.is_superuser:
        return qs
    return qs.filter(facility__reading_group__in=reading_groups_administered(user=user))
