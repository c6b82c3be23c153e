"""Group admins manage their own network; nobody else writes it."""

import datetime as dt

import pytest

from audit.models import AuditEvent
from network.models import Facility, License, Shift
from tests import factories as f

pytestmark = pytest.mark.django_db


def facility_payload(group, **overrides):
    f.JurisdictionFactory(code="US-TX")
    f.RegionFactory(code="us-tx-north")
    return {
        "name": "New Clinic",
        "reading_group": group.pk,
        "ae_titles": ["NEWCLINIC"],
        "jurisdiction": "US-TX",
        "timezone": "America/Chicago",
        "region": "us-tx-north",
        "tat_stat_minutes": 30,
        "tat_urgent_minutes": 120,
        "tat_routine_minutes": 1440,
        **overrides,
    }


def test_group_admin_creates_a_facility_with_ae_titles_and_it_is_audited(api, group_admin, group_a):
    response = api(group_admin).post(
        "/api/v1/facilities/", facility_payload(group_a), format="json"
    )
    assert response.status_code == 201, response.content
    facility = Facility.objects.get(pk=response.json()["id"])
    assert list(facility.ae_titles.values_list("ae_title", flat=True)) == ["NEWCLINIC"]
    assert response.json()["ae_titles"] == ["NEWCLINIC"]
    assert AuditEvent.objects.filter(
        action="create",
        object_type="network.facility",
        object_id=str(facility.pk),
        actor=group_admin,
    ).exists()


def test_admin_cannot_create_a_facility_in_another_group(api, other_admin, group_a):
    response = api(other_admin).post(
        "/api/v1/facilities/", facility_payload(group_a), format="json"
    )
    assert response.status_code == 400
    assert "reading_group" in response.json()


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"jurisdiction": "XX-YY"}, "jurisdiction"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"tat_stat_minutes": 500}, "tat_stat_minutes"),
        ({"ae_titles": ["WAY_TOO_LONG_AE_TITLE"]}, "ae_titles"),
        ({"name": ""}, "name"),
    ],
)
def test_invalid_facility_payloads_get_field_messages(api, group_admin, group_a, override, field):
    response = api(group_admin).post(
        "/api/v1/facilities/", facility_payload(group_a, **override), format="json"
    )
    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert not Facility.objects.filter(name="New Clinic").exists()


def test_an_ae_title_taken_by_another_facility_is_refused_and_nothing_is_written(
    api, group_admin, group_a, facility_c
):
    response = api(group_admin).post(
        "/api/v1/facilities/", facility_payload(group_a, ae_titles=["FAC_C"]), format="json"
    )
    assert response.status_code == 400
    assert "FAC_C" in str(response.json())
    assert not Facility.objects.filter(name="New Clinic").exists()


def test_other_groups_facility_is_invisible_and_unwritable(api, other_admin, facility_a):
    client = api(other_admin)
    assert client.get(f"/api/v1/facilities/{facility_a.pk}/").status_code == 404
    assert (
        client.patch(
            f"/api/v1/facilities/{facility_a.pk}/", {"name": "x"}, format="json"
        ).status_code
        == 404
    )


def test_update_is_audited_with_the_change(api, group_admin, facility_a):
    response = api(group_admin).patch(
        f"/api/v1/facilities/{facility_a.pk}/", {"tat_stat_minutes": 20}, format="json"
    )
    assert response.status_code == 200, response.content
    event = AuditEvent.objects.filter(action="update", object_id=str(facility_a.pk)).latest("id")
    assert event.detail["changed"]["tat_stat_minutes"] == ["30", "20"]


def test_deleting_a_facility_with_studies_is_a_409(api, group_admin, facility_a):
    f.StudyFactory(facility=facility_a)
    response = api(group_admin).delete(f"/api/v1/facilities/{facility_a.pk}/")
    assert response.status_code == 409
    assert Facility.objects.filter(pk=facility_a.pk).exists()


def test_facility_staff_read_their_facility_but_cannot_write(api, staff_a, facility_a, facility_b):
    client = api(staff_a)
    ids = {row["id"] for row in client.get("/api/v1/facilities/").json()["results"]}
    assert ids == {facility_a.pk}
    response = client.patch(f"/api/v1/facilities/{facility_a.pk}/", {"name": "x"}, format="json")
    assert response.status_code == 403


def test_radiologist_cannot_write_the_network(api, licensed_reader, facility_a):
    client = api(licensed_reader.user)
    assert client.post("/api/v1/licenses/", {}, format="json").status_code == 403
    assert (
        client.patch(
            f"/api/v1/facilities/{facility_a.pk}/", {"name": "x"}, format="json"
        ).status_code
        == 403
    )


def test_radiologist_reads_only_their_own_credentials(api, licensed_reader, unlicensed_reader):
    f.LicenseFactory(radiologist=unlicensed_reader)
    rows = api(licensed_reader.user).get("/api/v1/licenses/").json()["results"]
    assert {row["radiologist"] for row in rows} == {licensed_reader.pk}


def test_admin_manages_licenses_with_validation(api, group_admin, licensed_reader):
    client = api(group_admin)
    payload = {
        "radiologist": licensed_reader.pk,
        "jurisdiction": "US-TX",
        "number": "TX-999",
        "valid_from": "2026-01-01",
        "valid_to": "2025-01-01",
        "scope": "preliminary",
    }
    bad = client.post("/api/v1/licenses/", payload, format="json")
    assert bad.status_code == 400
    assert "cannot end before it starts" in str(bad.json())
    payload["valid_to"] = "2027-01-01"
    good = client.post("/api/v1/licenses/", payload, format="json")
    assert good.status_code == 201, good.content
    assert License.objects.get(number="TX-999").scope == "preliminary"


def test_admin_cannot_give_a_license_to_another_groups_reader(api, other_admin, licensed_reader):
    payload = {
        "radiologist": licensed_reader.pk,
        "jurisdiction": "US-TX",
        "number": "TX-1000",
        "valid_from": "2026-01-01",
        "valid_to": "2027-01-01",
    }
    response = api(other_admin).post("/api/v1/licenses/", payload, format="json")
    assert response.status_code == 400
    assert "radiologist" in response.json()


def test_overlapping_shifts_are_refused(api, group_admin, licensed_reader):
    existing = Shift.objects.get(radiologist=licensed_reader)
    response = api(group_admin).post(
        "/api/v1/shifts/",
        {
            "radiologist": licensed_reader.pk,
            "starts_at": (existing.starts_at + dt.timedelta(hours=1)).isoformat(),
            "ends_at": (existing.ends_at + dt.timedelta(hours=1)).isoformat(),
        },
        format="json",
    )
    assert response.status_code == 400
    assert "overlaps" in str(response.json())


def test_who_is_on_duty_filter(api, group_admin, licensed_reader):
    existing = Shift.objects.get(radiologist=licensed_reader)
    at = (existing.starts_at + dt.timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    rows = api(group_admin).get("/api/v1/shifts/", {"on_duty_at": at}).json()["results"]
    assert [row["id"] for row in rows] == [existing.pk]


def test_radiologist_subspecialties_are_written_by_code(api, group_admin, group_a):
    user = f.UserFactory(username="newdoc")
    f.RegionFactory(code="us-tx-north")
    response = api(group_admin).post(
        "/api/v1/radiologists/",
        {
            "user": "newdoc",
            "display_name": "Dr. New",
            "reading_group": group_a.pk,
            "subspecialties": ["neuro", "msk"],
            "home_region": "us-tx-north",
            "timezone": "America/Chicago",
            "workload_cap": 3,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    assert sorted(user.radiologist.subspecialties.values_list("code", flat=True)) == [
        "msk",
        "neuro",
    ]
    unknown = api(group_admin).patch(
        f"/api/v1/radiologists/{user.radiologist.pk}/",
        {"subspecialties": ["astrology"]},
        format="json",
    )
    assert unknown.status_code == 400


def test_me_reports_roles(api, group_admin, staff_a, licensed_reader):
    assert api(group_admin).get("/api/v1/me/").json()["roles"] == ["group_admin"]
    assert api(staff_a).get("/api/v1/me/").json()["roles"] == ["facility_staff"]
    assert api(licensed_reader.user).get("/api/v1/me/").json()["roles"] == ["radiologist"]


def test_reference_data_is_read_only_for_non_superusers(api, group_admin):
    client = api(group_admin)
    assert client.get("/api/v1/subspecialties/").status_code == 200
    assert client.post("/api/v1/jurisdictions/", {"code": "US-OH"}).status_code in (403, 405)
