"""Privileges in bulk: grant many readers at one facility, copy a facility's readers to
another; idempotent, all or nothing, scoped to the admin's group, audited per row, a
constant number of statements whatever the number of readers."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from django.contrib.admin import helpers
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditEvent
from network.models import FacilityPrivilege
from tests import factories as f

pytestmark = pytest.mark.django_db

GRANT = "/api/v1/privileges/bulk-grant/"
D = dt.date


def copy_url(facility: Any) -> str:
    return f"/api/v1/facilities/{facility.pk}/privileges/copy/"


def readers(group: Any, n: int, prefix: str = "r") -> list[Any]:
    return [
        f.RadiologistFactory(user=f.UserFactory(username=f"{prefix}{i}"), reading_group=group)
        for i in range(n)
    ]


def periods(facility: Any) -> list[tuple[int, str, D, D]]:
    return list(
        FacilityPrivilege.objects.filter(facility=facility)
        .order_by("radiologist_id", "valid_from", "status")
        .values_list("radiologist_id", "status", "valid_from", "valid_to")
    )


def grant(client: Any, facility: Any, ids: list[int], start: D, end: D) -> Any:
    return client.post(
        GRANT,
        {"facility": facility.pk, "radiologists": ids, "valid_from": start, "valid_to": end},
        format="json",
    )


def test_bulk_grant_creates_one_active_privilege_per_reader_audited_as_single_rows(
    api, group_admin, group_a, facility_a
):
    team = readers(group_a, 3)
    response = grant(
        api(group_admin), facility_a, [r.pk for r in team], D(2027, 1, 1), D(2027, 12, 31)
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert len(body["created"]) == 3 and body["extended"] == [] and body["unchanged"] == []
    assert periods(facility_a) == [(r.pk, "active", D(2027, 1, 1), D(2027, 12, 31)) for r in team]
    events = AuditEvent.objects.filter(object_type="network.facilityprivilege", action="create")
    assert sorted(e.object_id for e in events) == sorted(str(p["id"]) for p in body["created"])
    for event in events:
        assert event.actor == group_admin
        assert event.reading_group_id == group_a.pk
        created = event.detail["created"]
        assert created["facility_id"] == str(facility_a.pk)
        assert created["status"] == "active"
        assert created["valid_to"] == "2027-12-31"


def test_bulk_grant_is_idempotent_and_extends_overlapping_privileges(
    api, group_admin, group_a, facility_a
):
    covered, overlapping, touching, separate, revoked = readers(group_a, 5)
    f.PrivilegeFactory(
        radiologist=covered, facility=facility_a, valid_from=D(2026, 1, 1), valid_to=D(2028, 1, 1)
    )
    overlap_row = f.PrivilegeFactory(
        radiologist=overlapping,
        facility=facility_a,
        valid_from=D(2026, 6, 1),
        valid_to=D(2027, 3, 1),
    )
    # Ends the day before the new period starts: one continuous privilege after.
    f.PrivilegeFactory(
        radiologist=touching,
        facility=facility_a,
        valid_from=D(2026, 1, 1),
        valid_to=D(2026, 12, 31),
    )
    # A gap of a day and more: a new row beside it.
    f.PrivilegeFactory(
        radiologist=separate, facility=facility_a, valid_from=D(2025, 1, 1), valid_to=D(2025, 6, 30)
    )
    # Not active: left alone, a new active row beside it.
    f.PrivilegeFactory(
        radiologist=revoked,
        facility=facility_a,
        status="revoked",
        valid_from=D(2027, 1, 1),
        valid_to=D(2027, 12, 31),
    )
    ids = [r.pk for r in (covered, overlapping, touching, separate, revoked)]
    client = api(group_admin)
    first = grant(client, facility_a, ids, D(2027, 1, 1), D(2027, 12, 31)).json()
    assert [p["radiologist"] for p in first["unchanged"]] == [covered.pk]
    assert sorted(p["radiologist"] for p in first["extended"]) == [overlapping.pk, touching.pk]
    assert sorted(p["radiologist"] for p in first["created"]) == [separate.pk, revoked.pk]
    assert periods(facility_a) == sorted(
        [
            (covered.pk, "active", D(2026, 1, 1), D(2028, 1, 1)),
            (overlapping.pk, "active", D(2026, 6, 1), D(2027, 12, 31)),
            (touching.pk, "active", D(2026, 1, 1), D(2027, 12, 31)),
            (separate.pk, "active", D(2025, 1, 1), D(2025, 6, 30)),
            (separate.pk, "active", D(2027, 1, 1), D(2027, 12, 31)),
            (revoked.pk, "revoked", D(2027, 1, 1), D(2027, 12, 31)),
            (revoked.pk, "active", D(2027, 1, 1), D(2027, 12, 31)),
        ],
        key=lambda row: (row[0], row[2], row[1]),
    )
    update = AuditEvent.objects.get(action="update", object_id=str(overlap_row.pk))
    assert update.detail["changed"] == {"valid_to": ["2027-03-01", "2027-12-31"]}
    events = AuditEvent.objects.count()

    again = grant(client, facility_a, ids, D(2027, 1, 1), D(2027, 12, 31)).json()
    assert again["created"] == [] and again["extended"] == []
    assert len(again["unchanged"]) == 5
    assert AuditEvent.objects.count() == events  # nothing written, nothing audited


def test_bulk_grant_refuses_readers_of_another_group_naming_them_and_writes_nothing(
    api, group_admin, group_a, group_c, facility_a
):
    ours = readers(group_a, 2)
    theirs = f.RadiologistFactory(user=f.UserFactory(username="dr_other"), reading_group=group_c)
    ids = [ours[0].pk, theirs.pk, ours[1].pk, 987654]
    response = grant(api(group_admin), facility_a, ids, D(2027, 1, 1), D(2027, 12, 31))
    assert response.status_code == 400
    message = str(response.json())
    assert f"{theirs.pk}, 987654" in message
    assert "dr_other" not in message  # ids, never another group's names
    assert not FacilityPrivilege.objects.filter(facility=facility_a).exists()


def test_bulk_grant_is_for_the_admins_of_the_facility_group_only(
    api, group_admin, other_admin, staff_a, licensed_reader, group_a, facility_a, facility_c
):
    team = readers(group_a, 2)
    ids = [r.pk for r in team]
    # Another group's admin: the facility is not one they administer.
    response = grant(api(other_admin), facility_a, ids, D(2027, 1, 1), D(2027, 12, 31))
    assert response.status_code == 400 and "facility" in response.json()
    # Facility staff and readers are no admins.
    for user in (staff_a, licensed_reader.user):
        response = grant(api(user), facility_a, ids, D(2027, 1, 1), D(2027, 12, 31))
        assert response.status_code == 403
    # Our readers at another group's facility.
    response = grant(api(group_admin), facility_c, ids, D(2027, 1, 1), D(2027, 12, 31))
    assert response.status_code == 400
    assert FacilityPrivilege.objects.filter(radiologist__in=team).count() == 0


def test_bulk_grant_refuses_a_period_that_ends_before_it_starts(
    api, group_admin, group_a, facility_a
):
    team = readers(group_a, 1)
    response = grant(api(group_admin), facility_a, [team[0].pk], D(2027, 2, 1), D(2027, 1, 1))
    assert response.status_code == 400 and "valid_to" in response.json()


def test_fourteen_readers_at_five_facilities_take_five_calls_of_constant_statements(
    api, group_admin, group_a
):
    """The onboarding figure: 5 calls, not 70, and each the same number of statements
    whether it grants 1 reader or 14."""
    facilities = [f.FacilityFactory(reading_group=group_a) for _ in range(7)]
    team = readers(group_a, 14)
    client = api(group_admin)
    counts = []
    # The first request of a process reads what later ones find cached (content types).
    grant(client, facilities[6], [team[0].pk], D(2027, 1, 1), D(2027, 12, 31))
    with CaptureQueriesContext(connection) as one:
        assert (
            grant(client, facilities[5], [team[0].pk], D(2027, 1, 1), D(2027, 12, 31)).status_code
            == 200
        )
    for facility in facilities[:5]:
        with CaptureQueriesContext(connection) as ctx:
            response = grant(client, facility, [r.pk for r in team], D(2027, 1, 1), D(2027, 12, 31))
        assert response.status_code == 200
        assert len(response.json()["created"]) == 14
        counts.append(len(ctx.captured_queries))
    assert FacilityPrivilege.objects.filter(facility__in=facilities[:5]).count() == 70
    assert (
        AuditEvent.objects.filter(action="create", object_type="network.facilityprivilege").count()
        == 72
    )
    assert set(counts) == {len(one.captured_queries)}, counts
    assert counts[0] <= 20, [q["sql"] for q in ctx.captured_queries]


def test_copy_gives_the_source_readers_of_today_privileges_at_the_target(
    api, group_admin, group_a, facility_a
):
    target = f.FacilityFactory(name="New site", reading_group=group_a)
    today = timezone.localdate()
    current, expired, suspended, already = readers(group_a, 4)
    f.PrivilegeFactory(
        radiologist=current,
        facility=facility_a,
        valid_from=today - dt.timedelta(days=10),
        valid_to=today + dt.timedelta(days=100),
    )
    f.PrivilegeFactory(
        radiologist=expired,
        facility=facility_a,
        valid_from=today - dt.timedelta(days=100),
        valid_to=today - dt.timedelta(days=1),
    )
    f.PrivilegeFactory(radiologist=suspended, facility=facility_a, status="suspended")
    f.PrivilegeFactory(radiologist=already, facility=facility_a)
    f.PrivilegeFactory(
        radiologist=already,
        facility=target,
        valid_from=today - dt.timedelta(days=400),
        valid_to=today + dt.timedelta(days=400),
    )
    client = api(group_admin)
    response = client.post(copy_url(target), {"from_facility": facility_a.pk}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert [p["radiologist"] for p in body["created"]] == [current.pk]
    assert body["created"][0]["valid_from"] == (today - dt.timedelta(days=10)).isoformat()
    assert [p["radiologist"] for p in body["unchanged"]] == [already.pk]
    assert not FacilityPrivilege.objects.filter(
        facility=target, radiologist__in=[expired, suspended]
    ).exists()
    event = AuditEvent.objects.get(action="create", object_id=str(body["created"][0]["id"]))
    assert event.detail["from_facility"] == facility_a.pk

    # With dates given: the new period, the existing row extended (no duplicate).
    response = client.post(
        copy_url(target),
        {
            "from_facility": facility_a.pk,
            "valid_from": str(today),
            "valid_to": str(today + dt.timedelta(days=500)),
        },
        format="json",
    )
    body = response.json()
    assert sorted(p["radiologist"] for p in body["extended"]) == sorted([current.pk, already.pk])
    assert FacilityPrivilege.objects.filter(facility=target).count() == 2


def test_copy_is_refused_across_groups_to_itself_and_to_non_admins(
    api, group_admin, other_admin, staff_a, group_a, facility_a, facility_b, facility_c
):
    f.PrivilegeFactory(radiologist=readers(group_a, 1)[0], facility=facility_a)
    client = api(group_admin)
    # Another group's facility as the source: not one this admin administers.
    response = client.post(copy_url(facility_a), {"from_facility": facility_c.pk}, format="json")
    assert response.status_code == 400 and "from_facility" in response.json()
    response = client.post(copy_url(facility_a), {"from_facility": facility_a.pk}, format="json")
    assert response.status_code == 400
    # Another group's admin, on our facility: they do not see it.
    response = api(other_admin).post(
        copy_url(facility_b), {"from_facility": facility_c.pk}, format="json"
    )
    assert response.status_code == 404
    # The facility's own staff see it, but are no admins.
    response = api(staff_a).post(
        copy_url(facility_a), {"from_facility": facility_b.pk}, format="json"
    )
    assert response.status_code == 403
    assert not FacilityPrivilege.objects.filter(facility__in=[facility_b, facility_c]).exists()


def test_copy_statements_do_not_grow_with_the_readers(api, group_admin, group_a, facility_a):
    client = api(group_admin)
    counts = []
    for n in (1, 12):
        source = f.FacilityFactory(reading_group=group_a)
        target = f.FacilityFactory(reading_group=group_a)
        for reader in readers(group_a, n, prefix=f"c{n}_"):
            f.PrivilegeFactory(radiologist=reader, facility=source)
        with CaptureQueriesContext(connection) as ctx:
            response = client.post(copy_url(target), {"from_facility": source.pk}, format="json")
        assert len(response.json()["created"]) == n
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1], counts


# --- The Django admin's actions ----------------------------------------------------
@pytest.fixture
def admin_client(group_admin: Any) -> Client:
    client = Client()
    client.force_login(group_admin)
    return client


def test_admin_grant_action_shows_a_form_then_grants(
    admin_client, group_admin, group_a, facility_a
):
    team = readers(group_a, 3)
    url = "/admin/network/radiologist/"
    selected = {"action": "grant_privileges", helpers.ACTION_CHECKBOX_NAME: [r.pk for r in team]}
    page = admin_client.post(url, selected)
    assert page.status_code == 200
    assert b"Grant privileges at a facility" in page.content
    assert b'name="valid_from"' in page.content
    done = admin_client.post(
        url,
        {
            **selected,
            "apply": "1",
            "facility": facility_a.pk,
            "valid_from": "2027-01-01",
            "valid_to": "2027-06-30",
        },
        follow=True,
    )
    assert done.status_code == 200
    assert b"3 privilege(s) created" in done.content
    assert periods(facility_a) == [(r.pk, "active", D(2027, 1, 1), D(2027, 6, 30)) for r in team]
    assert (
        AuditEvent.objects.filter(
            action="create", object_type="network.facilityprivilege", actor=group_admin
        ).count()
        == 3
    )


def test_admin_grant_action_offers_only_the_admins_facilities(
    admin_client, group_a, facility_a, facility_c
):
    team = readers(group_a, 1)
    page = admin_client.post(
        "/admin/network/radiologist/",
        {"action": "grant_privileges", helpers.ACTION_CHECKBOX_NAME: [team[0].pk]},
    )
    assert b"Facility A" in page.content and b"Facility C" not in page.content
    refused = admin_client.post(
        "/admin/network/radiologist/",
        {
            "action": "grant_privileges",
            helpers.ACTION_CHECKBOX_NAME: [team[0].pk],
            "apply": "1",
            "facility": facility_c.pk,
            "valid_from": "2027-01-01",
            "valid_to": "2027-06-30",
        },
    )
    assert refused.status_code == 200  # the form again, with its error
    assert not FacilityPrivilege.objects.exists()


def test_admin_copy_action_copies_to_each_selected_facility(admin_client, group_a, facility_a):
    targets = [f.FacilityFactory(name=f"Site {i}", reading_group=group_a) for i in range(2)]
    team = readers(group_a, 2)
    for reader in team:
        f.PrivilegeFactory(radiologist=reader, facility=facility_a)
    url = "/admin/network/facility/"
    selected = {"action": "copy_privileges", helpers.ACTION_CHECKBOX_NAME: [t.pk for t in targets]}
    page = admin_client.post(url, selected)
    assert b"Copy privileges from another facility" in page.content
    done = admin_client.post(
        url, {**selected, "apply": "1", "from_facility": facility_a.pk}, follow=True
    )
    assert done.content.count(b"2 privilege(s) created") == 2
    for target in targets:
        assert sorted(
            FacilityPrivilege.objects.filter(facility=target).values_list(
                "radiologist_id", flat=True
            )
        ) == sorted(r.pk for r in team)


# --- Concurrent grants (PostgreSQL, real threads and transactions) ---------------------
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_grants_of_the_same_readers_create_each_privilege_once(group_a, facility_a):
    from network.services import privileges_grant

    team = readers(group_a, 10)
    ids = [r.pk for r in team]
    barrier = threading.Barrier(6)
    created: list[int] = []

    def go() -> None:
        try:
            barrier.wait()
            result = privileges_grant(
                actor=None,
                facility=facility_a,
                radiologist_ids=ids,
                valid_from=D(2027, 1, 1),
                valid_to=D(2027, 12, 31),
            )
            created.append(len(result.created))
        finally:
            connection.close()

    threads = [threading.Thread(target=go) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # The facility's row lock serialises them: one grant created the rows, the others
    # found them covering the period.
    assert sorted(created) == [0, 0, 0, 0, 0, 10]
    assert FacilityPrivilege.objects.filter(facility=facility_a).count() == 10


def test_the_facility_list_links_each_facility_s_checklist(admin_client, facility_a):
    page = admin_client.get("/admin/network/facility/")
    assert f'href="/facilities/{facility_a.pk}/checklist/"'.encode() in page.content
