"""Draft rule sets and their replays over past studies (the rule simulator).

A draft is a copy of a reading group's routing rules that an admin edits without
touching the live ones; a run replays a past window of the group's real studies
against the draft and, beside it, against the live rules (``simulation.engine``),
and keeps the comparison.  Publishing a draft replaces the live rules
(``simulation.services.draft_publish``)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class RoutingDraft(models.Model):
    """A named draft of a group's rule set: ``rules`` is a list of rules in the
    routing-rules API's representation (``routing.api.RoutingRuleSerializer``,
    without ``reading_group`` and the timestamps), each validated as a live rule
    is; a rule's ``id`` is the live rule it was copied from (None: a new rule)."""

    reading_group = models.ForeignKey(
        "network.ReadingGroup", on_delete=models.CASCADE, related_name="routing_drafts"
    )
    name = models.CharField(max_length=200)
    rules = models.JSONField(default=list)
    # The group's rules_version when the draft was copied: publishing over live
    # rules changed since then needs the admin's say-so.
    based_on_version = models.BigIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    published_at = models.DateTimeField(null=True, blank=True)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["reading_group", "-updated_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["reading_group", "name"], name="draft_name_unique")
        ]

    def __str__(self) -> str:
        return self.name


class SimulationRun(models.Model):
    """One replay of a past window against a draft and the live rules."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    draft = models.ForeignKey(RoutingDraft, on_delete=models.CASCADE, related_name="runs")
    reading_group = models.ForeignKey(
        "network.ReadingGroup", on_delete=models.CASCADE, related_name="+"
    )
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    studies_total = models.PositiveIntegerField(default=0)
    studies_done = models.PositiveIntegerField(default=0)
    # The comparison (schema in docs/simulation.md), once done.
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Written with each batch of progress: a run whose worker died stops beating.
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["status", "heartbeat_at"],
                name="simrun_unfinished_idx",
                condition=Q(status__in=["queued", "running"]),
            )
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(window_end__gt=models.F("window_start")), name="simrun_window_valid"
            )
        ]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.draft}"
