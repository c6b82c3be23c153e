"""The demo network is believable and seeding it twice changes nothing."""

import datetime as dt

import pytest
from django.db.models import Count

from audit.models import AuditEvent
from demo.seed import seed_demo
from network.models import Facility, License, Radiologist, Shift
from studies.models import Study

pytestmark = pytest.mark.django_db


def _counts():
    return {
        model.__name__: model.objects.count()
        for model in (Facility, Radiologist, License, Shift, Study, AuditEvent)
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
