"""The demo network is believable and seeding it twice changes nothing."""

import datetime as dt
import itertools

import pytest
from django.db.models import Count

from audit.models import AuditEvent
from demo.seed import seed_demo
from network.models import Facility, License, Radiologist, ReaderVersion, Shift
from studies.models import Study

pytestmark = pytest.mark.django_db


def _counts():
    return {
        model.__name__: model.objects.count()
        for model in (Facility, Radiologist, License, Shift, Study, AuditEvent, ReaderVersion)
    }


def test_seed_is_idempotent():
    now = dt.datetime(2026, 11, 22, 12, tzinfo=dt.UTC)
    seed_demo(now=now)
    first = _counts()
    seed_demo(now=now)
    assert _counts() == first


def test_seed_builds_a_believable_network():
    now = dt.datetime(2026, 11, 22, 12, tzinfo=dt.UTC)
    seed_demo(now=now)
    countries = set(Facility.objects.values_list("jurisdiction__country", flat=True))
    us_states = set(
        Facility.objects.filter(jurisdiction__country="US").values_list(
            "jurisdiction__code", flat=True
        )
    )
    assert 9 <= Facility.objects.count() <= 12
    assert len(us_states) >= 3 and len(countries - {"US"}) >= 2
    assert 25 <= Radiologist.objects.count() <= 35
    assert License.objects.filter(valid_to__lt=now.date()).exists()  # some expired
    assert License.objects.filter(scope="preliminary").exists()
    subs = Radiologist.objects.values("subspecialties__code").annotate(n=Count("id"))
    assert len(subs) >= 9
    # Every hour of the day has readers on shift.
    for hour in range(24):
        at = now.replace(hour=hour, minute=30)
        assert Shift.objects.filter(starts_at__lte=at, ends_at__gt=at).count() >= 5


def test_seed_history_can_be_replayed():
    """The seeded 60 days have readers on shift and a history of their facts, with
    the backdated changes in force only while they lasted and the live rows as now."""
    from demo.seed import (
        HISTORY_DAYS,
        PAUSED_AT_UTC,
        PAUSED_DAYS_AGO,
        PAUSED_READER,
        SUSPENDED_DAYS,
        SUSPENDED_DAYS_AGO,
        SUSPENDED_LICENSE_READER,
    )
    from network.history import reader_timelines

    now = dt.datetime(2026, 11, 22, 12, tzinfo=dt.UTC)
    seed_demo(now=now)
    midnight = now.replace(hour=0)
    since = midnight - dt.timedelta(days=HISTORY_DAYS + 1)
    # Readers on shift at every hour of the history, as at every hour of today.
    for days_ago in (HISTORY_DAYS, 45, 21, 2):
        for hour in range(0, 24, 3):
            at = midnight - dt.timedelta(days=days_ago) + dt.timedelta(hours=hour, minutes=30)
            assert Shift.objects.filter(starts_at__lte=at, ends_at__gt=at).count() >= 5, at
    # No reader is on two shifts at once.
    shifts = sorted(Shift.objects.values_list("radiologist_id", "starts_at", "ends_at"))
    for (a, _, a_end), (b, b_start, _) in itertools.pairwise(shifts):
        assert a != b or b_start >= a_end

    chen = Radiologist.objects.get(user__username=SUSPENDED_LICENSE_READER)
    mbeki = Radiologist.objects.get(user__username=PAUSED_READER)
    timelines = reader_timelines(reading_group_id=chen.reading_group_id, since=since, until=now)
    assert set(timelines) == set(
        Radiologist.objects.filter(reading_group=chen.reading_group).values_list("pk", flat=True)
    )
    # Everyone's version at the start of the window holds the shifts of the window.
    first = timelines[mbeki.pk].at(since + dt.timedelta(hours=1))
    assert first.on_shift_at(midnight - dt.timedelta(days=30, hours=2))
    assert first.next_shift_start(since) is not None

    suspended_at = midnight - dt.timedelta(days=SUSPENDED_DAYS_AGO) + dt.timedelta(hours=15)

    def active_licenses(at: dt.datetime) -> int:
        state = timelines[chen.pk].at(at)
        return sum(span.active for spans in state.licenses.values() for span in spans)

    before = active_licenses(suspended_at - dt.timedelta(hours=1))
    assert active_licenses(suspended_at + dt.timedelta(hours=1)) == before - 1
    after = suspended_at + dt.timedelta(days=SUSPENDED_DAYS, hours=1)
    assert active_licenses(after) == before
    assert not License.objects.filter(radiologist=chen, status="suspended").exists()

    paused_at = midnight - dt.timedelta(days=PAUSED_DAYS_AGO) + dt.timedelta(hours=PAUSED_AT_UTC)
    assert timelines[mbeki.pk].at(paused_at - dt.timedelta(hours=1)).available_at(paused_at)
    during = paused_at + dt.timedelta(hours=1)
    assert not timelines[mbeki.pk].at(during).available_at(during)
    later = paused_at + dt.timedelta(hours=5)
    assert timelines[mbeki.pk].at(later).available_at(later)
    mbeki.refresh_from_db()
    assert mbeki.is_available and mbeki.paused_until is None
