"""Structured reports: templates, the report of a study with every saved version,
addenda, critical findings and their communication, and readers' macros."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from reporting.states import ReportStatus


class ReportTemplate(models.Model):
    """One version of a structured template; reports point at the version they used."""

    # Null: the shared starter library; otherwise a reading group's own template.
    reading_group = models.ForeignKey(
        "network.ReadingGroup",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="report_templates",
    )
    code = models.SlugField(max_length=64)
    version = models.PositiveIntegerField(default=1)
    name = models.CharField(max_length=200)
    modality = models.CharField(max_length=16, blank=True)
    body_parts = models.JSONField(default=list, blank=True)
    procedure_codes = models.JSONField(default=list, blank=True)
    schema = models.JSONField()
    # An admin's explicit override: offered for, and accepted on, every study whatever
    # its modality, body part and procedure (a general free-text template, say).
    allow_any_study = models.BooleanField(
        default=False,
        help_text="Offer and accept this template on any study, whatever its modality, "
        "body part and procedure.",
    )
    is_active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["code", "version"], name="template_code_version"),
            # New versions retire the old: matching picks the one active version.
            models.UniqueConstraint(
                fields=["code"], condition=Q(is_active=True), name="template_one_active_version"
            ),
            models.CheckConstraint(condition=Q(version__gte=1), name="template_version_pos"),
            models.CheckConstraint(condition=~Q(code=""), name="template_code_set"),
        ]

    def __str__(self) -> str:
        return f"{self.name} (v{self.version})"


class CriticalSeverity(models.TextChoices):
    NONE = "none", "None"
    CRITICAL = "critical", "Critical"
    URGENT = "urgent", "Urgent"
    INCIDENTAL = "incidental", "Incidental, follow-up advised"


class Report(models.Model):
    """The report of one study: its values, impression and where it stands."""

    study = models.OneToOneField("studies.Study", on_delete=models.PROTECT, related_name="report")
    template = models.ForeignKey(ReportTemplate, on_delete=models.PROTECT, related_name="reports")
    author = models.ForeignKey(
        "network.Radiologist", on_delete=models.PROTECT, related_name="reports"
    )
    status = models.CharField(
        max_length=12, choices=ReportStatus.choices, default=ReportStatus.DRAFT
    )
    values = models.JSONField(default=dict, blank=True)
    impression = models.TextField(blank=True)
    critical_severity = models.CharField(
        max_length=12, choices=CriticalSeverity.choices, default=CriticalSeverity.NONE
    )
    # When the finding was last marked critical: the clock of the overdue-communication
    # alert (reporting.critical_overdue_sweep).  Null while the finding is not critical.
    critical_marked_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1)
    preliminary_signed_at = models.DateTimeField(null=True, blank=True)
    preliminary_signed_by = models.ForeignKey(
        "network.Radiologist", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    signed_at = models.DateTimeField(null=True, blank=True)
    signed_by = models.ForeignKey(
        "network.Radiologist",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="signed_reports",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=ReportStatus.values), name="report_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(critical_severity__in=CriticalSeverity.values),
                name="report_severity_valid",
            ),
            models.CheckConstraint(
                condition=~Q(status=ReportStatus.FINAL)
                | Q(signed_at__isnull=False, signed_by__isnull=False),
                name="report_final_is_signed",
            ),
            models.CheckConstraint(
                condition=~Q(status=ReportStatus.PRELIMINARY)
                | Q(preliminary_signed_at__isnull=False, preliminary_signed_by__isnull=False),
                name="report_preliminary_is_signed",
            ),
            models.CheckConstraint(
                condition=~Q(status=ReportStatus.FINAL) | ~Q(impression=""),
                name="report_final_has_impression",
            ),
            models.CheckConstraint(condition=Q(version__gte=1), name="report_version_pos"),
            models.CheckConstraint(
                condition=Q(critical_severity=CriticalSeverity.CRITICAL)
                | Q(critical_marked_at__isnull=True),
                name="report_critical_marked_only_if_critical",
            ),
        ]
        indexes = [
            models.Index(
                fields=["critical_marked_at"],
                condition=Q(critical_marked_at__isnull=False),
                name="report_critical_marked_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"Report of study {self.study_id} ({self.get_status_display()})"


class ReportVersion(models.Model):
    """A saved state of a report (every autosave and every signature): never changed."""

    report = models.ForeignKey(Report, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    template = models.ForeignKey(ReportTemplate, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=12, choices=ReportStatus.choices)
    values = models.JSONField(default=dict, blank=True)
    impression = models.TextField(blank=True)
    critical_severity = models.CharField(max_length=12, choices=CriticalSeverity.choices)
    saved_by = models.ForeignKey("network.Radiologist", on_delete=models.PROTECT, related_name="+")
    saved_at = models.DateTimeField()

    class Meta:
        ordering = ["report", "number"]
        constraints = [
            models.UniqueConstraint(fields=["report", "number"], name="report_version_unique"),
            models.CheckConstraint(condition=Q(number__gte=1), name="report_version_number_pos"),
        ]

    def __str__(self) -> str:
        return f"report {self.report_id} v{self.number} ({self.status})"


class Addendum(models.Model):
    """Words added to a final report after signing; the final itself is never edited."""

    report = models.ForeignKey(Report, on_delete=models.PROTECT, related_name="addenda")
    number = models.PositiveIntegerField()
    text = models.TextField()
    signed_by = models.ForeignKey("network.Radiologist", on_delete=models.PROTECT, related_name="+")
    signed_at = models.DateTimeField()

    class Meta:
        ordering = ["report", "number"]
        verbose_name_plural = "addenda"
        constraints = [
            models.UniqueConstraint(fields=["report", "number"], name="addendum_number_unique"),
            models.CheckConstraint(condition=~Q(text=""), name="addendum_text_set"),
        ]

    def __str__(self) -> str:
        return f"Addendum {self.number} to report {self.report_id}"


class CriticalCommunication(models.Model):
    """Who was told of an actionable finding, how and when (ACR communication practice)."""

    class Method(models.TextChoices):
        PHONE = "phone", "Telephone"
        IN_PERSON = "in_person", "In person"
        SECURE_MESSAGE = "secure_message", "Secure message with acknowledgement"
        OTHER = "other", "Other"

    report = models.ForeignKey(
        Report, on_delete=models.PROTECT, related_name="critical_communications"
    )
    recipient_name = models.CharField(max_length=200)
    recipient_role = models.CharField(max_length=100)
    method = models.CharField(max_length=20, choices=Method.choices)
    communicated_at = models.DateTimeField()
    read_back_confirmed = models.BooleanField(default=False)
    notes = models.TextField(blank=True)
    recorded_by = models.ForeignKey(
        "network.Radiologist", on_delete=models.PROTECT, related_name="+"
    )
    recorded_at = models.DateTimeField()

    class Meta:
        ordering = ["report", "communicated_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(method__in=["phone", "in_person", "secure_message", "other"]),
                name="critical_comm_method_valid",
            ),
            models.CheckConstraint(
                condition=~Q(recipient_name="") & ~Q(recipient_role=""),
                name="critical_comm_recipient_set",
            ),
            models.CheckConstraint(
                condition=Q(recorded_at__gte=F("communicated_at")),
                name="critical_comm_recorded_after",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.recipient_name} ({self.recipient_role}) by {self.method}"


class Macro(models.Model):
    """A radiologist's named snippet of text, insertable into any text field."""

    radiologist = models.ForeignKey(
        "network.Radiologist", on_delete=models.CASCADE, related_name="macros"
    )
    name = models.CharField(max_length=100)
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["radiologist", "name"]
        constraints = [
            models.UniqueConstraint(fields=["radiologist", "name"], name="macro_name_unique"),
            models.CheckConstraint(condition=~Q(name="") & ~Q(text=""), name="macro_not_empty"),
        ]

    def __str__(self) -> str:
        return self.name


# --- Delivery of results to the facility -----------------------------------------------
class FacilityEndpoint(models.Model):
    """Where a facility wants its results: an MLLP listener (HL7 v2) or a FHIR server."""

    class Kind(models.TextChoices):
        MLLP = "mllp", "HL7 v2 over MLLP"
        FHIR_HTTPS = "fhir_https", "FHIR R4 over HTTPS"

    facility = models.OneToOneField(
        "network.Facility", on_delete=models.CASCADE, related_name="report_endpoint"
    )
    kind = models.CharField(max_length=12, choices=Kind.choices)
    host = models.CharField(max_length=255, blank=True, help_text="MLLP: the listener's host.")
    port = models.PositiveIntegerField(null=True, blank=True, help_text="MLLP: its TCP port.")
    url = models.URLField(
        max_length=500,
        blank=True,
        help_text="FHIR: the URL DiagnosticReports are POSTed to (https://…/DiagnosticReport).",
    )
    receiving_application = models.CharField(max_length=64, blank=True, help_text="MSH-5.")
    receiving_facility = models.CharField(max_length=64, blank=True, help_text="MSH-6.")
    # Per network step (connect, then the answer): two steps fit the task's time limit.
    timeout_seconds = models.PositiveSmallIntegerField(default=10, help_text="1 to 30 seconds.")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=["mllp", "fhir_https"]), name="endpoint_kind_valid"
            ),
            models.CheckConstraint(
                condition=~Q(kind="mllp")
                | (~Q(host="") & Q(port__isnull=False, port__gte=1, port__lte=65535)),
                name="endpoint_mllp_address",
            ),
            models.CheckConstraint(
                condition=~Q(kind="fhir_https") | Q(url__startswith="http"),
                name="endpoint_fhir_url",
            ),
            models.CheckConstraint(
                condition=Q(timeout_seconds__gte=1, timeout_seconds__lte=30),
                name="endpoint_timeout_range",
            ),
        ]

    def __str__(self) -> str:
        where = self.url if self.kind == self.Kind.FHIR_HTTPS else f"{self.host}:{self.port}"
        return f"{self.get_kind_display()} {where}"


class ReportMessage(models.Model):
    """One result message (HL7 v2 or FHIR) of a signed report or of one of its addenda,
    and where its delivery to the facility stands; the payload is never changed."""

    class Kind(models.TextChoices):
        HL7 = "hl7", "HL7 v2.5.1 ORU^R01"
        FHIR = "fhir", "FHIR R4 DiagnosticReport"

    class Delivery(models.TextChoices):
        # The facility's endpoint (if any) takes the other kind: served on request only.
        STORED = "stored", "Stored (not for delivery)"
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent and acknowledged"
        FAILED = "failed", "Failed (refused or retries exhausted; needs a person)"

    class ResultStatus(models.TextChoices):
        """What the message says of the result: OBR-25 P / F / C, FHIR preliminary /
        final / appended."""

        PRELIMINARY = "preliminary", "Preliminary"
        FINAL = "final", "Final"
        AMENDED = "amended", "Amended (addendum)"

    report = models.ForeignKey(Report, on_delete=models.PROTECT, related_name="messages")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    result_status = models.CharField(
        max_length=12, choices=ResultStatus.choices, default=ResultStatus.FINAL
    )
    # The final version the message carries, and the addendum that caused it (if any).
    report_version = models.ForeignKey(
        ReportVersion, on_delete=models.PROTECT, related_name="messages"
    )
    addendum = models.ForeignKey(
        Addendum, null=True, blank=True, on_delete=models.PROTECT, related_name="messages"
    )
    control_id = models.CharField(max_length=20, help_text="MSH-10 / the FHIR resource id.")
    payload = models.TextField()
    created_at = models.DateTimeField()
    delivery_status = models.CharField(
        max_length=8, choices=Delivery.choices, default=Delivery.STORED
    )
    attempts = models.PositiveIntegerField(default=0)
    # While pending: when the next attempt is due.  A sender pushes it forward by a
    # lease while it tries, so the message of a crashed worker comes back to the
    # sweep, and the facility's endpoint is looked up at each attempt.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    acknowledgement = models.TextField(blank=True)
    last_error = models.TextField(blank=True)
    # The last application answer (of the last attempt that got one): MSA-1, MSA-2 and
    # MSA-3 (or the ERR's text) for HL7; the HTTP status and the OperationOutcome's
    # text for FHIR; and when it came.
    ack_code = models.CharField(max_length=2, blank=True, help_text="MSA-1: AA/AE/AR, CA/CE/CR.")
    ack_control_id = models.CharField(max_length=64, blank=True, help_text="MSA-2.")
    ack_text = models.TextField(blank=True, help_text="MSA-3 / ERR, or OperationOutcome text.")
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    ack_at = models.DateTimeField(null=True, blank=True)
    # ``attempts`` when the message was last (re)queued: the retry budget
    # (REPORT_DELIVERY_MAX_ATTEMPTS) counts from here, so a requeue gets a fresh one.
    attempts_at_queue = models.PositiveIntegerField(default=0)
    # When the failure was told (alert to the facility's staff and the group's
    # admins); set by the one conditional update that fails the message.
    failure_alerted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["report", "created_at", "id"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(delivery_status="pending"),
                name="report_message_due_idx",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=["hl7", "fhir"]), name="message_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(delivery_status__in=["stored", "pending", "sent", "failed"]),
                name="message_delivery_valid",
            ),
            models.CheckConstraint(
                condition=~Q(delivery_status="pending") | Q(next_attempt_at__isnull=False),
                name="message_pending_is_scheduled",
            ),
            models.CheckConstraint(
                condition=~Q(delivery_status="sent") | Q(sent_at__isnull=False),
                name="message_sent_has_time",
            ),
            models.CheckConstraint(
                condition=Q(result_status__in=["preliminary", "final", "amended"]),
                name="message_result_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(result_status="amended", addendum__isnull=False)
                | Q(~Q(result_status="amended"), addendum__isnull=True),
                name="message_amended_iff_addendum",
            ),
            # One message of each kind per signed version (preliminary or final) and
            # per addendum.
            models.UniqueConstraint(
                fields=["kind", "report_version"],
                condition=Q(addendum__isnull=True),
                name="message_one_per_final",
            ),
            models.UniqueConstraint(
                fields=["kind", "addendum"],
                condition=Q(addendum__isnull=False),
                name="message_one_per_addendum",
            ),
            models.UniqueConstraint(fields=["kind", "control_id"], name="message_control_id"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.control_id} ({self.delivery_status})"


class DeliveryAttempt(models.Model):
    """One try at sending a message, with what the other side answered; never changed."""

    class Outcome(models.TextChoices):
        ACCEPTED = "accepted", "Accepted (AA/CA or HTTP 2xx)"
        NAK = "nak", "Negative acknowledgement (retried)"
        REJECTED = "rejected", "Rejected (AR/CR or HTTP 4xx; not retried)"
        ERROR = "error", "Connection or protocol error (retried)"

    message = models.ForeignKey(
        ReportMessage, on_delete=models.CASCADE, related_name="delivery_attempts"
    )
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    outcome = models.CharField(max_length=8, choices=Outcome.choices)
    detail = models.TextField(blank=True, help_text="The acknowledgement or the error.")
    # The application's answer, when there was one (see ReportMessage.ack_code).
    ack_code = models.CharField(max_length=2, blank=True)
    ack_text = models.TextField(blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["message", "number"]
        constraints = [
            models.UniqueConstraint(fields=["message", "number"], name="delivery_attempt_unique"),
            models.CheckConstraint(
                condition=Q(outcome__in=["accepted", "nak", "rejected", "error"]),
                name="delivery_outcome_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of message {self.message_id}: {self.outcome}"
