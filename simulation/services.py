"""Drafts (create, save, delete, publish) and runs (request, execute, recover), and
the audited read of what a finished run names."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit_record, audit_record_many
from network.history import history_began
from network.models import Facility, ReadingGroup, Subspecialty
from routing.models import RoutingRule
from routing.services import routing_config_delete, routing_config_save, routing_config_set_related
from simulation import engine
from simulation.models import RoutingDraft, SimulationRun
from simulation.roster import HistoryRoster
from simulation.rulesets import SCALAR_FIELDS, sim_rules
from simulation.selectors import (
    live_rules_as_draft,
    reading_minutes,
    replay_studies,
    replay_studies_count,
    rules_diff,
)
from teleradiology.audited import snapshot
from teleradiology.errors import DomainError
from teleradiology.queue import enqueue


class DraftConflict(Exception):
    """The live rules changed since the draft was copied (publish with force);
    ``diff`` is what publishing would change now."""

    def __init__(self, message: str, *, diff: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.message = message
        self.diff = diff


def draft_create(
    *,
    actor: User | None,
    reading_group: ReadingGroup,
    name: str,
    source: RoutingDraft | None = None,
    ip_address: str | None = None,
) -> RoutingDraft:
    """A new draft: a copy of the group's live rules, or of ``source``; audited.

    A copy of the live rules is based on the group's rules_version read with them
    (the group row locked, so no rule changes in between); a copy of another
    draft keeps that draft's base, since it carries its edits over that version."""
    with transaction.atomic():
        if source is not None:
            if source.reading_group_id != reading_group.pk:
                raise DomainError("A draft is copied within its reading group.")
            rules, based_on = copy.deepcopy(source.rules), source.based_on_version
        else:
            group = ReadingGroup.objects.select_for_update().get(pk=reading_group.pk)
            rules, based_on = live_rules_as_draft(reading_group_id=group.pk), group.rules_version
        draft = RoutingDraft(
            reading_group=reading_group,
            name=name,
            rules=rules,
            based_on_version=based_on,
            created_by=actor,
        )
        draft.full_clean()
        draft.save()
        audit_record(
            actor=actor,
            action=AuditEvent.Action.CREATE,
            obj=draft,
            ip_address=ip_address,
            detail={
                "name": name,
                "copy_of": source.pk if source is not None else "live",
                "rules": len(rules),
                "based_on_version": based_on,
            },
        )
    return draft


def draft_save(
    *,
    actor: User | None,
    draft: RoutingDraft,
    name: str | None = None,
    rules: list[dict[str, Any]] | None = None,
    ip_address: str | None = None,
) -> RoutingDraft:
    """Rename and/or replace the draft's rules (already validated by the API's
    serializer, the same validation as live rules); audited with what changed."""
    with transaction.atomic():
        locked = RoutingDraft.objects.select_for_update().get(pk=draft.pk)
        changed: dict[str, Any] = {}
        if name is not None and name != locked.name:
            changed["name"] = [locked.name, name]
            locked.name = name
        if rules is not None and rules != locked.rules:
            changed["rules"] = [locked.rules, rules]
            locked.rules = rules
        if not changed:
            return locked
        locked.full_clean()
        locked.save()
        audit_record(
            actor=actor,
            action=AuditEvent.Action.UPDATE,
            obj=locked,
            ip_address=ip_address,
            detail={"changed": changed},
        )
    return locked


def draft_delete(*, actor: User | None, draft: RoutingDraft, ip_address: str | None = None) -> None:
    """Delete a draft and its runs, audited (the live rules are not touched)."""
    with transaction.atomic():
        audit_record(
            actor=actor,
            action=AuditEvent.Action.DELETE,
            obj=draft,
            ip_address=ip_address,
            detail={"deleted": draft.name, "runs": draft.runs.count()},
        )
        draft.delete()


def draft_publish(
    *, actor: User | None, draft: RoutingDraft, force: bool = False, ip_address: str | None = None
) -> list[dict[str, Any]]:
    """Replace the group's live rules with the draft's in one transaction, audited
    with the diff (returned); ``DraftConflict`` if the live rules changed since the
    draft was copied and ``force`` is not set.

    Each rule is written through routing's services (validated and audited per
    rule, as the API writes them); one more event records the publish with the
    whole diff.  The group row is locked first: the rules_version triggers update
    it, so a rule edited meanwhile waits for this transaction, and the check of
    the version against the draft's base cannot be overtaken.  The draft is then
    re-based on the version the triggers left, its new rules carrying their ids."""
    with transaction.atomic():
        group = ReadingGroup.objects.select_for_update().get(pk=draft.reading_group_id)
        locked = RoutingDraft.objects.select_for_update().get(pk=draft.pk)
        diff = rules_diff(live=live_rules_as_draft(reading_group_id=group.pk), draft=locked.rules)
        version_before = group.rules_version
        changed_since = version_before != locked.based_on_version
        if changed_since and not force:
            raise DraftConflict(
                "The live rules changed since this draft was copied; publish with force "
                "to replace them anyway.",
                diff=diff,
            )
        _rules_apply(group=group, diff=diff, draft_rules=locked.rules, actor=actor, ip=ip_address)
        group.refresh_from_db(fields=["rules_version"])
        locked.rules = live_rules_as_draft(reading_group_id=group.pk)
        locked.based_on_version = group.rules_version
        locked.published_at = timezone.now()
        locked.published_by = actor
        locked.save()
        audit_record(
            actor=actor,
            action=AuditEvent.Action.UPDATE,
            obj=locked,
            ip_address=ip_address,
            detail={
                "published": {
                    "diff": diff,
                    "forced": changed_since,
                    "rules_version": [version_before, group.rules_version],
                }
            },
        )
    draft.refresh_from_db()
    return diff


def _rule_values(rule: dict[str, Any]) -> dict[str, Any]:
    """A draft rule's scalar fields as the model takes them."""
    values = {name: rule[name] for name in SCALAR_FIELDS}
    values["relative_value"] = Decimal(str(rule["relative_value"]))
    return values


def _rules_apply(
    *,
    group: ReadingGroup,
    diff: list[dict[str, Any]],
    draft_rules: list[dict[str, Any]],
    actor: User | None,
    ip: str | None,
) -> None:
    """Make the group's live rules equal the draft's, change by change (the diff's
    ``added`` entries get the ids of the rules created).  Removals first, and the
    draft's default rule last, so the one-default constraint holds at every step."""
    wanted_facilities = {f for rule in draft_rules for f in rule["facilities"]}
    facilities = set(
        Facility.objects.filter(reading_group=group, pk__in=wanted_facilities).values_list(
            "pk", flat=True
        )
    )
    wanted_codes = {c for rule in draft_rules for c in rule["subspecialties"]}
    subspecialties = dict(
        Subspecialty.objects.filter(code__in=wanted_codes).values_list("code", "pk")
    )
    gone = sorted(wanted_facilities - facilities)
    if gone or wanted_codes - subspecialties.keys():
        missing = [str(f) for f in gone] + sorted(wanted_codes - subspecialties.keys())
        raise DomainError(
            "The draft names facilities or subspecialties that no longer exist in this "
            f"group: {', '.join(missing)}; edit the draft first.",
            code="draft_stale",
        )
    live = RoutingRule.objects.filter(reading_group=group).in_bulk(
        [e["id"] for e in diff if e["id"] is not None]
    )
    for entry in diff:
        if entry["change"] == "removed":
            routing_config_delete(actor=actor, instance=live[entry["id"]], ip_address=ip)
    by_id = {rule["id"]: rule for rule in draft_rules if rule["id"] is not None}
    writes = [e for e in diff if e["change"] != "removed"]
    writes.sort(
        key=lambda e: bool((e["after"] if e["change"] == "added" else by_id[e["id"]])["is_default"])
    )
    for entry in writes:
        if entry["change"] == "added":
            rule_data = entry["after"]
            instance = RoutingRule(reading_group=group, **_rule_values(rule_data))
            routing_config_save(actor=actor, instance=instance, ip_address=ip)
            related: tuple[str, ...] = ("facilities", "subspecialties")
            entry["id"] = instance.pk
        else:
            rule_data = by_id[entry["id"]]
            instance = live[entry["id"]]
            fields = entry["fields"]
            if any(name in SCALAR_FIELDS for name in fields):
                before = snapshot(instance)
                for name, value in _rule_values(rule_data).items():
                    setattr(instance, name, value)
                routing_config_save(actor=actor, instance=instance, before=before, ip_address=ip)
            related = tuple(n for n in ("facilities", "subspecialties") if n in fields)
        for name in related:
            values = (
                rule_data["facilities"]
                if name == "facilities"
                else [subspecialties[c] for c in rule_data["subspecialties"]]
            )
            routing_config_set_related(
                instance=instance, name=name, values=values, actor=actor, ip_address=ip
            )


def run_request(
    *,
    actor: User | None,
    draft: RoutingDraft,
    window_start: dt.datetime,
    window_end: dt.datetime,
    ip_address: str | None = None,
) -> SimulationRun:
    """Queue a replay of the window (the task ``simulation.simulation_run``, sent
    after commit); audited."""
    with transaction.atomic():
        run = SimulationRun(
            draft=draft,
            reading_group_id=draft.reading_group_id,
            window_start=window_start,
            window_end=window_end,
            requested_by=actor,
        )
        run.full_clean()
        run.save()
        audit_record(
            actor=actor,
            action=AuditEvent.Action.CREATE,
            obj=run,
            ip_address=ip_address,
            detail={
                "draft": draft.pk,
                "window": [window_start.isoformat(), window_end.isoformat()],
            },
        )
        # Sent once the run row is committed, so the worker finds it.
        enqueue("simulation.simulation_run", run.pk)
    return run


# A run whose worker has not beaten for this long is taken to be dead: the sweep
# queues it again and the next worker to start it takes it over.  Progress beats
# every few hundred studies, a fraction of a second apart.
RUN_STALE_AFTER = dt.timedelta(minutes=2)


class _RunTakenOver(Exception):
    """The run is no longer this worker's (taken over after a stale heartbeat, or
    deleted with its draft): stop replaying and write nothing."""


def run_execute(*, run_id: int) -> None:
    """Run a queued replay (the task's body): stream the window's studies into
    ``engine.replay`` against the draft and the live rules, writing progress and a
    heartbeat every batch, then the result (or the error).

    Idempotent: the run is taken by a conditional UPDATE (queued, or running with
    a stale heartbeat), so a redelivered or re-queued task finds a done, failed or
    live run and leaves it alone; each write after that names the start it took
    (``started_at``), so a worker whose run was taken over stops.  An error in the
    replay marks the run failed with its text and is not raised (a retry would
    fail the same way); only a failure to take the run or record its end is."""
    now = timezone.now()
    taken = SimulationRun.objects.filter(
        Q(status=SimulationRun.Status.QUEUED)
        | Q(status=SimulationRun.Status.RUNNING, heartbeat_at__lt=now - RUN_STALE_AFTER)
        | Q(status=SimulationRun.Status.RUNNING, heartbeat_at__isnull=True),
        pk=run_id,
    ).update(
        status=SimulationRun.Status.RUNNING,
        started_at=now,
        heartbeat_at=now,
        studies_done=0,
        error="",
    )
    if taken != 1:
        return  # done, failed, deleted, or another worker's
    mine = SimulationRun.objects.filter(pk=run_id, started_at=now)

    def progress(done: int) -> None:
        # One small UPDATE in autocommit: the page reads it at once, and no long
        # transaction holds the run row.
        if not mine.update(studies_done=done, heartbeat_at=timezone.now()):
            raise _RunTakenOver

    try:
        result, total = _run_replay(run_id=run_id, started=now, progress=progress)
    except _RunTakenOver:
        return
    except Exception as error:  # the replay's own failure: shown on the run
        mine.update(
            status=SimulationRun.Status.FAILED,
            error=f"{type(error).__name__}: {error}"[:4000],
            finished_at=timezone.now(),
            heartbeat_at=timezone.now(),
        )
        return
    mine.update(
        status=SimulationRun.Status.DONE,
        result=result,
        studies_done=total,
        finished_at=timezone.now(),
        heartbeat_at=timezone.now(),
    )


def _run_replay(
    *, run_id: int, started: dt.datetime, progress: Callable[[int], None]
) -> tuple[dict[str, Any], int]:
    """The replay of a taken run: its studies counted, the roster, reading rates
    and both rule sets read, the studies streamed through ``engine.replay``; the
    result with what the engine does not know (when the history began, the
    reading model) and the number of studies."""
    run = (
        SimulationRun.objects.select_related("draft", "reading_group")
        .filter(pk=run_id, started_at=started)
        .first()
    )
    if run is None:
        raise _RunTakenOver
    group_id = run.reading_group_id
    window = (run.window_start, run.window_end)
    total = replay_studies_count(
        reading_group_id=group_id, window_start=window[0], window_end=window[1]
    )
    if not SimulationRun.objects.filter(pk=run_id, started_at=started).update(studies_total=total):
        raise _RunTakenOver
    minutes, default_minutes = reading_minutes(reading_group_id=group_id, until=window[1])
    roster = HistoryRoster(reading_group_id=group_id, since=window[0], until=window[1])
    result = engine.replay(
        replay_studies(reading_group_id=group_id, window_start=window[0], window_end=window[1]),
        live=sim_rules(live_rules_as_draft(reading_group_id=group_id)),
        draft=sim_rules(run.draft.rules),
        roster=roster,
        reading_minutes=minutes,
        default_reading_minutes=default_minutes,
        window=window,
        progress=progress,
        aging_step=dt.timedelta(minutes=run.reading_group.worklist_aging_minutes),
        # Every reader of the group: their shift starts retry unroutable studies.
        readers=list(roster.timelines),
    )
    if result.get("history_began") is None:  # the engine cannot know it
        began = history_began(reading_group_id=group_id)
        result["history_began"] = began.isoformat() if began is not None else None
    result.setdefault(
        "reading_model",
        {
            "default_minutes": round(default_minutes, 2),
            "readers": {str(r): round(m, 2) for r, m in sorted(minutes.items())},
        },
    )
    return result, int(result.get("studies", total))


def runs_recover(*, now: dt.datetime) -> int:
    """The sweep behind the task: re-queue runs queued but never started, and runs
    whose worker stopped beating; the number re-queued.

    A run is re-queued at most once every ``RUN_STALE_AFTER``: re-queuing puts a
    stale running run back to queued and stamps the time on ``heartbeat_at`` (a
    queued run's clock), so a worker busy elsewhere is not sent a pile of copies;
    the worker that starts it takes it by ``run_execute``'s conditional UPDATE."""
    stale = now - RUN_STALE_AFTER
    never_started = Q(status=SimulationRun.Status.QUEUED) & (
        Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True, created_at__lt=stale)
    )
    stopped = Q(status=SimulationRun.Status.RUNNING) & (
        Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True, started_at__lt=stale)
    )
    requeued = 0
    for run_id in SimulationRun.objects.filter(never_started | stopped).values_list(
        "pk", flat=True
    ):
        # Conditional: a worker that beat or finished meanwhile keeps its run.
        if (
            SimulationRun.objects.filter(never_started | stopped, pk=run_id).update(
                status=SimulationRun.Status.QUEUED, heartbeat_at=now
            )
            == 1
        ):
            enqueue("simulation.simulation_run", run_id)
            requeued += 1
    return requeued


def _studies_named(result: dict[str, Any]) -> list[int]:
    """The studies a run's result names (the sample that would go elsewhere and the
    recorded differences): their labels are accession numbers, patient data."""
    items = [*((result.get("elsewhere") or {}).get("sample") or [])]
    items += (result.get("recorded") or {}).get("differences") or []
    return sorted({int(i["study_id"]) for i in items if isinstance(i, dict) and "study_id" in i})


def runs_read_record(
    *, user: Any, runs: list[SimulationRun], ip_address: str | None, view: str
) -> None:
    """Audit the read of the studies finished runs' results name, one event per
    study (as the operations page lists studies), for a page or an API answer."""
    from access.selectors import study_list_visible

    for run in runs:
        if run.status != SimulationRun.Status.DONE or not run.result:
            continue
        named = _studies_named(run.result)
        if not named:
            continue
        studies = study_list_visible(user=user).filter(
            pk__in=named, facility__reading_group_id=run.reading_group_id
        )
        audit_record_many(
            actor=user,
            action=AuditEvent.Action.LIST,
            object_type="studies.study",
            items=[(str(pk), pid) for pk, pid in studies.values_list("pk", "patient_id")],
            ip_address=ip_address,
            detail={"view": view, "run": run.pk},
        )
