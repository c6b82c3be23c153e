"""Claiming, releasing and reassigning studies: exactly one reader wins a claim.

Claims lock the study row (``SELECT ... FOR UPDATE``) and move it through the state
machine, which refuses a second ``offered -> claimed``; "next case" takes the top
of the worklist with ``SKIP LOCKED`` so concurrent callers get different studies.
Eligibility is checked again at claim time: a license may have lapsed since the offer.
A study whose rule is "next case only" is taken through "next case" (or assigned by
a group admin), never claimed by id: readers do not pick their cases from the list.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from alerts.models import Alert
from alerts.services import alert_raise
from audit.models import AuditEvent
from audit.services import audit_record
from network.models import Radiologist
from routing.eligibility import CLAIM, KEEP_OFFER, REASON_TEXT, Policy, Reason, Verdict
from routing.models import RoutingRule
from routing.selectors import reader_facts, study_facts, study_routing, study_rule
from routing.services import (
    routing_timer_clear,
    routing_timer_due_now,
    routing_timer_restart,
    study_escalate,
    study_reroute,
)
from studies.models import Study
from studies.services import study_claim_hand_over, study_transition
from studies.states import StudyStatus
from teleradiology.errors import Conflict, NotPermitted
from worklist.models import Offer
from worklist.selectors import claim_candidates, study_has_open_offer, study_is_offered_to
from worklist.services.offers import offer_open, offers_hold, offers_restore, offers_withdraw


def _claim_refusal(
    study: Study, radiologist: Radiologist, now: dt.datetime, *, offered: bool
) -> Conflict | NotPermitted | None:
    """Why ``radiologist`` may not claim the (locked) study now, or None.  ``offered``:
    whether the study has an open offer to the reader.  Nothing is written before
    this answers, so a caller can try the next study without a savepoint."""
    if study.status != StudyStatus.OFFERED:
        return Conflict(
            "This study has already been claimed by another radiologist.", code="already_claimed"
        )
    if not offered:
        return NotPermitted("This study is not on your worklist.", code="not_offered")
    # Eligibility again: a license or privilege may have lapsed since the offer.
    return _eligibility_refusal(study, radiologist, now)


def claim_by_id_refused(rule: RoutingRule | None) -> bool:
    """Whether the rule's studies are handed out by "next case" only, so that a claim
    by id is refused.  An auto-assigned study is offered to one reader, who accepts
    it by id: that is no pick from a list, so only offer delivery is restricted."""
    return rule is not None and rule.next_case_only and rule.delivery == RoutingRule.Delivery.OFFER


def _next_case_only() -> Conflict:
    return Conflict(
        'Studies of this kind are taken with "Next case" only: use "Next case" to '
        "get the top of your worklist.",
        code="next_case_only",
    )


def _verdict(
    policy: Policy, study: Study, radiologist: Radiologist, now: dt.datetime
) -> Verdict | None:
    """The policy's verdict on the reader for the study now (eligibility and
    reasons, as routing judges them), from the study's own routing rule (joined to
    the locked study by the callers) and two statements of the reader's facts; None
    with no rule, or for a reader who does not read for the study's group."""
    rule = study_rule(study=study)
    if rule is None:
        return None
    found = reader_facts(study=study, radiologist_id=radiologist.pk, rule_id=rule.pk, at=now)
    if found is None:
        return None
    reader, required = found
    rule.required_subspecialties_known(required)
    return policy.judge(study_facts(study=study, rule=rule, now=now), reader)


def _claim_verdict(study: Study, radiologist: Radiologist, now: dt.datetime) -> Verdict | None:
    """The CLAIM policy's verdict on the reader for the study now."""
    return _verdict(CLAIM, study, radiologist, now)


def _eligibility_refusal(
    study: Study, radiologist: Radiologist, now: dt.datetime
) -> NotPermitted | None:
    verdict = _claim_verdict(study, radiologist, now)
    if verdict is None:
        return NotPermitted("No routing rule applies to this study.", code="no_rule")
    if not verdict.eligible:
        reasons = "; ".join(REASON_TEXT[r] for r in verdict.reasons)
        code = "at_cap" if Reason.AT_CAP in verdict.reasons else "not_eligible"
        return NotPermitted(f"You cannot read this study now: {reasons}.", code=code)
    return None


def _claim_apply(
    study: Study,
    radiologist: Radiologist,
    *,
    actor: User | None,
    now: dt.datetime,
    ip_address: str | None,
) -> Study:
    """Record the claim on the locked study (its refusal check has passed)."""
    claimed = study_transition(
        study_id=study.pk,
        locked=study,
        to_status=StudyStatus.CLAIMED,
        actor=actor,
        at=now,
        assigned_radiologist=radiologist,
        claim_activity_at=now,
        ip_address=ip_address,
        reason=f"claimed by {radiologist.display_name}",
    )
    routing_timer_clear(study_id=study.pk)
    offers_hold(study_id=study.pk, at=now)
    return claimed


def _claim_locked(
    study: Study,
    radiologist: Radiologist,
    *,
    actor: User | None,
    now: dt.datetime,
    ip_address: str | None,
    offered: bool,
) -> Study:
    refusal = _claim_refusal(study, radiologist, now, offered=offered)
    if refusal is not None:
        raise refusal
    return _claim_apply(study, radiologist, actor=actor, now=now, ip_address=ip_address)


def study_claim(
    *,
    study_id: int,
    radiologist: Radiologist,
    actor: User | None = None,
    ip_address: str | None = None,
) -> Study:
    """Claim an offered study for ``radiologist``; the loser of a race gets Conflict,
    and so does every claim by id of a next-case-only study on the reader's list."""
    now = timezone.now()
    with transaction.atomic():
        # Whether it is offered to the reader, its routing rule and what the
        # eligibility re-check needs come with the locked row (one statement).
        study = (
            Study.objects.select_for_update(of=("self",))
            .select_related("facility", "patient_jurisdiction", "routing__rule")
            .annotate(
                offered_to_reader=Exists(
                    Offer.objects.filter(
                        study=OuterRef("pk"), radiologist=radiologist, withdrawn_at__isnull=True
                    )
                )
            )
            .get(pk=study_id)
        )
        # Checked on the locked row whatever its state, so that the answer does not
        # depend on who won a race: such a study is never claimed by id.  Only for a
        # study on the reader's list (a study they were never offered says so).
        if study.offered_to_reader and claim_by_id_refused(study_rule(study=study)):
            raise _next_case_only()
        return _claim_locked(
            study,
            radiologist,
            actor=actor,
            now=now,
            ip_address=ip_address,
            offered=study.offered_to_reader,
        )


def study_claim_next(
    *,
    radiologist: Radiologist,
    actor: User | None = None,
    ip_address: str | None = None,
    scan: int = 10,
) -> Study | None:
    """Claim the top of the reader's worklist in one step (no cherry-picking).

    Rows other callers hold are skipped, so concurrent callers each get a different
    study and none is left behind.  A study the reader may no longer read (e.g. a
    lapsed license) is passed over; being at the workload cap refuses outright.
    """
    now = timezone.now()
    with transaction.atomic():
        candidates = claim_candidates(radiologist=radiologist).select_for_update(
            skip_locked=True, of=("self",)
        )
        # The top study is read (and locked) alone: it is almost always claimable,
        # and every row read is a row locked and a model built.  Only if it is
        # refused are the next ones read, up to ``scan`` in all.
        refused: list[int] = []
        for size in (1, scan - 1):
            for study in list(candidates.exclude(pk__in=refused)[:size]):
                # The candidates query required an open, unheld offer to the reader.
                refusal = _claim_refusal(study, radiologist, now, offered=True)
                if refusal is None:
                    return _claim_apply(
                        study, radiologist, actor=actor, now=now, ip_address=ip_address
                    )
                if isinstance(refusal, NotPermitted) and refusal.code == "at_cap":
                    raise refusal
                refused.append(study.pk)
            if not refused:
                break  # nothing on the worklist (or all of it held by other claimers)
    return None


def study_release(
    *,
    study_id: int,
    radiologist: Radiologist,
    reason: str,
    actor: User | None = None,
    ip_address: str | None = None,
) -> Study:
    """Give a claimed study back: it returns to the worklists it was offered on,
    except the releaser's own if they may no longer keep it (KEEP_OFFER: off shift,
    a credential lapsed); left on nobody's worklist, it is routed afresh, in the
    same transaction."""
    if not reason.strip():
        raise NotPermitted("Say why you release the study.", code="reason_required")
    now = timezone.now()
    with transaction.atomic():
        # The routing row and its rule come with the locked study (one statement), and
        # its facility, whose reading group the audit event names, and what the
        # releaser's re-check reads.
        study = (
            Study.objects.select_for_update(of=("self",))
            .select_related("routing__rule", "facility", "patient_jurisdiction")
            .annotate(
                releaser_offered=Exists(
                    Offer.objects.filter(
                        study=OuterRef("pk"), radiologist=radiologist, withdrawn_at__isnull=True
                    )
                )
            )
            .get(pk=study_id)
        )
        if study.status != StudyStatus.CLAIMED or study.assigned_radiologist_id != radiologist.pk:
            raise Conflict("You do not hold a claim on this study.", code="not_claimed")
        offers_restore(study_id=study.pk)
        released = study_transition(
            study_id=study.pk,
            locked=study,
            to_status=StudyStatus.OFFERED,
            actor=actor,
            at=now,
            assigned_radiologist=None,
            claim_activity_at=None,
            ip_address=ip_address,
            reason=f"released: {reason}",
        )
        # The releaser's offer is judged now, before it is back on their worklist: they
        # release because something changed, often their own standing (a shift ending,
        # a credential lapsing).  The other readers' restored offers are judged by the
        # offer sweep, as every offered study's are, now that the study is offered.
        keep = _verdict(KEEP_OFFER, study, radiologist, now)
        kept = study.releaser_offered and keep is not None and keep.eligible
        if study.releaser_offered and not kept:
            why = (
                "; ".join(REASON_TEXT[r] for r in keep.reasons)
                if keep is not None
                else "not a reader of the study under its rule"
            )
            offers_withdraw(
                study_id=study.pk,
                radiologist_id=radiologist.pk,
                at=now,
                reason=f"released by a reader who may no longer keep it: {why}"[:200],
            )
        # The releaser's kept offer is open; else look for anyone else's.
        if kept or study_has_open_offer(study_id=study.pk):
            # The escalation clock restarts: the offered readers get a full tier wait.
            routing_timer_restart(study=study, at=now)
        else:
            study_reroute(
                study_id=study.pk,
                reason="released, and nobody is left with an offer of it",
                now=now,
                only_if_orphaned=True,
            )
            released.refresh_from_db()
    return released


def study_reassign(
    *, study_id: int, to: Radiologist, actor: User | None, ip_address: str | None = None
) -> Study:
    """An admin hands a study to a named eligible reader (refused with the reasons)."""
    now = timezone.now()
    with transaction.atomic():
        study = (
            Study.objects.select_for_update(of=("self",))
            .select_related("facility", "patient_jurisdiction", "routing__rule")
            .get(pk=study_id)
        )
        if to.reading_group_id != study.facility.reading_group_id:
            raise NotPermitted(
                "That radiologist does not read for this facility's group.", code="other_group"
            )
        refusal = _eligibility_refusal(study, to, now)
        if refusal is not None:
            raise refusal
        if study.status == StudyStatus.OFFERED:
            if not study_is_offered_to(study_id=study.pk, radiologist_id=to.pk):
                routing = study_routing(study=study)
                offer_open(
                    study=study,
                    radiologist_id=to.pk,
                    tier=0,
                    rule_id=routing.rule_id if routing else None,
                    at=now,
                )
            study = study_transition(
                study_id=study.pk,
                locked=study,
                to_status=StudyStatus.CLAIMED,
                actor=actor,
                at=now,
                assigned_radiologist=to,
                claim_activity_at=now,
                ip_address=ip_address,
                reason=f"reassigned to {to.display_name}",
            )
            offers_hold(study_id=study.pk, at=now)
        elif study.status == StudyStatus.CLAIMED:
            study_claim_hand_over(
                study=study, to_radiologist_id=to.pk, at=now, actor=actor, ip_address=ip_address
            )
        else:
            raise Conflict(
                f"A {study.status} study cannot be reassigned.", code="invalid_transition"
            )
        routing_timer_clear(study_id=study.pk)
    return study


def study_decline(
    *, study_id: int, radiologist: Radiologist, reason: str, actor: User | None = None
) -> None:
    """Decline an auto-assigned study: it moves to the next candidate at once."""
    now = timezone.now()
    with transaction.atomic():
        study = Study.objects.select_for_update().get(pk=study_id)
        withdrawn = offers_withdraw(
            study_id=study.pk, radiologist_id=radiologist.pk, at=now, reason=f"declined: {reason}"
        )
        if not withdrawn or study.status != StudyStatus.OFFERED:
            raise Conflict("This study is not waiting for your answer.", code="not_offered")
        audit_record(
            actor=actor,
            action=AuditEvent.Action.UPDATE,
            obj=study,
            patient_id=study.patient_id,
            detail={"declined": reason[:200]},
        )
        # Due now: the escalation step offers it to the next reader (or widens).
        routing_timer_due_now(study_id=study.pk, at=now)
    study_escalate(study_id=study_id, now=now)


def claims_release_stale(*, now: dt.datetime | None = None, batch_size: int = 200) -> list[int]:
    """Beat sweep: release claims idle longer than their priority allows; the reader
    and the group's admins are told, and the study goes back on offer."""
    now = now or timezone.now()
    limits = settings.STALE_CLAIM_MINUTES
    stale = Q()
    for priority, minutes in limits.items():
        stale |= Q(priority=priority, claim_activity_at__lt=now - dt.timedelta(minutes=minutes))
    candidates = list(
        Study.objects.filter(stale, status=StudyStatus.CLAIMED)
        .order_by("claim_activity_at")
        .values_list("pk", flat=True)[:batch_size]
    )
    released = []
    for study_id in candidates:
        with transaction.atomic():
            study = (
                Study.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("assigned_radiologist__user", "facility__reading_group")
                .filter(pk=study_id, status=StudyStatus.CLAIMED)
                .first()
            )
            if study is None or study.claim_activity_at is None:
                continue
            minutes = limits[study.priority]
            if study.claim_activity_at >= now - dt.timedelta(minutes=minutes):
                continue  # activity since we looked
            reader = study.assigned_radiologist
            if reader is None:  # impossible: a database constraint requires one
                continue
            study_release(
                study_id=study.pk,
                radiologist=reader,
                reason=f"no report activity for {minutes} minutes (automatic)",
            )
            alert_raise(
                kind=Alert.Kind.STALE_CLAIM,
                dedupe_key=f"stale-claim:{study.pk}:{study.claim_activity_at.isoformat()}",
                message=(
                    f"{reader.display_name}'s claim on study "
                    f"{study.accession_number or study.pk} was released after "
                    f"{minutes} minutes without report activity; it is back on offer."
                ),
                reading_group=study.facility.reading_group,
                study=study,
                recipient=reader.user,
            )
            released.append(study.pk)
    return released
