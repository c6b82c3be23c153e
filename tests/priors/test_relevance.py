"""Which priors are relevant: the pure function, table-driven and by property."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from priors.relevance import (
    StudyFacts,
    modality_classes_of,
    regions_of,
    relevant_priors,
)

TODAY = dt.date(2026, 12, 7)


def facts(
    uid: str,
    day: dt.date | None,
    modality: str = "",
    body_part: str = "",
    description: str = "",
) -> StudyFacts:
    return StudyFacts(
        study_instance_uid=uid,
        study_date=day,
        modalities=(modality,) if modality else (),
        body_part=body_part,
        description=description,
    )


@pytest.mark.parametrize(
    ("body_part", "description", "modality", "regions"),
    [
        ("CHEST", "", "CR", {"chest"}),
        ("", "XR CHEST 2 VIEWS", "DX", {"chest"}),
        ("", "CT ABD/PELVIS W CONTRAST", "CT", {"abdomen", "pelvis"}),
        ("CHESTABDPELVIS", "", "CT", {"chest", "abdomen", "pelvis"}),
        ("ABDOMENPELVIS", "", "CT", {"abdomen", "pelvis"}),
        ("LSPINE", "", "MR", {"spine"}),
        ("", "MRI C-SPINE WO", "MR", {"spine"}),
        ("HEAD", "CT HEAD WO CONTRAST", "CT", {"head"}),
        ("", "CTA NECK", "CT", {"neck"}),
        ("", "MRI KNEES BILATERAL", "MR", {"lower extremity"}),
        ("", "XR WRIST 3V LEFT", "CR", {"upper extremity"}),
        ("", "SCREENING", "MG", {"breast"}),
        ("", "US RUQ", "US", {"abdomen"}),
        ("", "", "CT", set()),
        ("", "PHARMACY REVIEW", "OT", set()),  # no region hides inside other words
    ],
)
def test_regions(body_part: str, description: str, modality: str, regions: set[str]) -> None:
    assert regions_of(facts("1", TODAY, modality, body_part, description)) == regions


@pytest.mark.parametrize(
    ("modality", "classes"),
    [
        ("CT", {"CT"}),
        ("CR", {"radiography"}),
        ("DX", {"radiography"}),
        ("CT\\SR", {"CT"}),
        ("PT\\CT", {"nuclear medicine", "CT"}),
        ("SR", set()),
        ("", set()),
    ],
)
def test_modality_classes(modality: str, classes: set[str]) -> None:
    assert modality_classes_of(facts("1", TODAY, modality)) == classes


CURRENT = facts("cur", TODAY, "CT", "CHEST", "CT CHEST WO")


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [
        # Same region and modality class.
        (facts("a", dt.date(2025, 1, 1), "CT", "CHEST"), ("region_modality", "chest")),
        # Same region, another modality.
        (facts("b", dt.date(2025, 1, 1), "CR", description="XR CHEST PA"), ("region", "chest")),
        # Same modality class, another region.
        (facts("c", dt.date(2025, 1, 1), "CT", "HEAD"), ("modality", "CT")),
        # Neither.
        (facts("d", dt.date(2025, 1, 1), "MR", "KNEE"), None),
        # Too old: more than 5 years before the current study.
        (facts("e", dt.date(2021, 12, 6), "CT", "CHEST"), None),
        # Exactly 5 years: still in.
        (facts("f", dt.date(2021, 12, 7), "CT", "CHEST"), ("region_modality", "chest")),
        # After the current study, or undated: not a prior.
        (facts("g", dt.date(2026, 12, 8), "CT", "CHEST"), None),
        (facts("h", None, "CT", "CHEST"), None),
        # The current study itself.
        (facts("cur", dt.date(2025, 1, 1), "CT", "CHEST"), None),
    ],
)
def test_one_candidate(candidate: StudyFacts, expected: tuple[str, str] | None) -> None:
    chosen = relevant_priors(
        current=CURRENT, candidates=[candidate], max_count=3, max_years=5, today=TODAY
    )
    if expected is None:
        assert chosen == []
    else:
        (choice,) = chosen
        assert choice.prior == candidate
        assert choice.code == expected[0]
        assert expected[1] in choice.reason


def test_closest_matches_first_then_most_recent_returned_newest_first() -> None:
    candidates = [
        facts("mod-new", dt.date(2026, 11, 1), "CT", "HEAD"),
        facts("both-old", dt.date(2023, 1, 1), "CT", "CHEST"),
        facts("region-mid", dt.date(2025, 6, 1), "CR", "CHEST"),
        facts("both-new", dt.date(2026, 6, 1), "CT", "CHEST"),
        facts("both-older", dt.date(2022, 1, 1), "CT", "CHEST"),
    ]
    chosen = relevant_priors(
        current=CURRENT, candidates=candidates, max_count=3, max_years=5, today=TODAY
    )
    # The three closest: both-new, both-old, both-older (region and modality), shown
    # most recent first; the newer modality-only and region-only ones are left out.
    assert [c.prior.study_instance_uid for c in chosen] == ["both-new", "both-old", "both-older"]
    chosen = relevant_priors(
        current=CURRENT, candidates=candidates, max_count=5, max_years=5, today=TODAY
    )
    assert [c.prior.study_instance_uid for c in chosen] == [
        "mod-new",
        "both-new",
        "region-mid",
        "both-old",
        "both-older",
    ]


def test_no_count_no_priors_and_an_undated_current_study_uses_today() -> None:
    candidate = facts("a", dt.date(2026, 1, 1), "CT", "CHEST")
    assert (
        relevant_priors(
            current=CURRENT, candidates=[candidate], max_count=0, max_years=5, today=TODAY
        )
        == []
    )
    undated = facts("cur", None, "CT", "CHEST")
    assert (
        len(
            relevant_priors(
                current=undated, candidates=[candidate], max_count=1, max_years=1, today=TODAY
            )
        )
        == 1
    )


def test_a_uid_listed_twice_is_chosen_once() -> None:
    candidate = facts("a", dt.date(2026, 1, 1), "CT", "CHEST")
    chosen = relevant_priors(
        current=CURRENT, candidates=[candidate, candidate], max_count=3, max_years=5, today=TODAY
    )
    assert len(chosen) == 1


MODALITIES = st.sampled_from(["CT", "MR", "CR", "DX", "US", "MG", "NM", "PT", "SR", "OT", ""])
PARTS = st.sampled_from(["CHEST", "HEAD", "LSPINE", "KNEE", "ABDOMENPELVIS", "BREAST", "", "XYZ"])
DESCRIPTIONS = st.sampled_from(["", "CT CHEST", "MRI BRAIN", "XR HAND", "US PELVIS", "FOLLOW UP"])
DATES = st.one_of(
    st.none(), st.dates(min_value=dt.date(2010, 1, 1), max_value=dt.date(2027, 12, 31))
)
STUDIES = st.builds(
    facts,
    uid=st.sampled_from([f"1.2.{n}" for n in range(12)] + ["cur"]),
    day=DATES,
    modality=MODALITIES,
    body_part=PARTS,
    description=DESCRIPTIONS,
)


@settings(max_examples=300, deadline=None)
@given(
    current=STUDIES,
    candidates=st.lists(STUDIES, max_size=15),
    max_count=st.integers(min_value=0, max_value=6),
    max_years=st.integers(min_value=0, max_value=10),
)
def test_every_choice_is_bounded_relevant_and_newest_first(
    current: StudyFacts, candidates: list[StudyFacts], max_count: int, max_years: int
) -> None:
    chosen = relevant_priors(
        current=current,
        candidates=candidates,
        max_count=max_count,
        max_years=max_years,
        today=TODAY,
    )
    reference = current.study_date or TODAY
    assert len(chosen) <= max_count
    uids = [c.prior.study_instance_uid for c in chosen]
    assert len(set(uids)) == len(uids)
    assert current.study_instance_uid not in uids
    days = [c.prior.study_date for c in chosen]
    assert all(d is not None for d in days)
    assert days == sorted(days, reverse=True)  # type: ignore[type-var]
    for c in chosen:
        day = c.prior.study_date
        assert day is not None and day <= reference
        assert (reference - day).days <= max_years * 366
        shares_region = bool(regions_of(current) & regions_of(c.prior))
        shares_class = bool(modality_classes_of(current) & modality_classes_of(c.prior))
        assert shares_region or shares_class
        assert (
            c.code
            == {
                (True, True): "region_modality",
                (True, False): "region",
                (False, True): "modality",
            }[(shares_region, shares_class)]
        )


@settings(max_examples=200, deadline=None)
@given(
    current=STUDIES,
    candidates=st.lists(STUDIES, max_size=15),
    max_count=st.integers(min_value=0, max_value=5),
)
def test_allowing_more_never_drops_a_choice(
    current: StudyFacts, candidates: list[StudyFacts], max_count: int
) -> None:
    fewer = relevant_priors(
        current=current, candidates=candidates, max_count=max_count, max_years=5, today=TODAY
    )
    more = relevant_priors(
        current=current, candidates=candidates, max_count=max_count + 1, max_years=5, today=TODAY
    )
    assert {c.prior.study_instance_uid for c in fewer} <= {c.prior.study_instance_uid for c in more}
