"""The replay: a discrete-event simulation of routing over past studies.

Pure: no database, no Django.  Each study is decided at its arrival (the moment
it became ready) with the same rule matching (``routing.rules.first_match``), the
same policy (``routing.eligibility.ROUTE``) and the same widening
(``routing.eligibility.widen``) as live routing; tier timers
(``eligibility.escalation_wait``), re-judging at the widest tier and
``sla_at_risk`` run in simulated time; readers take work as modelled below.  Two
arms (the live rules and the draft) run side by side over one pass of the
studies, so their comparison is not against reality's noise.

The model, arm by arm (each arm has its own offers, claims and load):

- **Arrival.** The arm's first matching rule (none: unroutable, for good: the
  rules do not change during a replay).  The candidates are ``Roster.plausible``
  with ``Roster.facts`` under the arm's simulated load; ``widen`` from the
  hyperlocal tier to the rule's widest.  An auto-assign rule offers the first
  eligible reader and times out after ``accept_timeout``; otherwise every eligible
  reader is offered it and the timer is ``escalation_wait`` (as
  ``routing.services._tier_wait``).
- **Timer.** As ``routing.services.study_escalate``: an unanswered auto-assignment
  is withdrawn, its reader passed over for good, and the study offered to the next
  one from the same tier; an offer's holders are judged again with ``KEEP_OFFER``
  (the lapsed withdrawn) and the offer widened from the next tier, else re-armed at
  the widest tier while someone eligible or a kept holder may take it and the SLA
  is not at risk, else the study is unroutable.
- **Unroutable retries.** Live routing retries every 60 s until someone takes it
  or an admin assigns it by hand; here a study with no offer is retried until a
  day after its arrival (or its due time, if later: ``GIVE_UP_AFTER``), then it
  is counted unclaimed and dropped (``given_up``: by then an admin would have
  assigned it, which is not modelled; retrying to the end of the window would
  make the replay's cost grow with the square of the window).  A study is
  retried at the next instant the roster can have changed, never later than the
  next ``unroutable_retry`` mark (default 15 minutes, counted from the window's
  start so that studies waiting together retry together and share one
  decision): the next shift start of any of the group's readers (``readers``),
  or the end of a read
  of a reader who was excluded only for being at their workload cap.  A license
  or privilege that becomes valid, or a pause that ends, is therefore seen at
  most ``unroutable_retry`` late.
- **Readers (the claim model).** A reader reads one study at a time, for
  ``reading_minutes[reader]`` (else ``default_reading_minutes``): their real
  reading rate, measured by the caller.  Whenever a reader is free, on shift and
  available, they claim the top of their worklist in this arm (their open offers
  in the live worklist's order: ``received_at + (priority - 1) * aging_step``,
  then priority, then study id; ``worklist.aging``) that the ``CLAIM`` policy
  lets them take now; the claim withdraws the study's other offers and stops its
  timer.  A reader is woken when an offer reaches them, when a read ends, at
  their next shift start (when they hold offers) and, while paused or refused,
  at the next ``unroutable_retry`` mark.  While reading they have one open claim
  (so workload caps of 0 and 1 bite); their recent work is the relative value of
  what they claimed in the last 8 hours of simulated time
  (``routing.selectors.RECENT_WORK_WINDOW``).
- **Not modelled.** Declines, releases and manual assignment; a reader's offers
  are not withdrawn the moment their shift ends (live routing's eligibility
  sweep) but at the study's next timer, by ``KEEP_OFFER``; the unroutable
  reason when nobody at all is plausible cannot tell "nobody on shift" from
  "nobody licensed" (the roster answers only the plausible), so it names both.

Metrics (docs/simulation.md, "Result"): the final tier counts every study (its
tier when claimed, or its current tier at the end of the window); a study's SLA
is met when its claim plus the reader's reading time is no later than its due
time, missed when that is later or when it is still unclaimed at the end of the
window past its due time (else not counted); at risk once it was unclaimed past
``sla_at_risk``'s point; unroutable reasons count each distinct reason a study
was given once.  Fairness is the operations page's figure
(``turnaround.operations._fairness``: coefficient of variation = population
standard deviation / mean of the readers' work, and max / mean) over the
readers who claimed at least once or were offered something in the arm.

Memory is bounded by what is open: a study's state is kept only while it is
open in an arm (and the decided ones reduce to counters and per-priority lists
of durations); the studies are read from the iterator one at a time.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import math
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from routing.eligibility import (
    AT_RISK_SHARE,
    CLAIM,
    KEEP_OFFER,
    REASON_TEXT,
    ROUTE,
    CandidateFacts,
    Reason,
    StudyFacts,
    Verdict,
    escalation_wait,
    sla_at_risk,
    unroutable_summary,
    widen,
)
from routing.rules import RuleKey, StudyKey, first_match


@dataclass(frozen=True)
class SimRule:
    """What routing reads of a rule (``routing.models.RoutingRule``), as plain data."""

    key: RuleKey
    name: str
    subspecialties: frozenset[str]
    allow_general: bool
    allow_preliminary: bool
    bypass_cap_for_stat: bool
    relative_value: float
    auto_assign: bool
    accept_timeout: dt.timedelta
    escalate_fractions: tuple[float, ...]  # only those up to the widest tier
    widest_tier: int  # the widest tier it may be offered at (0-2)
    min_tier_wait: dt.timedelta
    tier_waits: Mapping[int, dt.timedelta]  # the longest wait at one tier, by priority


@dataclass(frozen=True)
class RecordedDecision:
    """The first decision live routing recorded for a study (to compare with)."""

    rule_name: str
    tier: int
    outcome: str  # "offered", "escalated" or "unroutable"
    offered_to: frozenset[int]


@dataclass(frozen=True)
class SimStudy:
    study_id: int
    label: str  # accession number, else the study instance UID
    key: StudyKey
    jurisdiction: str  # the patient's jurisdiction code
    received_at: dt.datetime
    arrived_at: dt.datetime  # when it became ready to route (its decision time)
    due_at: dt.datetime  # its SLA
    recorded: RecordedDecision | None = None


class Roster(Protocol):
    """The readers as they were (``simulation.roster`` builds it from
    ``network.history``), answering for an instant."""

    def name(self, radiologist_id: int) -> str: ...

    def plausible(self, facility_id: int, jurisdiction: str, at: dt.datetime) -> list[int]:
        """The group's readers on shift at ``at`` holding some license in the
        jurisdiction and some privilege at the facility, valid or not (live
        routing's ``_plausible_pairs``): the candidates a decision judges."""
        ...

    def facts(
        self,
        radiologist_id: int,
        *,
        facility_id: int,
        jurisdiction: str,
        at: dt.datetime,
        open_claims: int,
        recent_work: float,
    ) -> CandidateFacts:
        """The reader's facts for that study at ``at``, with the simulated load."""
        ...

    def on_shift(self, radiologist_id: int, at: dt.datetime) -> bool: ...

    def available(self, radiologist_id: int, at: dt.datetime) -> bool: ...

    def next_shift_start(self, radiologist_id: int, after: dt.datetime) -> dt.datetime | None: ...


# What live routing calls these (routing.models.TIERS, routing.selectors and
# routing.services; not importable here: the engine stays pure).
TIER_NAMES = {0: "hyperlocal", 1: "regional", 2: "global"}
RECENT_WORK_WINDOW = dt.timedelta(hours=8)
NO_RULE = "no routing rule matches the study and the group has no default rule"
SLA_AT_RISK = "SLA at risk and its offered readers cannot take it: "
PROGRESS_EVERY = 500
DIFFERENCES_KEPT = 20
_EMPTY: frozenset[int] = frozenset()
_AT_CAP_ONLY = (Reason.AT_CAP,)
# Claim refusals that hold for every study, not only the one judged.
_REFUSE_ANY = frozenset({Reason.UNAVAILABLE, Reason.INACTIVE, Reason.OFF_SHIFT})

# Event kinds (the heap holds (time, seq, arm, kind, a, b); seq counts per arm, so
# each arm's own events run in the order it made them, whatever the other does).
_TIMER = 0  # a study's routing timer: (study id, timer version)
_WAKE = 1  # a reader looks at their worklist: (reader id, 0)
_READ_END = 2  # a reader finished a read: (reader id, 0)

_Widened = tuple[int, list[Verdict], list[Verdict]]


@dataclass(slots=True)
class _Decision:
    """One routing decision of one arm, kept only for a study's first."""

    rule: SimRule | None
    tier: int
    verdicts: list[Verdict]
    chosen: list[Verdict]
    reason: str  # the unroutable reason ("" when offered)

    @property
    def outcome(self) -> str:
        return "offered" if self.chosen else "unroutable"

    def signature(self) -> tuple[str | None, int, str, frozenset[int]]:
        return (
            self.rule.name if self.rule else None,
            self.tier,
            self.outcome,
            frozenset(v.radiologist_id for v in self.chosen),
        )

    def explanation(self) -> dict[str, Any]:
        """The ``Explanation`` of docs/simulation.md."""
        n = len(self.chosen)
        return {
            "rule": self.rule.name if self.rule else None,
            "tier": self.tier,
            "outcome": self.outcome,
            "offered_to": [
                {"radiologist_id": v.radiologist_id, "name": v.name} for v in self.chosen
            ],
            "reason": self.reason
            or f"offered to {n} reader(s) at the {TIER_NAMES.get(self.tier, str(self.tier))} tier",
            "excluded": [
                {"name": v.name, "explanation": "; ".join(REASON_TEXT[r] for r in v.reasons)}
                for v in self.verdicts
                if not v.eligible
            ][:10],
        }


class _Open:
    """A study open (not yet claimed) in one arm."""

    __slots__ = (
        "ever_unroutable",
        "first_offer_at",
        "offer_tier",
        "offered",
        "passed",
        "rank",
        "reasons",
        "risk_at",
        "rule",
        "study",
        "tier",
        "unroutable",
        "version",
    )

    def __init__(self, study: SimStudy, rule: SimRule, rank: tuple[dt.datetime, int, int]):
        self.study = study
        self.rule = rule
        self.rank = rank
        self.tier = 0
        self.offer_tier: int | None = None  # the tier of its latest offer
        self.offered: set[int] = set()  # readers holding an open offer
        self.passed: set[int] | None = None  # auto-assigned readers who let it time out
        self.version = 0  # the live timer's; an older timer event is stale
        self.first_offer_at: dt.datetime | None = None
        self.unroutable = False
        self.ever_unroutable = False
        self.reasons: set[str] | None = None
        self.risk_at = _risk_at(study, rule.escalate_fractions)


# An unroutable study with no offer is retried until a day after its arrival, or its
# due time if later; then it is left to a group admin (see ``_Replay._unroutable``).
GIVE_UP_AFTER = dt.timedelta(hours=24)


def _give_up_at(study: SimStudy) -> dt.datetime:
    return max(study.due_at, study.arrived_at + GIVE_UP_AFTER)


def _risk_at(study: SimStudy, fractions: Sequence[float]) -> dt.datetime:
    """When ``sla_at_risk`` turns true for the study (for the "at_risk" figure)."""
    target = study.due_at - study.received_at
    widest_since = study.received_at + target * (fractions[-1] if fractions else 0.0)
    return max(widest_since, study.due_at - target * AT_RISK_SHARE)


class _Reader:
    """One reader in one arm."""

    __slots__ = (
        "busy_seconds",
        "claimed",
        "held",
        "offered_ever",
        "reading",
        "recent",
        "recent_sum",
        "wake_at",
        "work",
        "worklist",
    )

    def __init__(self) -> None:
        self.reading = False
        self.recent: deque[tuple[dt.datetime, float]] = deque()
        self.recent_sum = 0.0
        # Open offers as (rank_at, priority, study id), a heap; entries of offers
        # since withdrawn are dropped when met (and by a compaction).
        self.worklist: list[tuple[dt.datetime, int, int]] = []
        self.held = 0  # open offers
        self.wake_at: dt.datetime | None = None  # the earliest wake pending
        self.offered_ever = False
        self.claimed = 0
        self.work = 0.0
        self.busy_seconds = 0.0


class _PriorityFigures:
    __slots__ = ("at_risk", "met", "missed", "studies", "to_claim", "to_offer")

    def __init__(self) -> None:
        self.studies = 0
        self.to_offer: list[float] = []
        self.to_claim: list[float] = []
        self.met = 0
        self.missed = 0
        self.at_risk = 0


class _Arm:
    """One rule set's simulation: its rules, open studies, readers and figures."""

    def __init__(self, index: int, name: str, rules: Sequence[SimRule]) -> None:
        self.index = index
        self.name = name
        self.keys = [r.key for r in rules]
        self.rule_of = {id(r.key): r for r in rules}
        self.matched: dict[StudyKey, SimRule | None] = {}
        self.open: dict[int, _Open] = {}
        self.readers: dict[int, _Reader] = {}
        self.seq = itertools.count()
        # Moves with every claim and read end: decisions at one instant with the
        # same load version see the same candidate facts (memoized).
        self.load_version = 0
        # Unroutable studies to retry when a reader who was only at their cap ends a read.
        self.cap_blocked: dict[int, set[int]] = {}
        # Figures.
        self.first_offer_by_tier = [0, 0, 0]
        self.final_tier = [0, 0, 0]
        self.escalations = 0
        self.unroutable = 0
        self.never_offered = 0
        self.reasons: Counter[str] = Counter()
        self.claimed = 0
        self.unclaimed_at_end = 0
        self.given_up = 0  # unroutable for a day and past due: left to an admin
        self.by_priority: dict[int, _PriorityFigures] = {p: _PriorityFigures() for p in (1, 2, 3)}

    def match(self, key: StudyKey) -> SimRule | None:
        try:
            return self.matched[key]
        except KeyError:
            pass
        found = first_match(self.keys, key)
        rule = self.rule_of[id(found)] if found is not None else None
        if len(self.matched) >= 50_000:  # bounded: studies rarely share keys beyond that
            self.matched.clear()
        self.matched[key] = rule
        return rule

    def reader(self, radiologist_id: int) -> _Reader:
        found = self.readers.get(radiologist_id)
        if found is None:
            found = self.readers[radiologist_id] = _Reader()
        return found

    def priority(self, priority: int) -> _PriorityFigures:
        found = self.by_priority.get(priority)
        if found is None:
            found = self.by_priority[priority] = _PriorityFigures()
        return found


def _mix(n: int) -> int:
    """A fixed 64-bit hash of a study id (splitmix64): the samples are the studies
    with the smallest, so they are spread over the window and the same every run."""
    z = (n + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


class _Sample:
    """The ``size`` entries with the smallest hash of their study id (a max-heap)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.heap: list[tuple[int, int, dict[str, Any]]] = []

    def wants(self, study_id: int) -> bool:
        return self.size > 0 and (len(self.heap) < self.size or -self.heap[0][0] > _mix(study_id))

    def add(self, study_id: int, entry: dict[str, Any]) -> None:
        item = (-_mix(study_id), study_id, entry)
        if len(self.heap) < self.size:
            heapq.heappush(self.heap, item)
        else:
            heapq.heapreplace(self.heap, item)

    def entries(self) -> list[dict[str, Any]]:
        return [e for _, _, e in sorted(self.heap, key=lambda i: i[2]["_order"])]


def _summary(values: list[float]) -> dict[str, float | None]:
    """p50, p90 and max of durations in seconds (linear interpolation; None if none)."""
    if not values:
        return {"p50": None, "p90": None, "max": None}
    ordered = sorted(values)

    def at(q: float) -> float:
        pos = q * (len(ordered) - 1)
        low = int(pos)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)

    return {"p50": round(at(0.5), 1), "p90": round(at(0.9), 1), "max": round(ordered[-1], 1)}


def _fairness(work: list[float]) -> dict[str, Any]:
    """``turnaround.operations._fairness`` over these readers' work."""
    n = len(work)
    if not n:
        return {
            "readers": 0,
            "mean_work": None,
            "max_work": None,
            "coefficient_of_variation": None,
            "max_over_mean": None,
        }
    mean = sum(work) / n
    top = max(work)
    if mean <= 0:
        return {
            "readers": n,
            "mean_work": 0.0,
            "max_work": 0.0,
            "coefficient_of_variation": None,
            "max_over_mean": None,
        }
    variance = max(0.0, sum(w * w for w in work) / n - mean * mean)
    return {
        "readers": n,
        "mean_work": round(mean, 3),
        "max_work": round(top, 2),
        "coefficient_of_variation": round(math.sqrt(variance) / mean, 3),
        "max_over_mean": round(top / mean, 3),
    }


def _outcome_class(outcome: str) -> str:
    return "unroutable" if outcome == "unroutable" else "offered"


class _Replay:
    def __init__(
        self,
        *,
        live: Sequence[SimRule],
        draft: Sequence[SimRule],
        roster: Roster,
        reading_minutes: Mapping[int, float],
        default_reading_minutes: float,
        window: tuple[dt.datetime, dt.datetime],
        sample_size: int,
        aging_step: dt.timedelta,
        unroutable_retry: dt.timedelta,
        readers: Iterable[int] = (),
    ) -> None:
        self.roster = roster
        self.reading_minutes = reading_minutes
        self.default_reading = dt.timedelta(minutes=default_reading_minutes)
        self.reading: dict[int, dt.timedelta] = {
            r: dt.timedelta(minutes=m) for r, m in reading_minutes.items()
        }
        self.start, self.end = window
        self.aging_step = aging_step
        self.retry = unroutable_retry
        self.arms = (_Arm(0, "live", live), _Arm(1, "draft", draft))
        self.events: list[tuple[dt.datetime, int, int, int, int, int]] = []
        # Answers that hold for one instant (plausible readers, facts, widenings).
        self._memo: dict[tuple[Any, ...], Any] = {}
        self._memo_at: dt.datetime | None = None
        # Shift starts, per reader: (asked after, answer), valid until the answer.
        # The readers whose shift starts retry unroutable studies: those named,
        # those with a reading rate, and any the roster has answered with.
        self._known: set[int] = {*readers, *reading_minutes}
        self._starts: dict[int, tuple[dt.datetime, dt.datetime | None]] = {}
        self._change: tuple[dt.datetime, dt.datetime | None, int] | None = None
        # The comparison.
        self.studies = 0
        self.elsewhere = 0
        self.elsewhere_sample = _Sample(sample_size)
        self.compared = 0
        self.same = 0
        self.differences = _Sample(DIFFERENCES_KEPT)

    # --- the loop -----------------------------------------------------------------

    def run(
        self, studies: Iterable[SimStudy], progress: Callable[[int], None] | None
    ) -> dict[str, Any]:
        last: dt.datetime | None = None
        for study in studies:
            if last is not None and study.arrived_at < last:
                raise ValueError(
                    f"studies must come in arrival order: study {study.study_id} arrived "
                    f"at {study.arrived_at.isoformat()}, before {last.isoformat()}"
                )
            last = study.arrived_at
            # What happens at a study's arrival instant happens after it (and after
            # the other studies of that instant): a reader woken then sees them all.
            self._advance(study.arrived_at, before=True)
            self._arrive(study)
            self.studies += 1
            if progress is not None and self.studies % PROGRESS_EVERY == 0:
                progress(self.studies)
        self._advance(self.end)
        if progress is not None:
            progress(self.studies)
        return self._result()

    def _advance(self, until: dt.datetime, *, before: bool = False) -> None:
        """Run every event due before ``until`` (and at it, unless ``before``), in
        time order."""
        events = self.events
        arms = self.arms
        while events and (events[0][0] < until or (not before and events[0][0] == until)):
            at, _, arm_index, kind, a, b = heapq.heappop(events)
            arm = arms[arm_index]
            if kind == _TIMER:
                self._timer(arm, a, b, at)
            elif kind == _WAKE:
                reader = arm.readers[a]
                if reader.wake_at == at:
                    reader.wake_at = None
                self._wake(arm, a, at)
            else:
                self._read_end(arm, a, at)

    def _push(self, arm: _Arm, at: dt.datetime, kind: int, a: int, b: int = 0) -> None:
        heapq.heappush(self.events, (at, next(arm.seq), arm.index, kind, a, b))

    def _instant(self, now: dt.datetime) -> dict[tuple[Any, ...], Any]:
        if self._memo_at != now:
            self._memo.clear()
            self._memo_at = now
        return self._memo

    # --- decisions ----------------------------------------------------------------

    def _arrive(self, study: SimStudy) -> None:
        now = study.arrived_at
        key = study.key
        priority = key.priority
        rank = (study.received_at + (priority - 1) * self.aging_step, priority, study.study_id)
        first: list[_Decision] = []
        for arm in self.arms:
            arm.priority(priority).studies += 1
            rule = arm.match(key)
            if rule is None:
                self._ruleless(arm, study)
                first.append(_Decision(None, 0, [], [], NO_RULE))
                continue
            state = _Open(study, rule, rank)
            arm.open[study.study_id] = state
            first.append(self._route(arm, state, now, tier=0))
        live, draft = first
        if live.signature() != draft.signature():
            self.elsewhere += 1
            if self.elsewhere_sample.wants(study.study_id):
                self.elsewhere_sample.add(
                    study.study_id,
                    {
                        "study_id": study.study_id,
                        "label": study.label,
                        "arrived_at": study.arrived_at.isoformat(),
                        "priority": priority,
                        "live": live.explanation(),
                        "draft": draft.explanation(),
                        "_order": (study.arrived_at, study.study_id),
                    },
                )
        recorded = study.recorded
        if recorded is not None:
            self.compared += 1
            same = (
                recorded.tier == live.tier
                and _outcome_class(recorded.outcome) == live.outcome
                and recorded.offered_to == frozenset(v.radiologist_id for v in live.chosen)
            )
            if same:
                self.same += 1
            elif self.differences.wants(study.study_id):
                self.differences.add(
                    study.study_id,
                    {
                        "study_id": study.study_id,
                        "label": study.label,
                        "recorded": {
                            "tier": recorded.tier,
                            "outcome": recorded.outcome,
                            "offered_to": sorted(recorded.offered_to),
                        },
                        "replayed": live.explanation(),
                        "_order": (study.arrived_at, study.study_id),
                    },
                )

    def _ruleless(self, arm: _Arm, study: SimStudy) -> None:
        """A study no rule of the arm matches: unroutable to the end of the window
        (the rules do not change during a replay), so counted at once and not kept."""
        arm.unroutable += 1
        arm.never_offered += 1
        arm.reasons[NO_RULE] += 1
        arm.unclaimed_at_end += 1
        arm.final_tier[0] += 1
        figures = arm.priority(study.key.priority)
        if self.end > study.due_at:
            figures.missed += 1
        if self.end >= _risk_at(study, ()):
            figures.at_risk += 1

    def _facts(self, study: SimStudy, rule: SimRule, now: dt.datetime) -> StudyFacts:
        """What the policy reads of the study under its rule (``routing.selectors.study_facts``)."""
        priority = study.key.priority
        return StudyFacts(
            study_id=study.study_id,
            facility_id=study.key.facility_id,
            jurisdiction=study.jurisdiction,
            priority=priority,
            read_at=now,
            subspecialties=rule.subspecialties,
            allow_general=rule.allow_general,
            allow_preliminary=rule.allow_preliminary,
            bypass_cap=rule.bypass_cap_for_stat and priority == 1,
        )

    def _recent_work(self, reader: _Reader, now: dt.datetime) -> float:
        recent = reader.recent
        if recent:
            since = now - RECENT_WORK_WINDOW
            while recent and recent[0][0] < since:
                reader.recent_sum -= recent.popleft()[1]
            if not recent:
                reader.recent_sum = 0.0  # no drift from the subtractions
        return reader.recent_sum

    def _reader_facts(
        self, arm: _Arm, radiologist_id: int, facility_id: int, jurisdiction: str, now: dt.datetime
    ) -> CandidateFacts:
        """``Roster.facts`` with the arm's load (the same answer for both arms when
        their loads agree, asked once)."""
        reader = arm.readers.get(radiologist_id)
        if reader is None:
            open_claims, recent = 0, 0.0
        else:
            open_claims, recent = int(reader.reading), self._recent_work(reader, now)
        memo = self._instant(now)
        key = ("f", radiologist_id, facility_id, jurisdiction, open_claims, recent)
        found: CandidateFacts | None = memo.get(key)
        if found is None:
            found = memo[key] = self.roster.facts(
                radiologist_id,
                facility_id=facility_id,
                jurisdiction=jurisdiction,
                at=now,
                open_claims=open_claims,
                recent_work=recent,
            )
        return found

    def _candidates(
        self, arm: _Arm, facility_id: int, jurisdiction: str, now: dt.datetime
    ) -> list[CandidateFacts]:
        memo = self._instant(now)
        key = ("c", arm.index, arm.load_version, facility_id, jurisdiction)
        found: list[CandidateFacts] | None = memo.get(key)
        if found is None:
            pkey = ("p", facility_id, jurisdiction)
            plausible: list[int] | None = memo.get(pkey)
            if plausible is None:
                plausible = memo[pkey] = self.roster.plausible(facility_id, jurisdiction, now)
                self._known.update(plausible)
            found = memo[key] = [
                self._reader_facts(arm, r, facility_id, jurisdiction, now) for r in plausible
            ]
        return found

    def _widen(
        self, arm: _Arm, state: _Open, now: dt.datetime, tier: int, skip: frozenset[int]
    ) -> _Widened:
        """``eligibility.widen`` with the routing policy from ``tier`` to the rule's
        widest (memoized: studies of one facility, jurisdiction, rule and priority
        decided at one instant under one load get the same verdicts)."""
        rule = state.rule
        study = state.study
        facility_id = study.key.facility_id
        memo = self._instant(now)
        key = (
            "w",
            arm.index,
            arm.load_version,
            facility_id,
            study.jurisdiction,
            id(rule),
            study.key.priority,
            tier,
            skip,
        )
        found: _Widened | None = memo.get(key)
        if found is None:
            found = memo[key] = widen(
                ROUTE,
                self._facts(study, rule, now),
                self._candidates(arm, facility_id, study.jurisdiction, now),
                tier=min(tier, rule.widest_tier),
                last_tier=rule.widest_tier,
                skip=skip,
            )
        return found

    def _route(
        self, arm: _Arm, state: _Open, now: dt.datetime, *, tier: int, skip: frozenset[int] = _EMPTY
    ) -> _Decision:
        """Offer from ``tier`` (``routing.services._offer_from``), or flag unroutable."""
        rule = state.rule
        reached, verdicts, fresh = self._widen(arm, state, now, tier, skip)
        if not fresh:
            reason = self._nobody_left(arm, state, now, verdicts)
            self._unroutable(arm, state, now, reason, tier=reached, verdicts=verdicts)
            return _Decision(rule, reached, verdicts, [], reason)
        chosen = fresh[:1] if rule.auto_assign else fresh
        self._offer(arm, state, now, reached, chosen)
        return _Decision(rule, reached, verdicts, chosen, "")

    def _unroutable_reason(
        self, arm: _Arm, state: _Open, now: dt.datetime, verdicts: Sequence[Verdict]
    ) -> str:
        """``routing.services.unroutable_reason``, but for the group and facility
        names, and for readers on shift only beyond the rule's widest tier: live
        routing, which judges only up to that tier, says nobody is on shift; here
        the sentence names the tier (what a draft that removes a tier changes)."""
        jurisdiction = state.study.jurisdiction
        if verdicts:
            return unroutable_summary(verdicts, jurisdiction=jurisdiction)
        beyond = len(self._candidates(arm, state.study.key.facility_id, jurisdiction, now))
        if beyond:
            widest = TIER_NAMES.get(state.rule.widest_tier, str(state.rule.widest_tier))
            return (
                f"no radiologist licensed in {jurisdiction} with privileges at the facility "
                f"is on shift within the rule's widest tier ({widest}); {beyond} beyond it"
            )
        return (
            f"no radiologist of the group licensed in {jurisdiction} with privileges at "
            "the facility is on shift"
        )

    def _nobody_left(
        self, arm: _Arm, state: _Open, now: dt.datetime, verdicts: Sequence[Verdict]
    ) -> str:
        """``routing.services._nobody_left_reason``."""
        eligible = sum(1 for v in verdicts if v.eligible)
        if eligible:
            return (
                f"each of the {eligible} eligible radiologist(s) on shift was auto-assigned it "
                "and let it time out or declined it: assign it to a reader"
            )
        return self._unroutable_reason(arm, state, now, verdicts)

    def _offer(
        self, arm: _Arm, state: _Open, now: dt.datetime, tier: int, chosen: Sequence[Verdict]
    ) -> None:
        study = state.study
        rule = state.rule
        if state.first_offer_at is None:
            state.first_offer_at = now
            arm.first_offer_by_tier[tier] += 1
            arm.priority(study.key.priority).to_offer.append(
                (now - study.arrived_at).total_seconds()
            )
        elif state.offer_tier is not None and tier > state.offer_tier:
            arm.escalations += 1
        state.offer_tier = state.tier = tier
        state.unroutable = False
        for verdict in chosen:
            radiologist_id = verdict.radiologist_id
            if radiologist_id in state.offered:
                continue  # an open offer already there stays
            state.offered.add(radiologist_id)
            reader = arm.reader(radiologist_id)
            reader.offered_ever = True
            reader.held += 1
            heapq.heappush(reader.worklist, state.rank)
            if len(reader.worklist) > 2 * reader.held + 32:
                self._compact(arm, radiologist_id, reader)
            if not reader.reading:
                self._wake_at(arm, radiologist_id, reader, now)
        wait = rule.accept_timeout if rule.auto_assign else self._tier_wait(study, rule, tier, now)
        self._timer_set(arm, state, now + wait)

    @staticmethod
    def _tier_wait(study: SimStudy, rule: SimRule, tier: int, now: dt.datetime) -> dt.timedelta:
        priority = study.key.priority
        cap = rule.tier_waits.get(priority) or max(
            rule.tier_waits.values(), default=rule.min_tier_wait
        )
        return escalation_wait(
            tier=tier,
            received_at=study.received_at,
            due_at=study.due_at,
            now=now,
            fractions=rule.escalate_fractions,
            floor=rule.min_tier_wait,
            cap=cap,
        )

    def _timer_set(self, arm: _Arm, state: _Open, at: dt.datetime) -> None:
        state.version += 1
        self._push(arm, at, _TIMER, state.study.study_id, state.version)

    def _unroutable(
        self,
        arm: _Arm,
        state: _Open,
        now: dt.datetime,
        reason: str,
        *,
        tier: int,
        verdicts: Sequence[Verdict],
    ) -> None:
        state.unroutable = True
        state.tier = tier
        if not state.ever_unroutable:
            state.ever_unroutable = True
            arm.unroutable += 1
        if state.reasons is None:
            state.reasons = set()
        if reason not in state.reasons:
            state.reasons.add(reason)
            arm.reasons[reason] += 1
        if not state.offered and now >= _give_up_at(state.study):
            # Nobody to offer it to for a day (or past its due time, if later): by
            # then a group admin assigns it by hand, which the replay does not
            # model; retrying it to the end of the window would only cost time
            # (and grow with the window's square).  Counted as unclaimed now.
            state.version += 1  # its pending timer, if any, is dead
            del arm.open[state.study.study_id]
            arm.given_up += 1
            self._count_unclaimed(arm, state)
            return
        self._timer_set(arm, state, self._retry_at(now))
        for verdict in verdicts:
            if verdict.reasons == _AT_CAP_ONLY:
                reader = arm.readers.get(verdict.radiologist_id)
                if reader is not None and reader.reading:
                    arm.cap_blocked.setdefault(verdict.radiologist_id, set()).add(
                        state.study.study_id
                    )

    def _retry_at(self, now: dt.datetime) -> dt.datetime:
        """When an unroutable study is retried: the next shift start of any reader
        seen so far, or the next ``unroutable_retry`` mark, whichever comes first."""
        mark = self.start + ((now - self.start) // self.retry + 1) * self.retry
        change = self._next_change(now)
        return change if change is not None and change < mark else mark

    def _next_shift_start(self, radiologist_id: int, now: dt.datetime) -> dt.datetime | None:
        cached = self._starts.get(radiologist_id)
        # The answer for an earlier instant holds until that shift starts.
        if cached is not None and cached[0] <= now and (cached[1] is None or now < cached[1]):
            return cached[1]
        found = self.roster.next_shift_start(radiologist_id, now)
        self._starts[radiologist_id] = (now, found)
        return found

    def _next_change(self, now: dt.datetime) -> dt.datetime | None:
        cached = self._change
        if (
            cached is not None
            and cached[2] == len(self._known)
            and cached[0] <= now
            and (cached[1] is None or now < cached[1])
        ):
            return cached[1]
        starts = [self._next_shift_start(r, now) for r in self._known]
        found = min((s for s in starts if s is not None), default=None)
        self._change = (now, found, len(self._known))
        return found

    # --- timers -------------------------------------------------------------------

    def _timer(self, arm: _Arm, study_id: int, version: int, now: dt.datetime) -> None:
        """``routing.services.study_escalate`` for a study whose timer is due."""
        state = arm.open.get(study_id)
        if state is None or state.version != version:
            return  # claimed, or re-timed since
        rule = state.rule
        if state.unroutable and not state.offered:
            # Back to ready in live routing: routed afresh.
            self._route(arm, state, now, tier=0, skip=frozenset(state.passed or ()))
            return
        if rule.auto_assign:
            passed = state.passed if state.passed is not None else set()
            state.passed = passed
            for radiologist_id in state.offered:
                passed.add(radiologist_id)
                arm.readers[radiologist_id].held -= 1
            state.offered.clear()
            self._route(arm, state, now, tier=state.tier, skip=frozenset(passed))
            return
        self._escalate(arm, state, now)

    def _escalate(self, arm: _Arm, state: _Open, now: dt.datetime) -> None:
        """``routing.services._escalate_offer``."""
        study = state.study
        rule = state.rule
        candidates = self._candidates(arm, study.key.facility_id, study.jurisdiction, now)
        if state.offered:
            facts = self._facts(study, rule, now)
            by_id = {c.radiologist_id: c for c in candidates}
            lapsed = [
                r
                for r in state.offered
                if r not in by_id or not KEEP_OFFER.judge(facts, by_id[r]).eligible
            ]
            for radiologist_id in lapsed:
                state.offered.discard(radiologist_id)
                arm.readers[radiologist_id].held -= 1
        kept = frozenset(state.offered)
        widest = rule.widest_tier
        tier, verdicts, fresh = self._widen(arm, state, now, min(state.tier + 1, widest), kept)
        if fresh:
            self._offer(arm, state, now, tier, fresh)
            return
        at_risk = sla_at_risk(
            received_at=study.received_at,
            due_at=study.due_at,
            now=now,
            fractions=rule.escalate_fractions,
        )
        if any(v.eligible for v in verdicts) or (kept and not at_risk):
            state.tier = widest
            state.unroutable = False
            self._timer_set(arm, state, now + self._tier_wait(study, rule, widest, now))
            return
        reason = self._unroutable_reason(arm, state, now, verdicts)
        if kept:
            reason = SLA_AT_RISK + reason
        self._unroutable(arm, state, now, reason, tier=widest, verdicts=verdicts)

    # --- readers ------------------------------------------------------------------

    def _wake_at(self, arm: _Arm, radiologist_id: int, reader: _Reader, at: dt.datetime) -> None:
        if reader.wake_at is not None and reader.wake_at <= at:
            return  # an earlier wake is pending: it looks at the whole worklist
        reader.wake_at = at
        self._push(arm, at, _WAKE, radiologist_id)

    def _compact(self, arm: _Arm, radiologist_id: int, reader: _Reader) -> None:
        """Drop the entries of withdrawn offers (and duplicates) from a worklist."""
        open_ = arm.open
        kept = set()
        for entry in reader.worklist:
            state = open_.get(entry[2])
            if state is not None and radiologist_id in state.offered:
                kept.add(entry)
        reader.worklist = list(kept)
        heapq.heapify(reader.worklist)

    def _wake(self, arm: _Arm, radiologist_id: int, now: dt.datetime) -> None:
        """A free reader claims the top of their worklist that they may claim now."""
        reader = arm.readers[radiologist_id]
        if reader.reading or not reader.worklist:
            return
        worklist = reader.worklist
        open_ = arm.open
        # Drop withdrawn offers from the top first: an empty worklist needs no roster.
        while worklist:
            state = open_.get(worklist[0][2])
            if state is not None and radiologist_id in state.offered:
                break
            heapq.heappop(worklist)
        if not worklist:
            return
        roster = self.roster
        if not roster.on_shift(radiologist_id, now):
            start = self._next_shift_start(radiologist_id, now)
            if start is not None:
                self._wake_at(arm, radiologist_id, reader, start)
            return
        refused: list[tuple[dt.datetime, int, int]] = []
        chosen: _Open | None = None
        while worklist:
            entry = heapq.heappop(worklist)
            state = open_.get(entry[2])
            if state is None or radiologist_id not in state.offered:
                continue
            if refused and refused[-1] == entry:
                continue  # the same offer twice (withdrawn and made again)
            study = state.study
            candidate = self._reader_facts(
                arm, radiologist_id, study.key.facility_id, study.jurisdiction, now
            )
            verdict = CLAIM.judge(self._facts(study, state.rule, now), candidate)
            if verdict.eligible:
                chosen = state
                break
            refused.append(entry)
            if _REFUSE_ANY & set(verdict.reasons):
                break  # paused (or no longer a reader): nothing else either
        for entry in refused:
            heapq.heappush(worklist, entry)
        if chosen is not None:
            self._claim(arm, radiologist_id, reader, chosen, now)
        elif refused:
            self._wake_at(arm, radiologist_id, reader, self._mark_after(now))

    def _mark_after(self, now: dt.datetime) -> dt.datetime:
        return self.start + ((now - self.start) // self.retry + 1) * self.retry

    def _claim(
        self, arm: _Arm, radiologist_id: int, reader: _Reader, state: _Open, now: dt.datetime
    ) -> None:
        study = state.study
        rule = state.rule
        for holder in state.offered:
            arm.readers[holder].held -= 1
        del arm.open[study.study_id]  # its timer and other offers are dead with it
        arm.load_version += 1
        took = self.reading.get(radiologist_id, self.default_reading)
        done = now + took
        reader.reading = True
        value = rule.relative_value
        self._recent_work(reader, now)
        reader.recent.append((now, value))
        reader.recent_sum += value
        reader.claimed += 1
        reader.work += value
        if now < self.end:
            reader.busy_seconds += (min(done, self.end) - now).total_seconds()
        arm.claimed += 1
        arm.final_tier[state.tier] += 1
        figures = arm.priority(study.key.priority)
        figures.to_claim.append((now - study.arrived_at).total_seconds())
        if done <= study.due_at:
            figures.met += 1
        else:
            figures.missed += 1
        if now >= state.risk_at:
            figures.at_risk += 1
        self._push(arm, done, _READ_END, radiologist_id)

    def _read_end(self, arm: _Arm, radiologist_id: int, now: dt.datetime) -> None:
        reader = arm.readers[radiologist_id]
        reader.reading = False
        arm.load_version += 1
        for study_id in sorted(arm.cap_blocked.pop(radiologist_id, ())):
            state = arm.open.get(study_id)
            if state is not None and state.unroutable:
                self._timer_set(arm, state, now)
        self._wake(arm, radiologist_id, now)

    # --- the result ---------------------------------------------------------------

    def _count_unclaimed(self, arm: _Arm, state: _Open) -> None:
        """Count a study nobody claimed (at the end of the window, or given up)."""
        arm.unclaimed_at_end += 1
        arm.final_tier[state.tier] += 1
        figures = arm.priority(state.study.key.priority)
        if self.end > state.study.due_at:
            figures.missed += 1
        if self.end >= state.risk_at:
            figures.at_risk += 1
        if state.ever_unroutable and state.first_offer_at is None:
            arm.never_offered += 1

    def _arm_result(self, arm: _Arm) -> dict[str, Any]:
        for state in arm.open.values():
            self._count_unclaimed(arm, state)
        by_priority = {}
        for priority, f in sorted(arm.by_priority.items()):
            judged = f.met + f.missed
            by_priority[str(priority)] = {
                "studies": f.studies,
                "time_to_offer": _summary(f.to_offer),
                "time_to_claim": _summary(f.to_claim),
                "sla_met": f.met,
                "sla_missed": f.missed,
                "sla_missed_share": round(f.missed / judged, 4) if judged else 0.0,
                "at_risk": f.at_risk,
            }
        readers: list[dict[str, Any]] = sorted(
            (
                {
                    "radiologist_id": r,
                    "name": self.roster.name(r),
                    "claimed": reader.claimed,
                    "work": round(reader.work, 2),
                    "busy_hours": round(reader.busy_seconds / 3600, 2),
                }
                for r, reader in arm.readers.items()
                if reader.claimed or reader.offered_ever
            ),
            key=lambda row: (-row["work"], row["radiologist_id"]),
        )
        return {
            "first_offer_by_tier": {str(t): n for t, n in enumerate(arm.first_offer_by_tier)},
            "final_tier": {str(t): n for t, n in enumerate(arm.final_tier)},
            "escalations": arm.escalations,
            "unroutable": {
                "count": arm.unroutable,
                "never_offered": arm.never_offered,
                "reasons": [[reason, n] for reason, n in arm.reasons.most_common(10)],
            },
            "claimed": arm.claimed,
            "unclaimed_at_end": arm.unclaimed_at_end,
            "given_up": arm.given_up,
            "by_priority": by_priority,
            "readers": readers,
            "fairness": _fairness(
                [
                    reader.work
                    for reader in arm.readers.values()
                    if reader.claimed or reader.offered_ever
                ]
            ),
        }

    def _result(self) -> dict[str, Any]:
        def strip(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [{k: v for k, v in e.items() if k != "_order"} for e in entries]

        return {
            "window": {"start": self.start.isoformat(), "end": self.end.isoformat()},
            "studies": self.studies,
            "history_began": None,  # the caller's to fill in (it reads the history)
            "reading_model": {
                "default_minutes": self.default_reading.total_seconds() / 60,
                "readers": {str(r): float(m) for r, m in sorted(self.reading_minutes.items())},
            },
            "arms": {arm.name: self._arm_result(arm) for arm in self.arms},
            "elsewhere": {
                "count": self.elsewhere,
                "share": round(self.elsewhere / self.studies, 4) if self.studies else 0.0,
                "sample": strip(self.elsewhere_sample.entries()),
            },
            "recorded": {
                "compared": self.compared,
                "same": self.same,
                "differences": strip(self.differences.entries()),
            },
        }


def replay(
    studies: Iterable[SimStudy],
    *,
    live: Sequence[SimRule],
    draft: Sequence[SimRule],
    roster: Roster,
    reading_minutes: Mapping[int, float],
    default_reading_minutes: float,
    window: tuple[dt.datetime, dt.datetime],
    progress: Callable[[int], None] | None = None,
    sample_size: int = 20,
    aging_step: dt.timedelta = dt.timedelta(minutes=60),
    unroutable_retry: dt.timedelta = dt.timedelta(minutes=15),
    readers: Iterable[int] = (),
) -> dict[str, Any]:
    """Replay ``studies`` (sorted by ``arrived_at``, streamed) under both rule sets;
    the comparison as documented in docs/simulation.md ("Result").  ``progress``
    is called with the number of studies decided so far, every few hundred.
    ``aging_step`` is the group's worklist aging step (``worklist_aging_minutes``);
    ``unroutable_retry`` the longest an unroutable study waits for its retry, and
    ``readers`` the group's readers, whose shift starts retry it sooner (see the
    module's docstring; readers with a reading rate and readers the roster has
    named as plausible are watched anyway)."""
    if unroutable_retry <= dt.timedelta(0):
        raise ValueError("unroutable_retry must be positive")
    return _Replay(
        live=live,
        draft=draft,
        roster=roster,
        reading_minutes=reading_minutes,
        default_reading_minutes=default_reading_minutes,
        window=window,
        sample_size=sample_size,
        aging_step=aging_step,
        unroutable_retry=unroutable_retry,
        readers=readers,
    ).run(studies, progress)
