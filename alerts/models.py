"""Alerts for group admins: raised once per cause, shown in the admin and the API, mailed."""

from django.db import models


class Alert(models.Model):
    class Kind(models.TextChoices):
        IMAGES_AFTER_FINAL = "images_after_final", "New images after the final report"
        UNROUTABLE = "unroutable", "Study cannot be routed"
        SLA = "sla", "Turnaround at risk"
        CREDENTIAL_EXPIRY = "credential_expiry", "Credential expiring"
        STALE_CLAIM = "stale_claim", "Idle claim released"
        CRITICAL_UNCOMMUNICATED = "critical_uncommunicated", "Critical result not communicated"
        REVIEW_ANSWERED = "review_answered", "Second opinion answered"
        INGEST_CONFLICT = "ingest_conflict", "DICOM object conflicts with a stored one"
        STORAGE_QUOTA = "storage_quota", "Facility storage quota nearly used"
        REPEATED_LOCKOUT = "repeated_lockout", "Repeated sign-in lockouts"
        DELIVERY_FAILED = "delivery_failed", "Result not delivered to the facility"
        STUDY_CANCELLED = "study_cancelled", "Claimed study cancelled by its order"
        LATE_IMAGES = "late_images", "New images for a claimed study"

    kind = models.CharField(max_length=30, choices=Kind.choices)
    reading_group = models.ForeignKey(
        "network.ReadingGroup", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # Also told when set (e.g. the reader whose idle claim was released).
    recipient = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Also told when set: the facility's staff (its contacts), e.g. of a result that
    # did not reach them.
    facility = models.ForeignKey(
        "network.Facility", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    study = models.ForeignKey(
        "studies.Study", null=True, blank=True, on_delete=models.PROTECT, related_name="alerts"
    )
    message = models.CharField(max_length=1000)
    # Raising the same alert twice (a retried task, two sweepers) is a no-op.
    dedupe_key = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.message}"
