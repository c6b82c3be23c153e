"""A group admin enrols as readers only users they may grant: accounts with no role
anywhere yet.  Another group's people, admins, staff and site operators are refused
with the same words as a name that does not exist (no oracle of who has an
account); site operators enrol anyone who is not a reader yet.  Every other related
field of the API is limited to the admin's own groups in the same way."""

from __future__ import annotations

import pytest

from network.models import Radiologist
from tests import factories as f

pytestmark = pytest.mark.django_db

REFUSAL = "No such user available for enrolment."


def enrol(api, admin, group, username):
    region = f.RegionFactory()
    return api(admin).post(
        "/api/v1/radiologists/",
        {
            "user": username,
            "display_name": "Dr. New",
            "reading_group": group.pk,
            "subspecialties": [f.subspecialty("general").code],
            "home_region": region.code,
            "timezone": "UTC",
        },
        format="json",
    )


def test_an_admin_enrols_a_user_with_no_role(api, group_admin, group_a):
    f.UserFactory(username="newcomer")
    response = enrol(api, group_admin, group_a, "newcomer")
    assert response.status_code == 201, response.json()
    assert Radiologist.objects.get(user__username="newcomer").reading_group == group_a


@pytest.mark.parametrize("who", ["other_admin", "staff_a", "superuser", "reader_c", "ghost"])
def test_an_admin_cannot_enrol_anyone_else_and_cannot_tell_who_exists(
    api, group_admin, group_a, other_admin, staff_a, group_c, who
):
    f.UserFactory(username="superuser", is_superuser=True, is_staff=True)
    f.RadiologistFactory(user=f.UserFactory(username="reader_c"), reading_group=group_c)
    username = {"other_admin": "admin_c", "staff_a": "staff_a"}.get(who, who)
    response = enrol(api, group_admin, group_a, username)
    assert response.status_code == 400
    assert response.json() == {"user": [REFUSAL]}
    assert not Radiologist.objects.filter(user__username=username, reading_group=group_a).exists()


def test_a_site_operator_enrols_staff_but_not_a_reader_twice(api, group_a, staff_a, group_c):
    operator = f.UserFactory(username="operator", is_superuser=True, is_staff=True)
    assert enrol(api, operator, group_a, "staff_a").status_code == 201
    second = enrol(api, operator, group_c, "staff_a")
    assert second.status_code == 400 and second.json() == {"user": [REFUSAL]}


def test_updating_a_reader_keeps_their_own_account(api, group_admin, unlicensed_reader):
    response = api(group_admin).patch(
        f"/api/v1/radiologists/{unlicensed_reader.pk}/",
        {"user": unlicensed_reader.user.username, "display_name": "Dr. Renamed"},
        format="json",
    )
    assert response.status_code == 200, response.json()


@pytest.mark.parametrize(
    ("path", "field", "body"),
    [
        ("/api/v1/facilities/", "reading_group", {"name": "X", "timezone": "UTC"}),
        ("/api/v1/licenses/", "radiologist", {"number": "1", "valid_from": "2026-01-01"}),
        ("/api/v1/shifts/", "radiologist", {"starts_at": "2026-01-01T00:00:00Z"}),
        ("/api/v1/privileges/", "facility", {"valid_from": "2026-01-01"}),
    ],
)
def test_other_related_fields_take_only_the_admins_own_objects(
    api, group_admin, group_c, facility_c, path, field, body
):
    other = {
        "reading_group": group_c.pk,
        "radiologist": f.RadiologistFactory(reading_group=group_c).pk,
        "facility": facility_c.pk,
    }[field]
    response = api(group_admin).post(path, {**body, field: other}, format="json")
    assert response.status_code == 400
    assert field in response.json()


def test_a_reassignment_to_another_groups_reader_reads_as_an_unknown_one(
    api, group_admin, facility_a, group_c
):
    study = f.StudyFactory(facility=facility_a)
    outsider = f.RadiologistFactory(reading_group=group_c)
    response = api(group_admin).post(
        f"/api/v1/studies/{study.pk}/reassign/", {"radiologist": outsider.pk}, format="json"
    )
    missing = api(group_admin).post(
        f"/api/v1/studies/{study.pk}/reassign/", {"radiologist": 10**9}, format="json"
    )
    assert response.status_code == missing.status_code == 400
    assert response.json() == missing.json()
