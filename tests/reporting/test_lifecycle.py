"""The report lifecycle through the services: allowed and refused transitions."""

from __future__ import annotations

import datetime as dt

import pytest

from audit.models import AuditEvent
from reporting.models import Addendum, Report, ReportVersion
from reporting.services.critical import critical_communication_record
from reporting.services.reports import report_addendum_add, report_save_draft, report_sign
from studies.models import Study
from teleradiology.errors import DomainError, InvalidTransition, NotPermitted
from tests.reporting.conftest import COMPLETE_VALUES, NOW, hand_to, make_reader
from worklist.models import Offer

pytestmark = pytest.mark.django_db


def draft(study, reader, template, **changes):
    fields = {"values": dict(COMPLETE_VALUES), "impression": "No acute intracranial finding."}
    fields.update(changes)
    return report_save_draft(
        study_id=study.pk, radiologist=reader, template_id=template.pk, **fields
    )


def test_a_new_draft_starts_from_the_normal_text_and_keeps_every_save(claimed, reader, ct_head):
    report = report_save_draft(study_id=claimed.pk, radiologist=reader, template_id=ct_head.pk)
    assert report.status == "draft" and report.author == reader and report.version == 1
    assert report.values["brain"].startswith("Grey-white matter")
    report_save_draft(study_id=claimed.pk, radiologist=reader, impression="Draft 2")
    report_save_draft(study_id=claimed.pk, radiologist=reader, impression="Draft 3")
    versions = list(ReportVersion.objects.filter(report=report).order_by("number"))
    assert [(v.number, v.impression) for v in versions] == [(1, ""), (2, "Draft 2"), (3, "Draft 3")]


def test_autosave_counts_as_claim_activity(claimed, reader, ct_head):
    Study.objects.filter(pk=claimed.pk).update(claim_activity_at=NOW - dt.timedelta(hours=1))
    draft(claimed, reader, ct_head)
    activity = Study.objects.get(pk=claimed.pk).claim_activity_at
    assert activity is not None and activity >= NOW


def test_only_the_claimer_writes(claimed, ct_head, tiered):
    with pytest.raises(NotPermitted, match="holding the claim"):
        draft(claimed, tiered["regional"], ct_head)
    assert not Report.objects.exists()


def test_a_study_not_claimed_cannot_be_reported(ready_study, reader, ct_head):
    with pytest.raises(NotPermitted):
        draft(ready_study, reader, ct_head)


def test_invalid_values_are_refused_with_the_reason(claimed, reader, ct_head):
    with pytest.raises(DomainError, match="'Midline shift' must be at most 40 mm"):
        draft(claimed, reader, ct_head, values={"midline_shift": 90})
    with pytest.raises(DomainError, match="Choose a template"):
        report_save_draft(study_id=claimed.pk, radiologist=reader)


def test_sign_final_locks_the_report_and_finishes_the_study(claimed, reader, ct_head, tiered):
    # The claim holds the study's offers (off every worklist); an offer left open
    # anyway (say, a widening that raced the claim) must not outlive the final.
    assert not Offer.objects.filter(study=claimed, held_at__isnull=True).exists()
    stray = Offer.make(study=claimed, radiologist_id=tiered["regional"].pk, tier=1, at=NOW)
    stray.save()
    report = draft(claimed, reader, ct_head)
    signed = report_sign(report_id=report.pk, radiologist=reader, status="final")
    assert signed.status == "final" and signed.signed_by == reader and signed.signed_at
    study = Study.objects.get(pk=claimed.pk)
    assert study.status == "final" and study.finalized_at is not None
    # History leaves no open offer on anyone's worklist.
    assert not Offer.objects.filter(study=claimed, withdrawn_at__isnull=True).exists()
    assert Offer.objects.get(pk=stray.pk).withdrawn_reason == "study reported final"
    with pytest.raises(InvalidTransition, match="final and locked"):
        report_save_draft(study_id=claimed.pk, radiologist=reader, impression="Edit")
    with pytest.raises(InvalidTransition):
        report_sign(report_id=report.pk, radiologist=reader, status="final")
    with pytest.raises(InvalidTransition, match="final and locked"):
        report_sign(report_id=report.pk, radiologist=reader, status="preliminary")


def test_only_the_claimer_signs(claimed, reader, ct_head, tiered):
    report = draft(claimed, reader, ct_head)
    with pytest.raises(NotPermitted, match="holding the claim"):
        report_sign(report_id=report.pk, radiologist=tiered["regional"], status="final")
    assert Report.objects.get(pk=report.pk).status == "draft"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"impression": "  "}, "The impression cannot be empty."),
        ({"values": {"haemorrhage": False}}, "'Indication' is required before signing."),
    ],
)
def test_sign_refuses_an_incomplete_report(claimed, reader, ct_head, changes, message):
    report = draft(claimed, reader, ct_head, **changes)
    with pytest.raises(DomainError, match=message):
        report_sign(report_id=report.pk, radiologist=reader, status="final")
    assert Study.objects.get(pk=claimed.pk).status == "claimed"


def test_a_critical_finding_blocks_signing_until_communicated(claimed, reader, ct_head):
    report = draft(claimed, reader, ct_head, critical_severity="critical")
    with pytest.raises(DomainError, match="critical finding must be communicated"):
        report_sign(report_id=report.pk, radiologist=reader, status="final")
    kwargs = {
        "report_id": report.pk,
        "radiologist": reader,
        "recipient_name": "Dr. Lee",
        "recipient_role": "ED attending",
        "method": "phone",
        "communicated_at": NOW,
    }
    # Without read-back, the record is kept but does not release the signature.
    critical_communication_record(**kwargs, read_back_confirmed=False)
    with pytest.raises(DomainError, match="read-back confirmed"):
        report_sign(report_id=report.pk, radiologist=reader, status="final")
    critical_communication_record(**kwargs, read_back_confirmed=True)
    assert report_sign(report_id=report.pk, radiologist=reader, status="final").status == ("final")


def test_a_communication_needs_a_finding_and_a_recipient(claimed, reader, ct_head):
    report = draft(claimed, reader, ct_head)
    with pytest.raises(DomainError, match="Mark the report's finding"):
        critical_communication_record(
            report_id=report.pk,
            radiologist=reader,
            recipient_name="Dr. Lee",
            recipient_role="ED",
            method="phone",
            communicated_at=NOW,
            read_back_confirmed=True,
        )
    with pytest.raises(DomainError, match="Say who was told"):
        critical_communication_record(
            report_id=report.pk,
            radiologist=reader,
            recipient_name=" ",
            recipient_role="ED",
            method="pigeon",
            communicated_at=NOW,
            read_back_confirmed=True,
        )


def test_an_addendum_never_edits_the_final(claimed, reader, ct_head, tiered):
    report = draft(claimed, reader, ct_head)
    with pytest.raises(InvalidTransition, match="Addenda are for final reports"):
        report_addendum_add(report_id=report.pk, radiologist=reader, text="Too early")
    report_sign(report_id=report.pk, radiologist=reader, status="final")
    final = Report.objects.get(pk=report.pk)
    first = report_addendum_add(report_id=report.pk, radiologist=reader, text="Addition")
    second = report_addendum_add(report_id=report.pk, radiologist=reader, text="More")
    assert (first.number, second.number) == (1, 2) and second.signed_by == reader
    after = Report.objects.get(pk=report.pk)
    assert (after.values, after.impression, after.version, after.updated_at) == (
        final.values,
        final.impression,
        final.version,
        final.updated_at,
    )
    assert list(Addendum.objects.filter(report=report).values_list("text", flat=True)) == [
        "Addition",
        "More",
    ]
    with pytest.raises(NotPermitted):
        report_addendum_add(report_id=report.pk, radiologist=tiered["regional"], text="x")
    with pytest.raises(DomainError, match="needs text"):
        report_addendum_add(report_id=report.pk, radiologist=reader, text=" ")
    # Every version, the signed one included, is still there.
    assert [v.status for v in report.versions.order_by("number")] == ["draft", "final"]


def test_a_reader_without_a_license_cannot_sign(ready_study, ct_head, unlicensed_reader):
    study = hand_to(ready_study, unlicensed_reader)
    report = draft(study, unlicensed_reader, ct_head)
    with pytest.raises(NotPermitted, match="not licensed in the patient's jurisdiction"):
        report_sign(report_id=report.pk, radiologist=unlicensed_reader, status="final")


def test_an_expired_license_cannot_sign(ready_study, ct_head, group_a, facility_a, regions):
    lapsed = make_reader(group_a, facility_a, name="dr_lapsed", region=regions["local"])
    lapsed.licenses.update(valid_to=NOW.date() - dt.timedelta(days=1))
    study = hand_to(ready_study, lapsed)
    report = draft(study, lapsed, ct_head)
    with pytest.raises(NotPermitted, match="expired"):
        report_sign(report_id=report.pk, radiologist=lapsed, status="final")


@pytest.fixture
def prelim_reader(group_a, facility_a, regions, neuro_rule):
    return make_reader(
        group_a, facility_a, name="dr_prelim", region=regions["global"], scope="preliminary"
    )


def test_a_preliminary_only_license_cannot_sign_final(
    ready_study, ct_head, prelim_reader, neuro_rule
):
    neuro_rule.allow_preliminary = True
    neuro_rule.save()
    study = hand_to(ready_study, prelim_reader)
    report = draft(study, prelim_reader, ct_head)
    with pytest.raises(NotPermitted, match="preliminary reads only"):
        report_sign(report_id=report.pk, radiologist=prelim_reader, status="final")
    signed = report_sign(report_id=report.pk, radiologist=prelim_reader, status="preliminary")
    assert signed.status == "preliminary" and signed.preliminary_signed_by == prelim_reader
    # Nobody licensed for the final read is here: the study is flagged, not left held.
    study = Study.objects.get(pk=study.pk)
    assert study.assigned_radiologist is None and study.preliminary_at is not None
    assert study.status == "ready" and study.routing.unroutable_at is not None


def test_a_preliminary_only_read_is_routed_for_the_final_read(
    ready_study, ct_head, group_a, facility_a, regions, neuro_rule, tiered
):
    from routing.services import study_route
    from worklist.services.claims import study_claim

    # A preliminary-only reader in the hyperlocal tier, beside the final readers.
    prelim_reader = make_reader(
        group_a, facility_a, name="dr_prelim_local", region=regions["local"], scope="preliminary"
    )
    neuro_rule.allow_preliminary = True
    neuro_rule.save()
    study_route(study_id=ready_study.pk, now=NOW)
    offered = set(Offer.objects.filter(study=ready_study).values_list("radiologist", flat=True))
    assert prelim_reader.pk in offered  # the rule lets a preliminary-only license read first
    study = study_claim(study_id=ready_study.pk, radiologist=prelim_reader)
    report = draft(study, prelim_reader, ct_head)
    report_sign(report_id=report.pk, radiologist=prelim_reader, status="preliminary")

    study = Study.objects.get(pk=study.pk)
    assert study.status == "offered" and study.assigned_radiologist is None
    open_offers = set(
        Offer.objects.filter(study=study, withdrawn_at__isnull=True).values_list(
            "radiologist", flat=True
        )
    )
    # Offered again, for the final read, only to readers licensed for final reads.
    assert open_offers and prelim_reader.pk not in open_offers
    assert open_offers <= {r.pk for r in tiered.values()}
    with pytest.raises(NotPermitted):
        study_claim(study_id=study.pk, radiologist=prelim_reader)
    final_reader = next(r for r in tiered.values() if r.pk in open_offers)
    study_claim(study_id=study.pk, radiologist=final_reader)
    report_save_draft(
        study_id=study.pk, radiologist=final_reader, impression="Confirmed at final read."
    )
    final = report_sign(report_id=report.pk, radiologist=final_reader, status="final")
    assert final.preliminary_signed_by == prelim_reader and final.signed_by == final_reader
    assert Study.objects.get(pk=study.pk).status == "final"
    transitions = list(study.transitions.order_by("at", "id").values_list("to_status", flat=True))
    assert transitions[-6:] == ["preliminary", "offered", "ready", "offered", "claimed", "final"]


def test_a_preliminary_read_needs_a_rule_that_allows_it(
    ready_study, ct_head, prelim_reader, neuro_rule
):
    assert neuro_rule.allow_preliminary is False
    study = hand_to(ready_study, prelim_reader)
    report = draft(study, prelim_reader, ct_head)
    with pytest.raises(NotPermitted, match="preliminary reads only"):
        report_sign(report_id=report.pk, radiologist=prelim_reader, status="preliminary")


def test_preliminary_then_final_by_a_final_reader(claimed, reader, ct_head):
    report = draft(claimed, reader, ct_head)
    report_sign(report_id=report.pk, radiologist=reader, status="preliminary")
    # Revised on its way to final: kept as a new version, still preliminary.
    report_save_draft(study_id=claimed.pk, radiologist=reader, impression="Revised.")
    final = report_sign(report_id=report.pk, radiologist=reader, status="final")
    assert final.impression == "Revised." and final.preliminary_signed_by == reader
    assert [v.status for v in final.versions.order_by("number")] == [
        "draft",
        "preliminary",
        "preliminary",
        "final",
    ]
    assert Study.objects.get(pk=claimed.pk).status == "final"


def test_signing_off_shift_or_at_cap_is_still_allowed(claimed, reader, ct_head):
    # Shift and workload decided who got the study; they do not stop its reader signing.
    reader.shifts.all().delete()
    reader.workload_cap = 1
    reader.save()
    report = draft(claimed, reader, ct_head)
    assert report_sign(report_id=report.pk, radiologist=reader, status="final").status == ("final")


def test_every_write_is_audited(claimed, reader, ct_head):
    before = AuditEvent.objects.filter(object_type="reporting.report").count()
    report = draft(claimed, reader, ct_head, critical_severity="urgent")
    report_save_draft(study_id=claimed.pk, radiologist=reader, impression="Again.")
    critical_communication_record(
        report_id=report.pk,
        radiologist=reader,
        recipient_name="Nurse Kim",
        recipient_role="charge nurse",
        method="phone",
        communicated_at=NOW,
        read_back_confirmed=True,
    )
    report_sign(report_id=report.pk, radiologist=reader, status="final")
    report_addendum_add(report_id=report.pk, radiologist=reader, text="Addendum.")
    report_events = AuditEvent.objects.filter(
        object_type="reporting.report", object_id=str(report.pk)
    )
    assert report_events.count() - before == 3
    assert list(report_events.order_by("id").values_list("action", flat=True)) == [
        "create",
        "update",
        "transition",
    ]
    assert report_events.first().patient_id == claimed.patient_id
    assert AuditEvent.objects.filter(object_type="reporting.addendum").count() == 1
    assert AuditEvent.objects.filter(object_type="reporting.criticalcommunication").count() == 1
    assert AuditEvent.objects.filter(
        object_type="studies.study", object_id=str(claimed.pk), detail__to="final"
    ).exists()


def test_the_state_machine_in_one_place():
    from reporting.states import edit_refusal, transition_refusal

    assert transition_refusal("draft", "preliminary") is None
    assert transition_refusal("draft", "final") is None
    assert transition_refusal("preliminary", "final") is None
    assert "cannot become draft" in (transition_refusal("preliminary", "draft") or "")
    assert "locked" in (transition_refusal("final", "preliminary") or "")
    assert "not a report status" in (transition_refusal("draft", "signed") or "")
    assert edit_refusal("draft") is None and edit_refusal("preliminary") is None
    assert edit_refusal("final") is not None


def test_switching_template_on_a_draft_starts_from_its_normal_text(
    claimed, reader, ct_head, templates
):
    from reporting.services.templates import report_template_new_version

    draft(claimed, reader, ct_head)
    # An MR template on this CT study only because an admin allowed it on any study.
    general = report_template_new_version(
        template_id=templates["mr-brain"].pk, actor=None, changes={"allow_any_study": True}
    )
    switched = report_save_draft(study_id=claimed.pk, radiologist=reader, template_id=general.pk)
    assert switched.template.code == "mr-brain" and "haemorrhage" not in switched.values
    assert switched.values["parenchyma"] == "Normal signal throughout. No mass."


def test_switching_to_a_template_that_does_not_fit_is_refused(claimed, reader, ct_head, templates):
    report = draft(claimed, reader, ct_head)
    with pytest.raises(DomainError, match="'MRI brain' does not fit this study") as refused:
        report_save_draft(
            study_id=claimed.pk, radiologist=reader, template_id=templates["mr-brain"].pk
        )
    assert refused.value.code == "template_unfit"
    kept = Report.objects.get(pk=report.pk)
    assert kept.template == ct_head and kept.version == report.version
