"""Who sees which study, through the API; every read leaves an audit record."""

import pytest
from rest_framework.test import APIClient

from accounts.models import ApiToken
from audit.models import AuditEvent
from studies.services import study_transition
from studies.states import StudyStatus as S
from tests import factories as f
from worklist.models import Offer

pytestmark = pytest.mark.django_db


@pytest.fixture
def studies(facility_a, facility_b, facility_c):
    return {
        "a": f.StudyFactory(facility=facility_a, patient_id="PA-1"),
        "b": f.StudyFactory(facility=facility_b, patient_id="PB-1"),
        "c": f.StudyFactory(facility=facility_c, patient_id="PC-1"),
    }


def _ids(response):
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


def test_facility_staff_see_only_their_facility(api, staff_a, studies):
    assert _ids(api(staff_a).get("/api/v1/studies/")) == {studies["a"].pk}


def test_another_facilitys_study_is_404_not_403(api, staff_a, studies):
    response = api(staff_a).get(f"/api/v1/studies/{studies['b'].pk}/")
    assert response.status_code == 404
    assert api(staff_a).get(f"/api/v1/studies/{studies['a'].pk}/").status_code == 200


def test_group_admin_sees_their_groups_facilities_only(api, group_admin, other_admin, studies):
    assert _ids(api(group_admin).get("/api/v1/studies/")) == {studies["a"].pk, studies["b"].pk}
    assert _ids(api(other_admin).get("/api/v1/studies/")) == {studies["c"].pk}
    assert api(other_admin).get(f"/api/v1/studies/{studies['a'].pk}/").status_code == 404


def test_radiologist_sees_only_studies_offered_to_or_claimed_by_them(
    api, licensed_reader, unlicensed_reader, studies
):
    client = api(licensed_reader.user)
    assert _ids(client.get("/api/v1/studies/")) == set()
    study = studies["a"]
    study_transition(study_id=study.pk, to_status=S.READY)
    study = study_transition(study_id=study.pk, to_status=S.OFFERED)
    offer = Offer.make(study=study, radiologist_id=licensed_reader.pk, tier=0, at=study.ready_at)
    offer.save()
    assert _ids(client.get("/api/v1/studies/")) == {study.pk}
    assert client.get(f"/api/v1/studies/{study.pk}/").status_code == 200
    # Another reader in the same group does not see it.
    assert api(unlicensed_reader.user).get(f"/api/v1/studies/{study.pk}/").status_code == 404
    # Withdrawn offer: gone from view, unless claimed.
    Offer.objects.filter(pk=offer.pk).update(withdrawn_at=study.ready_at)
    assert _ids(client.get("/api/v1/studies/")) == set()
    study_transition(study_id=study.pk, to_status=S.CLAIMED, assigned_radiologist=licensed_reader)
    assert _ids(client.get("/api/v1/studies/")) == {study.pk}


def test_anonymous_gets_401(studies):
    assert APIClient().get("/api/v1/studies/").status_code == 401


def test_token_authentication_works(staff_a, studies):
    _, key = ApiToken.objects.create(user=staff_a)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert _ids(client.get("/api/v1/studies/")) == {studies["a"].pk}


def test_reading_a_study_is_audited_with_who_what_and_patient(api, staff_a, studies):
    api(staff_a).get(f"/api/v1/studies/{studies['a'].pk}/", REMOTE_ADDR="10.1.2.3")
    event = AuditEvent.objects.filter(action="read").get()
    assert event.actor == staff_a
    assert event.object_type == "studies.study"
    assert event.object_id == str(studies["a"].pk)
    assert event.patient_id == "PA-1"
    assert event.ip_address == "10.1.2.3"


def test_listing_audits_each_study_shown(api, group_admin, studies):
    api(group_admin).get("/api/v1/studies/")
    listed = AuditEvent.objects.filter(action="list", actor=group_admin)
    assert set(listed.values_list("patient_id", flat=True)) == {"PA-1", "PB-1"}


def test_a_denied_read_is_not_recorded_as_a_read(api, staff_a, studies):
    api(staff_a).get(f"/api/v1/studies/{studies['b'].pk}/")
    assert not AuditEvent.objects.filter(action="read").exists()


def test_filters(api, group_admin, facility_a, studies):
    stat = f.StudyFactory(facility=facility_a, priority=1, modality="MR")
    client = api(group_admin)
    assert _ids(client.get("/api/v1/studies/?priority=1")) == {stat.pk}
    assert _ids(client.get("/api/v1/studies/?modality=mr")) == {stat.pk}
    assert _ids(client.get(f"/api/v1/studies/?facility={facility_a.pk}")) == {
        stat.pk,
        studies["a"].pk,
    }
    assert _ids(client.get("/api/v1/studies/?status=receiving")) == {
        stat.pk,
        studies["a"].pk,
        studies["b"].pk,
    }
    assert _ids(client.get("/api/v1/studies/?received_after=2999-01-01T00:00:00Z")) == set()


def test_invalid_filter_is_a_400_with_a_message(api, group_admin, studies):
    response = api(group_admin).get("/api/v1/studies/?status=lost")
    assert response.status_code == 400
    assert "status" in response.json()


def test_list_query_count_does_not_grow_with_rows(
    api, group_admin, facility_a, studies, django_assert_max_num_queries
):
    for _ in range(10):
        f.StudyFactory(facility=facility_a)
    with django_assert_max_num_queries(8):
        response = api(group_admin).get("/api/v1/studies/")
    assert response.json()["count"] == 12


def test_detail_shows_series_and_instance_counts(api, group_admin, facility_a):
    from django.utils import timezone

    from studies.models import Instance, Series

    study = f.StudyFactory(facility=facility_a)
    for n, count in ((1, 3), (2, 2)):
        series = Series.objects.create(
            study=study, series_instance_uid=f"1.2.9.{n}", modality="CT", series_number=n
        )
        for i in range(count):
            Instance.objects.create(
                series=series,
                sop_instance_uid=f"1.2.9.{n}.{i}",
                sop_class_uid="1.2.3",
                size_bytes=1,
                sha256="0" * 64,
                storage_key="k",
                received_at=timezone.now(),
            )
    body = api(group_admin).get(f"/api/v1/studies/{study.pk}/").json()
    assert body["series_count"] == 2
    assert body["instance_count"] == 5
    assert [s["instance_count"] for s in body["series"]] == [3, 2]
