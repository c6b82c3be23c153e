"""The pure eligibility function: every hard filter, every reason code, the ranking."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.eligibility import (
    ROUTE,
    CandidateFacts,
    Credential,
    Reason,
    StudyFacts,
)

DAY = dt.date(2026, 6, 1)
READ_AT = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)
LONG_AGO, FAR_AHEAD = dt.date(2020, 1, 1), dt.date(2030, 1, 1)

STUDY = StudyFacts(
    study_id=1,
    facility_id=7,
    jurisdiction="US-TX",
    priority=1,
    read_at=READ_AT,
    subspecialties=frozenset({"neuro"}),
)


def days(frm: dt.date, to: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """Whole UTC days from ``frm`` through ``to`` (the zones are the selectors' part)."""
    return (
        dt.datetime.combine(frm, dt.time(0), tzinfo=dt.UTC),
        dt.datetime.combine(to + dt.timedelta(days=1), dt.time(0), tzinfo=dt.UTC),
    )


def lic(key="US-TX", *, frm=LONG_AGO, to=FAR_AHEAD, active=True, final=True):
    return Credential(key, *days(frm, to), active=active, final_scope=final)


def priv(key="7", *, frm=LONG_AGO, to=FAR_AHEAD, active=True):
    return Credential(key, *days(frm, to), active=active)


READER = CandidateFacts(
    radiologist_id=10,
    name="Dr. Ten",
    tier=0,
    active=True,
    available=True,
    on_shift=True,
    subspecialties=frozenset({"neuro"}),
    licenses=(lic(),),
    privileges=(priv(),),
    open_claims=0,
    workload_cap=3,
)


def test_a_fully_qualified_reader_is_eligible_for_a_final_read():
    verdict = ROUTE.judge(STUDY, READER)
    assert verdict.eligible and verdict.scope == "final" and verdict.reasons == ()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"active": False}, Reason.INACTIVE),
        ({"available": False}, Reason.UNAVAILABLE),
        ({"on_shift": False}, Reason.OFF_SHIFT),
        ({"licenses": ()}, Reason.NOT_LICENSED),
        ({"licenses": (lic("US-NY"),)}, Reason.NOT_LICENSED),
        ({"licenses": (lic(to=DAY - dt.timedelta(days=1)),)}, Reason.LICENSE_EXPIRED),
        ({"licenses": (lic(frm=DAY + dt.timedelta(days=1)),)}, Reason.LICENSE_EXPIRED),
        ({"licenses": (lic(active=False),)}, Reason.LICENSE_NOT_ACTIVE),
        ({"licenses": (lic(final=False),)}, Reason.PRELIMINARY_ONLY),
        ({"privileges": ()}, Reason.NO_PRIVILEGE),
        ({"privileges": (priv("8"),)}, Reason.NO_PRIVILEGE),
        ({"privileges": (priv(to=DAY - dt.timedelta(days=1)),)}, Reason.PRIVILEGE_EXPIRED),
        ({"privileges": (priv(active=False),)}, Reason.PRIVILEGE_NOT_ACTIVE),
        ({"subspecialties": frozenset({"msk"})}, Reason.WRONG_SUBSPECIALTY),
        ({"subspecialties": frozenset({"general"})}, Reason.WRONG_SUBSPECIALTY),
        ({"open_claims": 3}, Reason.AT_CAP),
    ],
)
def test_each_hard_filter_excludes_with_its_reason(change, reason):
    verdict = ROUTE.judge(STUDY, replace(READER, **change))
    assert not verdict.eligible
    assert verdict.reasons == (reason,)


def test_the_last_day_of_a_license_still_counts():
    assert ROUTE.judge(STUDY, replace(READER, licenses=(lic(to=DAY),))).eligible


def test_an_excluded_reader_is_never_eligible():
    assert ROUTE.judge(replace(STUDY, excluded=frozenset({10})), READER).reasons == (
        Reason.EXCLUDED,
    )


def test_all_reasons_are_reported_together():
    verdict = ROUTE.judge(STUDY, replace(READER, on_shift=False, licenses=(), open_claims=9))
    assert set(verdict.reasons) == {Reason.OFF_SHIFT, Reason.NOT_LICENSED, Reason.AT_CAP}


def test_preliminary_only_license_gets_a_preliminary_read_where_the_rule_allows():
    study = replace(STUDY, allow_preliminary=True)
    verdict = ROUTE.judge(study, replace(READER, licenses=(lic(final=False),)))
    assert verdict.eligible and verdict.scope == "preliminary"


def test_a_final_license_wins_over_a_preliminary_one_in_the_same_jurisdiction():
    verdict = ROUTE.judge(STUDY, replace(READER, licenses=(lic(final=False), lic())))
    assert verdict.scope == "final"


def test_general_fallback_only_where_the_rule_allows_it():
    general = replace(READER, subspecialties=frozenset({"general"}))
    assert not ROUTE.judge(STUDY, general).eligible
    verdict = ROUTE.judge(replace(STUDY, allow_general=True), general)
    assert verdict.eligible and verdict.fit == 1


def test_stat_may_bypass_the_cap_where_the_rule_says_so():
    busy = replace(READER, open_claims=5)
    assert ROUTE.judge(replace(STUDY, bypass_cap=True), busy).eligible


def test_ranking_tier_then_fit_then_final_scope_then_load():
    study = replace(STUDY, allow_general=True, allow_preliminary=True)
    candidates = [
        replace(READER, radiologist_id=1, tier=1),
        replace(READER, radiologist_id=2, subspecialties=frozenset({"general"})),
        replace(READER, radiologist_id=3, open_claims=2),
        replace(READER, radiologist_id=4),
        replace(READER, radiologist_id=5, licenses=(lic(final=False),)),
        replace(READER, radiologist_id=6, on_shift=False),
    ]
    verdicts = ROUTE.decide(study, candidates)
    assert [v.radiologist_id for v in verdicts if v.eligible] == [4, 3, 5, 2, 1]
    assert [v.rank for v in verdicts if v.eligible] == [1, 2, 3, 4, 5]
    assert verdicts[-1].radiologist_id == 6 and verdicts[-1].rank is None


def test_recent_work_spreads_load():
    rested = replace(READER, radiologist_id=1, recent_work=0.5)
    tired = replace(READER, radiologist_id=2, recent_work=4.0)
    assert [v.radiologist_id for v in ROUTE.decide(STUDY, [tired, rested])] == [1, 2]


# Hypothesis takes naive bounds and attaches the zone it is given.
instants = st.datetimes(
    dt.datetime(2025, 1, 1),  # noqa: DTZ001
    dt.datetime(2027, 1, 1),  # noqa: DTZ001
    timezones=st.just(dt.UTC),
)
credentials = st.builds(
    Credential,
    key=st.sampled_from(["US-TX", "US-NY", "7", "8"]),
    starts_at=instants,
    ends_at=instants,
    active=st.booleans(),
    final_scope=st.booleans(),
)
candidates = st.builds(
    CandidateFacts,
    radiologist_id=st.integers(1, 10_000),
    name=st.just("r"),
    tier=st.integers(0, 2),
    active=st.booleans(),
    available=st.booleans(),
    on_shift=st.booleans(),
    subspecialties=st.frozensets(st.sampled_from(["neuro", "msk", "general", "body"])),
    licenses=st.lists(credentials, max_size=3).map(tuple),
    privileges=st.lists(credentials, max_size=3).map(tuple),
    open_claims=st.integers(0, 6),
    workload_cap=st.integers(1, 5),
    recent_work=st.floats(0, 10),
)
studies = st.builds(
    StudyFacts,
    study_id=st.just(1),
    facility_id=st.sampled_from([7, 8]),
    jurisdiction=st.sampled_from(["US-TX", "US-NY"]),
    priority=st.integers(1, 3),
    read_at=st.datetimes(
        dt.datetime(2025, 6, 1),  # noqa: DTZ001
        dt.datetime(2026, 12, 1),  # noqa: DTZ001
        timezones=st.just(dt.UTC),
    ),
    subspecialties=st.frozensets(st.sampled_from(["neuro", "msk", "body"]), min_size=1),
    allow_general=st.booleans(),
    allow_preliminary=st.booleans(),
    bypass_cap=st.booleans(),
)


@given(study=studies, pool=st.lists(candidates, max_size=12))
def test_no_eligible_verdict_ever_breaks_a_hard_rule(study, pool):
    for verdict in ROUTE.decide(study, pool):
        c = next(c for c in pool if c.radiologist_id == verdict.radiologist_id)
        if not verdict.eligible:
            assert verdict.reasons
            continue
        at = study.read_at
        licenses = [
            x
            for x in c.licenses
            if x.key == study.jurisdiction and x.active and x.starts_at <= at < x.ends_at
        ]
        privileges = [
            x
            for x in c.privileges
            if x.key == str(study.facility_id) and x.active and x.starts_at <= at < x.ends_at
        ]
        assert c.active and c.available and c.on_shift
        assert licenses and privileges
        assert any(x.final_scope for x in licenses) or (
            study.allow_preliminary and verdict.scope == "preliminary"
        )
        assert c.subspecialties & study.subspecialties or (
            study.allow_general and "general" in c.subspecialties
        )
        assert c.open_claims < c.workload_cap or study.bypass_cap
