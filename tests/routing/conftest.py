"""A small network around facility A (Dallas, US-TX): readers at each tier."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from routing.models import RoutingRule
from tests import factories as f

NOW = dt.datetime(2026, 6, 1, 14, 0, tzinfo=dt.UTC)


def make_reader(
    group: Any,
    facility: Any,
    *,
    name: str,
    region: Any,
    subs=("neuro",),
    licensed: bool = True,
    privileged: bool = True,
    on_shift: bool = True,
    scope: str = "final",
    cap: int = 5,
) -> Any:
    reader = f.RadiologistFactory(
        user=f.UserFactory(username=name),
        reading_group=group,
        home_region=region,
        subspecialties=list(subs),
        workload_cap=cap,
    )
    if licensed:
        f.LicenseFactory(
            radiologist=reader,
            jurisdiction=facility.jurisdiction,
            scope=scope,
            valid_from=dt.date(2025, 1, 1),
            valid_to=dt.date(2099, 12, 31),
        )
    if privileged:
        f.PrivilegeFactory(
            radiologist=reader,
            facility=facility,
            valid_from=dt.date(2025, 1, 1),
            valid_to=dt.date(2099, 12, 31),
        )
    if on_shift:
        f.ShiftFactory(
            radiologist=reader,
            starts_at=NOW - dt.timedelta(hours=4),
            ends_at=NOW + dt.timedelta(hours=4),
        )
    return reader


@pytest.fixture
def regions(db: Any) -> dict[str, Any]:
    return {
        "local": f.RegionFactory(code="us-tx-north", name="North Texas", country="US"),
        "regional": f.RegionFactory(code="us-northeast", name="US Northeast", country="US"),
        "global": f.RegionFactory(code="in-south", name="South India", country="IN"),
    }


@pytest.fixture
def neuro_rule(group_a: Any) -> RoutingRule:
    rule = RoutingRule.objects.create(
        reading_group=group_a,
        name="Neuro",
        position=10,
        modalities=["CT", "MR"],
        body_parts=["HEAD"],
        wait_stat_seconds=120,
        wait_urgent_seconds=300,
        wait_routine_seconds=600,
    )
    rule.subspecialties.set([f.subspecialty("neuro")])
    default = RoutingRule.objects.create(
        reading_group=group_a, name="Default", is_default=True, allow_general=True
    )
    default.subspecialties.set([f.subspecialty("general")])
    return rule


@pytest.fixture
def tiered(group_a: Any, facility_a: Any, regions: Any, neuro_rule: Any) -> dict[str, Any]:
    return {
        "local": make_reader(group_a, facility_a, name="dr_local", region=regions["local"]),
        "regional": make_reader(
            group_a, facility_a, name="dr_regional", region=regions["regional"]
        ),
        "global": make_reader(group_a, facility_a, name="dr_global", region=regions["global"]),
    }


@pytest.fixture
def ready_study(facility_a: Any) -> Any:
    from studies.services import study_transition

    study = f.StudyFactory(
        facility=facility_a,
        modality="CT",
        body_part="HEAD",
        priority=1,
        received_at=NOW - dt.timedelta(minutes=1),
    )
    return study_transition(study_id=study.pk, to_status="ready", at=NOW)
