"""Pause and resume from the worklist page (Django's test client with htmx's headers):
the offers on the worklist are held, claims are refused while paused, and the pause
ends by itself."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine
from django.test import Client

from audit.models import AuditEvent
from network.models import Radiologist
from routing.services import offers_withdraw_ineligible, study_route
from studies.models import Study
from tests.routing.conftest import NOW
from worklist.models import Offer

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def offered(tiered: Any, ready_study: Any) -> Study:
    study_route(study_id=ready_study.pk, now=NOW)
    return Study.objects.get(pk=ready_study.pk)


def fresh(reader: Radiologist) -> Radiologist:
    return Radiologist.objects.get(pk=reader.pk)


def test_the_page_offers_a_pause_up_to_the_groups_maximum(tiered: Any, group_a: Any) -> None:
    group_a.max_pause_minutes = 45
    group_a.save(update_fields=["max_pause_minutes"])
    text = signed_in(tiered["local"].user).get("/worklist/").content.decode()
    assert 'id="pause-form"' in text and 'hx-post="/worklist/pause/"' in text
    assert 'hx-get="/worklist/availability/"' in text
    for minutes in (5, 10, 15, 30, 45):
        assert f'<option value="{minutes}"' in text
    assert '<option value="60"' not in text
    assert '<option value="15" selected>' in text


def test_a_reader_pauses_from_the_page_and_their_offers_are_held(
    tiered: Any, offered: Study
) -> None:
    reader = tiered["local"]
    client = signed_in(reader.user)
    assert Offer.objects.filter(
        study=offered, radiologist=reader, withdrawn_at__isnull=True
    ).exists()
    response = client.post("/worklist/pause/", {"reason": "phone call", "minutes": "30"}, **HTMX)
    assert response.status_code == 200
    text = response.content.decode()
    # 14:00 UTC + 30 min is 09:30 in Dallas (the reader's time zone, CDT).
    assert "Paused until" in text and "09:30" in text and "(phone call)" in text
    assert 'id="resume"' in text and 'id="pause-form"' not in text
    row = fresh(reader)
    assert row.is_available is False and row.pause_reason == "phone call"
    assert AuditEvent.objects.filter(
        object_type="network.radiologist", object_id=str(reader.pk), actor=reader.user
    ).exists()
    # Held: the offer stays open and on the worklist, and the eligibility sweep keeps it.
    offers_withdraw_ineligible()
    assert Offer.objects.filter(
        study=offered, radiologist=reader, withdrawn_at__isnull=True
    ).exists()
    assert f'data-study="{offered.pk}"' in client.get("/worklist/rows/").content.decode()
    # But it is not claimed while paused.
    refused = client.post(f"/studies/{offered.pk}/claim/", **HTMX)
    assert "paused" in refused.content.decode()
    assert Study.objects.get(pk=offered.pk).status == "offered"
    # Resume: the control comes back, and the claim goes through.
    resumed = client.post("/worklist/resume/", **HTMX)
    assert 'id="pause-form"' in resumed.content.decode()
    assert fresh(reader).is_available is True
    claimed = client.post(f"/studies/{offered.pk}/claim/", **HTMX)
    assert claimed["HX-Redirect"] == f"/studies/{offered.pk}/"


def test_a_pause_over_the_groups_maximum_is_refused_on_the_page(tiered: Any) -> None:
    reader = tiered["local"]
    response = signed_in(reader.user).post(
        "/worklist/pause/", {"reason": "lunch", "minutes": "500"}, **HTMX
    )
    assert response.status_code == 200
    text = response.content.decode()
    assert "1 to 120 minutes" in text and 'role="alert"' in text
    assert 'id="pause-form"' in text
    assert fresh(reader).is_available is True
    no_reason = signed_in(reader.user).post("/worklist/pause/", {"minutes": "10"}, **HTMX)
    assert "Say why you pause." in no_reason.content.decode()
    no_length = signed_in(reader.user).post("/worklist/pause/", {"reason": "x"}, **HTMX)
    assert "Choose how long to pause." in no_length.content.decode()
    assert fresh(reader).is_available is True


def test_without_htmx_the_form_posts_back_to_the_worklist_with_a_message(tiered: Any) -> None:
    client = signed_in(tiered["local"].user)
    response = client.post("/worklist/pause/", {"reason": "break", "minutes": "10"})
    assert response.status_code == 302 and response.url == "/worklist/"
    page = client.get("/worklist/").content.decode()
    assert "Paused." in page and "Paused until" in page
    client.post("/worklist/resume/")
    assert "Resumed" in client.get("/worklist/").content.decode()


def test_the_polled_control_shows_the_pause_ending_by_itself(tiered: Any) -> None:
    reader = tiered["local"]
    client = signed_in(reader.user)
    client.post("/worklist/pause/", {"reason": "break", "minutes": "5"}, **HTMX)
    polled = client.get("/worklist/availability/", **HTMX).content.decode()
    assert "Paused until" in polled and "data-background" in polled
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5, seconds=1)):
        later = client.get("/worklist/availability/", **HTMX).content.decode()
    assert "Paused until" not in later and 'id="pause-form"' in later


def test_a_group_admins_pause_shows_on_the_readers_page(tiered: Any, group_admin: Any) -> None:
    from network.services import reader_pause

    reader = tiered["local"]
    reader_pause(radiologist=reader, actor=group_admin, reason="called away", minutes=60)
    polled = signed_in(reader.user).get("/worklist/availability/", **HTMX).content.decode()
    assert "Paused until" in polled and "(called away)" in polled and 'id="resume"' in polled


def test_only_readers_pause_from_the_page(staff_a: Any) -> None:
    client = signed_in(staff_a)
    assert client.post("/worklist/pause/", {"reason": "x", "minutes": "5"}).status_code == 403
    assert client.post("/worklist/resume/").status_code == 403
    assert client.get("/worklist/availability/").status_code == 403
    assert Client().post("/worklist/pause/").status_code == 302  # to the sign-in page
