"""Routing keeps each group's rules in memory, and reads them again as soon as they
change, by whatever path: the rules decide who may read a study, so a stale copy
must never be used."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from routing.models import RoutingDecision
from routing.services import study_route
from studies.services import study_transition
from tests import factories as f
from tests.routing.conftest import NOW

pytestmark = pytest.mark.django_db


def head_ct(facility: Any) -> Any:
    study = f.StudyFactory(
        facility=facility,
        modality="CT",
        body_part="HEAD",
        priority=3,
        received_at=NOW - dt.timedelta(minutes=1),
    )
    return study_transition(study_id=study.pk, to_status="ready", at=NOW)


def rule_reads(queries: CaptureQueriesContext) -> int:
    return sum('FROM "routing_routingrule"' in q["sql"] for q in queries.captured_queries)


def route(study: Any) -> RoutingDecision:
    decision = study_route(study_id=study.pk, now=NOW)
    assert decision is not None
    return decision


def test_unchanged_rules_are_not_read_again(tiered, facility_a):
    assert route(head_ct(facility_a)).rule_name == "Neuro"
    with CaptureQueriesContext(connection) as queries:
        assert route(head_ct(facility_a)).rule_name == "Neuro"
    assert rule_reads(queries) == 0


def test_a_rule_changed_by_plain_sql_applies_to_the_next_study(tiered, facility_a, neuro_rule):
    assert route(head_ct(facility_a)).rule_name == "Neuro"
    with connection.cursor() as cursor:  # not through the ORM: no signal would fire
        cursor.execute(
            "UPDATE routing_routingrule SET is_active = %s WHERE id = %s", [False, neuro_rule.pk]
        )
    with CaptureQueriesContext(connection) as queries:
        assert route(head_ct(facility_a)).rule_name == "Default"
    assert rule_reads(queries) == 1


def test_a_changed_subspecialty_requirement_applies_to_the_next_study(
    tiered, facility_a, neuro_rule
):
    first = route(head_ct(facility_a))
    assert first.outcome == "offered" and first.offered_to
    neuro_rule.subspecialties.set([f.subspecialty("msk")])  # nobody on shift reads MSK
    second = route(head_ct(facility_a))
    assert second.rule_name == "Neuro"
    assert second.outcome == "unroutable"
    assert all("wrong_subspecialty" in v["reasons"] for v in second.verdicts)
