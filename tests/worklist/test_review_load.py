"""Review cases a reader has claimed count in their workload cap, as claimed studies
do: for claiming a study, for being offered new ones, on the operations page, and
(once, not twice) for claiming another review case."""

from __future__ import annotations

import pytest

from network.models import Radiologist
from review import services as review_services
from review.selectors import review_verdict_for
from routing.models import RoutingRule
from routing.services import study_route
from studies.models import Study
from studies.services import study_transition
from teleradiology.errors import NotPermitted
from tests import factories as f
from tests.reporting.conftest import ct_head, templates  # noqa: F401 - fixtures
from tests.review.conftest import (  # noqa: F401 - fixtures
    another_final,
    claimed,
    final,
    reader,
)
from tests.routing.conftest import NOW, make_reader
from turnaround.operations import reader_load
from worklist.models import Offer
from worklist.services.claims import study_claim, study_claim_next

pytestmark = pytest.mark.django_db


def _routed(facility, *, priority):
    study = f.StudyFactory(facility=facility, modality="CT", body_part="HEAD", priority=priority)
    study_transition(study_id=study.pk, to_status="ready", at=NOW)
    study_route(study_id=study.pk, now=NOW)
    return Study.objects.get(pk=study.pk)


def _offered_to(study) -> set[str]:
    return set(
        Offer.objects.filter(study=study, withdrawn_at__isnull=True).values_list(
            "radiologist__user__username", flat=True
        )
    )


@pytest.fixture
def stat_bypasses_the_cap(neuro_rule) -> None:
    # Before anything is routed, so that every routing of the test reads the rule so.
    RoutingRule.objects.filter(pk=neuro_rule.pk).update(bypass_cap_for_stat=True)


@pytest.fixture
def busy(group_a, facility_a, regions, tiered) -> Radiologist:
    """A local reader with room for one case."""
    return make_reader(group_a, facility_a, name="dr_busy", region=regions["local"], cap=1)


def test_a_reader_at_the_cap_through_a_review_case_is_refused_and_not_offered_studies(
    api,
    stat_bypasses_the_cap,
    busy,
    final,  # noqa: F811 - the imported fixture
    facility_a,
    group_a,
    tiered,
):
    waiting = _routed(facility_a, priority=3)
    assert _offered_to(waiting) == {"dr_local", "dr_busy"}
    # dr_busy takes a second opinion on dr_local's report: their one case.
    review = review_services.second_opinion_request(report_id=final.pk, actor=None)
    review_services.review_claim(review_id=review.pk, radiologist=busy)

    refused = api(busy.user).post(f"/api/v1/studies/{waiting.pk}/claim/")
    assert refused.status_code == 403
    assert refused.json()["code"] == "at_cap"
    assert "at the workload cap" in refused.json()["detail"]
    with pytest.raises(NotPermitted, match="at the workload cap"):
        study_claim_next(radiologist=busy)
    # Routing does not offer them new studies.
    assert _offered_to(_routed(facility_a, priority=3)) == {"dr_local"}
    # The operations page counts the review case in their load.
    load = {r.radiologist_id: r for r in reader_load(groups=[group_a], now=NOW)[0]}
    assert load[busy.pk].open_claims == 1

    # But the rule bypasses the cap for STAT: they are offered a STAT study and claim it.
    stat = _routed(facility_a, priority=1)
    assert "dr_busy" in _offered_to(stat)
    assert study_claim(study_id=stat.pk, radiologist=busy).assigned_radiologist == busy
    load = {r.radiologist_id: r for r in reader_load(groups=[group_a], now=NOW)[0]}
    assert load[busy.pk].open_claims == 2


def test_an_answered_review_case_frees_the_room(
    api,
    busy,
    final,  # noqa: F811 - the imported fixture
    facility_a,
):
    waiting = _routed(facility_a, priority=3)
    review = review_services.second_opinion_request(report_id=final.pk, actor=None)
    review_services.review_claim(review_id=review.pk, radiologist=busy)
    assert api(busy.user).post(f"/api/v1/studies/{waiting.pk}/claim/").status_code == 403
    review_services.second_opinion_answer(
        review_id=review.pk, radiologist=busy, opinion="agree", comments="Concur."
    )
    assert api(busy.user).post(f"/api/v1/studies/{waiting.pk}/claim/").status_code == 200


def test_a_claimed_review_case_is_counted_once_for_the_next_review_case(
    final,  # noqa: F811 - the imported fixture
    facility_a,
    tiered,
    ct_head,  # noqa: F811
):
    reviewer = tiered["global"]
    Radiologist.objects.filter(pk=reviewer.pk).update(workload_cap=2)
    reviewer.refresh_from_db()
    first = review_services.second_opinion_request(report_id=final.pk, actor=None)
    review_services.review_claim(review_id=first.pk, radiologist=reviewer)
    other = another_final(facility_a, tiered["local"], ct_head)
    second = review_services.second_opinion_request(report_id=other.pk, actor=None)
    verdict = review_verdict_for(review=second, radiologist=reviewer, now=NOW)
    assert verdict is not None and verdict.eligible  # one of two: room for one more
    review_services.review_claim(review_id=second.pk, radiologist=reviewer)
    third_study = another_final(facility_a, tiered["local"], ct_head)
    third = review_services.second_opinion_request(report_id=third_study.pk, actor=None)
    verdict = review_verdict_for(review=third, radiologist=reviewer, now=NOW)
    assert verdict is not None and not verdict.eligible
    assert "at_workload_cap" in [str(r) for r in verdict.reasons]
