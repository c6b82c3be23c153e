"""Writes for second opinions and peer reviews: request, draw, route, claim, answer.

Each public service owns its transaction and audits in it.  Routing a review case
offers it to every reader eligible now (ranked by routing's soft order; there is no
SLA-driven tier escalation for a review of a finished report), or flags it
unroutable with a sentence and alerts the group's admins, and a beat sweep retries
it.  A claim is a conditional UPDATE (``status = offered``): of concurrent claimers
exactly one changes the row, the others are told it is taken.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from alerts.models import Alert
from alerts.services import alert_raise
from audit.models import AuditEvent
from audit.services import audit_record
from network.models import Radiologist, ReadingGroup, Subspecialty
from reporting.models import Report
from reporting.states import ReportStatus
from review import selectors
from review.models import (
    OPEN_STATUSES,
    Opinion,
    PeerReviewDraw,
    PeerReviewPolicy,
    ReviewCase,
    ReviewKind,
    ReviewOffer,
    ReviewStatus,
)
from routing.eligibility import REASON_TEXT, Reason, Verdict
from routing.services import unroutable_reason
from teleradiology.errors import Conflict, DomainError, InvalidTransition, NotPermitted

# An unroutable case is tried again this often (a reader may come on shift).
ROUTE_RETRY = dt.timedelta(seconds=60)
# An offered case's offers are checked again this often: readers who went off shift
# or lost a credential come off its lists, readers who came on shift are added.
OFFER_REFRESH = dt.timedelta(minutes=5)
QUESTION_MAX = 5_000
COMMENTS_MAX = 20_000
_system_random = secrets.SystemRandom()


def _lock_report(report_id: int) -> Report:
    return (
        Report.objects.select_for_update(of=("self",))
        .select_related(
            "study__facility__region",
            "study__facility__reading_group",
            "study__patient_jurisdiction",
        )
        .get(pk=report_id)
    )


def _lock_review(review_id: int) -> ReviewCase | None:
    return (
        ReviewCase.objects.select_for_update(of=("self",))
        .select_related(
            "report__study__facility__region",
            "report__study__facility__reading_group",
            "report__study__patient_jurisdiction",
            "required_subspecialty",
        )
        .filter(pk=review_id)
        .first()
    )


def _label(review: ReviewCase) -> str:
    study = review.report.study
    return (
        f"{review.get_kind_display()} on study {study.accession_number or study.pk} "
        f"from {study.facility.name}"
    )


def _why_unroutable(review: ReviewCase, verdicts: list[Verdict], now: dt.datetime) -> str:
    # Eligible but for being one of the report's own readers: say so plainly.
    if any(v.reasons == (Reason.EXCLUDED,) for v in verdicts):
        return "the only eligible radiologists on shift are the report's own readers"
    if (
        review.required_subspecialty is not None
        and verdicts
        and all(Reason.WRONG_SUBSPECIALTY in v.reasons for v in verdicts)
    ):
        return f"no radiologist on shift reads {review.required_subspecialty.name}"
    return unroutable_reason(review.report.study, verdicts, now=now)


def _route_locked(review: ReviewCase, *, now: dt.datetime) -> ReviewCase:
    """Offer the (locked) case to every reader eligible now and take it off the lists of
    readers who no longer are (off shift, a credential lapsed, at the cap); with nobody
    left, flag it unroutable and alert the group's admins once per episode."""
    verdicts = selectors.review_verdicts(review=review, now=now)
    eligible = [v for v in verdicts if v.eligible]
    ReviewOffer.objects.filter(review=review, withdrawn_at__isnull=True).exclude(
        radiologist_id__in=[v.radiologist_id for v in eligible]
    ).update(withdrawn_at=now, withdrawn_reason="reader no longer eligible")
    if eligible:
        ReviewOffer.objects.bulk_create(
            [
                ReviewOffer(
                    review=review, radiologist_id=v.radiologist_id, tier=v.tier, offered_at=now
                )
                for v in eligible
            ],
            ignore_conflicts=True,  # an open offer stays (unique constraint)
        )
        review.status = ReviewStatus.OFFERED
        review.unroutable_reason = ""
        review.next_route_at = now + OFFER_REFRESH
        review.routed_at = now
        review.save(update_fields=["status", "unroutable_reason", "next_route_at", "routed_at"])
        return review
    reason = _why_unroutable(review, verdicts, now)[:500]
    review.status = ReviewStatus.UNROUTABLE
    review.unroutable_reason = reason
    review.next_route_at = now + ROUTE_RETRY
    review.save(update_fields=["status", "unroutable_reason", "next_route_at"])
    study = review.report.study
    episode = review.routed_at.isoformat() if review.routed_at else "never-offered"
    alert_raise(
        kind=Alert.Kind.UNROUTABLE,
        # Once per episode: retries every minute do not mail the admins again, but a
        # case that was offered and lost its readers alerts anew.
        dedupe_key=f"review-unroutable:{review.pk}:{episode}",
        message=f"{_label(review)} cannot be routed: {reason}.",
        reading_group=study.facility.reading_group,
        study=study,
    )
    return review


def _case_create(
    *,
    report: Report,
    kind: str,
    now: dt.datetime,
    requested_by: User | None = None,
    subspecialty: Subspecialty | None = None,
    question: str = "",
) -> ReviewCase:
    signer = report.signed_by
    if signer is None:  # impossible for a final report: a database constraint
        raise InvalidTransition("The report is not signed.", code="not_final")
    return ReviewCase.objects.create(
        kind=kind,
        report=report,
        reviewed_radiologist=signer,
        facility_id=report.study.facility_id,
        status=ReviewStatus.UNROUTABLE,  # until routed, in this same transaction
        requested_by=requested_by,
        required_subspecialty=subspecialty,
        question=question,
        created_at=now,
    )


# --- Second opinions ----------------------------------------------------------------
def second_opinion_request(
    *,
    report_id: int,
    actor: User | None,
    subspecialty_code: str | None = None,
    question: str = "",
    ip_address: str | None = None,
    now: dt.datetime | None = None,
) -> ReviewCase:
    """Ask for a second opinion on a final report and route it at once; one open second
    opinion per report (a database constraint)."""
    now = now or timezone.now()
    question = question.strip()
    if len(question) > QUESTION_MAX:
        raise DomainError(
            f"The question is too long (at most {QUESTION_MAX} characters).", code="invalid_review"
        )
    subspecialty = None
    if subspecialty_code:
        subspecialty = Subspecialty.objects.filter(code=subspecialty_code).first()
        if subspecialty is None:
            known = ", ".join(Subspecialty.objects.order_by("code").values_list("code", flat=True))
            raise DomainError(
                f"Unknown subspecialty '{subspecialty_code}' (known: {known}).",
                code="invalid_review",
            )
    with transaction.atomic():
        report = _lock_report(report_id)
        if report.status != ReportStatus.FINAL:
            raise InvalidTransition(
                f"A second opinion is asked on a final report; this one is {report.status}.",
                code="not_final",
            )
        open_case = (
            ReviewCase.objects.filter(
                report=report,
                kind=ReviewKind.SECOND_OPINION,
                status__in=OPEN_STATUSES,
            )
            .values_list("pk", flat=True)
            .first()
        )
        if open_case is not None:
            raise Conflict(
                f"A second opinion on this report is already open (case {open_case}).",
                code="already_requested",
            )
        review = _case_create(
            report=report,
            kind=ReviewKind.SECOND_OPINION,
            now=now,
            requested_by=actor,
            subspecialty=subspecialty,
            question=question,
        )
        audit_record(
            actor=actor,
            action=AuditEvent.Action.CREATE,
            obj=review,
            patient_id=report.study.patient_id,
            ip_address=ip_address,
            detail={
                "report": report.pk,
                "kind": review.kind,
                "subspecialty": subspecialty_code or "",
            },
        )
        return _route_locked(review, now=now)


def second_opinion_answer(
    *,
    review_id: int,
    radiologist: Radiologist,
    opinion: str,
    comments: str,
    actor: User | None = None,
    ip_address: str | None = None,
) -> ReviewCase:
    """Record the claiming reader's opinion; a discrepancy must say what it is."""
    if opinion not in Opinion.values:
        raise DomainError(
            f"'opinion' must be one of {', '.join(Opinion.values)}.", code="invalid_answer"
        )
    comments = comments.strip()
    if opinion != Opinion.AGREE and not comments:
        raise DomainError("Say what the discrepancy is in 'comments'.", code="invalid_answer")
    with transaction.atomic():
        review = _answer(
            review_id=review_id,
            kind=ReviewKind.SECOND_OPINION,
            radiologist=radiologist,
            fields={"opinion": opinion, "comments": comments},
            actor=actor,
            ip_address=ip_address,
        )
        # The requester is told (and the group's admins), by alert and e-mail; the
        # answer itself is read through the API, permission-checked and audited.
        study = review.report.study
        alert_raise(
            kind=Alert.Kind.REVIEW_ANSWERED,
            dedupe_key=f"review-answered:{review.pk}",
            message=(
                f"The second opinion asked on study "
                f"{study.accession_number or study.study_instance_uid} has been answered: "
                f"{Opinion(opinion).label.lower()}."
            ),
            reading_group=study.facility.reading_group,
            study=study,
            recipient=review.requested_by,
        )
    return review


# --- Peer review --------------------------------------------------------------------
def peer_review_policy_set(
    *, reading_group: ReadingGroup, sample_percent: Decimal, actor: User | None = None
) -> PeerReviewPolicy:
    """Set the share of the group's final reports drawn for peer review (0-100 %)."""
    if not Decimal(0) <= sample_percent <= Decimal(100):
        raise DomainError("'sample_percent' must be between 0 and 100.", code="invalid_policy")
    with transaction.atomic():
        policy, _ = PeerReviewPolicy.objects.select_for_update().get_or_create(
            reading_group=reading_group
        )
        before = policy.sample_percent
        policy.sample_percent = sample_percent
        policy.save()
        audit_record(
            actor=actor,
            action=AuditEvent.Action.UPDATE,
            obj=policy,
            detail={"sample_percent": [str(before), str(sample_percent)]},
        )
    return policy


def is_sampled(*, draw: float, percent: Decimal) -> bool:
    """A uniform draw in [0, 1) selects its report when below ``percent`` / 100: so a
    rate of p % selects p % of reports on average, 0 % none and 100 % all."""
    if not 0.0 <= draw < 1.0:
        raise ValueError("a draw is uniform in [0, 1)")
    return Decimal(repr(draw)) * 100 < percent


def peer_review_consider(
    *,
    report_id: int,
    draw: Callable[[], float] | None = None,
    now: dt.datetime | None = None,
) -> ReviewCase | None:
    """Draw once for a final report against its group's sample rate; a selected report
    becomes a peer review routed to another reader.  Idempotent: the draw is stored
    (one per report), so a retried or repeated call neither draws again nor adds a case."""
    now = now or timezone.now()
    with transaction.atomic():
        report = _lock_report(report_id)
        if report.status != ReportStatus.FINAL:
            return None
        if PeerReviewDraw.objects.filter(report=report).exists():
            return None
        percent = PeerReviewPolicy.objects.filter(
            reading_group_id=report.study.facility.reading_group_id
        ).values_list("sample_percent", flat=True).first() or Decimal(0)
        value = (draw or _system_random.random)()
        selected = is_sampled(draw=value, percent=percent)
        PeerReviewDraw.objects.create(
            report=report, draw=value, sample_percent=percent, selected=selected, drawn_at=now
        )
        if not selected:
            return None
        if ReviewCase.objects.filter(report=report, kind=ReviewKind.PEER_REVIEW).exists():
            return None  # an admin sent it to peer review already: once per report
        review = _case_create(report=report, kind=ReviewKind.PEER_REVIEW, now=now)
        audit_record(
            actor=None,
            action=AuditEvent.Action.CREATE,
            obj=review,
            patient_id=report.study.patient_id,
            detail={"report": report.pk, "kind": review.kind, "sample_percent": str(percent)},
        )
        return _route_locked(review, now=now)


def peer_review_request(
    *,
    report_id: int,
    actor: User | None,
    ip_address: str | None = None,
    now: dt.datetime | None = None,
) -> ReviewCase:
    """A group admin sends a final report to peer review outside the random sample
    (once per report, like a drawn one)."""
    now = now or timezone.now()
    with transaction.atomic():
        report = _lock_report(report_id)
        if report.status != ReportStatus.FINAL:
            raise InvalidTransition(
                f"Peer review is of a final report; this one is {report.status}.",
                code="not_final",
            )
        if ReviewCase.objects.filter(report=report, kind=ReviewKind.PEER_REVIEW).exists():
            raise Conflict("This report already has a peer review.", code="already_requested")
        review = _case_create(
            report=report, kind=ReviewKind.PEER_REVIEW, now=now, requested_by=actor
        )
        audit_record(
            actor=actor,
            action=AuditEvent.Action.CREATE,
            obj=review,
            patient_id=report.study.patient_id,
            ip_address=ip_address,
            detail={"report": report.pk, "kind": review.kind},
        )
        return _route_locked(review, now=now)


def peer_review_score(
    *,
    review_id: int,
    radiologist: Radiologist,
    score: int,
    clinically_significant: bool | None,
    comments: str,
    actor: User | None = None,
    ip_address: str | None = None,
) -> ReviewCase:
    """Record the claiming reader's RADPEER score: 1 concurs (never significant); a
    discrepancy (2-4) says whether it is clinically significant and what it is."""
    if score not in (1, 2, 3, 4):
        raise DomainError("'score' must be 1, 2, 3 or 4 (RADPEER).", code="invalid_score")
    comments = comments.strip()
    if score == 1:
        if clinically_significant:
            raise DomainError(
                "A score of 1 (concur) cannot be clinically significant.", code="invalid_score"
            )
        clinically_significant = False
    else:
        if clinically_significant is None:
            raise DomainError(
                f"Say whether the discrepancy of score {score} is clinically significant "
                "('clinically_significant': true or false).",
                code="invalid_score",
            )
        if not comments:
            raise DomainError("Say what the discrepancy is in 'comments'.", code="invalid_score")
    return _answer(
        review_id=review_id,
        kind=ReviewKind.PEER_REVIEW,
        radiologist=radiologist,
        fields={
            "score": score,
            "clinically_significant": clinically_significant,
            "comments": comments,
        },
        actor=actor,
        ip_address=ip_address,
    )


# --- Shared: claim, answer, retry --------------------------------------------------
def _already_claimed() -> Conflict:
    return Conflict(
        "This case has already been claimed by another radiologist.", code="already_claimed"
    )


def review_claim(
    *,
    review_id: int,
    radiologist: Radiologist,
    actor: User | None = None,
    ip_address: str | None = None,
) -> ReviewCase:
    """Claim a review case offered to the reader: exactly one of concurrent claimers
    wins (conditional UPDATE); eligibility is checked again first (a shift may have
    ended, a license lapsed, or the reader added an addendum to the report)."""
    now = timezone.now()
    with transaction.atomic():
        review = (
            ReviewCase.objects.select_related(
                "report__study__facility__region",
                "report__study__facility__reading_group",
                "report__study__patient_jurisdiction",
                "required_subspecialty",
            )
            .filter(pk=review_id)
            .first()
        )
        if review is None:
            raise NotPermitted("No such review case.", code="not_offered")
        if review.status != ReviewStatus.OFFERED:
            raise _already_claimed()
        if not ReviewOffer.objects.filter(
            review=review, radiologist=radiologist, withdrawn_at__isnull=True
        ).exists():
            # A winner who committed since the status was read withdrew every offer:
            # the caller lost a race and hears so, not "not on your list".
            if not ReviewCase.objects.filter(pk=review.pk, status=ReviewStatus.OFFERED).exists():
                raise _already_claimed()
            raise NotPermitted("This case is not on your review list.", code="not_offered")
        verdict = selectors.review_verdict_for(review=review, radiologist=radiologist, now=now)
        if verdict is None or not verdict.eligible:
            reasons = "; ".join(REASON_TEXT[r] for r in verdict.reasons) if verdict else ""
            code = "at_cap" if verdict and Reason.AT_CAP in verdict.reasons else "not_eligible"
            raise NotPermitted(
                f"You cannot take this case now: {reasons or 'not a reader of the group'}.",
                code=code,
            )
        won = ReviewCase.objects.filter(pk=review.pk, status=ReviewStatus.OFFERED).update(
            status=ReviewStatus.CLAIMED,
            assigned_radiologist=radiologist,
            claimed_at=now,
            next_route_at=None,
        )
        if won != 1:
            raise _already_claimed()
        ReviewOffer.objects.filter(review=review, withdrawn_at__isnull=True).update(
            withdrawn_at=now, withdrawn_reason=f"claimed by {radiologist.display_name}"[:200]
        )
        audit_record(
            actor=actor,
            action=AuditEvent.Action.TRANSITION,
            obj=review,
            patient_id=review.report.study.patient_id,
            ip_address=ip_address,
            detail={"to": ReviewStatus.CLAIMED, "radiologist": radiologist.pk},
        )
    review.refresh_from_db()
    return review


def _answer(
    *,
    review_id: int,
    kind: str,
    radiologist: Radiologist,
    fields: dict[str, object],
    actor: User | None,
    ip_address: str | None,
) -> ReviewCase:
    if len(str(fields.get("comments", ""))) > COMMENTS_MAX:
        raise DomainError(
            f"'comments' is too long (at most {COMMENTS_MAX} characters).", code="invalid_answer"
        )
    now = timezone.now()
    with transaction.atomic():
        answered = ReviewCase.objects.filter(
            pk=review_id,
            kind=kind,
            status=ReviewStatus.CLAIMED,
            assigned_radiologist=radiologist,
        ).update(status=ReviewStatus.ANSWERED, answered_at=now, **fields)
        review = ReviewCase.objects.select_related("report__study").get(pk=review_id, kind=kind)
        if answered != 1:
            if review.assigned_radiologist_id != radiologist.pk:
                raise NotPermitted(
                    "Only the radiologist who claimed this case may answer it.", code="not_claimer"
                )
            raise Conflict("This case has already been answered.", code="already_answered")
        audit_record(
            actor=actor,
            action=AuditEvent.Action.UPDATE,
            obj=review,
            patient_id=review.report.study.patient_id,
            ip_address=ip_address,
            detail={"answered": {k: v for k, v in fields.items() if k != "comments"}},
        )
    return review


def review_route(*, review_id: int, now: dt.datetime | None = None) -> ReviewCase | None:
    """Route a case whose routing time is due again: retry an unroutable one, refresh
    an offered one's readers.  Checked under the row lock, so of two sweepers the
    second finds it done; claimed and answered cases are left alone."""
    now = now or timezone.now()
    with transaction.atomic():
        review = _lock_review(review_id)
        if (
            review is None
            or review.status not in (ReviewStatus.UNROUTABLE, ReviewStatus.OFFERED)
            or review.next_route_at is None
            or review.next_route_at > now
        ):
            return None
        return _route_locked(review, now=now)


def review_release(
    *,
    review_id: int,
    radiologist: Radiologist,
    reason: str,
    actor: User | None = None,
    ip_address: str | None = None,
) -> ReviewCase:
    """Give a claimed case back, with a reason: it is offered afresh to the readers
    eligible now (the releasing reader among them, if still eligible)."""
    if not reason.strip():
        raise DomainError("Say why you release the case.", code="reason_required")
    now = timezone.now()
    with transaction.atomic():
        review = _lock_review(review_id)
        if (
            review is None
            or review.status != ReviewStatus.CLAIMED
            or review.assigned_radiologist_id != radiologist.pk
        ):
            raise Conflict("You do not hold a claim on this case.", code="not_claimed")
        return _release_locked(review, now=now, reason=reason, actor=actor, ip_address=ip_address)


def _release_locked(
    review: ReviewCase,
    *,
    now: dt.datetime,
    reason: str,
    actor: User | None = None,
    ip_address: str | None = None,
) -> ReviewCase:
    # Back to offered (routing below confirms it, or flags it unroutable).
    previous = review.assigned_radiologist_id
    review.status = ReviewStatus.OFFERED
    review.assigned_radiologist = None
    review.claimed_at = None
    review.save(update_fields=["status", "assigned_radiologist", "claimed_at"])
    audit_record(
        actor=actor,
        action=AuditEvent.Action.TRANSITION,
        obj=review,
        patient_id=review.report.study.patient_id,
        ip_address=ip_address,
        detail={"to": "released", "radiologist": previous, "reason": reason.strip()[:300]},
    )
    return _route_locked(review, now=now)


def reviews_release_stale(*, now: dt.datetime, batch_size: int = 200) -> list[int]:
    """Release claims held unanswered longer than REVIEW_STALE_CLAIM_HOURS: the case is
    offered afresh, and the reader and the group's admins are told (once per claim)."""
    hours = float(settings.REVIEW_STALE_CLAIM_HOURS)
    cutoff = now - dt.timedelta(hours=hours)
    candidates = list(
        ReviewCase.objects.filter(status=ReviewStatus.CLAIMED, claimed_at__lt=cutoff)
        .order_by("claimed_at")
        .values_list("pk", flat=True)[:batch_size]
    )
    released = []
    for review_id in candidates:
        with transaction.atomic():
            review = _lock_review(review_id)
            if (
                review is None
                or review.status != ReviewStatus.CLAIMED
                or review.claimed_at is None
                or review.claimed_at >= cutoff
                or review.assigned_radiologist is None
            ):
                continue  # answered or released since we looked
            reader, claimed_at = review.assigned_radiologist, review.claimed_at
            _release_locked(review, now=now, reason=f"no answer for {hours:g} hours (automatic)")
            study = review.report.study
            alert_raise(
                kind=Alert.Kind.STALE_CLAIM,
                dedupe_key=f"review-stale-claim:{review.pk}:{claimed_at.isoformat()}",
                message=(
                    f"{reader.display_name}'s claim on the {_label(review).lower()} was "
                    f"released after {hours:g} hours without an answer; it is offered again."
                ),
                reading_group=study.facility.reading_group,
                study=study,
                recipient=reader.user,
            )
            released.append(review.pk)
    return released


def review_cancel(
    *,
    review_id: int,
    kind: str,
    reason: str,
    actor: User | None = None,
    ip_address: str | None = None,
) -> ReviewCase:
    """The requester side withdraws a case not yet answered (e.g. one nobody can take):
    it leaves every list and routing stops; the record stays."""
    if not reason.strip():
        raise DomainError("Say why you cancel the case.", code="reason_required")
    now = timezone.now()
    with transaction.atomic():
        review = _lock_review(review_id)
        if review is None or review.kind != kind:
            raise NotPermitted("No such review case.", code="not_found")
        if review.status in (ReviewStatus.ANSWERED, ReviewStatus.CANCELLED):
            raise Conflict(
                f"This case is already {review.status}.", code=f"already_{review.status}"
            )
        before = review.status
        review.status = ReviewStatus.CANCELLED
        review.cancelled_at = now
        review.cancel_reason = reason.strip()[:300]
        review.next_route_at = None
        review.save(update_fields=["status", "cancelled_at", "cancel_reason", "next_route_at"])
        ReviewOffer.objects.filter(review=review, withdrawn_at__isnull=True).update(
            withdrawn_at=now, withdrawn_reason="case cancelled"
        )
        audit_record(
            actor=actor,
            action=AuditEvent.Action.TRANSITION,
            obj=review,
            patient_id=review.report.study.patient_id,
            ip_address=ip_address,
            detail={"from": before, "to": ReviewStatus.CANCELLED, "reason": review.cancel_reason},
        )
    return review


def reviews_sweep(*, now: dt.datetime | None = None, batch_size: int = 200) -> dict[str, int]:
    """Beat: release stale claims, route review cases that are due (retry the
    unroutable, refresh the offered ones' readers), and draw for final reports
    whose draw was lost (their task never ran) within the last day."""
    now = now or timezone.now()
    stale = reviews_release_stale(now=now, batch_size=batch_size)
    due = list(selectors.reviews_due_for_routing(now=now)[:batch_size])
    routed = sum(
        1
        for review_id in due
        if (r := review_route(review_id=review_id, now=now)) is not None
        and r.status == ReviewStatus.OFFERED
    )
    undrawn = list(
        Report.objects.filter(
            status=ReportStatus.FINAL,
            signed_at__gte=now - dt.timedelta(days=1),
            signed_at__lte=now - dt.timedelta(seconds=30),
            peer_review_draw__isnull=True,
        )
        .order_by("signed_at")
        .values_list("pk", flat=True)[:batch_size]
    )
    for report_id in undrawn:
        peer_review_consider(report_id=report_id, now=now)
    return {"routed": routed, "drawn_late": len(undrawn), "released_stale": len(stale)}
