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


def test_a_reader_off_shift_is_told_so_and_when_the_next_shift_starts(tiered, offered):
    import datetime as dt
    from zoneinfo import ZoneInfo

    from network.models import Shift
    from tests import factories as f

    reader = tiered["local"]
    page = signed_in(reader.user).get("/worklist/")
    assert b"On shift until" in page.content and b"off shift" not in page.content

    Shift.objects.filter(radiologist=reader).delete()
    f.ShiftFactory(
        radiologist=reader,
        starts_at=NOW + dt.timedelta(hours=5),
        ends_at=NOW + dt.timedelta(hours=13),
    )
    page = signed_in(reader.user).get("/worklist/")
    text = page.content.decode()
    assert "You are off shift" in text
    # The next shift, in the reader's own time zone.
    local = (NOW + dt.timedelta(hours=5)).astimezone(ZoneInfo(reader.timezone))
    assert f"{local:%H:%M}" in text


def test_a_paused_reader_is_told_they_are_unavailable(tiered, offered):
    reader = tiered["local"]
    reader.is_available = False
    reader.save(update_fields=["is_available"])
    text = signed_in(reader.user).get("/worklist/").content.decode()
    assert "You are marked unavailable" in text


def test_me_reports_a_readers_presence(tiered, api):
    reader = tiered["local"]
    body = api(reader.user).get("/api/v1/me/").json()
    assert body["presence"]["on_shift"] is True
    assert body["presence"]["receives_offers"] is True
    assert body["presence"]["shift_ends_at"]


def test_on_shift_lists_readers_on_shift_and_their_offers(tiered, offered):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("on_shift", stdout=out)
    text = out.getvalue()
    assert "dr_local" in text
    assert f"study {offered.pk}" in text


def test_a_study_with_refused_objects_says_images_may_be_missing(tiered, offered):
    Study.objects.filter(pk=offered.pk).update(refused_instance_count=2)
    client = signed_in(tiered["local"].user)
    assert b"2 refused objects: images may be missing" in client.get("/worklist/").content
    page = client.get(f"/studies/{offered.pk}/").content.decode()
    assert "2 objects of this study were refused at ingest" in page
