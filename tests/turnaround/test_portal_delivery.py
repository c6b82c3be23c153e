"""The facility portal shows, per study, where its results stand at the facility's
endpoint (preliminary and final: pending, delivered with the ACK, failed with the
reason, not configured) and links each row to the study page, the report and the
PDF; scoped (facility A's staff never see facility B's rows) and with a query count
that does not grow with the rows."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from reporting.models import FacilityEndpoint, Report
from reporting.services.reports import report_save_draft, report_sign
from studies.services import study_transition
from tests import factories as f
from tests.reporting.conftest import (  # noqa: F401 - fixtures
    COMPLETE_VALUES,
    NOW,
    _at_now,
    ct_head,
    hand_to,
    templates,
)
from tests.reporting.result_peers import MllpPeer
from tests.routing.conftest import make_reader, neuro_rule, regions  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db

RANGE = {"from": NOW.date().isoformat(), "to": NOW.date().isoformat()}


@pytest.fixture
def peer() -> Iterator[MllpPeer]:
    listener = MllpPeer()
    yield listener
    listener.close()


@pytest.fixture
def reader_a(group_a: Any, facility_a: Any, regions: Any, neuro_rule: Any) -> Any:  # noqa: F811
    return make_reader(group_a, facility_a, name="dr_a", region=regions["local"], cap=50)


@pytest.fixture
def reader_b(group_a: Any, facility_b: Any, regions: Any, neuro_rule: Any) -> Any:  # noqa: F811
    return make_reader(group_a, facility_b, name="dr_b", region=regions["regional"], cap=50)


@pytest.fixture
def signed(ct_head: Any, django_capture_on_commit_callbacks: Any) -> Any:  # noqa: F811
    """A study of ``facility`` read by ``reader`` and signed through ``statuses``."""

    def make(facility: Any, reader: Any, *statuses: str) -> Any:
        study = f.StudyFactory(
            facility=facility,
            modality="CT",
            body_part="HEAD",
            received_at=NOW - dt.timedelta(minutes=5),
        )
        study_transition(study_id=study.pk, to_status="ready", at=NOW)
        hand_to(study, reader)
        report = report_save_draft(
            study_id=study.pk,
            radiologist=reader,
            template_id=ct_head.pk,
            values=COMPLETE_VALUES,
            impression="No acute intracranial finding.",
        )
        for status in statuses:
            with django_capture_on_commit_callbacks(execute=True):
                report_sign(report_id=report.pk, radiologist=reader, status=status)
        return study

    return make


def portal(client: Any, user: Any, **params: Any) -> str:
    client.force_login(user)
    response = client.get("/portal/", {**RANGE, **params})
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


def row(html: str, study: Any) -> str:
    match = re.search(rf'<tr class="p\d" data-study="{study.pk}">(.*?)</tr>', html, re.S)
    assert match is not None, f"no row for study {study.pk}"
    return match.group(1)


def test_rows_show_preliminary_and_final_delivery_with_links(
    client, staff_a, facility_a, reader_a, signed, peer
):
    FacilityEndpoint.objects.create(
        facility=facility_a, kind="mllp", host="127.0.0.1", port=peer.port, timeout_seconds=5
    )
    peer.start(["AA", "AA", "AR"])
    delivered = signed(facility_a, reader_a, "preliminary", "final")
    refused = signed(facility_a, reader_a, "final")
    unread = f.StudyFactory(facility=facility_a, received_at=NOW - dt.timedelta(minutes=1))
    html = portal(client, staff_a)

    cells = row(html, delivered)
    assert 'data-result="preliminary" data-state="delivered"' in cells
    assert 'data-result="final" data-state="delivered"' in cells
    assert cells.count("(AA)") == 2
    report = Report.objects.get(study=delivered)
    assert f'href="/studies/{delivered.pk}/"' in cells
    assert f'href="/studies/{delivered.pk}/report/"' in cells
    assert f'href="/api/v1/reports/{report.pk}/pdf"' in cells

    cells = row(html, refused)
    assert 'data-result="final" data-state="failed"' in cells
    assert "(AR)" in cells and "Unknown patient" in cells

    assert "no report yet" in row(html, unread)
    assert "/report/" not in row(html, unread)

    # The links work for the facility's staff: the study, the report and the PDF.
    client.force_login(staff_a)
    assert client.get(f"/studies/{delivered.pk}/").status_code == 200
    assert client.get(f"/studies/{delivered.pk}/report/").status_code == 200
    pdf = client.get(f"/api/v1/reports/{report.pk}/pdf")
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"


def test_a_preliminary_only_row_links_no_report_for_staff_but_does_for_admins(
    client, staff_a, group_admin, facility_a, reader_a, signed, peer
):
    FacilityEndpoint.objects.create(
        facility=facility_a, kind="mllp", host="127.0.0.1", port=peer.port, timeout_seconds=5
    )
    peer.start(["AA"])
    study = signed(facility_a, reader_a, "preliminary")
    cells = row(portal(client, staff_a), study)
    assert 'data-result="preliminary" data-state="delivered"' in cells
    assert "/report/" not in cells and "/pdf" not in cells  # staff read final reports only
    cells = row(portal(client, group_admin, facility=facility_a.pk), study)
    assert f'href="/studies/{study.pk}/report/"' in cells and "/pdf" not in cells


def test_no_endpoint_is_not_configured_and_facilities_are_kept_apart(
    client, staff_a, staff_b, facility_a, facility_b, reader_a, reader_b, signed, peer
):
    FacilityEndpoint.objects.create(
        facility=facility_a, kind="mllp", host="127.0.0.1", port=peer.port, timeout_seconds=5
    )
    peer.start(["AR"])
    study_a = signed(facility_a, reader_a, "final")
    study_b = signed(facility_b, reader_b, "final")  # facility B: no endpoint

    html_b = portal(client, staff_b)
    assert 'data-state="not_configured"' in row(html_b, study_b)
    assert f'data-study="{study_a.pk}"' not in html_b
    assert "Unknown patient" not in html_b and "(AR)" not in html_b

    html_a = portal(client, staff_a)
    assert 'data-state="failed"' in row(html_a, study_a)
    assert f'data-study="{study_b.pk}"' not in html_a
    assert "not configured" not in html_a


def test_the_query_count_does_not_grow_with_the_rows(
    client, staff_a, facility_a, reader_a, signed, peer
):
    FacilityEndpoint.objects.create(
        facility=facility_a, kind="mllp", host="127.0.0.1", port=peer.port, timeout_seconds=5
    )
    peer.start(["AA"] * 10)
    signed(facility_a, reader_a, "preliminary", "final")
    portal(client, staff_a)  # warm caches (content types, sessions)

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            portal(client, staff_a)
        return len(queries)

    few = count()
    for _ in range(3):
        signed(facility_a, reader_a, "preliminary", "final")
    signed(facility_a, reader_a, "final")
    html = portal(client, staff_a)
    assert html.count('data-state="delivered"') == 9
    assert count() == few
