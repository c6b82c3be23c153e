"""Pages: the group admins' live operations page and the facility portal.

Thin, as the worklist's: each view reads through a selector or acts through one
service; htmx polls the operations panel every few seconds and swaps the portal's
charts and table when a filter changes.

The operations page acts: reassign, re-route or raise the priority of a study,
acknowledge an alert, pause or resume a reader.  Each action is a POST (htmx sends the
CSRF token from the page's ``hx-headers``) answered with a message for ``#messages``
and the ``operations-changed`` event, on which every panel of the page refreshes at
once; other open pages see the change at their next poll.  Choosers (the readers for a
reassign, a pause's reason and length, a reader's cases) load outside the polled panel,
so a refresh never closes them.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections import defaultdict
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_http_methods, require_POST
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from rest_framework.exceptions import NotFound, PermissionDenied

from alerts.services import alert_acknowledge
from audit.models import AuditEvent
from audit.services import audit_record, audit_record_many
from network.models import Priority
from network.services import reader_pause, reader_resume
from routing.models import TIERS
from routing.services import study_change_triage
from studies.models import Study
from teleradiology.api import client_ip, request_actor
from teleradiology.converters import parse_id
from teleradiology.errors import DomainError
from turnaround import charts, operations, selectors
from turnaround import metrics as turnaround_metrics
from turnaround.api import TurnaroundQuerySerializer, operations_read_record
from turnaround.services import study_reroute_by_admin
from worklist.services.claims import study_reassign


def _int_param(request: HttpRequest, name: str) -> int | None:
    return parse_id(request.GET.get(name, ""))


# --- Operations -------------------------------------------------------------
def _queue_tables(snapshot: operations.OperationsSnapshot) -> list[dict[str, Any]]:
    """Per group, the queue as a tier-by-priority table (zeros filled in)."""
    cells: dict[int, dict[tuple[int | None, int], dict[str, Any]]] = defaultdict(dict)
    for row in snapshot.queue:
        cells[row["reading_group"]][(row["tier"], row["priority"])] = row
    tables = []
    for group in snapshot.groups:
        found = cells.get(group.pk, {})
        tiers: list[int | None] = list(TIERS)
        if any(tier is None for tier, _ in found):
            tiers.append(None)
        rows = []
        for tier in tiers:
            counts = [found.get((tier, p), {"studies": 0, "overdue": 0}) for p in Priority.values]
            rows.append(
                {
                    "tier": tier,
                    "name": TIERS.get(tier, "(not routed)") if tier is not None else "(not routed)",
                    "cells": counts,
                    "total": sum(c["studies"] for c in counts),
                }
            )
        totals = [sum(r["cells"][i]["studies"] for r in rows) for i in range(len(Priority.values))]
        tables.append({"group": group, "rows": rows, "totals": totals, "total": sum(totals)})
    return tables


def _operations_context(request: HttpRequest) -> dict[str, Any]:
    group_id = _int_param(request, "group")
    snapshot = operations.operations_snapshot(
        user=request.user, group_id=group_id, now=timezone.now()
    )
    operations_read_record(request=request, snapshot=snapshot, view="operations page")
    names = {g.pk: g.name for g in snapshot.groups}
    return {
        "snapshot": snapshot,
        "group_id": group_id,
        "group_names": names,
        "many_groups": len(snapshot.groups) > 1,
        "queue_tables": _queue_tables(snapshot),
        "fairness": [(names[f.reading_group_id], f) for f in snapshot.fairness],
        "priorities": [str(label) for label in Priority.labels],
        "refresh_seconds": settings.OPERATIONS_REFRESH_SECONDS,
        "list_limit": settings.OPERATIONS_LIST_LIMIT,
        "at_risk_percent": round(snapshot.at_risk_fraction * 100),
        **_action_vocabulary(),
    }


def _action_vocabulary() -> dict[str, Any]:
    """What the action buttons are offered for: reassign a study on offer or claimed,
    re-route a waiting one, raise a live one's priority (the label one level up)."""
    return {
        "reassignable": [str(s) for s in operations.REASSIGNABLE],
        "waiting": [str(s) for s in operations.UNCLAIMED],
        "live": [str(s) for s in operations.LIVE],
        "priority_labels": {p: str(label) for p, label in Priority.choices},
    }


def _refused(request: HttpRequest, refusal: Exception, *, partial: bool) -> HttpResponse:
    status = 404 if isinstance(refusal, NotFound) else 403
    if partial:
        return HttpResponse(status=status)
    return render(request, "turnaround/refused.html", {"message": str(refusal)}, status=status)


@login_required
def operations_page(request: HttpRequest) -> HttpResponse:
    try:
        context = _operations_context(request)
    except (PermissionDenied, NotFound) as refusal:
        return _refused(request, refusal, partial=False)
    return render(request, "turnaround/operations.html", context)


@login_required
def operations_panel(request: HttpRequest) -> HttpResponse:
    """The page's live part, polled by htmx every OPERATIONS_REFRESH_SECONDS."""
    try:
        context = _operations_context(request)
    except (PermissionDenied, NotFound) as refusal:
        return _refused(request, refusal, partial=True)
    return render(request, "turnaround/_operations_panel.html", context)


# --- Acting from the operations page -------------------------------------------
# What the pause form proposes (the group's limit if shorter).
DEFAULT_PAUSE_MINUTES = 30


class _Refused(Exception):
    """An action the domain refuses (its message is shown on the page)."""


def _study_name(study: Study) -> str:
    return study.accession_number or f"study {study.pk}"


def _acted(request: HttpRequest, message: str, *, refused: bool = False) -> HttpResponseBase:
    """The answer to an action: for htmx, the message for ``#messages`` (and, when done,
    the ``operations-changed`` event that refreshes the panel at once, and the chooser
    closed); without htmx, the message on the page it redirects to."""
    if not request.htmx:  # type: ignore[attr-defined]
        (messages.error if refused else messages.success)(request, message)
        return redirect("operations-page")
    response = render(
        request, "turnaround/_operations_result.html", {"message": message, "refused": refused}
    )
    if not refused:
        response["HX-Trigger"] = "operations-changed"
    return response


def _act(request: HttpRequest, action: Callable[[], str]) -> HttpResponseBase:
    """Run an action: the caller's selector refuses with 403/404 (before anything is
    written); a refusal of the domain is shown with its message."""
    try:
        return _acted(request, action())
    except (PermissionDenied, NotFound) as refusal:
        status = 404 if isinstance(refusal, NotFound) else 403
        return HttpResponse(str(refusal), status=status, content_type="text/plain")
    except DomainError as refusal:
        return _acted(request, refusal.message, refused=True)
    except _Refused as refusal:
        return _acted(request, str(refusal), refused=True)
    except ValidationError as invalid:
        return _acted(request, " ".join(invalid.messages), refused=True)


def _fragment(
    request: HttpRequest, build: Callable[[], dict[str, Any]], template: str
) -> HttpResponse:
    """A chooser loaded beside the panel; 403/404 as the actions."""
    try:
        context = build()
    except (PermissionDenied, NotFound) as refusal:
        return _refused(request, refusal, partial=True)
    return render(request, template, context)


@login_required
@require_http_methods(["GET", "POST"])
def operations_reassign(request: HttpRequest, study_id: int) -> HttpResponseBase:
    """GET: the chooser (the group's readers, the eligible first, the others disabled
    with the reasons); POST ``radiologist``: hand the study to that reader."""
    if request.method == "POST":
        return _act(request, lambda: _reassign(request, study_id))

    def build() -> dict[str, Any]:
        study = operations.study_for_action(user=request.user, study_id=study_id)
        # The chooser names the study (its accession number): a read of patient data.
        with transaction.atomic():
            audit_record(
                actor=request.user,
                action=AuditEvent.Action.READ,
                obj=study,
                patient_id=study.patient_id,
                ip_address=client_ip(request),
                detail={"view": "operations: reassign chooser"},
            )
        return {
            "study": study,
            "reassignable": study.status in operations.REASSIGNABLE,
            "choices": operations.reassign_choices(study=study, now=timezone.now()),
        }

    return _fragment(request, build, "turnaround/_operations_reassign.html")


def _reassign(request: HttpRequest, study_id: int) -> str:
    study = operations.study_for_action(user=request.user, study_id=study_id)
    target = operations.reassign_target(
        study=study, radiologist_id=parse_id(request.POST.get("radiologist", ""))
    )
    if target is None:
        raise _Refused("No such radiologist in this study's group.")
    study_reassign(
        study_id=study.pk, to=target, actor=request_actor(request), ip_address=client_ip(request)
    )
    return f"{_study_name(study)} reassigned to {target.display_name}."


@login_required
@require_POST
def operations_reroute(request: HttpRequest, study_id: int) -> HttpResponseBase:
    """Route a waiting study afresh: its open offers withdrawn, its rules applied now."""

    def reroute() -> str:
        study = operations.study_for_action(user=request.user, study_id=study_id)
        done = study_reroute_by_admin(
            study=study, actor=request_actor(request), ip_address=client_ip(request)
        )
        if not done:
            raise _Refused(f"{_study_name(study)} is no longer waiting for a reader.")
        return f"{_study_name(study)} re-routed."

    return _act(request, reroute)


@login_required
@require_POST
def operations_priority(request: HttpRequest, study_id: int) -> HttpResponseBase:
    """Raise a live study's priority (``priority``: 1 STAT, 2 urgent); its due time is
    recomputed and, if it is waiting, it is re-routed."""

    def raise_priority() -> str:
        study = operations.study_for_action(user=request.user, study_id=study_id)
        wanted = parse_id(request.POST.get("priority", ""))
        if wanted not in Priority.values:
            raise _Refused("Choose a priority: 1 (STAT) or 2 (urgent).")
        if study.status not in operations.LIVE:
            raise _Refused(f"A {study.get_status_display().lower()} study keeps its priority.")
        if wanted >= study.priority:
            raise _Refused(f"{_study_name(study)} is already {study.get_priority_display()}.")
        study_change_triage(
            study_id=study.pk,
            actor=request_actor(request),
            priority=wanted,
            ip_address=client_ip(request),
        )
        return f"{_study_name(study)} raised to {Priority(wanted).label}."

    return _act(request, raise_priority)


@login_required
@require_POST
def operations_acknowledge(request: HttpRequest, alert_id: int) -> HttpResponseBase:
    """Acknowledge an open alert of the admin's group."""

    def acknowledge() -> str:
        alert = operations.alert_for_action(user=request.user, alert_id=alert_id)
        if alert.acknowledged_at is not None:
            raise _Refused("That alert was already acknowledged.")
        alert_acknowledge(alert=alert, acknowledged_at=timezone.now(), actor=request_actor(request))
        return f"Alert acknowledged: {alert.get_kind_display()}."

    return _act(request, acknowledge)


@login_required
@require_http_methods(["GET", "POST"])
def operations_pause(request: HttpRequest, radiologist_id: int) -> HttpResponseBase:
    """GET: the pause form (a reason, and minutes up to the group's limit); POST
    ``reason`` and ``minutes``: pause the reader (their offers are held)."""
    if request.method == "POST":

        def pause() -> str:
            reader = operations.reader_for_action(user=request.user, radiologist_id=radiologist_id)
            minutes = parse_id(request.POST.get("minutes", ""))
            if minutes is None:
                raise _Refused("Say for how many minutes (a whole number).")
            reader = reader_pause(
                radiologist=reader,
                actor=request_actor(request),
                reason=request.POST.get("reason", ""),
                minutes=minutes,
                ip_address=client_ip(request),
            )
            until = timezone.localtime(reader.paused_until, dt.UTC).strftime("%H:%M UTC")
            return f"{reader.display_name} paused until {until}."

        return _act(request, pause)

    def build() -> dict[str, Any]:
        reader = operations.reader_for_action(user=request.user, radiologist_id=radiologist_id)
        limit = reader.reading_group.max_pause_minutes
        return {
            "reader": reader,
            "max_minutes": limit,
            "default_minutes": min(DEFAULT_PAUSE_MINUTES, limit),
        }

    return _fragment(request, build, "turnaround/_operations_pause.html")


@login_required
@require_POST
def operations_resume(request: HttpRequest, radiologist_id: int) -> HttpResponseBase:
    """End a reader's pause now."""

    def resume() -> str:
        reader = operations.reader_for_action(user=request.user, radiologist_id=radiologist_id)
        if reader.is_available and reader.paused_until is None:
            raise _Refused(f"{reader.display_name} is not paused.")
        reader_resume(
            radiologist=reader, actor=request_actor(request), ip_address=client_ip(request)
        )
        return f"{reader.display_name} resumed."

    return _act(request, resume)


@login_required
def operations_reader_cases(request: HttpRequest, radiologist_id: int) -> HttpResponse:
    """The studies a reader holds, each with its actions (reassign, raise priority)."""

    def build() -> dict[str, Any]:
        reader = operations.reader_for_action(user=request.user, radiologist_id=radiologist_id)
        cases = list(
            operations.reader_open_cases(radiologist=reader)[: settings.OPERATIONS_LIST_LIMIT]
        )
        audit_record_many(
            actor=request.user,
            action=AuditEvent.Action.LIST,
            object_type="studies.study",
            items=[(str(s.pk), s.patient_id) for s in cases],
            ip_address=client_ip(request),
            detail={"view": "operations: a reader's cases", "radiologist": reader.pk},
        )
        return {"reader": reader, "cases": cases, **_action_vocabulary()}

    return _fragment(request, build, "turnaround/_operations_cases.html")


# --- Facility portal --------------------------------------------------------
PORTAL_STUDY_ROWS = 50
MEASURE = "received_to_final"


def _in_unit(seconds: float | None, unit_seconds: int) -> float | None:
    return None if seconds is None else round(seconds / unit_seconds, 2)


def _charts(
    *,
    by_day: selectors.TurnaroundSummary,
    by_priority: selectors.TurnaroundSummary,
    volume: list[int],
) -> dict[str, str]:
    """The portal's three charts as SVG strings (escaped by the chart module)."""
    days = []
    day = by_day.date_from
    while day <= by_day.date_to:
        days.append(day)
        day += dt.timedelta(days=1)
    rows = {r["key"]: r for r in by_day.rows}
    median = [rows.get(d.isoformat(), {}).get(f"{MEASURE}_median_seconds") for d in days]
    p90 = [rows.get(d.isoformat(), {}).get(f"{MEASURE}_p90_seconds") for d in days]
    top = max((v for v in p90 if v is not None), default=0.0)
    unit_seconds, unit = (60, "minutes") if top < 3 * 3600 else (3600, "hours")
    over_time = charts.line_chart(
        labels=[d.strftime("%b %-d") for d in days],
        series=[
            charts.Series("median", [_in_unit(v, unit_seconds) for v in median], "series-0"),
            charts.Series("90th percentile", [_in_unit(v, unit_seconds) for v in p90], "series-1"),
        ],
        title=f"Receipt to final report per day ({unit})",
        unit=unit,
        width=1000,
        height=280,
        max_labels=12,
        empty_message="No finalised study in this range.",
    )
    shares = {r["key"]: r["within_target_share"] for r in by_priority.rows}
    compliance = charts.bar_chart(
        labels=[str(label) for label in Priority.labels],
        values=[
            None if shares.get(p) is None else round(100 * shares[p], 1) for p in Priority.values
        ],
        title="Share within the contracted target, by priority (%)",
        unit="%",
        max_value=100,
        css_classes=[f"p{p}" for p in Priority.values],
        empty_message="No study with a known outcome in this range.",
    )
    hourly = charts.bar_chart(
        labels=[f"{h:02d}" for h in range(24)],
        values=[float(n) for n in volume],
        title=f"Studies received by hour of day ({by_day.timezone})",
        unit="studies",
        empty_message="No study received in this range.",
        show_values=False,
        max_labels=12,
    )
    return {"over_time": over_time, "compliance": compliance, "hourly": hourly}


def _portal_context(request: HttpRequest) -> dict[str, Any]:
    facilities = list(selectors.turnaround_facilities(user=request.user).order_by("name"))
    if not facilities:
        raise PermissionDenied("The turnaround portal is for facility staff and group admins.")
    data = request.GET.copy()
    if not data.get("facility") and len(facilities) == 1:
        data["facility"] = str(facilities[0].pk)
    for name in ("facility", "priority", "from", "to", "group_by"):
        if data.get(name, None) == "":
            del data[name]
    query = TurnaroundQuerySerializer(data=data)
    if not query.is_valid():
        return {"facilities": facilities, "errors": query.errors, "params": request.GET}
    params = query.validated_data
    common = {
        "user": request.user,
        "facility_id": params.get("facility"),
        "date_from": params["from"],
        "date_to": params["to"],
        "priority": params.get("priority"),
    }
    now = timezone.now()
    by_priority = selectors.turnaround_summary(**common, group_by="priority", now=now)
    by_day = selectors.turnaround_summary(**common, group_by="day", now=now)
    group_by = params["group_by"]
    table = {"priority": by_priority, "day": by_day}.get(group_by) or (
        selectors.turnaround_summary(**common, group_by=group_by, now=now)
    )
    scope = selectors.scoped_studies(**common)
    studies = list(selectors.portal_studies(scope=scope, now=now)[:PORTAL_STUDY_ROWS])
    # Each row's report links and result deliveries: a fixed number of statements.
    deliveries = selectors.portal_deliveries(user=request.user, studies=studies)
    audit_record_many(
        actor=request.user,
        action=AuditEvent.Action.LIST,
        object_type="studies.study",
        items=[(str(s.pk), s.patient_id) for s in studies],
        ip_address=client_ip(request),
        detail={"view": "turnaround portal"},
    )
    csv_query = {
        key: str(value)
        for key, value in {
            "facility": params.get("facility"),
            "from": params["from"],
            "to": params["to"],
            "priority": params.get("priority"),
            "group_by": group_by,
            "format": "csv",
        }.items()
        if value is not None
    }
    return {
        "facilities": facilities,
        "facility": scope.facility,
        "timezone": by_day.timezone,
        "params": {
            "facility": params.get("facility"),
            "from": params["from"].isoformat(),
            "to": params["to"].isoformat(),
            "priority": params.get("priority"),
            "group_by": group_by,
        },
        "priorities": Priority.choices,
        "group_by_choices": selectors.GROUP_BY_CHOICES,
        "charts": {
            name: mark_safe(svg)  # noqa: S308 - the chart module escapes every text
            for name, svg in _charts(
                by_day=by_day, by_priority=by_priority, volume=selectors.volume_by_hour(scope=scope)
            ).items()
        },
        "table": table,
        "studies": [(study, deliveries.get(study.pk)) for study in studies],
        "study_count": scope.studies.count() if len(studies) == PORTAL_STUDY_ROWS else len(studies),
        "csv_url": f"{reverse('turnaround')}?{urlencode(csv_query)}",
        "now": now,
    }


@login_required
def portal_page(request: HttpRequest) -> HttpResponse:
    """A facility's turnaround: filters, charts, figures, its studies, CSV export."""
    try:
        context = _portal_context(request)
    except (PermissionDenied, NotFound) as refusal:
        return _refused(request, refusal, partial=False)
    return render(
        request, "turnaround/portal.html", context, status=400 if "errors" in context else 200
    )


@login_required
def portal_panel(request: HttpRequest) -> HttpResponse:
    """The charts, the table and the studies for the filters (swapped in by htmx);
    the address bar follows, so a reload or a shared link shows the same."""
    try:
        context = _portal_context(request)
    except (PermissionDenied, NotFound) as refusal:
        return _refused(request, refusal, partial=True)
    response = render(
        request,
        "turnaround/_portal_panel.html",
        context,
        status=400 if "errors" in context else 200,
    )
    query = request.GET.urlencode()
    response["HX-Push-Url"] = reverse("portal-page") + (f"?{query}" if query else "")
    return response


# --- Prometheus -------------------------------------------------------------
def _bearer_token(request: HttpRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format, computed from the database at scrape time.

    Allowed with ``Authorization: Bearer <METRICS_TOKEN>`` (when the setting is
    set), or for a signed-in superuser or holder of ``turnaround.view_metrics``.
    No credentials: 401; wrong token or no permission: 403."""
    token = _bearer_token(request)
    expected = settings.METRICS_TOKEN
    if token is not None:
        allowed = bool(expected) and hmac.compare_digest(token.encode(), expected.encode())
    else:
        user = request.user
        if not user.is_authenticated:
            response = HttpResponse("Authentication required.\n", status=401)
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
        allowed = user.is_active and (user.is_superuser or user.has_perm("turnaround.view_metrics"))
    if not allowed:
        return HttpResponse("Not allowed.\n", status=403)
    body = generate_latest(turnaround_metrics.metrics_registry())
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
