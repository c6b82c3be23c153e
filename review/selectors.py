"""Reads for review cases: who may see which case, and who may take one.

Eligibility is routing's, not a copy of it: the candidates' facts come from
``routing.selectors.candidate_facts`` and the verdicts from the pure
``routing.eligibility.REVIEW`` policy, with the report's own readers excluded
(``StudyFacts.excluded``) and, when the requester named one, the required
subspecialty in place of the routing rule's.

Visibility (the API answers 404 outside it):
- group admins: every case of their groups' facilities (both kinds);
- facility staff: second opinions on their facilities' reports (never peer reviews);
- radiologists: cases offered to them (while open) and cases they claimed;
- superusers: all.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from django.db.models import Count, Q, QuerySet
from rest_framework.exceptions import NotFound

from network.models import Radiologist, Subspecialty
from network.selectors import (
    AnyUser,
    facilities_staffed,
    radiologist_for_user,
    reading_groups_administered,
)
from reporting.models import Report
from review.models import OPEN_STATUSES, ReviewCase, ReviewKind, ReviewOffer, ReviewStatus
from routing.eligibility import REVIEW, StudyFacts, Verdict
from routing.models import LAST_TIER
from routing.selectors import candidate_facts, study_facts, study_rule
from studies.models import Study


def report_readers(*, report: Report) -> frozenset[int]:
    """Everyone who wrote or signed any part of the report (excluded from reviewing it)."""
    ids = {
        report.author_id,
        report.signed_by_id,
        report.preliminary_signed_by_id,
        report.study.assigned_radiologist_id,
        *report.addenda.values_list("signed_by_id", flat=True),
    }
    return frozenset(i for i in ids if i is not None)


def _review_study_facts(*, review: ReviewCase, study: Study, now: dt.datetime) -> StudyFacts:
    """The study's facts as routing builds them for a new case, with the review's changes:
    the report's readers excluded, the requested subspecialty if any, final-scope
    licenses only (it reviews a final report) and no STAT cap bypass."""
    rule = study_rule(study=study)
    if rule is not None:
        facts = study_facts(study=study, rule=rule, now=now)
    else:  # no rule at all: any subspecialty will do
        facts = StudyFacts(
            study_id=study.pk,
            facility_id=study.facility_id,
            jurisdiction=study.patient_jurisdiction.code,
            priority=study.priority,
            read_at=now,
            subspecialties=frozenset(Subspecialty.objects.values_list("code", flat=True)),
        )
    if review.required_subspecialty is not None:
        facts = dataclasses.replace(
            facts,
            subspecialties=frozenset({review.required_subspecialty.code}),
            allow_general=False,
        )
    return dataclasses.replace(
        facts,
        allow_preliminary=False,
        bypass_cap=False,
        excluded=report_readers(report=review.report),
    )


def review_verdicts(
    *, review: ReviewCase, now: dt.datetime, radiologist_ids: list[int] | None = None
) -> list[Verdict]:
    """Every on-shift candidate's verdict for the review (or the named readers'), the
    eligible ranked first: routing's facts and decision, four queries plus one."""
    study = review.report.study
    facts = _review_study_facts(review=review, study=study, now=now)
    candidates = candidate_facts(
        facility=study.facility,
        jurisdiction_code=facts.jurisdiction,
        max_tier=LAST_TIER,
        at=now,
        radiologist_ids=radiologist_ids,
    )
    # The candidates' open claims count their claimed review cases too (routing's
    # OPEN_CLAIMS): one workload cap for studies and reviews.
    return REVIEW.decide(facts, candidates)


def review_verdict_for(
    *, review: ReviewCase, radiologist: Radiologist, now: dt.datetime
) -> Verdict | None:
    """One reader's verdict for the review now (None: not a reader of the group)."""
    verdicts = review_verdicts(review=review, now=now, radiologist_ids=[radiologist.pk])
    return verdicts[0] if verdicts else None


def _open_offers_to(reader: Radiologist) -> QuerySet[ReviewOffer]:
    return ReviewOffer.objects.filter(radiologist=reader, withdrawn_at__isnull=True)


def review_visibility_filter(*, user: AnyUser, kind: str) -> Q | None:
    """A filter for the review cases of ``kind`` that ``user`` may see; None: all."""
    if not user.is_authenticated or not user.is_active:
        return Q(pk__in=[])
    if getattr(user, "is_superuser", False):
        return None
    reach = Q(facility__reading_group__in=reading_groups_administered(user=user))
    if kind == ReviewKind.SECOND_OPINION:
        reach |= Q(facility__in=facilities_staffed(user=user).values("pk"))
    reader = radiologist_for_user(user=user)
    if reader is not None:
        reach |= Q(assigned_radiologist=reader) | Q(
            status=ReviewStatus.OFFERED, pk__in=_open_offers_to(reader).values("review_id")
        )
    return reach


def review_list_visible(*, user: AnyUser, kind: str) -> QuerySet[ReviewCase]:
    """Review cases of ``kind`` that ``user`` may see, with what the rows show joined in."""
    qs = ReviewCase.objects.filter(kind=kind).select_related(
        "report__study__facility",
        "facility",
        "required_subspecialty",
        "assigned_radiologist",
        "reviewed_radiologist",
    )
    reach = review_visibility_filter(user=user, kind=kind)
    return qs if reach is None else qs.filter(reach)


def review_get_visible(*, user: AnyUser, kind: str, review_id: int) -> ReviewCase:
    """One review case if ``user`` may see it; otherwise 404 (existence does not leak)."""
    review = review_list_visible(user=user, kind=kind).filter(pk=review_id).first()
    if review is None:
        raise NotFound("No such review case.")
    return review


def reviews_offered_to(*, radiologist: Radiologist, kind: str) -> QuerySet[ReviewCase]:
    """Open cases of ``kind`` on the reader's review list, oldest first."""
    return (
        review_list_visible(user=radiologist.user, kind=kind)
        .filter(status=ReviewStatus.OFFERED, pk__in=_open_offers_to(radiologist).values("review"))
        .order_by("created_at", "id")
    )


def reviews_claimed_by(*, radiologist: Radiologist, kind: str) -> QuerySet[ReviewCase]:
    """Cases of ``kind`` the reader claimed (open first, then answered, newest first)."""
    return (
        review_list_visible(user=radiologist.user, kind=kind)
        .filter(assigned_radiologist=radiologist)
        .order_by("answered_at", "-claimed_at", "-id")
    )


def may_request_second_opinion(*, user: AnyUser, report: Report) -> bool:
    """Facility staff of the report's facility and admins of its reading group may ask."""
    if not user.is_authenticated or not user.is_active:
        return False
    if getattr(user, "is_superuser", False):
        return True
    facility = report.study.facility
    return (
        reading_groups_administered(user=user).filter(pk=facility.reading_group_id).exists()
        or facilities_staffed(user=user).filter(pk=facility.pk).exists()
    )


def administers_group_of(*, user: AnyUser, reading_group_id: int) -> bool:
    """True when ``user`` administers the reading group (superusers administer all)."""
    return reading_groups_administered(user=user).filter(pk=reading_group_id).exists()


def may_cancel_review(*, user: AnyUser, review: ReviewCase) -> bool:
    """The requester side cancels: for a second opinion, whoever may ask one on the
    report (the facility's staff, the group's admins); for a peer review, the
    group's admins only."""
    if review.kind == ReviewKind.SECOND_OPINION:
        return may_request_second_opinion(user=user, report=review.report)
    return administers_group_of(user=user, reading_group_id=review.facility.reading_group_id)


def reviews_due_for_routing(*, now: dt.datetime) -> QuerySet[ReviewCase, int]:
    """Ids of unroutable or offered cases whose routing is due again, oldest first
    (partial index on the timer)."""
    return (
        ReviewCase.objects.filter(
            next_route_at__lte=now, status__in=[ReviewStatus.UNROUTABLE, ReviewStatus.OFFERED]
        )
        .order_by("next_route_at")
        .values_list("pk", flat=True)
    )


def peer_review_summary(
    *,
    reading_group_ids: list[int],
    answered_from: dt.datetime | None = None,
    answered_to: dt.datetime | None = None,
) -> list[dict[str, object]]:
    """Per reviewed radiologist of the groups: answered peer reviews, the count of each
    RADPEER score, the clinically significant ones, and the reviews still open.  One
    grouped query; for group admins only (the API checks)."""
    answered = Q(status=ReviewStatus.ANSWERED)
    if answered_from is not None:
        answered &= Q(answered_at__gte=answered_from)
    if answered_to is not None:
        answered &= Q(answered_at__lt=answered_to)
    rows = (
        ReviewCase.objects.filter(
            kind=ReviewKind.PEER_REVIEW,
            reviewed_radiologist__reading_group_id__in=reading_group_ids,
        )
        .values(
            "reviewed_radiologist_id",
            "reviewed_radiologist__display_name",
            "reviewed_radiologist__reading_group_id",
        )
        .annotate(
            reviewed=Count("pk", filter=answered),
            score_1=Count("pk", filter=answered & Q(score=1)),
            score_2=Count("pk", filter=answered & Q(score=2)),
            score_3=Count("pk", filter=answered & Q(score=3)),
            score_4=Count("pk", filter=answered & Q(score=4)),
            clinically_significant=Count("pk", filter=answered & Q(clinically_significant=True)),
            open=Count("pk", filter=Q(status__in=OPEN_STATUSES)),
        )
        .order_by("reviewed_radiologist__display_name", "reviewed_radiologist_id")
    )
    return [
        {
            "radiologist": row["reviewed_radiologist_id"],
            "radiologist_name": row["reviewed_radiologist__display_name"],
            "reading_group": row["reviewed_radiologist__reading_group_id"],
            "reviewed": row["reviewed"],
            "scores": {
                "1": row["score_1"],
                "2": row["score_2"],
                "3": row["score_3"],
                "4": row["score_4"],
            },
            "clinically_significant": row["clinically_significant"],
            "open": row["open"],
        }
        for row in rows
    ]
