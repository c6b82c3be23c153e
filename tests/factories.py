"""factory_boy factories for the network and studies."""

from __future__ import annotations

import datetime as dt
from typing import Any

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from network.models import (
    Facility,
    FacilityAETitle,
    FacilityPrivilege,
    Jurisdiction,
    License,
    Radiologist,
    ReadingGroup,
    Region,
    Shift,
    Subspecialty,
)
from studies.models import Order, Patient, Study
from studies.services import study_create


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.test")
    password = factory.django.Password("pw-for-tests-1")


class JurisdictionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Jurisdiction
        django_get_or_create = ("code",)

    code = "US-TX"
    country = factory.LazyAttribute(lambda j: j.code[:2])
    name = factory.LazyAttribute(lambda j: j.code)


class RegionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Region
        django_get_or_create = ("code",)

    code = "us-tx-north"
    name = "North Texas"
    country = "US"


class ReadingGroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ReadingGroup
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"Reading group {n}")


class FacilityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Facility
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Facility {n}")
    reading_group = factory.SubFactory(ReadingGroupFactory)
    jurisdiction = factory.SubFactory(JurisdictionFactory)
    region = factory.SubFactory(RegionFactory)
    timezone = "America/Chicago"
    tat_stat_minutes = 30
    tat_urgent_minutes = 120
    tat_routine_minutes = 1440

    @factory.post_generation
    def ae_titles(self, create: bool, extracted: Any, **kwargs: Any) -> None:
        if create:
            for title in extracted or [f"FAC{self.pk}"]:
                FacilityAETitle.objects.create(facility=self, ae_title=title)


def subspecialty(code: str) -> Subspecialty:
    # get_or_create: a transactional test's flush removes the migration's rows.
    return Subspecialty.objects.get_or_create(code=code, defaults={"name": code})[0]


class RadiologistFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Radiologist
        skip_postgeneration_save = True

    user = factory.SubFactory(UserFactory)
    reading_group = factory.SubFactory(ReadingGroupFactory)
    display_name = factory.LazyAttribute(lambda r: f"Dr. {r.user.username}")
    home_region = factory.SubFactory(RegionFactory)
    timezone = "America/Chicago"
    workload_cap = 5

    @factory.post_generation
    def subspecialties(self, create: bool, extracted: Any, **kwargs: Any) -> None:
        if create:
            self.subspecialties.set([subspecialty(c) for c in (extracted or ["general"])])


class LicenseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = License

    radiologist = factory.SubFactory(RadiologistFactory)
    jurisdiction = factory.SubFactory(JurisdictionFactory)
    number = factory.Sequence(lambda n: f"L{n:06d}")
    valid_from = factory.LazyFunction(lambda: timezone.now().date() - dt.timedelta(days=365))
    valid_to = factory.LazyFunction(lambda: timezone.now().date() + dt.timedelta(days=365))


class PrivilegeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = FacilityPrivilege

    radiologist = factory.SubFactory(RadiologistFactory)
    facility = factory.SubFactory(FacilityFactory)
    valid_from = factory.LazyFunction(lambda: timezone.now().date() - dt.timedelta(days=365))
    valid_to = factory.LazyFunction(lambda: timezone.now().date() + dt.timedelta(days=365))


class ShiftFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Shift

    radiologist = factory.SubFactory(RadiologistFactory)
    starts_at = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(hours=2))
    ends_at = factory.LazyAttribute(lambda s: s.starts_at + dt.timedelta(hours=8))


class StudyFactory(factory.django.DjangoModelFactory):
    """Studies are made by the real creation service, so SLA and defaults apply."""

    class Meta:
        model = Study

    facility = factory.SubFactory(FacilityFactory)
    study_instance_uid = factory.Sequence(lambda n: f"1.2.826.0.1.3680043.8.498.{n + 1}")
    accession_number = factory.Sequence(lambda n: f"ACC{n:06d}")
    patient_id = factory.Sequence(lambda n: f"PID{n:05d}")
    patient_name = "DOE^JANE"
    modality = "CT"
    body_part = "HEAD"

    @classmethod
    def _create(cls, model_class: type[Study], *args: Any, **kwargs: Any) -> Study:
        return study_create(**kwargs)


class PatientFactory(factory.django.DjangoModelFactory):
    """A patient record of a reading group (issuer, patient id)."""

    class Meta:
        model = Patient

    reading_group = factory.SubFactory(ReadingGroupFactory)
    issuer = "HOSP"
    patient_id = factory.Sequence(lambda n: f"MRN{n:06d}")
    name = "DOE^JANE"


class OrderFactory(factory.django.DjangoModelFactory):
    """An order as the HL7 feed would leave it (a fixture: the feed's own path is
    tested in tests/orders)."""

    class Meta:
        model = Order

    facility = factory.SubFactory(FacilityFactory)
    accession_number = factory.Sequence(lambda n: f"ORD{n:06d}")
    placer_order_number = factory.Sequence(lambda n: f"PL{n:06d}")
    filler_order_number = factory.Sequence(lambda n: f"FL{n:06d}")
    reason_for_exam = "Headache"
    patient_class = Order.PatientClass.OUTPATIENT
    received_at = factory.LazyFunction(timezone.now)
