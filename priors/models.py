"""A ready study's fetch of relevant priors from its facility's PACS, and the priors
it chose: one fetch per current study, one row per chosen prior."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class PriorFetch(models.Model):
    """The fetch of one current study's priors: where it stands and when it is next
    tried.  Time lives here (``next_attempt_at``), not in Celery countdowns: the beat
    sweep finds a fetch that is due (a retry after the PACS was down, or an attempt
    whose worker died) and runs it again."""

    class Status(models.TextChoices):
        QUERYING = "querying", "Querying the PACS"
        RETRIEVING = "retrieving", "Retrieving"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    study = models.OneToOneField(
        "studies.Study", on_delete=models.CASCADE, related_name="prior_fetch"
    )
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUERYING)
    attempts = models.PositiveSmallIntegerField(default=0)
    # While an attempt runs: when it is taken as lost (its worker died); between
    # attempts: when the next one is due.  Null once done or failed.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # Whether an attempt is running now (claimed until next_attempt_at).
    running = models.BooleanField(default=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            # The sweep's read: unfinished fetches that are due.
            models.Index(
                fields=["next_attempt_at"],
                name="prior_fetch_due_idx",
                condition=Q(status__in=["querying", "retrieving"]),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["querying", "retrieving", "done", "failed"]),
                name="prior_fetch_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["querying", "retrieving"])
                | Q(finished_at__isnull=False, next_attempt_at__isnull=True, running=False),
                name="prior_fetch_finished_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"priors of study {self.study_id} ({self.get_status_display()})"


class PriorStudy(models.Model):
    """One earlier study of the same patient on the facility's PACS, judged relevant
    to the current study, and whether it has been retrieved (``prior`` is the study
    stored with us once it has)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RETRIEVING = "retrieving", "Retrieving"
        RETRIEVED = "retrieved", "Retrieved"
        FAILED = "failed", "Failed"

    current = models.ForeignKey(
        "studies.Study", on_delete=models.CASCADE, related_name="relevant_priors"
    )
    study_instance_uid = models.CharField(max_length=64)
    study_date = models.DateField(null=True, blank=True)
    modality = models.CharField(max_length=64, blank=True)
    description = models.CharField(max_length=200, blank=True)
    body_part = models.CharField(max_length=64, blank=True)
    accession_number = models.CharField(max_length=16, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    # Why it failed (PACS status, network error); empty otherwise.
    reason = models.CharField(max_length=500, blank=True)
    # Why it was judged relevant: a code ("region", "modality") and words.
    relevance_code = models.CharField(max_length=16)
    relevance = models.CharField(max_length=200)
    instances_retrieved = models.PositiveIntegerField(default=0)
    instances_failed = models.PositiveIntegerField(default=0)
    prior = models.ForeignKey(
        "studies.Study", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["current", "-study_date", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["current", "study_instance_uid"], name="prior_study_once_per_current"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "retrieving", "retrieved", "failed"]),
                name="prior_study_status_valid",
            ),
            models.CheckConstraint(
                condition=~Q(study_instance_uid=""), name="prior_study_uid_not_empty"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.study_instance_uid} for study {self.current_id} ({self.status})"
