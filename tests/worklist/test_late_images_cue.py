"""Where the reader holding a study is told that new images arrived: their cases page,
the study page and their cases in the API, from the LATE_IMAGES alert raised to them
since they claimed it."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from ingest.services import study_late_images_alert
from routing.services import study_route
from studies.models import Study
from studies.services import study_arrival_record
from tests.routing.conftest import NOW
from worklist.services.claims import study_claim, study_release

pytestmark = pytest.mark.django_db


def _signed_in(user):
    client = Client()
    client.force_login(user)
    return client


def _late_image(study_id: int) -> bool:
    """What the gateway does for an instance of a study past receiving."""
    assert study_arrival_record(study_id=study_id, at=timezone.now())
    return study_late_images_alert(study_id=study_id)


@pytest.fixture
def held(tiered, ready_study):
    study_route(study_id=ready_study.pk, now=NOW)
    return study_claim(study_id=ready_study.pk, radiologist=tiered["local"])


def test_the_holder_sees_new_images_on_their_cases_and_the_study_page(api, tiered, held):
    reader = tiered["local"]
    client = _signed_in(reader.user)
    assert f'id="late-images-{held.pk}"' not in client.get("/cases/").content.decode()
    assert 'id="late-images"' not in client.get(f"/studies/{held.pk}/").content.decode()
    assert api(reader.user).get("/api/v1/me/cases/").json()["results"][0]["late_images_at"] is None

    assert _late_image(held.pk) is True
    assert _late_image(held.pk) is False  # the same window: told once

    cases = client.get("/cases/").content.decode()
    assert f'id="late-images-{held.pk}"' in cases and "New images arrived" in cases
    page = client.get(f"/studies/{held.pk}/").content.decode()
    assert 'id="late-images"' in page and "2 images came after it was complete" in page
    row = api(reader.user).get("/api/v1/me/cases/").json()["results"][0]
    assert row["id"] == held.pk and row["late_images_at"] is not None


def test_an_alert_of_an_earlier_claim_is_not_shown_on_a_new_one(tiered, held):
    reader = tiered["local"]
    assert _late_image(held.pk)
    study_release(study_id=held.pk, radiologist=reader, reason="later")
    with time_machine.travel(NOW + dt.timedelta(minutes=1), tick=True):
        study_claim(study_id=held.pk, radiologist=reader)
        client = _signed_in(reader.user)
        assert f'id="late-images-{held.pk}"' not in client.get("/cases/").content.decode()
        assert 'id="late-images"' not in client.get(f"/studies/{held.pk}/").content.decode()


def test_only_the_holder_is_told(tiered, held, group_admin):
    assert _late_image(held.pk)
    page = _signed_in(group_admin).get(f"/studies/{held.pk}/").content.decode()
    assert 'id="late-images"' not in page
    assert Study.objects.get(pk=held.pk).late_instance_count == 1
