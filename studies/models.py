"""Imaging studies and the record of every state they passed through."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from network.models import Facility, Jurisdiction, Priority, Radiologist, ReadingGroup
from studies.states import LIVE_STATES, StudyStatus
from studies.validators import validate_uid


class Patient(models.Model):
    """One patient of a reading group: (issuer of patient id, patient id).  Studies
    and orders of the same patient link here; a merge (HL7 ADT^A40) points the
    merged record at the surviving one and relinks its studies and orders."""

    reading_group = models.ForeignKey(ReadingGroup, on_delete=models.PROTECT, related_name="+")
    issuer = models.CharField(max_length=64)
    patient_id = models.CharField(max_length=64)
    name = models.CharField(max_length=200, blank=True)
    birth_date = models.DateField(null=True, blank=True)
    sex = models.CharField(max_length=1, blank=True)
    # PID-11: the patient's address, for an order-driven jurisdiction.
    address_state = models.CharField(max_length=64, blank=True)
    address_country = models.CharField(max_length=3, blank=True)
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="merged_from"
    )
    merged_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["issuer", "patient_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["reading_group", "issuer", "patient_id"], name="patient_identity_unique"
            ),
            models.CheckConstraint(
                condition=~Q(merged_into=models.F("pk")), name="patient_not_merged_into_self"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.patient_id}^^^{self.issuer}"


class Study(models.Model):
    """One imaging study from a facility, and where it stands."""

    class Sex(models.TextChoices):
        MALE = "M", "Male"
        FEMALE = "F", "Female"
        OTHER = "O", "Other"
        UNKNOWN = "", "Unknown"

    study_instance_uid = models.CharField(max_length=64, unique=True, validators=[validate_uid])
    accession_number = models.CharField(max_length=16, blank=True, db_index=True)
    facility = models.ForeignKey(Facility, on_delete=models.PROTECT, related_name="studies")

    patient_id = models.CharField(max_length=64, blank=True)
    patient_name = models.CharField(max_length=200, blank=True)
    patient_birth_date = models.DateField(null=True, blank=True)
    patient_sex = models.CharField(max_length=1, choices=Sex.choices, blank=True)
    patient_jurisdiction = models.ForeignKey(
        Jurisdiction, on_delete=models.PROTECT, related_name="+"
    )
    # The patient record (``patient_id`` above is the DICOM Patient ID as sent).
    patient_record = models.ForeignKey(
        Patient, null=True, blank=True, on_delete=models.PROTECT, related_name="studies"
    )
    # Retrieved from the facility's PACS as a prior for comparison (received on the
    # priors AE title): never routed, never on a worklist.
    is_prior = models.BooleanField(default=False)

    modality = models.CharField(max_length=16, blank=True)
    body_part = models.CharField(max_length=64, blank=True)
    study_description = models.CharField(max_length=200, blank=True)
    procedure_code = models.CharField(max_length=64, blank=True)
    study_date = models.DateField(null=True, blank=True)
    study_time = models.TimeField(null=True, blank=True)
    # (0020,0010) Study ID: the modality's own number for the study.
    dicom_study_id = models.CharField(max_length=16, blank=True)
    referring_physician = models.CharField(max_length=200, blank=True)
    # Set by triage (e.g. AI flags) and matched by routing rules.
    flags = models.JSONField(default=list, blank=True)

    priority = models.PositiveSmallIntegerField(choices=Priority.choices, default=Priority.ROUTINE)
    status = models.CharField(
        max_length=12, choices=StudyStatus.choices, default=StudyStatus.RECEIVING
    )
    assigned_radiologist = models.ForeignKey(
        Radiologist, null=True, blank=True, on_delete=models.PROTECT, related_name="claimed_studies"
    )

    received_at = models.DateTimeField()
    last_instance_at = models.DateTimeField()
    ready_at = models.DateTimeField(null=True, blank=True)
    offered_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    preliminary_at = models.DateTimeField(null=True, blank=True)
    finalized_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    sla_due_at = models.DateTimeField()
    # Last sign of work by the claiming reader (claim, report autosave); a claim
    # idle for too long is released by the stale-claim sweep.
    claim_activity_at = models.DateTimeField(null=True, blank=True)
    # Instances that arrived after the study was declared ready.
    late_instance_count = models.PositiveIntegerField(default=0)
    # Objects of this study the gateway refused (kept in quarantine): the study may be
    # missing images, and its reader is told so on the worklist and the study page.
    refused_instance_count = models.PositiveIntegerField(default=0)
    # A ready study is not routed before these (time lives in the database: the
    # routing sweep routes it when they pass).  Set when it becomes ready: waiting for
    # its order (the facility's order_hold_minutes) and for its priors to be
    # retrieved (a bounded wait by priority); cleared early when they arrive.
    order_hold_until = models.DateTimeField(null=True, blank=True)
    priors_hold_until = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["priority", "sla_due_at", "id"]
        verbose_name_plural = "studies"
        indexes = [
            models.Index(fields=["facility", "received_at"], name="study_facility_received_idx"),
            # DICOMweb searches (QIDO-RS) by patient and by accession number.
            models.Index(fields=["patient_id"], name="study_patient_id_idx"),
            models.Index(
                fields=["priority", "sla_due_at", "id"],
                name="study_live_queue_idx",
                condition=Q(status__in=sorted(LIVE_STATES)),
            ),
            # Ready studies waiting for a routing decision, most urgent first: a
            # routing task takes its batch from the head (offered studies, which the
            # live-queue index also holds, would have to be skipped one by one).
            models.Index(
                fields=["priority", "sla_due_at", "id"],
                name="study_ready_queue_idx",
                condition=Q(status=StudyStatus.READY),
            ),
            models.Index(
                fields=["last_instance_at"],
                name="study_receiving_idx",
                condition=Q(status=StudyStatus.RECEIVING),
            ),
            # A reader's open claims (workload cap) and recent work (fairness):
            # looked up for every routing candidate, so they must stay small reads.
            models.Index(
                fields=["assigned_radiologist"],
                name="study_open_claims_idx",
                condition=Q(status__in=[StudyStatus.CLAIMED, StudyStatus.PRELIMINARY]),
            ),
            models.Index(
                fields=["assigned_radiologist", "claimed_at"], name="study_reader_work_idx"
            ),
            models.Index(
                fields=["claim_activity_at"],
                name="study_claimed_activity_idx",
                condition=Q(status=StudyStatus.CLAIMED),
            ),
            # Recently finalised studies (the /metrics turnaround histogram).
            models.Index(
                fields=["finalized_at"],
                name="study_finalized_idx",
                condition=Q(finalized_at__isnull=False),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=StudyStatus.values), name="study_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(priority__in=Priority.values), name="study_priority_valid"
            ),
            models.CheckConstraint(
                condition=Q(sla_due_at__gt=models.F("received_at")), name="study_sla_after_receipt"
            ),
            models.CheckConstraint(
                condition=~Q(status__in=[StudyStatus.CLAIMED, StudyStatus.PRELIMINARY])
                | Q(assigned_radiologist__isnull=False),
                name="study_claimed_has_reader",
            ),
            models.CheckConstraint(
                condition=~Q(status=StudyStatus.FINAL) | Q(finalized_at__isnull=False),
                name="study_final_has_time",
            ),
            models.CheckConstraint(
                condition=~Q(status=StudyStatus.CANCELLED) | Q(cancelled_at__isnull=False),
                name="study_cancelled_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.accession_number or self.study_instance_uid} ({self.get_status_display()})"


class Order(models.Model):
    """An imaging order from the facility's HL7 feed, matched to its study by
    (facility, accession number) whichever arrives first."""

    class Status(models.TextChoices):
        NEW = "new", "New"
        SCHEDULED = "scheduled", "Scheduled"
        IN_PROGRESS = "in_progress", "In progress"
        COMPLETED = "completed", "Completed"
        CANCELLED = "cancelled", "Cancelled"

    class PatientClass(models.TextChoices):
        EMERGENCY = "E", "Emergency"
        INPATIENT = "I", "Inpatient"
        OUTPATIENT = "O", "Outpatient"
        PREADMIT = "P", "Preadmit"
        RECURRING = "R", "Recurring patient"
        OBSTETRICS = "B", "Obstetrics"
        UNKNOWN = "", "Unknown"

    facility = models.ForeignKey(Facility, on_delete=models.PROTECT, related_name="orders")
    accession_number = models.CharField(max_length=16)
    placer_order_number = models.CharField(max_length=64, blank=True)
    filler_order_number = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.NEW)
    # The order's own priority (ORC-7 / OBR-27); the study takes the more urgent of
    # this and its DICOM priority.
    priority = models.PositiveSmallIntegerField(choices=Priority.choices, null=True, blank=True)
    reason_for_exam = models.CharField(max_length=500, blank=True)
    clinical_history = models.TextField(blank=True)
    ordering_provider = models.CharField(max_length=200, blank=True)
    patient_class = models.CharField(
        max_length=1, choices=PatientClass.choices, blank=True, default=""
    )
    patient_location = models.CharField(max_length=200, blank=True)
    procedure_code = models.CharField(max_length=64, blank=True)
    procedure_description = models.CharField(max_length=200, blank=True)
    patient = models.ForeignKey(
        Patient, null=True, blank=True, on_delete=models.PROTECT, related_name="orders"
    )
    # The patient's jurisdiction the order implies (the facility's
    # order_jurisdiction_source); null: the facility's own.
    jurisdiction = models.ForeignKey(
        Jurisdiction, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    study = models.OneToOneField(
        "Study", null=True, blank=True, on_delete=models.PROTECT, related_name="order"
    )
    ordered_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "id"]
        indexes = [
            # Orders still waiting for their images ("expected"), per facility.
            models.Index(
                fields=["facility", "received_at"],
                name="order_expected_idx",
                condition=Q(study__isnull=True),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["facility", "accession_number"], name="order_accession_unique"
            ),
            models.CheckConstraint(
                condition=~Q(accession_number=""), name="order_accession_not_empty"
            ),
            models.CheckConstraint(
                condition=Q(
                    status__in=["new", "scheduled", "in_progress", "completed", "cancelled"]
                ),
                name="order_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(priority__isnull=True) | Q(priority__in=Priority.values),
                name="order_priority_valid",
            ),
            models.CheckConstraint(
                condition=~Q(status="cancelled") | Q(cancelled_at__isnull=False),
                name="order_cancelled_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.accession_number} ({self.get_status_display()})"


class StudyTransition(models.Model):
    """One state change of a study: the timeline that turnaround is measured from."""

    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="transitions")
    from_status = models.CharField(max_length=12, choices=StudyStatus.choices)
    to_status = models.CharField(max_length=12, choices=StudyStatus.choices)
    at = models.DateTimeField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["study", "at"], name="transition_study_idx")]

    def __str__(self) -> str:
        return f"{self.study_id}: {self.from_status} -> {self.to_status}"


class Series(models.Model):
    """A series of a study, as its instances' headers describe it."""

    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="series")
    series_instance_uid = models.CharField(max_length=64, unique=True, validators=[validate_uid])
    modality = models.CharField(max_length=16, blank=True)
    series_number = models.IntegerField(null=True, blank=True)
    series_description = models.CharField(max_length=200, blank=True)
    body_part = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["series_number", "id"]
        verbose_name_plural = "series"

    def __str__(self) -> str:
        return f"{self.modality} {self.series_number or ''} {self.series_description}".strip()


# The stored form of a BulkDataURI in ``Instance.dicom_json`` (see there).
BULK_DATA_URI_PREFIX = "telerad-bulk:"


class Instance(models.Model):
    """One stored DICOM object; the file lives in storage under ``storage_key``."""

    series = models.ForeignKey(Series, on_delete=models.PROTECT, related_name="instances")
    sop_instance_uid = models.CharField(max_length=64, unique=True, validators=[validate_uid])
    sop_class_uid = models.CharField(max_length=64, validators=[validate_uid])
    transfer_syntax_uid = models.CharField(max_length=64, blank=True)
    instance_number = models.IntegerField(null=True, blank=True)
    number_of_frames = models.PositiveIntegerField(default=1)
    size_bytes = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    storage_key = models.CharField(max_length=300)
    calling_ae = models.CharField(max_length=16, blank=True)
    received_at = models.DateTimeField()
    # A re-send with different content (same facility, study and series) becomes the
    # current version; the earlier ones stay stored (InstanceVersion).
    replaced_count = models.PositiveIntegerField(default=0)
    replaced_at = models.DateTimeField(null=True, blank=True)
    after_ready = models.BooleanField(default=False)
    # The instance's data set as DICOM JSON (PS3.18 F.2) without its bulk data,
    # written by filing from the header it has read anyway: WADO-RS metadata and
    # QIDO's instance attributes are answered from it without opening the file.
    # Bulk data (pixel data, large binary values) is named by a BulkDataURI of the
    # form ``BULK_DATA_URI_PREFIX + <tag>`` that the DICOMweb service makes absolute.
    dicom_json = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["instance_number", "id"]
        indexes = [models.Index(fields=["series", "instance_number"], name="instance_series_idx")]
        constraints = [
            models.CheckConstraint(
                condition=Q(number_of_frames__gte=1), name="instance_frames_pos"
            ),
        ]

    def __str__(self) -> str:
        return self.sop_instance_uid


class InstanceVersion(models.Model):
    """An earlier version of an instance, superseded by a differing re-send from the
    same facility into the same study and series.  Its file is kept, never
    overwritten: each version is stored under a key of its own content."""

    instance = models.ForeignKey(Instance, on_delete=models.PROTECT, related_name="versions")
    sha256 = models.CharField(max_length=64)
    size_bytes = models.PositiveBigIntegerField()
    storage_key = models.CharField(max_length=300)
    transfer_syntax_uid = models.CharField(max_length=64, blank=True)
    calling_ae = models.CharField(max_length=16, blank=True)
    received_at = models.DateTimeField()
    superseded_at = models.DateTimeField()

    class Meta:
        ordering = ["instance", "received_at", "id"]

    def __str__(self) -> str:
        return f"{self.instance_id} {self.sha256[:12]}"
