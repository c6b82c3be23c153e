"""Offers: a study is on a radiologist's worklist while an offer is open."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from django.db import connection, models
from django.db.models import F, Q, Value
from django.db.models.functions import Greatest

from teleradiology.sql import array_param
from worklist import aging

if TYPE_CHECKING:
    from studies.models import Study


class OfferQuerySet(models.QuerySet["Offer"]):
    def open_many(self, offers: list[Offer]) -> None:
        """Insert open offers; one a reader already has open for the study stays.

        On PostgreSQL one INSERT of one array per column: routing writes a few
        offers per study, for a batch of studies at once, and preparing every value
        of every row through the ORM cost more than the insert itself."""
        if not offers:
            return
        if connection.vendor != "postgresql":
            self.bulk_create(offers, ignore_conflicts=True)
            return
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                INSERT INTO {Offer._meta.db_table} (study_id, radiologist_id, tier, offered_at,
                    priority, sla_due_at, received_at, facility_id, rule_id, rank_at,
                    withdrawn_reason)
                SELECT *, '' FROM unnest(%s::bigint[], %s::bigint[], %s::int[],
                    %s::timestamptz[], %s::int[], %s::timestamptz[], %s::timestamptz[],
                    %s::bigint[], %s::bigint[], %s::timestamptz[])
                ON CONFLICT DO NOTHING
                """,  # noqa: S608 - the table name only
                [
                    array_param([o.study_id for o in offers], "bigint"),
                    array_param([o.radiologist_id for o in offers], "bigint"),
                    array_param([o.tier for o in offers], "bigint"),
                    [o.offered_at for o in offers],
                    array_param([o.priority for o in offers], "bigint"),
                    [o.sla_due_at for o in offers],
                    [o.received_at for o in offers],
                    array_param([o.facility_id for o in offers], "bigint"),
                    array_param([o.rule_id for o in offers], "bigint"),
                    [o.rank_at for o in offers],
                ],
            )

    def withdraw(self, *, at: dt.datetime, reason: str) -> int:
        """Withdraw these offers at ``at``, or at their offer time if that is later: a
        sweep's clock, read before it locked the study, may be older than an offer
        another process made meanwhile (withdrawn_at >= offered_at is a constraint)."""
        return self.update(
            withdrawn_at=Greatest(Value(at, output_field=models.DateTimeField()), F("offered_at")),
            withdrawn_reason=reason[:200],
        )


class Offer(models.Model):
    """A study offered to one radiologist at one escalation tier."""

    study = models.ForeignKey("studies.Study", on_delete=models.PROTECT, related_name="offers")
    radiologist = models.ForeignKey(
        "network.Radiologist", on_delete=models.PROTECT, related_name="offers"
    )
    tier = models.PositiveSmallIntegerField(default=0)
    offered_at = models.DateTimeField()
    # The worklist's sort keys, copied from the study when the offer is made (a
    # priority change re-routes, which makes new offers), so that a reader's
    # worklist is one walk of one index, stopping after a page.
    priority = models.PositiveSmallIntegerField()
    sla_due_at = models.DateTimeField()
    received_at = models.DateTimeField()
    # The worklist's first sort key, fixed when the offer is made: the arrival time
    # plus the aging offset of the priority (worklist.aging.rank_at).  Ordering by it
    # is ordering by aged priority at any moment, so no class starves.
    rank_at = models.DateTimeField()
    # Copies the worklist filters read without a join: the study's facility and
    # the routing rule that made the offer (its subspecialties).
    facility = models.ForeignKey(
        "network.Facility", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    rule = models.ForeignKey(
        "routing.RoutingRule",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
    )
    # Open (not withdrawn) offers of a claimed study are held: off the worklists
    # while the claim stands, back on them when it is released.  So the rows on a
    # worklist (open and not held) are exactly the offered studies'.
    held_at = models.DateTimeField(null=True, blank=True)
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    withdrawn_reason = models.CharField(max_length=200, blank=True)

    objects = OfferQuerySet.as_manager()

    class Meta:
        ordering = ["offered_at", "id"]
        indexes = [
            models.Index(
                fields=["radiologist", "rank_at", "priority", "study"],
                name="offer_worklist_idx",
                condition=Q(withdrawn_at__isnull=True, held_at__isnull=True),
            ),
            models.Index(
                fields=["radiologist", "facility", "rank_at", "priority", "study"],
                name="offer_worklist_facility_idx",
                condition=Q(withdrawn_at__isnull=True, held_at__isnull=True),
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

    @classmethod
    def make(
        cls,
        *,
        study: Study,
        radiologist_id: int,
        tier: int,
        at: dt.datetime,
        rule_id: int | None = None,
    ) -> Offer:
        """An unsaved open offer of ``study``, with its worklist sort and filter keys."""
        return cls(
            study=study,
            facility_id=study.facility_id,
            rule_id=rule_id,
            radiologist_id=radiologist_id,
            tier=tier,
            offered_at=at,
            priority=study.priority,
            sla_due_at=study.sla_due_at,
            received_at=study.received_at,
            rank_at=aging.rank_at(
                priority=study.priority,
                received_at=study.received_at,
                step=dt.timedelta(minutes=study.facility.reading_group.worklist_aging_minutes),
            ),
        )
