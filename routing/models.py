"""Routing configuration (rules, pools) and its record (decisions, per-study state)."""

from __future__ import annotations

import datetime as dt
import json

from django.db import connection, models
from django.db.models import Q

from network.models import Priority

TIERS = {0: "Hyperlocal", 1: "Regional", 2: "Global"}
LAST_TIER = 2


def default_escalate_fractions() -> list[float]:
    """Widen to the regional tier at a quarter of the target, to the global at half."""
    return [0.25, 0.5]


class ReaderPool(models.Model):
    """A named set of readers an admin can make a facility's local or regional tier."""

    reading_group = models.ForeignKey(
        "network.ReadingGroup", on_delete=models.CASCADE, related_name="pools"
    )
    name = models.CharField(max_length=100)
    radiologists = models.ManyToManyField("network.Radiologist", related_name="pools")

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["reading_group", "name"], name="pool_name_unique")
        ]

    def __str__(self) -> str:
        return self.name


class FacilityTierPool(models.Model):
    """Overrides a facility's geographic tier 0 (local) or tier 1 (regional) with a pool."""

    facility = models.ForeignKey(
        "network.Facility", on_delete=models.CASCADE, related_name="tier_pools"
    )
    tier = models.PositiveSmallIntegerField(choices=[(0, TIERS[0]), (1, TIERS[1])])
    pool = models.ForeignKey(ReaderPool, on_delete=models.PROTECT, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["facility", "tier"], name="facility_tier_unique"),
            models.CheckConstraint(condition=Q(tier__in=[0, 1]), name="facility_tier_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.facility} tier {self.tier}: {self.pool}"


class RoutingRule(models.Model):
    """An ordered rule: the first active rule that matches a study decides its routing."""

    class Delivery(models.TextChoices):
        OFFER = "offer", "Offer to a pool (claimed from the worklist)"
        AUTO_ASSIGN = "auto_assign", "Auto-assign to the best reader (must accept)"

    reading_group = models.ForeignKey(
        "network.ReadingGroup", on_delete=models.CASCADE, related_name="routing_rules"
    )
    name = models.CharField(max_length=200)
    position = models.PositiveIntegerField(default=100, help_text="Lower is tried first.")
    is_active = models.BooleanField(default=True)
    is_default = models.BooleanField(
        default=False, help_text="Catches every study no other rule matches (one per group)."
    )
    # --- what it matches (empty = any) ---
    facilities = models.ManyToManyField("network.Facility", blank=True, related_name="+")
    modalities = models.JSONField(default=list, blank=True)
    body_parts = models.JSONField(default=list, blank=True)
    description_pattern = models.CharField(max_length=300, blank=True)
    procedure_code_pattern = models.CharField(max_length=300, blank=True)
    priorities = models.JSONField(default=list, blank=True)
    flags = models.JSONField(default=list, blank=True, help_text="All must be set on the study.")
    # --- what it says ---
    subspecialties = models.ManyToManyField("network.Subspecialty", related_name="+")
    allow_general = models.BooleanField(
        default=False, help_text="General radiologists may read when no subspecialist does."
    )
    allow_preliminary = models.BooleanField(
        default=False, help_text="Preliminary-only licenses may take a preliminary read."
    )
    bypass_cap_for_stat = models.BooleanField(default=False)
    relative_value = models.DecimalField(max_digits=6, decimal_places=2, default=1)
    delivery = models.CharField(max_length=12, choices=Delivery.choices, default=Delivery.OFFER)
    accept_timeout_seconds = models.PositiveIntegerField(default=120)
    next_case_only = models.BooleanField(
        default=False, help_text="Readers get these through 'next case' only (no cherry-picking)."
    )
    # Escalation follows the SLA (routing.eligibility.escalation_wait): the study
    # widens to tier k+1 once ``escalate_fractions[k]`` of its turnaround target has
    # passed since arrival, but waits at least ``min_tier_wait_seconds`` at a tier and
    # at most the priority's ``wait_*_seconds``.
    escalate_fractions = models.JSONField(
        default=default_escalate_fractions,
        help_text="Fractions of the turnaround target at which to widen to the regional "
        "and the global tier (two increasing numbers between 0 and 1).",
    )
    widest_tier = models.PositiveSmallIntegerField(
        choices=list(TIERS.items()),
        default=LAST_TIER,
        help_text="The widest tier the study may be offered at: 0 keeps it with the "
        "hyperlocal readers, 1 never takes it beyond the region, 2 may go global.",
    )
    min_tier_wait_seconds = models.PositiveIntegerField(
        default=60, help_text="The shortest wait at a tier, however little time is left."
    )
    wait_stat_seconds = models.PositiveIntegerField(
        default=180, help_text="The longest a STAT study waits at one tier."
    )
    wait_urgent_seconds = models.PositiveIntegerField(
        default=3600, help_text="The longest an urgent study waits at one tier."
    )
    wait_routine_seconds = models.PositiveIntegerField(
        default=21600, help_text="The longest a routine study waits at one tier."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["reading_group", "is_default", "position", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["reading_group"],
                condition=Q(is_default=True),
                name="rule_one_default_per_group",
            ),
            models.CheckConstraint(
                condition=Q(
                    wait_stat_seconds__gt=0,
                    wait_urgent_seconds__gt=0,
                    wait_routine_seconds__gt=0,
                    accept_timeout_seconds__gt=0,
                    min_tier_wait_seconds__gt=0,
                ),
                name="rule_timers_positive",
            ),
            models.CheckConstraint(
                condition=Q(widest_tier__lte=LAST_TIER), name="rule_widest_tier_valid"
            ),
            models.CheckConstraint(condition=Q(relative_value__gt=0), name="rule_rvu_positive"),
        ]

    def __str__(self) -> str:
        return self.name

    # Codes of the required subspecialties, once read (see required_subspecialties).
    _required_codes: frozenset[str] | None = None

    def required_subspecialties(self) -> frozenset[str]:
        """Codes of the subspecialties the rule requires (read once per instance)."""
        if self._required_codes is None:
            self._required_codes = frozenset(self.subspecialties.values_list("code", flat=True))
        return self._required_codes

    def required_subspecialties_known(self, codes: frozenset[str]) -> None:
        """Record codes read in bulk by a selector, sparing a query per rule."""
        self._required_codes = codes

    def widening_fractions(self) -> list[float]:
        """The fractions of the target at which the study widens, up to the widest
        tier the rule allows (none for a rule that keeps studies hyperlocal)."""
        return list(self.escalate_fractions)[: self.widest_tier]

    def tier_wait(self, priority: int) -> dt.timedelta:
        seconds = {
            Priority.STAT: self.wait_stat_seconds,
            Priority.URGENT: self.wait_urgent_seconds,
            Priority.ROUTINE: self.wait_routine_seconds,
        }[Priority(priority)]
        return dt.timedelta(seconds=seconds)


class StudyRouting(models.Model):
    """Where a study stands in routing; the escalation timer lives here, in the database."""

    study = models.OneToOneField(
        "studies.Study", on_delete=models.PROTECT, primary_key=True, related_name="routing"
    )
    rule = models.ForeignKey(
        RoutingRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    tier = models.PositiveSmallIntegerField(default=0)
    relative_value = models.DecimalField(max_digits=6, decimal_places=2, default=1)
    next_escalation_at = models.DateTimeField(null=True, blank=True)
    unroutable_at = models.DateTimeField(null=True, blank=True)
    unroutable_reason = models.CharField(max_length=500, blank=True)
    decided_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(
                fields=["next_escalation_at"],
                name="routing_due_idx",
                condition=Q(next_escalation_at__isnull=False),
            ),
            # The few unroutable studies (operations page), not the whole history.
            models.Index(
                fields=["unroutable_at"],
                name="routing_unroutable_idx",
                condition=Q(unroutable_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"study {self.study_id} tier {self.tier}"


class RoutingDecisionQuerySet(models.QuerySet["RoutingDecision"]):
    def record_many(self, decisions: list[RoutingDecision]) -> None:
        """Insert decisions (setting their ids) in one statement.

        On PostgreSQL the verdict documents of the whole batch travel as one JSON
        parameter, taken apart by ``jsonb_array_elements``: the ORM's multi-row
        insert sends them as one array literal, escaping every quote of every
        document, which cost more than the insert itself."""
        if not decisions:
            return
        if len({d.study_id for d in decisions}) != len(decisions):
            raise ValueError("record_many takes one decision per study")
        if connection.vendor != "postgresql":
            documents = [d.verdicts for d in decisions]
            for d in decisions:  # one parameter per document
                d.verdicts = models.Value(d.verdicts, output_field=models.JSONField())
            self.bulk_create(decisions)
            for d, document in zip(decisions, documents, strict=True):
                d.verdicts = document
            return
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                INSERT INTO {RoutingDecision._meta.db_table} (study_id, rule_id, rule_name,
                    tier, outcome, reason, offered_to, verdicts, created_at)
                SELECT d.study_id, d.rule_id, d.rule_name, d.tier, d.outcome, d.reason,
                    v.doc -> 0, v.doc -> 1, d.created_at
                FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::int[], %s::text[],
                    %s::text[], %s::timestamptz[])
                    WITH ORDINALITY AS d(study_id, rule_id, rule_name, tier, outcome, reason,
                        created_at, n)
                JOIN jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS v(doc, n) USING (n)
                ORDER BY n
                RETURNING id, study_id
                """,  # noqa: S608 - the table name only
                [
                    [d.study_id for d in decisions],
                    [d.rule_id for d in decisions],
                    [d.rule_name for d in decisions],
                    [d.tier for d in decisions],
                    [str(d.outcome) for d in decisions],
                    [d.reason for d in decisions],
                    [d.created_at for d in decisions],
                    json.dumps([[d.offered_to, d.verdicts] for d in decisions]),
                ],
            )
            ids = {study_id: pk for pk, study_id in cursor.fetchall()}
        for d in decisions:  # one decision per study in a batch
            d.pk = ids[d.study_id]
            d._state.adding = False


class RoutingDecision(models.Model):
    """One routing step (first offer, each escalation, unroutable), with every verdict."""

    class Outcome(models.TextChoices):
        OFFERED = "offered", "Offered"
        ESCALATED = "escalated", "Escalated"
        UNROUTABLE = "unroutable", "Unroutable"

    study = models.ForeignKey(
        "studies.Study", on_delete=models.PROTECT, related_name="routing_decisions"
    )
    rule = models.ForeignKey(
        RoutingRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    rule_name = models.CharField(max_length=200, blank=True)
    tier = models.PositiveSmallIntegerField()
    outcome = models.CharField(max_length=12, choices=Outcome.choices)
    reason = models.CharField(max_length=500, blank=True)
    offered_to = models.JSONField(default=list)
    verdicts = models.JSONField(default=list)
    created_at = models.DateTimeField(db_index=True)

    objects = RoutingDecisionQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["study", "created_at"], name="decision_study_idx")]

    def __str__(self) -> str:
        return f"study {self.study_id}: {self.outcome} at tier {self.tier}"
