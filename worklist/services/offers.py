"""Offers: which readers have a study on their worklist.  The only writer of
``worklist_offer``; routing, claims and reporting open and close offers here.

An offer is open until withdrawn; a claim holds the study's open offers (off every
worklist) and a release restores them.  A reader has at most one open offer per
study (a unique constraint), and an offer is never withdrawn before it was made
(a check constraint that ``OfferQuerySet.withdraw`` keeps).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from django.db import transaction
from django.db.models import F

from network.models import Facility, Priority
from studies.models import Study
from worklist import aging
from worklist.models import Offer


class Opening(NamedTuple):
    """Offers of one (locked) study to readers at a tier, under a routing rule."""

    study: Study
    radiologist_ids: Sequence[int]
    tier: int
    rule_id: int | None


def offers_open(*, openings: Iterable[Opening], at: dt.datetime) -> None:
    """Open offers for each opening, in one multi-row statement for all; an offer a
    reader already has open for the study stays (unique constraint)."""
    Offer.objects.open_many(
        [
            Offer.make(study=o.study, radiologist_id=r, tier=o.tier, at=at, rule_id=o.rule_id)
            for o in openings
            for r in o.radiologist_ids
        ]
    )


def offer_open(
    *, study: Study, radiologist_id: int, tier: int, rule_id: int | None, at: dt.datetime
) -> None:
    """Open one offer (an admin's reassignment), unless the reader has one open."""
    offers_open(openings=[Opening(study, [radiologist_id], tier, rule_id)], at=at)


def offers_withdraw(
    *,
    at: dt.datetime,
    reason: str,
    study_id: int | None = None,
    radiologist_id: int | None = None,
    offer_ids: Sequence[int] | None = None,
) -> int:
    """Withdraw open offers: a study's (or one reader's offer of it), or the named
    offers.  Returns how many were withdrawn."""
    if study_id is None and offer_ids is None:
        raise ValueError("name a study or offers")  # never every open offer
    offers = Offer.objects.filter(withdrawn_at__isnull=True)
    if study_id is not None:
        offers = offers.filter(study_id=study_id)
    if radiologist_id is not None:
        offers = offers.filter(radiologist_id=radiologist_id)
    if offer_ids is not None:
        offers = offers.filter(pk__in=list(offer_ids))
    return offers.withdraw(at=at, reason=reason)


def offers_hold(*, study_id: int, at: dt.datetime) -> None:
    """Take a claimed study off every worklist (its offers are restored on release)."""
    Offer.objects.filter(study_id=study_id, withdrawn_at__isnull=True, held_at__isnull=True).update(
        held_at=at
    )


def offers_restore(*, study_id: int) -> None:
    """Put a released study back on the worklists its claim took it off."""
    Offer.objects.filter(
        study_id=study_id, withdrawn_at__isnull=True, held_at__isnull=False
    ).update(held_at=None)


def offers_rerank(*, reading_group_id: int, step: dt.timedelta) -> int:
    """Re-key the open offers (held or not) of the group's studies for a new aging
    step, so every worklist keeps ordering by aged priority under the group's current
    step: one set-based UPDATE per priority.  Returns how many were re-keyed.

    Withdrawn offers keep the key they had: nothing orders them any more.  An offer
    a routing transaction makes concurrently, from the step it read before this
    commits, keeps the old key until the study is offered again (its wait is still
    bounded, by the old step)."""
    facilities = Facility.objects.filter(reading_group_id=reading_group_id).values("pk")
    rekeyed = 0
    with transaction.atomic():
        for priority in Priority.values:
            rekeyed += Offer.objects.filter(
                facility_id__in=facilities, priority=priority, withdrawn_at__isnull=True
            ).update(rank_at=F("received_at") + aging.rank_offset(priority=priority, step=step))
    return rekeyed
