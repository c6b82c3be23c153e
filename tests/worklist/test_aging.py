"""Aging: the worklist and "next case" order by aged priority (worklist.aging), and a
group's new aging step re-keys its worklists.

The property tests prove the ordering and the bound on the pure functions; the
database tests check that the worklist, its cursor pages and "next case" follow the
same order, and that a new step takes effect at once through the API and the admin.
"""

from __future__ import annotations

import datetime as dt
import heapq
import math
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from network.models import ReadingGroup
from routing.services import study_route
from studies.models import Study
from studies.services import study_transition
from tests import factories as f
from tests.routing.conftest import NOW
from worklist import aging
from worklist.models import Offer
from worklist.selectors import claim_candidates, worklist_for_reader
from worklist.services.claims import study_claim_next
from worklist.services.offers import offers_rerank

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)

# Studies as (priority, arrival in whole seconds after T0); steps in whole minutes
# within the group's bounds (1 minute to a week).
priorities = st.sampled_from([1, 2, 3])
arrivals_s = st.integers(min_value=0, max_value=30 * 24 * 3600)
steps = st.integers(min_value=1, max_value=10080).map(lambda m: m * MINUTE)
studies_st = st.lists(st.tuples(priorities, arrivals_s), min_size=1, max_size=40)


def _key(priority: int, received: dt.datetime, step: dt.timedelta) -> dt.datetime:
    return aging.rank_at(priority=priority, received_at=received, step=step)


@given(studies=studies_st, step=steps, later_s=st.integers(min_value=0, max_value=90 * 86400))
def test_ordering_by_rank_at_is_ordering_by_aged_priority_at_any_now(
    studies: list[tuple[int, int]], step: dt.timedelta, later_s: int
) -> None:
    rows = [(p, T0 + dt.timedelta(seconds=s)) for p, s in studies]
    now = max(r for _, r in rows) + dt.timedelta(seconds=later_s)
    aged = [aging.aged_priority(priority=p, waited=now - r, step=step) for p, r in rows]
    keys = [_key(p, r, step) for p, r in rows]
    # Times are whole seconds, so distinct keys differ by at least 1 s / step in aged
    # priority (over 1e-6), far above the float error of the division (1e-9 here).
    for i in range(len(rows)):
        assert math.isclose(aged[i], 1 + (keys[i] - now) / step, abs_tol=1e-9)
        for j in range(len(rows)):
            if keys[i] < keys[j]:
                assert aged[i] < aged[j] - 1e-9
            elif keys[i] == keys[j]:
                assert math.isclose(aged[i], aged[j], abs_tol=1e-9)


@given(
    first=st.tuples(priorities, arrivals_s),
    later=st.tuples(priorities, st.integers(min_value=1, max_value=30 * 86400)),
    step=steps,
)
def test_only_a_smaller_key_can_take_a_studys_place(
    first: tuple[int, int], later: tuple[int, int], step: dt.timedelta
) -> None:
    """A study arriving after another's key time never ranks before it, and whatever
    ranks before a study arrived at most two steps before its key time: the work
    that can ever be ahead of a study is finite and fixed by its key time."""
    p, s = first
    x_received = T0 + dt.timedelta(seconds=s)
    x_key = _key(p, x_received, step)
    q, after_s = later
    y_received = x_key + dt.timedelta(seconds=after_s)  # arrives after X's key time
    assert _key(q, y_received, step) > x_key
    # Any study that ranks ahead of X arrived in [key - 2 steps, key].
    for q2 in (1, 2, 3):
        earliest = x_key - (q2 - 1) * step
        assert _key(q2, earliest, step) == x_key
        assert _key(q2, earliest + dt.timedelta(seconds=1), step) > x_key


def _serve(
    studies: list[tuple[int, dt.datetime]], readers: int, read: dt.timedelta, step: dt.timedelta
) -> tuple[dict[int, dt.datetime], dict[int, int]]:
    """Readers take the top of the one shared worklist (smallest (key, priority,
    index)) whenever they are free, each read lasting ``read``.  Returns each study's
    start and, per study, how many studies ranked ahead of it were not started at its
    key time (``B``)."""
    order = sorted(range(len(studies)), key=lambda i: studies[i][1])
    rank = {i: (_key(*studies[i], step), studies[i][0], i) for i in order}
    free = [(studies[order[0]][1], n) for n in range(readers)]
    heapq.heapify(free)
    queue: list[tuple[tuple[dt.datetime, int, int], int]] = []
    started: dict[int, dt.datetime] = {}
    nxt = 0
    while len(started) < len(studies):
        at, reader = heapq.heappop(free)
        while nxt < len(order) and studies[order[nxt]][1] <= at:
            heapq.heappush(queue, (rank[order[nxt]], order[nxt]))
            nxt += 1
        if not queue:
            heapq.heappush(free, (studies[order[nxt]][1], reader))
            continue
        _, i = heapq.heappop(queue)
        started[i] = at
        heapq.heappush(free, (at + read, reader))
    ahead = {
        i: sum(
            1
            for j in range(len(studies))
            if rank[j] < rank[i] and started[j] >= rank[i][0]  # not started by i's key time
        )
        for i in range(len(studies))
    }
    return started, ahead


@settings(max_examples=150, deadline=None)
@given(
    studies=st.lists(
        st.tuples(priorities, st.integers(min_value=0, max_value=2 * 86400)),
        min_size=1,
        max_size=60,
    ),
    readers=st.integers(min_value=1, max_value=5),
    read_minutes=st.integers(min_value=1, max_value=90),
    step=st.integers(min_value=1, max_value=240).map(lambda m: m * MINUTE),
)
def test_the_wait_to_the_top_is_bounded(
    studies: list[tuple[int, int]], readers: int, read_minutes: int, step: dt.timedelta
) -> None:
    """The bound of docs/routing.md, under any arrival pattern (floods included): a
    study of priority p is taken within (p - 1) * step + ceil((B + 1) / c) * read of
    its arrival, B being the studies ranked ahead of it and not started at its key
    time, c the readers.  Nothing arriving after its key time counts."""
    rows = [(p, T0 + dt.timedelta(seconds=s)) for p, s in studies]
    read = read_minutes * MINUTE
    started, ahead = _serve(rows, readers, read, step)
    for i, (p, received) in enumerate(rows):
        bound = (
            aging.rank_offset(priority=p, step=step) + math.ceil((ahead[i] + 1) / readers) * read
        )
        assert started[i] - received <= bound


# --- the database: the worklist, its pages and "next case" ---------------------------


def _offered(facility: Any, *, priority: int, waited: dt.timedelta) -> Study:
    study = f.StudyFactory(
        facility=facility,
        modality="CT",
        body_part="HEAD",
        priority=priority,
        received_at=NOW - waited,
    )
    study_transition(study_id=study.pk, to_status="ready", at=NOW)
    study_route(study_id=study.pk, now=NOW)
    return study


@pytest.fixture
def aged_mix(tiered: Any, facility_a: Any) -> dict[str, Study]:
    """With the default step (60 min): a routine study that waited 3 h ranks before a
    fresh STAT one; an urgent one that waited 1 h ties with the fresh STAT one and
    comes after it; a routine one that waited 1 h comes last."""
    assert facility_a.reading_group.worklist_aging_minutes == 60
    return {
        "stat": _offered(facility_a, priority=1, waited=dt.timedelta(0)),
        "urgent_1h": _offered(facility_a, priority=2, waited=dt.timedelta(hours=1)),
        "routine_3h": _offered(facility_a, priority=3, waited=dt.timedelta(hours=3)),
        "routine_1h": _offered(facility_a, priority=3, waited=dt.timedelta(hours=1)),
    }


def _ids(rows: Any) -> list[int]:
    return [s.pk for s in rows]


@pytest.mark.django_db
def test_the_worklist_and_next_case_order_by_aged_priority(
    tiered: Any, aged_mix: dict[str, Study]
) -> None:
    reader = tiered["local"]
    expected = [aged_mix[k].pk for k in ("routine_3h", "stat", "urgent_1h", "routine_1h")]
    assert _ids(worklist_for_reader(radiologist=reader)) == expected
    assert _ids(claim_candidates(radiologist=reader)) == expected
    taken = study_claim_next(radiologist=reader)
    assert taken is not None and taken.pk == aged_mix["routine_3h"].pk


@pytest.mark.django_db
def test_the_worklist_page_says_what_a_waiting_study_ranks_as(
    client: Any, tiered: Any, aged_mix: dict[str, Study]
) -> None:
    client.force_login(tiered["local"].user)
    page = client.get("/worklist/rows/").content.decode()
    rows = {
        int(m.group(1)): m.group(2)
        for m in re.finditer(r'<tr class="p\d" data-study="(\d+)">(.*?)</tr>', page, re.S)
    }

    def ranked_in(row: str) -> str:
        found = re.search(r'<small class="ranked"[^>]*>([^<]*)</small>', row)
        return found.group(1) if found else ""

    ranked = {name: ranked_in(rows[s.pk]) for name, s in aged_mix.items()}
    # Routine that waited 3 h: above STAT; urgent that waited 1 h and routine that
    # waited 1 h: one level up; a fresh STAT study: nothing to say.
    assert ranked == {
        "stat": "",
        "urgent_1h": "ranked as STAT",
        "routine_3h": "ranked as STAT",
        "routine_1h": "ranked as Urgent",
    }


@pytest.mark.django_db
def test_the_api_pages_by_aged_priority_and_keeps_its_filters(
    api: Any, tiered: Any, aged_mix: dict[str, Study]
) -> None:
    client = api(tiered["local"].user)
    expected = [aged_mix[k].pk for k in ("routine_3h", "stat", "urgent_1h", "routine_1h")]
    seen: list[int] = []
    url: str | None = "/api/v1/worklist/?page_size=1"
    while url:
        body = client.get(url).json()
        seen += [r["id"] for r in body["results"]]
        url = body["next"]
    assert seen == expected
    rows = client.get("/api/v1/worklist/", {"priority": 3}).json()["results"]
    assert [r["id"] for r in rows] == [aged_mix["routine_3h"].pk, aged_mix["routine_1h"].pk]
    bad = client.get("/api/v1/worklist/", {"cursor": "bm90IGEgY3Vyc29y"})
    assert bad.status_code == 400 and "cursor" in bad.json()


@pytest.mark.django_db
def test_a_new_aging_step_rekeys_the_groups_open_offers(
    tiered: Any, facility_a: Any, aged_mix: dict[str, Study]
) -> None:
    reader = tiered["local"]
    # One offer withdrawn: it keeps its key.
    withdrawn = Offer.objects.filter(study=aged_mix["routine_1h"], radiologist=reader)
    withdrawn.update(withdrawn_at=NOW, withdrawn_reason="test")
    old_key = withdrawn.get().rank_at
    rekeyed = offers_rerank(reading_group_id=facility_a.reading_group_id, step=4 * 60 * MINUTE)
    assert rekeyed == Offer.objects.filter(withdrawn_at__isnull=True).count()
    assert withdrawn.get().rank_at == old_key
    # Four hours a level: the routine study that waited 3 h is behind the fresh STAT
    # one again, and so is the urgent one.
    assert _ids(worklist_for_reader(radiologist=reader)) == [
        aged_mix["stat"].pk,
        aged_mix["urgent_1h"].pk,
        aged_mix["routine_3h"].pk,
    ]
    for offer in Offer.objects.filter(withdrawn_at__isnull=True):
        assert offer.rank_at == aging.rank_at(
            priority=offer.priority, received_at=offer.received_at, step=4 * 60 * MINUTE
        )


@pytest.mark.django_db
def test_another_groups_offers_are_not_rekeyed(
    tiered: Any, facility_a: Any, facility_c: Any, aged_mix: dict[str, Study]
) -> None:
    before = dict(Offer.objects.values_list("pk", "rank_at"))
    assert offers_rerank(reading_group_id=facility_c.reading_group_id, step=MINUTE) == 0
    assert dict(Offer.objects.values_list("pk", "rank_at")) == before


# --- changing the step: the API and the admin -----------------------------------------


@pytest.mark.django_db
def test_a_group_admin_sets_the_aging_step_and_the_worklist_follows_at_once(
    api: Any, tiered: Any, group_a: Any, group_admin: Any, aged_mix: dict[str, Study]
) -> None:
    client = api(group_admin)
    url = f"/api/v1/reading-groups/{group_a.pk}/"
    assert client.get(url).json() == {
        "id": group_a.pk,
        "name": group_a.name,
        "worklist_aging_minutes": 60,
        "max_pause_minutes": 120,
    }
    changed = client.patch(url, {"worklist_aging_minutes": 240}, format="json")
    assert changed.status_code == 200, changed.content
    assert changed.json()["worklist_aging_minutes"] == 240
    assert _ids(worklist_for_reader(radiologist=tiered["local"]))[:2] == [
        aged_mix["stat"].pk,
        aged_mix["urgent_1h"].pk,
    ]
    assert client.patch(url, {"max_pause_minutes": 30}, format="json").status_code == 200
    group_a.refresh_from_db()
    assert (group_a.worklist_aging_minutes, group_a.max_pause_minutes) == (240, 30)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("worklist_aging_minutes", 0, "The aging step is 1 to 10080 minutes."),
        ("worklist_aging_minutes", 10081, "The aging step is 1 to 10080 minutes."),
        ("max_pause_minutes", 0, "A pause is 1 to 1440 minutes."),
        ("max_pause_minutes", 1441, "A pause is 1 to 1440 minutes."),
    ],
)
def test_the_group_settings_are_bounded(
    api: Any, group_a: Any, group_admin: Any, field: str, value: int, message: str
) -> None:
    refused = api(group_admin).patch(
        f"/api/v1/reading-groups/{group_a.pk}/", {field: value}, format="json"
    )
    assert refused.status_code == 400
    assert refused.json() == {field: [message]}
    assert getattr(ReadingGroup.objects.get(pk=group_a.pk), field) in (60, 120)


@pytest.mark.django_db
def test_only_the_groups_admins_see_or_change_its_settings(
    api: Any, group_a: Any, other_admin: Any, licensed_reader: Any
) -> None:
    url = f"/api/v1/reading-groups/{group_a.pk}/"
    for user in (other_admin, licensed_reader.user):
        assert api(user).get(url).status_code == 404
        assert api(user).patch(url, {"worklist_aging_minutes": 5}, format="json").status_code == 404
    assert api(None).get(url).status_code in (401, 403)
    assert ReadingGroup.objects.get(pk=group_a.pk).worklist_aging_minutes == 60


@pytest.mark.django_db
def test_the_admin_edits_the_step_and_rekeys_the_worklists(
    client: Any, tiered: Any, group_a: Any, aged_mix: dict[str, Study]
) -> None:
    client.force_login(f.UserFactory(username="root", is_staff=True, is_superuser=True))
    url = f"/admin/network/readinggroup/{group_a.pk}/change/"
    page = client.get(url)
    assert b"worklist_aging_minutes" in page.content and b"max_pause_minutes" in page.content
    refused = client.post(
        url, {"name": group_a.name, "worklist_aging_minutes": 0, "max_pause_minutes": 120}
    )
    assert refused.status_code == 200  # the form again, with the error
    assert b"greater than or equal to 1" in refused.content
    saved = client.post(
        url, {"name": group_a.name, "worklist_aging_minutes": 240, "max_pause_minutes": 90}
    )
    assert saved.status_code == 302
    assert _ids(worklist_for_reader(radiologist=tiered["local"]))[:2] == [
        aged_mix["stat"].pk,
        aged_mix["urgent_1h"].pk,
    ]
    offer = Offer.objects.get(study=aged_mix["routine_3h"], radiologist=tiered["local"])
    assert offer.rank_at == offer.received_at + 2 * 240 * MINUTE
