"""The history of readers' eligibility facts (network.history): a version is appended
for each change made through the services and the API, none when nothing changed;
decoded, it says what live routing reads, instant for instant."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.test.utils import CaptureQueriesContext

from network.history import (
    CredentialSpan,
    ReaderState,
    ReaderTimeline,
    history_began,
    reader_facts,
    reader_state,
    reader_timelines,
    reader_versions_record,
)
from network.models import FacilityPrivilege, License, Radiologist, ReaderVersion, Shift
from routing.eligibility import ROUTE, CandidateFacts, Credential, Reason, StudyFacts, tier_of
from routing.models import LAST_TIER
from routing.selectors import candidate_facts
from tests import factories as f

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 6, 1, 14, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


@pytest.fixture
def clock() -> Iterator[Any]:
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture
def reader(group_a: Any, facility_a: Any) -> Radiologist:
    """On shift, licensed in US-TX and privileged at facility A, with a first version
    recorded an hour ago (factories write no history)."""
    reader = f.RadiologistFactory(
        user=f.UserFactory(username="dr_history"), reading_group=group_a, subspecialties=["neuro"]
    )
    f.LicenseFactory(
        radiologist=reader,
        jurisdiction=facility_a.jurisdiction,
        valid_from=dt.date(2025, 1, 1),
        valid_to=dt.date(2099, 12, 31),
    )
    f.PrivilegeFactory(
        radiologist=reader,
        facility=facility_a,
        valid_from=dt.date(2025, 1, 1),
        valid_to=dt.date(2099, 12, 31),
    )
    f.ShiftFactory(radiologist=reader, starts_at=T0 - 4 * HOUR, ends_at=T0 + 4 * HOUR)
    assert reader_versions_record(radiologist_ids=[reader.pk], at=T0 - HOUR) == 1
    return reader


def versions(reader: Radiologist) -> list[ReaderVersion]:
    return list(ReaderVersion.objects.filter(radiologist=reader).order_by("recorded_at", "pk"))


def latest(reader: Radiologist) -> ReaderState:
    row = versions(reader)[-1]
    return reader_state(row.radiologist_id, row.recorded_at, row.facts)


def change(kind: str, client: Any, reader: Radiologist, facility_b: Any) -> None:
    """One change of the reader's eligibility facts, made as an admin makes it."""
    base = f"/api/v1/radiologists/{reader.pk}/"
    if kind == "license_suspended":
        lic = License.objects.get(radiologist=reader)
        response = client.patch(f"/api/v1/licenses/{lic.pk}/", {"status": "suspended"})
    elif kind == "privilege_deleted":
        privilege = FacilityPrivilege.objects.get(radiologist=reader)
        response = client.delete(f"/api/v1/privileges/{privilege.pk}/")
    elif kind == "shift_added":
        response = client.post(
            "/api/v1/shifts/",
            {
                "radiologist": reader.pk,
                "starts_at": (T0 + 10 * HOUR).isoformat(),
                "ends_at": (T0 + 18 * HOUR).isoformat(),
            },
        )
    elif kind == "shift_ended_early":
        shift = Shift.objects.get(radiologist=reader)
        response = client.patch(f"/api/v1/shifts/{shift.pk}/", {"ends_at": T0.isoformat()})
    elif kind == "paused":
        response = client.post(f"{base}pause/", {"reason": "call", "minutes": 30})
    elif kind == "subspecialties":
        response = client.patch(base, {"subspecialties": ["msk", "neuro"]})
    elif kind == "standing":
        response = client.patch(base, {"is_active": False})
    elif kind == "cap":
        response = client.patch(base, {"workload_cap": 9})
    elif kind == "privileges_granted":
        response = client.post(
            "/api/v1/privileges/bulk-grant/",
            {
                "facility": facility_b.pk,
                "radiologists": [reader.pk],
                "valid_from": "2026-01-01",
                "valid_to": "2026-12-31",
            },
        )
    elif kind == "rota":
        response = client.post(
            "/api/v1/rotas/",
            {
                "radiologist": reader.pk,
                "weekday": 2,  # Wednesday 3 June
                "starts_at": "09:00",
                "ends_at": "17:00",
                "valid_from": "2026-06-01",
                "valid_to": None,
            },
        )
    else:
        raise AssertionError(kind)
    assert response.status_code in (200, 201, 204), response.content


def what_changed(kind: str, before: ReaderState, after: ReaderState, facility_b: Any) -> None:
    if kind == "license_suspended":
        assert [s.active for s in after.licenses["US-TX"]] == [False]
        assert [s.active for s in before.licenses["US-TX"]] == [True]
    elif kind == "privilege_deleted":
        assert after.privileges == {} and before.privileges
    elif kind == "shift_added":
        assert after.next_shift_start(T0) == T0 + 10 * HOUR
        assert before.next_shift_start(T0) is None
    elif kind == "shift_ended_early":
        assert before.on_shift_at(T0 + HOUR) and not after.on_shift_at(T0 + HOUR)
    elif kind == "paused":
        assert not after.available_at(T0 + 29 * dt.timedelta(minutes=1))
        assert after.available_at(T0 + 30 * dt.timedelta(minutes=1))
        assert before.available_at(T0)
    elif kind == "subspecialties":
        assert (before.subspecialties, after.subspecialties) == ({"neuro"}, {"msk", "neuro"})
    elif kind == "standing":
        assert before.active and not after.active
    elif kind == "cap":
        assert (before.workload_cap, after.workload_cap) == (5, 9)
    elif kind == "privileges_granted":
        assert facility_b.pk in after.privileges and facility_b.pk not in before.privileges
    elif kind == "rota":
        assert after.next_shift_start(T0) == dt.datetime(2026, 6, 3, 14, tzinfo=dt.UTC)


KINDS = [
    "license_suspended",
    "privilege_deleted",
    "shift_added",
    "shift_ended_early",
    "paused",
    "subspecialties",
    "standing",
    "cap",
    "privileges_granted",
    "rota",
]


@pytest.mark.parametrize("kind", KINDS)
def test_each_change_through_the_api_appends_one_version_before_it_answers(
    clock: Any, api: Any, group_admin: Any, reader: Radiologist, facility_b: Any, kind: str
) -> None:
    f.subspecialty("msk")
    before = latest(reader)
    client = api(group_admin)
    client.default_format = "json"
    change(kind, client, reader, facility_b)
    rows = versions(reader)
    assert len(rows) == 2
    assert rows[-1].recorded_at == T0
    assert rows[-1].reading_group_id == reader.reading_group_id
    what_changed(kind, before, latest(reader), facility_b)


def test_a_pause_and_its_resume_each_append_a_version(
    clock: Any, api: Any, group_admin: Any, reader: Radiologist
) -> None:
    client = api(group_admin)
    client.post(f"/api/v1/radiologists/{reader.pk}/pause/", {"reason": "x", "minutes": 20})
    clock.shift(dt.timedelta(minutes=5))
    assert client.post(f"/api/v1/radiologists/{reader.pk}/resume/").status_code == 200
    rows = versions(reader)
    assert [r.recorded_at for r in rows] == [T0 - HOUR, T0, T0 + dt.timedelta(minutes=5)]
    timeline = ReaderTimeline(
        [reader_state(r.radiologist_id, r.recorded_at, r.facts) for r in rows]
    )
    during = T0 + dt.timedelta(minutes=1)
    after_resume = T0 + dt.timedelta(minutes=6)
    assert timeline.at(T0 - dt.timedelta(minutes=1)).available_at(T0 - dt.timedelta(minutes=1))
    assert not timeline.at(during).available_at(during)
    assert timeline.at(after_resume).available_at(after_resume)


def test_nothing_changed_appends_nothing(
    clock: Any, api: Any, group_admin: Any, reader: Radiologist
) -> None:
    # A version with a shift that ends, and a pause that runs out, before T0.
    half_hour = dt.timedelta(minutes=30)
    Radiologist.objects.filter(pk=reader.pk).update(is_available=False, paused_until=T0 - half_hour)
    Shift.objects.filter(radiologist=reader).update(ends_at=T0 - half_hour)
    f.ShiftFactory(radiologist=reader, starts_at=T0 + 2 * HOUR, ends_at=T0 + 9 * HOUR)
    earlier = T0 - dt.timedelta(minutes=50)
    assert reader_versions_record(radiologist_ids=[reader.pk], at=earlier) == 1
    assert reader_versions_record(radiologist_ids=[reader.pk], at=earlier) == 0
    client = api(group_admin)
    client.default_format = "json"
    # Saved with the same values, and the same set of subspecialties.
    response = client.patch(
        f"/api/v1/radiologists/{reader.pk}/", {"workload_cap": 5, "subspecialties": ["neuro"]}
    )
    assert response.status_code == 200
    lic = License.objects.get(radiologist=reader)
    assert client.patch(f"/api/v1/licenses/{lic.pk}/", {"status": "active"}).status_code == 200
    # Time passing is no change: the shift has ended since, the pause run out.
    assert reader_versions_record(radiologist_ids=[reader.pk], at=T0) == 0
    assert [r.recorded_at for r in versions(reader)] == [T0 - HOUR, earlier]


# --- Reading the history -------------------------------------------------------------
def state(recorded_at: dt.datetime, **facts: Any) -> ReaderState:
    values: dict[str, Any] = {
        "radiologist_id": 1,
        "name": "Dr A",
        "recorded_at": recorded_at,
        "active": True,
        "is_available": True,
        "paused_until": None,
        "workload_cap": 5,
        "home_region_id": 1,
        "country": "US",
        "subspecialties": frozenset(),
        "licenses": {},
        "privileges": {},
        "shifts": (),
        **facts,
    }
    return ReaderState(**values)


def test_the_version_in_force_before_the_first_is_the_first_then_each_until_the_next() -> None:
    first, second = state(T0, workload_cap=1), state(T0 + 2 * HOUR, workload_cap=2)
    timeline = ReaderTimeline([second, first])
    assert timeline.at(T0 - 100 * HOUR) is first
    assert timeline.at(T0) is first
    assert timeline.at(T0 + HOUR) is first
    assert timeline.at(T0 + 2 * HOUR) is second
    assert timeline.at(T0 + 100 * HOUR) is second


def test_on_shift_with_overlapping_and_adjacent_shifts() -> None:
    # A long shift with many short ones inside it, then two back to back.
    inside = tuple((T0 + n * HOUR, T0 + n * HOUR + dt.timedelta(minutes=10)) for n in range(12))
    s = state(
        T0,
        shifts=tuple(
            sorted(
                (
                    (T0 - HOUR, T0 + 13 * HOUR),
                    *inside,
                    (T0 + 20 * HOUR, T0 + 22 * HOUR),
                    (T0 + 22 * HOUR, T0 + 23 * HOUR),
                )
            )
        ),
    )
    assert not s.on_shift_at(T0 - HOUR - dt.timedelta(seconds=1))
    assert s.on_shift_at(T0 - HOUR)
    assert s.on_shift_at(T0 + 12 * HOUR + dt.timedelta(minutes=30))  # past 8 short ones
    assert not s.on_shift_at(T0 + 13 * HOUR)
    assert s.on_shift_at(T0 + 22 * HOUR)  # where one ends the next begins
    assert not s.on_shift_at(T0 + 23 * HOUR)
    assert s.next_shift_start(T0 + 13 * HOUR) == T0 + 20 * HOUR
    assert s.next_shift_start(T0 + 20 * HOUR) == T0 + 22 * HOUR
    assert s.next_shift_start(T0 + 22 * HOUR) is None


def test_timelines_of_a_window_and_when_history_began(
    clock: Any, group_a: Any, reader: Radiologist
) -> None:
    other = f.RadiologistFactory(user=f.UserFactory(username="dr_other"), reading_group=group_a)
    elsewhere = f.RadiologistFactory(user=f.UserFactory(username="dr_c"))
    for cap, at in ((6, T0), (7, T0 + 2 * HOUR), (8, T0 + 5 * HOUR)):
        Radiologist.objects.filter(pk=reader.pk).update(workload_cap=cap)
        assert reader_versions_record(radiologist_ids=[reader.pk], at=at) == 1
    # Another reader of the group whose history starts after the window.
    assert reader_versions_record(radiologist_ids=[other.pk, elsewhere.pk], at=T0 + 9 * HOUR) == 2
    timelines = reader_timelines(reading_group_id=group_a.pk, since=T0 + HOUR, until=T0 + 5 * HOUR)
    assert set(timelines) == {reader.pk, other.pk}
    # In force at the start, and each later one before the end.
    assert [s.workload_cap for s in timelines[reader.pk].states] == [6, 7]
    assert timelines[reader.pk].at(T0 + 4 * HOUR).workload_cap == 7
    assert [s.recorded_at for s in timelines[other.pk].states] == [T0 + 9 * HOUR]
    assert history_began(reading_group_id=group_a.pk) == T0 - HOUR
    assert history_began(reading_group_id=f.ReadingGroupFactory(name="new").pk) is None


def test_reading_the_timelines_is_one_statement(clock: Any, group_a: Any) -> None:
    readers = [
        f.RadiologistFactory(user=f.UserFactory(username=f"dr_{n}"), reading_group=group_a)
        for n in range(6)
    ]
    for hours in range(4):
        Radiologist.objects.filter(reading_group=group_a).update(workload_cap=hours + 1)
        reader_versions_record(radiologist_ids=[r.pk for r in readers], at=T0 + hours * HOUR)
    with CaptureQueriesContext(connection) as queries:
        timelines = reader_timelines(reading_group_id=group_a.pk, since=T0, until=T0 + 9 * HOUR)
    assert len(queries) == 1
    assert {len(t.states) for t in timelines.values()} == {4}


def test_recording_reads_in_a_constant_number_of_statements(clock: Any, group_a: Any) -> None:
    def statements(n: int) -> int:
        readers = []
        for i in range(n):
            r = f.RadiologistFactory(
                user=f.UserFactory(username=f"dr_{n}_{i}"), reading_group=group_a
            )
            f.LicenseFactory(radiologist=r)
            f.ShiftFactory(radiologist=r, starts_at=T0, ends_at=T0 + HOUR)
            readers.append(r.pk)
        with CaptureQueriesContext(connection) as queries:
            assert reader_versions_record(radiologist_ids=readers, at=T0) == n
        return len(queries)

    assert statements(1) == statements(12)


# --- The same facts as live routing ----------------------------------------------------
def as_candidate(s: ReaderState, *, at: dt.datetime, facility: Any, code: str) -> CandidateFacts:
    """A recorded state as the policy's facts (as the simulator reads it), load 0."""

    def credentials(spans: tuple[CredentialSpan, ...], key: str) -> tuple[Credential, ...]:
        return tuple(
            Credential(key, c.starts_at, c.ends_at, c.active, c.final_scope) for c in spans
        )

    return CandidateFacts(
        radiologist_id=s.radiologist_id,
        name=s.name,
        tier=tier_of(
            home_region_id=s.home_region_id,
            home_country=s.country,
            facility_region_id=facility.region_id,
            facility_country=facility.region.country,
            local_pool=None,
            regional_pool=None,
            pools=frozenset(),
        ),
        active=s.active,
        available=s.available_at(at),
        on_shift=s.on_shift_at(at),
        subspecialties=s.subspecialties,
        licenses=credentials(s.licenses.get(code, ()), code),
        privileges=credentials(s.privileges.get(facility.pk, ()), str(facility.pk)),
        open_claims=0,
        workload_cap=s.workload_cap,
    )


def head_ct(facility: Any, at: dt.datetime) -> StudyFacts:
    return StudyFacts(
        study_id=1,
        facility_id=facility.pk,
        jurisdiction="US-TX",
        priority=3,
        read_at=at,
        subspecialties=frozenset({"neuro"}),
    )


@pytest.mark.parametrize(
    ("until", "ends_at"),
    [
        # The end of 3 June in Chicago (CDT, UTC-5), or 10:30 that day there.
        (None, dt.datetime(2026, 6, 4, 5, 0, tzinfo=dt.UTC)),
        (dt.time(10, 30), dt.datetime(2026, 6, 3, 15, 30, tzinfo=dt.UTC)),
    ],
)
def test_a_license_ending_mid_window_makes_its_holder_ineligible_after_its_end_only(
    clock: Any, group_a: Any, facility_a: Any, until: dt.time | None, ends_at: dt.datetime
) -> None:
    jurisdiction = facility_a.jurisdiction
    jurisdiction.timezone = "America/Chicago"
    jurisdiction.save()
    holder = f.RadiologistFactory(reading_group=group_a, subspecialties=["neuro"])
    f.LicenseFactory(
        radiologist=holder,
        jurisdiction=jurisdiction,
        valid_from=dt.date(2025, 1, 1),
        valid_to=dt.date(2026, 6, 3),
        valid_until_time=until,
    )
    f.PrivilegeFactory(radiologist=holder, facility=facility_a)
    f.ShiftFactory(radiologist=holder, starts_at=T0, ends_at=T0 + 7 * 24 * HOUR)
    assert reader_versions_record(radiologist_ids=[holder.pk], at=T0) == 1
    timeline = reader_timelines(reading_group_id=group_a.pk, since=T0, until=T0 + 7 * 24 * HOUR)[
        holder.pk
    ]

    def verdict(at: dt.datetime) -> Any:
        s = timeline.at(at)
        return ROUTE.judge(
            head_ct(facility_a, at), as_candidate(s, at=at, facility=facility_a, code="US-TX")
        )

    assert verdict(T0 + HOUR).eligible
    assert verdict(ends_at - dt.timedelta(seconds=1)).eligible
    after = verdict(ends_at)
    assert not after.eligible
    assert after.reasons == (Reason.LICENSE_EXPIRED,)
    assert not verdict(ends_at + 24 * HOUR).eligible


def test_the_latest_version_reads_as_live_routing_reads_the_tables(
    clock: Any, group_a: Any, facility_a: Any
) -> None:
    jurisdiction = facility_a.jurisdiction
    jurisdiction.timezone = "America/Chicago"
    jurisdiction.save()
    abroad = f.RegionFactory(code="in-south", name="South India", country="IN")
    plain = f.RadiologistFactory(reading_group=group_a, subspecialties=["neuro"])
    f.LicenseFactory(radiologist=plain, jurisdiction=jurisdiction)
    f.PrivilegeFactory(radiologist=plain, facility=facility_a)
    f.ShiftFactory(radiologist=plain, starts_at=T0 - HOUR, ends_at=T0 + 8 * HOUR)
    # Suspended and preliminary licenses, a lapsed privilege, paused, a smaller cap.
    mixed = f.RadiologistFactory(
        reading_group=group_a,
        subspecialties=["neuro", "general"],
        workload_cap=3,
        is_available=False,
        paused_until=T0 + dt.timedelta(minutes=30),
        home_region=abroad,
    )
    f.LicenseFactory(radiologist=mixed, jurisdiction=jurisdiction, status="suspended")
    f.LicenseFactory(radiologist=mixed, jurisdiction=jurisdiction, scope="preliminary")
    f.PrivilegeFactory(
        radiologist=mixed,
        facility=facility_a,
        valid_from=dt.date(2025, 1, 1),
        valid_to=dt.date(2026, 5, 31),
    )
    f.PrivilegeFactory(
        radiologist=mixed,
        facility=facility_a,
        valid_from=dt.date(2026, 6, 1),
        valid_to=dt.date(2026, 6, 1),
        valid_until_time=dt.time(11, 0),
    )
    for start in (T0 - 2 * HOUR, T0 + 3 * HOUR):
        f.ShiftFactory(radiologist=mixed, starts_at=start, ends_at=start + 2 * HOUR)
    # Inactive, a license ending at a time today, off shift now.
    inactive = f.RadiologistFactory(reading_group=group_a, is_active=False)
    f.LicenseFactory(
        radiologist=inactive,
        jurisdiction=jurisdiction,
        valid_to=dt.date(2026, 6, 1),
        valid_until_time=dt.time(9, 45),
    )
    bare = f.RadiologistFactory(reading_group=group_a, subspecialties=["msk"])
    ids = [plain.pk, mixed.pk, inactive.pk, bare.pk]
    assert reader_versions_record(radiologist_ids=ids, at=T0) == 4
    timelines = reader_timelines(reading_group_id=group_a.pk, since=T0, until=T0 + 24 * HOUR)

    def key(c: CandidateFacts) -> tuple[Any, ...]:
        return (
            c.radiologist_id,
            c.name,
            c.tier,
            c.active,
            c.available,
            c.on_shift,
            c.subspecialties,
            tuple(sorted(c.licenses)),
            tuple(sorted(c.privileges)),
            c.workload_cap,
        )

    for at in (T0, T0 + 40 * dt.timedelta(minutes=1), T0 + 4 * HOUR, T0 + 9 * HOUR):
        live = candidate_facts(
            facility=facility_a,
            jurisdiction_code="US-TX",
            max_tier=LAST_TIER,
            at=at,
            radiologist_ids=ids,
        )
        recorded = [
            as_candidate(timelines[pk].at(at), at=at, facility=facility_a, code="US-TX")
            for pk in sorted(ids)
        ]
        assert [key(c) for c in recorded] == [key(c) for c in live], at
        study = head_ct(facility_a, at)
        assert [ROUTE.judge(study, c)[:6] for c in recorded] == [
            ROUTE.judge(study, c)[:6] for c in live
        ]
    # The facts differ from reader to reader, or the comparison proves little.
    assert len({key(c)[3:] for c in recorded}) == 4


# --- The first versions, recorded by migration 0010 ------------------------------------
def test_the_backfill_migration_records_what_the_history_reads(
    clock: Any, reader: Radiologist, group_a: Any, facility_a: Any
) -> None:
    import importlib

    ReaderVersion.objects.all().delete()
    other = f.RadiologistFactory(reading_group=group_a, subspecialties=["msk", "neuro"])
    f.PrivilegeFactory(radiologist=other, facility=facility_a, valid_until_time=dt.time(17, 0))
    historical = MigrationLoader(connection).project_state(
        ("network", "0010_reader_versions_backfill")
    )
    migration = importlib.import_module("network.migrations.0010_reader_versions_backfill")
    migration.backfill(historical.apps, None)
    rows = versions(reader) + versions(other)
    assert [r.recorded_at for r in rows] == [T0, T0]
    wanted = reader_facts(radiologist_ids=[reader.pk, other.pk], at=T0)
    for row in rows:
        assert row.facts == wanted[row.radiologist_id]
        decoded = reader_state(row.radiologist_id, row.recorded_at, row.facts)
        assert decoded.on_shift_at(T0) is (row.radiologist_id == reader.pk)
    # Nothing changed since: the services' receiver appends nothing.
    assert reader_versions_record(radiologist_ids=[reader.pk, other.pk], at=T0 + HOUR) == 0
