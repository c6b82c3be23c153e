"""Rotas, leave and pauses in the Django admin go through the network's services."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
import time_machine
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import Client

from network import services
from network.models import Leave, Radiologist, Rota, Shift
from tests import factories as f

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 6, 1, 6, 0, tzinfo=dt.UTC)  # a Monday


@pytest.fixture(autouse=True)
def clock() -> Iterator[None]:
    with time_machine.travel(T0, tick=False):
        yield


def admin_client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_rota_added_in_the_admin_generates_shifts_and_bulk_delete_removes_them(
    group_admin: Any, group_a: Any
) -> None:
    reader = f.RadiologistFactory(reading_group=group_a, timezone="UTC")
    client = admin_client(group_admin)
    response = client.post(
        "/admin/network/rota/add/",
        {
            "radiologist": reader.pk,
            "weekday": 1,
            "starts_at": "08:00",
            "ends_at": "16:00",
            "valid_from": "2026-06-01",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    rota = Rota.objects.get(radiologist=reader)
    assert Shift.objects.filter(rota=rota).count() == 2  # Tuesdays 2 and 9 June
    # The changelist's bulk delete goes through the service: no orphan future shifts.
    response = client.post(
        "/admin/network/rota/",
        {"action": "delete_selected", ACTION_CHECKBOX_NAME: [rota.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert not Rota.objects.exists()
    assert not Shift.objects.filter(radiologist=reader).exists()


def test_leave_added_in_the_admin_removes_the_shifts_of_its_days(
    group_admin: Any, group_a: Any, settings: Any
) -> None:
    settings.ROTA_HORIZON_DAYS = 7
    reader = f.RadiologistFactory(reading_group=group_a, timezone="UTC")
    for day in range(7):
        Rota.objects.create(
            radiologist=reader,
            weekday=day,
            starts_at=dt.time(8),
            ends_at=dt.time(16),
            valid_from=dt.date(2026, 1, 1),
        )
    services.rota_shifts_generate(now=T0)
    response = admin_client(group_admin).post(
        "/admin/network/leave/add/",
        {"radiologist": reader.pk, "starts_on": "2026-06-03", "ends_on": "2026-06-04"},
    )
    assert response.status_code == 302, response.content[:2000]
    assert Leave.objects.filter(radiologist=reader).exists()
    days = [s.starts_at.day for s in Shift.objects.filter(radiologist=reader)]
    assert sorted(days) == [1, 2, 5, 6, 7]


def test_another_groups_admin_does_not_see_the_rotas_in_the_admin(
    other_admin: Any, group_a: Any
) -> None:
    reader = f.RadiologistFactory(reading_group=group_a, display_name="Dr. Hidden")
    rota = Rota.objects.create(
        radiologist=reader,
        weekday=0,
        starts_at=dt.time(8),
        ends_at=dt.time(16),
        valid_from=dt.date(2026, 1, 1),
    )
    client = admin_client(other_admin)
    assert b"Dr. Hidden" not in client.get("/admin/network/rota/").content
    assert client.get(f"/admin/network/rota/{rota.pk}/change/").status_code in (302, 404)


def test_the_resume_action_ends_a_pause(group_admin: Any, group_a: Any) -> None:
    reader = f.RadiologistFactory(reading_group=group_a)
    services.reader_pause(radiologist=reader, actor=None, reason="break", minutes=30)
    response = admin_client(group_admin).post(
        "/admin/network/radiologist/",
        {"action": "resume", ACTION_CHECKBOX_NAME: [reader.pk]},
    )
    assert response.status_code == 302
    row = Radiologist.objects.get(pk=reader.pk)
    assert (row.is_available, row.paused_until) == (True, None)
