"""Pages: the group admins' rule simulator (drafts, replays, publishing).

Server-rendered like the operations page: each view reads through a selector or
acts through one service.  A draft's rules are edited one rule per form; the whole
rule set is validated by the API's serializer (``simulation.api``), so the page
and the API refuse the same things, and a refusal is shown beside its field with
nothing saved.  A run's page polls its progress every two seconds (htmx) until the
replay is done, then shows the comparison drawn on the server (``simulation.report``).

Who may: the admins of the draft's reading group.  Someone who administers no
group gets 403; a draft or run of another group is 404, as on the operations page.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse, HttpResponseBase, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST
from rest_framework.exceptions import NotFound, PermissionDenied

from network.models import Priority, ReadingGroup, Subspecialty
from network.selectors import facility_list_administered, reading_groups_administered
from routing.models import TIERS, RoutingRule
from simulation import report, selectors, services
from simulation.api import DraftCreateSerializer, DraftSerializer, RunCreateSerializer
from simulation.models import RoutingDraft, SimulationRun
from teleradiology.api import client_ip, request_actor
from teleradiology.errors import DomainError

# A run whose worker has not written progress for this long is shown as interrupted
# (the recovery sweep re-queues it).
STALE_AFTER = dt.timedelta(minutes=2)
REPLAY_DAYS = (7, 30, 60)
RECENT_RUNS = 20


def _refused(request: HttpRequest, refusal: Exception, *, partial: bool = False) -> HttpResponse:
    status = 404 if isinstance(refusal, NotFound) else 403
    if partial:
        return HttpResponse(status=status)
    return render(request, "turnaround/refused.html", {"message": str(refusal)}, status=status)


def _admin_groups(request: HttpRequest) -> list[ReadingGroup]:
    groups = list(reading_groups_administered(user=request.user).order_by("name"))
    if not groups:
        raise PermissionDenied("The rule simulator is for group admins.")
    return groups


def _draft(request: HttpRequest, draft_id: int) -> RoutingDraft:
    """A draft of a group the user administers (403 for a non-admin, else 404)."""
    _admin_groups(request)
    draft = (
        selectors.drafts_visible(user=request.user)
        .select_related("reading_group")
        .filter(pk=draft_id)
        .first()
    )
    if draft is None:
        raise NotFound("No such draft.")
    return draft


def _run(request: HttpRequest, run_id: int) -> SimulationRun:
    """A run of a group the user administers (403 for a non-admin, else 404)."""
    _admin_groups(request)
    run = (
        selectors.runs_visible(user=request.user)
        .select_related("draft", "reading_group")
        .filter(pk=run_id)
        .first()
    )
    if run is None:
        raise NotFound("No such replay.")
    return run


def _subspecialty_choices() -> list[tuple[str, str]]:
    return list(Subspecialty.objects.order_by("name").values_list("code", "name"))


def _problem(error: Exception) -> str:
    if isinstance(error, DomainError):
        return error.message
    if isinstance(error, ValidationError):
        return " ".join(error.messages)
    return "A draft of that name already exists in this group."


# --- The list ---------------------------------------------------------------
@login_required
def simulations_page(request: HttpRequest) -> HttpResponse:
    """The groups' drafts and their recent runs; a new draft from the live rules."""
    try:
        groups = _admin_groups(request)
    except PermissionDenied as refusal:
        return _refused(request, refusal)
    versions = {g.pk: g.rules_version for g in groups}
    drafts = [
        {"draft": d, "live_changed": d.based_on_version != versions.get(d.reading_group_id)}
        for d in selectors.drafts_visible(user=request.user)
        .select_related("reading_group")
        .order_by("reading_group__name", "-updated_at", "id")
    ]
    runs = list(
        selectors.runs_visible(user=request.user)
        .select_related("draft")
        .order_by("-created_at", "-id")[:RECENT_RUNS]
    )
    return render(
        request,
        "simulation/list.html",
        {
            "groups": groups,
            "many_groups": len(groups) > 1,
            "drafts": drafts,
            "runs": runs,
            "default_name": f"Draft {timezone.now():%Y-%m-%d %H:%M}",
        },
    )


@login_required
@require_POST
def draft_new(request: HttpRequest) -> HttpResponseBase:
    """A new draft: a copy of the chosen group's live rules."""
    try:
        groups = _admin_groups(request)
    except PermissionDenied as refusal:
        return _refused(request, refusal)
    name = request.POST.get("name", "").strip() or f"Draft {timezone.now():%Y-%m-%d %H:%M:%S}"
    query = DraftCreateSerializer(
        data={
            "reading_group": request.POST.get("group", "") if len(groups) > 1 else groups[0].pk,
            "name": name,
        },
        context={"request": request},
    )
    if not query.is_valid():
        messages.error(request, "New draft: " + " ".join(_flatten(query.errors)))
        return redirect("simulations-page")
    group = query.validated_data["reading_group"]
    try:
        draft = services.draft_create(
            actor=request_actor(request),
            reading_group=group,
            name=name,
            ip_address=client_ip(request),
        )
    except (DomainError, ValidationError, IntegrityError) as error:
        messages.error(request, _problem(error))
        return redirect("simulations-page")
    messages.success(request, f"{draft.name}: a copy of {group.name}'s live rules.")
    return redirect("simulation-draft", draft_id=draft.pk)


# --- A draft ----------------------------------------------------------------
def _words(text: str) -> list[str]:
    return [w.strip() for w in text.replace(",", " ").split() if w.strip()]


def _number_or_raw(value: str) -> Any:
    # A checkbox's value as the API takes it (an int); anything else is left for the
    # serializer to refuse.
    return int(value) if value.strip().isdigit() else value


def rule_from_form(data: QueryDict, base: dict[str, Any]) -> dict[str, Any]:
    """A rule in the draft representation from its form: the fields the form has
    replace the base rule's (the others kept).  Values are passed on as typed, for
    the API's serializer to judge; only the shapes are made (lists, booleans)."""
    rule = copy.deepcopy(base)
    for name in (
        "name",
        "position",
        "widest_tier",
        "delivery",
        "description_pattern",
        "relative_value",
        "accept_timeout_seconds",
        "min_tier_wait_seconds",
        "wait_stat_seconds",
        "wait_urgent_seconds",
        "wait_routine_seconds",
    ):
        if name in data:
            rule[name] = data.get(name, "").strip()
    for name in ("modalities", "body_parts"):
        if name in data:
            rule[name] = _words(data.get(name, ""))
    for name in (
        "is_active",
        "allow_general",
        "allow_preliminary",
        "bypass_cap_for_stat",
        "next_case_only",
    ):
        rule[name] = name in data
    rule["priorities"] = [_number_or_raw(v) for v in data.getlist("priorities")]
    rule["facilities"] = [_number_or_raw(v) for v in data.getlist("facilities")]
    rule["subspecialties"] = list(data.getlist("subspecialties"))
    if "escalate_regional" in data or "escalate_global" in data:
        rule["escalate_fractions"] = [
            data.get("escalate_regional", "").strip(),
            data.get("escalate_global", "").strip(),
        ]
    return rule


def new_rule() -> dict[str, Any]:
    """A rule the draft adds: the live rules' defaults, matching nothing in particular,
    tried after the others."""
    base = RoutingRule()
    return {
        "id": None,
        "name": "New rule",
        "position": 1000,
        "is_active": False,
        "is_default": False,
        "facilities": [],
        "modalities": [],
        "body_parts": [],
        "description_pattern": "",
        "procedure_code_pattern": "",
        "priorities": [],
        "flags": [],
        "subspecialties": [],
        "allow_general": True,
        "allow_preliminary": False,
        "bypass_cap_for_stat": False,
        "relative_value": "1.00",
        "delivery": base.delivery,
        "accept_timeout_seconds": base.accept_timeout_seconds,
        "next_case_only": False,
        "escalate_fractions": list(base.escalate_fractions),
        "widest_tier": base.widest_tier,
        "min_tier_wait_seconds": base.min_tier_wait_seconds,
        "wait_stat_seconds": base.wait_stat_seconds,
        "wait_urgent_seconds": base.wait_urgent_seconds,
        "wait_routine_seconds": base.wait_routine_seconds,
    }


def _flatten(errors: Any) -> list[str]:
    if isinstance(errors, dict):
        return [m for v in errors.values() for m in _flatten(v)]
    if isinstance(errors, list | tuple):
        return [m for v in errors for m in _flatten(v)]
    return [str(errors)]


def validate_rules(
    request: HttpRequest, draft: RoutingDraft, rules: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]] | None, dict[int, dict[str, list[str]]], list[str]]:
    """The rules as the API's serializer validates them: (the validated rules, None
    if refused; each refused rule's errors by field; errors of the set as a whole)."""
    serializer = DraftSerializer(
        instance=draft, data={"rules": rules}, partial=True, context={"request": request}
    )
    if serializer.is_valid():
        return list(serializer.validated_data["rules"]), {}, []
    by_rule: dict[int, dict[str, list[str]]] = {}
    general: list[str] = []
    for key, value in serializer.errors.items():
        if key != "rules":
            general += _flatten(value)
            continue
        items: list[tuple[Any, Any]] = (
            list(value.items()) if isinstance(value, dict) else list(enumerate(value))
        )
        for index, problems in items:
            if isinstance(problems, dict) and str(index).isdigit():
                found = {str(k): _flatten(v) for k, v in problems.items() if v}
                if found:
                    by_rule[int(index)] = found
            elif problems:
                general += _flatten(problems)
    return None, by_rule, general


def _facility_names(request: HttpRequest, draft: RoutingDraft) -> dict[int, str]:
    facilities = facility_list_administered(user=request.user).filter(
        reading_group=draft.reading_group_id
    )
    return dict(facilities.order_by("name").values_list("pk", "name"))


def _choices(draft: RoutingDraft, request: HttpRequest) -> dict[str, Any]:
    return {
        "facility_choices": list(_facility_names(request, draft).items()),
        "subspecialty_choices": _subspecialty_choices(),
        "priority_choices": Priority.choices,
        "tier_choices": list(TIERS.items()),
        "delivery_choices": RoutingRule.Delivery.choices,
    }


def _rule_rows(
    rules: list[dict[str, Any]], *, facility_names: dict[int, str]
) -> list[dict[str, Any]]:
    """The rules in the order live routing tries them, each with its stored index."""
    order = sorted(
        range(len(rules)),
        key=lambda i: (
            bool(rules[i].get("is_default")),
            _as_int(rules[i].get("position")),
            rules[i]["id"] if rules[i].get("id") is not None else 10**12 + i,
        ),
    )
    return [
        {
            "index": i,
            "rule": rules[i],
            "facility_names": [
                facility_names.get(_as_int(f), str(f)) for f in rules[i].get("facilities", [])
            ],
            "tier_name": TIERS.get(_as_int(rules[i].get("widest_tier")), "?"),
            "fractions": _fractions(rules[i].get("escalate_fractions")),
        }
        for i in order
    ]


def _as_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _fractions(value: Any) -> list[str]:
    items = list(value) if isinstance(value, list | tuple) else []
    items += [""] * (2 - len(items))
    return [str(v) for v in items[:2]]


FIELD_LABELS = {
    "name": "name",
    "position": "position",
    "is_active": "active",
    "is_default": "default rule",
    "facilities": "facilities",
    "modalities": "modalities",
    "body_parts": "body parts",
    "description_pattern": "description pattern",
    "procedure_code_pattern": "procedure code pattern",
    "priorities": "priorities",
    "flags": "flags",
    "subspecialties": "subspecialties",
    "allow_general": "general radiologists allowed",
    "allow_preliminary": "preliminary reads allowed",
    "bypass_cap_for_stat": "STAT past the caps",
    "relative_value": "relative value",
    "delivery": "delivery",
    "accept_timeout_seconds": "time to accept (s)",
    "next_case_only": "next case only",
    "escalate_fractions": "escalation fractions",
    "widest_tier": "widest tier",
    "min_tier_wait_seconds": "shortest wait at a tier (s)",
    "wait_stat_seconds": "longest wait, STAT (s)",
    "wait_urgent_seconds": "longest wait, urgent (s)",
    "wait_routine_seconds": "longest wait, routine (s)",
}


def _shown(name: str, value: Any, facility_names: dict[int, str]) -> str:
    if name == "widest_tier":
        return TIERS.get(_as_int(value), str(value))
    if name == "facilities" and isinstance(value, list):
        value = [facility_names.get(_as_int(f), str(f)) for f in value]
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or (
            "(none)" if name == "subspecialties" else "(any)"
        )
    return "" if value is None else str(value)


def diff_rows(
    diff: list[dict[str, Any]], *, facility_names: dict[int, str]
) -> list[dict[str, Any]]:
    """The diff (``selectors.rules_diff``) as the page shows it: per rule, what is
    added, removed, or each changed field's live and draft values."""
    rows = []
    for item in diff:
        fields = [
            {
                "name": name,
                "label": FIELD_LABELS.get(name, name),
                "before": _shown(name, change.get("before"), facility_names),
                "after": _shown(name, change.get("after"), facility_names),
            }
            for name, change in (item.get("fields") or {}).items()
        ]
        rows.append(
            {"change": item["change"], "name": item["name"], "id": item.get("id"), "fields": fields}
        )
    return rows


# The fields whose errors the rule form shows beside them; the others' errors are
# shown at the foot of the rule's form.
FORM_ERROR_FIELDS = frozenset(
    {
        "name",
        "position",
        "is_active",
        "modalities",
        "body_parts",
        "description_pattern",
        "priorities",
        "facilities",
        "subspecialties",
        "relative_value",
        "widest_tier",
        "escalate_fractions",
        "min_tier_wait_seconds",
        "wait_stat_seconds",
        "wait_urgent_seconds",
        "wait_routine_seconds",
        "delivery",
        "accept_timeout_seconds",
    }
)


def _placed(errors: dict[str, list[str]]) -> dict[str, list[str]]:
    placed = {k: v for k, v in errors.items() if k in FORM_ERROR_FIELDS}
    other = [
        m if k == "non_field_errors" else f"{FIELD_LABELS.get(k, k)}: {m}"
        for k, v in errors.items()
        if k not in FORM_ERROR_FIELDS
        for m in v
    ]
    if other:
        placed["non_field_errors"] = other
    return placed


def _draft_context(
    request: HttpRequest,
    draft: RoutingDraft,
    *,
    rules: list[dict[str, Any]] | None = None,
    errors: dict[int, dict[str, list[str]]] | None = None,
    general: list[str] | None = None,
    open_index: int | None = None,
) -> dict[str, Any]:
    choices = _choices(draft, request)
    names = dict(choices["facility_choices"])
    saved = list(draft.rules)
    return {
        "draft": draft,
        # The table shows the rules as saved; the forms what was typed (if refused).
        "rows": _rule_rows(saved, facility_names=names),
        "form_rows": _rule_rows(rules if rules is not None else saved, facility_names=names),
        "errors": {i: _placed(e) for i, e in (errors or {}).items()},
        "general_errors": general or [],
        "open_index": open_index,
        "diff": diff_rows(
            selectors.draft_diff(draft), facility_names=dict(choices["facility_choices"])
        ),
        "live_changed": draft.based_on_version != draft.reading_group.rules_version,
        "runs": list(draft.runs.all()[:10]),
        "replay_days": REPLAY_DAYS,
        "today": timezone.now().date().isoformat(),
        **choices,
    }


@login_required
def draft_page(request: HttpRequest, draft_id: int) -> HttpResponse:
    """A draft's rules, a form per rule, its diff against the live rules, replay and
    publish."""
    try:
        draft = _draft(request, draft_id)
    except (PermissionDenied, NotFound) as refusal:
        return _refused(request, refusal)
    return render(request, "simulation/draft.html", _draft_context(request, draft))


def _save_rules(
    request: HttpRequest, draft: RoutingDraft, rules: list[dict[str, Any]], *, index: int | None
) -> HttpResponseBase:
    validated, errors, general = validate_rules(request, draft, rules)
    if validated is None:
        context = _draft_context(
            request, draft, rules=rules, errors=errors, general=general, open_index=index
        )
        return render(request, "simulation/draft.html", context, status=400)
    try:
        services.draft_save(
            actor=request_actor(request),
            draft=draft,
            rules=validated,
            ip_address=client_ip(request),
        )
    except (DomainError, ValidationError) as error:
        context = _draft_context(
            request, draft, rules=rules, general=[_problem(error)], open_index=index
        )
        return render(request, "simulation/draft.html", context, status=400)
    return redirect("simulation-draft", draft_id=draft.pk)


@login_required
@require_http_methods(["GET", "POST"])
def rule_save(request: HttpRequest, draft_id: int, index: int) -> HttpResponseBase:
    """Replace one rule of the draft with its form (the whole set validated); a GET
    (a reload of a refused form's page) goes back to the draft."""
    try:
        draft = _draft(request, draft_id)
    except (PermissionDenied, NotFound) as refusal:
        return _refused(request, refusal)
    if request.method == "GET":
        return redirect(reverse("simulation-draft", args=[draft.pk]) + f"#rule-{index}")
    rules = copy.deepcopy(list(draft.rules))
    if not 0 <= index < len(rules):
        return _refused(request, NotFound("No such rule in this draft."))
    rules[index] = rule_from_form(request.POST, rules[index])
    response = _save_rules(request, draft, rules, index=index)
    if response.status_code < 400:
        messages.success(request, f"Rule {rules[index]['name']} saved in the draft.")
    return response


@login_required
@require_POST
def rule_add(request: HttpRequest, draft_id: int) -> HttpResponseBase:
    """Add a rule (inactive until the admin turns it on) to the draft."""
    try:
        draft = _draft(request, draft_id)
    except (PermissionDenied, NotFound) as refusal:
        return _refused(request, refusal)
    rules = copy.deepcopy(list(draft.rules))
    rule = rule_from_form(request.POST, new_rule()) if request.POST.get("name") else new_rule()
    if not rule["subspecialties"]:
        # A rule needs a subspecialty; the first one until the admin chooses.
        rule["subspecialties"] = [code for code, _ in _subspecialty_choices()[:1]]
    rules.append(rule)
    response = _save_rules(request, draft, rules, index=len(rules) - 1)
    if response.status_code < 400:
        messages.success(request, f"Rule {rule['name']} added to the draft.")
    return response


@login_required
@require_POST
def rule_delete(request: HttpRequest, draft_id: int, index: int) -> HttpResponseBase:
    """Remove one rule from the draft."""
    try:
        draft = _draft(request, draft_id)
    except (PermissionDenied, NotFound) as refusal:
        return _refused(request, refusal)
    rules = copy.deepcopy(list(draft.rules))
    if not 0 <= index < len(rules):
        return _refused(request, NotFound("No such rule in this draft."))
    removed = rules.pop(index)
    response = _save_rules(request, draft, rules, index=None)
    if response.status_code < 400:
        messages.success(request, f"Rule {removed['name']} removed from the draft.")
    return response


@login_required
@require_POST
def draft_rename(request: HttpRequest, draft_id: int) -> HttpResponseBase:
    try:
        draft = _draft(request, draft_id)
    except (PermissionDenied, NotFound) as refusal:
        return _refused(request, refusal)
    name = request.POST.get("name", "").strip()
    if not name:
        messages.error(request, "A draft needs a name.")
        return redirect("simulation-draft", draft_id=draft.pk)
    try:
        services.draft_save(
            actor=request_actor(request), draft=draft, name=name, ip_address=client_ip(request)
        )
    except (DomainError, ValidationError, IntegrityError) as error:
        messages.error(request, _problem(error))
    return redirect("simulation-draft", draft_id=draft.pk)


@login_required
@require_POST
def draft_delete(request: HttpRequest, draft_id: int) -> HttpResponseBase:
    try:
        draft = _draft(request, draft_id)
    except (PermissionDenied, NotFound) as refusal:
        return _refused(request, refusal)
    name = draft.name
    services.draft_delete(actor=request_actor(request), draft=draft, ip_address=client_ip(request))
    messages.success(request, f"Draft {name} deleted.")
    return redirect("simulations-page")


def replay_query(data: QueryDict, *, draft: RoutingDraft, now: dt.datetime) -> dict[str, Any]:
    """The replay form as the API's run request: the last N days, or whole days
    (UTC) from one date to another, both included (up to now)."""
    if data.get("days"):
        return {"draft": draft.pk, "days": data["days"]}
    query: dict[str, Any] = {"draft": draft.pk}
    try:
        first = dt.date.fromisoformat(data.get("from", ""))
        query["window_start"] = dt.datetime.combine(first, dt.time(), tzinfo=dt.UTC).isoformat()
    except ValueError:
        pass
    try:
        last = dt.date.fromisoformat(data.get("to", "")) + dt.timedelta(days=1)
        end = dt.datetime.combine(last, dt.time(), tzinfo=dt.UTC)
        query["window_end"] = min(end, now).isoformat()
    except (ValueError, OverflowError):
        pass
    return query


@login_required
@require_POST
def draft_replay(request: HttpRequest, draft_id: int) -> HttpResponseBase:
    """Queue a replay of a past window against the draft (and the live rules)."""
    try:
        draft = _draft(request, draft_id)
    except (PermissionDenied, NotFound) as refusal:
        return _refused(request, refusal)
    query = RunCreateSerializer(
        data=replay_query(request.POST, draft=draft, now=timezone.now()),
        context={"request": request},
    )
    if not query.is_valid():
        messages.error(request, "Replay: " + " ".join(_flatten(query.errors)))
        return redirect("simulation-draft", draft_id=draft.pk)
    try:
        run = services.run_request(
            actor=request_actor(request),
            draft=draft,
            window_start=query.validated_data["window_start"],
            window_end=query.validated_data["window_end"],
            ip_address=client_ip(request),
        )
    except (DomainError, ValidationError) as error:
        messages.error(request, _problem(error))
        return redirect("simulation-draft", draft_id=draft.pk)
    return redirect("simulation-run", run_id=run.pk)


@login_required
@require_http_methods(["GET", "POST"])
def draft_publish(request: HttpRequest, draft_id: int) -> HttpResponseBase:
    """GET: what publishing would change (the diff), and whether the live rules moved
    since the draft was copied; POST: replace the live rules (``force`` over a change)."""
    try:
        draft = _draft(request, draft_id)
    except (PermissionDenied, NotFound) as refusal:
        return _refused(request, refusal)
    conflict = ""
    conflict_diff: list[dict[str, Any]] | None = None
    status = 200
    if request.method == "POST":
        try:
            changes = services.draft_publish(
                actor=request_actor(request),
                draft=draft,
                force=request.POST.get("force") == "1",
                ip_address=client_ip(request),
            )
        except services.DraftConflict as refused:
            conflict, conflict_diff = refused.message, refused.diff
            status = 409
        except (DomainError, ValidationError) as error:
            messages.error(request, _problem(error))
            return redirect("simulation-publish", draft_id=draft.pk)
        else:
            messages.success(
                request,
                f"{draft.name} published: {len(changes)} change{'s' if len(changes) != 1 else ''}"
                f" to {draft.reading_group.name}'s live rules; the next study uses them.",
            )
            return redirect("simulations-page")
    draft.reading_group.refresh_from_db(fields=["rules_version"])
    return render(
        request,
        "simulation/publish.html",
        {
            "draft": draft,
            "diff": diff_rows(
                conflict_diff if conflict_diff is not None else selectors.draft_diff(draft),
                facility_names=_facility_names(request, draft),
            ),
            "live_changed": draft.based_on_version != draft.reading_group.rules_version,
            "conflict": conflict,
        },
        status=status,
    )


# --- A run ------------------------------------------------------------------
def _run_context(run: SimulationRun, *, now: dt.datetime) -> dict[str, Any]:
    finished = run.status in (SimulationRun.Status.DONE, SimulationRun.Status.FAILED)
    beat = run.heartbeat_at or run.started_at
    context: dict[str, Any] = {
        "run": run,
        "finished": finished,
        "interrupted": not finished
        and run.status == SimulationRun.Status.RUNNING
        and (beat is None or now - beat > STALE_AFTER),
        "waiting_long": not finished
        and run.status == SimulationRun.Status.QUEUED
        and now - run.created_at > STALE_AFTER,
        "percent": (round(100 * run.studies_done / run.studies_total) if run.studies_total else 0),
    }
    if run.status == SimulationRun.Status.DONE and run.result:
        context["report"] = report.comparison(run.result)
    return context


def _run_read_record(request: HttpRequest, run: SimulationRun) -> None:
    """Audit the read of the studies a done run's page names."""
    services.runs_read_record(
        user=request.user,
        runs=[run],
        ip_address=client_ip(request),
        view="rule simulator: a replay's comparison",
    )


@login_required
def run_page(request: HttpRequest, run_id: int) -> HttpResponse:
    """A replay: its progress while it runs, the comparison once done, or its error."""
    try:
        run = _run(request, run_id)
    except (PermissionDenied, NotFound) as refusal:
        return _refused(request, refusal)
    context = _run_context(run, now=timezone.now())
    _run_read_record(request, run)
    return render(request, "simulation/run.html", context)


@login_required
def run_progress(request: HttpRequest, run_id: int) -> HttpResponse:
    """The run's body, polled by htmx every 2 s while it is queued or running; once
    finished it is the comparison (or the error), which polls no more."""
    try:
        run = _run(request, run_id)
    except (PermissionDenied, NotFound) as refusal:
        return _refused(request, refusal, partial=True)
    context = _run_context(run, now=timezone.now())
    _run_read_record(request, run)
    return render(request, "simulation/_run_body.html", context)
