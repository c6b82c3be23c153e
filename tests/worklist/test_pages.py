"""The radiologist's pages through Django's test client (the browser tests drive htmx)."""

from __future__ import annotations

import pytest
from django.test import Client

from audit.models import AuditEvent
from routing.services import study_route
from studies.models import Study
from tests.routing.conftest import NOW

pytestmark = pytest.mark.django_db


def signed_in(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def offered(tiered, ready_study):
    study_route(study_id=ready_study.pk, now=NOW)
    return Study.objects.get(pk=ready_study.pk)


def test_sign_in_page_and_redirects(tiered, staff_a):
    assert Client().get("/worklist/").status_code == 302
    assert Client().get("/login/").status_code == 200
    assert signed_in(tiered["local"].user).get("/").url == "/worklist/"
    assert signed_in(staff_a).get("/worklist/").status_code == 403


def test_worklist_page_lists_offered_studies_and_audits(tiered, offered):
    page = signed_in(tiered["local"].user).get("/worklist/")
    assert page.status_code == 200
    assert f'data-study="{offered.pk}"'.encode() in page.content
    assert b"STAT" in page.content and b'hx-trigger="every 3s"' in page.content
    assert AuditEvent.objects.filter(action="list", object_id=str(offered.pk)).exists()


def test_claim_button_redirects_to_the_study_and_the_loser_sees_a_message(
    tiered, offered, group_a, facility_a
):
    winner = signed_in(tiered["local"].user)
    response = winner.post(f"/studies/{offered.pk}/claim/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert response["HX-Redirect"] == f"/studies/{offered.pk}/"
    page = winner.get(f"/studies/{offered.pk}/")
    assert b"Release with a reason" in page.content
    # The regional reader never had it: told it is not on their worklist.
    loser = signed_in(tiered["regional"].user).post(
        f"/studies/{offered.pk}/claim/", HTTP_HX_REQUEST="true"
    )
    assert b"no longer on your worklist" in loser.content


def test_release_from_the_study_page(tiered, offered):
    client = signed_in(tiered["local"].user)
    client.post(f"/studies/{offered.pk}/claim/", HTTP_HX_REQUEST="true")
    response = client.post(f"/studies/{offered.pk}/release/", {"reason": "need a neuro second"})
    assert response.status_code == 302 and response.url == "/worklist/"
    assert Study.objects.get(pk=offered.pk).status == "offered"


def test_my_cases_page(tiered, offered):
    client = signed_in(tiered["local"].user)
    client.post(f"/studies/{offered.pk}/claim/", HTTP_HX_REQUEST="true")
    assert f"/studies/{offered.pk}/".encode() in client.get("/cases/").content


def test_a_study_outside_ones_reach_is_a_404_page(tiered, offered, staff_b):
    for user in (tiered["regional"].user, staff_b):
        client = Client(raise_request_exception=False)
        client.force_login(user)
        assert client.get(f"/studies/{offered.pk}/").status_code == 404
