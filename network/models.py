"""The reading network: who reads for whom, where, and under which licenses."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Length

from network.validators import (
    validate_ae_title,
    validate_country_code,
    validate_jurisdiction_code,
    validate_networks,
    validate_timezone,
)
from network.validity import validity_window

# `__length` in the check constraints below.
models.CharField.register_lookup(Length)


class Priority(models.IntegerChoices):
    """Reading priority; a lower value is more urgent, so it sorts first."""

    STAT = 1, "STAT"
    URGENT = 2, "Urgent"
    ROUTINE = 3, "Routine"


class Jurisdiction(models.Model):
    """A licensing jurisdiction: an ISO 3166-2 subdivision such as US-TX."""

    code = models.CharField(max_length=6, unique=True, validators=[validate_jurisdiction_code])
    country = models.CharField(max_length=2, validators=[validate_country_code])
    name = models.CharField(max_length=100)
    # A license here is valid through the end of its last day in this time zone.
    timezone = models.CharField(
        max_length=64,
        default="UTC",
        validators=[validate_timezone],
        help_text="IANA time zone in which license dates are judged (e.g. America/Chicago).",
    )

    class Meta:
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(condition=Q(country__length=2), name="jurisdiction_country_len"),
            models.CheckConstraint(
                condition=Q(code__startswith=F("country")), name="jurisdiction_code_in_country"
            ),
        ]

    def __str__(self) -> str:
        return self.code


class Region(models.Model):
    """A geographic area used for the hyperlocal tier (e.g. north Texas)."""

    code = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=100)
    country = models.CharField(max_length=2, validators=[validate_country_code])

    class Meta:
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(condition=Q(country__length=2), name="region_country_len"),
        ]

    def __str__(self) -> str:
        return self.name


class ReadingGroup(models.Model):
    """A radiology group: its admins configure the network and its routing."""

    name = models.CharField(max_length=200, unique=True)
    # Set to a new random value by database triggers (routing migration 0003)
    # whenever any routing rule, its facilities or subspecialties, or a subspecialty
    # code changes, however it is changed: routing processes keep each group's
    # rules in memory for as long as this value stays the same.
    rules_version = models.BigIntegerField(default=0, editable=False)
    # Aging: a waiting study ranks one priority level higher per step of waiting
    # (worklist.aging), so no priority class starves under a flood of urgent work.
    worklist_aging_minutes = models.PositiveIntegerField(
        default=60,
        help_text="A waiting study rises one priority level per this many minutes of waiting.",
    )
    max_pause_minutes = models.PositiveIntegerField(
        default=120, help_text="The longest a reader may pause themselves."
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(worklist_aging_minutes__gte=1, worklist_aging_minutes__lte=10080),
                name="group_aging_bounded",
            ),
            models.CheckConstraint(
                condition=Q(max_pause_minutes__gte=1, max_pause_minutes__lte=1440),
                name="group_pause_bounded",
            ),
        ]
        permissions = [("administer_readinggroup", "Administer the reading group")]

    def __str__(self) -> str:
        return self.name


class Subspecialty(models.Model):
    """A reading subspecialty (neuro, MSK, ...); rows are seeded by a migration."""

    code = models.SlugField(max_length=30, unique=True)
    name = models.CharField(max_length=100)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "subspecialties"

    def __str__(self) -> str:
        return self.name


class Facility(models.Model):
    """A hospital, clinic or imaging centre that sends studies to a reading group."""

    name = models.CharField(max_length=200)
    reading_group = models.ForeignKey(
        ReadingGroup, on_delete=models.PROTECT, related_name="facilities"
    )
    jurisdiction = models.ForeignKey(
        Jurisdiction, on_delete=models.PROTECT, related_name="facilities"
    )
    timezone = models.CharField(max_length=64, validators=[validate_timezone])
    region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="facilities")
    latitude = models.DecimalField(max_digits=8, decimal_places=5, null=True, blank=True)
    longitude = models.DecimalField(max_digits=8, decimal_places=5, null=True, blank=True)
    # Contracted turnaround targets, in minutes from receipt to final report.
    tat_stat_minutes = models.PositiveIntegerField(default=60)
    tat_urgent_minutes = models.PositiveIntegerField(default=240)
    tat_routine_minutes = models.PositiveIntegerField(default=1440)
    default_priority = models.PositiveSmallIntegerField(
        choices=Priority.choices, default=Priority.ROUTINE
    )
    # Optional DICOM allow-list: addresses or CIDR networks the facility sends from.
    dicom_allowed_networks = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_networks],
        help_text='e.g. ["10.20.0.0/16", "203.0.113.7"]; empty allows any address.',
    )
    dicom_max_object_bytes = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        help_text="Largest DICOM object accepted from this facility; empty: the "
        "INGEST_MAX_OBJECT_BYTES default.",
    )
    dicom_storage_quota_bytes = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        help_text="Most bytes of DICOM objects stored for this facility; its group admins "
        "are alerted at INGEST_QUOTA_WARNING_FRACTION of it. Empty: no quota.",
    )
    # HL7 v2 orders (the `orders` app): MSH-4 of this facility's messages, unique
    # when set; a message from an unknown sending facility is refused (AR).
    hl7_sending_facility = models.CharField(
        max_length=180,
        blank=True,
        default="",
        help_text="MSH-4 (sending facility) of this facility's HL7 messages.",
    )
    hl7_allowed_networks = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_networks],
        help_text="Addresses or CIDR networks HL7 may come from; empty allows any address.",
    )
    # A patient is (issuer of patient id, patient id) within the reading group: the
    # DICOM (0010,0021) / HL7 PID-3.4 assigning authority.  Empty: the facility's
    # own namespace ("facility-<id>").
    patient_id_issuer = models.CharField(max_length=64, blank=True, default="")
    order_hold_minutes = models.PositiveIntegerField(
        default=0,
        help_text="Images that arrive without an order: 0 routes them at once; N holds "
        "them up to N minutes for their order.",
    )
    order_expected_hours = models.PositiveIntegerField(
        default=24,
        help_text="An order without images is listed as expected for this many hours.",
    )

    class OrderJurisdictionSource(models.TextChoices):
        FACILITY = "facility", "The facility's jurisdiction"
        LOCATION = "location", "The order's patient location (PV1-3)"
        PATIENT_ADDRESS = "patient_address", "The patient's address (PID-11)"

    order_jurisdiction_source = models.CharField(
        max_length=16,
        choices=OrderJurisdictionSource.choices,
        default=OrderJurisdictionSource.FACILITY,
        help_text="Where the patient's jurisdiction comes from when an order names it.",
    )
    order_location_jurisdictions = models.JSONField(
        default=dict,
        blank=True,
        help_text='PV1-3 point of care -> jurisdiction code, e.g. {"NM-CLINIC": "US-NM"}.',
    )
    # The facility's PACS, queried for relevant priors (the `priors` app); its AE
    # title is admitted by our gateway for this facility.
    pacs_ae_title = models.CharField(
        max_length=16, blank=True, default="", validators=[validate_ae_title]
    )
    pacs_host = models.CharField(max_length=253, blank=True, default="")
    pacs_port = models.PositiveIntegerField(null=True, blank=True)
    priors_max_count = models.PositiveSmallIntegerField(
        default=3, help_text="Most relevant priors retrieved for one study."
    )
    priors_max_years = models.PositiveSmallIntegerField(
        default=5, help_text="Priors older than this many years are not relevant."
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "facilities"
        permissions = [("access_facility", "Access the facility's studies as its staff")]
        constraints = [
            models.UniqueConstraint(fields=["reading_group", "name"], name="facility_name_unique"),
            models.CheckConstraint(
                condition=Q(tat_stat_minutes__gt=0)
                & Q(tat_stat_minutes__lte=F("tat_urgent_minutes"))
                & Q(tat_urgent_minutes__lte=F("tat_routine_minutes")),
                name="facility_tat_ordered",
                violation_error_message=(
                    "Turnaround targets must be positive and STAT <= urgent <= routine."
                ),
            ),
            models.CheckConstraint(
                condition=Q(default_priority__in=Priority.values), name="facility_priority_valid"
            ),
            models.UniqueConstraint(
                fields=["hl7_sending_facility"],
                condition=~Q(hl7_sending_facility=""),
                name="facility_hl7_sender_unique",
                violation_error_message="Another facility already sends as this HL7 facility.",
            ),
            models.CheckConstraint(
                condition=(
                    Q(pacs_ae_title="", pacs_host="", pacs_port__isnull=True)
                    | (
                        ~Q(pacs_ae_title="")
                        & ~Q(pacs_host="")
                        & Q(pacs_port__gte=1, pacs_port__lte=65535)
                    )
                ),
                name="facility_pacs_complete",
                violation_error_message="A PACS needs an AE title, a host and a port (1-65535).",
            ),
            models.CheckConstraint(
                condition=Q(
                    order_jurisdiction_source__in=["facility", "location", "patient_address"]
                ),
                name="facility_order_jurisdiction_source_valid",
            ),
            models.CheckConstraint(
                condition=(Q(latitude__isnull=True) | Q(latitude__gte=-90, latitude__lte=90))
                & (Q(longitude__isnull=True) | Q(longitude__gte=-180, longitude__lte=180)),
                name="facility_coordinates_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def tat_minutes(self, priority: int) -> int:
        """The contracted turnaround for a priority, in minutes."""
        return {
            Priority.STAT: self.tat_stat_minutes,
            Priority.URGENT: self.tat_urgent_minutes,
            Priority.ROUTINE: self.tat_routine_minutes,
        }[Priority(priority)]

    @property
    def has_pacs(self) -> bool:
        return bool(self.pacs_ae_title and self.pacs_host and self.pacs_port)

    @property
    def patient_issuer(self) -> str:
        """The namespace of this facility's patient ids (see ``patient_id_issuer``)."""
        return self.patient_id_issuer or f"facility-{self.pk}"


class FacilityAETitle(models.Model):
    """A DICOM AE title a facility sends from; unique across all facilities."""

    facility = models.ForeignKey(Facility, on_delete=models.CASCADE, related_name="ae_titles")
    ae_title = models.CharField(max_length=16, unique=True, validators=[validate_ae_title])

    class Meta:
        ordering = ["ae_title"]
        verbose_name = "facility AE title"
        constraints = [
            models.CheckConstraint(
                condition=Q(ae_title__length__gte=1), name="facility_ae_title_not_empty"
            ),
        ]

    def __str__(self) -> str:
        return self.ae_title


class Radiologist(models.Model):
    """A reader: their subspecialties, home, time zone and how much they may hold."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="radiologist"
    )
    reading_group = models.ForeignKey(
        ReadingGroup, on_delete=models.PROTECT, related_name="radiologists"
    )
    display_name = models.CharField(max_length=200)
    subspecialties = models.ManyToManyField(Subspecialty, related_name="radiologists")
    home_region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="radiologists")
    latitude = models.DecimalField(max_digits=8, decimal_places=5, null=True, blank=True)
    longitude = models.DecimalField(max_digits=8, decimal_places=5, null=True, blank=True)
    timezone = models.CharField(max_length=64, validators=[validate_timezone])
    workload_cap = models.PositiveSmallIntegerField(
        default=5, help_text="Most cases this reader may hold claimed at once."
    )
    is_active = models.BooleanField(default=True, help_text="Employed and credentialed.")
    is_available = models.BooleanField(
        default=True, help_text="Accepting new cases (a reader may pause while on shift)."
    )
    # A pause the reader took (network.services.reader_pause): available again when
    # it ends, whether or not they resume by hand.
    paused_until = models.DateTimeField(null=True, blank=True)
    pause_reason = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["display_name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(workload_cap__gte=1), name="radiologist_cap_positive"
            ),
        ]

    def __str__(self) -> str:
        return self.display_name


class CredentialStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    PENDING = "pending", "Pending"
    SUSPENDED = "suspended", "Suspended"
    REVOKED = "revoked", "Revoked"


class License(models.Model):
    """A medical license: the law says who may read a patient's images."""

    class Scope(models.TextChoices):
        FINAL = "final", "Final reads"
        PRELIMINARY = "preliminary", "Preliminary reads only"

    radiologist = models.ForeignKey(Radiologist, on_delete=models.CASCADE, related_name="licenses")
    jurisdiction = models.ForeignKey(Jurisdiction, on_delete=models.PROTECT, related_name="+")
    number = models.CharField(max_length=50)
    valid_from = models.DateField()
    valid_to = models.DateField()
    valid_until_time = models.TimeField(
        null=True,
        blank=True,
        help_text="Ends at this time of day on its last day, in the jurisdiction's time zone "
        "(blank: at the end of that day).",
    )
    status = models.CharField(
        max_length=12, choices=CredentialStatus.choices, default=CredentialStatus.ACTIVE
    )
    scope = models.CharField(max_length=12, choices=Scope.choices, default=Scope.FINAL)

    class Meta:
        ordering = ["jurisdiction__code", "valid_to"]
        indexes = [
            models.Index(
                fields=["jurisdiction", "radiologist", "valid_to"], name="license_lookup_idx"
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["jurisdiction", "number"], name="license_number_unique"
            ),
            models.CheckConstraint(
                condition=Q(valid_to__gte=F("valid_from")),
                name="license_dates_ordered",
                violation_error_message="A license cannot end before it starts.",
            ),
            models.CheckConstraint(
                condition=Q(status__in=CredentialStatus.values), name="license_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(scope__in=["final", "preliminary"]), name="license_scope_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.jurisdiction} {self.number}"

    def valid_window(self) -> tuple[dt.datetime, dt.datetime]:
        """From the start of its first day to the end of its last (or ``valid_until_time``
        that day), in the jurisdiction's time zone, as UTC instants (end exclusive)."""
        return validity_window(
            self.valid_from, self.valid_to, self.valid_until_time, self.jurisdiction.timezone
        )

    def is_valid_at(self, at: dt.datetime) -> bool:
        starts_at, ends_at = self.valid_window()
        return self.status == CredentialStatus.ACTIVE and starts_at <= at < ends_at


class FacilityPrivilege(models.Model):
    """Credentialing: the facility has granted this reader privileges for a period."""

    radiologist = models.ForeignKey(
        Radiologist, on_delete=models.CASCADE, related_name="privileges"
    )
    facility = models.ForeignKey(Facility, on_delete=models.CASCADE, related_name="privileges")
    status = models.CharField(
        max_length=12, choices=CredentialStatus.choices, default=CredentialStatus.ACTIVE
    )
    valid_from = models.DateField()
    valid_to = models.DateField()
    valid_until_time = models.TimeField(
        null=True,
        blank=True,
        help_text="Ends at this time of day on its last day, in the facility's time zone "
        "(blank: at the end of that day).",
    )

    class Meta:
        ordering = ["facility__name", "valid_to"]
        indexes = [
            models.Index(
                fields=["facility", "radiologist", "valid_to"], name="privilege_lookup_idx"
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(valid_to__gte=F("valid_from")),
                name="privilege_dates_ordered",
                violation_error_message="A privilege cannot end before it starts.",
            ),
            models.CheckConstraint(
                condition=Q(status__in=CredentialStatus.values), name="privilege_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.radiologist} @ {self.facility}"

    def valid_window(self) -> tuple[dt.datetime, dt.datetime]:
        """From the start of its first day to the end of its last (or ``valid_until_time``
        that day), in the facility's time zone, as UTC instants (end exclusive)."""
        return validity_window(
            self.valid_from, self.valid_to, self.valid_until_time, self.facility.timezone
        )

    def is_valid_at(self, at: dt.datetime) -> bool:
        starts_at, ends_at = self.valid_window()
        return self.status == CredentialStatus.ACTIVE and starts_at <= at < ends_at


class Shift(models.Model):
    """A period a reader works; "who is on now" is one range query on the index."""

    radiologist = models.ForeignKey(Radiologist, on_delete=models.CASCADE, related_name="shifts")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    # Set on shifts generated from a weekly rota (network.services.rota_shifts_generate).
    rota = models.ForeignKey(
        "Rota", null=True, blank=True, on_delete=models.SET_NULL, related_name="shifts"
    )

    class Meta:
        ordering = ["starts_at"]
        indexes = [
            models.Index(fields=["ends_at", "starts_at"], name="shift_window_idx"),
            models.Index(fields=["radiologist", "starts_at"], name="shift_reader_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__gt=F("starts_at")),
                name="shift_ends_after_start",
                violation_error_message="A shift must end after it starts.",
            ),
            # Generating a rota's shifts twice makes each shift once.
            models.UniqueConstraint(
                fields=["rota", "starts_at"],
                condition=Q(rota__isnull=False),
                name="shift_one_per_rota_start",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.radiologist} {self.starts_at:%Y-%m-%d %H:%M}-{self.ends_at:%H:%M}"


class Rota(models.Model):
    """A recurring weekly shift of a reader, in the reader's own time zone: concrete
    shifts are generated ahead from it (daylight-saving correct)."""

    radiologist = models.ForeignKey(Radiologist, on_delete=models.CASCADE, related_name="rotas")
    weekday = models.PositiveSmallIntegerField(
        choices=[
            (0, "Monday"),
            (1, "Tuesday"),
            (2, "Wednesday"),
            (3, "Thursday"),
            (4, "Friday"),
            (5, "Saturday"),
            (6, "Sunday"),
        ]
    )
    starts_at = models.TimeField(help_text="Local time in the reader's time zone.")
    ends_at = models.TimeField(help_text="Local time; at or before the start: the next day.")
    valid_from = models.DateField()
    valid_to = models.DateField(null=True, blank=True)

    class Meta:
        ordering = ["radiologist", "weekday", "starts_at"]
        constraints = [
            models.CheckConstraint(condition=Q(weekday__lte=6), name="rota_weekday_valid"),
            models.CheckConstraint(
                condition=Q(valid_to__isnull=True) | Q(valid_to__gte=F("valid_from")),
                name="rota_dates_ordered",
                violation_error_message="A rota cannot end before it starts.",
            ),
        ]

    def __str__(self) -> str:
        day = self.get_weekday_display()
        return f"{self.radiologist} {day} {self.starts_at:%H:%M}-{self.ends_at:%H:%M}"


class Leave(models.Model):
    """An exception to a reader's rota: no shift is generated on these days (in the
    reader's time zone), and generated shifts that fall in them are removed."""

    radiologist = models.ForeignKey(Radiologist, on_delete=models.CASCADE, related_name="leaves")
    starts_on = models.DateField()
    ends_on = models.DateField()
    reason = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["radiologist", "starts_on"]
        verbose_name_plural = "leave"
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_on__gte=F("starts_on")),
                name="leave_dates_ordered",
                violation_error_message="Leave cannot end before it starts.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.radiologist} away {self.starts_on}-{self.ends_on}"


class ReaderVersion(models.Model):
    """One version of a reader's eligibility facts, append-only: everything the
    eligibility policy reads of a reader except their open work (standing, pause,
    cap, home region, subspecialties, licenses, privileges, current and future
    shifts), in force from ``recorded_at`` until the reader's next version.  Written
    by ``network.history.reader_versions_record`` whenever a change is saved through
    network's services (the ``eligibility_changed`` signal), so "who was eligible
    at 03:12 on the 4th" has one answer (the rule simulator replays against it)."""

    radiologist = models.ForeignKey(Radiologist, on_delete=models.CASCADE, related_name="+")
    reading_group = models.ForeignKey(ReadingGroup, on_delete=models.CASCADE, related_name="+")
    recorded_at = models.DateTimeField()
    facts = models.JSONField()

    class Meta:
        ordering = ["radiologist", "recorded_at", "id"]
        indexes = [
            models.Index(fields=["reading_group", "recorded_at"], name="readerversion_group_idx"),
            models.Index(fields=["radiologist", "-recorded_at"], name="readerversion_latest_idx"),
        ]

    def __str__(self) -> str:
        return f"reader {self.radiologist_id} as of {self.recorded_at:%Y-%m-%d %H:%M}"
