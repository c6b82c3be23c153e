"""The replay against the database: real studies routed by live routing over a few
days, then replayed from the readers' history (simulation.roster), the window's
studies (simulation.selectors) and the run service (simulation.services)."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
import time_machine
from django.db import connection

from network.history import reader_versions_record
from network.models import License, Priority
from network.services import network_object_save
from network.validity import validity_window
from routing.eligibility import ROUTE, Reason, StudyFacts
from routing.models import FacilityTierPool, ReaderPool, RoutingDecision, RoutingRule
from routing.selectors import candidate_facts_many
from routing.services import routing_sweep, study_route
from simulation.models import RoutingDraft, SimulationRun
from simulation.roster import HistoryRoster
from simulation.selectors import (
    DEFAULT_READING_MINUTES,
    live_rules_as_draft,
    reading_minutes,
    replay_studies,
    replay_studies_count,
)
from simulation.services import run_execute, runs_recover
from studies.models import Study
from studies.services import study_transition
from studies.states import StudyStatus
from teleradiology.audited import snapshot
from tests import factories as f
from tests.routing.conftest import NOW, make_reader, neuro_rule, regions  # noqa: F401 - fixtures

START = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
DAYS = 3
END = START + dt.timedelta(days=DAYS)
HOUR = dt.timedelta(hours=1)
MIN = dt.timedelta(minutes=1)
SECOND = dt.timedelta(seconds=1)
# When the regional neuro reader's license is cut short (through the network's
# services), and the end it is given: the last day it is valid is June 2 in the
# jurisdiction (whose time zone the test reads: validity_window).
CUT_AT = START + dt.timedelta(days=1, hours=3)
CUT_TO = dt.date(2026, 6, 2)


@dataclass
class Network:
    group: Any
    facility_a: Any
    facility_b: Any
    readers: dict[str, Any]
    neuro: RoutingRule
    pairs: list[tuple[Any, str]] = field(default_factory=list)


def _shifts(reader: Any, *, hour: int, hours: int = 8) -> None:
    """A shift at the same UTC hour every day around the window."""
    for day in range(-1, DAYS + 1):
        starts = START + dt.timedelta(days=day, hours=hour)
        f.ShiftFactory(radiologist=reader, starts_at=starts, ends_at=starts + hours * HOUR)


@pytest.fixture
def network(
    group_a: Any,
    facility_a: Any,
    facility_b: Any,
    regions: Any,  # noqa: F811 - the fixture imported above
    neuro_rule: Any,  # noqa: F811 - the fixture imported above
) -> Any:
    """Facility A (Dallas, US-TX) with readers at each tier on shifts around the clock,
    and facility B (US-NY) whose hyperlocal tier is a named pool.  Neuro studies
    have a local reader 13-21 UTC, regional ones 21-05 (the license to be cut) and
    05-11, a global one 10-14 (alone 11-13), and a regional reader of general and
    neuro studies 20-12; general studies a local general reader 12-20 besides.  At
    B, nobody reads 14-20 (neuro) or 12-20 (general).  History recorded the day
    before the window."""
    r = regions
    readers = {
        "local": make_reader(
            group_a, facility_a, name="dr_local", region=r["local"], on_shift=False
        ),
        "night": make_reader(
            group_a, facility_a, name="dr_night", region=r["regional"], on_shift=False
        ),
        "day": make_reader(
            group_a, facility_a, name="dr_day", region=r["regional"], on_shift=False
        ),
        "global": make_reader(
            group_a, facility_a, name="dr_global", region=r["global"], on_shift=False
        ),
        "general": make_reader(
            group_a,
            facility_a,
            name="dr_general",
            region=r["local"],
            subs=("general",),
            on_shift=False,
        ),
        "general_night": make_reader(
            group_a,
            facility_a,
            name="dr_general_night",
            region=r["regional"],
            subs=("general", "neuro"),
            on_shift=False,
        ),
        # Licensed in Texas, no privileges at A: never a candidate there.
        "unprivileged": make_reader(
            group_a,
            facility_a,
            name="dr_unprivileged",
            region=r["local"],
            privileged=False,
            on_shift=False,
        ),
        # A suspended license: a candidate (live routing judges it), never eligible.
        "suspended": make_reader(
            group_a, facility_a, name="dr_suspended", region=r["local"], on_shift=False
        ),
    }
    License.objects.filter(radiologist=readers["suspended"]).update(status="suspended")
    _shifts(readers["local"], hour=13)
    _shifts(readers["night"], hour=21)
    _shifts(readers["day"], hour=5, hours=6)
    _shifts(readers["global"], hour=10, hours=4)
    _shifts(readers["general"], hour=12)
    _shifts(readers["general_night"], hour=20, hours=16)
    _shifts(readers["unprivileged"], hour=0, hours=24)
    _shifts(readers["suspended"], hour=10)
    # Facility B (US-NY): the night and global readers hold a license there and
    # privileges at B; the global reader is B's named hyperlocal pool.
    for name in ("night", "global", "general_night"):
        f.LicenseFactory(
            radiologist=readers[name],
            jurisdiction=facility_b.jurisdiction,
            valid_from=dt.date(2025, 1, 1),
            valid_to=dt.date(2099, 12, 31),
        )
        f.PrivilegeFactory(
            radiologist=readers[name],
            facility=facility_b,
            valid_from=dt.date(2025, 1, 1),
            valid_to=dt.date(2099, 12, 31),
        )
    pool = ReaderPool.objects.create(reading_group=group_a, name="B nights")
    pool.radiologists.set([readers["global"]])
    FacilityTierPool.objects.create(facility=facility_b, tier=0, pool=pool)
    reader_versions_record(
        radiologist_ids=[x.pk for x in readers.values()], at=START - dt.timedelta(days=1)
    )
    return Network(
        group=group_a,
        facility_a=facility_a,
        facility_b=facility_b,
        readers=readers,
        neuro=neuro_rule,
        pairs=[(facility_a, "US-TX"), (facility_b, "US-NY"), (facility_a, "US-NY")],
    )


def _arrivals() -> list[tuple[dt.datetime, str, str, int, str]]:
    """(arrival, modality, body part, priority, facility) of the window's studies:
    one every 53 minutes, kinds and priorities in turn."""
    kinds = [("CT", "HEAD"), ("CR", "CHEST"), ("MR", "HEAD"), ("CT", "HEAD"), ("US", "ABDOMEN")]
    out = []
    t = START + 7 * MIN
    n = 0
    while t < END:
        modality, body_part = kinds[n % len(kinds)]
        facility = "b" if n % 7 == 3 else "a"
        out.append((t, modality, body_part, [1, 2, 3][n % 3], facility))
        t += 53 * MIN
        n += 1
    return out


def _route_window(net: Network, *, cut_license: bool = False) -> list[int]:
    """Live routing over the window, in time order: each study made ready at its
    arrival and routed then (study_route), every third one left to the routing
    sweep 45 s later (its task "lost"); the sweep runs every 30 minutes besides
    (escalations).  Twenty minutes after its arrival a study on offer is claimed
    by one of its readers and reported 8 to 20 minutes later, and one nobody
    could take is cancelled, so that few are open at once (the sweep would
    otherwise re-judge every one of them every time).  With ``cut_license``, the
    night reader's Texas license is cut to end on June 2, through the network's
    services at CUT_AT."""
    events: list[tuple[dt.datetime, int, Any]] = []
    for n, arrival in enumerate(_arrivals()):
        events.append((arrival[0], 1, (n, *arrival[1:])))
    sweep = START
    while sweep < END + 2 * HOUR:
        events.append((sweep, 0, None))
        sweep += 30 * MIN
    if cut_license:
        events.append((CUT_AT, 2, None))
    ids: list[int] = []
    while events:
        events.sort(key=lambda e: (e[0], e[1]))
        at, kind, payload = events.pop(0)
        with time_machine.travel(at, tick=False):
            if kind == 0:
                routing_sweep(now=at)
            elif kind == 2:
                license_ = License.objects.get(
                    radiologist=net.readers["night"], jurisdiction__code="US-TX"
                )
                before = snapshot(license_)
                license_.valid_to = CUT_TO
                network_object_save(actor=None, instance=license_, before=before)
            elif kind == 3:
                _resolve(payload, at=at)
            else:
                n, modality, body_part, priority, facility = payload
                study = f.StudyFactory(
                    facility=net.facility_b if facility == "b" else net.facility_a,
                    modality=modality,
                    body_part=body_part,
                    priority=priority,
                    received_at=at - 2 * MIN,
                )
                study_transition(study_id=study.pk, to_status=StudyStatus.READY, at=at)
                ids.append(study.pk)
                if n % 3 == 2:
                    events.append((at + 45 * SECOND, 0, None))
                else:
                    study_route(study_id=study.pk, now=at)
                events.append((at + 20 * MIN, 3, (study.pk, 8 + n % 13)))
    return ids


def _resolve(payload: tuple[int, int], *, at: dt.datetime) -> None:
    study_id, minutes = payload
    study = Study.objects.get(pk=study_id)
    if study.status == StudyStatus.OFFERED:
        offered = (
            RoutingDecision.objects.filter(study_id=study_id)
            .exclude(offered_to=[])
            .latest("created_at", "id")
            .offered_to
        )
        study_transition(
            study_id=study_id,
            to_status=StudyStatus.CLAIMED,
            at=at,
            assigned_radiologist_id=min(offered),
        )
        study_transition(study_id=study_id, to_status=StudyStatus.FINAL, at=at + minutes * MIN)
    elif study.status == StudyStatus.READY:
        study_transition(study_id=study_id, to_status=StudyStatus.CANCELLED, at=at)


def _draft(net: Network, **changes: Any) -> RoutingDraft:
    rules = live_rules_as_draft(reading_group_id=net.group.pk)
    for rule in rules:
        if rule["id"] == net.neuro.pk:
            rule.update(changes)
    return RoutingDraft.objects.create(
        reading_group=net.group, name=f"draft {changes}", rules=rules
    )


def _run(net: Network, draft: RoutingDraft) -> SimulationRun:
    return SimulationRun.objects.create(
        draft=draft, reading_group=net.group, window_start=START, window_end=END
    )


# --- the roster reads the history as live routing reads the tables --------------


def _sorted_facts(c: Any) -> Any:
    return (
        c.radiologist_id,
        c.name,
        c.tier,
        c.active,
        c.available,
        c.on_shift,
        c.subspecialties,
        sorted(c.licenses),
        sorted(c.privileges),
        c.open_claims,
        c.workload_cap,
        c.recent_work,
    )


def test_the_roster_gives_live_routings_candidates_and_facts_at_every_instant(network):
    """At instants all over the window (shift changes included), the roster built
    from the history names the candidates live routing reads from the tables, with
    the same facts (tier by region and by named pool, credentials of any status)."""
    roster = HistoryRoster(reading_group_id=network.group.pk, since=START, until=END)
    instants = [START + n * 17 * MIN for n in range(DAYS * 24 * 60 // 17)]
    instants += [START + dt.timedelta(days=d, hours=h) for d in range(DAYS) for h in range(24)]
    seen_tiers: set[int] = set()
    for at in instants:
        live = candidate_facts_many(
            [(fac, code) for fac, code in network.pairs],
            max_tier=2,
            at=at,
        )
        for fac, code in network.pairs:
            expected = live[fac.pk, code]
            plausible = roster.plausible(fac.pk, code, at)
            assert plausible == [c.radiologist_id for c in expected], (at, fac, code)
            replayed = [
                roster.facts(
                    c.radiologist_id,
                    facility_id=fac.pk,
                    jurisdiction=code,
                    at=at,
                    open_claims=c.open_claims,
                    recent_work=c.recent_work,
                )
                for c in expected
            ]
            assert [_sorted_facts(c) for c in replayed] == [_sorted_facts(c) for c in expected]
            seen_tiers |= {c.tier for c in expected}
    # The grid saw every tier and the suspended and unprivileged readers' cases.
    assert seen_tiers == {0, 1, 2}
    unprivileged = network.readers["unprivileged"].pk
    assert all(
        unprivileged not in roster.plausible(network.facility_a.pk, "US-TX", t) for t in instants
    )
    suspended = network.readers["suspended"].pk
    assert suspended in roster.plausible(network.facility_a.pk, "US-TX", START + 11 * HOUR)


def test_the_roster_knows_when_a_reader_next_starts_a_shift(network):
    roster = HistoryRoster(reading_group_id=network.group.pk, since=START, until=END)
    local = network.readers["local"].pk
    assert roster.next_shift_start(local, START) == START + 13 * HOUR
    assert roster.next_shift_start(local, START + 13 * HOUR) == START + 37 * HOUR
    assert roster.on_shift(local, START + 13 * HOUR)
    assert not roster.on_shift(local, START + 21 * HOUR)
    assert roster.available(local, START)
    assert roster.name(local) == "Dr. dr_local"


# --- the window's studies ------------------------------------------------------


def test_the_window_streams_routed_studies_in_the_order_routing_decided_them(network):
    ids = _route_window(network)
    # Not replayed: a prior, a study cancelled before it was ready, one still
    # receiving, and one ready after the window.
    facility = network.facility_a
    prior = f.StudyFactory(facility=facility, received_at=START + HOUR)
    Study.objects.filter(pk=prior.pk).update(
        status=StudyStatus.PRIOR, is_prior=True, ready_at=START + HOUR
    )
    cancelled = f.StudyFactory(facility=facility, received_at=START + HOUR)
    study_transition(study_id=cancelled.pk, to_status=StudyStatus.CANCELLED, at=START + HOUR)
    f.StudyFactory(facility=facility, received_at=START + HOUR)  # still receiving
    held = f.StudyFactory(facility=facility, received_at=START + HOUR)
    study_transition(study_id=held.pk, to_status=StudyStatus.READY, at=START + 2 * HOUR)
    study_transition(study_id=held.pk, to_status=StudyStatus.CANCELLED, at=START + 3 * HOUR)
    late = f.StudyFactory(facility=facility, received_at=END)
    study_transition(study_id=late.pk, to_status=StudyStatus.READY, at=END)
    # Replayed: the studies cancelled after they were routed (unroutable ones).
    assert Study.objects.filter(pk__in=ids, status=StudyStatus.CANCELLED).exists()

    streamed = list(
        replay_studies(reading_group_id=network.group.pk, window_start=START, window_end=END)
    )
    assert sorted(s.study_id for s in streamed) == sorted(ids)
    assert replay_studies_count(
        reading_group_id=network.group.pk, window_start=START, window_end=END
    ) == len(ids)
    first = {}
    for d in RoutingDecision.objects.filter(study_id__in=ids).order_by("created_at", "id"):
        first.setdefault(d.study_id, d)
    # Arrival is the moment live routing first decided (45 s after ready for the
    # studies the sweep routed), in order.
    assert [s.arrived_at for s in streamed] == sorted(s.arrived_at for s in streamed)
    for s in streamed:
        d = first[s.study_id]
        assert s.arrived_at == d.created_at
        assert s.recorded is not None
        assert (s.recorded.tier, s.recorded.outcome, s.recorded.rule_name) == (
            d.tier,
            d.outcome,
            d.rule_name,
        )
        assert s.recorded.offered_to == frozenset(d.offered_to)
    study = Study.objects.select_related("patient_jurisdiction").get(pk=streamed[0].study_id)
    s = streamed[0]
    assert (s.key.facility_id, s.key.modality, s.key.body_part, s.key.priority) == (
        study.facility_id,
        study.modality,
        study.body_part,
        study.priority,
    )
    assert (s.jurisdiction, s.received_at, s.due_at, s.label) == (
        study.patient_jurisdiction.code,
        study.received_at,
        study.sla_due_at,
        study.accession_number,
    )
    late_routed = [s for s in streamed if s.arrived_at != Study.objects.get(pk=s.study_id).ready_at]
    assert late_routed, "the sweep routed some studies after they became ready"


def test_reading_minutes_are_each_readers_median_from_claim_to_signature(network):
    local, night = network.readers["local"], network.readers["night"]
    until = END

    def read(reader: Any, minutes: float, *, prelim: float | None = None, days: int = 1) -> None:
        study = f.StudyFactory(facility=network.facility_a, received_at=until - days * 24 * HOUR)
        claimed = until - days * 24 * HOUR + HOUR
        Study.objects.filter(pk=study.pk).update(
            assigned_radiologist=reader,
            status=StudyStatus.FINAL,
            claimed_at=claimed,
            preliminary_at=claimed + prelim * MIN if prelim is not None else None,
            finalized_at=claimed + minutes * MIN,
        )

    read(local, 10)
    read(local, 14)
    read(local, 60, prelim=12)  # signed preliminary at 12 minutes
    read(local, 500, days=100)  # before the 90 days
    read(night, 30)
    minutes, default = reading_minutes(reading_group_id=network.group.pk, until=until)
    assert minutes == {local.pk: 12.0, night.pk: 30.0}
    assert default == 13.0  # the median of 10, 12, 14, 30
    empty = f.ReadingGroupFactory(name="Empty")
    assert reading_minutes(reading_group_id=empty.pk, until=until) == ({}, DEFAULT_READING_MINUTES)


def test_live_rules_as_draft_reads_every_rule_with_its_facilities_and_subspecialties(network):
    network.neuro.facilities.set([network.facility_a])
    rules = live_rules_as_draft(reading_group_id=network.group.pk)
    assert [r["name"] for r in rules] == ["Neuro", "Default"]
    assert rules[0]["facilities"] == [network.facility_a.pk]
    assert rules[0]["subspecialties"] == ["neuro"]
    assert rules[1]["subspecialties"] == ["general"]
    assert rules[0]["relative_value"] == "1.00"


# --- replays -------------------------------------------------------------------


def test_a_draft_identical_to_the_live_rules_reproduces_every_recorded_decision(network):
    ids = _route_window(network)
    decisions = RoutingDecision.objects.filter(study_id__in=ids)
    # The window has offers at every tier and unroutable studies.
    assert {d.tier for d in decisions if d.outcome == "offered"} == {0, 1, 2}
    assert any(d.outcome == "unroutable" for d in decisions)
    run = _run(network, _draft(network))
    began = time.perf_counter()
    run_execute(run_id=run.pk)
    took = time.perf_counter() - began
    run.refresh_from_db()
    assert run.status == "done", run.error
    result = run.result
    print(f"\nreplay of {len(ids)} studies over {DAYS} days: {took:.2f} s")
    assert result["studies"] == len(ids) == run.studies_total == run.studies_done
    recorded = result["recorded"]
    assert recorded["compared"] == len(ids)
    assert recorded["same"] == recorded["compared"], recorded["differences"]
    assert result["elsewhere"]["count"] == 0
    assert result["arms"]["live"] == result["arms"]["draft"]


def test_a_draft_that_removes_the_wider_tiers_leaves_more_studies_unroutable(network):
    ids = _route_window(network)
    run = _run(network, _draft(network, widest_tier=0))
    run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == "done", run.error
    live, draft = run.result["arms"]["live"], run.result["arms"]["draft"]
    assert draft["unroutable"]["count"] > live["unroutable"]["count"]
    # Neuro studies no longer go to the regional or global readers (they wait for
    # the local one): only general ones (the default rule, unchanged) are first
    # offered beyond.
    beyond = {
        arm: sum(r["first_offer_by_tier"][t] for t in "12")
        for arm, r in [("live", live), ("draft", draft)]
    }
    assert beyond["draft"] < beyond["live"]
    assert draft["first_offer_by_tier"]["0"] > live["first_offer_by_tier"]["0"]
    assert run.result["elsewhere"]["count"] > 0
    # The live arm still reproduces what was recorded.
    assert run.result["recorded"]["same"] == run.result["recorded"]["compared"] == len(ids)


def test_a_license_ended_mid_window_makes_its_holder_ineligible_after_that_moment_only(network):
    """The night reader's Texas license is cut (through the network's services, so
    the history records it) to end at license_ends: before, they are offered the
    night's neuro studies at the regional tier; after, they are a candidate whose
    license has expired, and the replay agrees with what live routing did."""
    ids = _route_window(network, cut_license=True)
    night = network.readers["night"].pk
    texas = network.facility_a.jurisdiction
    _, license_ends = validity_window(dt.date(2025, 1, 1), CUT_TO, None, texas.timezone)
    assert START + 2 * HOUR < CUT_AT < license_ends < END - 2 * HOUR
    roster = HistoryRoster(reading_group_id=network.group.pk, since=START, until=END)

    def verdict(at: dt.datetime) -> Any:
        facts = StudyFacts(
            study_id=0,
            facility_id=network.facility_a.pk,
            jurisdiction="US-TX",
            priority=Priority.ROUTINE,
            read_at=at,
            subspecialties=frozenset({"neuro"}),
        )
        candidate = roster.facts(
            night,
            facility_id=network.facility_a.pk,
            jurisdiction="US-TX",
            at=at,
            open_claims=0,
            recent_work=0.0,
        )
        return ROUTE.judge(facts, candidate)

    # Before the cut was recorded, after it and before the end, and after the end.
    assert verdict(START + 22 * HOUR).eligible
    assert verdict(license_ends - MIN).eligible
    after = verdict(license_ends)
    assert not after.eligible
    assert after.reasons == (Reason.LICENSE_EXPIRED,)
    assert night in roster.plausible(network.facility_a.pk, "US-TX", license_ends + HOUR)

    # (At facility B the night reader reads on a New York license, not cut.)
    in_texas = RoutingDecision.objects.filter(
        study_id__in=ids, study__facility=network.facility_a
    ).order_by("created_at")
    offered = [d for d in in_texas if night in d.offered_to]
    assert offered, "the night reader was offered studies before their license ended"
    assert all(d.created_at < license_ends for d in offered)
    judged_after = [
        v
        for d in in_texas.filter(created_at__gte=license_ends)
        for v in d.verdicts
        if v["radiologist_id"] == night
    ]
    assert judged_after, "live routing judged the night reader after their license ended"
    assert all("license_expired" in v["reasons"] for v in judged_after), judged_after
    assert any(d.created_at > CUT_AT for d in offered), "and after the cut was recorded"
    run = _run(network, _draft(network))
    run_execute(run_id=run.pk)
    run.refresh_from_db()
    recorded = run.result["recorded"]
    assert recorded["same"] == recorded["compared"] == len(ids), recorded["differences"]


# --- the run service -----------------------------------------------------------


def test_a_run_writes_its_progress_and_result_and_is_left_alone_once_done(network):
    _route_window(network)
    run = _run(network, _draft(network))
    updates: list[str] = []

    def watch(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.lstrip().upper().startswith("UPDATE") and "simulation_simulationrun" in sql:
            updates.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(watch):
        run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == "done"
    assert run.started_at is not None and run.finished_at is not None
    assert run.heartbeat_at is not None and run.heartbeat_at >= run.started_at
    assert run.studies_done == run.studies_total > 0
    assert run.error == ""
    # Taken, counted, at least one beat of progress, the result: separate small
    # UPDATEs, not one transaction around the replay.
    assert len(updates) >= 4
    assert set(run.result) >= {"window", "studies", "history_began", "reading_model", "arms"}
    # The readers' real reading times of the window (claimed, then reported).
    minutes, default = reading_minutes(reading_group_id=network.group.pk, until=END)
    assert minutes and default != DEFAULT_READING_MINUTES
    assert run.result["reading_model"] == {
        "default_minutes": default,
        "readers": {str(r): m for r, m in sorted(minutes.items())},
    }
    assert run.result["history_began"] is not None
    done_result = run.result
    run_execute(run_id=run.pk)  # a redelivered task
    run.refresh_from_db()
    assert run.result == done_result and run.status == "done"


def test_a_run_whose_replay_fails_is_marked_failed_with_the_error(network):
    draft = _draft(network)
    draft.rules[0].pop("widest_tier")  # a draft the replay cannot read
    draft.save()
    run = _run(network, draft)
    run_execute(run_id=run.pk)  # not raised: a retry would fail the same way
    run.refresh_from_db()
    assert run.status == "failed"
    assert "widest_tier" in run.error
    assert run.finished_at is not None
    run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == "failed"


def test_a_run_another_worker_is_beating_on_is_left_to_it(network):
    now = dt.datetime.now(dt.UTC)
    run = _run(network, _draft(network))
    SimulationRun.objects.filter(pk=run.pk).update(
        status="running", started_at=now - MIN, heartbeat_at=now - 10 * dt.timedelta(seconds=1)
    )
    run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == "running" and run.result == {}


def test_runs_recover_requeues_stale_runs_only(network, django_capture_on_commit_callbacks):
    now = dt.datetime.now(dt.UTC)
    draft = _draft(network)
    stale_running = _run(network, draft)
    never_started = _run(network, draft)
    fresh_running = _run(network, draft)
    just_queued = _run(network, draft)
    SimulationRun.objects.filter(pk=stale_running.pk).update(
        status="running", started_at=now - 10 * MIN, heartbeat_at=now - 3 * MIN
    )
    SimulationRun.objects.filter(pk=never_started.pk).update(created_at=now - 5 * MIN)
    SimulationRun.objects.filter(pk=fresh_running.pk).update(
        status="running", started_at=now - 10 * MIN, heartbeat_at=now - 30 * dt.timedelta(seconds=1)
    )
    # The task runs inline in tests (eager): re-queued runs are run at once.
    with django_capture_on_commit_callbacks(execute=True):
        assert runs_recover(now=now) == 2
    status = dict(SimulationRun.objects.values_list("pk", "status"))
    assert status == {
        stale_running.pk: "done",
        never_started.pk: "done",
        fresh_running.pk: "running",
        just_queued.pk: "queued",
    }
    assert runs_recover(now=now) == 0


@pytest.mark.worker
def test_a_real_worker_runs_a_queued_replay(
    celery_worker_process,
    group_a,
    facility_a,
    regions,  # noqa: F811 - the fixture imported above
):
    """The task travels through the broker to a worker process, which replays
    studies routed (and committed) here and writes the result."""
    from teleradiology.celery import app

    reader = make_reader(
        group_a, facility_a, name="dr_w", region=regions["local"], subs=("general",)
    )
    RoutingRule.objects.create(
        reading_group=group_a, name="Default", is_default=True
    ).subspecialties.set([f.subspecialty("general")])
    reader_versions_record(radiologist_ids=[reader.pk], at=START - HOUR)
    for n in range(4):  # make_reader's shift: NOW - 4 h to NOW + 4 h
        at = NOW - 3 * HOUR + n * HOUR
        with time_machine.travel(at, tick=False):
            study = f.StudyFactory(facility=facility_a, modality="CR", received_at=at - MIN)
            study_transition(study_id=study.pk, to_status=StudyStatus.READY, at=at)
            study_route(study_id=study.pk, now=at)
    draft = RoutingDraft.objects.create(
        reading_group=group_a,
        name="same",
        rules=live_rules_as_draft(reading_group_id=group_a.pk),
    )
    run = SimulationRun.objects.create(
        draft=draft, reading_group=group_a, window_start=START, window_end=END
    )
    app.send_task("simulation.simulation_run", args=[run.pk], queue=celery_worker_process.queue)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.status in ("done", "failed"):
            break
        time.sleep(0.2)
    assert run.status == "done", run.error
    assert run.result["studies"] == run.studies_done == 4
    assert run.result["recorded"]["same"] == 4
    assert run.result["arms"]["live"]["first_offer_by_tier"]["0"] == 4
