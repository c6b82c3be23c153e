"""The database itself protects the network's data, not only Python."""

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from network.models import FacilityAETitle, Jurisdiction, Shift, Subspecialty
from tests import factories as f

pytestmark = pytest.mark.django_db


def test_all_subspecialties_are_seeded_by_migration():
    assert set(Subspecialty.objects.values_list("code", flat=True)) == {
        "neuro",
        "msk",
        "body",
        "chest",
        "breast",
        "pediatric",
        "cardiac",
        "nuclear",
        "interventional",
        "emergency",
        "general",
    }


@pytest.mark.parametrize("code", ["US-TX", "GB-ENG", "IN-KA", "AU-NSW"])
def test_iso_3166_2_codes_are_accepted(code):
    Jurisdiction(code=code, country=code[:2], name=code).full_clean()


@pytest.mark.parametrize("code", ["TX", "us-tx", "US_TX", "USA-TX", "US-TEXAS"])
def test_malformed_jurisdiction_codes_are_refused(code):
    with pytest.raises(ValidationError):
        Jurisdiction(code=code, country="US", name="x").full_clean()


def test_jurisdiction_code_must_start_with_its_country_in_the_database():
    with pytest.raises(IntegrityError):
        Jurisdiction.objects.create(code="US-TX", country="GB", name="wrong")


def test_facility_turnaround_targets_must_be_ordered_in_the_database():
    with pytest.raises(IntegrityError):
        f.FacilityFactory(tat_stat_minutes=300, tat_urgent_minutes=60)


def test_facility_turnaround_cannot_be_zero():
    with pytest.raises(IntegrityError):
        f.FacilityFactory(tat_stat_minutes=0)


def test_an_ae_title_belongs_to_one_facility_only():
    f.FacilityFactory(ae_titles=["SHARED_AE"])
    with pytest.raises(IntegrityError):
        f.FacilityFactory(ae_titles=["SHARED_AE"])


@pytest.mark.parametrize("title", ["", "THIS_IS_TOO_LONG_17", "BACK\\SLASH", " LEADING"])
def test_malformed_ae_titles_are_refused(title):
    facility = f.FacilityFactory()
    with pytest.raises(ValidationError):
        FacilityAETitle(facility=facility, ae_title=title).full_clean()


def test_license_cannot_end_before_it_starts():
    with pytest.raises(IntegrityError):
        f.LicenseFactory(valid_from=dt.date(2026, 5, 1), valid_to=dt.date(2026, 4, 1))


def test_license_numbers_are_unique_within_a_jurisdiction():
    f.LicenseFactory(number="TX-1")
    with pytest.raises(IntegrityError), transaction.atomic():
        f.LicenseFactory(number="TX-1")
    # ...but the same number may exist in another jurisdiction.
    f.LicenseFactory(number="TX-1", jurisdiction=f.JurisdictionFactory(code="US-NY"))


def test_license_status_is_checked_in_the_database():
    lic = f.LicenseFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        type(lic).objects.filter(pk=lic.pk).update(status="bogus")


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def test_license_validity_runs_through_its_last_day_in_the_jurisdictions_zone():
    # US-TX: America/Chicago (CST, UTC-6, in December).
    texas = f.JurisdictionFactory(code="US-TX", timezone="America/Chicago")
    lic = f.LicenseFactory(
        jurisdiction=texas, valid_from=dt.date(2026, 1, 1), valid_to=dt.date(2026, 12, 31)
    )
    assert not lic.is_valid_at(utc(2026, 1, 1, 5, 59))  # 23:59 on 31 December in Chicago
    assert lic.is_valid_at(utc(2026, 1, 1, 6, 0))
    assert lic.is_valid_at(utc(2027, 1, 1, 5, 59))  # 23:59 on its last day there
    assert not lic.is_valid_at(utc(2027, 1, 1, 6, 0))
    lic.status = "suspended"
    assert not lic.is_valid_at(utc(2026, 6, 1, 12))


def test_a_privilege_may_end_at_a_time_of_day_in_the_facilitys_zone():
    facility = f.FacilityFactory(timezone="Australia/Sydney")
    priv = f.PrivilegeFactory(
        facility=facility,
        valid_from=dt.date(2026, 1, 1),
        valid_to=dt.date(2026, 12, 6),
        valid_until_time=dt.time(17, 30),
    )
    # 17:30 AEDT (UTC+11) on 6 December is 06:30 UTC.
    assert priv.valid_window()[1] == utc(2026, 12, 6, 6, 30)
    assert priv.is_valid_at(utc(2026, 12, 6, 6, 29))
    assert not priv.is_valid_at(utc(2026, 12, 6, 6, 30))


def test_shift_must_end_after_it_starts():
    with pytest.raises(IntegrityError):
        f.ShiftFactory(
            ends_at=dt.datetime(2026, 1, 1, 8, tzinfo=dt.UTC),
            starts_at=dt.datetime(2026, 1, 1, 9, tzinfo=dt.UTC),
        )


def test_workload_cap_must_be_positive():
    with pytest.raises(IntegrityError):
        f.RadiologistFactory(workload_cap=0)


def test_a_facility_with_studies_cannot_be_deleted():
    study = f.StudyFactory()
    with pytest.raises(ProtectedError):
        study.facility.delete()


def test_a_jurisdiction_in_use_cannot_be_deleted():
    facility = f.FacilityFactory()
    with pytest.raises(ProtectedError):
        facility.jurisdiction.delete()


def test_who_is_on_shift_now_is_one_range_query(django_assert_num_queries):
    from network.selectors import shift_list_on_duty

    now = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
    on = f.ShiftFactory(starts_at=now - dt.timedelta(hours=1))
    f.ShiftFactory(starts_at=now + dt.timedelta(hours=1))  # not yet
    f.ShiftFactory(starts_at=now - dt.timedelta(hours=9))  # already over
    ended_exactly = f.ShiftFactory(starts_at=now - dt.timedelta(hours=8))
    assert ended_exactly.ends_at == now
    with django_assert_num_queries(1):
        assert list(shift_list_on_duty(at=now)) == [on]
    assert Shift.objects.count() == 4
