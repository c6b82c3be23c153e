"""Releasing a claim re-checks the releaser (KEEP_OFFER): a reader who may no longer
read the study does not get it back on their worklist, and a study left with nobody
is routed again in the same transaction."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.utils import timezone

from network.models import CredentialStatus, License, Radiologist, Shift
from routing.models import StudyRouting
from routing.services import study_route
from studies.models import Study
from tests.routing.conftest import NOW, make_reader
from worklist.models import Offer
from worklist.services.claims import claims_release_stale, study_claim, study_release

pytestmark = pytest.mark.django_db


def _open_offers(study) -> dict[str, bool]:
    """Reader name -> whether the open offer is on their worklist (not held)."""
    return {
        o.radiologist.user.username: o.held_at is None
        for o in Offer.objects.filter(study=study, withdrawn_at__isnull=True).select_related(
            "radiologist__user"
        )
    }


def _worklist(api, reader) -> list[int]:
    return [r["id"] for r in api(reader.user).get("/api/v1/worklist/").json()["results"]]


@pytest.fixture
def second_local(group_a, facility_a, regions, tiered):
    return make_reader(group_a, facility_a, name="dr_local2", region=regions["local"])


@pytest.fixture
def offered(tiered, second_local, ready_study):
    study_route(study_id=ready_study.pk, now=NOW)
    study = Study.objects.get(pk=ready_study.pk)
    assert _open_offers(study) == {"dr_local": True, "dr_local2": True}
    return study


def test_a_releaser_whose_shift_ended_loses_their_offer_the_others_get_it_back(
    api, tiered, second_local, offered
):
    reader = tiered["local"]
    study_claim(study_id=offered.pk, radiologist=reader)
    Shift.objects.filter(radiologist=reader).update(ends_at=timezone.now())
    response = api(reader.user).post(
        f"/api/v1/studies/{offered.pk}/release/", {"reason": "end of shift"}, format="json"
    )
    assert response.status_code == 200 and response.json()["status"] == "offered"
    assert _open_offers(offered) == {"dr_local2": True}
    mine = Offer.objects.get(study=offered, radiologist=reader)
    assert mine.withdrawn_at is not None and "off shift" in mine.withdrawn_reason
    assert _worklist(api, reader) == []
    assert _worklist(api, second_local) == [offered.pk]
    # The remaining readers get a full tier wait from the release.
    routing = StudyRouting.objects.get(study=offered)
    assert routing.next_escalation_at is not None
    assert routing.next_escalation_at > timezone.now() + dt.timedelta(seconds=60)


def test_an_eligible_releaser_gets_it_back_and_so_does_a_paused_one(
    api, tiered, second_local, offered
):
    reader = tiered["local"]
    study_claim(study_id=offered.pk, radiologist=reader)
    study_release(study_id=offered.pk, radiologist=reader, reason="wrong patient history")
    assert _open_offers(offered) == {"dr_local": True, "dr_local2": True}
    # A pause holds offers, it does not withdraw them (KEEP_OFFER): the pause refuses
    # the claim, with its reason, and passes.
    study_claim(study_id=offered.pk, radiologist=reader)
    Radiologist.objects.filter(pk=reader.pk).update(is_available=False)
    study_release(study_id=offered.pk, radiologist=reader, reason="pausing")
    assert _open_offers(offered) == {"dr_local": True, "dr_local2": True}


def test_the_last_reader_on_offer_releasing_without_a_license_reroutes_it_at_once(
    api, tiered, ready_study
):
    study_route(study_id=ready_study.pk, now=NOW)
    reader = tiered["local"]
    study_claim(study_id=ready_study.pk, radiologist=reader)
    License.objects.filter(radiologist=reader).update(status=CredentialStatus.SUSPENDED)

    response = api(reader.user).post(
        f"/api/v1/studies/{ready_study.pk}/release/", {"reason": "license"}, format="json"
    )
    # Answered after the re-route: offered again, to readers who may read it.
    assert response.status_code == 200 and response.json()["status"] == "offered"
    study = Study.objects.get(pk=ready_study.pk)
    offers = _open_offers(study)
    assert offers and "dr_local" not in offers
    assert set(offers) <= {"dr_regional", "dr_global"}
    mine = Offer.objects.get(study=study, radiologist=reader)
    assert "suspended" in mine.withdrawn_reason
    transitions = list(study.transitions.values_list("to_status", "reason"))
    assert [t for t, _ in transitions[-3:]] == ["offered", "ready", "offered"]
    assert transitions[-2][1].startswith("re-routing: released")
    assert _worklist(api, reader) == []


def test_the_idle_claim_sweep_re_checks_the_reader_too(tiered, second_local, offered, settings):
    settings.STALE_CLAIM_MINUTES = {1: 20, 2: 60, 3: 240}
    reader = tiered["local"]
    study_claim(study_id=offered.pk, radiologist=reader)
    # The reader's shift ends ten minutes in; the claim goes stale at twenty.
    Shift.objects.filter(radiologist=reader).update(ends_at=NOW + dt.timedelta(minutes=10))
    with time_machine.travel(NOW + dt.timedelta(minutes=21), tick=False):
        assert claims_release_stale() == [offered.pk]
    assert _open_offers(offered) == {"dr_local2": True}
