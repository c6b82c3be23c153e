"""Routing rules through the API: group admins only, validated, audited; explanations."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from routing.models import RoutingRule
from routing.services import study_route
from tests.routing.conftest import NOW

pytestmark = pytest.mark.django_db


def payload(group, **overrides):
    return {
        "reading_group": group.pk,
        "name": "MSK knees",
        "position": 5,
        "modalities": ["mr"],
        "body_parts": ["knee"],
        "subspecialties": ["msk"],
        "wait_stat_seconds": 180,
        "description_pattern": "KNEE|MENISC",
        **overrides,
    }


def test_group_admin_creates_a_rule_and_it_is_audited(api, group_admin, group_a):
    response = api(group_admin).post("/api/v1/routing-rules/", payload(group_a), format="json")
    assert response.status_code == 201, response.content
    rule = RoutingRule.objects.get(pk=response.json()["id"])
    assert rule.modalities == ["MR"] and rule.body_parts == ["KNEE"]
    assert list(rule.subspecialties.values_list("code", flat=True)) == ["msk"]
    assert AuditEvent.objects.filter(
        object_type="routing.routingrule", action="create", actor=group_admin
    ).exists()


@pytest.mark.parametrize(
    ("override", "field", "message"),
    [
        ({"description_pattern": "KNEE(("}, "description_pattern", "regular expression"),
        ({"procedure_code_pattern": "[73"}, "procedure_code_pattern", "regular expression"),
        ({"wait_stat_seconds": 0}, "wait_stat_seconds", "greater than or equal to 1"),
        ({"wait_routine_seconds": -5}, "wait_routine_seconds", "greater than or equal to 1"),
        ({"subspecialties": ["astrology"]}, "subspecialties", "does not exist"),
        ({"subspecialties": []}, "subspecialties", "may not be empty"),
        ({"priorities": [9]}, "priorities", "1 = STAT"),
        ({"modalities": "CT"}, "modalities", "list"),
    ],
)
def test_invalid_rules_get_a_400_with_a_message(
    api, group_admin, group_a, override, field, message
):
    response = api(group_admin).post(
        "/api/v1/routing-rules/", payload(group_a, **override), format="json"
    )
    assert response.status_code == 400
    assert message in str(response.json()[field]), response.json()
    assert not RoutingRule.objects.exists()


def test_a_second_default_rule_is_refused(api, group_admin, group_a):
    client = api(group_admin)
    assert (
        client.post(
            "/api/v1/routing-rules/", payload(group_a, is_default=True, name="d1"), format="json"
        ).status_code
        == 201
    )
    second = client.post(
        "/api/v1/routing-rules/", payload(group_a, is_default=True, name="d2"), format="json"
    )
    assert second.status_code == 400


def test_other_roles_cannot_see_or_write_rules(
    api, staff_a, licensed_reader, other_admin, group_a, neuro_rule
):
    for user in (staff_a, licensed_reader.user):
        assert (
            api(user).post("/api/v1/routing-rules/", payload(group_a), format="json").status_code
            == 403
        )
        assert api(user).get("/api/v1/routing-rules/").json()["results"] == []
    assert api(other_admin).get(f"/api/v1/routing-rules/{neuro_rule.pk}/").status_code == 404


def test_routing_explanation_for_admins(api, group_admin, staff_a, tiered, ready_study):
    study_route(study_id=ready_study.pk, now=NOW)
    body = api(group_admin).get(f"/api/v1/studies/{ready_study.pk}/routing/").json()
    assert body["tier"] == 0
    (decision,) = body["decisions"]
    assert decision["outcome"] == "offered" and decision["rule_name"] == "Neuro"
    # Tier 0's candidates only: the wider tiers are considered when it escalates.
    assert [v["name"] for v in decision["verdicts"]] == ["Dr. dr_local"]
    why = (
        api(group_admin)
        .get(f"/api/v1/studies/{ready_study.pk}/routing/", {"radiologist": tiered["global"].pk})
        .json()["radiologist_verdict"]
    )
    assert why["tier"] == 2
    # Facility staff see their study, but not the routing internals.
    assert api(staff_a).get(f"/api/v1/studies/{ready_study.pk}/routing/").status_code == 404


def test_group_admins_read_their_groups_routing_decisions_in_the_admin(
    tiered, ready_study, group_admin, other_admin
):
    from django.test import Client

    from network.roles import ensure_role_groups
    from routing.models import RoutingDecision
    from routing.services import study_route

    ensure_role_groups()
    study_route(study_id=ready_study.pk, now=NOW)
    decision = RoutingDecision.objects.filter(study=ready_study).first()
    assert decision is not None

    mine, theirs = Client(), Client()
    mine.force_login(group_admin)
    theirs.force_login(other_admin)
    listing = mine.get("/admin/routing/routingdecision/")
    assert listing.status_code == 200
    assert f"/admin/routing/routingdecision/{decision.pk}/change/".encode() in listing.content
    assert mine.get(f"/admin/routing/routingdecision/{decision.pk}/change/").status_code == 200
    # Read-only, and another group's admin does not see it.
    assert mine.post(f"/admin/routing/routingdecision/{decision.pk}/delete/").status_code == 403
    other = theirs.get("/admin/routing/routingdecision/")
    assert f"/routingdecision/{decision.pk}/change/".encode() not in other.content
    assert theirs.get(f"/admin/routing/routingdecision/{decision.pk}/change/").status_code in (
        302,
        404,
    )
