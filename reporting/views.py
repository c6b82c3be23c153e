"""The report editor page next to the study, and the htmx endpoints behind it.

Thin, like the worklist pages: each view reads through a selector or acts through one
service (which checks the claim and audits).  A study outside the caller's reach is a
404; a write by anyone but the reader holding the claim is refused by the service
(403), as the API does.  Refusals come back as a sentence in the page.
"""

from __future__ import annotations

from typing import Any, TypedDict

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect
from rest_framework.exceptions import NotFound

from access.selectors import study_get_visible
from audit.models import AuditEvent
from audit.services import audit_record
from network.models import Radiologist
from network.selectors import radiologist_for_user
from reporting import editor, selectors, states
from reporting.models import CriticalCommunication, CriticalSeverity, Report
from reporting.services import critical, reports
from studies.models import Study
from studies.selectors import study_order
from studies.states import StudyStatus
from teleradiology.api import client_ip, request_actor
from teleradiology.errors import DomainError


def _study(request: HttpRequest, study_id: int) -> Study:
    try:
        return study_get_visible(user=request.user, study_id=study_id)
    except NotFound as missing:
        raise Http404("No such study.") from missing


def _report(request: HttpRequest, study_id: int) -> Report:
    report = selectors.report_find_for_study(user=request.user, study_id=study_id)
    if report is None:
        raise Http404("No report for this study.")
    return report


def _refusal(message: str, *, status: int, target: str | None = None) -> HttpResponse:
    response = HttpResponse(
        format_html('<p class="message error" role="alert">{}</p>', message), status=status
    )
    if target is not None:
        response["HX-Retarget"] = target
        response["HX-Reswap"] = "innerHTML"
    return response


def _not_a_reader() -> HttpResponse:
    return HttpResponse("Only radiologists write reports.", status=403)


def _back_to_editor(request: HttpRequest, study_id: int) -> HttpResponseBase:
    url = reverse("report-editor", args=[study_id])
    return HttpResponseClientRedirect(url) if request.headers.get("HX-Request") else redirect(url)


@login_required
def editor_page(request: HttpRequest, study_id: int) -> HttpResponse:
    """The study's facts beside its report: editable for the reader holding the claim,
    read-only (final, addenda, communications) for everyone else who may read it."""
    study = _study(request, study_id)
    audit_record(
        actor=request.user,
        action=AuditEvent.Action.READ,
        obj=study,
        patient_id=study.patient_id,
        ip_address=client_ip(request),
        detail={"view": "report editor"},
    )
    reader = radiologist_for_user(user=request.user)
    report = selectors.report_find_for_study(user=request.user, study_id=study.pk)
    if report is not None:
        audit_record(
            actor=request.user,
            action=AuditEvent.Action.READ,
            obj=report,
            patient_id=study.patient_id,
            ip_address=client_ip(request),
            detail={"view": "report editor"},
        )
    is_holder = reader is not None and study.assigned_radiologist_id == reader.pk
    study_open = study.status in (StudyStatus.CLAIMED, StudyStatus.PRELIMINARY)
    editable = is_holder and study_open and (report is None or report.status in states.EDITABLE)
    context: dict[str, Any] = {
        "study": study,
        # The order's reason and history beside the report (the indication field is
        # filled from them when the report starts: reporting.editor.INDICATION_KEYS).
        "order": study_order(study_id=study.pk),
        "report": report,
        "is_holder": is_holder,
        "editable": editable,
        "severities": CriticalSeverity.choices,
        "methods": CriticalCommunication.Method.choices,
        "now": timezone.now(),
    }
    if report is not None:
        context.update(
            sections=editor.editor_sections(report.template.schema, report.values),
            communications=selectors.report_communications(report=report),
            addenda=selectors.report_addenda(report=report),
            critical_due_at=selectors.report_critical_due_at(report=report),
            can_add_addendum=(
                reader is not None
                and report.status == states.ReportStatus.FINAL
                and reader.pk in (report.signed_by_id, study.assigned_radiologist_id)
            ),
        )
    elif editable:
        # Only templates that fit the study: the service refuses the others.
        context["templates"] = selectors.template_matches(study=study)
    if editable and reader is not None:
        context["macros"] = selectors.macro_list_for(radiologist=reader)
    return render(request, "reporting/editor.html", context)


def _writer(request: HttpRequest, study_id: int) -> Radiologist | HttpResponse:
    _study(request, study_id)  # 404 outside one's reach
    reader = radiologist_for_user(user=request.user)
    return _not_a_reader() if reader is None else reader


@login_required
@require_POST
def report_start(request: HttpRequest, study_id: int) -> HttpResponseBase:
    """Start the study's report from the chosen template (its normal text filled in)."""
    reader = _writer(request, study_id)
    if isinstance(reader, HttpResponse):
        return reader
    template = request.POST.get("template", "")
    try:
        reports.report_save_draft(
            study_id=study_id,
            radiologist=reader,
            actor=request_actor(request),
            template_id=int(template) if template.isdigit() else None,
            ip_address=client_ip(request),
        )
    except DomainError as refusal:
        return _refusal(refusal.message, status=refusal.status_code)
    return _back_to_editor(request, study_id)


class _FormState(TypedDict):
    values: dict[str, Any]
    impression: str
    critical_severity: str | None


def _form_state(request: HttpRequest, report: Report) -> _FormState:
    """What the editor form posted: every field (a save replaces the whole state)."""
    severity = request.POST.get("critical_severity")
    return {
        "values": editor.values_from_form(report.template.schema, request.POST.getlist),
        "impression": request.POST.get("impression", ""),
        "critical_severity": severity if severity else None,
    }


@login_required
@require_POST
def report_autosave(request: HttpRequest, study_id: int) -> HttpResponse:
    """Autosave: the whole form as the draft's next version; answers the saved state."""
    reader = _writer(request, study_id)
    if isinstance(reader, HttpResponse):
        return reader
    report = _report(request, study_id)
    try:
        saved = reports.report_save_draft(
            study_id=study_id,
            radiologist=reader,
            actor=request_actor(request),
            ip_address=client_ip(request),
            **_form_state(request, report),
        )
    except DomainError as refusal:
        return render(
            request,
            "reporting/_save_state.html",
            {"error": refusal.message},
            status=refusal.status_code,
        )
    return render(
        request,
        "reporting/_save_state.html",
        {
            "report": saved,
            "just_saved": True,
            "clock_oob": True,
            "critical_due_at": selectors.report_critical_due_at(report=saved),
        },
    )


@login_required
@require_POST
def report_sign(request: HttpRequest, study_id: int) -> HttpResponseBase:
    """Sign preliminary or final with what the form holds; a refusal is shown as said."""
    reader = _writer(request, study_id)
    if isinstance(reader, HttpResponse):
        return reader
    report = _report(request, study_id)
    try:
        reports.report_save_and_sign(
            study_id=study_id,
            radiologist=reader,
            status=request.POST.get("status", ""),
            actor=request_actor(request),
            ip_address=client_ip(request),
            **_form_state(request, report),
        )
    except DomainError as refusal:
        return _refusal(refusal.message, status=refusal.status_code, target="#sign-result")
    return _back_to_editor(request, study_id)


@login_required
@require_POST
def critical_communication_add(request: HttpRequest, study_id: int) -> HttpResponse:
    """The critical-result dialog: record who was told, how, when, and the read-back."""
    reader = _writer(request, study_id)
    if isinstance(reader, HttpResponse):
        return reader
    report = _report(request, study_id)
    try:  # parse_datetime raises ValueError on well-formed impossible dates
        when = parse_datetime(request.POST.get("communicated_at", "").strip())
    except ValueError:
        when = None
    if when is None or timezone.is_naive(when):
        return _refusal("Give the time of the communication.", status=400, target="#critical-error")
    try:
        critical.critical_communication_record(
            report_id=report.pk,
            radiologist=reader,
            recipient_name=request.POST.get("recipient_name", ""),
            recipient_role=request.POST.get("recipient_role", ""),
            method=request.POST.get("method", ""),
            communicated_at=when,
            read_back_confirmed=request.POST.get("read_back_confirmed") == "on",
            notes=request.POST.get("notes", ""),
            actor=request_actor(request),
            ip_address=client_ip(request),
        )
    except DomainError as refusal:
        return _refusal(refusal.message, status=refusal.status_code, target="#critical-error")
    return render(
        request,
        "reporting/_communications.html",
        {"communications": selectors.report_communications(report=report)},
    )


@login_required
@require_POST
def addendum_add(request: HttpRequest, study_id: int) -> HttpResponseBase:
    """Append a signed addendum to the final report."""
    reader = _writer(request, study_id)
    if isinstance(reader, HttpResponse):
        return reader
    report = _report(request, study_id)
    try:
        reports.report_addendum_add(
            report_id=report.pk,
            radiologist=reader,
            text=request.POST.get("text", ""),
            actor=request_actor(request),
            ip_address=client_ip(request),
        )
    except DomainError as refusal:
        return _refusal(refusal.message, status=refusal.status_code, target="#addendum-result")
    return _back_to_editor(request, study_id)
