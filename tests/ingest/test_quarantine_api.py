"""Group admins see their facilities' quarantine; nobody else does."""

import pytest
from django.utils import timezone

from ingest.models import QuarantinedObject

pytestmark = pytest.mark.django_db


def _quarantined(facility, reason="not a DICOM object"):
    return QuarantinedObject.objects.create(
        received_at=timezone.now(),
        calling_ae="FAC_A",
        facility=facility,
        reason=reason,
        storage_key="quarantine/x.dcm",
        size_bytes=10,
        sha256="0" * 64,
    )


def test_group_admin_sees_their_facilities_quarantine_with_reasons(
    api, group_admin, facility_a, facility_c
):
    mine = _quarantined(facility_a, "missing StudyInstanceUID")
    _quarantined(facility_c)
    rows = api(group_admin).get("/api/v1/quarantine/").json()["results"]
    assert [(r["id"], r["reason"]) for r in rows] == [(mine.pk, "missing StudyInstanceUID")]


@pytest.mark.parametrize("persona", ["staff_a", "licensed_reader"])
def test_staff_and_radiologists_cannot_see_the_quarantine(api, request, persona, facility_a):
    _quarantined(facility_a)
    user = request.getfixturevalue(persona)
    user = getattr(user, "user", user)
    assert api(user).get("/api/v1/quarantine/").status_code == 403
