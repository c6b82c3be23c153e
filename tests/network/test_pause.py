"""A reader pauses and resumes (themself, or a group admin for them); a pause ends by
itself at its end, whatever the sweep has done yet."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
import time_machine

from audit.models import AuditEvent
from network import services
from network.models import Radiologist
from network.selectors import reader_presence
from routing.selectors import reader_facts
from tests import factories as f

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def clock() -> Iterator[Any]:
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture
def reader(group_a: Any, facility_a: Any) -> Radiologist:
    reader = f.RadiologistFactory(user=f.UserFactory(username="dr_pause"), reading_group=group_a)
    f.LicenseFactory(radiologist=reader, jurisdiction=facility_a.jurisdiction)
    f.PrivilegeFactory(radiologist=reader, facility=facility_a)
    f.ShiftFactory(
        radiologist=reader, starts_at=T0 - dt.timedelta(hours=1), ends_at=T0 + dt.timedelta(hours=8)
    )
    return reader


def fresh(reader: Radiologist) -> Radiologist:
    return Radiologist.objects.get(pk=reader.pk)


def test_a_reader_pauses_themself_through_the_api_audited(api: Any, reader: Radiologist) -> None:
    response = api(reader.user).post(
        "/api/v1/me/pause/", {"reason": "coffee", "minutes": 15}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json() == {
        "radiologist": reader.pk,
        "is_available": False,
        "paused_until": "2026-06-01T09:15:00Z",
        "pause_reason": "coffee",
        "max_pause_minutes": 120,
    }
    row = fresh(reader)
    assert (row.is_available, row.paused_until) == (False, T0 + dt.timedelta(minutes=15))
    event = AuditEvent.objects.get(
        object_type="network.radiologist", object_id=str(reader.pk), action="update"
    )
    assert event.actor == reader.user
    assert event.detail["changed"]["pause_reason"] == ["", "coffee"]
    # As the next request finds them (the fixture's user holds the reader read before).
    me = api(fresh(reader).user).get("/api/v1/me/").json()
    assert me["max_pause_minutes"] == 120
    assert me["presence"]["is_available"] is False
    assert me["presence"]["receives_offers"] is False
    assert me["presence"]["paused_until"] == "2026-06-01T09:15:00Z"
    assert me["presence"]["pause_reason"] == "coffee"


def test_a_pause_longer_than_the_groups_maximum_is_refused(
    api: Any, reader: Radiologist, group_a: Any
) -> None:
    group_a.max_pause_minutes = 30
    group_a.save(update_fields=["max_pause_minutes"])
    client = api(reader.user)
    refused = client.post("/api/v1/me/pause/", {"reason": "lunch", "minutes": 31}, format="json")
    assert refused.status_code == 400
    assert "1 to 30 minutes" in str(refused.json()["detail"]["minutes"])
    assert fresh(reader).is_available is True
    assert not AuditEvent.objects.filter(object_type="network.radiologist").exists()
    accepted = client.post("/api/v1/me/pause/", {"reason": "lunch", "minutes": 30}, format="json")
    assert accepted.status_code == 200
    assert accepted.json()["max_pause_minutes"] == 30


@pytest.mark.parametrize(
    "body",
    [
        {"reason": "", "minutes": 10},
        {"reason": "   ", "minutes": 10},
        {"reason": "x", "minutes": 0},
    ],
)
def test_a_pause_needs_a_reason_and_a_length(
    api: Any, reader: Radiologist, body: dict[str, Any]
) -> None:
    assert api(reader.user).post("/api/v1/me/pause/", body, format="json").status_code == 400
    assert fresh(reader).is_available is True


def test_resume_ends_the_pause(api: Any, reader: Radiologist) -> None:
    client = api(reader.user)
    client.post("/api/v1/me/pause/", {"reason": "call", "minutes": 20}, format="json")
    response = client.post("/api/v1/me/resume/")
    assert response.status_code == 200
    assert response.json()["is_available"] is True
    assert response.json()["paused_until"] is None
    row = fresh(reader)
    assert (row.is_available, row.paused_until, row.pause_reason) == (True, None, "")


def test_only_readers_pause_themselves(api: Any, group_admin: Any) -> None:
    assert (
        api(group_admin)
        .post("/api/v1/me/pause/", {"reason": "x", "minutes": 5}, format="json")
        .status_code
        == 403
    )
    assert api(group_admin).post("/api/v1/me/resume/").status_code == 403
    assert api(None).post("/api/v1/me/resume/").status_code in (401, 403)


def test_a_pause_ends_by_itself_at_its_end_and_the_sweep_clears_the_row(
    reader: Radiologist, facility_a: Any, clock: Any
) -> None:
    services.reader_pause(radiologist=reader, actor=reader.user, reason="break", minutes=10)
    study = f.StudyFactory(facility=facility_a)

    def available() -> bool:
        found = reader_facts(
            study=study, radiologist_id=reader.pk, rule_id=None, at=dt.datetime.now(dt.UTC)
        )
        assert found is not None
        return found[0].available

    clock.move_to(T0 + dt.timedelta(minutes=9, seconds=59))
    assert available() is False
    assert services.pauses_end(now=dt.datetime.now(dt.UTC)) == []
    assert reader_presence(radiologist=fresh(reader), at=dt.datetime.now(dt.UTC)).paused_until
    clock.move_to(T0 + dt.timedelta(minutes=10))
    # Over at its end, before any sweep: routing's facts and the presence say so.
    assert fresh(reader).is_available is False
    assert available() is True
    presence = reader_presence(radiologist=fresh(reader), at=dt.datetime.now(dt.UTC))
    assert presence.is_available is True and presence.paused_until is None
    # The sweep makes the row say the truth, audited.
    assert services.pauses_end(now=dt.datetime.now(dt.UTC)) == [reader.pk]
    row = fresh(reader)
    assert (row.is_available, row.paused_until, row.pause_reason) == (True, None, "")
    ended = AuditEvent.objects.filter(object_type="network.radiologist", action="update").first()
    assert ended is not None and ended.detail["pause_ended"] == "time up"
    assert ended.actor is None
    assert services.pauses_end(now=dt.datetime.now(dt.UTC)) == []


def test_the_pause_sweep_task_leaves_a_pause_by_hand_alone(reader: Radiologist, clock: Any) -> None:
    from network.tasks import pauses_end

    other = f.RadiologistFactory(reading_group=reader.reading_group, is_available=False)
    services.reader_pause(radiologist=reader, actor=None, reason="break", minutes=5)
    clock.move_to(T0 + dt.timedelta(minutes=6))
    assert pauses_end.delay().get() == 1
    # Unavailable with no end (set by hand): only a resume ends it.
    assert fresh(other).is_available is False


def test_a_group_admin_pauses_and_resumes_a_reader_of_their_group(
    api: Any, group_admin: Any, reader: Radiologist
) -> None:
    client = api(group_admin)
    paused = client.post(
        f"/api/v1/radiologists/{reader.pk}/pause/", {"reason": "sick", "minutes": 60}, format="json"
    )
    assert paused.status_code == 200, paused.content
    assert paused.json()["paused_until"] == "2026-06-01T10:00:00Z"
    assert AuditEvent.objects.filter(
        object_type="network.radiologist", object_id=str(reader.pk), actor=group_admin
    ).exists()
    too_long = client.post(
        f"/api/v1/radiologists/{reader.pk}/pause/", {"reason": "x", "minutes": 121}, format="json"
    )
    assert too_long.status_code == 400
    resumed = client.post(f"/api/v1/radiologists/{reader.pk}/resume/")
    assert resumed.status_code == 200 and resumed.json()["is_available"] is True
    assert client.get(f"/api/v1/radiologists/{reader.pk}/").json()["paused_until"] is None


def test_a_reader_cannot_pause_another_reader_nor_use_the_admins_endpoint(
    api: Any, reader: Radiologist, unlicensed_reader: Radiologist
) -> None:
    client = api(unlicensed_reader.user)
    body = {"reason": "prank", "minutes": 5}
    assert client.post(
        f"/api/v1/radiologists/{reader.pk}/pause/", body, format="json"
    ).status_code in (403, 404)
    assert client.post(f"/api/v1/radiologists/{reader.pk}/resume/").status_code in (403, 404)
    # Themselves included: a reader pauses through /me/pause/.
    assert (
        client.post(
            f"/api/v1/radiologists/{unlicensed_reader.pk}/pause/", body, format="json"
        ).status_code
        == 403
    )
    assert fresh(reader).is_available is True
    assert fresh(unlicensed_reader).is_available is True


def test_another_groups_admin_cannot_pause_the_reader(
    api: Any, other_admin: Any, reader: Radiologist
) -> None:
    response = api(other_admin).post(
        f"/api/v1/radiologists/{reader.pk}/pause/", {"reason": "x", "minutes": 5}, format="json"
    )
    assert response.status_code == 404
    assert fresh(reader).is_available is True


def test_availability_set_by_hand_replaces_a_timed_pause(
    api: Any, group_admin: Any, reader: Radiologist
) -> None:
    services.reader_pause(radiologist=reader, actor=None, reason="break", minutes=30)
    client = api(group_admin)
    # Sent unchanged (a PUT of what was read), the pause stays.
    unchanged = client.patch(
        f"/api/v1/radiologists/{reader.pk}/", {"is_available": False}, format="json"
    )
    assert unchanged.status_code == 200
    assert fresh(reader).paused_until == T0 + dt.timedelta(minutes=30)
    made_available = client.patch(
        f"/api/v1/radiologists/{reader.pk}/", {"is_available": True}, format="json"
    )
    assert made_available.status_code == 200
    assert made_available.json()["paused_until"] is None
    row = fresh(reader)
    assert (row.is_available, row.paused_until, row.pause_reason) == (True, None, "")
