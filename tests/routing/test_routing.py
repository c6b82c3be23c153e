"""Routing against the database: tiers, escalation, unroutable alerts, explanations."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from alerts.models import Alert
from routing import selectors
from routing.eligibility import Reason
from routing.models import RoutingDecision, RoutingRule, StudyRouting
from routing.selectors import why_not
from routing.services import (
    offers_withdraw_ineligible,
    routing_sweep,
    study_escalate,
    study_route,
)
from studies.models import Study
from tests import factories as f
from tests.routing.conftest import NOW, make_reader
from worklist.models import Offer

pytestmark = pytest.mark.django_db


def open_offers(study):
    return set(
        Offer.objects.filter(study=study, withdrawn_at__isnull=True).values_list(
            "radiologist__user__username", flat=True
        )
    )


def test_a_study_is_offered_first_to_the_hyperlocal_tier(tiered, ready_study, neuro_rule):
    decision = study_route(study_id=ready_study.pk, now=NOW)
    assert decision.outcome == "offered" and decision.tier == 0
    assert decision.rule == neuro_rule
    assert open_offers(ready_study) == {"dr_local"}
    study = Study.objects.get(pk=ready_study.pk)
    assert study.status == "offered" and study.offered_at == NOW
    routing = StudyRouting.objects.get(study=study)
    assert routing.tier == 0
    assert routing.next_escalation_at == NOW + dt.timedelta(seconds=120)
    # Every candidate considered is explained; the local reader ranked first.
    by_name = {v["name"]: v for v in decision.verdicts}
    assert by_name["Dr. dr_local"]["rank"] == 1


def test_routing_twice_offers_nothing_twice(tiered, ready_study):
    study_route(study_id=ready_study.pk, now=NOW)
    assert study_route(study_id=ready_study.pk, now=NOW) is None
    assert Offer.objects.filter(study=ready_study).count() == 1
    assert RoutingDecision.objects.filter(study=ready_study).count() == 1


def test_escalation_widens_tier_by_tier_and_the_timers_never_run_out(tiered, ready_study):
    # The neuro rule caps a STAT study's wait at a tier at 120 s (its 30-minute
    # target would allow 7.5 minutes): a tier every two minutes, then the widest
    # tier is judged again.  Readers eligible at it hold the study, so it is never
    # unroutable, however long nobody claims it.
    study_route(study_id=ready_study.pk, now=NOW)
    t = NOW
    expected = [
        ({"dr_local", "dr_regional"}, 1),
        ({"dr_local", "dr_regional", "dr_global"}, 2),
    ]
    for offers, tier in expected:
        t = StudyRouting.objects.get(study=ready_study).next_escalation_at
        assert t == NOW + dt.timedelta(seconds=120) * tier
        assert routing_sweep(now=t - dt.timedelta(seconds=1))["escalated"] == 0  # not yet
        assert routing_sweep(now=t)["escalated"] == 1
        assert open_offers(ready_study) == offers
        assert StudyRouting.objects.get(study=ready_study).tier == tier
    for _ in range(3):
        t = StudyRouting.objects.get(study=ready_study).next_escalation_at
        routing_sweep(now=t)
        routing = StudyRouting.objects.get(study=ready_study)
        assert routing.unroutable_at is None and routing.tier == 2
        assert routing.next_escalation_at == t + dt.timedelta(seconds=120)
    assert not Alert.objects.filter(kind="unroutable").exists()
    assert len(open_offers(ready_study)) == 3
    assert list(
        RoutingDecision.objects.filter(study=ready_study).values_list("outcome", flat=True)
    ) == ["offered", "escalated", "escalated"]


def test_a_tier_with_nobody_eligible_is_skipped_at_once(
    group_a, facility_a, regions, neuro_rule, ready_study
):
    make_reader(
        group_a, facility_a, name="dr_local_unlicensed", region=regions["local"], licensed=False
    )
    make_reader(group_a, facility_a, name="dr_regional", region=regions["regional"])
    decision = study_route(study_id=ready_study.pk, now=NOW)
    assert decision.tier == 1
    assert open_offers(ready_study) == {"dr_regional"}


def test_nobody_licensed_is_unroutable_at_once_with_a_reason_and_one_alert(
    group_a,
    facility_a,
    regions,
    neuro_rule,
    ready_study,
    django_capture_on_commit_callbacks,
    mailoutbox,
    group_admin,
):
    group_admin.email = "admin@example.test"
    group_admin.save()
    make_reader(group_a, facility_a, name="dr_ny_only", region=regions["local"], licensed=False)
    with django_capture_on_commit_callbacks(execute=True):
        decision = study_route(study_id=ready_study.pk, now=NOW)
    assert decision.outcome == "unroutable"
    assert decision.reason == "no radiologist licensed in US-TX is on shift"
    assert Study.objects.get(pk=ready_study.pk).status == "ready"
    assert not Offer.objects.filter(study=ready_study).exists()
    assert Alert.objects.filter(kind="unroutable").count() == 1
    assert len(mailoutbox) == 1 and "US-TX" in mailoutbox[0].body
    # Retried a minute later: still unroutable, no second alert, no duplicate decision.
    with django_capture_on_commit_callbacks(execute=True):
        routing_sweep(now=NOW + dt.timedelta(seconds=61))
    assert Alert.objects.filter(kind="unroutable").count() == 1
    assert RoutingDecision.objects.filter(study=ready_study).count() == 1


def test_an_unroutable_study_is_offered_when_a_reader_comes_on_shift(
    group_a, facility_a, regions, neuro_rule, ready_study
):
    reader = make_reader(
        group_a, facility_a, name="dr_late", region=regions["local"], on_shift=False
    )
    study_route(study_id=ready_study.pk, now=NOW)
    assert StudyRouting.objects.get(study=ready_study).unroutable_at == NOW
    f.ShiftFactory(radiologist=reader, starts_at=NOW, ends_at=NOW + dt.timedelta(hours=8))
    routing_sweep(now=NOW + dt.timedelta(seconds=61))
    assert open_offers(ready_study) == {"dr_late"}
    routing = StudyRouting.objects.get(study=ready_study)
    assert routing.unroutable_at is None


def test_no_offer_ever_goes_to_an_ineligible_reader(
    group_a, facility_a, regions, neuro_rule, ready_study
):
    make_reader(group_a, facility_a, name="ok", region=regions["local"])
    no_priv = make_reader(
        group_a, facility_a, name="no_priv", region=regions["local"], privileged=False
    )
    lapsed = make_reader(group_a, facility_a, name="lapsed", region=regions["local"])
    lapsed.privileges.update(valid_to=NOW.date() - dt.timedelta(days=1))
    make_reader(group_a, facility_a, name="msk", region=regions["local"], subs=("msk",))
    make_reader(group_a, facility_a, name="prelim", region=regions["local"], scope="preliminary")
    make_reader(group_a, facility_a, name="off", region=regions["local"], on_shift=False)
    decision = study_route(study_id=ready_study.pk, now=NOW)
    assert open_offers(ready_study) == {"ok"}
    reasons = {v["name"]: v["reasons"] for v in decision.verdicts}
    assert reasons["Dr. lapsed"] == [Reason.PRIVILEGE_EXPIRED]
    assert reasons["Dr. msk"] == [Reason.WRONG_SUBSPECIALTY]
    assert reasons["Dr. prelim"] == [Reason.PRELIMINARY_ONLY]
    # Off shift, or with no privilege at the facility at all: not plausible
    # candidates, so not gathered...
    assert "Dr. off" not in reasons and "Dr. no_priv" not in reasons
    study = Study.objects.get(pk=ready_study.pk)
    off = f.RadiologistFactory._meta.model.objects.get(user__username="off")
    # ...but explained on demand.
    assert why_not(study=study, radiologist_id=off.pk, now=NOW).reasons == (Reason.OFF_SHIFT,)
    assert why_not(study=study, radiologist_id=no_priv.pk, now=NOW).reasons == (
        Reason.NO_PRIVILEGE,
    )


def test_auto_assign_offers_the_best_reader_then_the_next(tiered, ready_study, neuro_rule):
    RoutingRule.objects.filter(pk=neuro_rule.pk).update(
        delivery="auto_assign", accept_timeout_seconds=90
    )
    study_route(study_id=ready_study.pk, now=NOW)
    assert open_offers(ready_study) == {"dr_local"}
    routing = StudyRouting.objects.get(study=ready_study)
    assert routing.next_escalation_at == NOW + dt.timedelta(seconds=90)
    study_escalate(study_id=ready_study.pk, now=routing.next_escalation_at)
    assert open_offers(ready_study) == {"dr_regional"}
    withdrawn = Offer.objects.get(study=ready_study, radiologist=tiered["local"])
    assert withdrawn.withdrawn_reason == "not accepted in time"


def test_a_claimed_study_stops_escalating(tiered, ready_study):
    from studies.services import study_transition

    study_route(study_id=ready_study.pk, now=NOW)
    study_transition(
        study_id=ready_study.pk, to_status="claimed", assigned_radiologist=tiered["local"]
    )
    due = StudyRouting.objects.get(study=ready_study).next_escalation_at
    routing_sweep(now=due)
    assert StudyRouting.objects.get(study=ready_study).next_escalation_at is None
    assert open_offers(ready_study) == {"dr_local"}


def test_a_ready_study_whose_task_was_lost_is_routed_by_the_sweep(tiered, ready_study):
    assert routing_sweep(now=NOW + dt.timedelta(seconds=10))["routed_late"] == 0  # grace
    assert routing_sweep(now=NOW + dt.timedelta(seconds=31))["routed_late"] == 1
    assert open_offers(ready_study) == {"dr_local"}


def test_gathering_facts_takes_the_same_queries_for_3_or_30_readers(
    group_a, facility_a, regions, neuro_rule
):
    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            facts = selectors.candidate_facts(
                facility=facility_a, jurisdiction_code="US-TX", max_tier=2, at=NOW
            )
        return len(ctx.captured_queries), len(facts)

    for n in range(3):
        make_reader(group_a, facility_a, name=f"a{n}", region=regions["local"])
    small = count()
    for n in range(27):
        make_reader(group_a, facility_a, name=f"b{n}", region=regions["regional"])
    large = count()
    assert small[1] == 3 and large[1] == 30
    assert small[0] == large[0] <= 5


def test_named_pools_override_geography(group_a, facility_a, regions, neuro_rule, ready_study):
    from routing.models import FacilityTierPool, ReaderPool

    far = make_reader(group_a, facility_a, name="dr_pool", region=regions["global"])
    make_reader(group_a, facility_a, name="dr_near", region=regions["local"])
    pool = ReaderPool.objects.create(reading_group=group_a, name="Dallas night pool")
    pool.radiologists.add(far)
    FacilityTierPool.objects.create(facility=facility_a, tier=0, pool=pool)
    study_route(study_id=ready_study.pk, now=NOW)
    assert open_offers(ready_study) == {"dr_pool"}


def test_credential_expiry_alerts_once(group_a, facility_a, regions):
    from routing.credentials import credentials_alert_expiring

    reader = make_reader(
        group_a,
        facility_a,
        name="dr_exp",
        region=regions["local"],
        licensed=False,
        privileged=False,
    )
    f.LicenseFactory(
        radiologist=reader, valid_from=dt.date(2025, 1, 1), valid_to=dt.date(2026, 6, 20)
    )
    f.LicenseFactory(
        radiologist=reader,
        jurisdiction=f.JurisdictionFactory(code="US-NY"),
        valid_from=dt.date(2025, 1, 1),
        valid_to=dt.date(2026, 9, 1),
    )
    f.PrivilegeFactory(
        radiologist=reader,
        facility=facility_a,
        valid_from=dt.date(2025, 1, 1),
        valid_to=dt.date(2026, 6, 3),
    )
    assert credentials_alert_expiring(today=dt.date(2026, 6, 1)) == 2
    assert credentials_alert_expiring(today=dt.date(2026, 6, 2)) == 0
    assert Alert.objects.filter(kind="credential_expiry", reading_group=group_a).count() == 2


def test_a_priority_change_recomputes_the_due_time_and_reroutes(
    tiered, ready_study, group_admin, api, django_capture_on_commit_callbacks
):
    from routing.models import RoutingRule

    study_route(study_id=ready_study.pk, now=NOW)
    # A rule that matches only studies flagged by triage, ahead of the neuro rule.
    flagged = RoutingRule.objects.create(
        reading_group=ready_study.facility.reading_group,
        name="AI: bleed",
        position=1,
        flags=["ai-bleed"],
    )
    flagged.subspecialties.set([f.subspecialty("neuro")])
    with time_machine.travel(NOW, tick=False), django_capture_on_commit_callbacks(execute=True):
        response = api(group_admin).post(
            f"/api/v1/studies/{ready_study.pk}/triage/",
            {"priority": 3, "flags": ["ai-bleed"]},
            format="json",
        )
    assert response.status_code == 200, response.content
    study = Study.objects.get(pk=ready_study.pk)
    assert study.priority == 3
    assert study.sla_due_at == study.received_at + dt.timedelta(
        minutes=study.facility.tat_routine_minutes
    )
    assert study.status == "offered"
    assert StudyRouting.objects.get(study=study).rule == flagged
    assert Offer.objects.filter(study=study, withdrawn_reason="priority or flags changed").exists()


def test_triage_needs_something_to_change(tiered, ready_study, group_admin, api, staff_a):
    url = f"/api/v1/studies/{ready_study.pk}/triage/"
    assert api(group_admin).post(url, {}, format="json").status_code == 400
    assert api(group_admin).post(url, {"priority": 7}, format="json").status_code == 400
    assert api(staff_a).post(url, {"priority": 1}, format="json").status_code == 404


def test_an_offer_to_a_reader_who_went_off_shift_is_withdrawn_and_the_study_rerouted(
    group_a, facility_a, regions, neuro_rule, ready_study
):
    from network.models import Shift

    leaving = make_reader(group_a, facility_a, name="dr_leaving", region=regions["local"])
    make_reader(group_a, facility_a, name="dr_other", region=regions["regional"])
    study_route(study_id=ready_study.pk, now=NOW)
    assert open_offers(ready_study) == {"dr_leaving"}
    Shift.objects.filter(radiologist=leaving).update(ends_at=NOW + dt.timedelta(minutes=1))
    assert offers_withdraw_ineligible(now=NOW + dt.timedelta(seconds=30)) == 0  # still on
    assert offers_withdraw_ineligible(now=NOW + dt.timedelta(minutes=2)) == 1
    assert open_offers(ready_study) == {"dr_other"}
    assert Offer.objects.get(study=ready_study, radiologist=leaving).withdrawn_reason == (
        "reader no longer eligible"
    )


def test_an_offer_whose_readers_license_lost_the_scope_the_rule_needs_is_withdrawn(
    group_a, facility_a, regions, neuro_rule, ready_study
):
    # The sweep judges with the KEEP_OFFER policy: a license cut to preliminary reads
    # on a final-read rule withdraws the offer (a claim would be refused for it),
    # while a pause does not (it passes with the pause).
    from network.models import License

    narrowed = make_reader(group_a, facility_a, name="dr_narrowed", region=regions["local"])
    paused = make_reader(group_a, facility_a, name="dr_paused", region=regions["local"])
    make_reader(group_a, facility_a, name="dr_other", region=regions["regional"])
    study_route(study_id=ready_study.pk, now=NOW)
    assert open_offers(ready_study) == {"dr_narrowed", "dr_paused"}
    assert not neuro_rule.allow_preliminary
    License.objects.filter(radiologist=narrowed).update(scope=License.Scope.PRELIMINARY)
    type(paused).objects.filter(pk=paused.pk).update(is_available=False)
    assert offers_withdraw_ineligible(now=NOW + dt.timedelta(seconds=5)) == 1
    assert open_offers(ready_study) == {"dr_paused"}


def test_unroutable_reasons_name_what_is_missing(
    group_a, facility_a, regions, neuro_rule, ready_study
):
    from routing.services import unroutable_reason

    assert unroutable_reason(ready_study, [], now=NOW) == "no radiologist of Group A is on shift"
    make_reader(
        group_a, facility_a, name="licensed_only", region=regions["local"], privileged=False
    )
    assert unroutable_reason(ready_study, [], now=NOW) == (
        "no radiologist licensed in US-TX with privileges at Facility A is on shift"
    )


def test_a_sweep_with_an_older_clock_withdraws_a_newer_offer_without_breaking(
    tiered, neuro_rule, ready_study
):
    # A sweeper reads the clock, then another process offers the study; the
    # sweeper's withdrawal must not date the offer's end before its start.
    from routing.services import study_reroute

    study_route(study_id=ready_study.pk, now=NOW)
    study_reroute(study_id=ready_study.pk, reason="readers left", now=NOW - dt.timedelta(seconds=2))
    first = Offer.objects.filter(study=ready_study).order_by("id").first()
    assert first is not None
    assert first.withdrawn_at == first.offered_at == NOW
