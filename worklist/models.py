"""Offers: a study is on a radiologist's worklist while an offer is open."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class Offer(models.Model):
    """A study offered to one radiologist at one escalation tier."""

    study = models.ForeignKey("studies.Study", on_delete=models.PROTECT, related_name="offers")
    radiologist = models.ForeignKey(
        "network.Radiologist", on_delete=models.PROTECT, related_name="offers"
    )
    tier = models.PositiveSmallIntegerField(default=0)
    offered_at = models.DateTimeField()
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    withdrawn_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["offered_at", "id"]
        indexes = [
            models.Index(
                fields=["radiologist", "study"],
                name="offer_open_by_reader_idx",
                condition=Q(withdrawn_at__isnull=True),
            ),
        ]
        constraints = [
            # At most one open offer of a study to a reader: re-routing twice
            # cannot put a study on a worklist twice.
            models.UniqueConstraint(
                fields=["study", "radiologist"],
                condition=Q(withdrawn_at__isnull=True),
                name="offer_one_open_per_reader",
            ),
            models.CheckConstraint(
                condition=Q(withdrawn_at__isnull=True)
                | Q(withdrawn_at__gte=models.F("offered_at")),
                name="offer_withdrawn_after_offered",
            ),
        ]

    def __str__(self) -> str:
        return f"study {self.study_id} -> reader {self.radiologist_id} (tier {self.tier})"
