"""What readers and facility staff see of a study's order and its patient: the
worklist row's reason for exam and ED / inpatient badge, the study page's order and
"other studies" sections (scoped to what the user may see), and a cancelled study."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from audit.models import AuditEvent
from routing.services import study_route
from studies.models import Order, Study
from studies.services import study_transition
from tests import factories as f
from tests.routing.conftest import NOW
from worklist.services.offers import offers_withdraw

pytestmark = pytest.mark.django_db

LONG_REASON = (
    "Sudden severe headache while lifting at work, worst of life, with neck stiffness "
    "and vomiting; exclude subarachnoid haemorrhage"
)


def signed_in(user):
    client = Client()
    client.force_login(user)
    return client


def _offered(facility, *, order=None, **fields):
    """A study offered to the network's readers, with its order if given."""
    study = f.StudyFactory(
        facility=facility,
        modality="CT",
        body_part="HEAD",
        priority=fields.pop("priority", 1),
        received_at=NOW - dt.timedelta(minutes=1),
        **fields,
    )
    if order is not None:
        f.OrderFactory(
            facility=facility, accession_number=study.accession_number, study=study, **order
        )
    study_transition(study_id=study.pk, to_status="ready", at=NOW)
    study_route(study_id=study.pk, now=NOW)
    return Study.objects.get(pk=study.pk)


def _row(page: str, study: Study) -> str:
    match = re.search(rf'<tr class="p\d" data-study="{study.pk}">(.*?)</tr>', page, re.S)
    assert match, f"study {study.pk} is not on the page"
    return match.group(1)


# --- the worklist row ------------------------------------------------------------------


def test_the_row_shows_the_reason_and_an_ed_badge(tiered, facility_a):
    ed = _offered(facility_a, order={"patient_class": "E", "reason_for_exam": LONG_REASON})
    inpatient = _offered(facility_a, order={"patient_class": "I", "reason_for_exam": "Stroke?"})
    outpatient = _offered(facility_a, order={"patient_class": "O", "reason_for_exam": "Follow-up"})
    no_order = _offered(facility_a)
    page = signed_in(tiered["local"].user).get("/worklist/rows/").content.decode()

    row = _row(page, ed)
    assert '<span class="pclass pclass-e"' in row and ">ED</span>" in row
    # Truncated on the row, whole in its title.
    assert f'title="{LONG_REASON}"' in row
    shown = re.search(r'<small class="reason" title="[^"]*">([^<]*)</small>', row).group(1)
    assert shown.endswith("…") and len(shown) == 70 and LONG_REASON.startswith(shown[:-1])

    row = _row(page, inpatient)
    assert ">Inpatient</span>" in row and "Stroke?" in row and "pclass-e" not in row
    row = _row(page, outpatient)
    assert "pclass" not in row and "Follow-up" in row
    row = _row(page, no_order)
    assert "pclass" not in row and 'class="reason"' not in row


def test_the_rows_read_the_orders_in_the_same_query(tiered, facility_a):
    client = signed_in(tiered["local"].user)
    _offered(facility_a, order={"patient_class": "E"})
    client.get("/worklist/rows/")  # warm the session and content types
    with CaptureQueriesContext(connection) as one:
        client.get("/worklist/rows/")
    for n in range(4):
        _offered(facility_a, order={"patient_class": "I", "reason_for_exam": f"r{n}"})
        _offered(facility_a)
    with CaptureQueriesContext(connection) as many:
        page = client.get("/worklist/rows/").content.decode()
    assert page.count("data-study=") == 9
    assert len(many.captured_queries) == len(one.captured_queries)
    worklist_query = next(q["sql"] for q in many.captured_queries if "worklist_offer" in q["sql"])
    assert 'LEFT OUTER JOIN "studies_order"' in worklist_query


def test_the_worklist_api_rows_carry_the_reason_and_class(tiered, facility_a, api):
    study = _offered(facility_a, order={"patient_class": "E", "reason_for_exam": "Trauma"})
    plain = _offered(facility_a)
    rows = api(tiered["local"].user).get("/api/v1/worklist/").json()["results"]
    by_id = {r["id"]: r for r in rows}
    assert by_id[study.pk]["reason_for_exam"] == "Trauma"
    assert by_id[study.pk]["patient_class"] == "E"
    assert by_id[plain.pk]["reason_for_exam"] is None
    assert by_id[plain.pk]["patient_class"] is None


def test_my_cases_show_the_order_cue(tiered, facility_a):
    study = _offered(facility_a, order={"patient_class": "E", "reason_for_exam": "Trauma"})
    client = signed_in(tiered["local"].user)
    client.post(f"/studies/{study.pk}/claim/", HTTP_HX_REQUEST="true")
    page = client.get("/cases/").content.decode()
    assert ">ED</span>" in page and 'title="Trauma"' in page


def test_my_cases_api_reads_the_orders_in_the_same_query(tiered, facility_a, api):
    reader = tiered["local"]
    client = api(reader.user)

    def claim_one(order):
        study = _offered(facility_a, order=order)
        assert client.post(f"/api/v1/studies/{study.pk}/claim/").status_code == 200
        return study

    first = claim_one({"patient_class": "E", "reason_for_exam": "Trauma"})
    client.get("/api/v1/me/cases/")
    with CaptureQueriesContext(connection) as one:
        client.get("/api/v1/me/cases/")
    plain = claim_one(None)
    claim_one({"patient_class": "I", "reason_for_exam": "Stroke?"})
    with CaptureQueriesContext(connection) as three:
        rows = client.get("/api/v1/me/cases/").json()["results"]
    assert len(three.captured_queries) == len(one.captured_queries)
    by_id = {r["id"]: r for r in rows}
    assert len(by_id) == 3
    assert (by_id[first.pk]["reason_for_exam"], by_id[first.pk]["patient_class"]) == ("Trauma", "E")
    assert by_id[plain.pk]["reason_for_exam"] is None


# --- the study page -------------------------------------------------------------------


def test_the_study_page_shows_the_order(tiered, facility_a):
    study = _offered(
        facility_a,
        order={
            "reason_for_exam": "Fall, head strike",
            "clinical_history": "On warfarin.\nPrior stroke.",
            "ordering_provider": "SMITH^ANNA",
            "patient_class": "E",
            "patient_location": "ED^BAY4",
            "placer_order_number": "PLC-9",
            "filler_order_number": "FIL-9",
            "priority": 1,
            "status": Order.Status.IN_PROGRESS,
        },
    )
    page = signed_in(tiered["local"].user).get(f"/studies/{study.pk}/").content.decode()
    assert '<dd id="order-reason">Fall, head strike</dd>' in page
    assert '<dd id="order-history">On warfarin.<br>Prior stroke.</dd>' in page
    assert '<dd id="order-provider">SMITH^ANNA</dd>' in page
    assert '<dd id="order-class">Emergency · ED^BAY4</dd>' in page
    assert '<dd id="order-numbers">PLC-9 / FIL-9</dd>' in page
    assert '<dd id="order-priority">STAT</dd>' in page
    assert '<dd id="order-status">In progress</dd>' in page
    assert "No order received" not in page


def test_the_study_page_says_when_no_order_was_received(tiered, facility_a):
    study = _offered(facility_a)
    page = signed_in(tiered["local"].user).get(f"/studies/{study.pk}/").content.decode()
    assert '<p id="no-order">No order received.</p>' in page


@pytest.fixture
def patient_world(group_a, facility_a, facility_b, facility_c):
    """One patient record of group A with studies at facilities A and B (both group
    A's), and a study of group C's facility wrongly pointed at the same record."""
    patient = f.PatientFactory(reading_group=group_a, patient_id="MRN-1")

    def study(facility, description, **fields):
        return f.StudyFactory(
            facility=facility,
            patient_record=patient,
            patient_id="MRN-1",
            study_description=description,
            **fields,
        )

    return {
        "current": study(facility_a, "CT HEAD NOW", study_date=dt.date(2026, 6, 1)),
        "older_a": study(facility_a, "MR BRAIN LAST YEAR", study_date=dt.date(2025, 5, 2)),
        "at_b": study(facility_b, "XR CHEST AT B", study_date=dt.date(2026, 1, 3)),
        "other_group": study(facility_c, "CT OTHER GROUP", study_date=dt.date(2026, 2, 4)),
        "unrelated": f.StudyFactory(facility=facility_a, study_description="SOMEONE ELSE"),
    }


def _other_ids(page: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'data-other-study="(\d+)"', page)]


def test_other_studies_are_those_the_user_may_see(
    patient_world, staff_a, staff_b, group_admin, other_admin
):
    w = patient_world
    current = w["current"]
    page = signed_in(staff_a).get(f"/studies/{current.pk}/").content.decode()
    # Facility A's staff: A's other study only (not B's, not group C's), newest first.
    assert _other_ids(page) == [w["older_a"].pk]
    assert f'href="/studies/{w["older_a"].pk}/">MR BRAIN LAST YEAR</a>' in page
    assert "2025-05-02" in page
    # The group admin sees both facilities of the group, never group C's.
    page = signed_in(group_admin).get(f"/studies/{current.pk}/").content.decode()
    assert _other_ids(page) == [w["at_b"].pk, w["older_a"].pk]
    assert "CT OTHER GROUP" not in page and "SOMEONE ELSE" not in page
    # Group C's admin sees the study that is theirs, and nothing of group A through it.
    page = signed_in(other_admin).get(f"/studies/{w['other_group'].pk}/").content.decode()
    assert _other_ids(page) == []
    assert '<p id="no-other-studies">' in page


def test_a_reader_sees_only_other_studies_offered_to_or_read_by_them(
    tiered, facility_a, patient_world
):
    w = patient_world
    reader = tiered["local"]
    for study in (w["current"], w["older_a"]):
        study_transition(study_id=study.pk, to_status="ready", at=NOW)
        study_route(study_id=study.pk, now=NOW)
    page = signed_in(reader.user).get(f"/studies/{w['current'].pk}/").content.decode()
    assert _other_ids(page) == [w["older_a"].pk]
    # Once its offer is gone, it is not the reader's to see any more.
    offers_withdraw(study_id=w["older_a"].pk, reason="test", at=NOW)
    page = signed_in(reader.user).get(f"/studies/{w['current'].pk}/").content.decode()
    assert _other_ids(page) == []


def test_listing_other_studies_is_audited(patient_world, group_admin):
    w = patient_world
    signed_in(group_admin).get(f"/studies/{w['current'].pk}/")
    listed = set(
        AuditEvent.objects.filter(action="list", actor=group_admin).values_list(
            "object_id", flat=True
        )
    )
    assert listed == {str(w["older_a"].pk), str(w["at_b"].pk)}


# --- a cancelled study ---------------------------------------------------------------


def _cancel(study: Study) -> Study:
    """As the order's cancel leaves a study: its order cancelled, the study cancelled
    and its offers withdrawn."""
    Order.objects.filter(study=study).update(status=Order.Status.CANCELLED, cancelled_at=NOW)
    study_transition(study_id=study.pk, to_status="cancelled", at=NOW)
    offers_withdraw(study_id=study.pk, reason="order cancelled", at=NOW)
    return Study.objects.get(pk=study.pk)


def test_a_cancelled_study_leaves_the_worklist_and_says_so_on_its_page(tiered, facility_a, staff_a):
    study = _offered(facility_a, order={"reason_for_exam": "Fall"})
    kept = _offered(facility_a)
    reader = signed_in(tiered["local"].user)
    assert f'data-study="{study.pk}"' in reader.get("/worklist/rows/").content.decode()
    study = _cancel(study)
    rows = reader.get("/worklist/rows/").content.decode()
    assert f'data-study="{study.pk}"' not in rows and f'data-study="{kept.pk}"' in rows
    page = signed_in(staff_a).get(f"/studies/{study.pk}/").content.decode()
    notice = re.search(r'<p class="message warning" id="study-cancelled"[^>]*>(.*?)</p>', page)
    assert notice, "no cancellation notice"
    assert notice.group(1).startswith("Cancelled by the facility's order, ")
    assert "June 1, 2026" in notice.group(1)
    assert '<dd id="order-status">Cancelled (' in page
    assert "due in" not in page and "overdue" not in page  # its clock stopped


def test_a_study_cancelled_without_an_order_says_cancelled(tiered, facility_a, staff_a):
    study = _offered(facility_a)
    study_transition(study_id=study.pk, to_status="cancelled", at=NOW)
    page = signed_in(staff_a).get(f"/studies/{study.pk}/").content.decode()
    assert re.search(r'id="study-cancelled"[^>]*>Cancelled, ', page)
    assert "by the facility's order" not in page


def test_the_facility_portal_shows_a_cancelled_study_as_cancelled(tiered, facility_a, staff_a):
    study = _cancel(_offered(facility_a, order={"reason_for_exam": "Fall"}))
    page = signed_in(staff_a).get("/portal/panel/").content.decode()
    row = re.search(rf'<tr class="p\d" data-study="{study.pk}">(.*?)</tr>', page, re.S)
    assert row, "the cancelled study is not on the portal"
    assert "<td>Cancelled</td>" in row.group(1)
