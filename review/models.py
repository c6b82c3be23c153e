"""Review cases: second opinions and peer reviews of final reports, with their own queue.

Why a queue of their own, not the study's offers and claim: the study is final, and
its state machine (studies/states.py) ends there; the worklist's ``Offer`` rows mean
"this study is waiting for a first read" (every open, unheld offer is an offered
study's), and a claim moves the study through that state machine.  Re-opening a
final study for a second reader would break both.  So a review case is its own row
with its own small lifecycle (offered -> claimed -> answered, or unroutable until a
reader can be found; cancelled by the requester side while not answered), offered
to readers through ``ReviewOffer`` rows and claimed by a conditional UPDATE.  Who
may read it is decided by routing's own pure eligibility (routing/eligibility.py)
over routing's candidate facts (routing/selectors.py), with the report's original
readers excluded.

One table holds both kinds: they share the queue, the routing and the claim; they
differ only in the answer (an opinion for a second opinion, a RADPEER score for a
peer review), which the constraints below tie to the kind.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q


class ReviewKind(models.TextChoices):
    SECOND_OPINION = "second_opinion", "Second opinion"
    PEER_REVIEW = "peer_review", "Peer review"


class ReviewStatus(models.TextChoices):
    OFFERED = "offered", "Offered to eligible readers"
    UNROUTABLE = "unroutable", "No eligible reader (retried)"
    CLAIMED = "claimed", "Claimed by a reader"
    ANSWERED = "answered", "Answered"
    CANCELLED = "cancelled", "Cancelled by the requester side"


OPEN_STATUSES = (ReviewStatus.OFFERED, ReviewStatus.UNROUTABLE, ReviewStatus.CLAIMED)


class Opinion(models.TextChoices):
    AGREE = "agree", "Agree"
    MINOR_DISCREPANCY = "minor_discrepancy", "Minor discrepancy"
    MAJOR_DISCREPANCY = "major_discrepancy", "Major discrepancy"


# RADPEER (American College of Radiology) scores of the original interpretation.
RADPEER_SCORES = {
    1: "Concur with interpretation",
    2: "Discrepancy in interpretation; not ordinarily expected to be made",
    3: "Discrepancy in interpretation; should be made most of the time",
    4: "Discrepancy in interpretation; should be made almost every time",
}


class ReviewCase(models.Model):
    """A second reader's look at one final report: who asked, who may answer, the answer."""

    kind = models.CharField(max_length=16, choices=ReviewKind.choices)
    report = models.ForeignKey(
        "reporting.Report", on_delete=models.PROTECT, related_name="review_cases"
    )
    # Copied from the report at creation (it is final, so they cannot change): the
    # reader whose work is reviewed, and the facility requesters are scoped by.
    reviewed_radiologist = models.ForeignKey(
        "network.Radiologist", on_delete=models.PROTECT, related_name="reviews_of_my_reports"
    )
    facility = models.ForeignKey("network.Facility", on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=12, choices=ReviewStatus.choices)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Empty for a peer review drawn by the random sample.",
    )
    required_subspecialty = models.ForeignKey(
        "network.Subspecialty", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    question = models.TextField(blank=True)
    created_at = models.DateTimeField()
    # Routing: why nobody could take it, and when to try again (swept by beat).
    unroutable_reason = models.CharField(max_length=500, blank=True)
    next_route_at = models.DateTimeField(null=True, blank=True)
    routed_at = models.DateTimeField(null=True, blank=True)
    assigned_radiologist = models.ForeignKey(
        "network.Radiologist",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="review_cases_claimed",
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    # The answer: an opinion (second opinion) or a RADPEER score (peer review).
    opinion = models.CharField(max_length=20, choices=Opinion.choices, blank=True)
    score = models.PositiveSmallIntegerField(
        null=True, blank=True, choices=[(k, f"{k}: {v}") for k, v in RADPEER_SCORES.items()]
    )
    clinically_significant = models.BooleanField(null=True, blank=True)
    comments = models.TextField(blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    cancel_reason = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["next_route_at"],
                name="review_route_due_idx",
                condition=Q(next_route_at__isnull=False),
            ),
            models.Index(fields=["assigned_radiologist", "status"], name="review_assigned_idx"),
            models.Index(
                fields=["reviewed_radiologist", "kind", "status"], name="review_reviewed_idx"
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=["second_opinion", "peer_review"]), name="review_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(
                    status__in=["offered", "unroutable", "claimed", "answered", "cancelled"]
                ),
                name="review_status_valid",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=["claimed", "answered"])
                | Q(assigned_radiologist__isnull=False, claimed_at__isnull=False),
                name="review_claimed_has_reader",
            ),
            models.CheckConstraint(
                condition=~Q(status="answered") | Q(answered_at__isnull=False),
                name="review_answered_has_time",
            ),
            models.CheckConstraint(
                condition=~Q(status="cancelled") | Q(cancelled_at__isnull=False),
                name="review_cancelled_has_time",
            ),
            # The answer fits the kind: an opinion, or a score with its flag.
            models.CheckConstraint(
                condition=~Q(kind="second_opinion") | Q(score__isnull=True),
                name="review_opinion_has_no_score",
            ),
            models.CheckConstraint(
                condition=~Q(kind="peer_review") | Q(opinion=""),
                name="review_score_has_no_opinion",
            ),
            models.CheckConstraint(
                condition=~Q(status="answered", kind="second_opinion")
                | Q(opinion__in=["agree", "minor_discrepancy", "major_discrepancy"]),
                name="review_second_opinion_answered",
            ),
            models.CheckConstraint(
                condition=~Q(status="answered", kind="peer_review")
                | Q(score__in=[1, 2, 3, 4], clinically_significant__isnull=False),
                name="review_peer_review_scored",
            ),
            # RADPEER: only a discrepancy (2-4) can be clinically significant.
            models.CheckConstraint(
                condition=~Q(score=1) | Q(clinically_significant=False),
                name="review_concur_not_significant",
            ),
            # The random sample reviews a report once, however often it is drawn.
            models.UniqueConstraint(
                fields=["report"],
                condition=Q(kind="peer_review"),
                name="review_one_peer_review_per_report",
            ),
            # One open second opinion per report at a time.
            models.UniqueConstraint(
                fields=["report"],
                condition=Q(kind="second_opinion", status__in=["offered", "unroutable", "claimed"]),
                name="review_one_open_second_opinion",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.pk} of report {self.report_id} ({self.status})"


class ReviewOffer(models.Model):
    """A review case on one reader's review list while it is open (not withdrawn)."""

    review = models.ForeignKey(ReviewCase, on_delete=models.CASCADE, related_name="offers")
    radiologist = models.ForeignKey(
        "network.Radiologist", on_delete=models.PROTECT, related_name="review_offers"
    )
    tier = models.PositiveSmallIntegerField(default=0)
    offered_at = models.DateTimeField()
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    withdrawn_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["offered_at", "id"]
        indexes = [
            models.Index(
                fields=["radiologist", "review"],
                name="review_offer_open_idx",
                condition=Q(withdrawn_at__isnull=True),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["review", "radiologist"],
                condition=Q(withdrawn_at__isnull=True),
                name="review_offer_one_open_per_reader",
            ),
        ]

    def __str__(self) -> str:
        return f"review {self.review_id} -> reader {self.radiologist_id}"


class PeerReviewPolicy(models.Model):
    """How much of a reading group's final reports is drawn for peer review."""

    reading_group = models.OneToOneField(
        "network.ReadingGroup", on_delete=models.CASCADE, related_name="peer_review_policy"
    )
    sample_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal("0"),
        help_text="Share of final reports drawn at random for peer review, 0 to 100.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "peer review policies"
        constraints = [
            models.CheckConstraint(
                condition=Q(sample_percent__gte=0, sample_percent__lte=100),
                name="peer_review_percent_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reading_group}: {self.sample_percent}%"


class PeerReviewDraw(models.Model):
    """The one random draw for a final report: drawn, against which rate, selected or not.
    Unique per report, so a retried selection never draws twice."""

    report = models.OneToOneField(
        "reporting.Report", on_delete=models.PROTECT, related_name="peer_review_draw"
    )
    draw = models.FloatField(help_text="Uniform in [0, 1); selected when below the rate.")
    sample_percent = models.DecimalField(max_digits=5, decimal_places=2)
    selected = models.BooleanField()
    drawn_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"report {self.report_id}: {'selected' if self.selected else 'not selected'}"
