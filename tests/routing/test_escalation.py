"""Escalation from the SLA: tier timers derived from the time left to the study's
turnaround target, and "unroutable" only when nobody eligible is left -- never
because the timers ran out.  Timing runs through the real sweep on a frozen clock."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine
from django.forms import modelform_factory
from hypothesis import given
from hypothesis import strategies as st

from network.models import License, Radiologist, Shift
from routing.admin import WAIT_FIELDS, RoutingRuleForm
from routing.eligibility import AT_RISK_SHARE, escalation_problems, escalation_wait, sla_at_risk
from routing.models import RoutingDecision, RoutingRule, StudyRouting
from routing.services import (
    routing_sweep,
    routing_timer_restart,
    study_reroute,
    study_route,
)
from studies.models import Study
from studies.services import study_transition
from tests import factories as f
from tests.routing.conftest import NOW, make_reader
from worklist.models import Offer

MIN = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)
T0 = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)
DEFAULTS = {
    "fractions": (0.25, 0.5),
    "floor": dt.timedelta(seconds=60),
}


# --- the pure rule --------------------------------------------------------------


@pytest.mark.parametrize(
    ("tier", "target", "now", "cap", "expected"),
    [
        # Routine, 24 h target: widen at 6 h and 12 h, then re-judge at the risk
        # mark (18 h) and the due time (24 h), then every cap.
        (0, 24 * HOUR, T0, 6 * HOUR, 6 * HOUR),
        (1, 24 * HOUR, T0 + 6 * HOUR, 6 * HOUR, 6 * HOUR),
        (2, 24 * HOUR, T0 + 12 * HOUR, 6 * HOUR, 6 * HOUR),
        (2, 24 * HOUR, T0 + 18 * HOUR, 6 * HOUR, 6 * HOUR),
        (2, 24 * HOUR, T0 + 25 * HOUR, 6 * HOUR, 6 * HOUR),
        # A shorter cap shortens every step.
        (0, 24 * HOUR, T0, 2 * HOUR, 2 * HOUR),
        # Urgent, 2 h target: 30 min, then until 1 h, then the risk mark at 1.5 h.
        (0, 2 * HOUR, T0, HOUR, 30 * MIN),
        (1, 2 * HOUR, T0 + 30 * MIN, HOUR, 30 * MIN),
        (2, 2 * HOUR, T0 + 60 * MIN, HOUR, 30 * MIN),
        (2, 2 * HOUR, T0 + 100 * MIN, HOUR, 20 * MIN),
        # STAT, 30 min target, 3 min cap: minute-scale escalation.
        (0, 30 * MIN, T0, 3 * MIN, 3 * MIN),
        (1, 30 * MIN, T0 + 3 * MIN, 3 * MIN, 3 * MIN),
        # Late: a study routed after its first widening time waits the floor, and
        # an overdue study at the widest tier is judged again every cap.
        (0, 24 * HOUR, T0 + 10 * HOUR, 6 * HOUR, MIN),
        (1, 2 * HOUR, T0 + 59 * MIN + dt.timedelta(seconds=30), HOUR, MIN),
        (2, 30 * MIN, T0 + 2 * HOUR, 3 * MIN, 3 * MIN),
    ],
)
def test_escalation_wait_follows_the_sla(tier, target, now, cap, expected):
    assert (
        escalation_wait(tier=tier, received_at=T0, due_at=T0 + target, now=now, cap=cap, **DEFAULTS)
        == expected
    )


@given(
    tier=st.integers(0, 2),
    target_minutes=st.integers(1, 7 * 24 * 60),
    elapsed_seconds=st.integers(-3600, 30 * 24 * 3600),
    floor_seconds=st.integers(1, 600),
    cap_seconds=st.integers(600, 86400),
    first=st.floats(0.01, 0.98),
)
def test_escalation_wait_is_within_floor_and_cap_and_never_early(
    tier, target_minutes, elapsed_seconds, floor_seconds, cap_seconds, first
):
    fractions = (first, (first + 1) / 2)
    target = dt.timedelta(minutes=target_minutes)
    now = T0 + dt.timedelta(seconds=elapsed_seconds)
    floor, cap = dt.timedelta(seconds=floor_seconds), dt.timedelta(seconds=cap_seconds)
    wait = escalation_wait(
        tier=tier,
        received_at=T0,
        due_at=T0 + target,
        now=now,
        fractions=fractions,
        floor=floor,
        cap=cap,
    )
    assert floor <= wait <= cap
    if tier < 2:
        # Never widens before its fraction of the target has passed (unless capped).
        assert now + wait >= T0 + target * fractions[tier] or wait == cap


def test_the_sla_is_at_risk_past_the_last_widening_with_a_quarter_left():
    due = T0 + 24 * HOUR
    at = {"received_at": T0, "due_at": due, "fractions": (0.25, 0.5)}
    assert AT_RISK_SHARE == 0.25
    assert not sla_at_risk(now=T0 + 90 * MIN, **at)
    assert not sla_at_risk(now=T0 + 17 * HOUR, **at)
    assert sla_at_risk(now=T0 + 18 * HOUR + MIN, **at)
    assert sla_at_risk(now=due + HOUR, **at)
    # A late last widening: at risk only once past it.
    late = {**at, "fractions": (0.5, 0.9)}
    assert not sla_at_risk(now=T0 + 20 * HOUR, **late)
    assert sla_at_risk(now=T0 + 22 * HOUR, **late)


CAPS = {"wait_stat_seconds": 180, "wait_urgent_seconds": 3600, "wait_routine_seconds": 21600}


@pytest.mark.parametrize(
    ("fractions", "floor", "field"),
    [
        ([0.5, 0.25], 60, "escalate_fractions"),
        ([0.25, 0.25], 60, "escalate_fractions"),
        ([0, 0.5], 60, "escalate_fractions"),
        ([0.25, 1], 60, "escalate_fractions"),
        ([0.25], 60, "escalate_fractions"),
        ([0.1, 0.2, 0.3], 60, "escalate_fractions"),
        (["a", "b"], 60, "escalate_fractions"),
        ([True, 0.5], 60, "escalate_fractions"),
        ("0.25,0.5", 60, "escalate_fractions"),
        ([0.25, 0.5], 0, "min_tier_wait_seconds"),
        ([0.25, 0.5], 181, "min_tier_wait_seconds"),
    ],
)
def test_escalation_settings_are_refused_with_the_field(fractions, floor, field):
    problems = escalation_problems(fractions=fractions, floor_seconds=floor, caps=CAPS)
    assert list(problems) == [field]


def test_good_escalation_settings_pass():
    assert escalation_problems(fractions=[0.25, 0.5], floor_seconds=60, caps=CAPS) == {}
    assert escalation_problems(fractions=(0.1, 0.9), floor_seconds=180, caps=CAPS) == {}


# --- through the database and the real sweep --------------------------------------


def long_reader(group: Any, facility: Any, *, name: str, region: Any, **kwargs: Any) -> Any:
    """A reader on shift for two days from an hour before NOW (routine targets are 24 h)."""
    reader = make_reader(group, facility, name=name, region=region, on_shift=False, **kwargs)
    f.ShiftFactory(radiologist=reader, starts_at=NOW - HOUR, ends_at=NOW + 48 * HOUR)
    return reader


@pytest.fixture
def sla_rule(neuro_rule: RoutingRule) -> RoutingRule:
    """The neuro rule with the default escalation settings."""
    RoutingRule.objects.filter(pk=neuro_rule.pk).update(
        wait_stat_seconds=180,
        wait_urgent_seconds=3600,
        wait_routine_seconds=21600,
        escalate_fractions=[0.25, 0.5],
        min_tier_wait_seconds=60,
    )
    neuro_rule.refresh_from_db()
    return neuro_rule


@pytest.fixture
def three_tiers(group_a, facility_a, regions, sla_rule) -> dict[str, Any]:
    return {
        tier: long_reader(group_a, facility_a, name=f"dr_{tier}", region=regions[tier])
        for tier in ("local", "regional", "global")
    }


def a_study(facility: Any, *, priority: int, received_at: dt.datetime = NOW) -> Study:
    study = f.StudyFactory(
        facility=facility,
        modality="CT",
        body_part="HEAD",
        priority=priority,
        received_at=received_at,
    )
    return study_transition(study_id=study.pk, to_status="ready", at=received_at)


def open_offers(study: Study) -> set[str]:
    return set(
        Offer.objects.filter(study=study, withdrawn_at__isnull=True).values_list(
            "radiologist__user__username", flat=True
        )
    )


def sweep_at(at: dt.datetime) -> dict[str, int]:
    with time_machine.travel(at, tick=False):
        return routing_sweep()


def timer(study: Study) -> tuple[int, dt.datetime | None]:
    routing = StudyRouting.objects.get(study=study)
    return routing.tier, routing.next_escalation_at


@pytest.mark.parametrize(
    ("priority", "steps"),
    [
        # STAT (30 min target, cap 3 min): a tier every 3 minutes, then the widest
        # tier judged again every 3 minutes.
        (1, [(0, 3 * MIN), (1, 6 * MIN), (2, 9 * MIN), (2, 12 * MIN)]),
        # Urgent (2 h target, cap 1 h): widen at 25% and 50% of the target, then
        # judged again when the SLA turns at risk (75%), at the due time, then hourly.
        (2, [(0, 30 * MIN), (1, 60 * MIN), (2, 90 * MIN), (2, 120 * MIN), (2, 180 * MIN)]),
        # Routine (24 h target, cap 6 h): 6 h, 12 h, then 18 h, 24 h, 30 h.
        (3, [(0, 6 * HOUR), (1, 12 * HOUR), (2, 18 * HOUR), (2, 24 * HOUR), (2, 30 * HOUR)]),
    ],
)
def test_tiers_widen_at_the_sla_fractions_through_the_sweep(
    three_tiers, facility_a, priority, steps
):
    study = a_study(facility_a, priority=priority)
    with time_machine.travel(NOW, tick=False):
        study_route(study_id=study.pk)
    offered = {0: {"dr_local"}, 1: {"dr_local", "dr_regional"}}
    offered[2] = offered[1] | {"dr_global"}
    for tier, due in steps:
        assert timer(study) == (tier, NOW + due)
        assert open_offers(study) == offered[tier]
        assert sweep_at(NOW + due - dt.timedelta(seconds=1))["escalated"] == 0  # not yet
        sweep_at(NOW + due)
    # Never unroutable while eligible readers hold it, overdue or not.
    routing = StudyRouting.objects.get(study=study)
    assert routing.unroutable_at is None and routing.unroutable_reason == ""
    assert Study.objects.get(pk=study.pk).status == "offered"
    assert list(RoutingDecision.objects.filter(study=study).values_list("outcome", flat=True)) == [
        "offered",
        "escalated",
        "escalated",
    ]


def test_a_routine_study_is_not_unroutable_after_90_minutes(three_tiers, facility_a):
    # The issue: fixed waits walked a 24 h study through every tier in about 90
    # minutes and declared it unroutable with 22 hours left.
    study = a_study(facility_a, priority=3)
    with time_machine.travel(NOW, tick=False):
        study_route(study_id=study.pk)
    for minutes in range(0, 91, 5):
        sweep_at(NOW + minutes * MIN)
    routing = StudyRouting.objects.get(study=study)
    assert routing.tier == 0 and routing.unroutable_at is None
    assert routing.next_escalation_at == NOW + 6 * HOUR
    assert open_offers(study) == {"dr_local"}


def test_a_late_study_waits_only_the_floor_where_its_time_has_passed(three_tiers, facility_a):
    # Routed 10 h after arrival (say it was held): the first widening time (6 h)
    # has passed, so tier 0 gets the floor; tier 1 waits for the 12 h mark.
    received = NOW - 10 * HOUR
    study = a_study(facility_a, priority=3, received_at=received)
    with time_machine.travel(NOW, tick=False):
        study_route(study_id=study.pk)
    assert timer(study) == (0, NOW + MIN)
    sweep_at(NOW + MIN)
    assert timer(study) == (1, received + 12 * HOUR)


def test_nobody_eligible_at_any_tier_is_unroutable_at_the_timer(
    group_a, facility_a, regions, sla_rule
):
    # The only reader goes off shift at the widest tier and nobody else is on:
    # the timer finds no eligible reader, withdraws the offer and says why.
    only = long_reader(group_a, facility_a, name="dr_only", region=regions["global"])
    study = a_study(facility_a, priority=1)
    with time_machine.travel(NOW, tick=False):
        study_route(study_id=study.pk)
    assert timer(study) == (2, NOW + 3 * MIN)
    Shift.objects.filter(radiologist=only).update(ends_at=NOW + 2 * MIN)
    sweep_at(NOW + 3 * MIN)
    routing = StudyRouting.objects.get(study=study)
    assert routing.unroutable_at == NOW + 3 * MIN
    assert routing.unroutable_reason == "no radiologist of Group A is on shift"
    assert open_offers(study) == set()
    assert Study.objects.get(pk=study.pk).status == "ready"
    # The retry stays: a reader coming on shift gets it.
    f.ShiftFactory(radiologist=only, starts_at=NOW + 4 * MIN, ends_at=NOW + 12 * HOUR)
    sweep_at(NOW + 4 * MIN)
    assert open_offers(study) == {"dr_only"}
    assert StudyRouting.objects.get(study=study).unroutable_at is None


def test_at_the_last_tier_an_offer_to_a_reader_cut_to_preliminary_is_withdrawn_and_reoffered(
    group_a, facility_a, regions, sla_rule
):
    # The issue: the only open offer went to a reader whose license became
    # preliminary-only (the rule needs a final read); the study was declared
    # unroutable although an eligible reader was on shift.
    narrowed = long_reader(group_a, facility_a, name="dr_narrowed", region=regions["global"])
    study = a_study(facility_a, priority=1)
    with time_machine.travel(NOW, tick=False):
        study_route(study_id=study.pk)
    assert open_offers(study) == {"dr_narrowed"} and timer(study)[0] == 2
    License.objects.filter(radiologist=narrowed).update(scope=License.Scope.PRELIMINARY)
    arriving = make_reader(
        group_a, facility_a, name="dr_arriving", region=regions["regional"], on_shift=False
    )
    f.ShiftFactory(radiologist=arriving, starts_at=NOW + MIN, ends_at=NOW + 12 * HOUR)
    sweep_at(NOW + 3 * MIN)
    assert open_offers(study) == {"dr_arriving"}
    withdrawn = Offer.objects.get(study=study, radiologist=narrowed)
    assert withdrawn.withdrawn_reason == "reader no longer eligible"
    routing = StudyRouting.objects.get(study=study)
    assert routing.unroutable_at is None and routing.tier == 2
    assert routing.next_escalation_at == NOW + 6 * MIN
    decision = RoutingDecision.objects.filter(study=study).last()
    assert decision.outcome == "escalated" and decision.offered_to == [arriving.pk]


def test_offers_to_readers_who_cannot_take_it_now_keep_it_until_the_sla_is_at_risk(
    group_a, facility_a, regions, sla_rule
):
    # Paused readers keep their offers (KEEP_OFFER) but are not eligible to route
    # to: the study waits for them while the SLA allows, then admins are told.
    paused = long_reader(group_a, facility_a, name="dr_paused", region=regions["local"])
    study = a_study(facility_a, priority=2)  # 2 h target: at risk after 90 minutes
    with time_machine.travel(NOW, tick=False):
        study_route(study_id=study.pk)
    Radiologist.objects.filter(pk=paused.pk).update(is_available=False)
    sweep_at(NOW + 30 * MIN)  # tier 0 -> nobody new at any tier; not at risk
    routing = StudyRouting.objects.get(study=study)
    assert routing.unroutable_at is None and routing.tier == 2
    assert routing.next_escalation_at == NOW + 90 * MIN
    sweep_at(NOW + 90 * MIN)
    routing = StudyRouting.objects.get(study=study)
    assert routing.unroutable_at == NOW + 90 * MIN
    assert routing.unroutable_reason.startswith(
        "SLA at risk and its offered readers cannot take it: no eligible radiologist on shift"
    )
    assert "paused" in routing.unroutable_reason
    assert open_offers(study) == {"dr_paused"}  # someone may still claim it
    # The reader resumes: the retry finds them eligible and the flag is cleared.
    Radiologist.objects.filter(pk=paused.pk).update(is_available=True)
    sweep_at(NOW + 91 * MIN)
    routing = StudyRouting.objects.get(study=study)
    assert routing.unroutable_at is None and routing.unroutable_reason == ""


def test_a_released_study_gets_the_wait_its_sla_leaves_at_its_tier(three_tiers, facility_a):
    study = a_study(facility_a, priority=2)
    with time_machine.travel(NOW, tick=False):
        study_route(study_id=study.pk)
    locked = Study.objects.select_related("routing__rule").get(pk=study.pk)
    routing_timer_restart(study=locked, at=NOW + 10 * MIN)
    assert timer(study) == (0, NOW + 30 * MIN)  # the 25% mark, not a full cap
    routing_timer_restart(study=locked, at=NOW + 29 * MIN + dt.timedelta(seconds=30))
    assert timer(study) == (0, NOW + 30 * MIN + dt.timedelta(seconds=30))  # the floor


# --- auto-assign ---------------------------------------------------------------------


def test_auto_assign_never_reassigns_a_reader_who_let_the_study_time_out(
    three_tiers, facility_a, sla_rule, group_a, regions
):
    # The issue saw one study auto-assigned five times in eight minutes to the same
    # unresponsive reader, across re-routes and unroutable retries.
    RoutingRule.objects.filter(pk=sla_rule.pk).update(
        delivery="auto_assign", accept_timeout_seconds=60
    )
    study = a_study(facility_a, priority=1)
    with time_machine.travel(NOW, tick=False):
        study_route(study_id=study.pk)
    t = NOW
    for expected in ({"dr_local"}, {"dr_regional"}, {"dr_global"}):
        assert open_offers(study) == expected
        t += MIN
        sweep_at(t)  # not accepted in time
    routing = StudyRouting.objects.get(study=study)
    assert routing.unroutable_at == t
    assert routing.unroutable_reason.startswith(
        "each of the 3 eligible radiologist(s) on shift was auto-assigned it"
    )
    # Unroutable retries and a re-route do not hand it back to any of them.
    for _ in range(5):
        t += MIN
        sweep_at(t)
    with time_machine.travel(t, tick=False):
        study_reroute(study_id=study.pk, reason="readers changed")
    assert open_offers(study) == set()
    assert Offer.objects.filter(study=study).count() == 3
    # A new reader on shift is.
    long_reader(group_a, facility_a, name="dr_new", region=regions["global"])
    sweep_at(t + 2 * MIN)
    assert open_offers(study) == {"dr_new"}


def test_auto_assign_reoffers_a_reader_whose_offer_was_withdrawn_for_another_reason(
    three_tiers, facility_a, sla_rule
):
    # Only a time-out (or a decline) passes a reader over: a reader whose offer
    # went with a re-route is auto-assigned again.
    RoutingRule.objects.filter(pk=sla_rule.pk).update(delivery="auto_assign")
    study = a_study(facility_a, priority=1)
    with time_machine.travel(NOW, tick=False):
        study_route(study_id=study.pk)
        study_reroute(study_id=study.pk, reason="priority or flags changed")
    assert open_offers(study) == {"dr_local"}


# --- settings: API and admin -----------------------------------------------------------


def rule_body(group: Any, **overrides: Any) -> dict[str, Any]:
    return {
        "reading_group": group.pk,
        "name": "Knees",
        "subspecialties": ["msk"],
        **overrides,
    }


def test_a_new_rule_gets_the_default_escalation(api, group_admin, group_a):
    response = api(group_admin).post("/api/v1/routing-rules/", rule_body(group_a), format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["escalate_fractions"] == [0.25, 0.5]
    assert body["min_tier_wait_seconds"] == 60
    assert (body["wait_stat_seconds"], body["wait_urgent_seconds"]) == (180, 3600)
    assert body["wait_routine_seconds"] == 21600


@pytest.mark.parametrize(
    ("override", "field", "message"),
    [
        ({"escalate_fractions": [0.5, 0.25]}, "escalate_fractions", "increasing"),
        ({"escalate_fractions": [0.25, 1.5]}, "escalate_fractions", "between 0 and 1"),
        ({"escalate_fractions": [0.25]}, "escalate_fractions", "at least 2"),
        ({"escalate_fractions": "half"}, "escalate_fractions", "list"),
        ({"min_tier_wait_seconds": 0}, "min_tier_wait_seconds", "greater than or equal to 1"),
        ({"min_tier_wait_seconds": 200}, "min_tier_wait_seconds", "wait_stat_seconds"),
        (
            {"min_tier_wait_seconds": 120, "wait_urgent_seconds": 100},
            "min_tier_wait_seconds",
            "wait_urgent_seconds",
        ),
    ],
)
def test_bad_escalation_settings_get_a_400_naming_the_field(
    api, group_admin, group_a, override, field, message
):
    response = api(group_admin).post(
        "/api/v1/routing-rules/", rule_body(group_a, **override), format="json"
    )
    assert response.status_code == 400, response.content
    assert message in str(response.json()[field]), response.json()


def test_a_partial_update_is_judged_with_the_rules_other_settings(
    api, group_admin, group_a, sla_rule
):
    url = f"/api/v1/routing-rules/{sla_rule.pk}/"
    response = api(group_admin).patch(url, {"min_tier_wait_seconds": 181}, format="json")
    assert response.status_code == 400
    assert "wait_stat_seconds" in str(response.json()["min_tier_wait_seconds"])
    response = api(group_admin).patch(url, {"escalate_fractions": [0.1, 0.8]}, format="json")
    assert response.status_code == 200, response.content
    sla_rule.refresh_from_db()
    assert sla_rule.escalate_fractions == [0.1, 0.8]


@pytest.mark.django_db
def test_the_admin_form_refuses_bad_escalation_settings_on_their_fields():
    form_class = modelform_factory(
        RoutingRule,
        form=RoutingRuleForm,
        fields=["escalate_fractions", "min_tier_wait_seconds", *WAIT_FIELDS],
    )
    good = {"min_tier_wait_seconds": 60, **CAPS}
    form = form_class(data={"escalate_fractions": "[0.6, 0.3]", **good})
    assert not form.is_valid()
    assert "increasing" in str(form.errors["escalate_fractions"])
    form = form_class(
        data={"escalate_fractions": "[0.25, 0.5]", **good, "min_tier_wait_seconds": 999}
    )
    assert not form.is_valid()
    assert list(form.errors) == ["min_tier_wait_seconds"]
    form = form_class(data={"escalate_fractions": "[0.25, 0.5]", **good})
    assert form.is_valid(), form.errors


def test_a_rule_kept_within_the_region_never_goes_global(three_tiers, facility_a, sla_rule):
    # widest_tier = 1: the urgent study widens to the regional readers at 25 % of
    # its target, is then judged again at that tier (at risk, due, hourly), and the
    # global reader is never offered it.
    RoutingRule.objects.filter(pk=sla_rule.pk).update(widest_tier=1)
    study = a_study(facility_a, priority=2)
    with time_machine.travel(NOW, tick=False):
        study_route(study_id=study.pk)
    assert timer(study) == (0, NOW + 30 * MIN)
    for due in (30 * MIN, 90 * MIN, 120 * MIN, 180 * MIN):
        sweep_at(NOW + due)
        assert open_offers(study) == {"dr_local", "dr_regional"}
    assert timer(study)[0] == 1
    assert StudyRouting.objects.get(study=study).unroutable_at is None


def test_a_hyperlocal_rule_with_nobody_local_is_unroutable_not_offered_wider(
    group_a, facility_a, regions, sla_rule
):
    long_reader(group_a, facility_a, name="dr_regional", region=regions["regional"])
    RoutingRule.objects.filter(pk=sla_rule.pk).update(widest_tier=0)
    study = a_study(facility_a, priority=2)
    with time_machine.travel(NOW, tick=False):
        study_route(study_id=study.pk)
    routing = StudyRouting.objects.get(study=study)
    assert routing.unroutable_at is not None and open_offers(study) == set()
    RoutingRule.objects.filter(pk=sla_rule.pk).update(widest_tier=2)
    sweep_at(NOW + 2 * MIN)  # the unroutable retry, under the widened rule
    assert open_offers(study) == {"dr_regional"}
