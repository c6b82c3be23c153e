"""Parity: each purpose of the eligibility policy gives the verdicts the code gave
before the policy existed.

The references below are the pre-policy code, kept verbatim as the oracle: the
routing ``judge`` (which routing, the claim re-check and review called directly)
and ``reporting.selectors.sign_scope``'s path, which faked presence, subspecialty
and cap values to reuse ``judge`` and kept only the license and privilege reasons.
The offer sweep's purpose is checked against what its ORM query restated: an
active reader on shift holding an active license and privilege valid today.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from routing.eligibility import (
    CLAIM,
    GENERAL,
    KEEP_OFFER,
    REVIEW,
    ROUTE,
    SIGN,
    CandidateFacts,
    Credential,
    Reason,
    StudyFacts,
    Verdict,
    _credential_check,
)

# -- the oracle: routing's judge before the policy (verbatim) -------------------


def old_judge(study: StudyFacts, candidate: CandidateFacts) -> Verdict:
    """The verdict for one reader: every hard filter, with every reason that applies."""
    reasons: list[Reason] = []
    if candidate.radiologist_id in study.excluded:
        reasons.append(Reason.EXCLUDED)
    if not candidate.active:
        reasons.append(Reason.INACTIVE)
    if not candidate.available:
        reasons.append(Reason.UNAVAILABLE)
    if not candidate.on_shift:
        reasons.append(Reason.OFF_SHIFT)

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

    fit = 0
    if candidate.subspecialties & study.subspecialties:
        fit = 2
    elif study.allow_general and GENERAL in candidate.subspecialties:
        fit = 1
    else:
        reasons.append(Reason.WRONG_SUBSPECIALTY)

    if candidate.open_claims >= candidate.workload_cap and not study.bypass_cap:
        reasons.append(Reason.AT_CAP)

    cap = max(candidate.workload_cap, 1)
    load = candidate.open_claims / cap + candidate.recent_work
    return Verdict(
        radiologist_id=candidate.radiologist_id,
        name=candidate.name,
        tier=candidate.tier,
        eligible=not reasons,
        scope=scope if not reasons else "",
        reasons=tuple(reasons),
        fit=fit,
        load=load,
    )


SIGN_REASONS = frozenset(
    {
        Reason.INACTIVE,
        Reason.NOT_LICENSED,
        Reason.LICENSE_EXPIRED,
        Reason.LICENSE_NOT_ACTIVE,
        Reason.PRELIMINARY_ONLY,
        Reason.NO_PRIVILEGE,
        Reason.PRIVILEGE_EXPIRED,
        Reason.PRIVILEGE_NOT_ACTIVE,
    }
)


def old_sign(facts: StudyFacts, candidate: CandidateFacts) -> tuple[str, tuple[Reason, ...]]:
    """sign_scope's pure part before the policy: faked values, filtered reasons."""
    facts = dataclasses.replace(facts, excluded=frozenset(), bypass_cap=True)
    candidate = dataclasses.replace(
        candidate,
        available=True,
        on_shift=True,
        subspecialties=candidate.subspecialties | facts.subspecialties | {"general"},
    )
    facts = dataclasses.replace(facts, allow_general=True)
    verdict = old_judge(facts, candidate)
    reasons = tuple(r for r in verdict.reasons if r in SIGN_REASONS)
    return ("", reasons) if reasons else (verdict.scope, ())


def old_keep_offer(facts: StudyFacts, candidate: CandidateFacts) -> bool:
    """offers_no_longer_eligible's condition before the policy, negated, plus the
    license's scope (the query ignored it; the policy withdraws an offer its
    reader could not claim for that reason)."""
    at = facts.read_at

    def valid(items: tuple[Credential, ...], key: str) -> list[Credential]:
        return [c for c in items if c.key == key and c.active and c.starts_at <= at < c.ends_at]

    licenses = valid(candidate.licenses, facts.jurisdiction)
    return (
        candidate.active
        and candidate.on_shift
        and bool(licenses)
        and (facts.allow_preliminary or any(c.final_scope for c in licenses))
        and bool(valid(candidate.privileges, str(facts.facility_id)))
    )


# -- facts ----------------------------------------------------------------------

# Instants to the minute over two months: a credential's validity and the read's
# time (the selectors turn dates in a time zone into instants; network.validity).
INSTANTS = st.datetimes(
    dt.datetime(2026, 5, 1),  # noqa: DTZ001 - hypothesis takes naive bounds
    dt.datetime(2026, 7, 1),  # noqa: DTZ001
    timezones=st.just(dt.UTC),
).map(lambda t: t.replace(second=0, microsecond=0))


@st.composite
def credentials(draw: st.DrawFn, keys: list[str], *, license_: bool) -> Credential:
    start = draw(INSTANTS)
    return Credential(
        key=draw(st.sampled_from(keys)),
        starts_at=start,
        ends_at=start + dt.timedelta(minutes=draw(st.integers(-3 * 1440, 40 * 1440))),
        active=draw(st.booleans()),
        final_scope=draw(st.booleans()) if license_ else True,
    )


studies = st.builds(
    StudyFacts,
    study_id=st.just(1),
    facility_id=st.sampled_from([7, 8]),
    jurisdiction=st.sampled_from(["US-TX", "US-NY"]),
    priority=st.integers(1, 3),
    read_at=INSTANTS,
    subspecialties=st.frozensets(st.sampled_from(["neuro", "msk", "body"]), max_size=2),
    allow_general=st.booleans(),
    allow_preliminary=st.booleans(),
    bypass_cap=st.booleans(),
    excluded=st.frozensets(st.integers(1, 4), max_size=2),
)
candidates = st.builds(
    CandidateFacts,
    radiologist_id=st.integers(1, 4),
    name=st.just("Dr. X"),
    tier=st.integers(0, 2),
    active=st.booleans(),
    available=st.booleans(),
    on_shift=st.booleans(),
    subspecialties=st.frozensets(st.sampled_from(["neuro", "msk", "body", GENERAL]), max_size=3),
    licenses=st.lists(credentials(["US-TX", "US-NY"], license_=True), max_size=3).map(tuple),
    privileges=st.lists(credentials(["7", "8"], license_=False), max_size=3).map(tuple),
    open_claims=st.integers(0, 5),
    workload_cap=st.integers(0, 4),
    recent_work=st.floats(0, 3, allow_nan=False),
)


@settings(max_examples=600)
@given(study=studies, candidate=candidates)
def test_route_claim_and_review_judge_as_routing_did(
    study: StudyFacts, candidate: CandidateFacts
) -> None:
    expected: Verdict = old_judge(study, candidate)
    for policy in (ROUTE, CLAIM, REVIEW):
        assert policy.judge(study, candidate) == expected, policy.name


@settings(max_examples=600)
@given(study=studies, candidate=candidates)
def test_sign_gives_what_sign_scope_gave(study: StudyFacts, candidate: CandidateFacts) -> None:
    verdict = SIGN.judge(study, candidate)
    assert (verdict.scope, verdict.reasons) == old_sign(study, candidate)


@settings(max_examples=600)
@given(study=studies, candidate=candidates)
def test_an_offer_is_kept_exactly_while_its_reader_could_hold_it(
    study: StudyFacts, candidate: CandidateFacts
) -> None:
    assert KEEP_OFFER.judge(study, candidate).eligible == old_keep_offer(study, candidate)


@given(study=studies, pool=st.lists(candidates, max_size=8, unique_by=lambda c: c.radiologist_id))
def test_route_ranks_as_routing_did(study: StudyFacts, pool: list[CandidateFacts]) -> None:
    verdicts = [old_judge(study, c) for c in pool]
    eligible = sorted(
        (v for v in verdicts if v.eligible),
        key=lambda v: (v.tier, -v.fit, v.scope != "final", v.load, v.radiologist_id),
    )
    ranked = [v._replace(rank=n) for n, v in enumerate(eligible, start=1)]
    excluded = sorted(
        (v for v in verdicts if not v.eligible), key=lambda v: (v.tier, v.radiologist_id)
    )
    assert ROUTE.decide(study, pool) == ranked + excluded
