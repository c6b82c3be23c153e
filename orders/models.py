"""Every HL7 message received, kept raw with the answer it was given."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from network.models import Facility


class Hl7Message(models.Model):
    """One frame received over MLLP (or a replay of one): its text as received, the
    facility it was admitted for, what applying it did, and the ACK sent back.

    A control id (MSH-10) is applied once per facility: at most one applied (AA)
    original per (facility, control id), held by a unique constraint, so that two
    copies arriving at once cannot both be applied; a repeat is stored with
    ``duplicate_of`` and answered with the original's code."""

    class Outcome(models.TextChoices):
        AA = "AA", "Accepted"
        AE = "AE", "Error"
        AR = "AR", "Rejected"

    facility = models.ForeignKey(
        Facility,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="hl7_messages",
        help_text="The facility MSH-4 names; empty when it names none.",
    )
    received_at = models.DateTimeField()
    peer_address = models.GenericIPAddressField(null=True, blank=True)
    control_id = models.CharField(max_length=199, blank=True)  # MSH-10
    message_type = models.CharField(max_length=20, blank=True)  # "ORM^O01"
    version = models.CharField(max_length=16, blank=True)  # MSH-12
    sending_facility = models.CharField(max_length=227, blank=True)  # MSH-4 as sent
    # PID-3's first identifier, for the audit trail of reads (empty when none).
    patient_id = models.CharField(max_length=64, blank=True)
    raw = models.TextField(help_text="The message as received (decoded), whole.")
    raw_truncated = models.BooleanField(
        default=False, help_text="Only the first HL7_MAX_MESSAGE_BYTES were kept (too large)."
    )
    size_bytes = models.PositiveIntegerField(default=0)
    encoding = models.CharField(max_length=16, blank=True)  # the codec the bytes were read with
    charset = models.CharField(max_length=32, blank=True)  # MSH-18 as sent
    outcome = models.CharField(max_length=2, choices=Outcome.choices)
    error_text = models.CharField(max_length=500, blank=True)
    error_field = models.CharField(max_length=16, blank=True)  # e.g. "ORC-1"
    ack = models.TextField(blank=True, help_text="The acknowledgement sent back.")
    summary = models.CharField(max_length=500, blank=True)
    duplicate_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="duplicates",
        help_text="The applied message with the same control id this one repeats.",
    )
    replay_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="replays",
        help_text="The stored message an admin replayed as this one.",
    )
    replayed_at = models.DateTimeField(null=True, blank=True)
    replay_count = models.PositiveIntegerField(default=0)
    replayed_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name = "HL7 message"
        indexes = [
            models.Index(fields=["facility", "-received_at"], name="hl7msg_facility_idx"),
            models.Index(fields=["outcome", "-received_at"], name="hl7msg_outcome_idx"),
            models.Index(fields=["-received_at"], name="hl7msg_received_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["facility", "control_id"],
                condition=Q(outcome="AA", duplicate_of__isnull=True, facility__isnull=False)
                & ~Q(control_id=""),
                name="hl7msg_applied_once",
                violation_error_message="This control id was already applied for the facility.",
            ),
            models.CheckConstraint(
                condition=Q(outcome__in=["AA", "AE", "AR"]), name="hl7msg_outcome_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.message_type or 'HL7'} {self.control_id} ({self.outcome})"
