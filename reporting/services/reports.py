"""A study's report: drafts (autosave), signatures (preliminary or final) and addenda.

Every service locks the study row first, then the report row (the same order
everywhere, so two writers cannot deadlock), checks that the caller holds the
claim, writes, keeps a version, and audits in the same transaction.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit_record
from network.models import Radiologist
from reporting import editor, states
from reporting import templates_schema as ts
from reporting.models import Addendum, CriticalSeverity, Report, ReportTemplate, ReportVersion
from reporting.selectors import sign_scope, template_fit_refusal
from reporting.services._messages import _report_messages_create
from reporting.states import ReportStatus
from routing.services import study_reroute
from studies.models import Study
from studies.selectors import study_order
from studies.services import study_claim_activity_record, study_transition
from studies.states import StudyStatus
from teleradiology.errors import DomainError, InvalidTransition, NotPermitted
from teleradiology.queue import enqueue
from worklist.services.offers import offers_withdraw


def _invalid(errors: list[str], *, code: str = "invalid_report") -> DomainError:
    return DomainError(" ".join(errors), code=code)


def _lock_study(study_id: int) -> Study:
    return (
        Study.objects.select_for_update(of=("self",))
        .select_related("facility__reading_group", "patient_jurisdiction")
        .get(pk=study_id)
    )


def _check_claim(study: Study, radiologist: Radiologist) -> None:
    if study.assigned_radiologist_id != radiologist.pk:
        raise NotPermitted(
            "Only the radiologist holding the claim on this study may write its report.",
            code="not_claimer",
        )
    if study.status == StudyStatus.FINAL:
        raise InvalidTransition(
            "The report is final and locked; add an addendum instead.", code="report_locked"
        )
    if study.status not in (StudyStatus.CLAIMED, StudyStatus.PRELIMINARY):
        raise InvalidTransition(
            f"The study is {study.status}; its report cannot be changed.", code="study_not_claimed"
        )


def _usable_template(template_id: int, study: Study) -> ReportTemplate:
    """An active template of the shared library or of the study's reading group that
    fits the study (its modality, body part and procedure), unless an admin allowed
    it on any study."""
    template = ReportTemplate.objects.filter(pk=template_id, is_active=True).first()
    if template is None or template.reading_group_id not in (
        None,
        study.facility.reading_group_id,
    ):
        raise DomainError("No such active template.", code="invalid_report")
    refusal = template_fit_refusal(template=template, study=study)
    if refusal is not None:
        raise DomainError(refusal, code="template_unfit")
    return template


def _with_order_indication(
    schema: dict[str, Any], values: dict[str, Any], study: Study
) -> dict[str, Any]:
    """``values`` with the template's indication field, if empty, filled from the
    study's order (reporting.editor.INDICATION_KEYS states the rule)."""
    order = study_order(study_id=study.pk)
    if order is None:
        return values
    text = editor.indication_text(
        reason_for_exam=order.reason_for_exam, clinical_history=order.clinical_history
    )
    return editor.indication_prefill(schema, values, text)


def _keep_version(report: Report, *, by: Radiologist, at: dt.datetime) -> ReportVersion:
    return ReportVersion.objects.create(
        report=report,
        number=report.version,
        template_id=report.template_id,
        status=report.status,
        values=report.values,
        impression=report.impression,
        critical_severity=report.critical_severity,
        saved_by=by,
        saved_at=at,
    )


def report_save_draft(
    *,
    study_id: int,
    radiologist: Radiologist,
    actor: User | None = None,
    template_id: int | None = None,
    values: dict[str, Any] | None = None,
    impression: str | None = None,
    critical_severity: str | None = None,
    ip_address: str | None = None,
) -> Report:
    """Create or update the report of a claimed study (autosave); every save is a version.

    Only the reader holding the claim writes, and only while the report is not final.
    The save counts as claim activity, so the stale-claim sweep leaves the claim alone.
    """
    now = timezone.now()
    if critical_severity is not None and critical_severity not in CriticalSeverity.values:
        raise DomainError(
            f"'critical_severity' must be one of {', '.join(CriticalSeverity.values)}.",
            code="invalid_report",
        )
    with transaction.atomic():
        study = _lock_study(study_id)
        _check_claim(study, radiologist)
        report = Report.objects.select_for_update().filter(study=study).first()
        creating = report is None
        if report is None:
            if template_id is None:
                raise DomainError("Choose a template for the new report.", code="invalid_report")
            template = _usable_template(template_id, study)
            report = Report(
                study=study,
                template=template,
                author=radiologist,
                values=ts.defaults(template.schema),
            )
        else:
            refusal = states.edit_refusal(report.status)
            if refusal is not None:
                raise InvalidTransition(refusal, code="report_locked")
            if template_id is not None and template_id != report.template_id:
                if report.status != ReportStatus.DRAFT:
                    raise InvalidTransition(
                        "A signed preliminary report keeps its template.", code="report_locked"
                    )
                report.template = _usable_template(template_id, study)
                if values is None:
                    # Another template's fields: start again from its normal text.
                    report.values = _with_order_indication(
                        report.template.schema, ts.defaults(report.template.schema), study
                    )
            report.version += 1
        if values is not None:
            # A new report starts from the template's normal text; later saves send
            # the whole state (autosave), so they replace it.
            report.values = {**report.values, **values} if creating else values
        if creating:
            report.values = _with_order_indication(report.template.schema, report.values, study)
        if impression is not None:
            report.impression = impression
        if critical_severity is not None:
            if critical_severity != report.critical_severity or creating:
                # The overdue-communication clock starts when the finding becomes critical.
                report.critical_marked_at = (
                    now if critical_severity == CriticalSeverity.CRITICAL else None
                )
            report.critical_severity = critical_severity
        errors = ts.validate_values(report.template.schema, report.values)
        if errors:
            raise _invalid(errors)
        report.save()
        _keep_version(report, by=radiologist, at=now)
        study_claim_activity_record(study_id=study.pk, at=now)
        audit_record(
            actor=actor,
            action=AuditEvent.Action.CREATE if creating else AuditEvent.Action.UPDATE,
            obj=report,
            patient_id=study.patient_id,
            ip_address=ip_address,
            detail={"study": study.pk, "version": report.version, "status": report.status},
        )
    return report


def report_sign(
    *,
    report_id: int,
    radiologist: Radiologist,
    status: str,
    actor: User | None = None,
    ip_address: str | None = None,
) -> Report:
    """Sign a report preliminary or final and store its result messages (sent to the
    facility after commit); final locks it, moves the study to final and withdraws
    every open offer of the study.

    Refused unless the signer holds the claim, required fields and the impression are
    filled, a critical finding has a read-back-confirmed communication record, and the
    signer's license allows this kind of read in the patient's jurisdiction today.
    """
    if status not in (ReportStatus.PRELIMINARY, ReportStatus.FINAL):
        raise DomainError("Sign as 'preliminary' or 'final'.", code="invalid_status")
    now = timezone.now()
    with transaction.atomic():
        study_id = Report.objects.values_list("study_id", flat=True).get(pk=report_id)
        study = _lock_study(study_id)
        report = Report.objects.select_for_update().select_related("template").get(pk=report_id)
        _check_claim(study, radiologist)
        refusal = states.transition_refusal(report.status, status)
        if refusal is not None:
            raise InvalidTransition(refusal, code="invalid_transition")
        errors = ts.validate_values(
            report.template.schema, report.values, impression=report.impression, for_sign=True
        )
        if errors:
            raise _invalid(errors, code="incomplete_report")
        if (
            report.critical_severity == CriticalSeverity.CRITICAL
            and not report.critical_communications.filter(read_back_confirmed=True).exists()
        ):
            raise DomainError(
                "A critical finding must be communicated (with read-back confirmed) "
                "and recorded before the report is signed.",
                code="critical_not_communicated",
            )
        scope, reasons = sign_scope(study=study, radiologist=radiologist, now=now)
        if not scope:
            raise NotPermitted(f"You cannot sign this report: {'; '.join(reasons)}.", code="scope")
        if status == ReportStatus.FINAL and scope != "final":
            raise NotPermitted(
                "Your license in the patient's jurisdiction allows preliminary reads only; "
                "sign as preliminary.",
                code="preliminary_only",
            )
        report.status = status
        if status == ReportStatus.FINAL:
            report.signed_at, report.signed_by = now, radiologist
        else:
            report.preliminary_signed_at, report.preliminary_signed_by = now, radiologist
        report.version += 1
        report.save()
        version = _keep_version(report, by=radiologist, at=now)
        # Preliminary reads are results too: the facility gets them (P / preliminary),
        # then the final (F / final) replaces them.
        _report_messages_create(report=report, study=study, version=version, now=now)
        if status == ReportStatus.FINAL:
            # The peer review sample draws once per final (review/), after commit; if
            # the broker loses it, review's sweep draws for the final within the day.
            enqueue("review.peer_review_consider", report.pk)
        target = StudyStatus.FINAL if status == ReportStatus.FINAL else StudyStatus.PRELIMINARY
        if study.status != target:
            study_transition(
                study_id=study.pk,
                to_status=target,
                actor=actor,
                at=now,
                locked=study,
                ip_address=ip_address,
                reason=f"report signed {status} by {radiologist.display_name}",
            )
        handed_over = status == ReportStatus.PRELIMINARY and scope != "final"
        if handed_over:
            _final_read_route(study, radiologist, actor=actor, now=now, ip_address=ip_address)
        withdrawn = 0
        if status == ReportStatus.FINAL:
            # A final study is history: nothing of it may linger on any worklist.
            withdrawn = offers_withdraw(study_id=study.pk, at=now, reason="study reported final")
        audit_record(
            actor=actor,
            action=AuditEvent.Action.TRANSITION,
            obj=report,
            patient_id=study.patient_id,
            ip_address=ip_address,
            detail={
                "study": study.pk,
                "to": status,
                "version": report.version,
                "offers_withdrawn": withdrawn,
                "final_read_routed": handed_over,
            },
        )
    return report


def _final_read_route(
    study: Study,
    radiologist: Radiologist,
    *,
    actor: User | None,
    now: dt.datetime,
    ip_address: str | None,
) -> None:
    """A preliminary read signed on a preliminary-only license: the reader's claim
    ends and the study is routed afresh, in the same transaction, for the final
    read, which only a reader licensed for final reads in the patient's
    jurisdiction may claim (routing's facts say so once the study has a
    preliminary).  The report stays preliminary for the final reader to revise."""
    study_transition(
        study_id=study.pk,
        locked=study,
        to_status=StudyStatus.OFFERED,
        actor=actor,
        at=now,
        assigned_radiologist=None,
        claim_activity_at=None,
        ip_address=ip_address,
        reason=(
            f"preliminary read by {radiologist.display_name} (preliminary-only license): "
            "the final read is routed to a reader licensed for final reads"
        ),
    )
    study_reroute(
        study_id=study.pk,
        reason="the final read needs a reader licensed for final reads",
        now=now,
    )


def report_save_and_sign(
    *,
    study_id: int,
    radiologist: Radiologist,
    status: str,
    values: dict[str, Any] | None = None,
    impression: str | None = None,
    critical_severity: str | None = None,
    actor: User | None = None,
    ip_address: str | None = None,
) -> Report:
    """Save the editor's last state as a version, then sign it (the editor's sign button).

    Two transactions on purpose: a refused signature (a required field, an
    uncommunicated critical finding) must not lose the words just typed.
    """
    report = report_save_draft(
        study_id=study_id,
        radiologist=radiologist,
        actor=actor,
        values=values,
        impression=impression,
        critical_severity=critical_severity,
        ip_address=ip_address,
    )
    return report_sign(
        report_id=report.pk,
        radiologist=radiologist,
        status=status,
        actor=actor,
        ip_address=ip_address,
    )


def report_addendum_add(
    *,
    report_id: int,
    radiologist: Radiologist,
    text: str,
    actor: User | None = None,
    ip_address: str | None = None,
) -> Addendum:
    """Append a signed addendum to a final report; the final's own text never changes."""
    if not text.strip():
        raise DomainError("An addendum needs text.", code="invalid_addendum")
    now = timezone.now()
    with transaction.atomic():
        report = Report.objects.select_for_update().select_related("study").get(pk=report_id)
        if report.status != ReportStatus.FINAL:
            raise InvalidTransition(
                "Addenda are for final reports; edit the draft instead.", code="not_final"
            )
        if radiologist.pk not in (report.signed_by_id, report.study.assigned_radiologist_id):
            raise NotPermitted(
                "Only the radiologist who signed the report may add an addendum.",
                code="not_signer",
            )
        number = (report.addenda.aggregate(n=Max("number"))["n"] or 0) + 1
        addendum = Addendum.objects.create(
            report=report, number=number, text=text.strip(), signed_by=radiologist, signed_at=now
        )
        final = report.versions.filter(status=ReportStatus.FINAL).order_by("-number").first()
        if final is not None:
            _report_messages_create(
                report=report, study=report.study, version=final, addendum=addendum, now=now
            )
        audit_record(
            actor=actor,
            action=AuditEvent.Action.CREATE,
            obj=addendum,
            patient_id=report.study.patient_id,
            ip_address=ip_address,
            detail={"report": report.pk, "number": number},
        )
    return addendum
