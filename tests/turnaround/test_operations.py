"""The group admins' operations view: queue, at-risk, unroutable, load and fairness,
scoped to the groups they administer; API and page (facility targets: STAT 30 min,
urgent 120 min, routine 1440 min)."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from typing import Any

import pytest
import time_machine

from network.services import reading_group_admin_grant
from routing.models import StudyRouting
from tests import factories as f
from tests.turnaround.conftest import DAY, scripted_study
from turnaround import operations

pytestmark = pytest.mark.django_db

NOW = DAY + dt.timedelta(hours=3)  # 17:00 UTC
URL = "/api/v1/operations/"


def routed(study: Any, *, tier: int = 0, rvu: str = "1", unroutable: str = "") -> Any:
    StudyRouting.objects.update_or_create(
        study=study,
        defaults={
            "tier": tier,
            "relative_value": Decimal(rvu),
            "decided_at": study.received_at,
            "unroutable_at": NOW - dt.timedelta(minutes=7) if unroutable else None,
            "unroutable_reason": unroutable,
        },
    )
    return study


def offered(facility: Any, *, minutes_ago: float, priority: int = 1, tier: int = 0) -> Any:
    """Offered at ``tier``, received ``minutes_ago`` before NOW, ready a minute later."""
    study = scripted_study(
        facility,
        received_at=NOW - dt.timedelta(minutes=minutes_ago),
        ready=min(1, minutes_ago),
        priority=priority,
    )
    return routed(study, tier=tier)


def claimed_by(reader: Any, facility: Any, *, minutes_ago: float, rvu: str, final: bool = False):
    """A study claimed by ``reader`` ``minutes_ago`` before NOW (final a minute later)."""
    received = NOW - dt.timedelta(minutes=minutes_ago + 2)
    study = scripted_study(
        facility,
        reader=reader,
        received_at=received,
        ready=1,
        claimed=2,
        final=3 if final else None,
        priority=3,
    )
    return routed(study, rvu=rvu)


def on_shift(reader: Any, *, hours_ago: float = 2, hours: float = 8) -> Any:
    reader.shifts.all().delete()
    f.ShiftFactory(
        radiologist=reader,
        starts_at=NOW - dt.timedelta(hours=hours_ago),
        ends_at=NOW - dt.timedelta(hours=hours_ago) + dt.timedelta(hours=hours),
    )
    return reader


def reader_in(group: Any, name: str) -> Any:
    return f.RadiologistFactory(user=f.UserFactory(username=name), reading_group=group)


def snapshot(user: Any, **kwargs: Any) -> operations.OperationsSnapshot:
    return operations.operations_snapshot(user=user, now=NOW, **kwargs)


def test_queue_counts_offered_studies_by_tier_and_priority(
    group_admin: Any, facility_a: Any, facility_b: Any, facility_c: Any, licensed_reader: Any
) -> None:
    offered(facility_a, minutes_ago=2, priority=1, tier=0)
    offered(facility_b, minutes_ago=3, priority=1, tier=0)
    offered(facility_a, minutes_ago=40, priority=1, tier=2)  # past its 30-minute target
    offered(facility_a, minutes_ago=10, priority=3, tier=1)
    offered(facility_c, minutes_ago=2, priority=1, tier=0)  # another group's
    claimed_by(licensed_reader, facility_a, minutes_ago=5, rvu="1")  # claimed: not queued
    queue = {(r["tier"], r["priority"]): r for r in snapshot(group_admin).queue}
    assert {k: (r["studies"], r["overdue"]) for k, r in queue.items()} == {
        (0, 1): (2, 0),
        (1, 3): (1, 0),
        (2, 1): (1, 1),
    }
    assert queue[(0, 1)]["oldest_received_at"] == NOW - dt.timedelta(minutes=3)
    assert queue[(2, 1)]["tier_name"] == "Global"


def test_at_risk_lists_unclaimed_studies_past_the_first_fraction(
    group_admin: Any, facility_a: Any, facility_c: Any, licensed_reader: Any
) -> None:
    early = offered(facility_a, minutes_ago=14)  # 47% of 30 minutes: not yet
    half = offered(facility_a, minutes_ago=15)  # exactly 50%
    late = offered(facility_a, minutes_ago=45)  # overdue: 150%
    urgent = offered(facility_a, minutes_ago=90, priority=2)  # 75% of 120 minutes
    offered(facility_c, minutes_ago=25)  # another group's
    claimed = claimed_by(licensed_reader, facility_a, minutes_ago=20, rvu="1")  # claimed
    snap = snapshot(group_admin)
    assert [s.pk for s in snap.at_risk] == [late.pk, half.pk, urgent.pk]  # soonest due first
    assert snap.at_risk_total == 3
    used = {s.pk: round(s.target_used, 3) for s in snap.at_risk}
    assert used == {late.pk: 1.5, half.pk: 0.5, urgent.pk: 0.75}
    assert early.pk not in used and claimed.pk not in used
    # The list is cut at the limit; the total still counts them all.
    cut = snapshot(group_admin, limit=1)
    assert [s.pk for s in cut.at_risk] == [late.pk] and cut.at_risk_total == 3


def test_unroutable_studies_with_their_reasons(
    group_admin: Any, facility_a: Any, facility_c: Any
) -> None:
    stuck = scripted_study(facility_a, received_at=NOW - dt.timedelta(minutes=9), ready=1)
    routed(stuck, tier=2, unroutable="no radiologist licensed in US-TX is on shift")
    offered(facility_a, minutes_ago=3)
    routed(
        scripted_study(facility_c, received_at=NOW - dt.timedelta(minutes=9), ready=1),
        unroutable="another group's",
    )
    snap = snapshot(group_admin)
    assert [(r.study_id, r.unroutable_reason) for r in snap.unroutable] == [
        (stuck.pk, "no radiologist licensed in US-TX is on shift")
    ]
    assert snap.unroutable_total == 1


def test_load_and_fairness_hand_computed(
    group_admin: Any, group_a: Any, facility_a: Any, group_c: Any
) -> None:
    amy, ben, cat = (on_shift(reader_in(group_a, n)) for n in ("amy", "ben", "cat"))
    off = reader_in(group_a, "dan")  # off shift, but holds a claim
    on_shift(off, hours_ago=12)
    claimed_by(amy, facility_a, minutes_ago=30, rvu="1.00", final=True)
    claimed_by(ben, facility_a, minutes_ago=30, rvu="0.50", final=True)
    claimed_by(ben, facility_a, minutes_ago=60, rvu="1.50")  # open claim
    claimed_by(cat, facility_a, minutes_ago=20, rvu="1.25", final=True)
    claimed_by(cat, facility_a, minutes_ago=40, rvu="1.75", final=True)
    # Before cat's shift (2 h ago) but inside the 8-hour work window.
    claimed_by(cat, facility_a, minutes_ago=300, rvu="4", final=True)
    claimed_by(off, facility_a, minutes_ago=600, rvu="2")  # older than the window, open
    # Another group's reader is not shown.
    on_shift(reader_in(group_c, "eve"))
    snap = snapshot(group_admin)
    assert {r.radiologist_id for r in snap.load} == {amy.pk, ben.pk, cat.pk, off.pk}
    by_id = {r.radiologist_id: r for r in snap.load}
    assert (by_id[amy.pk].open_claims, by_id[amy.pk].recent_work, by_id[amy.pk].shift_work) == (
        0,
        1.0,
        1.0,
    )
    assert (by_id[ben.pk].open_claims, by_id[ben.pk].recent_claims, by_id[ben.pk].shift_work) == (
        1,
        2,
        2.0,
    )
    assert (by_id[cat.pk].recent_claims, by_id[cat.pk].recent_work, by_id[cat.pk].shift_work) == (
        3,
        7.0,
        3.0,
    )
    assert by_id[off.pk].on_shift is False and by_id[off.pk].open_claims == 1
    assert by_id[off.pk].recent_work == 0.0
    # Shift work of the three on shift: 1, 2, 3 -> mean 2, population sd sqrt(2/3).
    (fair,) = snap.fairness
    assert fair.readers_on_shift == 3 and fair.total_work == 6.0
    assert fair.coefficient_of_variation == round(math.sqrt(2 / 3) / 2, 3)  # 0.408
    assert fair.max_over_mean == 1.5


def test_fairness_is_undefined_before_anyone_claims(group_admin: Any, group_a: Any) -> None:
    on_shift(reader_in(group_a, "amy"))
    (fair,) = snapshot(group_admin).fairness
    assert fair.readers_on_shift == 1
    assert fair.coefficient_of_variation is None and fair.max_over_mean is None


# --- API --------------------------------------------------------------------
def test_api_for_group_admins_only(
    api: Any,
    group_admin: Any,
    other_admin: Any,
    staff_a: Any,
    licensed_reader: Any,
    facility_a: Any,
    facility_c: Any,
    group_c: Any,
) -> None:
    offered(facility_a, minutes_ago=20)
    offered(facility_c, minutes_ago=20)
    with time_machine.travel(NOW, tick=False):
        mine = api(group_admin).get(URL)
        theirs = api(other_admin).get(URL)
        assert api(staff_a).get(URL).status_code == 403
        assert api(licensed_reader.user).get(URL).status_code == 403
        assert api(None).get(URL).status_code in (401, 403)
        assert api(group_admin).get(URL, {"group": group_c.pk}).status_code == 404
    assert mine.status_code == 200, mine.content
    body = mine.json()
    assert [g["name"] for g in body["groups"]] == ["Group A"]
    assert body["at_risk_total"] == 1
    assert body["at_risk"][0]["facility_name"] == "Facility A"
    assert body["at_risk"][0]["target_used"] == pytest.approx(20 / 30, abs=1e-3)
    assert body["queue"][0]["studies"] == 1
    assert {"load", "fairness", "unroutable", "work_hours"} <= set(body)
    assert theirs.json()["at_risk"][0]["facility_name"] == "Facility C"


def test_an_admin_of_two_groups_sees_both_or_one(
    api: Any, group_admin: Any, group_c: Any, facility_a: Any, facility_c: Any
) -> None:
    reading_group_admin_grant(actor=None, user=group_admin, group=group_c)
    offered(facility_a, minutes_ago=20)
    offered(facility_c, minutes_ago=20)
    with time_machine.travel(NOW, tick=False):
        both = api(group_admin).get(URL).json()
        one = api(group_admin).get(URL, {"group": group_c.pk}).json()
    assert both["at_risk_total"] == 2 and len(both["fairness"]) == 2
    assert one["at_risk_total"] == 1 and one["at_risk"][0]["facility_name"] == "Facility C"


# --- Page -------------------------------------------------------------------
def test_page_and_its_live_panel(
    client: Any, group_admin: Any, staff_a: Any, facility_a: Any, facility_c: Any
) -> None:
    risky = offered(facility_a, minutes_ago=20)
    theirs = offered(facility_c, minutes_ago=20)
    client.force_login(group_admin)
    with time_machine.travel(NOW, tick=False):
        page = client.get("/operations/")
        panel = client.get("/operations/panel/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'hx-trigger="every 5s, operations-changed from:body"' in html
    assert f'data-study="{risky.pk}"' in html and f'data-study="{theirs.pk}"' not in html
    assert "coefficient of variation" in html
    assert panel.status_code == 200
    fragment = panel.content.decode()
    assert 'id="operations-panel"' in fragment and "<html" not in fragment
    assert client.get("/").url == "/operations/"
    client.force_login(staff_a)
    assert client.get("/operations/").status_code == 403
    assert client.get("/operations/panel/").status_code == 403


def test_page_for_an_admin_of_two_groups_names_the_groups(
    client: Any, group_admin: Any, group_c: Any, facility_a: Any, facility_c: Any, group_a: Any
) -> None:
    reading_group_admin_grant(actor=None, user=group_admin, group=group_c)
    offered(facility_a, minutes_ago=20)
    offered(facility_c, minutes_ago=20)
    stuck = scripted_study(facility_c, received_at=NOW - dt.timedelta(minutes=9), ready=1)
    routed(stuck, tier=2, unroutable="no radiologist licensed in US-TX is on shift")
    reader = on_shift(reader_in(group_c, "zed"))
    claimed_by(reader, facility_c, minutes_ago=10, rvu="2")
    client.force_login(group_admin)
    with time_machine.travel(NOW, tick=False):
        html = client.get("/operations/").content.decode()
        only_c = client.get("/operations/", {"group": group_c.pk}).content.decode()
        assert client.get("/operations/", {"group": 999999}).status_code == 404
    assert "Queue: Group A" in html and "Queue: Group C" in html
    assert "Fairness this shift: Group C" in html
    assert "no radiologist licensed in US-TX is on shift" in html
    assert f'data-reader="{reader.pk}"' in html and "(Group C)" in html
    assert "Group A" not in only_c
    assert 'hx-get="/operations/panel/?group=' in only_c


def test_open_alerts_of_the_groups_are_on_the_api_and_the_page(
    api: Any, client: Any, group_admin: Any, facility_a: Any, facility_c: Any
) -> None:
    """An SLA warning raised by the sweep is listed until acknowledged; another
    group's alerts never are."""
    from alerts.models import Alert
    from turnaround.services import sla_warnings_raise

    mine = offered(facility_a, minutes_ago=20)  # STAT, 30 min target: past 50%
    theirs = offered(facility_c, minutes_ago=20)
    with time_machine.travel(NOW, tick=False):
        raised = sla_warnings_raise(now=NOW)
        assert {a.study_id for a in raised} == {mine.pk, theirs.pk}
        body = api(group_admin).get(URL).json()
        client.force_login(group_admin)
        html = client.get("/operations/panel/").content.decode()
    assert [(a["kind"], a["study"]) for a in body["alerts"]] == [("sla", mine.pk)]
    mine_alert = Alert.objects.get(study=mine)
    assert f'data-alert="{mine_alert.pk}"' in html
    assert f'data-alert="{Alert.objects.get(study=theirs).pk}"' not in html
    Alert.objects.filter(pk=mine_alert.pk).update(acknowledged_at=NOW)
    with time_machine.travel(NOW, tick=False):
        assert api(group_admin).get(URL).json()["alerts"] == []
