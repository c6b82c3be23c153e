"""The Django admin is usable by a group admin and shows only their group."""

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_group_admin_sees_only_their_facilities_in_the_admin(group_admin, facility_a, facility_c):
    client = Client()
    client.force_login(group_admin)
    response = client.get("/admin/network/facility/")
    assert response.status_code == 200
    assert b"Facility A" in response.content
    assert b"Facility C" not in response.content
    assert client.get(f"/admin/network/facility/{facility_c.pk}/change/").status_code in (302, 404)


def test_group_admin_edits_a_facility_in_the_admin_and_it_is_audited(group_admin, facility_a):
    from audit.models import AuditEvent

    client = Client()
    client.force_login(group_admin)
    page = client.get(f"/admin/network/facility/{facility_a.pk}/change/")
    assert page.status_code == 200
    form = page.context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None}
    data.update(
        {
            "name": "Facility A (renamed)",
            "reading_group": facility_a.reading_group_id,
            "jurisdiction": facility_a.jurisdiction_id,
            "region": facility_a.region_id,
            "ae_titles-TOTAL_FORMS": "1",
            "ae_titles-INITIAL_FORMS": "1",
            "ae_titles-0-id": facility_a.ae_titles.get().pk,
            "ae_titles-0-ae_title": "FAC_A",
            "ae_titles-0-facility": facility_a.pk,
        }
    )
    response = client.post(f"/admin/network/facility/{facility_a.pk}/change/", data)
    assert response.status_code == 302, response.content[:2000]
    facility_a.refresh_from_db()
    assert facility_a.name == "Facility A (renamed)"
    assert AuditEvent.objects.filter(action="update", object_id=str(facility_a.pk)).exists()


def test_facility_staff_have_no_admin_access(staff_a):
    client = Client()
    client.force_login(staff_a)
    assert client.get("/admin/network/facility/").status_code == 302
