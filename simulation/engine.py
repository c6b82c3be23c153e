"""The replay: a discrete-event simulation of routing over past studies.

Pure: no database, no Django.  Each study is decided at its arrival (the moment
it became ready) with the same rule matching (``routing.rules.first_match``), the
same policy (``routing.eligibility.ROUTE``) and the same widening
(``routing.eligibility.widen``) as live routing; tier timers
(``eligibility.escalation_wait``), re-judging at the widest tier and
``sla_at_risk`` run in simulated time; readers take work as modelled below.  Two
arms (the live rules and the draft) run side by side over one pass of the
studies, so their comparison is not against reality's noise.

INTERFACE (laid by the lead; the engine helper implements the bodies).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from routing.eligibility import CandidateFacts
from routing.rules import RuleKey, StudyKey


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
) -> dict[str, Any]:
    """Replay ``studies`` (sorted by ``arrived_at``, streamed) under both rule sets;
    the comparison as documented in docs/simulation.md ("Result").  ``progress``
    is called with the number of studies decided so far, every few hundred."""
    raise NotImplementedError
