"""Claims under contention on PostgreSQL, with real threads and real transactions."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter

import pytest
from django.db import connection

from routing.services import study_route
from studies.models import Study
from studies.services import study_transition
from teleradiology.errors import Conflict, DomainError
from tests import factories as f
from tests.routing.conftest import NOW, make_reader
from worklist.services.claims import study_claim, study_claim_next, study_reassign

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _offered_studies(facility, n):
    ids = []
    for _ in range(n):
        study = f.StudyFactory(
            facility=facility,
            modality="CT",
            body_part="HEAD",
            received_at=NOW - dt.timedelta(minutes=5),
        )
        study_transition(study_id=study.pk, to_status="ready", at=NOW)
        study_route(study_id=study.pk, now=NOW)
        ids.append(study.pk)
    assert Study.objects.filter(pk__in=ids, status="offered").count() == n
    return ids


def _run(workers, target):
    barrier = threading.Barrier(len(workers))
    threads = []
    for worker in workers:

        def go(w=worker):
            try:
                barrier.wait()
                target(w)
            finally:
                connection.close()

        threads.append(threading.Thread(target=go))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)


def test_50_claimers_over_20_studies_each_study_claimed_exactly_once(
    group_a, facility_a, regions, neuro_rule
):
    readers = [
        make_reader(group_a, facility_a, name=f"r{n}", region=regions["local"], cap=50)
        for n in range(50)
    ]
    studies = _offered_studies(facility_a, 20)
    wins: list[tuple[int, int]] = []
    losses = Counter()

    def claim_all(reader):
        for study_id in studies:
            try:
                study_claim(study_id=study_id, radiologist=reader)
                wins.append((study_id, reader.pk))
            except Conflict:
                losses[study_id] += 1

    _run(readers, claim_all)
    assert sorted(s for s, _ in wins) == sorted(studies)  # each exactly once
    for study_id, reader_id in wins:
        study = Study.objects.get(pk=study_id)
        assert study.assigned_radiologist_id == reader_id
        assert study.transitions.filter(to_status="claimed").count() == 1
        assert losses[study_id] == 49


def test_20_next_callers_over_100_studies_none_twice_none_left(
    group_a, facility_a, regions, neuro_rule
):
    readers = [
        make_reader(group_a, facility_a, name=f"n{n}", region=regions["local"], cap=100)
        for n in range(20)
    ]
    studies = _offered_studies(facility_a, 100)
    got: list[int] = []

    def take_until_empty(reader):
        while True:
            study = study_claim_next(radiologist=reader)
            if study is None:
                return
            got.append(study.pk)

    _run(readers, take_until_empty)
    assert len(got) == len(set(got)) == 100
    assert set(got) == set(studies)
    assert Study.objects.filter(pk__in=studies, status="claimed").count() == 100


def test_a_claim_racing_an_admin_reassign_has_one_outcome(
    group_a, facility_a, regions, neuro_rule, group_admin
):
    claimer = make_reader(group_a, facility_a, name="claimer", region=regions["local"])
    target = make_reader(group_a, facility_a, name="target", region=regions["local"])
    for _ in range(10):
        (study_id,) = _offered_studies(facility_a, 1)
        outcomes: list[str] = []

        def act(who, study_id=study_id, outcomes=outcomes):
            try:
                if who == "claim":
                    study_claim(study_id=study_id, radiologist=claimer)
                else:
                    study_reassign(study_id=study_id, to=target, actor=group_admin)
                outcomes.append(who)
            except DomainError:
                outcomes.append(f"{who}-refused")

        _run(["claim", "reassign"], act)
        study = Study.objects.get(pk=study_id)
        assert study.status == "claimed"
        # Either the claim lost (409) and the admin's reader holds it, or the claim won
        # and the admin then moved it: never two holders, never a lost update.
        if "claim-refused" in outcomes:
            assert study.assigned_radiologist == target
        else:
            assert study.assigned_radiologist in (claimer, target)
        assert study.transitions.filter(to_status="claimed").count() == 1


def test_a_claim_racing_a_stale_claim_release_has_one_holder(
    group_a, facility_a, regions, neuro_rule, settings
):
    from django.utils import timezone

    from worklist.services.claims import claims_release_stale

    settings.STALE_CLAIM_MINUTES = {1: 20, 2: 60, 3: 240}
    idle = make_reader(group_a, facility_a, name="idle", region=regions["local"])
    eager = make_reader(group_a, facility_a, name="eager", region=regions["local"], cap=50)
    outcomes_seen: Counter[str] = Counter()
    for _ in range(10):
        (study_id,) = _offered_studies(facility_a, 1)
        study_claim(study_id=study_id, radiologist=idle)
        # The idle reader's claim went quiet long ago: the sweep will release it.
        Study.objects.filter(pk=study_id).update(
            claim_activity_at=timezone.now() - dt.timedelta(hours=5)
        )
        outcomes: dict[str, object] = {}

        def act(who, study_id=study_id, outcomes=outcomes):
            if who == "sweep":
                outcomes["released"] = claims_release_stale(now=timezone.now())
                return
            try:
                study_claim(study_id=study_id, radiologist=eager)
                outcomes["claim"] = "won"
            except Conflict:
                outcomes["claim"] = "409"

        _run(["sweep", "claim"], act)
        if outcomes["released"] == []:
            # The sweep skips a row another transaction holds (SKIP LOCKED): the
            # claimer had it locked, was refused, and the next sweep releases it.
            assert outcomes["claim"] == "409"
            outcomes["released"] = claims_release_stale(now=timezone.now())
            outcomes_seen["skipped while locked"] += 1
        study = Study.objects.get(pk=study_id)
        # The stale claim is released exactly once, whoever ran first.
        assert outcomes["released"] == [study_id]
        assert study.transitions.filter(reason__contains="(automatic)").count() == 1
        if outcomes["claim"] == "won":
            # Claimed after the release: the eager reader holds it and the sweep
            # did not release that fresh claim.
            assert study.status == "claimed" and study.assigned_radiologist == eager
            assert study.transitions.filter(to_status="claimed").count() == 2
        else:
            # Tried while the idle claim still stood: refused, the study is back on offer.
            assert study.status == "offered" and study.assigned_radiologist is None
            assert study.transitions.filter(to_status="claimed").count() == 1
        outcomes_seen[str(outcomes["claim"])] += 1
    assert outcomes_seen["won"] + outcomes_seen["409"] == 10
