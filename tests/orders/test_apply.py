"""Applying HL7 orders (ORM^O01 2.3 / 2.5.1, OMI^O23) to orders and studies:
reconciliation by (facility, accession) whichever comes first, priority, the
patient's jurisdiction, holds, cancels, out-of-order arrival.  Messages are text
parsed by hl7apy as the listener parses them; routing really runs (eager Celery)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine

from alerts.models import Alert
from audit.models import AuditEvent
from ingest.services import studies_mark_ready
from network.models import Facility, Priority
from orders.errors import MessageRejected
from orders.services.apply import message_apply
from routing.models import StudyRouting
from routing.services import study_route
from studies.models import Order, Patient, Study
from studies.services import study_transition
from tests import factories as f
from tests.orders import hl7text as t
from tests.routing import conftest as routing
from tests.routing.conftest import NOW, make_reader
from worklist.models import Offer
from worklist.services.claims import study_claim

pytestmark = pytest.mark.django_db

# The routing tests' network around facility A (readers at each tier, a neuro rule).
regions, neuro_rule, tiered = routing.regions, routing.neuro_rule, routing.tiered


def apply(facility: Facility, raw: str, *, at: dt.datetime = NOW) -> str:
    return message_apply(facility=facility, message=t.parse(raw), raw=raw, received_at=at)


def open_offers(study: Study) -> set[str]:
    return set(
        Offer.objects.filter(study=study, withdrawn_at__isnull=True).values_list(
            "radiologist__user__username", flat=True
        )
    )


def ready(study: Study, at: dt.datetime = NOW) -> Study:
    return study_transition(study_id=study.pk, to_status="ready", at=at)


@pytest.fixture
def live(django_capture_on_commit_callbacks: Any) -> Any:
    """At NOW (the readers' shifts), applying with its after-commit work (routing)
    run as a commit would run it."""

    def run(facility: Facility, raw: str) -> str:
        with django_capture_on_commit_callbacks(execute=True):
            return apply(facility, raw)

    with time_machine.travel(NOW, tick=False):
        yield run


# -- what an order carries ---------------------------------------------------------


@pytest.mark.parametrize("version", ["2.3", "2.5.1"])
def test_a_new_order_keeps_what_it_carries_and_its_patient(facility_a, version):
    summary = apply(facility_a, t.orm(version=version))
    assert summary == "NW ACC1001: order created, no study yet"
    order = Order.objects.get(facility=facility_a, accession_number="ACC1001")
    assert order.status == Order.Status.SCHEDULED  # ORC-5 SC
    assert order.placer_order_number == "PLACC1001"
    assert order.filler_order_number == "FLACC1001"
    assert order.procedure_code == "CTHEAD"
    assert order.procedure_description == "CT head without contrast"
    assert order.reason_for_exam == "Head trauma, rule out bleed"
    assert order.clinical_history == "Fall from standing\nOn anticoagulants"
    assert order.ordering_provider == "JONES, ROBERT, MD"
    assert order.patient_class == Order.PatientClass.EMERGENCY
    assert order.patient_location == "ED / BAY3 / 1"
    assert order.priority == Priority.STAT
    # ORC-9 without an offset is the facility's local time (Chicago, CST in December).
    assert order.ordered_at == dt.datetime(2026, 12, 7, 16, 12, tzinfo=dt.UTC)
    assert order.received_at == NOW
    assert order.study is None and order.jurisdiction is None
    patient = order.patient
    assert (patient.issuer, patient.patient_id) == (facility_a.patient_issuer, "MRN100")
    assert patient.name == "DOE^JOHN^Q"
    assert patient.birth_date == dt.date(1960, 1, 2)
    assert patient.sex == "M"
    assert (patient.address_state, patient.address_country) == ("TX", "US")
    assert AuditEvent.objects.filter(
        action="create", object_type="studies.order", object_id=str(order.pk)
    ).exists()


def test_an_omi_order_takes_its_accession_from_ipc_and_its_priority_from_tq1(facility_a):
    apply(facility_a, t.omi(accession="ACC2001", priority="A"))
    order = Order.objects.get(accession_number="ACC2001")
    assert order.priority == Priority.URGENT
    assert order.patient_class == Order.PatientClass.INPATIENT
    assert order.reason_for_exam == "Cough, fever"
    assert order.ordering_provider == "WELBY, MARCUS"
    assert order.patient.name == "ROE^JANE" and order.patient.sex == "F"


def test_the_patient_issuer_is_pid_3_4_when_the_facility_declares_issuers(facility_a):
    Facility.objects.filter(pk=facility_a.pk).update(patient_id_issuer="STMARY")
    facility_a.refresh_from_db()
    pid = t.segment("PID", {1: "1", 3: "X1^^^SSA^SS~MRN7^^^STMARY&1.2.3&ISO^MR~Z2^^^OTHER^MR"})
    apply(facility_a, t.orm(accession="ACC3", patient=pid))
    assert (Order.objects.get().patient.issuer, Order.objects.get().patient.patient_id) == (
        "STMARY",
        "MRN7",
    )
    pid = t.segment("PID", {1: "1", 3: "X1^^^SSA^SS~Z2^^^OTHER^MR"})  # none of ours
    apply(facility_a, t.orm(accession="ACC4", patient=pid))
    patient = Order.objects.get(accession_number="ACC4").patient
    assert (patient.issuer, patient.patient_id) == ("OTHER", "Z2")


def test_without_a_declared_issuer_order_and_images_share_the_facility_namespace(facility_a):
    """PID-3.4 "STMARY" at a facility that declares no issuer: the order's patient is
    the one its images (DICOM, no issuer) make."""
    apply(facility_a, t.orm(accession="ACC2", patient=t.pid("MRN7", issuer="STMARY")))
    study = f.StudyFactory(facility=facility_a, accession_number="ACC2", patient_id="MRN7")
    order = Order.objects.get()
    assert order.patient.issuer == facility_a.patient_issuer
    assert study.patient_record == order.patient


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (t.orm(patient=t.segment("PID", {1: "1", 5: "DOE^JOHN"})), "PID-3"),
        (t.orm(obr={18: ""}, orc={3: ""}).replace("|FLACC1001^RAD|", "||"), "OBR-18"),
        (t.orm(control="ZZ"), "ORC-1"),
        (t.orm(priority="X"), "ORC-7.6"),
        (t.orm(orc={9: "20261345"}), "ORC-9"),
        (t.orm(accession="A" * 17), "OBR-18"),
        (t.orm(patient=t.pid(born="19601340")), "PID-7"),
        (t.orm(control="SC", orc={5: "ZZ"}), "ORC-5"),
        (t.omi(ipc=False), "IPC-1"),
        (
            t.message(t.msh(type_="ORM^O01"), t.pid(), t.segment("OBR", {1: "1", 18: "A1"})),
            "ORC-1",
        ),
    ],
    ids=[
        "no-pid-3",
        "no-accession",
        "unknown-control",
        "unknown-priority",
        "invalid-date",
        "long-accession",
        "invalid-birth-date",
        "unknown-status",
        "omi-no-ipc",
        "no-orc",
    ],
)
def test_a_wrong_order_is_refused_naming_the_field_and_writes_nothing(facility_a, raw, field):
    with pytest.raises(MessageRejected) as refused:
        apply(facility_a, raw)
    assert (refused.value.code, refused.value.field) == ("AE", field)
    assert not Order.objects.exists() and not Patient.objects.exists()


def test_a_repeated_new_order_under_another_control_id_changes_nothing(facility_a):
    apply(facility_a, t.orm(msg="MSG1"))
    assert apply(facility_a, t.orm(msg="MSG9")) == "NW ACC1001: unchanged, no study yet"
    assert Order.objects.count() == 1 and Patient.objects.count() == 1
    assert AuditEvent.objects.filter(object_type="studies.order").count() == 1


# -- reconciliation: whichever arrives first -----------------------------------------


def test_images_after_their_order_link_it_and_take_its_priority(facility_a):
    apply(facility_a, t.orm(accession="ACC1", priority="S"))
    study = f.StudyFactory(
        facility=facility_a, accession_number="ACC1", priority=3, received_at=NOW
    )
    study.refresh_from_db()
    order = Order.objects.get(accession_number="ACC1")
    assert order.study_id == study.pk
    assert study.priority == Priority.STAT
    assert study.sla_due_at == NOW + dt.timedelta(minutes=facility_a.tat_stat_minutes)
    # The DICOM patient id is the study's record; the order's patient is the same one.
    assert study.patient_record_id is not None


def test_images_of_another_facility_do_not_take_the_order(facility_a, facility_b):
    apply(facility_a, t.orm(accession="ACC1"))
    study = f.StudyFactory(facility=facility_b, accession_number="ACC1")
    assert not Order.objects.filter(study=study).exists()


def test_images_filed_by_the_gateway_link_their_order(facility_a, tmp_path):
    """The ingest filing path: a DICOM object through the gateway's filing service."""
    from ingest.storage import FileSystemStorage
    from ingest.synthetic import StudySpec, write_series
    from tests.ingest.staged import receive

    apply(facility_a, t.orm(accession="ACC77", priority="S"))
    paths = write_series(StudySpec(accession="ACC77"), tmp_path / "s", count=2)
    storage = FileSystemStorage(tmp_path / "store")
    assert all(receive(storage, p, facility_a).outcome == "stored" for p in paths)
    order = Order.objects.get(accession_number="ACC77")
    assert order.study is not None and order.study.priority == Priority.STAT
    assert Study.objects.get().pk == order.study_id


def test_an_order_after_its_images_links_the_study_and_reroutes_it_at_the_new_priority(
    facility_a, tiered, live
):
    study = ready(f.StudyFactory(facility=facility_a, accession_number="ACC5", priority=3))
    study_route(study_id=study.pk, now=NOW)
    assert open_offers(study) == {"dr_local"}
    routine_due = StudyRouting.objects.get(study=study).next_escalation_at

    summary = live(facility_a, t.orm(accession="ACC5", priority="S"))

    assert summary == (
        f"NW ACC5: order created, linked to study {study.pk}, study priority raised, re-routed"
    )
    study.refresh_from_db()
    assert Order.objects.get(accession_number="ACC5").study_id == study.pk
    assert study.priority == Priority.STAT and study.status == "offered"
    assert Offer.objects.filter(
        study=study, withdrawn_reason="its order changed its priority or jurisdiction"
    ).exists()
    assert open_offers(study) == {"dr_local"}
    # Routed afresh at STAT: the neuro rule's STAT wait (120 s), not routine's.
    assert StudyRouting.objects.get(study=study).next_escalation_at == NOW + dt.timedelta(
        seconds=120
    )
    assert routine_due == NOW + dt.timedelta(seconds=600)


def test_a_less_urgent_order_never_lowers_the_study(facility_a):
    study = f.StudyFactory(facility=facility_a, accession_number="ACC6", priority=1)
    apply(facility_a, t.orm(accession="ACC6", priority="R"))
    study.refresh_from_db()
    assert study.priority == Priority.STAT
    assert Order.objects.get(accession_number="ACC6").priority == Priority.ROUTINE


def test_a_study_held_for_its_order_is_released_and_routed_when_it_comes(facility_a, tiered, live):
    Facility.objects.filter(pk=facility_a.pk).update(order_hold_minutes=30)
    study = f.StudyFactory(
        facility=facility_a, accession_number="ACC8", received_at=NOW - dt.timedelta(minutes=2)
    )
    studies_mark_ready(quiet_seconds=10, now=NOW)
    study.refresh_from_db()
    assert study.status == "ready" and study.order_hold_until == NOW + dt.timedelta(minutes=30)
    assert not Offer.objects.filter(study=study).exists()  # held: not routed

    summary = live(facility_a, t.orm(accession="ACC8", priority="R"))

    assert summary.endswith("hold released")
    study.refresh_from_db()
    assert study.order_hold_until is None
    assert study.status == "offered" and open_offers(study) == {"dr_local"}


def test_an_order_and_its_images_that_missed_each_other_are_linked_at_ready_time(facility_a):
    """The race: the order row and the study row were created at the same moment, so
    neither saw the other; the ready sweep links them before deciding the hold."""
    Facility.objects.filter(pk=facility_a.pk).update(order_hold_minutes=30)
    study = f.StudyFactory(
        facility=facility_a, accession_number="ACC9", priority=3, received_at=NOW
    )
    order = f.OrderFactory(
        facility=facility_a, accession_number="ACC9", priority=Priority.URGENT
    )  # as if committed concurrently with the study
    assert order.study is None
    studies_mark_ready(quiet_seconds=10, now=NOW + dt.timedelta(minutes=1))
    study.refresh_from_db()
    order.refresh_from_db()
    assert order.study_id == study.pk
    assert study.status == "ready" and study.order_hold_until is None  # not held: it has one
    assert study.priority == Priority.URGENT


# -- the patient's jurisdiction follows the order --------------------------------------


def test_a_remote_site_moves_the_patient_jurisdiction_and_reroutes_to_readers_licensed_there(
    group_a, facility_a, regions, neuro_rule, live
):
    nm = f.JurisdictionFactory(code="US-NM")
    Facility.objects.filter(pk=facility_a.pk).update(
        order_jurisdiction_source="location", order_location_jurisdictions={"NM-CLINIC": "US-NM"}
    )
    facility_a.refresh_from_db()
    make_reader(group_a, facility_a, name="dr_texas", region=regions["local"])
    nm_reader = make_reader(
        group_a, facility_a, name="dr_newmexico", region=regions["local"], licensed=False
    )
    f.LicenseFactory(
        radiologist=nm_reader,
        jurisdiction=nm,
        valid_from=dt.date(2025, 1, 1),
        valid_to=dt.date(2099, 12, 31),
    )
    study = ready(f.StudyFactory(facility=facility_a, accession_number="ACC10", priority=1))
    study_route(study_id=study.pk, now=NOW)
    assert open_offers(study) == {"dr_texas"}

    summary = live(facility_a, t.orm(accession="ACC10", location="NM-CLINIC^ROOM2"))

    assert "patient jurisdiction changed" in summary and summary.endswith("re-routed")
    study.refresh_from_db()
    assert study.patient_jurisdiction.code == "US-NM"
    assert Order.objects.get(accession_number="ACC10").jurisdiction == nm
    assert open_offers(study) == {"dr_newmexico"}
    assert AuditEvent.objects.filter(
        object_type="studies.study",
        object_id=str(study.pk),
        detail__patient_jurisdiction=["US-TX", "US-NM"],
    ).exists()


def test_the_patient_address_names_the_jurisdiction_when_the_facility_says_so(facility_a):
    f.JurisdictionFactory(code="US-NM")
    Facility.objects.filter(pk=facility_a.pk).update(order_jurisdiction_source="patient_address")
    facility_a.refresh_from_db()
    study = f.StudyFactory(facility=facility_a, accession_number="ACC11")
    apply(
        facility_a,
        t.orm(accession="ACC11", patient=t.pid(address="5 Canyon Rd^^Santa Fe^NM^87501^USA")),
    )
    study.refresh_from_db()
    assert study.patient_jurisdiction.code == "US-NM"
    # An XO that moves the patient back to an address in no jurisdiction we know
    # brings the study back to the facility's own.
    apply(
        facility_a,
        t.orm(accession="ACC11", control="XO", patient=t.pid(address="1 Rue^^Paris^^75001^FRA")),
    )
    study.refresh_from_db()
    assert study.patient_jurisdiction.code == "US-TX"


def test_by_default_the_facility_keeps_the_jurisdiction(facility_a):
    f.JurisdictionFactory(code="US-NM")
    study = f.StudyFactory(facility=facility_a, accession_number="ACC12")
    apply(facility_a, t.orm(accession="ACC12", patient=t.pid(address="^^^NM^^USA")))
    study.refresh_from_db()
    assert study.patient_jurisdiction.code == "US-TX"


# -- changes and status ------------------------------------------------------------


def test_a_change_raises_the_priority_and_reroutes_a_study_not_yet_claimed(
    facility_a, tiered, live
):
    live(facility_a, t.orm(accession="ACC13", priority="R"))
    study = ready(f.StudyFactory(facility=facility_a, accession_number="ACC13", priority=3))
    study_route(study_id=study.pk, now=NOW)
    summary = live(
        facility_a,
        t.orm(accession="ACC13", control="XO", priority="S", obr={31: "^Worse headache"}),
    )
    assert summary == "XO ACC13: order updated, study priority raised, re-routed"
    order = Order.objects.get(accession_number="ACC13")
    assert order.priority == Priority.STAT and order.reason_for_exam == "Worse headache"
    study.refresh_from_db()
    assert study.priority == Priority.STAT and study.status == "offered"


def test_a_change_of_a_claimed_study_reprioritises_it_without_rerouting(facility_a, tiered, live):
    live(facility_a, t.orm(accession="ACC14", priority="R"))
    study = ready(f.StudyFactory(facility=facility_a, accession_number="ACC14", priority=3))
    study_route(study_id=study.pk, now=NOW)
    study_claim(study_id=study.pk, radiologist=tiered["local"])
    summary = live(facility_a, t.orm(accession="ACC14", control="XO", priority="S"))
    assert summary == "XO ACC14: order updated, study priority raised"
    study.refresh_from_db()
    assert study.status == "claimed" and study.priority == Priority.STAT
    assert study.assigned_radiologist == tiered["local"]


def test_an_empty_field_leaves_a_value_and_the_hl7_null_clears_it(facility_a):
    apply(facility_a, t.orm(accession="ACC15"))
    apply(facility_a, t.orm(accession="ACC15", control="XO", obr={13: ""}, extra=()))
    assert Order.objects.get().clinical_history == "On anticoagulants"  # NTE still sent
    apply(facility_a, t.orm(accession="ACC15", control="XO", obr={31: '""'}))
    assert Order.objects.get().reason_for_exam == ""


def test_a_status_message_sets_the_order_status(facility_a):
    apply(facility_a, t.orm(accession="ACC16"))
    apply(facility_a, t.orm(accession="ACC16", control="SC", orc={5: "IP"}))
    assert Order.objects.get().status == Order.Status.IN_PROGRESS
    apply(facility_a, t.orm(accession="ACC16", control="SC", orc={5: "CM"}))
    assert Order.objects.get().status == Order.Status.COMPLETED


# -- out of order ------------------------------------------------------------------


@pytest.mark.parametrize("control", ["XO", "SC", "CA"])
def test_a_change_status_or_cancel_for_an_unknown_accession_is_refused(facility_a, control):
    with pytest.raises(MessageRejected) as refused:
        apply(facility_a, t.orm(accession="NOPE1", control=control))
    assert (refused.value.code, refused.value.field) == ("AE", "OBR-18")
    assert "NOPE1" in refused.value.text
    assert not Order.objects.exists()


def test_a_change_before_the_new_order_creates_it_when_the_images_are_known(facility_a):
    study = f.StudyFactory(facility=facility_a, accession_number="ACC17", priority=3)
    summary = apply(facility_a, t.orm(accession="ACC17", control="XO", priority="A"))
    assert summary == f"XO ACC17: order created, linked to study {study.pk}, study priority raised"
    order = Order.objects.get(accession_number="ACC17")
    assert order.study_id == study.pk and order.reason_for_exam == "Head trauma, rule out bleed"


def test_a_new_order_after_a_cancel_is_refused(facility_a):
    apply(facility_a, t.orm(accession="ACC18"))
    apply(facility_a, t.orm(accession="ACC18", control="CA"))
    with pytest.raises(MessageRejected) as refused:
        apply(facility_a, t.orm(accession="ACC18", control="NW", msg="MSG5"))
    assert refused.value.field == "ORC-1"


# -- cancel ------------------------------------------------------------------------


def test_cancelling_an_offered_study_withdraws_its_offers(facility_a, tiered, live):
    live(facility_a, t.orm(accession="ACC20"))
    study = ready(f.StudyFactory(facility=facility_a, accession_number="ACC20"))
    study_route(study_id=study.pk, now=NOW)
    assert open_offers(study) == {"dr_local"}

    summary = live(
        facility_a, t.orm(accession="ACC20", control="CA", orc={16: "^Ordered in error"})
    )

    assert summary == f"CA ACC20: order cancelled, study {study.pk} cancelled"
    study.refresh_from_db()
    assert study.status == "cancelled" and study.cancelled_at == NOW
    assert open_offers(study) == set()
    assert Offer.objects.get(study=study).withdrawn_reason == "order cancelled: Ordered in error"
    assert StudyRouting.objects.get(study=study).next_escalation_at is None
    order = Order.objects.get(accession_number="ACC20")
    assert order.status == "cancelled" and order.cancelled_at == NOW
    assert not Alert.objects.filter(kind=Alert.Kind.STUDY_CANCELLED).exists()  # nobody held it
    # A second cancel changes nothing.
    assert live(facility_a, t.orm(accession="ACC20", control="CA", msg="MSG6")).startswith(
        "CA ACC20: order cancelled"
    )


def test_cancelling_a_claimed_study_ends_the_claim_and_tells_the_reader(facility_a, tiered, live):
    live(facility_a, t.orm(accession="ACC21"))
    study = ready(f.StudyFactory(facility=facility_a, accession_number="ACC21"))
    study_route(study_id=study.pk, now=NOW)
    study_claim(study_id=study.pk, radiologist=tiered["local"])

    live(facility_a, t.orm(accession="ACC21", control="CA"))

    study.refresh_from_db()
    assert study.status == "cancelled"
    alert = Alert.objects.get(kind=Alert.Kind.STUDY_CANCELLED, study=study)
    assert alert.recipient == tiered["local"].user
    assert "ACC21" in alert.message
    # The reader holds no claim any more: their open claims (workload) are empty.
    assert not Study.objects.filter(
        assigned_radiologist=tiered["local"], status__in=["claimed", "preliminary"]
    ).exists()


def test_a_final_study_is_not_cancelled(facility_a):
    apply(facility_a, t.orm(accession="ACC22"))
    study = f.StudyFactory(facility=facility_a, accession_number="ACC22")
    Study.objects.filter(pk=study.pk).update(status="final", finalized_at=NOW)
    summary = apply(facility_a, t.orm(accession="ACC22", control="CA"))
    assert summary.endswith(f"study {study.pk} left final")
    assert Study.objects.get(pk=study.pk).status == "final"


def test_images_for_an_order_cancelled_before_them_are_cancelled_when_complete(
    facility_a, tiered, live
):
    live(facility_a, t.orm(accession="ACC23"))
    live(facility_a, t.orm(accession="ACC23", control="CA", msg="MSG7"))
    study = f.StudyFactory(
        facility=facility_a, accession_number="ACC23", received_at=NOW - dt.timedelta(minutes=1)
    )
    assert Order.objects.get(accession_number="ACC23").study_id == study.pk
    studies_mark_ready(quiet_seconds=10, now=NOW)
    study.refresh_from_db()
    assert study.status == "cancelled"
    assert not Offer.objects.filter(study=study).exists()  # never routed


def test_cancelling_a_study_still_receiving_cancels_it_when_its_images_are_in(facility_a):
    study = f.StudyFactory(
        facility=facility_a, accession_number="ACC24", received_at=NOW - dt.timedelta(minutes=1)
    )
    summary = apply(facility_a, t.orm(accession="ACC24", control="CA"))
    assert summary == (
        f"CA ACC24: order cancelled, study {study.pk} cancelled once its images are in"
    )
    order = Order.objects.get(accession_number="ACC24")
    assert order.status == "cancelled" and order.study_id == study.pk  # recorded from the CA
    studies_mark_ready(quiet_seconds=10, now=NOW)
    assert Study.objects.get(pk=study.pk).status == "cancelled"


def test_a_status_of_cancelled_cancels_like_a_cancel(facility_a):
    apply(facility_a, t.orm(accession="ACC25"))
    study = ready(f.StudyFactory(facility=facility_a, accession_number="ACC25"))
    apply(facility_a, t.orm(accession="ACC25", control="SC", orc={5: "CA"}))
    assert Study.objects.get(pk=study.pk).status == "cancelled"


def test_several_orders_in_one_message_are_applied_each(facility_a):
    second = [
        t.segment("ORC", {1: "NW", 2: "PL2", 3: "FL2", 7: "^^^^^R"}),
        t.segment("OBR", {1: "2", 2: "PL2", 3: "FL2", 4: "CTCHEST^CT chest", 18: "ACC27"}),
    ]
    summary = apply(facility_a, t.orm(accession="ACC26", extra=tuple(second)))
    assert summary == "NW ACC26: order created, no study yet; NW ACC27: order created, no study yet"
    assert Order.objects.get(accession_number="ACC27").procedure_code == "CTCHEST"


def test_the_ready_time_backstop_costs_two_reads_for_a_batch_with_nothing_to_link(facility_a):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from studies.services import studies_order_link

    studies = [f.StudyFactory(facility=facility_a) for _ in range(5)]
    with CaptureQueriesContext(connection) as queries:
        assert studies_order_link(study_ids=[s.pk for s in studies]) == {}
    reads = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    assert len(reads) == 2, reads
