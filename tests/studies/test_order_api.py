"""A study's order in the study API, and the orders listing for facility staff and
group admins: who sees which order, the "expected" filter, the audit of each row
and a query count that does not grow with the rows."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditEvent
from studies.models import Order
from tests import factories as f

pytestmark = pytest.mark.django_db

ORDER_FIELDS = {
    "placer_order_number",
    "filler_order_number",
    "reason_for_exam",
    "clinical_history",
    "ordering_provider",
    "patient_class",
    "patient_location",
    "priority",
    "status",
}


def _ordered_study(facility, **order_fields):
    study = f.StudyFactory(facility=facility)
    order = f.OrderFactory(
        facility=facility,
        accession_number=study.accession_number,
        study=study,
        **order_fields,
    )
    return study, order


def _ids(response):
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


# --- the study API ---------------------------------------------------------------------


def test_study_detail_returns_its_order(api, staff_a, facility_a):
    study, _ = _ordered_study(
        facility_a,
        placer_order_number="PLC-1",
        filler_order_number="FIL-1",
        reason_for_exam="Fall from ladder, head strike",
        clinical_history="On warfarin.",
        ordering_provider="SMITH^ANNA^^^DR",
        patient_class="E",
        patient_location="ED^BAY4",
        priority=1,
        status=Order.Status.IN_PROGRESS,
    )
    body = api(staff_a).get(f"/api/v1/studies/{study.pk}/").json()
    assert body["order"] == {
        "placer_order_number": "PLC-1",
        "filler_order_number": "FIL-1",
        "reason_for_exam": "Fall from ladder, head strike",
        "clinical_history": "On warfarin.",
        "ordering_provider": "SMITH^ANNA^^^DR",
        "patient_class": "E",
        "patient_location": "ED^BAY4",
        "priority": 1,
        "status": "in_progress",
    }


def test_a_study_without_an_order_says_null(api, staff_a, facility_a):
    study = f.StudyFactory(facility=facility_a)
    body = api(staff_a).get(f"/api/v1/studies/{study.pk}/").json()
    assert body["order"] is None
    listed = api(staff_a).get("/api/v1/studies/").json()["results"]
    assert [row["order"] for row in listed] == [None]


def test_study_list_reads_orders_in_the_same_query(
    api, group_admin, facility_a, django_assert_max_num_queries
):
    for n in range(10):
        _ordered_study(facility_a, reason_for_exam=f"reason {n}")
    f.StudyFactory(facility=facility_a)  # and one without
    # The same bound as the study list without orders (tests/studies/test_api.py).
    with django_assert_max_num_queries(8):
        response = api(group_admin).get("/api/v1/studies/")
    rows = response.json()["results"]
    assert len(rows) == 11
    assert sorted(r["order"]["reason_for_exam"] for r in rows if r["order"]) == sorted(
        f"reason {n}" for n in range(10)
    )


def test_the_schema_documents_the_order(api, group_admin):
    schema = api(group_admin).get("/api/schema/?format=json").json()
    components = schema["components"]["schemas"]
    detail = components["StudyDetail"]["properties"]["order"]
    ref = detail.get("$ref") or next(s["$ref"] for s in detail["allOf"])
    order = components[ref.rsplit("/", 1)[1]]
    assert set(order["properties"]) == ORDER_FIELDS
    assert detail.get("nullable") is True
    listing = schema["paths"]["/api/v1/orders/"]["get"]
    params = {p["name"] for p in listing["parameters"]}
    assert {"facility", "status", "expected", "accession_number"} <= params


# --- the orders listing ---------------------------------------------------------------


@pytest.fixture
def orders(facility_a, facility_b, facility_c):
    return {
        "a": f.OrderFactory(facility=facility_a, accession_number="A-1"),
        "b": f.OrderFactory(facility=facility_b, accession_number="B-1"),
        "c": f.OrderFactory(facility=facility_c, accession_number="C-1"),
    }


def test_facility_staff_see_their_facilitys_orders(api, staff_a, staff_b, orders):
    assert _ids(api(staff_a).get("/api/v1/orders/")) == {orders["a"].pk}
    assert _ids(api(staff_b).get("/api/v1/orders/")) == {orders["b"].pk}


def test_group_admins_see_their_groups_orders(api, group_admin, other_admin, orders):
    assert _ids(api(group_admin).get("/api/v1/orders/")) == {orders["a"].pk, orders["b"].pk}
    assert _ids(api(other_admin).get("/api/v1/orders/")) == {orders["c"].pk}


def test_readers_and_strangers_see_no_orders(api, licensed_reader, orders):
    assert _ids(api(licensed_reader.user).get("/api/v1/orders/")) == set()
    assert _ids(api(f.UserFactory()).get("/api/v1/orders/")) == set()
    assert APIClient().get("/api/v1/orders/").status_code == 401


def test_a_row_names_its_study_when_linked(api, staff_a, facility_a, orders):
    study, linked = _ordered_study(facility_a, reason_for_exam="Chest pain")
    rows = {r["id"]: r for r in api(staff_a).get("/api/v1/orders/").json()["results"]}
    assert rows[linked.pk]["study"] == study.pk
    assert rows[linked.pk]["reason_for_exam"] == "Chest pain"
    assert rows[orders["a"].pk]["study"] is None
    assert rows[orders["a"].pk]["facility_name"] == facility_a.name


def test_expected_lists_orders_without_images_within_the_facilitys_hours(api, staff_a, facility_a):
    facility_a.order_expected_hours = 6
    facility_a.save(update_fields=["order_expected_hours"])
    now = timezone.now()
    waiting = f.OrderFactory(facility=facility_a, received_at=now - dt.timedelta(hours=5))
    too_old = f.OrderFactory(facility=facility_a, received_at=now - dt.timedelta(hours=7))
    cancelled = f.OrderFactory(
        facility=facility_a,
        received_at=now - dt.timedelta(hours=1),
        status=Order.Status.CANCELLED,
        cancelled_at=now,
    )
    _, arrived = _ordered_study(facility_a)
    client = api(staff_a)
    assert _ids(client.get("/api/v1/orders/?expected=true")) == {waiting.pk}
    assert _ids(client.get("/api/v1/orders/?expected=false")) == {
        too_old.pk,
        cancelled.pk,
        arrived.pk,
    }
    rows = {r["id"]: r for r in client.get("/api/v1/orders/").json()["results"]}
    assert rows[waiting.pk]["expected"] is True
    assert rows[too_old.pk]["expected"] is False
    expected_until = dt.datetime.fromisoformat(rows[waiting.pk]["expected_until"])
    assert expected_until == waiting.received_at + dt.timedelta(hours=6)


def test_expected_hours_are_each_facilitys_own(api, group_admin, facility_a, facility_b):
    facility_a.order_expected_hours = 2
    facility_a.save(update_fields=["order_expected_hours"])
    facility_b.order_expected_hours = 48
    facility_b.save(update_fields=["order_expected_hours"])
    three_hours_ago = timezone.now() - dt.timedelta(hours=3)
    f.OrderFactory(facility=facility_a, received_at=three_hours_ago)
    at_b = f.OrderFactory(facility=facility_b, received_at=three_hours_ago)
    assert _ids(api(group_admin).get("/api/v1/orders/?expected=true")) == {at_b.pk}


def test_filters(api, group_admin, facility_a, facility_b, orders):
    cancelled = f.OrderFactory(
        facility=facility_a,
        accession_number="A-2",
        status=Order.Status.CANCELLED,
        cancelled_at=timezone.now(),
    )
    client = api(group_admin)
    assert _ids(client.get(f"/api/v1/orders/?facility={facility_b.pk}")) == {orders["b"].pk}
    assert _ids(client.get("/api/v1/orders/?status=cancelled")) == {cancelled.pk}
    assert _ids(client.get("/api/v1/orders/?accession_number=A-1")) == {orders["a"].pk}
    assert client.get("/api/v1/orders/?status=lost").status_code == 400
    assert client.get("/api/v1/orders/?expected=perhaps").status_code == 400


def test_listing_audits_each_order_shown_with_its_patient(api, staff_a, facility_a):
    patient = f.PatientFactory(reading_group=facility_a.reading_group, patient_id="MRN-77")
    order = f.OrderFactory(facility=facility_a, patient=patient)
    f.OrderFactory(facility=facility_a)  # no patient record yet
    api(staff_a).get("/api/v1/orders/", REMOTE_ADDR="10.9.8.7")
    events = AuditEvent.objects.filter(action="list", object_type="studies.order")
    assert events.count() == 2
    event = events.get(object_id=str(order.pk))
    assert event.actor == staff_a
    assert event.patient_id == "MRN-77"
    assert event.ip_address == "10.9.8.7"
    assert event.reading_group_id == facility_a.reading_group_id
    row = api(staff_a).get(f"/api/v1/orders/?accession_number={order.accession_number}")
    assert row.json()["results"][0]["patient_id"] == "MRN-77"


def test_orders_list_query_count_does_not_grow_with_rows(
    api, group_admin, facility_a, django_assert_max_num_queries
):
    for _ in range(3):
        f.OrderFactory(
            facility=facility_a,
            patient=f.PatientFactory(reading_group=facility_a.reading_group),
        )
    client = api(group_admin)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as few:
        assert client.get("/api/v1/orders/").json()["count"] == 3
    for _ in range(12):
        _ordered_study(facility_a)
        f.OrderFactory(
            facility=facility_a,
            patient=f.PatientFactory(reading_group=facility_a.reading_group),
        )
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert client.get("/api/v1/orders/").json()["count"] == 27
