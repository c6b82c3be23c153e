"""Weekly rotas generate concrete shifts ahead, in the reader's own time zone."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import IntegrityError, transaction

from audit.models import AuditEvent
from network import services
from network.models import Leave, Radiologist, Rota, Shift
from network.signals import eligibility_changed
from tests import factories as f

pytestmark = pytest.mark.django_db

UTC = dt.UTC
LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
MON, TUE, WED, THU, FRI, SAT, SUN = range(7)


def reader_in(zone: str, **kwargs: Any) -> Radiologist:
    return f.RadiologistFactory(timezone=zone, **kwargs)


def rota(
    reader: Radiologist,
    weekday: int,
    starts: str,
    ends: str,
    *,
    valid_from: dt.date = dt.date(2026, 1, 1),
    valid_to: dt.date | None = None,
) -> Rota:
    """A rota row as a fixture (nothing generated: the test generates)."""
    return Rota.objects.create(
        radiologist=reader,
        weekday=weekday,
        starts_at=dt.time.fromisoformat(starts),
        ends_at=dt.time.fromisoformat(ends),
        valid_from=valid_from,
        valid_to=valid_to,
    )


def shifts_of(reader: Radiologist) -> list[Shift]:
    return list(Shift.objects.filter(radiologist=reader).order_by("starts_at"))


def local(shift: Shift, zone: ZoneInfo) -> tuple[str, str, float]:
    """A shift as local start and end (ISO, minutes) and its real length in hours."""
    start = shift.starts_at.astimezone(zone)
    end = shift.ends_at.astimezone(zone)
    hours = (shift.ends_at - shift.starts_at).total_seconds() / 3600
    return f"{start:%Y-%m-%d %H:%M}", f"{end:%Y-%m-%d %H:%M}", hours


@pytest.fixture
def signals() -> Iterator[list[dict[str, Any]]]:
    """What eligibility_changed was told, in order."""
    sent: list[dict[str, Any]] = []

    def listen(sender: Any, **kwargs: Any) -> None:
        sent.append(kwargs)

    eligibility_changed.connect(listen, dispatch_uid="test-rotas-listen")
    yield sent
    eligibility_changed.disconnect(dispatch_uid="test-rotas-listen")


# --- Daylight-saving time ------------------------------------------------------------
def test_a_day_rota_stays_on_the_local_clock_across_the_london_spring_change() -> None:
    reader = reader_in("Europe/London")
    for day in range(7):
        rota(reader, day, "08:00", "16:00")
    # Wednesday 25 March 2026; clocks go forward on Sunday 29 March at 01:00 GMT.
    now = dt.datetime(2026, 3, 25, 5, 0, tzinfo=UTC)
    result = services.rota_shifts_generate(now=now, horizon_days=7)
    rows = shifts_of(reader)
    assert len(result.created) == len(rows) == 7
    assert [local(s, LONDON) for s in rows] == [
        (f"2026-03-{d} 08:00", f"2026-03-{d} 16:00", 8.0) for d in range(25, 32)
    ]
    # The same local hours are an hour earlier in UTC once summer time has begun.
    by_day = {s.starts_at.astimezone(LONDON).day: s for s in rows}
    assert by_day[28].starts_at == dt.datetime(2026, 3, 28, 8, 0, tzinfo=UTC)
    assert by_day[29].starts_at == dt.datetime(2026, 3, 29, 7, 0, tzinfo=UTC)
    assert by_day[29].ends_at == dt.datetime(2026, 3, 29, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "saturday", "start_utc", "end_utc", "hours"),
    [
        # Europe/London, last Sunday of March: 22:00 GMT to 06:00 BST.
        ("Europe/London", dt.date(2026, 3, 28), (3, 28, 22), (3, 29, 5), 7),
        # Europe/London, last Sunday of October: 22:00 BST to 06:00 GMT.
        ("Europe/London", dt.date(2026, 10, 24), (10, 24, 21), (10, 25, 6), 9),
        # America/New_York, second Sunday of March: 22:00 EST to 06:00 EDT.
        ("America/New_York", dt.date(2026, 3, 7), (3, 8, 3), (3, 8, 10), 7),
        # America/New_York, first Sunday of November: 22:00 EDT to 06:00 EST.
        ("America/New_York", dt.date(2026, 10, 31), (11, 1, 2), (11, 1, 11), 9),
    ],
)
def test_an_overnight_shift_across_the_change_lasts_seven_or_nine_real_hours(
    zone: str,
    saturday: dt.date,
    start_utc: tuple[int, int, int],
    end_utc: tuple[int, int, int],
    hours: int,
) -> None:
    reader = reader_in(zone)
    rota(reader, SAT, "22:00", "06:00")
    services.rota_shifts_generate(
        now=dt.datetime.combine(saturday, dt.time(12), tzinfo=UTC), horizon_days=1
    )
    (shift,) = shifts_of(reader)
    assert shift.starts_at == dt.datetime(2026, *start_utc, 0, tzinfo=UTC)
    assert shift.ends_at == dt.datetime(2026, *end_utc, 0, tzinfo=UTC)
    assert local(shift, ZoneInfo(zone))[:2] == (
        f"{saturday} 22:00",
        f"{saturday + dt.timedelta(days=1)} 06:00",
    )
    assert (shift.ends_at - shift.starts_at) == dt.timedelta(hours=hours)


def test_new_york_day_rota_across_both_changes_is_always_eight_hours_local() -> None:
    reader = reader_in("America/New_York")
    rota(reader, SUN, "08:00", "16:00")
    for now, start in [
        (dt.datetime(2026, 3, 2, tzinfo=UTC), dt.datetime(2026, 3, 8, 12, tzinfo=UTC)),
        (dt.datetime(2026, 10, 26, tzinfo=UTC), dt.datetime(2026, 11, 1, 13, tzinfo=UTC)),
    ]:
        services.rota_shifts_generate(now=now, horizon_days=7)
        shift = Shift.objects.get(radiologist=reader, starts_at=start)
        assert local(shift, NEW_YORK)[2] == 8.0
        assert local(shift, NEW_YORK)[0].endswith("08:00")


def test_a_slot_that_the_spring_gap_swallows_is_skipped() -> None:
    reader = reader_in("Europe/London")
    # 01:00-02:00 local does not exist on 29 March 2026 (01:00 GMT becomes 02:00 BST).
    rota(reader, SUN, "01:00", "02:00")
    result = services.rota_shifts_generate(
        now=dt.datetime(2026, 3, 21, tzinfo=UTC), horizon_days=16
    )
    starts = [s.starts_at for s in result.created]
    # The Sundays before and after keep their hour; the day of the change has none.
    assert starts == [
        dt.datetime(2026, 3, 22, 1, 0, tzinfo=UTC),
        dt.datetime(2026, 4, 5, 0, 0, tzinfo=UTC),
    ]


# --- What is generated ------------------------------------------------------------
def test_generation_is_idempotent_and_one_shift_per_rota_and_start() -> None:
    reader = reader_in("Europe/London")
    rota(reader, MON, "08:00", "16:00")
    rota(reader, THU, "20:00", "08:00")
    now = dt.datetime(2026, 6, 1, 6, 0, tzinfo=UTC)
    first = services.rota_shifts_generate(now=now, horizon_days=14)
    assert len(first.created) == 4 and first.removed == []
    before = [(s.pk, s.starts_at, s.ends_at) for s in shifts_of(reader)]
    again = services.rota_shifts_generate(now=now, horizon_days=14)
    assert again.created == [] and again.removed == []
    assert [(s.pk, s.starts_at, s.ends_at) for s in shifts_of(reader)] == before
    # The database says the same as the code: a second row per rota and start is refused.
    shift = shifts_of(reader)[0]
    with pytest.raises(IntegrityError), transaction.atomic():
        Shift.objects.create(
            radiologist=reader,
            rota=shift.rota,
            starts_at=shift.starts_at,
            ends_at=shift.ends_at + dt.timedelta(hours=1),
        )


def test_the_horizon_and_the_rotas_validity_bound_what_is_generated(settings: Any) -> None:
    settings.ROTA_HORIZON_DAYS = 10
    reader = reader_in("UTC")
    rota(reader, MON, "08:00", "16:00", valid_from=dt.date(2026, 6, 8))
    rota(reader, TUE, "08:00", "16:00", valid_to=dt.date(2026, 6, 2))
    now = dt.datetime(2026, 6, 1, 6, 0, tzinfo=UTC)  # a Monday
    services.rota_shifts_generate(now=now)  # the setting's horizon: to 11 June 06:00
    assert [s.starts_at.date() for s in shifts_of(reader)] == [
        dt.date(2026, 6, 2),  # Tuesday, the rota's last day
        dt.date(2026, 6, 8),  # Monday, the rota's first day
    ]


def test_shifts_already_under_way_are_not_made_by_the_sweep() -> None:
    reader = reader_in("UTC")
    rota(reader, MON, "08:00", "16:00")
    now = dt.datetime(2026, 6, 1, 10, 0, tzinfo=UTC)  # Monday, 10:00
    services.rota_shifts_generate(now=now, horizon_days=8)
    # Only next Monday's: today's began before the sweep saw it (a shift deleted by hand
    # while under way does not come back).
    assert [s.starts_at for s in shifts_of(reader)] == [dt.datetime(2026, 6, 8, 8, 0, tzinfo=UTC)]


def test_a_rota_saved_mid_shift_puts_its_reader_on_shift_now(
    signals: list[dict[str, Any]],
) -> None:
    reader = reader_in("Europe/London")
    now = dt.datetime(2026, 6, 1, 10, 0, tzinfo=UTC)  # Monday, 11:00 BST
    with time_machine.travel(now, tick=False):
        saved = services.rota_save(
            actor=None,
            instance=Rota(
                radiologist=reader,
                weekday=MON,
                starts_at=dt.time(8),
                ends_at=dt.time(16),
                valid_from=dt.date(2026, 6, 1),
            ),
        )
    rows = shifts_of(reader)
    assert rows[0].starts_at == dt.datetime(2026, 6, 1, 7, 0, tzinfo=UTC)  # under way
    assert [s.rota_id for s in rows] == [saved.pk] * 3  # today and two more Mondays
    assert signals == [{"signal": eligibility_changed, "radiologist_ids": [reader.pk], "at": now}]
    # Audited: the rota, and each shift it made.
    assert AuditEvent.objects.filter(object_type="network.rota", action="create").count() == 1
    created = AuditEvent.objects.filter(object_type="network.shift", action="create")
    assert sorted(int(e.object_id) for e in created) == sorted(s.pk for s in rows)
    assert all(e.detail["generated"] for e in created)


def test_two_rotas_of_one_reader_never_make_overlapping_shifts() -> None:
    reader = reader_in("UTC")
    first = rota(reader, MON, "08:00", "16:00")
    rota(reader, MON, "12:00", "20:00")
    services.rota_shifts_generate(now=dt.datetime(2026, 6, 1, 6, tzinfo=UTC), horizon_days=7)
    assert [(s.rota_id, s.starts_at.hour) for s in shifts_of(reader)] == [(first.pk, 8)]


def test_a_manual_shift_wins_over_the_rotas_slot() -> None:
    reader = reader_in("UTC")
    rota(reader, MON, "08:00", "16:00")
    rota(reader, TUE, "08:00", "16:00")
    manual = f.ShiftFactory(
        radiologist=reader,
        starts_at=dt.datetime(2026, 6, 1, 14, tzinfo=UTC),
        ends_at=dt.datetime(2026, 6, 1, 22, tzinfo=UTC),
    )
    services.rota_shifts_generate(now=dt.datetime(2026, 6, 1, 6, tzinfo=UTC), horizon_days=2)
    assert [(s.pk == manual.pk, s.starts_at) for s in shifts_of(reader)] == [
        (True, dt.datetime(2026, 6, 1, 14, tzinfo=UTC)),
        (False, dt.datetime(2026, 6, 2, 8, tzinfo=UTC)),
    ]


# --- Leave -----------------------------------------------------------------------------
def test_no_shift_is_generated_on_a_day_of_leave_in_the_readers_time_zone() -> None:
    reader = reader_in("America/New_York")
    for day in range(7):
        rota(reader, day, "20:00", "04:00")
    Leave.objects.create(
        radiologist=reader, starts_on=dt.date(2026, 6, 3), ends_on=dt.date(2026, 6, 4)
    )
    services.rota_shifts_generate(now=dt.datetime(2026, 6, 1, 12, tzinfo=UTC), horizon_days=6)
    # Local start days (20:00 New York is 00:00 UTC the next day): the 3rd and 4th away.
    days = [s.starts_at.astimezone(NEW_YORK).date().day for s in shifts_of(reader)]
    assert days == [1, 2, 5, 6]


def test_leave_taken_removes_future_generated_shifts_and_keeps_the_one_under_way(
    signals: list[dict[str, Any]], settings: Any
) -> None:
    settings.ROTA_HORIZON_DAYS = 5
    reader = reader_in("UTC")
    for day in range(7):
        rota(reader, day, "08:00", "16:00")
    services.rota_shifts_generate(now=dt.datetime(2026, 6, 1, 6, tzinfo=UTC), horizon_days=7)
    assert len(shifts_of(reader)) == 7
    now = dt.datetime(2026, 6, 2, 10, tzinfo=UTC)  # Tuesday's shift under way
    with time_machine.travel(now, tick=False):
        leave = services.leave_save(
            actor=None,
            instance=Leave(
                radiologist=reader,
                starts_on=dt.date(2026, 6, 2),
                ends_on=dt.date(2026, 6, 4),
                reason="conference",
            ),
        )
    assert [s.starts_at.day for s in shifts_of(reader)] == [1, 2, 5, 6, 7]
    assert signals[-1]["radiologist_ids"] == [reader.pk]
    deleted = AuditEvent.objects.filter(object_type="network.shift", action="delete")
    assert deleted.count() == 2
    # Leave taken back: its days get their shifts again, the one under way kept as is.
    with time_machine.travel(now, tick=False):
        services.leave_delete(actor=None, instance=leave)
    assert [s.starts_at.day for s in shifts_of(reader)] == [1, 2, 3, 4, 5, 6, 7]


# --- Rota edits ------------------------------------------------------------------------
def test_a_rota_edit_replaces_future_generated_shifts_only() -> None:
    reader = reader_in("Europe/London")
    wednesday = rota(reader, WED, "08:00", "16:00")
    # Last Wednesday's shift (past) and this Wednesday's (under way at 10:00 BST).
    Shift.objects.create(
        radiologist=reader,
        rota=wednesday,
        starts_at=dt.datetime(2026, 5, 27, 7, tzinfo=UTC),
        ends_at=dt.datetime(2026, 5, 27, 15, tzinfo=UTC),
    )
    services.rota_shifts_generate(now=dt.datetime(2026, 6, 3, 6, tzinfo=UTC), horizon_days=14)
    assert len(shifts_of(reader)) == 3  # the past one, today's and next week's
    now = dt.datetime(2026, 6, 3, 9, tzinfo=UTC)
    before = snapshot_of(wednesday)
    wednesday.starts_at, wednesday.ends_at = dt.time(9), dt.time(17)
    with time_machine.travel(now, tick=False):
        services.rota_save(actor=None, instance=wednesday, before=before)
    assert [local(s, LONDON) for s in shifts_of(reader)] == [
        ("2026-05-27 08:00", "2026-05-27 16:00", 8.0),  # past: what happened
        ("2026-06-03 08:00", "2026-06-03 16:00", 8.0),  # under way: kept
        ("2026-06-10 09:00", "2026-06-10 17:00", 8.0),
        ("2026-06-17 09:00", "2026-06-17 17:00", 8.0),
    ]


def test_deleting_a_rota_removes_its_future_shifts_and_keeps_the_past_as_plain_shifts() -> None:
    reader = reader_in("UTC")
    monday = rota(reader, MON, "08:00", "16:00")
    services.rota_shifts_generate(now=dt.datetime(2026, 6, 1, 6, tzinfo=UTC), horizon_days=14)
    assert len(shifts_of(reader)) == 2
    with time_machine.travel(dt.datetime(2026, 6, 1, 9, tzinfo=UTC), tick=False):
        services.rota_delete(actor=None, instance=monday)
    (kept,) = shifts_of(reader)
    assert kept.starts_at == dt.datetime(2026, 6, 1, 8, tzinfo=UTC)
    assert kept.rota_id is None
    assert not Rota.objects.filter(pk=monday.pk).exists()


def test_moving_a_rota_to_another_reader_moves_its_future_shifts() -> None:
    first, second = reader_in("UTC"), reader_in("UTC")
    moved = rota(first, MON, "08:00", "16:00")
    services.rota_shifts_generate(now=dt.datetime(2026, 6, 1, 6, tzinfo=UTC), horizon_days=7)
    before = snapshot_of(moved)
    moved.radiologist = second
    with time_machine.travel(dt.datetime(2026, 6, 1, 6, tzinfo=UTC), tick=False):
        services.rota_save(actor=None, instance=moved, before=before)
    assert shifts_of(first) == []
    assert [s.starts_at for s in shifts_of(second)] == [
        dt.datetime(2026, 6, 1, 8, tzinfo=UTC),
        dt.datetime(2026, 6, 8, 8, tzinfo=UTC),
    ]


def test_the_sweep_repairs_a_rota_changed_behind_the_services_back() -> None:
    reader = reader_in("UTC")
    monday = rota(reader, MON, "08:00", "16:00")
    now = dt.datetime(2026, 6, 1, 6, tzinfo=UTC)
    services.rota_shifts_generate(now=now, horizon_days=14)
    Rota.objects.filter(pk=monday.pk).update(ends_at=dt.time(12))
    result = services.rota_shifts_generate(now=now, horizon_days=14)
    assert len(result.removed) == 2 and len(result.created) == 2
    assert {s.ends_at.hour for s in shifts_of(reader)} == {12}


def test_the_beat_task_generates(settings: Any) -> None:
    from network.tasks import rota_shifts_generate

    settings.ROTA_HORIZON_DAYS = 7
    reader = reader_in("UTC")
    rota(reader, MON, "08:00", "16:00")
    with time_machine.travel(dt.datetime(2026, 6, 1, 6, tzinfo=UTC), tick=False):
        assert rota_shifts_generate.delay().get() == 1
        assert rota_shifts_generate.delay().get() == 0
    assert len(shifts_of(reader)) == 1


def snapshot_of(obj: Any) -> dict[str, Any]:
    from teleradiology.audited import snapshot

    return snapshot(obj)


# --- Concurrency (PostgreSQL, real threads) -------------------------------------------
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_generations_make_each_shift_once() -> None:
    import threading

    from django.db import connection

    readers = [reader_in("Europe/London") for _ in range(5)]
    for reader in readers:
        for day in range(7):
            rota(reader, day, "08:00", "16:00")
    now = dt.datetime(2026, 6, 1, 6, tzinfo=UTC)
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def generate() -> None:
        try:
            barrier.wait()
            services.rota_shifts_generate(now=now, horizon_days=14)
        except BaseException as exc:  # the test reports any, whatever it is
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=generate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    for reader in readers:
        rows = shifts_of(reader)
        assert len(rows) == 14
        assert len({s.starts_at for s in rows}) == 14
    # Each shift was made, and audited, once.
    assert AuditEvent.objects.filter(object_type="network.shift", action="create").count() == 70


def test_a_manual_shift_over_a_generated_one_is_refused_with_what_to_do() -> None:
    from django.core.exceptions import ValidationError

    reader = reader_in("UTC")
    rota(reader, MON, "08:00", "16:00")
    services.rota_shifts_generate(now=dt.datetime(2026, 6, 1, 6, tzinfo=UTC), horizon_days=2)
    manual = Shift(
        radiologist=reader,
        starts_at=dt.datetime(2026, 6, 1, 12, tzinfo=UTC),
        ends_at=dt.datetime(2026, 6, 1, 20, tzinfo=UTC),
    )
    with pytest.raises(ValidationError, match="add leave for that day"):
        services.network_object_save(actor=None, instance=manual)
