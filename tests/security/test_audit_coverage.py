"""Every read of patient data is audited, on every surface.

The test walks every URL pattern of the project (API, pages, the Django admin,
DICOMweb, the viewer: whatever Django's resolver knows, so a route added tomorrow
is walked tomorrow), fills its parameters with real objects of reading group A,
and GETs it as the roles that may read it (facility staff, the reader holding the
study, the group's admin, a site operator).  A response that carries one of the
seeded patients' identifiers (id, name, birth date, accession number) must have
written an audit event in the same request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client

from audit.models import AuditEvent
from ingest.storage import FileSystemStorage
from tests.security.routes import Unfillable, body_of, build_path, walk
from tests.security.tenant_world import Tenant, build_world, make_picker

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(settings: Any, tmp_path: Path) -> tuple[Tenant, Tenant]:
    settings.DICOM_STORAGE_ROOT = str(tmp_path / "store")
    cache.clear()  # DICOMweb audits per-frame reads once an hour per user (in the cache)
    return build_world(FileSystemStorage(tmp_path / "store"), tmp_path / "sent")


def _last_event_id() -> int:
    return AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def test_every_route_that_returns_patient_data_audits_the_read(
    world: tuple[Tenant, Tenant],
) -> None:
    a, b = world
    superuser = User.objects.create_superuser("site_operator", "ops@example.test", "pw-x-1")
    roles = [("facility staff", a.staff), ("radiologist", a.reader.user)]
    roles += [("group admin", a.admin), ("site operator", superuser)]
    markers = [m for tenant in (a, b) for m in tenant.markers]
    pick = make_picker(a)
    clients = {}
    for label, user in roles:
        client = Client(raise_request_exception=False)
        client.force_login(user)
        clients[label] = (client, user)

    unfillable, unaudited, errors, with_patient_data = [], [], [], []
    for route in walk():
        try:
            path = build_path(route, pick)
        except Unfillable as exc:
            unfillable.append(str(exc))
            continue
        for label, (client, user) in clients.items():
            before = _last_event_id()
            response = client.get(path)
            if "logout" in path:
                client.force_login(user)
            if response.status_code >= 500:
                errors.append(f"GET {path} as {label}: {response.status_code}")
            if response.status_code != 200:
                continue
            # The first role the route serves is the one checked.
            body = body_of(response)
            shown = [m for m in markers if m in body]
            if shown:
                with_patient_data.append(path)
                if _last_event_id() == before:
                    unaudited.append(f"GET {path} as {label}: shows {shown[:3]}, no audit event")
            break

    assert not unfillable, "Routes the test cannot fill with real objects:\n" + "\n".join(
        unfillable
    )
    assert not errors, "Routes that failed (their reads cannot be checked):\n" + "\n".join(errors)
    assert not unaudited, "Reads of patient data without an audit event:\n" + "\n".join(unaudited)
    # The detector works: the API, the pages, the admin and DICOMweb all showed patients.
    for prefix in ("/api/v1/", "/admin/", "/dicomweb/", "/studies/"):
        assert any(p.startswith(prefix) for p in with_patient_data), prefix
