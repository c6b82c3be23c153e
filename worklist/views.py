"""The radiologist's pages: worklist (live), my cases, a study, and the claim buttons.

Thin: each view reads through a selector or acts through a service; htmx asks for
the worklist rows every few seconds and posts the claim buttons.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect
from rest_framework.exceptions import NotFound

from access.selectors import patient_other_studies_visible, study_get_visible
from alerts.models import Alert
from alerts.selectors import alert_latest_to
from audit.models import AuditEvent
from audit.services import audit_record, audit_record_many
from network.models import Radiologist
from network.selectors import radiologist_for_user, reader_presence, user_roles
from network.services import reader_pause, reader_resume
from routing.selectors import decisions_for_study, study_routing
from studies.models import Study
from studies.selectors import study_order
from teleradiology.api import client_ip, request_actor
from teleradiology.errors import DomainError
from worklist import selectors
from worklist.services import claims as services
from worklist.services.claims import claim_by_id_refused


def _reader_or_none(request: HttpRequest) -> Radiologist | None:
    return radiologist_for_user(user=request.user)


@login_required
def home(request: HttpRequest) -> HttpResponseBase:
    """Readers land on their worklist, group admins on operations, facility staff on
    their turnaround portal; others on the tools they have."""
    if _reader_or_none(request) is not None:
        return redirect("worklist-page")
    if request.user.is_superuser:
        return redirect("/admin/")
    roles = user_roles(user=request.user)
    if "group_admin" in roles:
        return redirect("operations-page")
    if "facility_staff" in roles:
        return redirect("portal-page")
    return redirect("/admin/" if request.user.is_staff else "/api/docs/")


def _rows(request: HttpRequest, reader: Radiologist) -> list[Study]:
    rows = list(selectors.worklist_for_reader(radiologist=reader)[:100])
    audit_record_many(
        actor=request.user,
        action=AuditEvent.Action.LIST,
        object_type="studies.study",
        items=[(str(s.pk), s.patient_id) for s in rows],
        ip_address=client_ip(request),
        detail={"view": "worklist page"},
    )
    return rows


# The lengths offered for a pause (minutes), up to the group's max_pause_minutes.
PAUSE_CHOICES = (5, 10, 15, 30, 45, 60, 90, 120, 180, 240, 480, 720, 1440)
PAUSE_DEFAULT = 15


def _availability_context(reader: Radiologist, *, error: str = "") -> dict[str, Any]:
    """What worklist/_availability.html shows: presence now, the pause lengths."""
    limit = reader.reading_group.max_pause_minutes
    choices = sorted({m for m in PAUSE_CHOICES if m <= limit} | {limit})
    return {
        "reader": reader,
        "presence": reader_presence(radiologist=reader, at=timezone.now()),
        "pause_choices": choices,
        "pause_default": PAUSE_DEFAULT if PAUSE_DEFAULT in choices else choices[0],
        "max_pause_minutes": limit,
        "error": error,
    }


@login_required
def worklist_page(request: HttpRequest) -> HttpResponse:
    reader = _reader_or_none(request)
    if reader is None:
        return render(request, "worklist/not_a_reader.html", status=403)
    return render(
        request,
        "worklist/worklist.html",
        {"rows": _rows(request, reader), **_availability_context(reader)},
    )


@login_required
def worklist_availability(request: HttpRequest) -> HttpResponse:
    """The reader's presence and pause control, polled by htmx."""
    reader = _reader_or_none(request)
    if reader is None:
        return HttpResponse(status=403)
    return render(request, "worklist/_availability.html", _availability_context(reader))


def _availability_answer(
    request: HttpRequest, reader: Radiologist, *, error: str = "", done: str = ""
) -> HttpResponse:
    """htmx: the control again (with the refusal, if any); a plain form post: back to
    the worklist with a message."""
    if request.htmx:  # type: ignore[attr-defined]
        return render(
            request, "worklist/_availability.html", _availability_context(reader, error=error)
        )
    if error:
        messages.error(request, error)
    elif done:
        messages.info(request, done)
    return redirect("worklist-page")


@login_required
@require_POST
def pause(request: HttpRequest) -> HttpResponse:
    """Pause myself (network.services.reader_pause): offers held, claims refused, until
    the pause ends by itself or I resume."""
    reader = _reader_or_none(request)
    if reader is None:
        return HttpResponse("Only readers pause.", status=403)
    try:
        minutes = int(request.POST.get("minutes", ""))
    except ValueError:
        return _availability_answer(request, reader, error="Choose how long to pause.")
    try:
        reader = reader_pause(
            radiologist=reader,
            actor=request_actor(request),
            reason=request.POST.get("reason", ""),
            minutes=minutes,
            ip_address=client_ip(request),
        )
    except ValidationError as refusal:
        return _availability_answer(request, reader, error=" ".join(refusal.messages))
    return _availability_answer(request, reader, done="Paused.")


@login_required
@require_POST
def resume(request: HttpRequest) -> HttpResponse:
    """End my pause now (network.services.reader_resume)."""
    reader = _reader_or_none(request)
    if reader is None:
        return HttpResponse("Only readers pause.", status=403)
    reader = reader_resume(
        radiologist=reader, actor=request_actor(request), ip_address=client_ip(request)
    )
    return _availability_answer(request, reader, done="Resumed: new studies are offered to you.")


@login_required
def worklist_rows(request: HttpRequest) -> HttpResponse:
    """The table body, polled by htmx every few seconds."""
    reader = _reader_or_none(request)
    if reader is None:
        return HttpResponse(status=403)
    return render(request, "worklist/_rows.html", {"rows": _rows(request, reader)})


def _refused(request: HttpRequest, reader: Radiologist, message: str) -> HttpResponse:
    response = render(
        request,
        "worklist/_rows.html",
        {
            "rows": _rows(request, reader),
            "message": message,
        },
    )
    response["HX-Retarget"] = "#worklist-body"
    return response


@login_required
@require_POST
def claim(request: HttpRequest, study_id: int) -> HttpResponseBase:
    reader = _reader_or_none(request)
    if reader is None:
        return HttpResponse("Only radiologists claim studies.", status=403)
    try:
        study_get_visible(user=request.user, study_id=study_id)
        services.study_claim(
            study_id=study_id,
            radiologist=reader,
            actor=request_actor(request),
            ip_address=client_ip(request),
        )
    except DomainError as refusal:
        return _refused(request, reader, refusal.message)
    except NotFound:  # it left my worklist (offer withdrawn) meanwhile
        return _refused(request, reader, "That study is no longer on your worklist.")
    return HttpResponseClientRedirect(reverse("study-page", args=[study_id]))


@login_required
@require_POST
def next_case(request: HttpRequest) -> HttpResponseBase:
    reader = _reader_or_none(request)
    if reader is None:
        return HttpResponse("Only radiologists claim studies.", status=403)
    try:
        study = services.study_claim_next(
            radiologist=reader, actor=request_actor(request), ip_address=client_ip(request)
        )
    except DomainError as refusal:
        return _refused(request, reader, refusal.message)
    if study is None:
        return _refused(request, reader, "Nothing on your worklist to claim.")
    return HttpResponseClientRedirect(reverse("study-page", args=[study.pk]))


@login_required
@require_POST
def release(request: HttpRequest, study_id: int) -> HttpResponseBase:
    reader = _reader_or_none(request)
    reason = request.POST.get("reason", "").strip()
    if reader is None:
        return HttpResponse(status=403)
    try:
        study_get_visible(user=request.user, study_id=study_id)
    except NotFound as missing:  # the API's 404, as a page's
        raise Http404("No such study.") from missing
    try:
        services.study_release(
            study_id=study_id,
            radiologist=reader,
            reason=reason,
            actor=request_actor(request),
            ip_address=client_ip(request),
        )
    except DomainError as refusal:
        messages.error(request, refusal.message)
        return redirect("study-page", study_id=study_id)
    messages.info(request, "Released: the study is back on the worklist.")
    return redirect("worklist-page")


@login_required
def my_cases_page(request: HttpRequest) -> HttpResponse:
    reader = _reader_or_none(request)
    if reader is None:
        return render(request, "worklist/not_a_reader.html", status=403)
    cases = list(selectors.cases_for_reader(radiologist=reader))
    audit_record_many(
        actor=request.user,
        action=AuditEvent.Action.LIST,
        object_type="studies.study",
        items=[(str(s.pk), s.patient_id) for s in cases],
        ip_address=client_ip(request),
        detail={"view": "my cases page"},
    )
    return render(request, "worklist/my_cases.html", {"cases": cases})


# The newest of a patient's other studies listed on a study page.
OTHER_STUDIES_SHOWN = 25


@login_required
def study_page(request: HttpRequest, study_id: int) -> HttpResponse:
    try:
        study = study_get_visible(user=request.user, study_id=study_id)
    except NotFound as missing:  # the API's 404, as a page's
        raise Http404("No such study.") from missing
    audit_record(
        actor=request.user,
        action=AuditEvent.Action.READ,
        obj=study,
        patient_id=study.patient_id,
        ip_address=client_ip(request),
    )
    reader = _reader_or_none(request)
    is_holder = reader is not None and study.assigned_radiologist_id == reader.pk
    routing = study_routing(study=study)
    # The patient's other studies the user may open (their patient data is shown:
    # audited as a list, like the worklist).
    others = list(
        patient_other_studies_visible(user=request.user, study=study)[:OTHER_STUDIES_SHOWN]
    )
    audit_record_many(
        actor=request.user,
        action=AuditEvent.Action.LIST,
        object_type="studies.study",
        items=[(str(s.pk), s.patient_id) for s in others],
        ip_address=client_ip(request),
        detail={"view": "study page: the patient's other studies", "study": study.pk},
    )
    return render(
        request,
        "worklist/study.html",
        {
            "study": study,
            "order": study_order(study_id=study.pk),
            "other_studies": others,
            "other_studies_shown": OTHER_STUDIES_SHOWN,
            "series": list(selectors.series_for_study_page(study_id=study.pk)),
            "routing": routing,
            "decisions": decisions_for_study(study=study),
            "is_holder": is_holder,
            # Late images since the holder claimed it (their LATE_IMAGES alert).
            "late_images": alert_latest_to(
                user_id=reader.user_id,
                kind=Alert.Kind.LATE_IMAGES,
                study_id=study.pk,
                since=study.claimed_at,
            )
            if reader is not None and is_holder
            else None,
            "can_claim": reader is not None and study.status == "offered",
            # Taken by "next case" only: no claim button here either.
            "next_case_only": claim_by_id_refused(routing.rule if routing else None),
        },
    )
