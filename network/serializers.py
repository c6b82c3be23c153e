"""API shapes of the reading network."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Q
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from network.models import (
    Facility,
    FacilityPrivilege,
    Jurisdiction,
    Leave,
    License,
    Priority,
    Radiologist,
    ReadingGroup,
    Region,
    Rota,
    Shift,
    Subspecialty,
)
from network.selectors import (
    facility_list_administered,
    reading_groups_administered,
    users_enrolable,
)
from network.validators import (
    AGING_MINUTES_MAX,
    AGING_MINUTES_MIN,
    PAUSE_MINUTES_MAX,
    PAUSE_MINUTES_MIN,
    validate_ae_title,
)


class ScopedRelatedFieldsMixin:
    """Limit writable related fields to what the requesting admin administers, so
    an admin cannot attach objects to another group's facility or reader."""

    def scope_related_fields(self, fields: dict[str, Any]) -> dict[str, Any]:
        request = self.context.get("request")  # type: ignore[attr-defined]
        if request is None:
            return fields
        groups = reading_groups_administered(user=request.user)
        scoped = {
            "reading_group": groups,
            "facility": Facility.objects.filter(reading_group__in=groups),
            "radiologist": Radiologist.objects.filter(reading_group__in=groups),
            "facilities": Facility.objects.filter(reading_group__in=groups),
        }
        for name, queryset in scoped.items():
            field = fields.get(name)
            if field is not None and not field.read_only:
                target = getattr(field, "child_relation", field)  # many=True fields
                target.queryset = queryset
        return fields


class JurisdictionSerializer(serializers.ModelSerializer[Jurisdiction]):
    class Meta:
        model = Jurisdiction
        fields = ["id", "code", "country", "name", "timezone"]


class RegionSerializer(serializers.ModelSerializer[Region]):
    class Meta:
        model = Region
        fields = ["id", "code", "name", "country"]


class SubspecialtySerializer(serializers.ModelSerializer[Subspecialty]):
    class Meta:
        model = Subspecialty
        fields = ["id", "code", "name"]


class ReadingGroupSerializer(serializers.ModelSerializer[ReadingGroup]):
    """A reading group's settings its admins change: the worklist's aging step and the
    longest pause a reader may take."""

    worklist_aging_minutes = serializers.IntegerField(
        min_value=AGING_MINUTES_MIN,
        max_value=AGING_MINUTES_MAX,
        required=False,
        help_text="A waiting study rises one priority level per this many minutes "
        f"({AGING_MINUTES_MIN}-{AGING_MINUTES_MAX}).",
        error_messages={
            "min_value": f"The aging step is {AGING_MINUTES_MIN} to {AGING_MINUTES_MAX} minutes.",
            "max_value": f"The aging step is {AGING_MINUTES_MIN} to {AGING_MINUTES_MAX} minutes.",
        },
    )
    max_pause_minutes = serializers.IntegerField(
        min_value=PAUSE_MINUTES_MIN,
        max_value=PAUSE_MINUTES_MAX,
        required=False,
        help_text="The longest a reader may pause themselves "
        f"({PAUSE_MINUTES_MIN}-{PAUSE_MINUTES_MAX} minutes).",
        error_messages={
            "min_value": f"A pause is {PAUSE_MINUTES_MIN} to {PAUSE_MINUTES_MAX} minutes.",
            "max_value": f"A pause is {PAUSE_MINUTES_MIN} to {PAUSE_MINUTES_MAX} minutes.",
        },
    )

    class Meta:
        model = ReadingGroup
        fields = ["id", "name", "worklist_aging_minutes", "max_pause_minutes"]
        read_only_fields = ["id", "name"]


class AETitleListField(serializers.ListField):
    """Facility AE titles as a list of strings, written through facility services."""

    def get_attribute(self, instance: Facility) -> list[str]:
        return [row.ae_title for row in instance.ae_titles.all()]


_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def validate_host(value: str) -> None:
    """A host name (RFC 1123 labels) or an IPv4/IPv6 address."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        name = value.rstrip(".")
    else:
        return
    if not name or len(name) > 253 or not all(_HOST_LABEL.match(x) for x in name.split(".")):
        raise serializers.ValidationError("Not a host name or an IP address.")


class FacilityPacsSerializer(serializers.Serializer[Any]):
    """The facility's PACS, queried for relevant priors (C-FIND) and asked to send
    them to our gateway (C-MOVE); its AE title is admitted by the gateway for this
    facility.  Null (or {}) removes it."""

    ae_title = serializers.CharField(
        source="pacs_ae_title", max_length=16, validators=[validate_ae_title]
    )
    host = serializers.CharField(source="pacs_host", max_length=253, validators=[validate_host])
    port = serializers.IntegerField(source="pacs_port", min_value=1, max_value=65535)

    def validate_empty_values(self, data: Any) -> tuple[bool, Any]:
        if data is None or data == {}:
            return True, {"pacs_ae_title": "", "pacs_host": "", "pacs_port": None}
        return super().validate_empty_values(data)

    def to_representation(self, instance: Any) -> Any:
        if not isinstance(instance, Facility) or not instance.has_pacs:
            return None
        return super().to_representation(instance)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # All three, also in a PATCH (which would otherwise make them optional).
        missing = {
            name: "This field is required."
            for name, source in (
                ("ae_title", "pacs_ae_title"),
                ("host", "pacs_host"),
                ("port", "pacs_port"),
            )
            if attrs.get(source) in (None, "")
        }
        if missing:
            raise serializers.ValidationError(missing)
        # The gateway admits a calling AE title for one facility: a PACS AE title
        # may be neither another facility's own AE title nor another's PACS.
        title = attrs["pacs_ae_title"]
        parent = getattr(self.parent, "instance", None)
        others = Facility.objects.exclude(pk=parent.pk) if isinstance(parent, Facility) else None
        others = others if others is not None else Facility.objects.all()
        if others.filter(Q(ae_titles__ae_title=title) | Q(pacs_ae_title=title)).exists():
            raise serializers.ValidationError(
                {"ae_title": "Another facility already sends as this AE title."}
            )
        return attrs


class FacilitySerializer(ScopedRelatedFieldsMixin, serializers.ModelSerializer[Facility]):
    pacs = FacilityPacsSerializer(
        source="*",
        required=False,
        allow_null=True,
        help_text="The facility's PACS ({ae_title, host, port}) for relevant priors; null "
        "when none.  PATCH null or {} to remove it.",
    )
    ae_titles = AETitleListField(
        child=serializers.CharField(max_length=16, validators=[validate_ae_title]),
        required=False,
        help_text="DICOM AE titles the facility sends from; unique across facilities.",
    )
    jurisdiction = serializers.SlugRelatedField(
        slug_field="code", queryset=Jurisdiction.objects.all()
    )
    region = serializers.SlugRelatedField(slug_field="code", queryset=Region.objects.all())
    default_priority = serializers.ChoiceField(choices=Priority.choices, required=False)

    class Meta:
        model = Facility
        fields = [
            "id",
            "name",
            "reading_group",
            "ae_titles",
            "jurisdiction",
            "timezone",
            "region",
            "latitude",
            "longitude",
            "tat_stat_minutes",
            "tat_urgent_minutes",
            "tat_routine_minutes",
            "default_priority",
            "dicom_allowed_networks",
            "dicom_max_object_bytes",
            "dicom_storage_quota_bytes",
            "hl7_sending_facility",
            "hl7_allowed_networks",
            "patient_id_issuer",
            "order_hold_minutes",
            "order_expected_hours",
            "order_jurisdiction_source",
            "order_location_jurisdictions",
            "pacs",
            "priors_max_count",
            "priors_max_years",
            "is_active",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]

    def get_fields(self) -> dict[str, Any]:
        return self.scope_related_fields(super().get_fields())

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # The model's turnaround ordering rule, reported against the field.
        base = self.instance or Facility()
        stat, urgent, routine = (
            attrs.get(name, getattr(base, name))
            for name in ("tat_stat_minutes", "tat_urgent_minutes", "tat_routine_minutes")
        )
        if not 0 < stat <= urgent <= routine:
            raise serializers.ValidationError(
                {
                    "tat_stat_minutes": "Turnaround targets must be positive and "
                    "STAT <= urgent <= routine."
                }
            )
        sender = attrs.get("hl7_sending_facility")
        if sender:
            taken = Facility.objects.filter(hl7_sending_facility=sender)
            if self.instance is not None:
                taken = taken.exclude(pk=self.instance.pk)
            if taken.exists():
                raise serializers.ValidationError(
                    {"hl7_sending_facility": "Another facility already sends as this HL7 facility."}
                )
        locations = attrs.get("order_location_jurisdictions")
        if locations is not None:
            if not isinstance(locations, dict) or not all(
                isinstance(k, str) and isinstance(v, str) and len(k) <= 200
                for k, v in locations.items()
            ):
                raise serializers.ValidationError(
                    {"order_location_jurisdictions": "An object of location -> jurisdiction code."}
                )
            known = set(
                Jurisdiction.objects.filter(code__in=set(locations.values())).values_list(
                    "code", flat=True
                )
            )
            unknown = sorted(set(locations.values()) - known)
            if unknown:
                raise serializers.ValidationError(
                    {
                        "order_location_jurisdictions": "Unknown jurisdictions: "
                        + ", ".join(unknown)
                        + "."
                    }
                )
        return attrs


class EnrolableUserField(serializers.SlugRelatedField[Any]):
    """A username among the users the requesting admin may enrol.  A name that does
    not exist and one that is not available answer the same words, so the field is no
    oracle of who has an account."""

    default_error_messages = {
        "does_not_exist": "No such user available for enrolment.",
        "invalid": "No such user available for enrolment.",
    }


class RadiologistSerializer(ScopedRelatedFieldsMixin, serializers.ModelSerializer[Radiologist]):
    user = EnrolableUserField(slug_field="username", queryset=get_user_model().objects.none())
    subspecialties = serializers.SlugRelatedField(
        slug_field="code", many=True, queryset=Subspecialty.objects.all()
    )
    home_region = serializers.SlugRelatedField(slug_field="code", queryset=Region.objects.all())

    class Meta:
        model = Radiologist
        fields = [
            "id",
            "user",
            "display_name",
            "reading_group",
            "subspecialties",
            "home_region",
            "latitude",
            "longitude",
            "timezone",
            "workload_cap",
            "is_active",
            "is_available",
            "paused_until",
            "pause_reason",
        ]
        read_only_fields = ["paused_until", "pause_reason"]
        extra_kwargs = {
            "is_available": {
                "help_text": "Accepting new cases.  Setting it ends a timed pause (false: "
                "unavailable until resumed); pause for a time with POST .../pause/."
            },
            "paused_until": {"help_text": "When the reader's pause ends by itself (null: none)."},
        }

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # Availability set by hand replaces a timed pause (so the row never says
        # "available" and "paused until" at once); sent unchanged, it leaves it alone.
        instance = self.instance if isinstance(self.instance, Radiologist) else None
        wanted = attrs.get("is_available")
        if wanted is not None and (instance is None or wanted != instance.is_available):
            attrs["paused_until"] = None
            attrs["pause_reason"] = ""
        return attrs

    def get_fields(self) -> dict[str, Any]:
        fields = self.scope_related_fields(super().get_fields())
        request = self.context.get("request")
        user_field: Any = fields.get("user")
        if request is not None and user_field is not None and not user_field.read_only:
            users = users_enrolable(user=request.user)
            if isinstance(self.instance, Radiologist):
                # Updating a reader: their own account stays acceptable.
                users = users | get_user_model().objects.filter(pk=self.instance.user_id)
            user_field.queryset = users
        return fields


LOCAL_TIME = re.compile(r"([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?")


@extend_schema_field(
    {"type": "string", "pattern": r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$", "example": "08:00"}
)
class LocalTimeField(serializers.TimeField):
    """A time of day on a local clock (``HH:MM`` or ``HH:MM:SS``), with no offset: the
    zone is the reader's, the jurisdiction's or the facility's, never the caller's.  An
    offset is refused rather than dropped."""

    def to_internal_value(self, value: Any) -> Any:
        if not isinstance(value, str) or not LOCAL_TIME.fullmatch(value.strip()):
            self.fail("invalid", format="HH:MM or HH:MM:SS (a local time, no offset)")
        return super().to_internal_value(value.strip())


UNTIL_TIME_HELP = (
    "Ends at this local time (HH:MM) on its last day, in the {zone}'s time zone "
    "(null: at the end of that day)."
)


class LicenseSerializer(ScopedRelatedFieldsMixin, serializers.ModelSerializer[License]):
    jurisdiction = serializers.SlugRelatedField(
        slug_field="code", queryset=Jurisdiction.objects.all()
    )

    valid_until_time = LocalTimeField(
        required=False, allow_null=True, help_text=UNTIL_TIME_HELP.format(zone="jurisdiction")
    )

    class Meta:
        model = License
        fields = [
            "id",
            "radiologist",
            "jurisdiction",
            "number",
            "valid_from",
            "valid_to",
            "valid_until_time",
            "status",
            "scope",
        ]

    def get_fields(self) -> dict[str, Any]:
        return self.scope_related_fields(super().get_fields())


class FacilityPrivilegeSerializer(
    ScopedRelatedFieldsMixin, serializers.ModelSerializer[FacilityPrivilege]
):
    valid_until_time = LocalTimeField(
        required=False, allow_null=True, help_text=UNTIL_TIME_HELP.format(zone="facility")
    )

    class Meta:
        model = FacilityPrivilege
        fields = [
            "id",
            "radiologist",
            "facility",
            "status",
            "valid_from",
            "valid_to",
            "valid_until_time",
        ]

    def get_fields(self) -> dict[str, Any]:
        return self.scope_related_fields(super().get_fields())


class ShiftSerializer(ScopedRelatedFieldsMixin, serializers.ModelSerializer[Shift]):
    class Meta:
        model = Shift
        fields = ["id", "radiologist", "starts_at", "ends_at", "rota"]
        read_only_fields = ["rota"]
        extra_kwargs = {
            "rota": {"help_text": "The weekly rota this shift was generated from (null: manual)."}
        }

    def get_fields(self) -> dict[str, Any]:
        return self.scope_related_fields(super().get_fields())


class RotaSerializer(ScopedRelatedFieldsMixin, serializers.ModelSerializer[Rota]):
    starts_at = LocalTimeField(help_text="Local time in the reader's time zone (HH:MM).")
    ends_at = LocalTimeField(
        help_text="Local time (HH:MM); at or before the start: the next day (overnight)."
    )

    class Meta:
        model = Rota
        fields = ["id", "radiologist", "weekday", "starts_at", "ends_at", "valid_from", "valid_to"]
        extra_kwargs = {
            "weekday": {"help_text": "0 Monday ... 6 Sunday, in the reader's time zone."},
            "valid_from": {"help_text": "First day (local) a shift is generated on."},
            "valid_to": {"help_text": "Last day (local) a shift starts on; null: open-ended."},
        }

    def get_fields(self) -> dict[str, Any]:
        return self.scope_related_fields(super().get_fields())

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        start = attrs.get("valid_from", getattr(self.instance, "valid_from", None))
        end = attrs.get("valid_to", getattr(self.instance, "valid_to", None))
        if start is not None and end is not None and end < start:
            raise serializers.ValidationError({"valid_to": "A rota cannot end before it starts."})
        return attrs


class LeaveSerializer(ScopedRelatedFieldsMixin, serializers.ModelSerializer[Leave]):
    class Meta:
        model = Leave
        fields = ["id", "radiologist", "starts_on", "ends_on", "reason"]
        extra_kwargs = {
            "starts_on": {"help_text": "First day away (in the reader's time zone)."},
            "ends_on": {"help_text": "Last day away (inclusive)."},
        }

    def get_fields(self) -> dict[str, Any]:
        return self.scope_related_fields(super().get_fields())

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        start = attrs.get("starts_on", getattr(self.instance, "starts_on", None))
        end = attrs.get("ends_on", getattr(self.instance, "ends_on", None))
        if start is not None and end is not None and end < start:
            raise serializers.ValidationError({"ends_on": "Leave cannot end before it starts."})
        return attrs


class PauseSerializer(serializers.Serializer[Any]):
    reason = serializers.CharField(max_length=200, help_text="Why (shown to the group's admins).")
    minutes = serializers.IntegerField(
        min_value=1,
        help_text="How long; at most the reading group's max_pause_minutes (else 400).",
    )


class PauseStateSerializer(serializers.Serializer[Any]):
    radiologist = serializers.IntegerField()
    is_available = serializers.BooleanField(
        help_text="Accepting new cases now (a pause that has run out is over)."
    )
    paused_until = serializers.DateTimeField(
        allow_null=True,
        help_text="When the pause ends by itself (null: not paused, or unavailable until "
        "someone resumes).",
    )
    pause_reason = serializers.CharField(allow_blank=True)
    max_pause_minutes = serializers.IntegerField(
        help_text="The longest pause this reader's group allows."
    )


class PresenceSerializer(serializers.Serializer[Any]):
    on_shift = serializers.BooleanField()
    is_available = serializers.BooleanField()
    is_active = serializers.BooleanField()
    receives_offers = serializers.BooleanField(
        help_text="On shift, available and active: new studies are offered to this reader."
    )
    shift_ends_at = serializers.DateTimeField(allow_null=True)
    next_shift_starts_at = serializers.DateTimeField(allow_null=True)
    paused_until = serializers.DateTimeField(
        allow_null=True, help_text="While paused: when the pause ends by itself."
    )
    pause_reason = serializers.CharField(allow_blank=True)


class MeSerializer(serializers.Serializer[Any]):
    username = serializers.CharField()
    roles = serializers.ListField(child=serializers.CharField())
    radiologist_id = serializers.IntegerField(allow_null=True)
    presence = PresenceSerializer(
        allow_null=True, help_text="A reader's shift state now (null for other users)."
    )
    max_pause_minutes = serializers.IntegerField(
        allow_null=True,
        help_text="A reader's longest pause (POST /api/v1/me/pause/); null for other users.",
    )
    facilities = serializers.ListField(child=serializers.IntegerField())
    reading_groups = serializers.ListField(child=serializers.IntegerField())


# --- Privileges in bulk ----------------------------------------------------------
MAX_BULK_READERS = 500


class AdministeredFacilityField(serializers.PrimaryKeyRelatedField[Facility]):
    """A facility of a reading group the requesting user administers (others answer
    as if they did not exist)."""

    def __init__(self, **kwargs: Any) -> None:
        # The model, for the schema; the rows come from get_queryset, per request.
        kwargs.setdefault("queryset", Facility.objects.none())
        super().__init__(**kwargs)

    def get_queryset(self) -> Any:
        request = self.context.get("request")
        if request is None:
            return Facility.objects.none()
        return facility_list_administered(user=request.user)


class PrivilegeBulkGrantSerializer(serializers.Serializer[Any]):
    facility = AdministeredFacilityField(
        help_text="The facility granting the privileges (of a group you administer)."
    )
    radiologists = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1),
        min_length=1,
        max_length=MAX_BULK_READERS,
        help_text="Ids of readers of the facility's reading group; any other id refuses "
        "the whole request (400, naming them).",
    )
    valid_from = serializers.DateField()
    valid_to = serializers.DateField()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["valid_to"] < attrs["valid_from"]:
            raise serializers.ValidationError(
                {"valid_to": "A privilege cannot end before it starts."}
            )
        return attrs


class PrivilegeCopySerializer(serializers.Serializer[Any]):
    from_facility = AdministeredFacilityField(
        help_text="The facility whose readers (privileged there today) are copied."
    )
    valid_from = serializers.DateField(
        required=False, help_text="Start of the new privileges; default: each source row's."
    )
    valid_to = serializers.DateField(
        required=False, help_text="End of the new privileges; default: each source row's."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        start, end = attrs.get("valid_from"), attrs.get("valid_to")
        if start is not None and end is not None and end < start:
            raise serializers.ValidationError(
                {"valid_to": "A privilege cannot end before it starts."}
            )
        return attrs


class PrivilegeGrantResultSerializer(serializers.Serializer[Any]):
    created = FacilityPrivilegeSerializer(many=True, help_text="New active privileges.")
    extended = FacilityPrivilegeSerializer(
        many=True, help_text="Active privileges whose period was widened to cover the request."
    )
    unchanged = FacilityPrivilegeSerializer(
        many=True, help_text="Active privileges that already covered the period asked for."
    )
