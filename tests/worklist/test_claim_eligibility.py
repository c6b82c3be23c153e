"""The claim's eligibility re-check reads its own facts for one reader and one study;
its verdict must be routing's (``why_not``) in every case, whatever lapsed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from network.models import CredentialStatus, FacilityPrivilege, License, Radiologist, Shift
from routing.models import RoutingRule, StudyRouting
from routing.selectors import why_not
from routing.services import study_route
from studies.models import Study
from studies.services import study_transition
from tests import factories as f
from tests.routing.conftest import NOW, make_reader
from worklist.services.claims import _claim_verdict

pytestmark = pytest.mark.django_db

YESTERDAY = NOW.date() - dt.timedelta(days=1)


def _licenses(reader: Radiologist, **changes: Any) -> None:
    License.objects.filter(radiologist=reader).update(**changes)


def _privileges(reader: Radiologist, **changes: Any) -> None:
    FacilityPrivilege.objects.filter(radiologist=reader).update(**changes)


def _claimed_elsewhere(reader: Radiologist, facility: Any) -> None:
    busy = f.StudyFactory(facility=facility)
    for status in ("ready", "offered"):
        study_transition(study_id=busy.pk, to_status=status)
    study_transition(study_id=busy.pk, to_status="claimed", assigned_radiologist=reader)


def _rule(**changes: Any) -> None:
    RoutingRule.objects.filter(name="Neuro").update(**changes)


# (name, reader options for make_reader, a change made after routing)
CASES: list[tuple[str, dict[str, Any], Callable[[Radiologist, Any], None]]] = [
    ("eligible", {}, lambda r, fac: None),
    ("license expired", {}, lambda r, fac: _licenses(r, valid_to=YESTERDAY)),
    ("license suspended", {}, lambda r, fac: _licenses(r, status=CredentialStatus.SUSPENDED)),
    ("license removed", {}, lambda r, fac: License.objects.filter(radiologist=r).delete()),
    ("preliminary only", {"scope": "preliminary"}, lambda r, fac: None),
    (
        "preliminary allowed",
        {"scope": "preliminary"},
        lambda r, fac: _rule(allow_preliminary=True),
    ),
    ("privilege expired", {}, lambda r, fac: _privileges(r, valid_to=YESTERDAY)),
    ("privilege revoked", {}, lambda r, fac: _privileges(r, status=CredentialStatus.REVOKED)),
    (
        "privilege removed",
        {},
        lambda r, fac: FacilityPrivilege.objects.filter(radiologist=r).delete(),
    ),
    ("off shift", {}, lambda r, fac: Shift.objects.filter(radiologist=r).delete()),
    (
        "shift ended",
        {},
        lambda r, fac: Shift.objects.filter(radiologist=r).update(ends_at=NOW),
    ),
    ("deactivated", {}, lambda r, fac: Radiologist.objects.filter(pk=r.pk).update(is_active=False)),
    ("paused", {}, lambda r, fac: Radiologist.objects.filter(pk=r.pk).update(is_available=False)),
    ("subspecialty gone", {}, lambda r, fac: r.subspecialties.clear()),
    ("at the cap", {"cap": 1}, _claimed_elsewhere),
    (
        "at the cap, STAT bypasses",
        {"cap": 1},
        lambda r, fac: (_rule(bypass_cap_for_stat=True), _claimed_elsewhere(r, fac)),
    ),
    (
        "general reader, general allowed",
        {},
        lambda r, fac: (
            r.subspecialties.set([f.subspecialty("general")]),
            _rule(allow_general=True),
        ),
    ),
    (
        "general reader, general not allowed",
        {},
        lambda r, fac: r.subspecialties.set([f.subspecialty("general")]),
    ),
    (
        "everything lapsed",
        {"cap": 1},
        lambda r, fac: (
            _licenses(r, valid_to=YESTERDAY),
            _privileges(r, status=CredentialStatus.PENDING),
            Shift.objects.filter(radiologist=r).delete(),
            _claimed_elsewhere(r, fac),
        ),
    ),
]


@pytest.mark.parametrize(("name", "options", "change"), CASES, ids=[c[0] for c in CASES])
def test_the_claims_verdict_is_routings(
    name, options, change, group_a, facility_a, regions, neuro_rule, ready_study
):
    reader = make_reader(group_a, facility_a, name="dr_case", region=regions["local"], **options)
    study_route(study_id=ready_study.pk, now=NOW)
    change(reader, facility_a)
    study = Study.objects.select_related("facility", "patient_jurisdiction", "routing__rule").get(
        pk=ready_study.pk
    )
    ours = _claim_verdict(study, reader, NOW)
    routings = why_not(study=study, radiologist_id=reader.pk, now=NOW)
    assert ours is not None and routings is not None
    assert (ours.eligible, ours.reasons, ours.scope) == (
        routings.eligible,
        routings.reasons,
        routings.scope,
    )
    # The table covers both outcomes.
    assert ours.eligible == (
        name
        in {
            "eligible",
            "preliminary allowed",
            "at the cap, STAT bypasses",
            "general reader, general allowed",
        }
    )


def test_a_reader_of_another_group_has_no_verdict_as_with_routing(
    group_c, facility_a, regions, neuro_rule, ready_study
):
    outsider = make_reader(group_c, facility_a, name="dr_outsider", region=regions["local"])
    study_route(study_id=ready_study.pk, now=NOW)
    study = Study.objects.select_related("facility", "patient_jurisdiction").get(pk=ready_study.pk)
    assert why_not(study=study, radiologist_id=outsider.pk, now=NOW) is None
    assert _claim_verdict(study, outsider, NOW) is None


def test_without_a_routing_row_the_rule_is_matched_afresh(
    tiered, facility_a, neuro_rule, ready_study
):
    assert not StudyRouting.objects.filter(study=ready_study).exists()
    study = Study.objects.select_related("facility", "patient_jurisdiction").get(pk=ready_study.pk)
    ours = _claim_verdict(study, tiered["local"], NOW)
    routings = why_not(study=study, radiologist_id=tiered["local"].pk, now=NOW)
    assert ours is not None and routings is not None and ours.eligible == routings.eligible


def test_the_recheck_is_two_statements(tiered, ready_study):
    study_route(study_id=ready_study.pk, now=NOW)
    study = Study.objects.select_related("facility", "patient_jurisdiction", "routing__rule").get(
        pk=ready_study.pk
    )
    with CaptureQueriesContext(connection) as captured:
        assert _claim_verdict(study, tiered["local"], NOW).eligible
    assert len(captured.captured_queries) == 2
