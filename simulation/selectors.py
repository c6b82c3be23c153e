"""What the simulator reads: drafts and runs an admin may see, the live rules as a
draft, a draft's diff against them, and the replay's input (the window's studies
streamed in arrival order, the readers' reading rates, the recorded decisions)."""

from __future__ import annotations

import datetime as dt
import statistics
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from django.db.models import DateTimeField, Exists, F, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce, Greatest

from network.selectors import AnyUser, reading_groups_administered
from routing.models import RoutingDecision, RoutingRule
from routing.rules import StudyKey
from simulation.engine import RecordedDecision, SimStudy
from simulation.models import RoutingDraft, SimulationRun
from simulation.rulesets import RULE_FIELDS, rule_as_dict
from studies.models import Study
from studies.states import StudyStatus

STUDY_CHUNK = 2000
READING_HISTORY = dt.timedelta(days=90)
DEFAULT_READING_MINUTES = 20.0


def live_rules_as_draft(*, reading_group_id: int) -> list[dict[str, Any]]:
    """The group's live rules, active or not, in the draft representation
    (``simulation.rulesets``), in the order live routing tries them: three
    queries (the rules, their facilities, their subspecialty codes)."""
    rules = list(
        RoutingRule.objects.filter(reading_group_id=reading_group_id).order_by(
            "is_default", "position", "id"
        )
    )
    ids = [r.pk for r in rules]
    facilities: dict[int, list[int]] = defaultdict(list)
    for rule_id, facility_id in RoutingRule.facilities.through.objects.filter(
        routingrule_id__in=ids
    ).values_list("routingrule_id", "facility_id"):
        facilities[rule_id].append(facility_id)
    codes: dict[int, list[str]] = defaultdict(list)
    for rule_id, code in RoutingRule.subspecialties.through.objects.filter(
        routingrule_id__in=ids
    ).values_list("routingrule_id", "subspecialty__code"):
        codes[rule_id].append(code)
    return [rule_as_dict(r, facilities=facilities[r.pk], subspecialties=codes[r.pk]) for r in rules]


def _replayed_studies(
    *, reading_group_id: int, window_start: dt.datetime, window_end: dt.datetime
) -> QuerySet[Study]:
    """The studies of the group a replay of the window decides: those that became
    ready (``ready_at``) in the window and that live routing routed or would route.

    Kept: every study past ``ready`` (offered, claimed, preliminary, final: each
    was routed), a ready one still waiting for its decision, and a cancelled one
    that had been routed (it has a decision: cancelled after it was offered).
    Left out: priors (never routed), studies still receiving, and studies
    cancelled before any decision (a study cancelled while receiving has no
    ``ready_at``; one cancelled while held for its order or priors has no
    decision)."""
    decided = Exists(RoutingDecision.objects.filter(study_id=OuterRef("pk")))
    return Study.objects.filter(
        Q(
            status__in=[
                StudyStatus.READY,
                StudyStatus.OFFERED,
                StudyStatus.CLAIMED,
                StudyStatus.PRELIMINARY,
                StudyStatus.FINAL,
            ]
        )
        | Q(decided, status=StudyStatus.CANCELLED),
        facility__reading_group_id=reading_group_id,
        is_prior=False,
        ready_at__gte=window_start,
        ready_at__lt=window_end,
    )


def replay_studies_count(
    *, reading_group_id: int, window_start: dt.datetime, window_end: dt.datetime
) -> int:
    """How many studies ``replay_studies`` streams for the window."""
    return _replayed_studies(
        reading_group_id=reading_group_id, window_start=window_start, window_end=window_end
    ).count()


def replay_studies(
    *, reading_group_id: int, window_start: dt.datetime, window_end: dt.datetime
) -> Iterator[SimStudy]:
    """The window's studies of the group (``_replayed_studies``) as the replay reads
    them, in arrival order, streamed in chunks of ``STUDY_CHUNK`` rows (plain
    tuples, never model instances), each with its first recorded routing decision
    (one query per chunk).

    A study arrives when live routing first decided it: its first recorded
    decision's time.  ``ready_at`` alone is not that moment: a study held for its
    order or priors is routed when the hold ends, and a re-routed study is stamped
    ready again.  One not decided yet arrives when it became ready, or when its
    hold ends."""
    first_decision = Subquery(
        RoutingDecision.objects.filter(study_id=OuterRef("pk"))
        .order_by("created_at", "id")
        .values("created_at")[:1],
        output_field=DateTimeField(),
    )
    ready = F("ready_at")
    arrival = Coalesce(
        first_decision,
        Greatest(
            ready,
            Coalesce("order_hold_until", ready),
            Coalesce("priors_hold_until", ready),
        ),
        output_field=DateTimeField(),
    )
    rows = (
        _replayed_studies(
            reading_group_id=reading_group_id, window_start=window_start, window_end=window_end
        )
        .annotate(arrival=arrival)
        .order_by("arrival", "pk")
        .values_list(
            "pk",
            "accession_number",
            "study_instance_uid",
            "facility_id",
            "modality",
            "body_part",
            "study_description",
            "procedure_code",
            "priority",
            "flags",
            "patient_jurisdiction__code",
            "received_at",
            "arrival",
            "sla_due_at",
        )
        .iterator(chunk_size=STUDY_CHUNK)
    )
    chunk: list[tuple[Any, ...]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= STUDY_CHUNK:
            yield from _sim_studies(chunk)
            chunk = []
    if chunk:
        yield from _sim_studies(chunk)


def _sim_studies(rows: list[tuple[Any, ...]]) -> Iterator[SimStudy]:
    recorded = first_decisions(study_ids=[r[0] for r in rows])
    for (
        pk,
        accession,
        uid,
        facility_id,
        modality,
        body_part,
        description,
        procedure_code,
        priority,
        flags,
        jurisdiction,
        received_at,
        arrival,
        due_at,
    ) in rows:
        yield SimStudy(
            study_id=pk,
            label=accession or uid,
            key=StudyKey(
                facility_id=facility_id,
                modality=modality,
                body_part=body_part,
                description=description,
                procedure_code=procedure_code,
                priority=priority,
                flags=frozenset(str(f) for f in (flags or [])),
            ),
            jurisdiction=jurisdiction,
            received_at=received_at,
            arrived_at=arrival,
            due_at=due_at,
            recorded=recorded.get(pk),
        )


def first_decisions(*, study_ids: list[int]) -> dict[int, RecordedDecision]:
    """Each study's first recorded routing decision, by study id (one query)."""
    out: dict[int, RecordedDecision] = {}
    for study_id, rule_name, tier, outcome, offered_to in (
        RoutingDecision.objects.filter(study_id__in=study_ids)
        .order_by("study_id", "created_at", "id")
        .values_list("study_id", "rule_name", "tier", "outcome", "offered_to")
    ):
        if study_id not in out:
            out[study_id] = RecordedDecision(
                rule_name=rule_name,
                tier=tier,
                outcome=outcome,
                offered_to=frozenset(int(r) for r in offered_to or ()),
            )
    return out


def reading_minutes(*, reading_group_id: int, until: dt.datetime) -> tuple[dict[int, float], float]:
    """How long the group's readers take to read a study, from their real work:
    per reader, the median minutes from claiming a study to signing its first
    report (``claimed_at`` to ``preliminary_at``, or ``finalized_at`` if there was
    no preliminary read or it came after), over the studies of the group they
    claimed in the 90 days before ``until``; and the default for a reader with no
    such study, the median over all of them (20 minutes when the group has none).

    A study claimed again after a release counts from its last claim (the one
    that led to the report); a study whose claim is later than its signature (a
    preliminary read signed by someone else before this reader took the final)
    counts from its last claim to its final report.  The median, not the mean:
    a claim left open overnight would pull a mean by hours."""
    per_reader: dict[int, list[float]] = defaultdict(list)
    rows = (
        Study.objects.filter(
            facility__reading_group_id=reading_group_id,
            assigned_radiologist__isnull=False,
            claimed_at__gte=until - READING_HISTORY,
            claimed_at__lt=until,
        )
        .filter(Q(finalized_at__isnull=False) | Q(preliminary_at__isnull=False))
        .order_by()
        .values_list("assigned_radiologist_id", "claimed_at", "preliminary_at", "finalized_at")
        .iterator(chunk_size=STUDY_CHUNK)
    )
    for reader_id, claimed_at, preliminary_at, finalized_at in rows:
        if reader_id is None or claimed_at is None:
            continue  # excluded by the filter: for the type checker
        signed = [t for t in (preliminary_at, finalized_at) if t is not None and t >= claimed_at]
        if signed:
            per_reader[reader_id].append((min(signed) - claimed_at).total_seconds() / 60)
    everyone = [m for minutes in per_reader.values() for m in minutes]
    default = float(statistics.median(everyone)) if everyone else DEFAULT_READING_MINUTES
    return {r: float(statistics.median(m)) for r, m in per_reader.items()}, default


# --- Drafts and runs (the API and the pages) ------------------------------------
# Fields whose lists are sets: their order carries no meaning (escalate_fractions'
# does).
_SET_FIELDS = frozenset(
    {"facilities", "modalities", "body_parts", "priorities", "flags", "subspecialties"}
)


def drafts_visible(*, user: AnyUser) -> QuerySet[RoutingDraft]:
    """The drafts of the reading groups the user administers (no one else's)."""
    return RoutingDraft.objects.filter(reading_group__in=reading_groups_administered(user=user))


def runs_visible(*, user: AnyUser) -> QuerySet[SimulationRun]:
    """The runs of the reading groups the user administers (no one else's)."""
    return SimulationRun.objects.filter(reading_group__in=reading_groups_administered(user=user))


def _comparable(name: str, value: Any) -> Any:
    if name in _SET_FIELDS and isinstance(value, list):
        return sorted(value, key=str)
    if name == "escalate_fractions" and isinstance(value, list):
        return [float(x) for x in value]
    return value


def rules_diff(*, live: list[dict[str, Any]], draft: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What publishing ``draft`` over ``live`` changes, rule by rule (matched by id):

    - ``{"change": "added", "id": None, "name", "after": rule}`` for a draft rule
      with no id, or whose live rule is gone;
    - ``{"change": "changed", "id", "name", "fields": {field: {"before", "after"}}}``
      for a live rule the draft edits (rules it leaves alone are not listed);
    - ``{"change": "removed", "id", "name", "before": rule}`` for a live rule the
      draft drops.

    Added and changed in the draft's order, then removed in the live order."""
    by_id = {rule["id"]: rule for rule in live}
    kept: set[int] = set()
    diff: list[dict[str, Any]] = []
    for rule in draft:
        before = by_id.get(rule.get("id"))
        if before is None:
            diff.append(
                {"change": "added", "id": None, "name": rule["name"], "after": {**rule, "id": None}}
            )
            continue
        kept.add(before["id"])
        fields = {
            name: {"before": before[name], "after": rule[name]}
            for name in RULE_FIELDS
            if name != "id" and _comparable(name, before[name]) != _comparable(name, rule[name])
        }
        if fields:
            diff.append(
                {"change": "changed", "id": before["id"], "name": rule["name"], "fields": fields}
            )
    diff += [
        {"change": "removed", "id": rule["id"], "name": rule["name"], "before": rule}
        for rule in live
        if rule["id"] not in kept
    ]
    return diff


def draft_diff(draft: RoutingDraft) -> list[dict[str, Any]]:
    """What publishing the draft would change in its group's live rules now
    (``rules_diff``)."""
    return rules_diff(
        live=live_rules_as_draft(reading_group_id=draft.reading_group_id), draft=draft.rules
    )
