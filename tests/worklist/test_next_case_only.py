"""Next-case-only rules: their studies are taken with "next case" (or assigned by a
group admin), never claimed by id, by the API, the worklist page or the study page."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from routing.models import RoutingRule
from routing.services import study_route
from studies.models import Study
from teleradiology.errors import Conflict
from tests import factories as f
from tests.routing.conftest import NOW, make_reader
from worklist.models import Offer
from worklist.services.claims import study_claim, study_claim_next

pytestmark = pytest.mark.django_db


def _next_case_only(**more):
    # Set before anything is routed: the routing rule is read with the study.
    RoutingRule.objects.filter(name="Neuro").update(next_case_only=True, **more)


def _offered(facility, *, modality="CT"):
    from studies.services import study_transition

    study = f.StudyFactory(facility=facility, modality=modality, body_part="HEAD", priority=1)
    study_transition(study_id=study.pk, to_status="ready", at=NOW)
    study_route(study_id=study.pk, now=NOW)
    return Study.objects.get(pk=study.pk)


def _signed_in(user):
    client = Client()
    client.force_login(user)
    return client


def test_a_claim_by_id_is_409_next_case_only_and_next_case_takes_it(api, tiered, facility_a):
    _next_case_only()
    study = _offered(facility_a)
    reader = api(tiered["local"].user)

    refused = reader.post(f"/api/v1/studies/{study.pk}/claim/")
    assert refused.status_code == 409
    assert refused.json()["code"] == "next_case_only"
    assert '"Next case"' in refused.json()["detail"]
    assert Study.objects.get(pk=study.pk).status == "offered"
    # Accepting is claiming by id too (the rule offers it to a pool, not to one reader).
    assert reader.post(f"/api/v1/studies/{study.pk}/accept/").status_code == 409

    taken = reader.post("/api/v1/worklist/next/")
    assert taken.status_code == 200 and taken.json()["id"] == study.pk
    held = Study.objects.get(pk=study.pk)
    assert held.status == "claimed" and held.assigned_radiologist == tiered["local"]


def test_a_study_not_on_my_worklist_is_not_found_not_next_case_only(api, tiered, facility_a):
    _next_case_only()
    study = _offered(facility_a)  # offered at the local tier only
    refused = api(tiered["regional"].user).post(f"/api/v1/studies/{study.pk}/claim/")
    assert refused.status_code == 404


def test_a_claimed_next_case_only_study_answers_next_case_only_to_every_claim_by_id(
    tiered, facility_a, group_a, regions
):
    """The answer does not depend on who won: a claim by id of it is never right."""
    _next_case_only()
    other = make_reader(group_a, facility_a, name="dr_other", region=regions["local"])
    study = _offered(facility_a)
    assert study_claim_next(radiologist=other).pk == study.pk
    with pytest.raises(Conflict) as refused:
        study_claim(study_id=study.pk, radiologist=tiered["local"])
    assert refused.value.code == "next_case_only"


def test_other_rules_studies_are_still_claimed_by_id(api, tiered, facility_a):
    study = _offered(facility_a)
    assert api(tiered["local"].user).post(f"/api/v1/studies/{study.pk}/claim/").status_code == 200


def test_an_auto_assigned_study_is_accepted_by_id(api, tiered, facility_a):
    # Offered to one reader who must answer: accepting it is no pick from a list.
    _next_case_only(delivery=RoutingRule.Delivery.AUTO_ASSIGN)
    study = _offered(facility_a)
    reader = Offer.objects.get(study=study, withdrawn_at__isnull=True).radiologist
    client = api(reader.user)
    rows = client.get("/api/v1/worklist/").json()["results"]
    assert [(r["id"], r["next_case_only"]) for r in rows] == [(study.pk, False)]
    response = client.post(f"/api/v1/studies/{study.pk}/accept/")
    assert response.status_code == 200, response.json()


def test_a_group_admin_still_assigns_it(api, tiered, facility_a, group_admin):
    _next_case_only()
    study = _offered(facility_a)
    response = api(group_admin).post(
        f"/api/v1/studies/{study.pk}/reassign/",
        {"radiologist": tiered["local"].pk},
        format="json",
    )
    assert response.status_code == 200, response.json()
    held = Study.objects.get(pk=study.pk)
    assert held.status == "claimed" and held.assigned_radiologist == tiered["local"]


def test_the_worklist_rows_show_next_case_only_instead_of_a_claim_button(
    api, tiered, facility_a, group_a
):
    # MR heads go by "next case" only (a rule before Neuro); CT heads are claimed by id.
    mr = RoutingRule.objects.create(
        reading_group=group_a,
        name="Neuro MR",
        position=5,
        modalities=["MR"],
        body_parts=["HEAD"],
        next_case_only=True,
    )
    mr.subspecialties.set([f.subspecialty("neuro")])
    plain = _offered(facility_a)
    only_next = _offered(facility_a, modality="MR")
    assert Offer.objects.get(study=only_next).rule == mr

    page = _signed_in(tiered["local"].user).get("/worklist/").content.decode()
    assert f'id="claim-{plain.pk}"' in page
    assert f'id="claim-{only_next.pk}"' not in page
    assert re.search(rf'id="next-only-{only_next.pk}"[^>]*>Next case only<', page)
    assert f'id="next-only-{plain.pk}"' not in page
    # The polled rows say the same.
    rows = _signed_in(tiered["local"].user).get("/worklist/rows/").content.decode()
    assert f'id="next-only-{only_next.pk}"' in rows and f'id="claim-{plain.pk}"' in rows
    # The API's rows carry the flag.
    flags = {
        r["id"]: r["next_case_only"]
        for r in api(tiered["local"].user).get("/api/v1/worklist/").json()["results"]
    }
    assert flags == {plain.pk: False, only_next.pk: True}


def test_the_pages_claim_button_is_refused_with_the_reason_and_the_study_page_has_none(
    tiered, facility_a
):
    _next_case_only()
    study = _offered(facility_a)
    client = _signed_in(tiered["local"].user)
    refused = client.post(f"/studies/{study.pk}/claim/", HTTP_HX_REQUEST="true")
    assert refused.status_code == 200
    body = refused.content.decode()
    assert "Next case" in body and 'role="alert"' in body
    assert Study.objects.get(pk=study.pk).status == "offered"

    page = client.get(f"/studies/{study.pk}/").content.decode()
    assert 'class="claim"' not in page
    assert 'id="next-only"' in page
