"""Routing a study: match its rule, decide, offer, escalate, or flag it unroutable.

Every step is stored as a RoutingDecision with the verdict on each candidate, and
the next escalation time is a column swept by beat, never an in-memory timer.
Locks are taken in one order everywhere: the study row, then its routing row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth.models import User
from django.db import models, transaction
from django.db.models import QuerySet
from django.utils import timezone

from alerts.models import Alert
from alerts.services import alert_raise
from routing import eligibility, selectors
from routing.eligibility import CandidateFacts, StudyFacts, Verdict
from routing.models import LAST_TIER, TIERS, RoutingDecision, RoutingRule, StudyRouting
from studies.models import Study
from studies.services import studies_transition_locked, study_transition, study_triage_set
from studies.states import StudyStatus
from teleradiology.audited import audited_delete, audited_save, related_set
from teleradiology.queue import enqueue
from worklist.selectors import (
    readers_withdrawn_for,
    studies_with_open_offers,
    study_has_open_offer,
    study_open_offer_readers,
)
from worklist.services.offers import Opening, offers_open, offers_withdraw

RoutingConfig = TypeVar("RoutingConfig", bound=models.Model)

UNROUTABLE_RETRY = dt.timedelta(seconds=60)
# Why offers are withdrawn (worklist_offer.withdrawn_reason).
NOT_ACCEPTED = "not accepted in time"
NO_LONGER_ELIGIBLE = "reader no longer eligible"
# An auto-assigned reader who let the study time out, or declined it (the decline's
# reason is "declined: ...", worklist.services.claims.study_decline), is never
# auto-assigned that study again, across re-routes and unroutable retries.
PASSED_ON = (NOT_ACCEPTED, "declined:")
# A ready study with no routing decision after this long is routed by the sweep
# (its route_study task was lost with a crashed worker or broker).
ROUTE_GRACE = dt.timedelta(seconds=30)


_ROUTING_FIELDS = [
    "rule",
    "tier",
    "relative_value",
    "next_escalation_at",
    "unroutable_at",
    "unroutable_reason",
    "decided_at",
]


def _routing_save(*routings: StudyRouting) -> None:
    """Insert or update studies' routing rows in one statement (the study rows are
    locked by the caller, so nobody else writes them meanwhile)."""
    StudyRouting.objects.bulk_create(
        list(routings),
        update_conflicts=True,
        unique_fields=["study"],
        update_fields=_ROUTING_FIELDS,
    )


def _locked_studies(
    ids: list[int], *, skip_locked: bool = False, ready_only: bool = False
) -> QuerySet[Study]:
    """The studies, locked in id order, with what routing reads of them (their
    routing row too, when they have one)."""
    studies = (
        Study.objects.select_for_update(skip_locked=skip_locked, of=("self",))
        .select_related(
            "facility__region", "facility__reading_group", "patient_jurisdiction", "routing"
        )
        .filter(pk__in=ids)
        .order_by("pk")
    )
    return studies.filter(status=StudyStatus.READY) if ready_only else studies


def _lock_study(study_id: int, *, skip_locked: bool = False) -> Study | None:
    return _locked_studies([study_id], skip_locked=skip_locked).first()


def study_route(*, study_id: int, now: dt.datetime | None = None) -> RoutingDecision | None:
    """Route a ready study: offer it at the nearest tier with eligible readers, or
    flag it unroutable.  Idempotent: a study that is not ready is left alone."""
    return studies_route(study_ids=[study_id], batch_size=1, now=now).get(study_id)


def studies_route(
    *, study_ids: Sequence[int], batch_size: int, now: dt.datetime | None = None
) -> dict[int, RoutingDecision | None]:
    """Route ready studies and, in the same transaction, enough other ready studies
    never routed (most urgent first) that no other worker holds to make up
    ``batch_size``.

    The batch shares the reads that do not depend on the study (the groups' rules,
    the facilities' pools, the readers' credentials) and its writes are a handful
    of multi-row statements, so a backlog drains at several times the rate of one
    study per transaction.  The named studies are waited for (a redelivered task
    must find them decided); the others are skipped if held.  Eligibility is
    decided per study exactly as for one study.
    """
    now = now or timezone.now()
    named_set = set(study_ids)
    named = sorted(named_set)
    with transaction.atomic():
        # Only ready studies are locked (a redelivered task finds its studies
        # routed and ends), in id order, so two tasks naming the same studies
        # cannot deadlock; the top-up below never waits.
        studies = list(_locked_studies(named, ready_only=True))
        if not studies:
            return {}
        room = batch_size - len(studies)
        if room > 0:
            waiting = selectors.studies_awaiting_route()[: room + len(named)]
            more = [pk for pk in waiting if pk not in named_set][:room]
            if more:
                studies += list(_locked_studies(more, skip_locked=True, ready_only=True))
        # Already decided ones wait for their timer (it brings them back); held
        # ones (for their order or priors) wait for the hold to end or be released.
        studies = [st for st in studies if not (_timer(st) or now) > now and not _held(st, now)]
        return _route_many(studies, now=now)


def _timer(study: Study) -> dt.datetime | None:
    """The study's escalation timer, read with the study (``_locked_studies``)."""
    try:
        return study.routing.next_escalation_at
    except StudyRouting.DoesNotExist:
        return None


def _held(study: Study, now: dt.datetime) -> bool:
    """Whether a ready study is still held from routing (``Study.order_hold_until``,
    ``priors_hold_until``)."""
    return any(
        hold is not None and hold > now
        for hold in (study.order_hold_until, study.priors_hold_until)
    )


def _route_many(studies: list[Study], *, now: dt.datetime) -> dict[int, RoutingDecision | None]:
    """Decide and offer locked ready studies from the hyperlocal tier: one pass of
    reads for all, then multi-row writes for the offered ones."""
    if not studies:
        return {}
    plans: list[tuple[Study, RoutingRule, int, list[Verdict], list[Verdict]]] = []
    decided: dict[int, RoutingDecision | None] = {}
    matched = [(st, selectors.rule_for_study(study=st)) for st in studies]
    everyone = selectors.candidate_facts_many(
        [(st.facility, st.patient_jurisdiction.code) for st, rule in matched if rule],
        max_tier=LAST_TIER,
        at=now,
        jurisdiction_ids={
            st.patient_jurisdiction.code: st.patient_jurisdiction_id for st in studies
        },
    )
    # Auto-assign skips the readers who let the study time out (or declined it): one
    # read for the batch, only when an auto-assign rule is in it.
    auto = [
        st.pk for st, rule in matched if rule and rule.delivery == RoutingRule.Delivery.AUTO_ASSIGN
    ]
    passed = readers_withdrawn_for(study_ids=auto, reasons=PASSED_ON) if auto else {}
    for study, rule in matched:
        if rule is None:
            decided[study.pk] = _mark_unroutable(
                study,
                None,
                tier=0,
                now=now,
                verdicts=[],
                reason="no routing rule matches the study and the group has no default rule",
            )
            continue
        facts = selectors.study_facts(study=study, rule=rule, now=now)
        candidates = everyone[study.facility_id, facts.jurisdiction]
        skip = passed.get(study.pk, frozenset())
        tier, verdicts, fresh = _widen(facts, candidates, tier=0, rule=rule, skip=skip)
        if not fresh:
            decided[study.pk] = _mark_unroutable(
                study,
                rule,
                tier=tier,
                now=now,
                reason=_nobody_left_reason(study, verdicts, now=now),
                verdicts=verdicts,
            )
            continue
        plans.append((study, rule, tier, verdicts, fresh))
    decided.update(_offer_many(plans, now=now, outcome=RoutingDecision.Outcome.OFFERED))
    return decided


def _routed_by(study: Study, routing: StudyRouting) -> RoutingRule | None:
    """The rule a study was routed by: from the group's rules in memory while it is
    still active, else as stored (an admin may have deactivated it since), else
    the rule that applies now."""
    if routing.rule_id is None:
        return selectors.rule_for_study(study=study)
    for _, rule in selectors.group_rules(study=study):
        if rule.pk == routing.rule_id:
            return rule
    return routing.rule or selectors.rule_for_study(study=study)


def _route_afresh(study: Study, *, now: dt.datetime) -> RoutingDecision | None:
    """Match the study's rule and offer from the hyperlocal tier (or flag it unroutable)."""
    return _route_many([study], now=now).get(study.pk)


def _widen(
    facts: StudyFacts,
    candidates: list[CandidateFacts],
    *,
    tier: int,
    rule: RoutingRule,
    skip: frozenset[int] = frozenset(),
) -> tuple[int, list[Verdict], list[Verdict]]:
    """``eligibility.widen`` with the routing policy, up to the rule's widest tier."""
    return eligibility.widen(
        eligibility.ROUTE,
        facts,
        candidates,
        tier=min(tier, rule.widest_tier),
        last_tier=rule.widest_tier,
        skip=skip,
    )


def _offer_from(
    study: Study,
    rule: RoutingRule,
    *,
    tier: int,
    now: dt.datetime,
    outcome: str,
    skip: frozenset[int] = frozenset(),
) -> RoutingDecision | None:
    """Offer at ``tier``, widening tier by tier until someone not in ``skip`` is
    eligible; unroutable if nobody is, up to the widest tier."""
    facts = selectors.study_facts(study=study, rule=rule, now=now)
    candidates = _candidates(study, facts, now=now)
    tier, verdicts, fresh = _widen(facts, candidates, tier=tier, rule=rule, skip=skip)
    if not fresh:
        reason = _nobody_left_reason(study, verdicts, now=now)
        return _mark_unroutable(study, rule, tier=tier, now=now, reason=reason, verdicts=verdicts)
    return _offer_many([(study, rule, tier, verdicts, fresh)], now=now, outcome=outcome)[study.pk]


def _candidates(study: Study, facts: StudyFacts, *, now: dt.datetime) -> list[CandidateFacts]:
    """The facts of the study's plausible readers at every tier, in one gathering
    (each step of ``_widen`` looks at the tiers up to its own)."""
    return selectors.candidate_facts_many(
        [(study.facility, facts.jurisdiction)],
        max_tier=LAST_TIER,
        at=now,
        jurisdiction_ids={facts.jurisdiction: study.patient_jurisdiction_id},
    )[study.facility_id, facts.jurisdiction]


def _tier_wait(study: Study, rule: RoutingRule, *, tier: int, now: dt.datetime) -> dt.timedelta:
    """How long until the routing timer of a study offered at ``tier`` fires: an
    auto-assignment's accept timeout, else the wait its SLA gives the tier
    (``eligibility.escalation_wait`` over the rule's fractions, floor and cap)."""
    if rule.delivery == RoutingRule.Delivery.AUTO_ASSIGN:
        return dt.timedelta(seconds=rule.accept_timeout_seconds)
    return eligibility.escalation_wait(
        tier=tier,
        received_at=study.received_at,
        due_at=study.sla_due_at,
        now=now,
        fractions=rule.widening_fractions(),
        floor=dt.timedelta(seconds=rule.min_tier_wait_seconds),
        cap=rule.tier_wait(study.priority),
    )


def _nobody_left_reason(study: Study, verdicts: Sequence[Verdict], *, now: dt.datetime) -> str:
    """Why nobody new can be offered the study: the eligible readers were all passed
    over (auto-assigned and let it time out or declined), or ``unroutable_reason``."""
    eligible = sum(1 for v in verdicts if v.eligible)
    if eligible:
        return (
            f"each of the {eligible} eligible radiologist(s) on shift was auto-assigned it "
            "and let it time out or declined it: assign it to a reader"
        )
    return unroutable_reason(study, verdicts, now=now)


def _offer_many(
    plans: list[tuple[Study, RoutingRule, int, list[Verdict], list[Verdict]]],
    *,
    now: dt.datetime,
    outcome: str,
) -> dict[int, RoutingDecision]:
    """Write the offers of locked studies, each (study, rule, tier, verdicts,
    eligible readers): the offers, the studies' transitions, their routing rows and
    decisions, each kind in one multi-row statement."""
    if not plans:
        return {}
    openings: list[Opening] = []
    routings: list[StudyRouting] = []
    decisions: list[RoutingDecision] = []
    moving: dict[int, str] = {}
    for study, rule, tier, verdicts, fresh in plans:
        chosen = fresh[:1] if rule.delivery == RoutingRule.Delivery.AUTO_ASSIGN else fresh
        openings.append(Opening(study, [v.radiologist_id for v in chosen], tier, rule.pk))
        if study.status == StudyStatus.READY:
            moving[study.pk] = f"rule '{rule.name}', {TIERS[tier].lower()} tier"
        wait = _tier_wait(study, rule, tier=tier, now=now)
        routings.append(
            StudyRouting(
                study=study,
                rule=rule,
                tier=tier,
                relative_value=rule.relative_value,
                next_escalation_at=now + wait,
                unroutable_at=None,
                unroutable_reason="",
                decided_at=now,
            )
        )
        decisions.append(
            RoutingDecision(
                study=study,
                rule=rule,
                rule_name=rule.name,
                tier=tier,
                outcome=outcome,
                offered_to=[v.radiologist_id for v in chosen],
                verdicts=[v.as_dict() for v in verdicts],
                created_at=now,
                reason=f"offered to {len(chosen)} reader(s) at the {TIERS[tier].lower()} tier",
            )
        )
    # An open offer already there stays (unique constraint).
    offers_open(openings=openings, at=now)
    if moving:
        studies_transition_locked(
            studies=[p[0] for p in plans if p[0].pk in moving],
            to_status=StudyStatus.OFFERED,
            at=now,
            reasons=moving,
        )
    _routing_save(*routings)
    RoutingDecision.objects.record_many(decisions)
    return {d.study_id: d for d in decisions}


def unroutable_reason(study: Study, verdicts: Sequence[Verdict], *, now: dt.datetime) -> str:
    """A sentence an admin can act on, e.g. 'no radiologist licensed in US-TX is on shift'."""
    group = study.facility.reading_group.name
    jurisdiction = study.patient_jurisdiction.code
    if not verdicts:
        coverage = selectors.shift_coverage(
            facility=study.facility, jurisdiction_code=jurisdiction, at=now
        )
        if not coverage["on_shift"]:
            return f"no radiologist of {group} is on shift"
        if not coverage["licensed"]:
            return f"no radiologist licensed in {jurisdiction} is on shift"
        return (
            f"no radiologist licensed in {jurisdiction} with privileges at "
            f"{study.facility.name} is on shift"
        )
    return eligibility.unroutable_summary(verdicts, jurisdiction=jurisdiction)


def _mark_unroutable(
    study: Study,
    rule: RoutingRule | None,
    *,
    tier: int,
    now: dt.datetime,
    reason: str,
    verdicts: Sequence[Verdict],
) -> RoutingDecision | None:
    if study.status == StudyStatus.OFFERED and not study_has_open_offer(study_id=study.pk):
        # On nobody's worklist any more: back to ready, so the retry routes it afresh.
        study_transition(
            study_id=study.pk,
            locked=study,
            to_status=StudyStatus.READY,
            at=now,
            reason="unroutable: no reader left to offer it to",
        )
    routing = StudyRouting.objects.filter(study=study).first()
    first_time = routing is None or routing.unroutable_at is None
    changed = first_time or (routing is not None and routing.unroutable_reason != reason[:500])
    since = now if routing is None or routing.unroutable_at is None else routing.unroutable_at
    _routing_save(
        StudyRouting(
            study=study,
            rule=rule,
            tier=tier,
            relative_value=rule.relative_value if rule else 1,
            # Retried periodically: a reader may come on shift or be credentialed.
            next_escalation_at=now + UNROUTABLE_RETRY,
            unroutable_at=since,
            unroutable_reason=reason[:500],
            decided_at=now,
        )
    )
    alert_raise(
        kind=Alert.Kind.UNROUTABLE,
        dedupe_key=f"unroutable:{study.pk}:{since.isoformat()}",
        message=(
            f"Study {study.accession_number or study.study_instance_uid} from "
            f"{study.facility.name} cannot be routed: {reason}."
        ),
        reading_group=study.facility.reading_group,
        study=study,
    )
    if not changed:
        return None
    return RoutingDecision.objects.create(
        study=study,
        rule=rule,
        rule_name=rule.name if rule else "",
        tier=tier,
        outcome=RoutingDecision.Outcome.UNROUTABLE,
        reason=reason[:500],
        verdicts=[v.as_dict() for v in verdicts],
        created_at=now,
    )


def study_escalate(*, study_id: int, now: dt.datetime | None = None) -> RoutingDecision | None:
    """Act on a study whose routing timer is due: widen the offer to the next tier,
    move an unanswered auto-assignment to the next reader, retry an unroutable
    study, or clear the timer of a study someone has claimed."""
    now = now or timezone.now()
    with transaction.atomic():
        study = _lock_study(study_id, skip_locked=True)
        if study is None:
            return None  # another sweeper holds it
        # Read again now that we hold the study's lock, not with it: routing rows are
        # only written under that lock, but the row joined to the locking statement is
        # from its snapshot, taken before the lock was granted.  A sweeper that
        # escalated the study in between (without touching the study row, so nothing
        # made PostgreSQL re-read it) would leave us a due timer and an old tier, and
        # the study would be escalated twice (found by bench/routing's fault test).
        routing: StudyRouting | None = StudyRouting.objects.filter(study_id=study.pk).first()
        if (
            routing is None
            or routing.next_escalation_at is None
            or routing.next_escalation_at > now
        ):
            return None
        if study.status == StudyStatus.READY:
            routing.next_escalation_at = None
            routing.save(update_fields=["next_escalation_at"])
            return _route_afresh(study, now=now)
        if study.status != StudyStatus.OFFERED:
            routing.next_escalation_at = None
            routing.save(update_fields=["next_escalation_at"])
            return None
        rule = _routed_by(study, routing)
        if rule is None:
            return _mark_unroutable(
                study,
                None,
                tier=routing.tier,
                now=now,
                verdicts=[],
                reason="its routing rule was deleted",
            )
        if rule.delivery == RoutingRule.Delivery.AUTO_ASSIGN:
            offers_withdraw(study_id=study.pk, at=now, reason=NOT_ACCEPTED)
            passed = readers_withdrawn_for(study_ids=[study.pk], reasons=PASSED_ON)
            return _offer_from(
                study,
                rule,
                tier=routing.tier,
                now=now,
                skip=passed.get(study.pk, frozenset()),
                outcome=RoutingDecision.Outcome.ESCALATED,
            )
        return _escalate_offer(study, rule, routing, now=now)


def _escalate_offer(
    study: Study, rule: RoutingRule, routing: StudyRouting, *, now: dt.datetime
) -> RoutingDecision | None:
    """The timer of a study on offer is due: judge it again with the facts routing
    uses, up to the next tier (at the widest tier, that tier again).

    Open offers whose readers KEEP_OFFER no longer keeps (off shift, a license
    lapsed or cut to a scope the read does not allow, privileges gone) are
    withdrawn; the readers eligible now (ROUTE) who have no open offer are offered
    it, at the nearest tier from the next one where there are any.  If nobody new
    is, the study stays where it is and its timer is re-armed while an eligible
    reader holds an open offer, or while its remaining offers' readers (paused, at
    their cap) may still take it and its SLA is not at risk; otherwise it is
    unroutable, with a reason an admin can act on.  Never because timers ran out."""
    facts = selectors.study_facts(study=study, rule=rule, now=now)
    candidates = _candidates(study, facts, now=now)
    by_id = {c.radiologist_id: c for c in candidates}
    offered = study_open_offer_readers(study_id=study.pk)
    # A reader the gathering did not find is off shift, or holds no license in the
    # jurisdiction or no privilege at the facility: KEEP_OFFER fails them too.
    lapsed = sorted(
        r
        for r in offered
        if r not in by_id or not eligibility.KEEP_OFFER.judge(facts, by_id[r]).eligible
    )
    for reader_id in lapsed:
        offers_withdraw(
            study_id=study.pk, radiologist_id=reader_id, at=now, reason=NO_LONGER_ELIGIBLE
        )
    kept = offered - set(lapsed)
    widest = rule.widest_tier
    tier, verdicts, fresh = _widen(
        facts, candidates, tier=min(routing.tier + 1, widest), rule=rule, skip=kept
    )
    if fresh:
        decision = _offer_many(
            [(study, rule, tier, verdicts, fresh)],
            now=now,
            outcome=RoutingDecision.Outcome.ESCALATED,
        )
        return decision[study.pk]
    at_risk = eligibility.sla_at_risk(
        received_at=study.received_at,
        due_at=study.sla_due_at,
        now=now,
        fractions=rule.widening_fractions(),
    )
    if any(v.eligible for v in verdicts) or (kept and not at_risk):
        _routing_save(
            StudyRouting(
                study=study,
                rule=rule,
                tier=widest,
                relative_value=routing.relative_value,
                next_escalation_at=now + _tier_wait(study, rule, tier=widest, now=now),
                unroutable_at=None,
                unroutable_reason="",
                decided_at=now,
            )
        )
        return None
    reason = unroutable_reason(study, verdicts, now=now)
    if kept:
        reason = f"SLA at risk and its offered readers cannot take it: {reason}"
    return _mark_unroutable(study, rule, tier=widest, now=now, reason=reason, verdicts=verdicts)


def routing_config_save(
    *,
    actor: User | None,
    instance: RoutingConfig,
    before: dict[str, Any] | None = None,
    ip_address: str | None = None,
) -> RoutingConfig:
    """Validate and save a routing rule or reader pool, audited.  The group's
    ``rules_version`` moves by database trigger, so the next study reads the rules
    afresh."""
    return audited_save(actor=actor, instance=instance, before=before, ip_address=ip_address)


def routing_config_delete(
    *, actor: User | None, instance: models.Model, ip_address: str | None = None
) -> None:
    """Delete a routing rule or pool, audited (refused while decisions refer to it)."""
    audited_delete(actor=actor, instance=instance, ip_address=ip_address)


def routing_config_set_related(
    *,
    instance: models.Model,
    name: str,
    values: Iterable[Any],
    actor: User | None = None,
    ip_address: str | None = None,
) -> None:
    """Replace a rule's facilities or subspecialties, or a pool's readers."""
    related_set(instance=instance, name=name, values=values, actor=actor, ip_address=ip_address)


def routing_timer_clear(*, study_id: int) -> None:
    """Stop the study's escalation timer: a reader holds it, or it is being routed
    afresh.  (A timer left running is harmless -- ``study_escalate`` clears the timer
    of a study it finds claimed -- but a claimed study shows no timer.)"""
    StudyRouting.objects.filter(study_id=study_id).update(next_escalation_at=None)


def routing_timer_restart(*, study: Study, at: dt.datetime) -> None:
    """Re-arm the timer of a study back on offer at ``at`` (a claim on it was
    released): the wait its tier has from ``at`` as routing sets it (the SLA's, at
    least the rule's floor; an auto-assignment's accept timeout).  ``study`` is
    locked, its routing row joined."""
    routing = selectors.study_routing(study=study)
    if routing is not None and routing.rule is not None:
        wait = _tier_wait(study, routing.rule, tier=routing.tier, now=at)
        StudyRouting.objects.filter(study_id=study.pk).update(next_escalation_at=at + wait)


def routing_timer_due_now(*, study_id: int, at: dt.datetime) -> None:
    """Make the study's escalation due at ``at`` (its auto-assigned reader declined):
    the sweep acts on it even if the caller's own escalation never runs."""
    StudyRouting.objects.filter(study_id=study_id).update(next_escalation_at=at)


def routing_sweep(*, now: dt.datetime | None = None, batch_size: int = 200) -> dict[str, int]:
    """Beat sweep: escalate every due study, and route ready studies whose routing
    task was lost.  Safe with several sweepers (rows are locked with SKIP LOCKED).
    With nothing due it is two small indexed reads."""
    now = now or timezone.now()
    due = list(selectors.escalations_due(now=now)[:batch_size])
    escalated = sum(1 for study_id in due if study_escalate(study_id=study_id, now=now))
    orphans = list(selectors.studies_unrouted(ready_before=now - ROUTE_GRACE, now=now)[:batch_size])
    size = max(1, settings.ROUTING_BATCH_SIZE)
    routed = 0
    for i in range(0, len(orphans), size):
        # In batches, as the routing task does; a study another worker holds is
        # waited for, then found routed.
        chunk = orphans[i : i + size]
        decided = studies_route(study_ids=chunk, batch_size=len(chunk), now=now)
        routed += sum(1 for pk in chunk if decided.get(pk) is not None)
    return {"escalated": escalated, "routed_late": routed}


def study_reroute(
    *,
    study_id: int,
    reason: str,
    now: dt.datetime | None = None,
    only_if_orphaned: bool = False,
) -> bool:
    """Route a study afresh (its priority or flags changed, or its readers left):
    open offers are withdrawn and the study goes back through its rules.  With
    ``only_if_orphaned``, only an offered study left with no open offer is
    re-routed, checked under its lock: of two sweepers that both saw it orphaned,
    the second finds it handled and does nothing."""
    now = now or timezone.now()
    with transaction.atomic():
        study = _lock_study(study_id)
        if study is None or study.status not in (StudyStatus.READY, StudyStatus.OFFERED):
            return False
        if only_if_orphaned and (
            study.status != StudyStatus.OFFERED or study_has_open_offer(study_id=study.pk)
        ):
            return False
        offers_withdraw(study_id=study.pk, at=now, reason=reason)
        if study.status == StudyStatus.OFFERED:
            study_transition(
                study_id=study.pk,
                to_status=StudyStatus.READY,
                at=now,
                reason=f"re-routing: {reason}",
            )
        routing_timer_clear(study_id=study.pk)
        study_route(study_id=study.pk, now=now)
    return True


def study_change_triage(
    *,
    study_id: int,
    actor: User | None,
    priority: int | None = None,
    flags: list[str] | None = None,
    ip_address: str | None = None,
) -> Study:
    """Change a study's priority and/or triage flags (e.g. set by AI), recompute its
    SLA due time, and re-route it if it is still waiting for a reader."""
    with transaction.atomic():
        study = (
            Study.objects.select_for_update(of=("self",))
            .select_related("facility")
            .get(pk=study_id)
        )
        changed = study_triage_set(
            study=study, actor=actor, priority=priority, flags=flags, ip_address=ip_address
        )
        if not changed:
            return study
        if study.status in (StudyStatus.READY, StudyStatus.OFFERED):
            enqueue("routing.reroute_study", study.pk, "priority or flags changed")
    return study


def offers_withdraw_ineligible(*, now: dt.datetime | None = None) -> int:
    """Withdraw open offers whose reader is no longer eligible (off shift, license or
    privilege lapsed or narrowed, deactivated), and re-route studies left with no
    offer.  Runs on a beat schedule of its own (OFFER_ELIGIBILITY_SWEEP_SECONDS): the
    backstop for time passing (a validity or shift that ends by itself); a change made
    through the network's services is judged at once (``readers_offers_recheck``)."""
    live = now is None  # beat: each re-route reads the clock when it holds its lock
    now = now or timezone.now()
    rows = selectors.offers_no_longer_eligible(now=now)
    return _offers_withdraw_and_reroute(
        rows, at=now, reroute_at=None if live else now, reason="reader no longer eligible"
    )


def readers_offers_recheck(*, radiologist_ids: Sequence[int], at: dt.datetime) -> int:
    """Judge these readers' open offers (on worklists or held by a claim) with the
    KEEP_OFFER policy at ``at``, withdraw those it no longer keeps and re-route the
    offered studies left with no open offer, in the caller's transaction: a license,
    privilege, shift, standing or subspecialty change takes effect before its
    service returns (the receiver of ``network.signals.eligibility_changed``).
    Returns how many offers were withdrawn."""
    ids = sorted(set(radiologist_ids))
    if not ids:
        return 0
    with transaction.atomic():
        rows = selectors.offers_no_longer_eligible(now=at, radiologist_ids=ids)
        return _offers_withdraw_and_reroute(
            rows,
            at=at,
            reroute_at=at,
            reason="reader no longer eligible (credentials, shift or standing changed)",
        )


def _offers_withdraw_and_reroute(
    rows: list[tuple[int, int]], *, at: dt.datetime, reroute_at: dt.datetime | None, reason: str
) -> int:
    """Withdraw the (offer id, study id) offers and re-route each offered study left
    with no open offer (checked again under its lock: ``only_if_orphaned``; a claimed
    study is left to its claim, whose release routes it if nobody is left)."""
    if not rows:
        return 0
    withdrawn = offers_withdraw(offer_ids=[pk for pk, _ in rows], at=at, reason=reason)
    studies = {study_id for _, study_id in rows}
    orphaned = studies - studies_with_open_offers(study_ids=studies)
    for study_id in sorted(orphaned):
        study_reroute(
            study_id=study_id,
            reason="its offered readers are no longer eligible",
            now=reroute_at,
            only_if_orphaned=True,
        )
    return withdrawn
