"""A study's timeline, scripted step by step with the clock moved by time-machine."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine

from reporting.models import Addendum, Report, ReportTemplate
from routing.models import RoutingDecision
from studies.services import study_transition
from tests import factories as f

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 6, 1, 14, 0, tzinfo=dt.UTC)


@pytest.fixture
def lived_study(facility_a: Any, licensed_reader: Any) -> Any:
    """Received, ready after 60 s, offered 30 s later, escalated after 120 s, claimed
    90 s later, preliminary after 300 s, final after 300 s more, an addendum an hour on."""
    with time_machine.travel(T0, tick=False) as clock:
        study = f.StudyFactory(facility=facility_a, priority=1)
        clock.shift(60)
        study_transition(study_id=study.pk, to_status="ready")
        clock.shift(30)
        study_transition(study_id=study.pk, to_status="offered")
        RoutingDecision.objects.create(
            study=study, tier=0, outcome="offered", created_at=T0 + dt.timedelta(seconds=90)
        )
        clock.shift(120)
        RoutingDecision.objects.create(
            study=study,
            tier=1,
            outcome="escalated",
            reason="no claim within 120 s",
            created_at=T0 + dt.timedelta(seconds=210),
        )
        clock.shift(90)
        study_transition(
            study_id=study.pk, to_status="claimed", assigned_radiologist=licensed_reader
        )
        clock.shift(300)
        study_transition(study_id=study.pk, to_status="preliminary")
        clock.shift(300)
        study = study_transition(study_id=study.pk, to_status="final")
        clock.shift(3600)
        template = ReportTemplate.objects.create(code="ct-head", name="CT head", schema={})
        report = Report.objects.create(
            study=study,
            template=template,
            author=licensed_reader,
            status="final",
            impression="No acute findings.",
            signed_at=T0 + dt.timedelta(seconds=900),
            signed_by=licensed_reader,
        )
        Addendum.objects.create(
            report=report,
            number=1,
            text="Comparison with prior added.",
            signed_by=licensed_reader,
            signed_at=T0 + dt.timedelta(seconds=4500),
        )
    return study


def test_timeline_lists_each_step_in_order_with_its_measures(
    api: Any, staff_a: Any, lived_study: Any
) -> None:
    response = api(staff_a).get(f"/api/v1/studies/{lived_study.pk}/timeline/")

    assert response.status_code == 200, response.content
    body = response.json()
    assert [e["event"] for e in body["events"]] == [
        "received",
        "ready",
        "offered",
        "escalated",
        "claimed",
        "preliminary",
        "final",
        "addendum",
    ]
    at = {e["event"]: dt.datetime.fromisoformat(e["at"]) for e in body["events"]}
    assert at["received"] == T0
    assert at["escalated"] - T0 == dt.timedelta(seconds=210)
    assert at["final"] - T0 == dt.timedelta(seconds=900)
    assert dt.datetime.fromisoformat(body["first_offered_at"]) - T0 == dt.timedelta(seconds=90)
    assert [(e["tier"], e["reason"]) for e in body["escalations"]] == [(1, "no claim within 120 s")]
    assert [a["number"] for a in body["addenda"]] == [1]
    assert body["measures"] == {
        "received_to_final": 900.0,
        "ready_to_claimed": 240.0,
        "claimed_to_final": 600.0,
    }
    # STAT target is 30 minutes; final after 15.
    assert body["within_target"] is True


def test_timeline_of_a_study_in_progress_has_open_measures(
    api: Any, group_admin: Any, facility_a: Any
) -> None:
    with time_machine.travel(T0, tick=False) as clock:
        study = f.StudyFactory(facility=facility_a, priority=1)
        clock.shift(45)
        study_transition(study_id=study.pk, to_status="ready")

    body = api(group_admin).get(f"/api/v1/studies/{study.pk}/timeline/").json()

    assert [e["event"] for e in body["events"]] == ["received", "ready"]
    assert body["first_offered_at"] is None
    assert body["measures"] == {
        "received_to_final": None,
        "ready_to_claimed": None,
        "claimed_to_final": None,
    }
    assert body["within_target"] is None


@pytest.mark.parametrize("who", ["staff_b", "other_admin", "unlicensed_reader"])
def test_timeline_outside_the_callers_reach_is_not_found(
    api: Any, lived_study: Any, who: str, request: Any
) -> None:
    user = request.getfixturevalue(who)
    user = getattr(user, "user", user)  # a reader fixture is the Radiologist

    response = api(user).get(f"/api/v1/studies/{lived_study.pk}/timeline/")

    assert response.status_code == 404


def test_timeline_needs_a_signed_in_user(api: Any, lived_study: Any) -> None:
    assert api(None).get(f"/api/v1/studies/{lived_study.pk}/timeline/").status_code in (401, 403)
