"""Rotas and leave through the API: group admins of the reader's group write them, the
reader reads their own, and every write regenerates the reader's shifts at once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
import time_machine

from audit.models import AuditEvent
from network.models import Leave, Radiologist, Rota, Shift
from tests import factories as f

pytestmark = pytest.mark.django_db

# Monday 1 June 2026, 06:00 UTC (08:00 in Paris).
T0 = dt.datetime(2026, 6, 1, 6, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def clock() -> Iterator[Any]:
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture
def reader(group_a: Any) -> Radiologist:
    return f.RadiologistFactory(
        user=f.UserFactory(username="dr_rota"), reading_group=group_a, timezone="Europe/Paris"
    )


def rota_body(reader: Radiologist, **overrides: Any) -> dict[str, Any]:
    return {
        "radiologist": reader.pk,
        "weekday": 2,  # Wednesday
        "starts_at": "09:00",
        "ends_at": "17:00",
        "valid_from": "2026-06-01",
        "valid_to": None,
        **overrides,
    }


def generated(reader: Radiologist) -> list[tuple[str, str]]:
    return [
        (s.starts_at.isoformat(), s.ends_at.isoformat())
        for s in Shift.objects.filter(radiologist=reader, rota__isnull=False).order_by("starts_at")
    ]


def test_a_group_admin_creates_a_rota_and_its_shifts_appear_at_once(
    api: Any, group_admin: Any, reader: Radiologist
) -> None:
    response = api(group_admin).post("/api/v1/rotas/", rota_body(reader), format="json")
    assert response.status_code == 201, response.content
    rota_id = response.json()["id"]
    assert response.json()["starts_at"] == "09:00:00"
    # Wednesdays 3 and 10 June, 09:00-17:00 in Paris (UTC+2), within 14 days.
    assert generated(reader) == [
        ("2026-06-03T07:00:00+00:00", "2026-06-03T15:00:00+00:00"),
        ("2026-06-10T07:00:00+00:00", "2026-06-10T15:00:00+00:00"),
    ]
    assert AuditEvent.objects.filter(
        object_type="network.rota", object_id=str(rota_id), action="create", actor=group_admin
    ).exists()
    assert (
        AuditEvent.objects.filter(
            object_type="network.shift", action="create", actor=group_admin
        ).count()
        == 2
    )
    # The shifts say where they come from, and can be told apart from manual ones.
    shifts = api(group_admin).get(f"/api/v1/shifts/?radiologist={reader.pk}&generated=true")
    assert [s["rota"] for s in shifts.json()["results"]] == [rota_id, rota_id]
    manual = api(group_admin).get(f"/api/v1/shifts/?radiologist={reader.pk}&generated=false")
    assert manual.json()["results"] == []


def test_editing_and_deleting_a_rota_through_the_api(
    api: Any, group_admin: Any, reader: Radiologist, clock: Any
) -> None:
    client = api(group_admin)
    rota_id = client.post("/api/v1/rotas/", rota_body(reader), format="json").json()["id"]
    # Wednesday 3 June, 10:00 in Paris: that day's shift is under way.
    clock.move_to(dt.datetime(2026, 6, 3, 8, 0, tzinfo=dt.UTC))
    edited = client.patch(
        f"/api/v1/rotas/{rota_id}/", {"starts_at": "12:00", "ends_at": "20:00"}, format="json"
    )
    assert edited.status_code == 200, edited.content
    assert generated(reader) == [
        ("2026-06-03T07:00:00+00:00", "2026-06-03T15:00:00+00:00"),  # under way: kept
        ("2026-06-10T10:00:00+00:00", "2026-06-10T18:00:00+00:00"),
    ]
    assert client.delete(f"/api/v1/rotas/{rota_id}/").status_code == 204
    assert not Rota.objects.filter(pk=rota_id).exists()
    # What was under way stays, as a plain shift; what had not started is gone.
    assert [
        (s.starts_at.isoformat(), s.rota_id) for s in Shift.objects.filter(radiologist=reader)
    ] == [("2026-06-03T07:00:00+00:00", None)]


def test_a_rota_cannot_end_before_it_starts(
    api: Any, group_admin: Any, reader: Radiologist
) -> None:
    response = api(group_admin).post(
        "/api/v1/rotas/", rota_body(reader, valid_to="2026-05-01"), format="json"
    )
    assert response.status_code == 400
    assert "valid_to" in response.json()


def test_rotas_filter_by_reader_and_a_reader_sees_only_their_own(
    api: Any, group_admin: Any, reader: Radiologist, group_a: Any
) -> None:
    colleague = f.RadiologistFactory(reading_group=group_a)
    client = api(group_admin)
    mine = client.post("/api/v1/rotas/", rota_body(reader), format="json").json()["id"]
    theirs = client.post("/api/v1/rotas/", rota_body(colleague), format="json").json()["id"]
    listed = client.get(f"/api/v1/rotas/?radiologist={reader.pk}").json()["results"]
    assert [r["id"] for r in listed] == [mine]
    own = api(reader.user).get("/api/v1/rotas/").json()["results"]
    assert [r["id"] for r in own] == [mine]
    assert api(reader.user).get(f"/api/v1/rotas/{theirs}/").status_code == 404


def test_a_reader_cannot_write_rotas_or_leave(api: Any, reader: Radiologist) -> None:
    client = api(reader.user)
    assert client.post("/api/v1/rotas/", rota_body(reader), format="json").status_code == 403
    leave = {"radiologist": reader.pk, "starts_on": "2026-06-02", "ends_on": "2026-06-05"}
    assert client.post("/api/v1/leaves/", leave, format="json").status_code == 403
    assert not Rota.objects.exists() and not Leave.objects.exists()


def test_another_groups_admin_cannot_touch_the_rotas_or_leave(
    api: Any, group_admin: Any, other_admin: Any, reader: Radiologist
) -> None:
    rota_id = api(group_admin).post("/api/v1/rotas/", rota_body(reader), format="json").json()["id"]
    leave_id = (
        api(group_admin)
        .post(
            "/api/v1/leaves/",
            {"radiologist": reader.pk, "starts_on": "2026-06-20", "ends_on": "2026-06-21"},
            format="json",
        )
        .json()["id"]
    )
    before = generated(reader)
    outsider = api(other_admin)
    created = outsider.post("/api/v1/rotas/", rota_body(reader, weekday=4), format="json")
    assert created.status_code == 400 and "radiologist" in created.json()
    assert outsider.get(f"/api/v1/rotas/{rota_id}/").status_code == 404
    assert (
        outsider.patch(f"/api/v1/rotas/{rota_id}/", {"ends_at": "23:00"}, format="json").status_code
        == 404
    )
    assert outsider.delete(f"/api/v1/rotas/{rota_id}/").status_code == 404
    assert outsider.get("/api/v1/rotas/").json()["results"] == []
    assert outsider.delete(f"/api/v1/leaves/{leave_id}/").status_code == 404
    taken = outsider.post(
        "/api/v1/leaves/",
        {"radiologist": reader.pk, "starts_on": "2026-06-01", "ends_on": "2026-06-30"},
        format="json",
    )
    assert taken.status_code == 400
    assert Rota.objects.get(pk=rota_id).ends_at == dt.time(17)
    assert generated(reader) == before


def test_leave_through_the_api_removes_and_restores_the_shifts(
    api: Any, group_admin: Any, reader: Radiologist
) -> None:
    client = api(group_admin)
    client.post("/api/v1/rotas/", rota_body(reader), format="json")
    assert len(generated(reader)) == 2
    response = client.post(
        "/api/v1/leaves/",
        {
            "radiologist": reader.pk,
            "starts_on": "2026-06-08",
            "ends_on": "2026-06-12",
            "reason": "holiday",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    assert generated(reader) == [("2026-06-03T07:00:00+00:00", "2026-06-03T15:00:00+00:00")]
    on = client.get(f"/api/v1/leaves/?radiologist={reader.pk}&on=2026-06-10").json()["results"]
    assert [leave["id"] for leave in on] == [response.json()["id"]]
    assert client.get("/api/v1/leaves/?on=2026-06-13").json()["results"] == []
    backwards = client.patch(
        f"/api/v1/leaves/{response.json()['id']}/", {"ends_on": "2026-06-01"}, format="json"
    )
    assert backwards.status_code == 400
    assert client.delete(f"/api/v1/leaves/{response.json()['id']}/").status_code == 204
    assert len(generated(reader)) == 2


@pytest.mark.parametrize("value", ["08:00+01:00", "08:00Z", "8am", "24:00", "08:00:00.5-05:00"])
def test_a_local_time_with_an_offset_or_in_another_form_is_refused_naming_the_field(
    api: Any, group_admin: Any, reader: Radiologist, value: str
) -> None:
    """A rota's times are on the reader's clock: an offset would be silently dropped,
    so it is refused (found by schemathesis: "06:38:50+01:55" was stored as 06:38:50)."""
    response = api(group_admin).post(
        "/api/v1/rotas/", rota_body(reader, starts_at=value), format="json"
    )
    assert response.status_code == 400, response.content
    assert "starts_at" in response.json()
    assert not Rota.objects.exists()


def test_a_license_end_time_round_trips_as_a_local_time(
    api: Any, group_admin: Any, reader: Radiologist
) -> None:
    license_ = f.LicenseFactory(radiologist=reader)
    client = api(group_admin)
    response = client.patch(
        f"/api/v1/licenses/{license_.pk}/", {"valid_until_time": "17:30"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["valid_until_time"] == "17:30:00"
    refused = client.patch(
        f"/api/v1/licenses/{license_.pk}/", {"valid_until_time": "17:30+02:00"}, format="json"
    )
    assert refused.status_code == 400
    assert "valid_until_time" in refused.json()
    license_.refresh_from_db()
    assert license_.valid_until_time == dt.time(17, 30)
