"""Who sees a prior (a study retrieved from the facility's PACS): whoever may see a
current study of the same patient record at the same facility (its offered or
claiming reader, the facility's staff, the group's admins), nobody else; the
one-study check agrees with the list filter for every kind of user.  Priors are
never routed, never on a worklist, never in turnaround figures."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from access.selectors import study_is_visible, study_list_visible
from ingest.services import studies_mark_ready
from network.services import facility_staff_grant
from priors.models import PriorStudy
from routing.services import routing_sweep
from studies.models import Study
from studies.services import study_transition
from tests import factories as f
from worklist.services.offers import offer_open, offers_withdraw

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(
    facility_a,
    facility_b,
    facility_c,
    group_admin,
    other_admin,
    staff_a,
    staff_b,
    licensed_reader,
    unlicensed_reader,
):
    now = timezone.now()
    current = f.StudyFactory(facility=facility_a, patient_id="VIS-1")
    study_transition(study_id=current.pk, to_status="ready", at=now)
    offer_open(study=current, radiologist_id=licensed_reader.pk, tier=0, rule_id=None, at=now)
    prior = f.StudyFactory(facility=facility_a, patient_id="VIS-1", is_prior=True)
    # Same patient id at another facility of the group (another patient record,
    # another facility): not visible through the current study.
    elsewhere = f.StudyFactory(facility=facility_b, patient_id="VIS-1", is_prior=True)
    other_patient = f.StudyFactory(facility=facility_a, patient_id="VIS-2", is_prior=True)
    other_group = f.StudyFactory(facility=facility_c, patient_id="VIS-1", is_prior=True)
    superuser = f.UserFactory(username="root", is_superuser=True)
    staff_c = f.UserFactory(username="staff_c")
    facility_staff_grant(actor=None, user=staff_c, facility=facility_c)
    users = {
        "offered reader": licensed_reader.user,
        "another reader": unlicensed_reader.user,
        "admin": group_admin,
        "other admin": other_admin,
        "staff A": staff_a,
        "staff B": staff_b,
        "staff C": staff_c,
        "superuser": superuser,
        "inactive": f.UserFactory(username="gone", is_active=False),
    }
    studies = {
        "current": current,
        "prior": prior,
        "elsewhere": elsewhere,
        "other patient": other_patient,
        "other group": other_group,
    }
    return users, studies


def _visible(users, studies):
    seen = {}
    for who, user in users.items():
        listed = set(study_list_visible(user=user).values_list("pk", flat=True))
        for name, s in studies.items():
            study = Study.objects.get(pk=s.pk)
            one = study_is_visible(user=user, study=study)
            assert one == (study.pk in listed), (who, name)
            seen[who, name] = one
    return seen


def test_a_prior_is_seen_by_who_sees_a_current_study_of_its_patient(world):
    users, studies = world
    seen = _visible(users, studies)
    assert seen["offered reader", "prior"]
    assert not seen["offered reader", "elsewhere"]
    assert not seen["offered reader", "other patient"]
    assert not seen["offered reader", "other group"]
    assert not any(seen["another reader", s] for s in studies)
    assert seen["staff A", "prior"] and not seen["staff B", "prior"]
    assert seen["admin", "prior"] and not seen["other admin", "prior"]
    assert seen["staff C", "other group"] and not seen["staff C", "prior"]
    assert all(seen["superuser", s] for s in studies)
    assert not any(seen["inactive", s] for s in studies)


def test_the_reader_loses_the_prior_with_the_offer(world):
    users, studies = world
    offers_withdraw(at=timezone.now(), reason="test", study_id=studies["current"].pk)
    seen = _visible(users, studies)
    assert not seen["offered reader", "prior"]
    assert not seen["offered reader", "current"]


def test_a_claiming_reader_sees_the_prior(world, licensed_reader):
    users, studies = world
    Study.objects.filter(pk=studies["current"].pk).update(assigned_radiologist=licensed_reader)
    offers_withdraw(at=timezone.now(), reason="test", study_id=studies["current"].pk)
    seen = _visible(users, studies)
    assert seen["offered reader", "prior"]


def test_priors_are_never_routed_nor_held(facility_a, licensed_reader):
    prior = f.StudyFactory(facility=facility_a, patient_id="VIS-3", is_prior=True)
    studies_mark_ready(quiet_seconds=0)
    prior.refresh_from_db()
    assert prior.status == "prior" and prior.ready_at is None
    routing_sweep(now=timezone.now() + dt.timedelta(hours=1))
    prior.refresh_from_db()
    assert prior.status == "prior"
    assert not PriorStudy.objects.exists()


def test_a_fetch_whose_facility_lost_its_pacs_ends_and_frees_the_study(facility_a):
    from network.models import Facility
    from priors.models import PriorFetch
    from priors.services import prior_fetches_sweep

    Facility.objects.filter(pk=facility_a.pk).update(
        pacs_ae_title="GONE", pacs_host="127.0.0.1", pacs_port=9
    )
    study = f.StudyFactory(facility=facility_a, patient_id="VIS-4")
    now = timezone.now()
    study_transition(
        study_id=study.pk, to_status="ready", at=now, priors_hold_until=now + dt.timedelta(hours=1)
    )
    PriorFetch.objects.create(study=study, status="retrieving", attempts=1, next_attempt_at=now)
    PriorStudy.objects.create(
        current=study, study_instance_uid="1.2.3", relevance_code="region", relevance="x"
    )
    Facility.objects.filter(pk=facility_a.pk).update(pacs_ae_title="", pacs_host="", pacs_port=None)
    assert prior_fetches_sweep() == 1  # the task runs inline here
    fetch = PriorFetch.objects.get(study=study)
    assert fetch.status == "failed" and fetch.next_attempt_at is None
    assert PriorStudy.objects.get(current=study).status == "failed"
    study.refresh_from_db()
    assert study.priors_hold_until is None
    assert prior_fetches_sweep() == 0
