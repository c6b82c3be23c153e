"""Facility turnaround figures: hand-computed percentiles, scoping, validation, CSV.

Percentiles interpolate linearly between nearest ranks: for n sorted values the
p-th percentile sits at rank 1 + (n - 1)·p.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

import pytest
from django.db import connection

from studies.services import study_transition
from tests import factories as f
from tests.turnaround.conftest import DAY, scripted_study

pytestmark = pytest.mark.django_db

URL = "/api/v1/turnaround/"
MIN = 60.0


@pytest.fixture
def ten_stat(facility_a: Any, licensed_reader: Any) -> list[Any]:
    """Ten STAT studies at facility A, 10 minutes apart: ready after 1 minute,
    claimed after 2..11 minutes, final after 10, 20, .. 100 minutes."""
    return [
        scripted_study(
            facility_a,
            reader=licensed_reader,
            received_at=DAY + dt.timedelta(minutes=10 * i),
            ready=1,
            claimed=2 + i,
            final=10 * (i + 1),
        )
        for i in range(10)
    ]


@pytest.fixture
def a_figures(ten_stat: Any, facility_a: Any, licensed_reader: Any) -> None:
    # Still on offer long past its 30-minute target: a miss, though not final.
    scripted_study(facility_a, received_at=DAY, ready=1)
    # Routine and on time (target 1440 minutes).
    scripted_study(
        facility_a,
        reader=licensed_reader,
        received_at=DAY,
        ready=2,
        claimed=4,
        final=60,
        priority=3,
        modality="MR",
    )
    # Cancelled studies are not measured.
    cancelled = scripted_study(facility_a, received_at=DAY, priority=3)
    study_transition(study_id=cancelled.pk, to_status="cancelled", at=DAY)
    # Outside the range.
    scripted_study(
        facility_a,
        reader=licensed_reader,
        received_at=DAY - dt.timedelta(days=3),
        ready=1,
        claimed=2,
        final=5,
    )


@pytest.fixture
def b_figures(facility_b: Any, group_a: Any) -> None:
    reader = f.RadiologistFactory(user=f.UserFactory(username="dr_b"), reading_group=group_a)
    for final in (5, 7, 31):
        scripted_study(facility_b, reader=reader, received_at=DAY, ready=1, claimed=2, final=final)


def get(client: Any, **params: Any) -> Any:
    return client.get(URL, {"from": "2026-06-01", "to": "2026-06-01", **params})


def test_percentiles_match_hand_computed_values(
    api: Any, staff_a: Any, facility_a: Any, a_figures: Any
) -> None:
    response = get(api(staff_a), facility=facility_a.pk)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["facility"] == facility_a.pk
    assert body["timezone"] == "America/Chicago"
    rows = {row["key"]: row for row in body["groups"]}
    assert set(rows) == {"1", "3"}
    stat = rows["1"]
    assert stat["name"] == "STAT"
    assert (stat["studies"], stat["finalized"]) == (11, 10)
    # 10, 20 .. 100 minutes: rank 5.5 -> (50 + 60) / 2; rank 9.1 -> 90 + 0.1 * 10.
    assert stat["received_to_final_count"] == 10
    assert stat["received_to_final_median_seconds"] == pytest.approx(55 * MIN)
    assert stat["received_to_final_p90_seconds"] == pytest.approx(91 * MIN)
    # Waits of 1 .. 10 minutes: (5 + 6) / 2 and 9 + 0.1 * 1.
    assert stat["ready_to_claimed_count"] == 10
    assert stat["ready_to_claimed_median_seconds"] == pytest.approx(5.5 * MIN)
    assert stat["ready_to_claimed_p90_seconds"] == pytest.approx(9.1 * MIN)
    # Reading times 8, 17 .. 89 minutes (step 9): (44 + 53) / 2 and 80 + 0.1 * 9.
    assert stat["claimed_to_final_median_seconds"] == pytest.approx(48.5 * MIN)
    assert stat["claimed_to_final_p90_seconds"] == pytest.approx(80.9 * MIN)
    # Within 30 minutes: the 10, 20 and 30 minute finals (30 is exactly on time);
    # the open study past its due time counts as a miss.
    assert (stat["within_target_met"], stat["within_target_due"]) == (3, 11)
    assert stat["within_target_share"] == round(3 / 11, 4)

    routine = rows["3"]
    assert (routine["studies"], routine["finalized"]) == (1, 1)
    assert routine["received_to_final_median_seconds"] == pytest.approx(60 * MIN)
    assert routine["received_to_final_p90_seconds"] == pytest.approx(60 * MIN)
    assert routine["within_target_share"] == 1.0


def test_odd_count_median_is_the_middle_value(api: Any, staff_b: Any, b_figures: Any) -> None:
    [row] = get(api(staff_b)).json()["groups"]

    # 5, 7, 31 minutes: rank 2 -> 7; rank 2.8 -> 7 + 0.8 * 24.  31 misses the 30.
    assert row["received_to_final_median_seconds"] == pytest.approx(7 * MIN)
    assert row["received_to_final_p90_seconds"] == pytest.approx(26.2 * MIN)
    assert (row["within_target_met"], row["within_target_due"]) == (2, 3)


def test_group_by_modality_and_day_and_priority_filter(
    api: Any, group_admin: Any, facility_a: Any, a_figures: Any
) -> None:
    client = api(group_admin)
    by_modality = get(client, facility=facility_a.pk, group_by="modality").json()["groups"]
    assert {r["key"]: r["studies"] for r in by_modality} == {"CT": 11, "MR": 1}

    by_day = get(client, facility=facility_a.pk, group_by="day").json()["groups"]
    assert [(r["key"], r["studies"]) for r in by_day] == [("2026-06-01", 12)]

    routine_only = get(client, facility=facility_a.pk, priority=3).json()["groups"]
    assert [(r["key"], r["studies"]) for r in routine_only] == [("3", 1)]


def test_days_are_the_facility_s_local_days(
    api: Any, staff_a: Any, facility_a: Any, licensed_reader: Any
) -> None:
    # 03:00 UTC on 2 June is 22:00 on 1 June in Chicago.
    late = DAY.replace(hour=3) + dt.timedelta(days=1)
    scripted_study(
        facility_a, reader=licensed_reader, received_at=late, ready=1, claimed=2, final=9
    )

    local = get(api(staff_a), facility=facility_a.pk, group_by="day").json()
    utc = api(staff_a).get(URL, {"from": "2026-06-02", "to": "2026-06-02", "group_by": "day"})

    assert [r["key"] for r in local["groups"]] == ["2026-06-01"]
    assert [r["key"] for r in utc.json()["groups"]] == ["2026-06-02"]


# --- Scope ------------------------------------------------------------------
def test_facility_staff_never_see_another_facility_s_figures(
    api: Any, staff_b: Any, facility_a: Any, a_figures: Any, b_figures: Any
) -> None:
    client = api(staff_b)

    named = get(client, facility=facility_a.pk)
    assert named.status_code == 404
    assert "groups" not in named.json()

    mine = get(client).json()
    assert mine["facility"] is None
    assert sum(r["studies"] for r in mine["groups"]) == 3  # B's own, none of A's


def test_group_admin_sees_their_group_s_facilities_only(
    api: Any,
    group_admin: Any,
    other_admin: Any,
    facility_a: Any,
    facility_b: Any,
    a_figures: Any,
    b_figures: Any,
) -> None:
    everything = get(api(group_admin)).json()["groups"]
    assert sum(r["studies"] for r in everything) == 12 + 3

    assert get(api(other_admin), facility=facility_a.pk).status_code == 404
    assert get(api(other_admin)).json()["groups"] == []


def test_readers_and_strangers_get_no_figures(
    api: Any, licensed_reader: Any, facility_a: Any, a_figures: Any
) -> None:
    assert get(api(licensed_reader.user)).json()["groups"] == []
    assert get(api(licensed_reader.user), facility=facility_a.pk).status_code == 404
    assert get(api(None)).status_code in (401, 403)


# --- Validation and export -------------------------------------------------
@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"from": "2026-13-01"}, "from", "Use a date as YYYY-MM-DD."),
        ({"to": "yesterday"}, "to", "Use a date as YYYY-MM-DD."),
        ({"from": "2026-06-02", "to": "2026-06-01"}, "to", "to must be on or after from."),
        (
            {"from": "2025-01-01", "to": "2026-06-01"},
            "to",
            "The range may span at most 366 days.",
        ),
        ({"group_by": "week"}, "group_by", "group_by must be priority, modality or day."),
        ({"priority": "7"}, "priority", "priority must be 1 (STAT), 2 (urgent) or 3 (routine)."),
        ({"facility": "abc"}, "facility", "A valid integer is required."),
    ],
)
def test_bad_queries_are_400_with_a_message(
    api: Any, staff_a: Any, params: dict[str, str], field: str, message: str
) -> None:
    response = api(staff_a).get(URL, params)

    assert response.status_code == 400
    assert response.json()[field] == [message]


def test_csv_export(api: Any, staff_a: Any, facility_a: Any, a_figures: Any) -> None:
    response = get(api(staff_a), facility=facility_a.pk, format="csv")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [r["key"] for r in rows] == ["1", "3"]
    assert float(rows[0]["received_to_final_median_seconds"]) == pytest.approx(55 * MIN)
    assert rows[0]["within_target_share"] == str(round(3 / 11, 4))


def test_figures_take_a_fixed_number_of_queries(
    api: Any,
    staff_a: Any,
    facility_a: Any,
    a_figures: Any,
    django_assert_max_num_queries: Any,
) -> None:
    client = api(staff_a)
    get(client, facility=facility_a.pk)  # warm the session and permission caches
    with django_assert_max_num_queries(6):
        assert get(client, facility=facility_a.pk).status_code == 200


@pytest.mark.postgres
def test_percentiles_agree_with_postgresql_percentile_cont(
    api: Any, staff_a: Any, facility_a: Any, a_figures: Any
) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY s), "
            "percentile_cont(0.9) WITHIN GROUP (ORDER BY s) FROM ("
            " SELECT EXTRACT(EPOCH FROM finalized_at - received_at) AS s"
            " FROM studies_study WHERE facility_id = %s AND priority = 1"
            " AND finalized_at IS NOT NULL AND received_at >= %s AND received_at < %s) t",
            [facility_a.pk, DAY - dt.timedelta(hours=9), DAY + dt.timedelta(hours=15)],
        )
        median, p90 = cursor.fetchone()

    [stat] = get(api(staff_a), facility=facility_a.pk, priority=1).json()["groups"]

    assert stat["received_to_final_median_seconds"] == pytest.approx(float(median))
    assert stat["received_to_final_p90_seconds"] == pytest.approx(float(p90))
