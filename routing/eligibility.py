"""Who may and who should read a study: a pure function over plain facts.

No database, no Django: the selectors gather the facts with set-based queries,
this module decides, and the services apply the decision.  Hard filters (law and
contracts) are never relaxed by escalation; soft ranking only orders the
eligible.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

GENERAL = "general"


class Reason(StrEnum):
    """Why a reader is excluded (or limited) for a study."""

    INACTIVE = "inactive"
    UNAVAILABLE = "unavailable"
    OFF_SHIFT = "off_shift"
    NOT_LICENSED = "not_licensed_in_jurisdiction"
    LICENSE_EXPIRED = "license_expired"
    LICENSE_NOT_ACTIVE = "license_not_active"
    PRELIMINARY_ONLY = "license_preliminary_only"
    NO_PRIVILEGE = "no_privilege_at_facility"
    PRIVILEGE_EXPIRED = "privilege_expired"
    PRIVILEGE_NOT_ACTIVE = "privilege_not_active"
    WRONG_SUBSPECIALTY = "wrong_subspecialty"
    AT_CAP = "at_workload_cap"
    EXCLUDED = "excluded"  # e.g. the original reader of a second opinion


REASON_TEXT = {
    Reason.INACTIVE: "not an active reader",
    Reason.UNAVAILABLE: "paused (not accepting cases)",
    Reason.OFF_SHIFT: "off shift",
    Reason.NOT_LICENSED: "not licensed in the patient's jurisdiction",
    Reason.LICENSE_EXPIRED: "license in the jurisdiction expired or not yet valid",
    Reason.LICENSE_NOT_ACTIVE: "license in the jurisdiction suspended, revoked or pending",
    Reason.PRELIMINARY_ONLY: "license allows preliminary reads only",
    Reason.NO_PRIVILEGE: "no privileges at the facility",
    Reason.PRIVILEGE_EXPIRED: "privileges at the facility expired or not yet valid",
    Reason.PRIVILEGE_NOT_ACTIVE: "privileges at the facility suspended, revoked or pending",
    Reason.WRONG_SUBSPECIALTY: "none of the required subspecialties",
    Reason.AT_CAP: "at the workload cap",
    Reason.EXCLUDED: "excluded for this study",
}


class Credential(NamedTuple):
    """A license (``key`` = jurisdiction code) or privilege (``key`` = facility id),
    valid from ``starts_at`` until ``ends_at`` (exclusive): its dates read as instants
    in the jurisdiction's or facility's time zone (``network.validity``).  A named
    tuple: a batch of decisions reads thousands of them."""

    key: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    active: bool
    final_scope: bool = True  # licenses: final reads allowed (False: preliminary only)


@dataclass(frozen=True)
class StudyFacts:
    study_id: int
    facility_id: int
    jurisdiction: str
    priority: int
    read_at: dt.datetime  # credentials are judged at this instant
    subspecialties: frozenset[str]
    allow_general: bool = False
    allow_preliminary: bool = False
    bypass_cap: bool = False
    excluded: frozenset[int] = frozenset()


@dataclass(frozen=True)
class CandidateFacts:
    radiologist_id: int
    name: str
    tier: int
    active: bool
    available: bool
    on_shift: bool
    subspecialties: frozenset[str]
    licenses: tuple[Credential, ...]
    privileges: tuple[Credential, ...]
    open_claims: int
    workload_cap: int
    recent_work: float = 0.0


class Verdict(NamedTuple):
    """One reader's verdict for one study (a named tuple: a batch of decisions makes
    thousands of them)."""

    radiologist_id: int
    name: str
    tier: int
    eligible: bool
    scope: str = ""  # "final" or "preliminary" when eligible
    reasons: tuple[Reason, ...] = ()
    fit: int = 0  # 2: a required subspecialty; 1: general fallback
    load: float = 0.0
    rank: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "radiologist_id": self.radiologist_id,
            "name": self.name,
            "tier": self.tier,
            "eligible": self.eligible,
            "scope": self.scope,
            "reasons": [str(r) for r in self.reasons],
            "explanation": "; ".join(REASON_TEXT[r] for r in self.reasons),
            "fit": self.fit,
            "load": round(self.load, 3),
            "rank": self.rank,
        }


def _credential_check(
    items: Iterable[Credential],
    key: str,
    at: dt.datetime,
    *,
    missing: Reason,
    expired: Reason,
    inactive: Reason,
) -> tuple[Credential | None, Reason | None]:
    matching = [c for c in items if c.key == key]
    if not matching:
        return None, missing
    valid = [c for c in matching if c.active and c.starts_at <= at < c.ends_at]
    if valid:
        # Prefer a credential that allows final reads.
        return max(valid, key=lambda c: c.final_scope), None
    if any(c.active for c in matching):
        return None, expired
    return None, inactive


class Finding(NamedTuple):
    """What one check found: the reasons it excludes the reader for, and what it
    learnt on the way (the read scope a license allows; the subspecialty fit)."""

    reasons: tuple[Reason, ...] = ()
    scope: str = ""
    fit: int = 0


Check = Callable[[StudyFacts, CandidateFacts], Finding]
# The common findings, made once: a batch of decisions judges thousands of readers.
_NONE = Finding()
_FINAL = Finding(scope="final")
_PRELIMINARY = Finding(scope="preliminary")
_FIT_REQUIRED = Finding(fit=2)
_FIT_GENERAL = Finding(fit=1)


def exclusion(study: StudyFacts, candidate: CandidateFacts) -> Finding:
    """Not a reader the study names as excluded (e.g. the report's own readers)."""
    return Finding((Reason.EXCLUDED,)) if candidate.radiologist_id in study.excluded else _NONE


def standing(study: StudyFacts, candidate: CandidateFacts) -> Finding:
    """An active reader of the group."""
    return _NONE if candidate.active else Finding((Reason.INACTIVE,))


def availability(study: StudyFacts, candidate: CandidateFacts) -> Finding:
    """Accepting cases: not paused."""
    return _NONE if candidate.available else Finding((Reason.UNAVAILABLE,))


def shift(study: StudyFacts, candidate: CandidateFacts) -> Finding:
    """On shift now."""
    return _NONE if candidate.on_shift else Finding((Reason.OFF_SHIFT,))


def credential(study: StudyFacts, candidate: CandidateFacts) -> Finding:
    """The law and the contract: a license valid at the time of the read in the
    patient's jurisdiction whose scope covers the read, and privileges valid at the
    facility then."""
    reasons: list[Reason] = []
    license_, license_problem = _credential_check(
        candidate.licenses,
        study.jurisdiction,
        study.read_at,
        missing=Reason.NOT_LICENSED,
        expired=Reason.LICENSE_EXPIRED,
        inactive=Reason.LICENSE_NOT_ACTIVE,
    )
    scope = ""
    if license_problem is not None:
        reasons.append(license_problem)
    elif license_ is not None:
        if license_.final_scope:
            scope = "final"
        elif study.allow_preliminary:
            scope = "preliminary"
        else:
            reasons.append(Reason.PRELIMINARY_ONLY)
    _, privilege_problem = _credential_check(
        candidate.privileges,
        str(study.facility_id),
        study.read_at,
        missing=Reason.NO_PRIVILEGE,
        expired=Reason.PRIVILEGE_EXPIRED,
        inactive=Reason.PRIVILEGE_NOT_ACTIVE,
    )
    if privilege_problem is not None:
        reasons.append(privilege_problem)
    if not reasons:
        return _FINAL if scope == "final" else _PRELIMINARY if scope else _NONE
    return Finding(tuple(reasons), scope=scope)


def subspecialty(study: StudyFacts, candidate: CandidateFacts) -> Finding:
    """One of the subspecialties the rule requires (fit 2), or general reading where
    the rule accepts it (fit 1)."""
    if candidate.subspecialties & study.subspecialties:
        return _FIT_REQUIRED
    if study.allow_general and GENERAL in candidate.subspecialties:
        return _FIT_GENERAL
    return Finding((Reason.WRONG_SUBSPECIALTY,))


def capacity(study: StudyFacts, candidate: CandidateFacts) -> Finding:
    """Below the workload cap, unless the study bypasses it (STAT, by rule)."""
    if candidate.open_claims >= candidate.workload_cap and not study.bypass_cap:
        return Finding((Reason.AT_CAP,))
    return _NONE


@dataclass(frozen=True)
class Policy:
    """ "May this reader read this study now?" for one purpose: the checks that
    purpose answers to, in order (a verdict lists every reason that applies, in
    the order of its checks)."""

    name: str
    checks: tuple[Check, ...]

    def judge(self, study: StudyFacts, candidate: CandidateFacts) -> Verdict:
        """The verdict for one reader: every check of the policy, every reason."""
        reasons: list[Reason] = []
        scope = ""
        fit = 0
        for check in self.checks:
            found = check(study, candidate)
            if found is _NONE:  # most checks pass: nothing to merge
                continue
            found_reasons, found_scope, found_fit = found
            if found_reasons:
                reasons += found_reasons
            if found_scope and not scope:
                scope = found_scope
            if found_fit > fit:
                fit = found_fit
        cap = max(candidate.workload_cap, 1)
        return Verdict(
            radiologist_id=candidate.radiologist_id,
            name=candidate.name,
            tier=candidate.tier,
            eligible=not reasons,
            scope=scope if not reasons else "",
            reasons=tuple(reasons),
            fit=fit,
            load=candidate.open_claims / cap + candidate.recent_work,
        )

    def decide(self, study: StudyFacts, candidates: Sequence[CandidateFacts]) -> list[Verdict]:
        """Verdicts for all candidates; the eligible ranked first (rank 1 = best).

        Ranking is soft: nearer tier first, then subspecialty fit (a required
        subspecialty before the general fallback), then final-read scope before
        preliminary, then least load, then id for a stable order.
        """
        verdicts = [self.judge(study, c) for c in candidates]
        eligible = sorted(
            (v for v in verdicts if v.eligible),
            key=lambda v: (v.tier, -v.fit, v.scope != "final", v.load, v.radiologist_id),
        )
        ranked = [v._replace(rank=n) for n, v in enumerate(eligible, start=1)]
        excluded = sorted(
            (v for v in verdicts if not v.eligible), key=lambda v: (v.tier, v.radiologist_id)
        )
        return ranked + excluded


def widen(
    policy: Policy,
    facts: StudyFacts,
    candidates: Sequence[CandidateFacts],
    *,
    tier: int,
    last_tier: int,
    skip: frozenset[int] = frozenset(),
) -> tuple[int, list[Verdict], list[Verdict]]:
    """From ``tier``, widen tier by tier until someone new is eligible: the tier
    reached, the verdicts up to it, and the eligible readers not in ``skip``.  The
    one widening step of live routing and of the rule simulator.

    Only the candidates up to the tier are judged: most studies are offered at the
    nearest tier, and since the ranking puts nearer tiers first, the verdicts up to
    a tier are the same as those of a decision over every tier."""
    while True:
        verdicts = policy.decide(facts, [c for c in candidates if c.tier <= tier])
        fresh = [v for v in verdicts if v.eligible and v.radiologist_id not in skip]
        if fresh or tier >= last_tier:
            return tier, verdicts, fresh
        tier += 1


_LICENSE_PROBLEMS = frozenset(
    {Reason.NOT_LICENSED, Reason.LICENSE_EXPIRED, Reason.LICENSE_NOT_ACTIVE}
)


def unroutable_summary(verdicts: Sequence[Verdict], *, jurisdiction: str) -> str:
    """Why nobody judged can take the study, in a sentence an admin can act on
    (``verdicts`` not empty), e.g. 'no radiologist licensed in US-TX is on shift'."""
    if all(_LICENSE_PROBLEMS & set(v.reasons) for v in verdicts):
        return f"no radiologist licensed in {jurisdiction} is on shift"
    counts = Counter(r for v in verdicts for r in v.reasons)
    detail = ", ".join(f"{n} {REASON_TEXT[r]}" for r, n in counts.most_common(4))
    return f"no eligible radiologist on shift ({len(verdicts)} considered: {detail})"


# Presence is two checks: a paused reader keeps their offers (see KEEP_OFFER).
PRESENCE = (availability, shift)
_EVERY_CHECK = (exclusion, standing, *PRESENCE, credential, subspecialty, capacity)

# Routing offers a study to readers who pass every check.
ROUTE = Policy("route", _EVERY_CHECK)
# A claim is the offer taken up: every check again, now (a license may have lapsed,
# a shift ended or the cap been reached since the offer).
CLAIM = Policy("claim", _EVERY_CHECK)
# A review case is offered and claimed like a study, with the review's own facts
# (the report's readers excluded, final scope only, no cap bypass).
REVIEW = Policy("review", _EVERY_CHECK)
# A signature answers to the law (license) and the contract (privilege) of an
# active reader.  Shift, pause, workload and subspecialty decided who was offered
# the study; they do not stop the reader who holds it from signing.
SIGN = Policy("sign", (standing, credential))
# An open offer stays on a reader's worklist while they are an active reader on
# shift with the credentials to read it.  A pause, a full workload or another
# subspecialty need do not withdraw it: those refuse at claim time, with the reason,
# and pass with the pause or the load.
KEEP_OFFER = Policy("keep offer", (standing, shift, credential))


# A study past its last widening is at risk once less than this share of its
# turnaround target is left: with nobody eligible to take it then, it is unroutable.
AT_RISK_SHARE = 0.25


def escalation_wait(
    *,
    tier: int,
    received_at: dt.datetime,
    due_at: dt.datetime,
    now: dt.datetime,
    fractions: Sequence[float],
    floor: dt.timedelta,
    cap: dt.timedelta,
) -> dt.timedelta:
    """How long a study waits at ``tier`` before its routing timer fires, from the
    time left to its SLA.  The target is ``due_at - received_at``; the study widens
    from tier k once ``fractions[k]`` of the target has passed since arrival.  Past
    the last fraction (the widest tier) the timer re-judges the tier: when the SLA
    turns at risk (``AT_RISK_SHARE`` of the target left), at the due time, then every
    ``cap``.  Never shorter than ``floor`` (however late the study) nor longer than
    ``cap`` (the priority's longest wait at one tier)."""
    target = due_at - received_at
    if tier < len(fractions):
        wait = received_at + target * fractions[tier] - now
    else:
        marks = (due_at - target * AT_RISK_SHARE, due_at)
        wait = next((m - now for m in marks if m > now), cap)
    return min(max(wait, floor), cap)


def sla_at_risk(
    *,
    received_at: dt.datetime,
    due_at: dt.datetime,
    now: dt.datetime,
    fractions: Sequence[float],
) -> bool:
    """Past its last widening with at most ``AT_RISK_SHARE`` of the target left
    (the moment ``escalation_wait`` re-judges the widest tier counts as at risk)."""
    target = due_at - received_at
    widest_since = received_at + target * (fractions[-1] if fractions else 0.0)
    return now >= widest_since and due_at - now <= target * AT_RISK_SHARE


def escalation_problems(
    *, fractions: object, floor_seconds: int, caps: dict[str, int]
) -> dict[str, str]:
    """What is wrong with a rule's escalation settings, by field name (empty if
    nothing): ``fractions`` two increasing numbers strictly between 0 and 1, one per
    widening; the floor at least a second and no longer than any priority's cap
    (``caps``: field name -> seconds)."""
    problems: dict[str, str] = {}
    numbers = (
        fractions
        if isinstance(fractions, list | tuple)
        and all(isinstance(x, int | float) and not isinstance(x, bool) for x in fractions)
        else None
    )
    if numbers is None or len(numbers) != 2:
        problems["escalate_fractions"] = "Two numbers: when to widen to tier 1 and to tier 2."
    elif not all(0 < x < 1 for x in numbers) or not numbers[0] < numbers[1]:
        problems["escalate_fractions"] = (
            "Two increasing fractions of the turnaround target, each between 0 and 1 "
            "(e.g. [0.25, 0.5])."
        )
    if floor_seconds < 1:
        problems["min_tier_wait_seconds"] = "At least 1 second."
    else:
        over = sorted(name for name, cap in caps.items() if floor_seconds > cap)
        if over:
            problems["min_tier_wait_seconds"] = (
                f"No longer than the longest wait at a tier ({', '.join(over)})."
            )
    return problems


def tier_of(
    *,
    home_region_id: int,
    home_country: str,
    facility_region_id: int,
    facility_country: str,
    local_pool: int | None,
    regional_pool: int | None,
    pools: frozenset[int],
) -> int:
    """A reader's tier for a facility: 0 hyperlocal, 1 regional, 2 global.  The
    admin's named pool for a tier replaces geography for that tier (the facility's
    region; its country); a reader local by either rule is also regional."""
    local = local_pool in pools if local_pool is not None else home_region_id == facility_region_id
    if local:
        return 0
    regional = (
        regional_pool in pools if regional_pool is not None else home_country == facility_country
    )
    return 1 if regional else 2
