"""Applying ADT^A08 (patient update) and ADT^A40 (merge), and reading HL7 fields:
one patient across studies and orders."""

from __future__ import annotations

import datetime as dt

import pytest

from audit.models import AuditEvent
from orders import fields
from orders.errors import MessageRejected
from orders.services.apply import message_apply
from studies.models import Order, Patient
from tests import factories as f
from tests.orders import hl7text as t

NOW = dt.datetime(2026, 12, 7, 10, 30, tzinfo=dt.UTC)


def apply(facility, raw: str) -> str:
    return message_apply(facility=facility, message=t.parse(raw), raw=raw, received_at=NOW)


@pytest.mark.django_db
def test_an_a08_updates_the_patient_record_not_the_images_headers(facility_a):
    study = f.StudyFactory(
        facility=facility_a, patient_id="MRN300", patient_name="SMITH^ANN", patient_sex="F"
    )
    patient = study.patient_record
    assert patient is not None and patient.name == "SMITH^ANN"
    summary = apply(
        facility_a,
        t.adt_a08(
            patient=t.pid(
                "MRN300", name="SMITH-JONES^ANN^B", born="19750412", sex="F", address="^^^CA^^US"
            )
        ),
    )
    assert summary == "A08 patient MRN300: demographics updated"
    patient.refresh_from_db()
    assert patient.name == "SMITH-JONES^ANN^B"
    assert patient.birth_date == dt.date(1975, 4, 12)
    assert (patient.address_state, patient.address_country) == ("CA", "US")
    study.refresh_from_db()
    assert study.patient_name == "SMITH^ANN"  # the DICOM header's, as the images have it
    assert AuditEvent.objects.filter(
        object_type="studies.patient", object_id=str(patient.pk), action="update"
    ).exists()
    # The same update again changes (and audits) nothing.
    count = AuditEvent.objects.filter(object_type="studies.patient").count()
    apply(
        facility_a,
        t.adt_a08(
            patient=t.pid(
                "MRN300", name="SMITH-JONES^ANN^B", born="19750412", sex="F", address="^^^CA^^US"
            )
        ),
    )
    assert AuditEvent.objects.filter(object_type="studies.patient").count() == count


@pytest.mark.django_db
def test_an_a08_for_a_new_patient_creates_the_record(facility_a):
    apply(facility_a, t.adt_a08(patient=t.pid("MRN301", name="NEW^PATIENT")))
    assert Patient.objects.get(patient_id="MRN301").name == "NEW^PATIENT"


@pytest.mark.django_db
def test_an_a08_without_a_patient_id_is_refused(facility_a):
    with pytest.raises(MessageRejected) as refused:
        apply(facility_a, t.adt_a08(patient=t.segment("PID", {1: "1", 5: "DOE^JOHN"})))
    assert refused.value.field == "PID-3"


@pytest.mark.django_db
@pytest.mark.parametrize("version", ["2.3", "2.5.1"])
def test_an_a40_merges_the_prior_patient_into_the_survivor(facility_a, version):
    prior_study = f.StudyFactory(facility=facility_a, patient_id="MRN-OLD")
    survivor_study = f.StudyFactory(facility=facility_a, patient_id="MRN-NEW")
    apply(facility_a, t.orm(accession="ACC40", patient=t.pid("MRN-OLD")))
    prior = prior_study.patient_record
    survivor = survivor_study.patient_record

    summary = apply(facility_a, t.adt_a40(survivor="MRN-NEW", prior="MRN-OLD", version=version))

    assert summary == "A40 patient MRN-OLD merged into MRN-NEW: 1 studies, 1 orders relinked"
    prior.refresh_from_db()
    assert prior.merged_into == survivor and prior.merged_at == NOW
    prior_study.refresh_from_db()
    assert prior_study.patient_record == survivor
    assert Order.objects.get(accession_number="ACC40").patient == survivor
    assert set(survivor.studies.all()) == {prior_study, survivor_study}
    assert AuditEvent.objects.filter(
        object_type="studies.patient", object_id=str(prior.pk), detail__merged_into=survivor.pk
    ).exists()
    # A study that arrives later under the merged id links to the survivor.
    later = f.StudyFactory(facility=facility_a, patient_id="MRN-OLD")
    assert later.patient_record == survivor
    # The same merge again (a resent message) changes nothing.
    assert apply(facility_a, t.adt_a40(survivor="MRN-NEW", prior="MRN-OLD")).endswith(
        "0 studies, 0 orders relinked"
    )


@pytest.mark.django_db
def test_merging_again_keeps_every_merged_record_one_hop_from_its_survivor(facility_a):
    a = f.StudyFactory(facility=facility_a, patient_id="A").patient_record
    b = f.StudyFactory(facility=facility_a, patient_id="B").patient_record
    c = f.StudyFactory(facility=facility_a, patient_id="C").patient_record
    apply(facility_a, t.adt_a40(survivor="B", prior="A"))
    apply(facility_a, t.adt_a40(survivor="C", prior="B"))
    a.refresh_from_db()
    b.refresh_from_db()
    assert a.merged_into == c and b.merged_into == c
    assert set(c.studies.values_list("patient_id", flat=True)) == {"A", "B", "C"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("survivor", "prior", "text"),
    [("MRN1", "NOBODY", "no patient NOBODY"), ("MRN1", "MRN1", "into itself")],
)
def test_a_merge_of_an_unknown_or_the_same_patient_is_refused_on_mrg_1(
    facility_a, survivor, prior, text
):
    f.StudyFactory(facility=facility_a, patient_id="MRN1")
    with pytest.raises(MessageRejected) as refused:
        apply(facility_a, t.adt_a40(survivor=survivor, prior=prior))
    assert (refused.value.code, refused.value.field) == ("AE", "MRG-1")
    assert text in refused.value.text
    assert not Patient.objects.filter(merged_into__isnull=False).exists()


@pytest.mark.django_db
def test_a_merge_into_a_second_survivor_is_refused(facility_a):
    for pid in ("P1", "P2", "P3"):
        f.StudyFactory(facility=facility_a, patient_id=pid)
    apply(facility_a, t.adt_a40(survivor="P2", prior="P1"))
    with pytest.raises(MessageRejected) as refused:
        apply(facility_a, t.adt_a40(survivor="P3", prior="P1"))
    assert refused.value.field == "MRG-1" and "already" in refused.value.text


@pytest.mark.django_db
def test_patients_are_per_reading_group(facility_a, facility_c):
    """The same id at another group's facility is another patient: no merge across."""
    f.StudyFactory(facility=facility_c, patient_id="SHARED")
    f.StudyFactory(facility=facility_a, patient_id="MINE")
    with pytest.raises(MessageRejected):
        apply(facility_a, t.adt_a40(survivor="MINE", prior="SHARED"))


# -- reading fields ----------------------------------------------------------------


@pytest.mark.parametrize("version", ["2.3", "2.5.1"])
def test_fields_components_repetitions_and_escapes_read_the_same_in_each_version(version):
    raw = t.message(
        t.msh(type_="ADT^A08^ADT_A01", version=version),
        t.segment(
            "PID",
            {
                1: "1",
                3: "X9^^^SSA^SS~MRN5^^^STMARY&1.2.3&ISO^MR",
                5: "O\\T\\BRIEN^SEAN\\S\\OG^^JR",
                7: "19601231235959.1234+0100",
                11: '""',
            },
        ),
    )
    (msh, pid) = fields.segments(t.parse(raw))
    assert msh.name == "MSH" and pid.name == "PID"
    assert [pid.part(r, 1) for r in pid.reps(3)] == ["X9", "MRN5"]
    assert pid.text(3, 4, rep=1) == "STMARY" and pid.text(3, 4, 2, rep=1) == "1.2.3"
    assert pid.text(5, 1) == "O&BRIEN" and pid.text(5, 2) == "SEAN^OG"
    assert pid.text(11) == "" and pid.text(12) is None and pid.text(3, 9) is None
    assert fields.person_name(pid.components(pid.reps(5)[0])) == "O&BRIEN^SEAN^OG"
    born = fields.timestamp(pid.text(7) or "", field="PID-7", tz="UTC")
    assert born == dt.datetime(1960, 12, 31, 22, 59, 59, 123400, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026", dt.datetime(2026, 1, 1, 6, 0, tzinfo=dt.UTC)),
        ("202612071012", dt.datetime(2026, 12, 7, 16, 12, tzinfo=dt.UTC)),
        ("20260701101200", dt.datetime(2026, 7, 1, 15, 12, tzinfo=dt.UTC)),  # CDT
        ("20261207101200-0500", dt.datetime(2026, 12, 7, 15, 12, tzinfo=dt.UTC)),
    ],
)
def test_a_timestamp_without_an_offset_is_the_facility_local_time(text, expected):
    assert fields.timestamp(text, field="ORC-9", tz="America/Chicago") == expected


@pytest.mark.parametrize("text", ["2026-12-07", "20261307", "20261207+2500", "x", "2026120"])
def test_an_invalid_timestamp_names_its_field(text):
    with pytest.raises(fields.FieldError) as error:
        fields.timestamp(text, field="ORC-9", tz="UTC")
    assert error.value.field == "ORC-9"


@pytest.mark.parametrize(
    ("code", "expected"),
    [("S", 1), ("stat", 1), ("A", 2), ("ASAP", 2), ("T", 2), ("R", 3), ("P", 3), ("PRN", 3)],
)
def test_priority_codes(code, expected):
    assert fields.priority(code, field="TQ1-9") == expected


def test_names_read_as_people_write_them():
    assert fields.provider_name(["5678", "JONES", "ROBERT", "", "", "DR", "MD"]) == (
        "JONES, ROBERT, MD"
    )
    assert fields.provider_name(["5678"]) == "5678"
    assert fields.person_name(["DOE", "JOHN", "", "", ""]) == "DOE^JOHN"
    assert fields.birth_date("1960", field="PID-7") is None
    assert fields.country_code("usa") == "US" and fields.country_code("MX") == "MX"
