"""Who may read which report and template, and whether a reader may sign: the one place
report access is decided.

- superuser: every report;
- group admin: reports of the studies of the facilities their groups serve;
- radiologist: reports of studies they hold, and reports they wrote or signed;
- facility staff: FINAL reports of their own facilities' studies only;
- anyone else: nothing (the API answers 404, so existence does not leak).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Case, Exists, OuterRef, Prefetch, Q, QuerySet, Value, When
from rest_framework.exceptions import NotFound

from alerts.models import Alert
from network.models import Radiologist
from network.selectors import (
    AnyUser,
    facilities_staffed,
    radiologist_for_user,
    reading_groups_administered,
)
from reporting import editor, pdf
from reporting.models import (
    Addendum,
    CriticalCommunication,
    CriticalSeverity,
    DeliveryAttempt,
    FacilityEndpoint,
    Macro,
    Report,
    ReportMessage,
    ReportTemplate,
)
from reporting.states import ReportStatus
from routing.eligibility import REASON_TEXT, SIGN, Reason, StudyFacts
from routing.selectors import reader_facts, study_facts, study_rule
from studies.models import Study


def report_visibility_filter(*, user: AnyUser) -> Q | None:
    """A filter for the reports ``user`` may read; None means all of them."""
    if not user.is_authenticated or not user.is_active:
        return Q(pk__in=[])
    if getattr(user, "is_superuser", False):
        return None
    reach = Q(study__facility__reading_group__in=reading_groups_administered(user=user)) | Q(
        status=ReportStatus.FINAL, study__facility__in=facilities_staffed(user=user).values("pk")
    )
    reader = radiologist_for_user(user=user)
    if reader is not None:
        reach |= (
            Q(study__assigned_radiologist=reader)
            | Q(author=reader)
            | Q(signed_by=reader)
            | Q(preliminary_signed_by=reader)
        )
    return reach


def report_list_visible(*, user: AnyUser) -> QuerySet[Report]:
    """Reports ``user`` may read, with what the serializer needs joined in."""
    qs = Report.objects.select_related(
        "study", "template", "author", "signed_by", "preliminary_signed_by"
    )
    reach = report_visibility_filter(user=user)
    return qs if reach is None else qs.filter(reach)


def report_get_visible(*, user: AnyUser, report_id: int) -> Report:
    """One report if ``user`` may read it; otherwise 404."""
    report = report_list_visible(user=user).filter(pk=report_id).first()
    if report is None:
        raise NotFound("No such report.")
    return report


def report_get_for_study(*, user: AnyUser, study_id: int) -> Report:
    """The report of a study if it exists and ``user`` may read it; otherwise 404."""
    report = report_list_visible(user=user).filter(study_id=study_id).first()
    if report is None:
        raise NotFound("No report for this study.")
    return report


def report_find_for_study(*, user: AnyUser, study_id: int) -> Report | None:
    """The report of a study if it exists and ``user`` may read it; otherwise None."""
    return report_list_visible(user=user).filter(study_id=study_id).first()


def report_addenda(*, report: Report) -> QuerySet[Addendum]:
    """A readable report's addenda, oldest first."""
    return report.addenda.select_related("signed_by").order_by("number")


def report_communications(*, report: Report) -> QuerySet[CriticalCommunication]:
    """A readable report's critical-result communications, in the order they happened."""
    return report.critical_communications.select_related("recorded_by").order_by(
        "communicated_at", "id"
    )


def report_message_latest(*, report: Report, kind: str) -> ReportMessage:
    """The newest result message of ``kind`` of a readable report (the last addendum's,
    else the final's, else the preliminary's); 404 before the report is signed."""
    message = report.messages.filter(kind=kind).order_by("-created_at", "-id").first()
    if message is None:
        raise NotFound("No result message yet: the report is not signed.")
    return message


def report_messages_with_attempts(*, report: Report) -> QuerySet[ReportMessage]:
    """A readable report's result messages, oldest first, each with its delivery
    attempts (two statements whatever their number)."""
    return (
        report.messages.order_by("created_at", "id")
        .defer("payload")
        .prefetch_related(
            Prefetch("delivery_attempts", queryset=DeliveryAttempt.objects.order_by("number"))
        )
    )


# --- Delivery status for the facility portal ------------------------------------------
@dataclass(frozen=True)
class ResultDelivery:
    """Where one result message to the facility's endpoint stands, for people."""

    message_id: int
    result_status: str  # ReportMessage.ResultStatus
    result_label: str
    state: str  # "pending" | "delivered" | "failed"
    ack_code: str
    reason: str  # why it failed, or why it is still pending
    at: dt.datetime | None  # delivered at, or the last answer's time


@dataclass(frozen=True)
class StudyDelivery:
    """A study's report as the portal shows it: links the user may follow and each
    result message's delivery to the facility (none: no endpoint configured)."""

    report_id: int
    report_status: str
    report_readable: bool
    pdf_available: bool
    endpoint: str  # "" when the facility has no active endpoint
    deliveries: tuple[ResultDelivery, ...]

    @property
    def configured(self) -> bool:
        return bool(self.endpoint) or bool(self.deliveries)


_STATE = {
    ReportMessage.Delivery.PENDING: "pending",
    ReportMessage.Delivery.SENT: "delivered",
    ReportMessage.Delivery.FAILED: "failed",
}


def study_deliveries(*, user: AnyUser, study_ids: list[int]) -> dict[int, StudyDelivery]:
    """For each of these studies (already scoped by the caller) that has a report: the
    report's links ``user`` may follow (report: whoever may read it, so facility staff
    a final only; PDF: a readable final) and the delivery of each result message the
    facility's endpoint takes, oldest first.  Three statements whatever the number of
    studies, so a page of rows costs the same as one."""
    if not study_ids:
        return {}
    reach = report_visibility_filter(user=user)
    readable = Value(True) if reach is None else Case(When(reach, then=Value(True)), default=False)
    delivered = ReportMessage.objects.exclude(
        delivery_status=ReportMessage.Delivery.STORED
    ).order_by("created_at", "id")
    reports = list(
        Report.objects.filter(study_id__in=study_ids)
        .exclude(status=ReportStatus.DRAFT)
        .annotate(readable=readable)
        .select_related("study")
        .only("id", "status", "study_id", "study__facility_id")
        .prefetch_related(
            Prefetch(
                "messages",
                queryset=delivered.only(
                    "id",
                    "report_id",
                    "result_status",
                    "delivery_status",
                    "ack_code",
                    "ack_text",
                    "http_status",
                    "ack_at",
                    "sent_at",
                    "last_error",
                    "created_at",
                ),
                to_attr="delivered_messages",
            )
        )
    )
    endpoints = {
        e.facility_id: str(e)
        for e in FacilityEndpoint.objects.filter(
            facility_id__in={r.study.facility_id for r in reports}, active=True
        )
    }
    labels = dict(ReportMessage.ResultStatus.choices)
    found = {}
    for report in reports:
        readable_report = bool(getattr(report, "readable", False))
        rows = tuple(
            ResultDelivery(
                message_id=m.pk,
                result_status=m.result_status,
                result_label=str(labels.get(m.result_status, m.result_status)),
                state=_STATE.get(m.delivery_status, m.delivery_status),
                ack_code=m.ack_code or (f"HTTP {m.http_status}" if m.http_status else ""),
                reason=(m.ack_text or m.last_error).splitlines()[0][:300]
                if m.delivery_status != ReportMessage.Delivery.SENT and (m.ack_text or m.last_error)
                else "",
                at=m.sent_at or m.ack_at,
            )
            for m in getattr(report, "delivered_messages", [])
        )
        found[report.study_id] = StudyDelivery(
            report_id=report.pk,
            report_status=report.status,
            report_readable=readable_report,
            pdf_available=readable_report and report.status == ReportStatus.FINAL,
            endpoint=endpoints.get(report.study.facility_id, ""),
            deliveries=rows,
        )
    return found


def reports_critical_overdue(*, now: dt.datetime, minutes: int) -> QuerySet[Report]:
    """Reports whose finding has been critical for ``minutes`` or more with no
    read-back-confirmed communication record and no overdue alert yet, oldest first."""
    communicated = CriticalCommunication.objects.filter(
        report_id=OuterRef("pk"), read_back_confirmed=True
    )
    # The alert's unique dedupe key is the guarantee; this keeps every sweep from
    # re-trying the insert for reports already told of.
    told = Alert.objects.filter(
        study_id=OuterRef("study_id"), kind=Alert.Kind.CRITICAL_UNCOMMUNICATED
    )
    return (
        Report.objects.filter(
            critical_severity=CriticalSeverity.CRITICAL,
            critical_marked_at__lte=now - dt.timedelta(minutes=minutes),
        )
        .filter(~Exists(communicated), ~Exists(told))
        .select_related("study__facility__reading_group", "author__user")
        .order_by("critical_marked_at", "pk")
    )


def report_critical_due_at(*, report: Report) -> dt.datetime | None:
    """When an uncommunicated critical finding of ``report`` alerts the admins (None: no clock)."""
    if report.critical_marked_at is None:
        return None
    return report.critical_marked_at + dt.timedelta(
        minutes=settings.CRITICAL_RESULT_COMMUNICATION_MINUTES
    )


def template_list_visible(*, user: AnyUser) -> QuerySet[ReportTemplate]:
    """Templates for readers and admins: the shared library and their own groups'."""
    if not user.is_authenticated or not user.is_active:
        return ReportTemplate.objects.none()
    if getattr(user, "is_superuser", False):
        return ReportTemplate.objects.all()
    groups = reading_groups_administered(user=user).values("pk")
    reader = radiologist_for_user(user=user)
    reach = Q(reading_group__in=groups)
    if reader is not None:
        reach |= Q(reading_group=reader.reading_group_id)
    elif not reading_groups_administered(user=user).exists():
        return ReportTemplate.objects.none()
    return ReportTemplate.objects.filter(reach | Q(reading_group__isnull=True))


def template_get_visible(*, user: AnyUser, template_id: int) -> ReportTemplate:
    """One template if ``user`` may see it; otherwise 404."""
    template = template_list_visible(user=user).filter(pk=template_id).first()
    if template is None:
        raise NotFound("No such template.")
    return template


def _template_misfits(template: ReportTemplate, study: Study) -> list[str]:
    """What of ``template``'s scope ``study`` lies outside (empty: it fits).  A study
    of unknown modality is not held against a template; an unknown body part is."""
    misfits = []
    if template.modality and study.modality and template.modality.upper() != study.modality.upper():
        misfits.append(f"modality {template.modality}")
    if template.body_parts and study.body_part.upper() not in template.body_parts:
        misfits.append(f"body part {' or '.join(template.body_parts)}")
    if template.procedure_codes and study.procedure_code not in template.procedure_codes:
        misfits.append(f"procedure {' or '.join(template.procedure_codes)}")
    return misfits


def template_fit_refusal(*, template: ReportTemplate, study: Study) -> str | None:
    """Why ``template`` may not be used for ``study``'s report, or None when it fits
    (its modality, body parts and procedure codes) or an admin allowed it on any study.

    The one definition of "fits": the editor's list and the reporting service's
    refusal both ask it.
    """
    if template.allow_any_study:
        return None
    misfits = _template_misfits(template, study)
    if not misfits:
        return None
    examined = " ".join(p for p in (study.modality, study.body_part) if p) or "unspecified"
    return (
        f"The template '{template.name}' does not fit this study: it is for "
        f"{', '.join(misfits)}; this study is {examined}"
        f"{f' (procedure {study.procedure_code})' if study.procedure_code else ''}. "
        "Choose a template for this study's modality and body part."
    )


def template_matches(*, study: Study) -> QuerySet[ReportTemplate]:
    """Active templates that fit a study (modality, body part, procedure), best first;
    templates an admin allowed on any study come after those that fit by their scope."""
    qs = ReportTemplate.objects.filter(is_active=True).filter(
        Q(reading_group__isnull=True) | Q(reading_group=study.facility.reading_group_id)
    )
    if study.modality:
        qs = qs.filter(
            Q(modality="") | Q(modality__iexact=study.modality) | Q(allow_any_study=True)
        )
    matches = [t for t in qs if template_fit_refusal(template=t, study=study) is None]
    # A procedure-code match is the most specific, then a body-part match; an
    # override is the least specific of all.
    matches.sort(
        key=lambda t: (
            bool(_template_misfits(t, study)),
            not t.procedure_codes,
            not t.body_parts,
            t.code,
        )
    )
    if not matches:
        return ReportTemplate.objects.none()
    rank = Case(*[When(pk=t.pk, then=Value(i)) for i, t in enumerate(matches)])
    return ReportTemplate.objects.filter(pk__in=[t.pk for t in matches]).order_by(rank)


def macro_list_for(*, radiologist: Radiologist) -> QuerySet[Macro]:
    """The radiologist's own macros (nobody else's)."""
    return Macro.objects.filter(radiologist=radiologist)


def template_export(*, template: ReportTemplate) -> dict[str, Any]:
    """A template as a portable JSON document (no ids, no group)."""
    return {
        "code": template.code,
        "name": template.name,
        "version": template.version,
        "modality": template.modality,
        "body_parts": list(template.body_parts),
        "procedure_codes": list(template.procedure_codes),
        "allow_any_study": template.allow_any_study,
        "schema": template.schema,
    }


def sign_scope(
    *, study: Study, radiologist: Radiologist, now: dt.datetime
) -> tuple[str, list[str]]:
    """What ``radiologist`` may sign on ``study`` at ``now``: (scope or "", reasons).

    The eligibility policy's SIGN purpose over the reader's own facts: an active
    reader, a license valid now (judged in the jurisdiction's time zone) with final scope
    (or preliminary scope where the study's routing rule allows it), and privileges
    at the facility -- the same checks routing and the claim re-check apply.
    """
    rule = study_rule(study=study)
    if rule is not None:
        facts = study_facts(study=study, rule=rule, now=now)
    else:  # no rule: the license alone decides the scope (final)
        facts = StudyFacts(
            study_id=study.pk,
            facility_id=study.facility_id,
            jurisdiction=study.patient_jurisdiction.code,
            priority=study.priority,
            read_at=now,
            subspecialties=frozenset(),
        )
    found = reader_facts(
        study=study, radiologist_id=radiologist.pk, rule_id=rule.pk if rule else None, at=now
    )
    if found is None:  # not a reader of the facility's group
        return "", [REASON_TEXT[Reason.NOT_LICENSED]]
    verdict = SIGN.judge(facts, found[0])
    if verdict.reasons:
        return "", [REASON_TEXT[r] for r in verdict.reasons]
    return verdict.scope, []


def _person(name: str) -> str:
    """A DICOM person name (FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX) as people write it."""
    family, given, middle, prefix, suffix = (name.split("^") + [""] * 5)[:5]
    first = " ".join(p for p in (prefix, given, middle) if p)
    return ", ".join(p for p in (family, first) if p) + (f" {suffix}" if suffix else "")


def report_pdf_facts(*, report: Report, now: dt.datetime, identified: bool = True) -> pdf.PdfFacts:
    """What the PDF of a readable final report prints; ``identified`` False withholds
    the patient's identity (a copy for someone who may read the report but not know
    whose it is)."""
    assert report.signed_by is not None and report.signed_at is not None  # noqa: S101 - final
    study = Study.objects.select_related("facility__reading_group").get(pk=report.study_id)
    patient = [
        ("Name", _person(study.patient_name) or "-"),
        ("Patient ID", study.patient_id),
        ("Born", study.patient_birth_date.isoformat() if study.patient_birth_date else "-"),
        ("Sex", study.get_patient_sex_display() or "-"),
    ]
    study_rows = [
        ("Examination", f"{study.modality} {study.body_part} {study.study_description}".strip()),
        ("Accession", study.accession_number or "-"),
        ("Procedure code", study.procedure_code or "-"),
        ("Referring physician", _person(study.referring_physician) or "-"),
        ("Received", study.received_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")),
    ]
    sections = [
        pdf.PdfSection(
            title=section.title,
            rows=[(f.label, f.display) for f in section.fields if f.display],
        )
        for section in editor.editor_sections(report.template.schema, report.values)
    ]
    preliminary = None
    if report.preliminary_signed_by is not None and report.preliminary_signed_at is not None:
        preliminary = (report.preliminary_signed_by.display_name, report.preliminary_signed_at)
    return pdf.PdfFacts(
        report_id=report.pk,
        reading_group=study.facility.reading_group.name,
        facility=study.facility.name,
        patient=patient if identified else None,
        study=study_rows,
        template=f"{report.template.name}, v{report.template.version}",
        sections=sections,
        impression=report.impression,
        severity=""
        if report.critical_severity == CriticalSeverity.NONE
        else report.get_critical_severity_display(),
        communications=[
            pdf.PdfCommunication(
                communicated_at=c.communicated_at,
                recipient=c.recipient_name,
                role=c.recipient_role,
                method=c.get_method_display(),
                read_back_confirmed=c.read_back_confirmed,
                recorded_by=c.recorded_by.display_name,
            )
            for c in report_communications(report=report)
        ],
        signed_by=report.signed_by.display_name,
        signed_at=report.signed_at,
        preliminary=preliminary,
        addenda=[
            pdf.PdfAddendum(
                number=a.number,
                text=a.text,
                signed_by=a.signed_by.display_name,
                signed_at=a.signed_at,
            )
            for a in report_addenda(report=report)
        ],
        generated_at=now,
    )
