"""Pages: the group admins' live operations page and the facility portal.

Thin, as the worklist's: each view reads through a selector; htmx polls the
operations panel every few seconds and swaps the portal's charts and table when
a filter changes.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from rest_framework.exceptions import NotFound, PermissionDenied

from network.models import Priority
from routing.models import TIERS
from turnaround import operations


def _int_param(request: HttpRequest, name: str) -> int | None:
    value = request.GET.get(name, "")
    return int(value) if value.isdigit() else None


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
        "at_risk_percent": round(snapshot.at_risk_fraction * 100),
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
